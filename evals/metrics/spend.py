"""Cost: per-request cost from each arm's pricing and usage, totals, monthly projection, break-even.

The per-request formula is ``parity.replayer.pricing.request_cost`` written as polars expressions (a test
checks they agree), so a million cells cost one vectorised pass instead of a million calls.

A cost is never a silent $0: a success whose model has no price, or which lacks the units its price
bills (``parity.replayer.costs.units_known``), has no cost (null). A group with some such cells shows a
partial total over its priced cells (``cost_priced_share``); the delta vs the baseline is taken
over the exchanges priced in both arms (``cost_delta_basis``). A cost is *estimated* only when it
bills tokens the replayer estimated. The monthly projection needs a stated basis (``MonthBasis``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import polars as pl

from parity.evals.errors import EvalError
from parity.evals.load import USAGE_COLUMNS
from parity.evals.metrics import groups
from parity.evals.metrics.outcome import succeeded
from parity.evals.metrics.timing import key_column
from parity.replayer.config import PricingTable
from parity.replayer.pricing import Pricing, breakeven_prompt_tokens

MONTH_S = 30 * 24 * 3600.0  # a "month" is 30 days
MIN_SPAN_S = 24 * 3600.0  # a shorter recording says nothing about a month's traffic
PRICE_FIELDS = [f.name for f in fields(Pricing) if f.name != "as_of"]
_SCHEMA = {"provider": pl.Utf8, "provider_model": pl.Utf8} | {f: pl.Float64 for f in PRICE_FIELDS}


def pricing_map(config: dict) -> dict[str, PricingTable]:
    """``{arm: PricingTable}`` from a run config's ``providers.*.pricing`` and ``recorded.pricing``."""
    out: dict[str, PricingTable] = {}
    arms = {name: (p or {}).get("pricing") for name, p in (config.get("providers") or {}).items()}
    arms["recorded"] = (config.get("recorded") or {}).get("pricing")
    for arm, table in arms.items():
        if not table:
            continue
        try:
            default = table.get("default")
            models = {m: _pricing(d) for m, d in table.items() if m != "default" and d}
            out[arm] = PricingTable(default=_pricing(default) if default else None, models=models)
        except (TypeError, ValueError, AttributeError) as e:
            raise EvalError(f"pricing of {arm!r} in the run config is invalid: {e}") from e
    return out


def _pricing(d: dict | Pricing) -> Pricing:
    return d if isinstance(d, Pricing) else Pricing.from_dict(d)


def price_frame(tables: dict[str, PricingTable], cells: pl.DataFrame) -> pl.DataFrame:
    """The price of every (arm, model sent) pair in ``cells``: exact model, dated-snapshot prefix, default."""
    pm = ["provider", "provider_model"]
    pairs = groups.agg(groups.with_key(cells.select(pm), pm), pm)
    rows = []
    for arm, model in pairs.iter_rows():
        table = tables.get(arm)
        p = table.for_model(model) if table else None
        if p is not None:
            d = p.to_dict()
            rows.append({"provider": arm, "provider_model": model} | {f: d[f] for f in PRICE_FIELDS})
    return pl.DataFrame(rows, schema=_SCHEMA)


# The cell columns request_costs and cost_sums read (the group columns of parity.evals.api included, and
# started_at for the traffic rate when the store has no exchanges).
COST_INPUTS = (
    *("exchange_id", "xid", "provider", "repeat", "endpoint", "model", "provider_model", "status"),
    *("error_type", "started_at"),
    *USAGE_COLUMNS,
)


