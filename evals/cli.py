"""``parity eval``: evaluate a replay run and print one table per question, or every figure as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import polars as pl

from parity.evals.api import Evaluation, evaluate
from parity.evals.arguments import add_run_arguments
from parity.evals.errors import EvalError
from parity.evals.report import fmt as report_format
from parity.evals.report import verdict_text
from parity.store.cli import add_command

DESCRIPTION = """\
Compare every provider of a replay run with a baseline (the recorded production answers by
default): latency percentiles with confidence intervals and paired tests, error and 429
rates and goodput, cost and its monthly projection, answer quality, and the compatibility
scorecard. What each figure means: parity check --list-figures."""

EXAMPLES = """\
examples:
  parity eval --db parity.duckdb                       the verdict of the newest run
  parity eval --db parity.duckdb --run cmp-1 --detail  every table
  parity eval --db parity.duckdb --run cmp-1 --slo ttft=500ms,e2e=10s --monthly-requests 2e6
  parity eval --db parity.duckdb --run cmp-1 --baseline fastco
  parity eval --db parity.duckdb --run cmp-1 --format json > cmp-1.json
      also --format md (the verdict for a pull-request comment) or csv (one row per provider)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``parity eval``."""
    add_run_arguments(p)
    p.add_argument(
        "--rubric", type=Path, help="file with the judge's instructions (default: a built-in rubric)"
    )
    p.add_argument(
        "--max-judge-pairs",
        type=int,
        default=300,
        help="judge at most this many pairs per provider, a deterministic sample (default 300; 0 = all)",
    )
    p.add_argument(
        "--detail",
        action="store_true",
        help="print every table (latency per endpoint and model, reliability, cost, break-even, quality, "
        "every compatibility check) instead of the verdict",
    )
    p.add_argument(
        "--format",
        choices=verdict_text.FORMATS,
        default="text",
        help="text (default: the verdict, or every table with --detail), json (every figure and row), "
        "md (the verdict as Markdown) or csv (every summary figure, one row per provider)",
    )
    p.add_argument(
        "--json", action="store_const", const="json", dest="format", help="the same as --format json"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` sub-command to the ``parity`` command."""
    p = add_command(
        subparsers, "eval", cmd_eval, "evaluate a replay run against a baseline", DESCRIPTION, EXAMPLES
    )
    add_arguments(p)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run the evaluation; EvalError becomes one line on stderr and exit code 2."""
    try:
        rubric = args.rubric.read_text() if args.rubric else None
        ev = evaluate(
            args.db,
            args.run,
            args.baseline,
            args.slo,
            judge=args.judge,
            providers=args.providers,
            rubric=rubric,
            max_judge_pairs=args.max_judge_pairs or None,
            idle_s=args.idle_gap,
            monthly_requests=args.monthly_requests,
            since=args.since,
            until=args.until,
        )
    except EvalError as e:
        print(f"parity eval: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"parity eval: error: {e}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(ev.to_dict(), indent=2, allow_nan=False, default=str))
    elif args.format == "md":
        sys.stdout.write(verdict_text.markdown(ev))
    elif args.format == "csv":
        sys.stdout.write(verdict_text.csv(ev))
    else:
        sys.stdout.write(render(ev) if args.detail else verdict_text.render(ev))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (``python -m parity.evals.cli``)."""
    p = argparse.ArgumentParser(prog="parity eval", description=DESCRIPTION)
    add_arguments(p)
    return cmd_eval(p.parse_args(argv))


def _text(df: pl.DataFrame) -> pl.DataFrame:
    """Every cell as text: 4 significant digits, p-values as report_format writes them, and "—" for
    a missing value (never null / NaN)."""
    cols = []
    for name, dtype in df.schema.items():
        c = pl.col(name)
        if name.endswith(("p_value", "p_adjusted")) and dtype.is_numeric():
            c = c.map_elements(report_format.fmt_p, return_dtype=pl.Utf8)
        elif dtype.is_float():
            c = c.round_sig_figs(4).fill_nan(None).cast(pl.Utf8)
        elif dtype.is_nested():
            continue
        else:
            c = c.cast(pl.Utf8)
        cols.append(c.fill_null("—").alias(name))
    return df.with_columns(cols)


def _show(title: str, df: pl.DataFrame | None) -> str:
    if df is None or df.is_empty():
        return f"== {title} ==\n(nothing to show)\n"
    with pl.Config(
        tbl_rows=-1,
        tbl_cols=-1,
        tbl_width_chars=240,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        fmt_str_lengths=60,
        fmt_table_cell_list_len=3,
        tbl_formatting="ASCII_MARKDOWN",
    ):
        return f"== {title} ==\n{_text(df)}\n"


def _pick(df: pl.DataFrame | None, cols: list[str]) -> pl.DataFrame | None:
    return None if df is None else df.select([c for c in cols if c in df.columns])


