"""The stable names of every per-provider summary figure, each with a one-line definition.

A CI gate or the report refers to figures by these names; they never change meaning. The latency
block is generated from one pattern per metric and percentile (see ``latency_figures``).
"""

from __future__ import annotations

from parity.evals.metrics.compat_checks import CATALOGUE
from parity.evals.metrics.stats import QUANTILES, pct_name

# per-request metric -> (figure prefix, unit suffix, what it is)
LATENCY_METRICS: dict[str, tuple[str, str, str]] = {
    "ttft_ms": (
        "ttft",
        "_ms",
        "time to first token (send -> first content/tool-call event), streamed requests",
    ),
    "itl_ms": ("itl", "_ms", "inter-token latency per token, pooled over the streamed requests' tokens"),
    "tpot_ms": (
        "tpot",
        "_ms",
        "time per output token after the first: (e2e - ttft) / (completion_tokens - 1)",
    ),
    "e2e_ms": (
        "e2e",
        "_ms",
        "end-to-end latency of the answering attempt (send -> last byte), retries excluded",
    ),
    "output_tps": ("output_tps", "", "output tokens per second of one request: completion_tokens / e2e"),
}
PAIRABLE = ("ttft_ms", "tpot_ms", "e2e_ms", "output_tps")


def latency_figures() -> dict[str, str]:
    """Generated names: ``{m}_{p}{unit}``, ``_ci_low/_ci_high``, ``{m}_{p}_delta{unit}``(+CI), ``_delta_pct``, paired test."""
    out: dict[str, str] = {}
    for metric, (m, u, what) in LATENCY_METRICS.items():
        for q in QUANTILES:
            p = pct_name(q)
            out[f"{m}_{p}{u}"] = f"{p} of {what}"
            out[f"{m}_{p}{u}_ci_low"] = f"lower bound of the 95% distribution-free CI of {m}_{p}{u}"
            out[f"{m}_{p}{u}_ci_high"] = f"upper bound of the 95% distribution-free CI of {m}_{p}{u}"
            out[f"{m}_{p}{u}_ci_reason"] = (
                f"why a bound of {m}_{p}{u}'s CI is null, e.g. too few requests and the minimum needed; "
                "null when both bounds exist"
            )
            out[f"{m}_{p}_delta{u}"] = f"{m}_{p}{u} minus the baseline's (positive = larger than baseline)"
            out[f"{m}_{p}_delta{u}_ci_low"] = f"lower bound of the 95% MOVER CI of {m}_{p}_delta{u}"
            out[f"{m}_{p}_delta{u}_ci_high"] = f"upper bound of the 95% MOVER CI of {m}_{p}_delta{u}"
            out[f"{m}_{p}_delta{u}_ci_reason"] = (
                f"why a bound of {m}_{p}_delta{u}'s CI is null (which arm, why)"
            )
            out[f"{m}_{p}_delta_pct"] = (
                f"{m}_{p}{u} relative to the baseline's, in percent (+10 = 10% larger)"
            )
        if metric in PAIRABLE:
            out[f"{m}_median_diff{u}"] = (
                f"median over paired requests of ({m} - baseline {m}); unpaired: difference of medians"
            )
            out[f"{m}_median_diff{u}_ci_low"] = (
                f"lower bound of the unadjusted 95% CI of {m}_median_diff{u} (sign-test order statistics; "
                "unpaired: MOVER of the medians)"
            )
            out[f"{m}_median_diff{u}_ci_high"] = f"upper bound of the unadjusted 95% CI of {m}_median_diff{u}"
            fam = "providers x {ttft, e2e}" if m in ("ttft", "e2e") else f"providers compared on {m}"
            out[f"{m}_median_diff{u}_adj_ci_low"] = (
                f"lower bound of the family-wise CI of {m}_median_diff{u}: the same test's interval at "
                f"{m}_adj_ci_level = 1 - 0.05/m (Bonferroni, family: {fam}); excludes 0 exactly when "
                f"{m}_p_adjusted < 0.05"
            )
            out[f"{m}_median_diff{u}_adj_ci_high"] = (
                f"upper bound of the family-wise CI of {m}_median_diff{u}"
            )
            out[f"{m}_adj_ci_level"] = f"confidence level of {m}_median_diff{u}_adj_ci_*: 1 - 0.05/m"
            out[f"{m}_p_value"] = (
                f"two-sided p of {m}_median_diff{u} = 0: sign test (paired) or the inverted MOVER interval "
                "(unpaired); the unadjusted CI excludes 0 exactly when p < 0.05"
            )
            out[f"{m}_p_adjusted"] = f"{m}_p_value x m (Bonferroni, at most 1; family: {fam})"
            out[f"{m}_test"] = f"test behind {m}_p_value: sign (paired) or mover (unpaired)"
    return out