def request_costs(
    cells: pl.DataFrame, prices: pl.DataFrame, extras: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Add ``cost_usd`` (recomputed), ``cost_source`` and ``cost_estimated`` to every cell.

    An arm without a price for the model it was sent keeps the replayer's ``cost_usd`` (null when
    there is none: never a silent $0). Failed requests cost nothing.
    """
    keys = ["exchange_id", "provider", "repeat"]
    df = cells
    if extras is not None and not extras.is_empty():
        # every arm was sent the same audio: a length one arm reports serves the arms that omit it
        extras = extras.with_columns(
            pl.col("audio_seconds").fill_null(pl.col("audio_seconds").max().over("exchange_id"))
        )
        df = df.join(extras, on=keys, how="left")
    else:
        df = df.with_columns(
            pl.lit(None, pl.Int64).alias("images"), pl.lit(None, pl.Float64).alias("audio_seconds")
        )
    pm = ["provider", "provider_model"]
    k = groups.key_name(pm)  # joined on one hashed key: a join on two strings costs 3x
    df = groups.with_key(df, pm).join(groups.with_key(prices, pm).drop(pm), on=k, how="left").drop(k)
    df = df.with_columns(pl.col("input_per_1m").is_not_null().alias("_priced"))
    p = pl.col("prompt_tokens").fill_null(0).cast(pl.Float64)
    c = pl.col("completion_tokens").fill_null(0).cast(pl.Float64)
    cached = pl.min_horizontal(pl.col("cached_tokens").fill_null(0).cast(pl.Float64), p)
    cached_price = pl.coalesce("cached_input_per_1m", "input_per_1m")
    computed = (
        (p - cached) * pl.col("input_per_1m") / 1e6
        + cached * cached_price / 1e6
        + c * pl.col("output_per_1m") / 1e6
        + pl.col("per_request")
        + pl.col("images").fill_null(0) * pl.col("per_image")
        + pl.col("audio_seconds").fill_null(0) / 60.0 * pl.col("per_audio_minute")
    )
    ok = succeeded()
    # parity.replayer.costs.units_known: does the answer report what its price bills?
    tokens_billed = (pl.col("input_per_1m").fill_null(0) > 0) | (pl.col("output_per_1m").fill_null(0) > 0)
    has_tokens = (pl.col("prompt_tokens").fill_null(0) > 0) | (pl.col("completion_tokens").fill_null(0) > 0)
    endpoint = pl.col("endpoint").fill_null("")
    known = (
        pl.when(endpoint.str.starts_with("audio.") & (pl.col("per_audio_minute").fill_null(0) > 0))
        .then(pl.col("audio_seconds").is_not_null())
        .when((endpoint == "images.generations") & (pl.col("per_image").fill_null(0) > 0))
        .then(True)
        .otherwise(~tokens_billed | has_tokens)
    )
    priced = pl.col("_priced")
    return df.with_columns(
        pl.when(priced)
        .then(pl.when(~ok).then(0.0).when(known).then(computed))
        .otherwise(pl.col("cost_usd"))
        .alias("cost_usd"),
        pl.when(priced & (~ok | known))
        .then(pl.lit("pricing"))
        .when(~priced & pl.col("cost_usd").is_not_null())
        .then(pl.lit("replayer"))
        .alias("cost_source"),
        pl.when(priced)
        .then(
            pl.when(~ok)
            .then(False)
            .when(known)
            .then(pl.col("tokens_estimated").fill_null(False) & tokens_billed)
        )
        .when(pl.col("cost_usd").is_not_null())
        .then(pl.col("cost_estimated").fill_null(False))
        .alias("cost_estimated"),
    ).drop("_priced", *PRICE_FIELDS)


@dataclass(frozen=True)
class MonthBasis:
    """How many requests a month the projection assumes, and on what basis."""

    requests: float | None  # requests per month (None: no projection)
    basis: str | None  # "monthly_requests=N" or "recording span 3.2 days"; None when there is none
    note: str | None = None  # why there is no projection


def recording_span_s(traffic: pl.DataFrame) -> float | None:
    """Seconds between the first and the last recorded exchange (None with fewer than two)."""
    t = traffic["recorded_at"].drop_nulls() if "recorded_at" in traffic.columns else pl.Series([])
    if len(t) < 2:
        return None
    return (t.max() - t.min()).total_seconds()


def month_basis(traffic: pl.DataFrame, n_requests: int, monthly_requests: float | None = None) -> MonthBasis:
    """The monthly projection's basis: ``monthly_requests`` (N x the mean cost per recorded request,
    the mix as recorded), else the recording's own rate when it spans at least 24 hours, else none."""
    if monthly_requests is not None:
        if not monthly_requests > 0:
            raise EvalError(f"monthly requests must be a positive number, not {monthly_requests!r}")
        n = f"{monthly_requests:.15g}"
        if n_requests <= 0:
            return MonthBasis(None, f"monthly_requests={n}", "no recorded request to take the mean cost of")
        return MonthBasis(monthly_requests, f"monthly_requests={n}")
    span = recording_span_s(traffic)
    hint = "pass --monthly-requests N for a monthly projection"
    if span is None or span <= 0:
        return MonthBasis(None, None, f"the recording's time span is unknown; {hint}")
    if span < MIN_SPAN_S:
        return MonthBasis(None, None, f"the recording spans {_duration(span)}, under 24 h; {hint}")
    return MonthBasis(n_requests * MONTH_S / span, f"recording span {span / 86400:.1f} days")


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    return f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def cost_sums(costs: pl.DataFrame, baseline: str, by: Sequence[str] = ("provider",)) -> pl.DataFrame:
    """Per group, the sums every cost figure is a ratio of (so coarser groups are sums of these).

    The paired delta sets each priced candidate cell against the baseline's mean cost for the same
    exchange (over its priced repeats), over the exchanges both arms answered successfully and both
    priced; ``n_cost_pairs_answered`` counts the pairs both answered, priced or not.
    """
    by = list(by)
    ok = succeeded()
    k = key_column(costs)
    base = (
        costs.filter(ok & (pl.col("provider") == baseline))
        .group_by(k)
        .agg(pl.col("cost_usd").mean().alias("_c_b"), pl.lit(True).alias("_b_ok"))
    )
    # joined on the key column alone: a join of the frame would copy every column of every cell
    b = costs.select(k).join(base, on=k, how="left", maintain_order="left")
    df = costs.with_columns(b["_c_b"], b["_b_ok"])
    answered = ok & (pl.col("provider") != baseline) & pl.col("_b_ok").fill_null(False)
    paired = answered & pl.col("_c_b").is_not_null() & pl.col("cost_usd").is_not_null()

    # masks (when/then), not filters: a filter gathers a new column per aggregate
    def of_ok(c: str) -> pl.Expr:
        return pl.when(ok).then(pl.col(c))

    return (
        groups.agg(
            df,
            by,
            pl.len().alias("n_cells"),
            ok.sum().alias("n_success"),
            pl.col(k).n_unique().alias("n_exchanges"),  # an exchange lies in one endpoint x model group
            pl.col("cost_usd").sum().alias("_cost"),
            of_ok("cost_usd").sum().alias("_cost_ok"),
            (ok & pl.col("cost_usd").is_null()).sum().alias("_unpriced"),
            (ok & pl.col("cost_usd").is_not_null()).sum().alias("_priced_ok"),
            of_ok("cost_estimated").sum().alias("_est"),
            (ok & pl.col("cost_estimated").is_not_null()).sum().alias("_est_n"),
            of_ok("prompt_tokens").sum().alias("prompt_tokens"),
            of_ok("completion_tokens").sum().alias("completion_tokens"),
            of_ok("cached_tokens").sum().alias("cached_tokens"),
            (pl.col("cost_source") == "replayer").sum().alias("_replayer"),
            pl.when(paired).then(pl.col("cost_usd")).sum().alias("_pair_cost"),
            pl.when(paired).then(pl.col("_c_b")).sum().alias("_pair_base"),
            paired.sum().alias("n_cost_pairs"),
            answered.sum().alias("n_cost_pairs_answered"),
        ).sort(by)  # group order fixed, so coarser totals add the same floats in the same order
    )