def scorecard_table(card: pl.DataFrame | None) -> pl.DataFrame | None:
    """One row per check, one column per provider: "pass 300/300", "FAIL 2/300: id1, id2", "differs
    1/300: id" (informational) or "n/a"."""
    if card is None or card.is_empty():
        return None
    cell = (
        pl.when(pl.col("result") == "n/a")
        .then(pl.lit("n/a"))
        .otherwise(
            pl.concat_str(
                pl.when(pl.col("result") == "fail")
                .then(pl.lit("FAIL "))
                .when(pl.col("result") == "info")
                .then(pl.lit("differs "))
                .otherwise(pl.lit("pass ")),
                pl.col("passed").cast(pl.Utf8),
                pl.lit("/"),
                (pl.col("passed") + pl.col("failed")).cast(pl.Utf8),
                pl.when(pl.col("failed") > 0)
                .then(pl.lit(": ") + pl.col("examples").list.join(", "))
                .otherwise(pl.lit("")),
            )
        )
    )
    order = card.select("check").unique(maintain_order=True)
    wide = card.with_columns(cell.alias("v")).pivot(on="provider", index="check", values="v")
    return order.join(wide, on="check", how="left")


def render(ev: Evaluation) -> str:
    """The human-readable report: summary, then one table per question."""
    head = f"run {ev.run}, baseline {ev.baseline}" + (f", SLOs {ev.slos}" if ev.slos else "")
    summary = _pick(
        ev.summary,
        [
            "provider",
            "n_cells",
            "error_rate",
            "rate_429",
            "ttft_p50_ms",
            "ttft_p95_delta_pct",
            "e2e_p95_delta_pct",
            "significant_slower",
            "goodput_rate",
            "cost_per_1k_usd",
            "cost_month_usd",
            "cost_delta_pct",
            "quality_score",
            "compat_score",
            "compat_failures",
            "judge_win_rate",
        ],
    )
    lat = _pick(
        ev.latency,
        [
            "provider",
            "endpoint",
            "model",
            "metric",
            "n",
            "p50",
            "p50_ci_low",
            "p50_ci_high",
            "p95",
            "p95_ci_low",
            "p95_ci_high",
            "p99",
            "p50_delta",
            "p95_delta_pct",
            "median_diff",
            "median_diff_adj_ci_low",
            "median_diff_adj_ci_high",
            "adj_ci_level",
            "p_adjusted",
            "test",
            "slower",
        ],
    )
    rel = _pick(
        ev.reliability,
        [
            "provider",
            "endpoint",
            "model",
            "n_cells",
            "error_rate",
            "rate_429",
            "no_response_rate",
            "retry_rate",
            "goodput_rate",
            "n_cold",
            "cold_start_delta_ms",
            "cold_start_p_value",
        ],
    )
    cost = _pick(
        ev.cost,
        [
            "provider",
            "endpoint",
            "model",
            "n_success",
            "cost_total_usd",
            "cost_priced_share",
            "cost_per_1k_usd",
            "cost_month_usd",
            "cost_delta_pct",
            "cost_delta_basis",
            "cost_estimated_share",
        ],
    )
    qual = _pick(
        ev.quality,
        [
            "provider",
            "endpoint",
            "model",
            "n_text_compared",
            "text_similarity_mean",
            "exact_match_rate",
            "length_ratio_median",
            "finish_reason_agreement",
            "new_refusal_rate",
            "json_valid_rate",
            "json_schema_valid_rate",
            "tool_call_valid_rate",
            "tool_call_agreement",
            "embedding_cosine_mean",
            "embedding_structure_spearman",
            "quality_score",
        ],
    )
    compat = scorecard_table(ev.compat)
    parts = [
        head + "\n",
        _show("summary", summary),
        _show("latency (ms; output_tps in tokens/s)", lat) + latency_notes(ev.latency),
        _show("reliability", rel),
        _show("cost (USD)", cost) + _month_line(ev),
        _show("break-even: flat per-request vs per-token", ev.breakeven),
        _show("quality vs baseline", qual),
        _show("compatibility", compat) + verdict_text.unsupported_lines(ev),
    ]
    if ev.judge is not None:
        parts.append(_show("LLM judge (both orders)", ev.judge))
    return "\n".join(parts)


def latency_notes(lat: pl.DataFrame | None) -> str:
    """What the latency table's intervals are, and why a shown percentile's interval has no bound."""
    if lat is None or lat.is_empty():
        return ""
    lines = [
        "p50/p95 CIs: 95%, distribution-free, unadjusted. median_diff_adj_ci: the same test's interval "
        "at adj_ci_level = 1 - 0.05/m (Bonferroni over the family), and slower/faster = p_adjusted < 0.05, "
        "i.e. that interval excludes 0."
    ]
    for p in ("p50", "p95"):
        col = f"{p}_ci_reason"
        if col not in lat.columns:
            continue
        for r in lat.filter(pl.col(col).is_not_null()).iter_rows(named=True):
            where = "/".join(str(r[c]) for c in ("provider", "endpoint", "model", "metric") if c in r)
            lines.append(f"  {where} {p} CI: {r[col]}")
    return "\n".join(lines) + "\n"


def _month_line(ev: Evaluation) -> str:
    """What cost_month_usd rests on, or why it is null."""
    m = ev.month
    if m is None:
        return ""
    if m.basis is not None:
        return f"$/month basis: {m.basis}" + (f" ({m.note})" if m.note else "") + "\n"
    return f"$/month: none ({m.note}); cost_per_1k_usd is the cost of 1,000 requests of the recorded mix\n"


if __name__ == "__main__":
    raise SystemExit(main())