FIGURES: dict[str, str] = {
    "is_baseline": "true for the arm every other provider is compared with",
    "n_cells": "result cells (exchange x repeat) of the provider in the run",
    "n_success": "cells answered with HTTP 200",
    "error_rate": "share of cells whose final answer was not HTTP 200 (includes no response)",
    "rate_429": "share of cells that met at least one HTTP 429 on any attempt",
    "no_response_rate": "share of cells with no HTTP response at all (connection error / timeout)",
    "retry_rate": "share of cells that needed more than one attempt",
    "tokens_estimated_rate": "share of successful cells whose token counts were estimated (no usage sent)",
    "goodput_rate": "share of cells that succeeded and met every given SLO (null without --slo)",
    "cold_start_delta_ms": "median first-token time (e2e if not streamed) after an idle gap minus the rest",
    "cold_start_p_value": "one-sided Mann-Whitney p that post-idle requests are slower",
    **latency_figures(),
    "significant_slower": "ttft or e2e median paired difference > 0 with Bonferroni-adjusted p < 0.05, i.e. its family-wise CI above 0 (family: providers x {ttft, e2e})",
    "significant_faster": "ttft or e2e median paired difference < 0 with Bonferroni-adjusted p < 0.05, i.e. its family-wise CI below 0 (same family)",
    "cost_total_usd": "sum of per-request costs of the run over its priced cells (partial when cost_priced_share < 1; null when no success is priced)",
    "cost_per_success_usd": "mean cost of a priced successful cell",
    "cost_per_1k_usd": "cost_per_success_usd x 1,000: the cost of 1,000 requests of the recorded mix",
    "cost_priced_share": "share of successful cells with a cost (a price for the model and the units it bills); < 1 = partial cost",
    "cost_month_usd": "cost_per_success_usd x requests per 30 days, from --monthly-requests N or a recording spanning >= 24 h; else null",
    "cost_month_basis": "what cost_month_usd rests on: monthly_requests=N, recording span D days, or null (no projection)",
    "cost_delta_pct": "cost vs the baseline over the exchanges both answered and both priced, in percent (-20 = 20% cheaper)",
    "cost_delta_basis": "all_pairs, or priced_common_subset when some answered pairs lack a price in either arm",
    "cost_estimated_share": "share of priced successful cells whose cost bills estimated tokens",
    "breakeven_prompt_tokens": "prompt length above which the flat per-request price beats the per-token one (provider vs baseline, busiest model)",
    "breakeven_traffic_share": "share of recorded requests cheaper under the flat per-request price (provider vs baseline)",
    "quality_score": "0..1, unweighted mean of the applicable parts: text_similarity_mean, finish_reason_agreement, "
    "JSON conformance, tool_call_valid_rate, tool_call_agreement, embedding similarity, 1 - new_refusal_rate",
    "text_similarity_mean": "mean normalised rapidfuzz ratio (0..1) of the answer text vs the baseline's",
    "text_similarity_ci_low": "lower bound of the 95% normal CI of text_similarity_mean",
    "text_similarity_ci_high": "upper bound of the 95% normal CI of text_similarity_mean",
    "exact_match_rate": "share of answers identical to the baseline's text",
    "length_ratio_median": "median of answer length / baseline answer length (characters)",
    "finish_reason_agreement": "share of answers with the baseline's finish reason",
    "refusal_rate": "share of successful answers detected as refusals",
    "new_refusal_rate": "share of answers that refuse where the baseline did not",
    "json_valid_rate": "share of structured-output answers (response_format / text.format json) that parse as JSON",
    "json_schema_valid_rate": "share of json_schema answers that conform to the requested schema",
    "tool_call_valid_rate": "share of tool-calling answers whose calls name a requested tool with JSON arguments valid for its schema",
    "tool_call_agreement": "share of answers where either arm called tools that made the same calls with equal arguments",
    "tool_names_agreement": "share of answers where either arm called tools that called the same functions",
    "embedding_cosine_mean": "mean cosine similarity to the baseline's vector (same dimensions only)",
    "embedding_structure_spearman": "Spearman correlation of the two arms' pairwise cosine matrices over the run's inputs",
    "judge_n": "pairs judged in both orders",
    "judge_win_rate": "share of judged pairs where both orders preferred the provider",
    "judge_win_rate_ci_low": "lower bound of the 95% Wilson CI of judge_win_rate",
    "judge_win_rate_ci_high": "upper bound of the 95% Wilson CI of judge_win_rate",
    "judge_tie_rate": "share of judged pairs with a tie or inconsistent verdicts across orders",
    "judge_loss_rate": "share of judged pairs where both orders preferred the baseline",
    "judge_loss_rate_ci_low": "lower bound of the 95% Wilson CI of judge_loss_rate",
    "judge_loss_rate_ci_high": "upper bound of the 95% Wilson CI of judge_loss_rate",
    "compat_score": "failing-severity compatibility checks passed / such checks applicable (null if none applied)",
    "compat_failures": "number of compatibility checks failed (null when none applied: nothing answered)",
    "compat_applicable": "number of failing-severity compatibility checks that applied",
    "compat_passed": "number of failing-severity compatibility checks passed (compat_applicable - compat_failures)",
    "compat_info": "number of informational checks that found a difference that breaks nobody",
    **{
        f"compat.{c.name}": f"cells (models for models_listed, 1 for cold_start) failing {c.name}: {c.what}"
        + (" (informational: fails nothing)" if c.severity == "info" else "")
        + "; null when it did not apply"
        for c in CATALOGUE.values()
    },
    # capacity sweeps (parity replay --sweep): null unless the run is a sweep (evals/metrics/capacity.py)
    "capacity.max_rate": "highest offered rate (req/s; closed loop: the achieved rate) of a sweep step meeting the "
    "goodput target, errors limit and keeping up (achieved >= 90% of offered), before the first step that did not",
    "capacity.first_bad_rate": "offered rate of the first sweep step that missed the target: capacity lies in "
    "[capacity.max_rate, this); null when no step missed it (capacity above the sweep) or in closed loop",
    "capacity.knee_rate": "highest offered rate whose median e2e stays within 1.5 x the lightest step's",
    "capacity.peak_achieved_rate": "highest achieved rate (successes per second) over the sweep's steps: the "
    "throughput at saturation",
    "capacity.goodput_at_max": "goodput of the step at capacity.max_rate",
    "capacity.cost_per_1k_at_max_usd": "mean cost of 1,000 requests of the step at capacity.max_rate",
}
# The reliability figures, in the order the report's table shows them (reliability rows -> summary).
RELIABILITY_FIGURES = (
    "n_cells",
    "n_success",
    "error_rate",
    "rate_429",
    "no_response_rate",
    "retry_rate",
    "goodput_rate",
    "tokens_estimated_rate",
    "cold_start_delta_ms",
    "cold_start_p_value",
)
BOOL_FIGURES = {"is_baseline", "significant_slower", "significant_faster"}
INT_FIGURES = {
    *(
        "n_cells",
        "n_success",
        "judge_n",
        "compat_failures",
        "compat_applicable",
        "compat_passed",
        "compat_info",
    ),
    *(f"compat.{c}" for c in CATALOGUE),
}
STR_FIGURES = {k for k in FIGURES if k.endswith(("_test", "_ci_reason"))} | {
    "cost_month_basis",
    "cost_delta_basis",
}