def cost_rollup(
    sums: pl.DataFrame, month: MonthBasis | None = None, by: Sequence[str] = ("provider",)
) -> pl.DataFrame:
    """The cost table at ``by`` (the sums' groups or coarser) from ``cost_sums``.

    Totals and means are over the priced cells: with some successes unpriced the total is partial
    (``cost_partial``, ``cost_priced_share`` < 1), with none priced it is null, never $0.
    """
    by = list(by)
    month = month or MonthBasis(None, None)
    counts = ["n_cells", "n_success", "n_exchanges", "prompt_tokens", "completion_tokens", "cached_tokens"]
    extra = ["_cost", "_cost_ok", "_unpriced", "_priced_ok", "_est", "_est_n", "_replayer"]
    pairs = ["_pair_cost", "_pair_base", "n_cost_pairs", "n_cost_pairs_answered"]
    g = sums.group_by(by).agg(pl.col(c).sum() for c in [*counts, *extra, *pairs])
    n_priced, n_success = pl.col("_priced_ok"), pl.col("n_success")
    per_success = pl.when(n_priced > 0).then(pl.col("_cost_ok") / n_priced)
    has_pairs = pl.col("n_cost_pairs") > 0
    n_ex = pl.col("n_exchanges").sum()
    provider_n = n_ex.over("provider") if "provider" in by else n_ex
    out = g.with_columns(
        pl.when((n_priced > 0) | (n_success == 0)).then(pl.col("_cost")).alias("cost_total_usd"),
        per_success.alias("cost_per_success_usd"),
        (per_success * 1000).alias("cost_per_1k_usd"),
        pl.when(n_success > 0).then(n_priced / n_success).alias("cost_priced_share"),
        ((pl.col("_unpriced") > 0) & (n_priced > 0)).alias("cost_partial"),
        pl.when(pl.col("_est_n") > 0).then(pl.col("_est") / pl.col("_est_n")).alias("cost_estimated_share"),
        (pl.col("_replayer") > 0).alias("uses_replayer_cost"),
        (pl.col("_unpriced") > 0).alias("cost_missing"),
        # a group's share of its provider's requests x the month's requests: a provider's figure is
        # month.requests x its mean cost per request, its groups add up to it
        (per_success * pl.col("n_exchanges") / provider_n * pl.lit(month.requests, pl.Float64)).alias(
            "cost_month_usd"
        ),
        pl.lit(month.basis, pl.Utf8).alias("cost_month_basis"),
        pl.lit(month.note, pl.Utf8).alias("cost_month_note"),
        pl.when(has_pairs)
        .then((pl.col("_pair_cost") / pl.col("_pair_base") - 1) * 100)
        .alias("cost_delta_pct"),
        pl.when(has_pairs)
        .then(
            pl.when(pl.col("n_cost_pairs") == pl.col("n_cost_pairs_answered"))
            .then(pl.lit("all_pairs"))
            .otherwise(pl.lit("priced_common_subset"))
        )
        .alias("cost_delta_basis"),
    ).with_columns(
        pl.col("cost_delta_pct").fill_nan(None),
        pl.when(has_pairs).then(pl.col("n_cost_pairs")).alias("n_cost_pairs"),
        pl.when(pl.col("n_cost_pairs_answered") > 0)
        .then(pl.col("n_cost_pairs_answered"))
        .alias("n_cost_pairs_answered"),
    )
    return out.select(
        *by,
        "n_cells",
        "n_success",
        "n_exchanges",
        "cost_total_usd",
        "cost_per_success_usd",
        "cost_per_1k_usd",
        "cost_priced_share",
        "cost_partial",
        "cost_estimated_share",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "uses_replayer_cost",
        "cost_missing",
        "cost_month_usd",
        "cost_month_basis",
        "cost_month_note",
        "cost_delta_pct",
        "cost_delta_basis",
        "n_cost_pairs",
        "n_cost_pairs_answered",
    ).sort(by)


