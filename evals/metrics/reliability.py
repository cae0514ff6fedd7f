"""Reliability: error, 429, no-response and retry rates, goodput against the SLOs, cold starts.

Pure functions over ``timing.request_metrics`` frames, at any grouping; ``reliability_levels``
computes several levels from one pass over the cells (a coarser level sums the finer counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from parity.evals.errors import EvalError
from parity.evals.metrics import groups, stats
from parity.evals.metrics.outcome import succeeded
from parity.evals.metrics.timing import GROUP
from parity.replayer.errors import ReplayError
from parity.replayer.sweep import parse_slos as sweep_slos


def parse_slos(spec: str | dict | None) -> dict[str, float]:
    """``"ttft=500ms,e2e=10s"`` -> ``{"ttft_ms": 500.0, "e2e_ms": 10000.0}`` (ms when unitless): the
    replay's reading of ``--slo`` (``parity.replayer.sweep.parse_slos``), its errors as EvalError."""
    try:
        return sweep_slos(spec)
    except ReplayError as e:
        raise EvalError(str(e)) from None


def reliability(
    metrics: pl.DataFrame,
    by: Sequence[str] = GROUP,
    slos: dict[str, float] | None = None,
    idle_s: float = 60.0,
    sums: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per group: cells, error / 429 / no-response / retry rates, goodput and the cold-start effect.

    ``sums`` (``reliability_sums`` at these groups or finer) saves the pass over the cells.
    """
    by = list(by)
    sums = reliability_sums(metrics, by, slos) if sums is None else sums
    g = sums.group_by(by).agg(pl.col(c).sum() for c in _SUM_COLUMNS)
    n = pl.col("n_cells")
    out = g.select(
        *by,
        "n_cells",
        "n_ok",
        (1 - pl.col("n_ok") / n).alias("error_rate"),
        (pl.col("_429") / n).alias("rate_429"),
        (pl.col("_no_response") / n).alias("no_response_rate"),
        (pl.col("_retried") / n).alias("retry_rate"),
        (pl.col("_wait") / n).alias("rate_limit_wait_ms_mean"),
        pl.when(pl.col("n_ok") > 0)
        .then(pl.col("_estimated") / pl.col("n_ok"))
        .alias("tokens_estimated_rate"),
        (pl.col("_good") / n if slos else pl.lit(None, pl.Float64)).alias("goodput_rate"),
    )
    return out.join(cold_start(metrics, by, idle_s), on=by, how="left").sort(by)


_SUM_COLUMNS = ("n_cells", "n_ok", "_429", "_no_response", "_retried", "_wait", "_estimated", "_good")


def meets_slos(slos: dict[str, float] | None, columns: Sequence[str] | None = None) -> pl.Expr:
    """A cell that counts toward goodput: it succeeded and met every SLO it has a value for (a null
    metric, such as the TTFT of a request that was not streamed, does not count against it). With
    ``columns``, SLOs on metrics the frame lacks are left out."""
    good = succeeded()
    for col, limit in (slos or {}).items():
        if columns is None or col in columns:
            good = good & (pl.col(col).is_null() | (pl.col(col) <= limit))
    return good


def reliability_sums(
    metrics: pl.DataFrame, by: Sequence[str] = GROUP, slos: dict[str, float] | None = None
) -> pl.DataFrame:
    """Per group, the counts every reliability rate is a ratio of (coarser groups sum them)."""
    ok = succeeded()
    good = meets_slos(slos)
    return groups.agg(
        metrics,
        by,
        pl.len().alias("n_cells"),
        ok.sum().alias("n_ok"),
        pl.col("saw_429").fill_null(False).sum().alias("_429"),
        pl.col("status").is_null().sum().alias("_no_response"),
        (pl.col("attempts").fill_null(1) > 1).sum().alias("_retried"),
        pl.col("rate_limit_wait_ms").fill_null(0).sum().alias("_wait"),
        pl.col("tokens_estimated").fill_null(False).filter(ok).sum().alias("_estimated"),
        good.fill_null(False).sum().alias("_good"),
    )


def mark_cold(metrics: pl.DataFrame, idle_s: float = 60.0) -> pl.DataFrame:
    """Add ``cold`` (first request after >= ``idle_s`` without traffic to the same provider model).

    "Without traffic" means no request of that provider model in flight or started, so the gap is
    measured from the end of the latest earlier request (its start + latency) to this start.
    """
    end = pl.col("started_at") + pl.duration(milliseconds=pl.col("latency_ms").fill_null(0))
    seq = groups.key_expr(["provider", "provider_model"])  # one hashed key, not two strings
    busy = pl.col("_end").cum_max().shift(1).over(seq, order_by="started_at")
    gap_ms = (pl.col("started_at") - pl.col("_busy")).dt.total_milliseconds()
    # on the few columns it reads: a window over the whole frame would copy every column
    cold = (
        metrics.select("provider", "provider_model", "started_at", "latency_ms")
        .with_columns(end.alias("_end"))
        .with_columns(busy.alias("_busy"))
        .select(
            pl.when(pl.col("started_at").is_not_null())
            .then(pl.col("_busy").is_null() | (gap_ms >= idle_s * 1000))
            .alias("cold")
        )
        .to_series()
    )
    return metrics.with_columns(cold)


def cold_start(metrics: pl.DataFrame, by: Sequence[str] = GROUP, idle_s: float = 60.0) -> pl.DataFrame:
    """Cold (see ``mark_cold``) vs warm successful requests: medians, difference, one-sided p.

    Compares time to first token (end-to-end latency for non-streamed cells) with a one-sided
    Mann-Whitney test (cold slower). Needs 3 cold and 3 warm cells per group.
    """
    by = list(by)
    df = metrics if "cold" in metrics.columns else mark_cold(metrics, idle_s)
    keys = groups.keys_of(df, by)
    df = df.select(*by, *keys, "cold", pl.coalesce("ttft_ms", "e2e_ms").alias("_first")).filter(
        pl.col("_first").is_not_null() & pl.col("cold").is_not_null()
    )
    cold, first = pl.col("cold"), pl.col("_first")
    aggs = (
        cold.sum().cast(pl.Int64).alias("n_cold"),
        (~cold).sum().cast(pl.Int64).alias("n_warm"),
        first.filter(cold).median().alias("cold_p50_ms"),
        first.filter(~cold).median().alias("warm_p50_ms"),
    )
    per = (
        df.group_by(keys).agg(*[pl.col(c).first() for c in by], *aggs) if keys else df.group_by(by).agg(*aggs)
    )
    rows = []
    for row in per.iter_rows(named=True):
        if row["n_cold"] >= 3 and row["n_warm"] >= 3:
            # the test reads the group's values; groups without enough cold requests are not read
            same = (
                pl.col(keys[0]) == row[keys[0]]
                if keys
                else pl.all_horizontal(pl.col(c).eq_missing(row[c]) for c in by)
            )
            g = df.filter(same)
            mask = g["cold"].to_numpy()
            vals = g["_first"].to_numpy()
            cm, wm = row["cold_p50_ms"], row["warm_p50_ms"]
            row |= {
                "cold_start_delta_ms": cm - wm,
                "cold_start_p_value": stats.mann_whitney(vals[mask], vals[~mask], alternative="greater"),
            }
        else:
            row |= {"cold_p50_ms": None, "warm_p50_ms": None}
        for k in keys:
            del row[k]
        rows.append(row)
    schema = {c: pl.Utf8 for c in by} | {
        "n_cold": pl.Int64,
        "n_warm": pl.Int64,
        "cold_p50_ms": pl.Float64,
        "warm_p50_ms": pl.Float64,
        "cold_start_delta_ms": pl.Float64,
        "cold_start_p_value": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def reliability_levels(
    metrics: pl.DataFrame,
    levels: Sequence[Sequence[str]],
    slos: dict[str, float] | None = None,
    idle_s: float = 60.0,
) -> list[pl.DataFrame]:
    """``reliability`` at each of ``levels``, finest first: one pass over the cells for the counts."""
    sums = reliability_sums(metrics, levels[0], slos)
    return [reliability(metrics, by, slos, idle_s, sums=sums) for by in levels]