def resolve_price(tables: dict[str, PricingTable], config: dict, arm: str, model: str) -> Pricing | None:
    """The price ``arm`` charges for recorded model ``model`` (via the run's model mapping)."""
    table = tables.get(arm)
    if table is None:
        return None
    return table.for_model(sent_model(config, arm, model))


def sent_model(config: dict, arm: str, model: str) -> str | None:
    """The model ``arm`` is sent for recorded model ``model`` (``replayer`` mapping rules; None = unmapped)."""
    if arm == "recorded":
        return model
    mapping = ((config.get("providers") or {}).get(arm) or {}).get("models") or {}
    if not mapping:
        return model
    target = mapping.get(model) or mapping.get("*")
    return model if target == "*" else target


def _token_cost(p: Pricing, prompt: np.ndarray, completion: np.ndarray) -> np.ndarray:
    """``request_cost`` for arrays of prompt/completion tokens (no cache, images or audio)."""
    return prompt * p.input_per_1m / 1e6 + completion * p.output_per_1m / 1e6 + p.per_request


def breakeven(prices: dict[str, PricingTable], config: dict, traffic: pl.DataFrame) -> pl.DataFrame:
    """Per recorded model, token-priced arm and flat-priced arm: the prompt length where flat wins.

    ``breakeven_prompt_tokens`` assumes the model's median recorded completion length;
    ``share_beyond`` is the share of recorded requests with a longer prompt, and
    ``share_flat_cheaper`` re-checks every request with its own token counts.
    """
    rows = []
    t = traffic.filter(pl.col("prompt_tokens").is_not_null())
    for (model,), g in t.partition_by(["model"], as_dict=True).items():
        pt = g["prompt_tokens"].to_numpy().astype(float)
        ct = g["completion_tokens"].fill_null(0).to_numpy().astype(float)
        c_med = float(np.median(ct)) if len(ct) else 0.0
        arms = {a: resolve_price(prices, config, a, model) for a in prices}
        flats = {a: p for a, p in arms.items() if p is not None and p.per_request > 0}
        toks = {a: p for a, p in arms.items() if p is not None and p.input_per_1m > 0 and a not in flats}
        for fa, fp in flats.items():
            for ta, tp in toks.items():
                be = breakeven_prompt_tokens(tp, fp, c_med)
                tok_cost, flat_cost = _token_cost(tp, pt, ct), _token_cost(fp, pt, ct)
                rows.append(
                    {
                        "model": model,
                        "token_provider": ta,
                        "flat_provider": fa,
                        "n_requests": len(pt),
                        "completion_tokens_assumed": c_med,
                        "breakeven_prompt_tokens": be,
                        "share_beyond": float(np.mean(pt > be)) if be is not None else 0.0,
                        "share_flat_cheaper": float(np.mean(flat_cost < tok_cost)),
                    }
                )
    schema = {
        "model": pl.Utf8,
        "token_provider": pl.Utf8,
        "flat_provider": pl.Utf8,
        "n_requests": pl.Int64,
        "completion_tokens_assumed": pl.Float64,
        "breakeven_prompt_tokens": pl.Float64,
        "share_beyond": pl.Float64,
        "share_flat_cheaper": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)
