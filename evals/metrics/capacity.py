"""Capacity sweeps: one row per provider and step (``sweep``), and each provider's capacity (``capacity``).

A sweep run (``parity replay --sweep``) stores its step in every results row's ``repeat`` as
``step * stride + reuse`` and its steps in the run config (``config["sweep"]``: the load asked, the
requests scheduled, when it started, the client's schedule lag). Pure functions over the cells.

Per step and provider: the offered rate (requests scheduled / step seconds; closed loop: none), the
achieved rate (successes / the longer of the step and the span of their completions: a provider that
cannot keep up takes longer than the step to answer what it was offered), latency percentiles of the
successes, error and 429 rates, goodput (share of the step's requests that succeeded within every SLO),
output tokens per second and the cost of 1,000 requests.

Capacity: scanning the steps by load, the highest offered rate of a *good* step (goodput at or above
the target, errors within the limit, achieved >= ``keep_up`` x offered, the client not the bottleneck)
before the first bad one; the true capacity lies in ``[max_rate, first_bad_rate)``. ``knee_rate`` is
the highest load whose median e2e stays within ``KNEE`` x the lightest step's.
"""

from __future__ import annotations

import polars as pl

from parity.evals.metrics.outcome import succeeded
from parity.evals.metrics.reliability import meets_slos

KNEE = 1.5  # latency has turned once the median e2e passes 1.5 x its value at the lightest step
DEFAULT_STRIDE = 100_000
DEFAULT_KEEP_UP = 0.9
PCTS = (0.5, 0.9, 0.99)

SWEEP_SCHEMA = {
    "provider": pl.Utf8,
    "step": pl.Int64,
    "by": pl.Utf8,
    "load": pl.Float64,
    "offered_rate": pl.Float64,
    "achieved_rate": pl.Float64,
    "requests": pl.Int64,
    "reused": pl.Int64,
    "n_ok": pl.Int64,
    "error_rate": pl.Float64,
    "rate_429": pl.Float64,
    "goodput_rate": pl.Float64,
    **{f"{m}_{_p}_ms": pl.Float64 for m in ("ttft", "tpot", "itl", "e2e") for _p in ("p50", "p90", "p99")},
    "output_tokens_per_s": pl.Float64,
    "cost_per_1k_usd": pl.Float64,
    "schedule_lag_p99_ms": pl.Float64,
    "client_bound": pl.Boolean,
    "good": pl.Boolean,
    "why": pl.Utf8,
}
CAPACITY_SCHEMA = {
    "provider": pl.Utf8,
    "by": pl.Utf8,
    "target": pl.Float64,
    "max_rate": pl.Float64,
    "max_load": pl.Float64,
    "first_bad_rate": pl.Float64,
    "first_bad_load": pl.Float64,
    "first_bad_why": pl.Utf8,
    "bounded": pl.Boolean,
    "knee_rate": pl.Float64,
    "peak_achieved_rate": pl.Float64,
    "goodput_at_max": pl.Float64,
    "e2e_p50_at_max_ms": pl.Float64,
    "cost_per_1k_at_max_usd": pl.Float64,
    "cost_per_hour_at_max_usd": pl.Float64,
    "steps": pl.Int64,
    "client_bound_steps": pl.Int64,
}
# the per-provider summary figures (``parity check`` reads them as capacity.NAME)
SUMMARY = (
    "max_rate",
    "first_bad_rate",
    "knee_rate",
    "peak_achieved_rate",
    "goodput_at_max",
    "cost_per_1k_at_max_usd",
)


def sweep_of(config: dict) -> dict | None:
    """The run's sweep description, None when the run is not a sweep."""
    sw = (config or {}).get("sweep")
    return sw if isinstance(sw, dict) else None


def sweep_rows(metrics: pl.DataFrame, config: dict, slos: dict[str, float], baseline: str) -> pl.DataFrame:
    """One row per provider and step (empty when the run is not a sweep); see the module docstring."""
    sw = sweep_of(config)
    if sw is None or metrics.is_empty():
        return pl.DataFrame(schema=SWEEP_SCHEMA)
    stride = int(sw.get("stride") or DEFAULT_STRIDE)
    seconds = float(sw.get("step_seconds") or 0) or None
    slos = slos or sw.get("slos") or {}
    target = float(sw.get("target") or 0.95)
    max_err = float(sw.get("max_error_rate") if sw.get("max_error_rate") is not None else 0.05)
    keep_up = float(sw.get("keep_up") or DEFAULT_KEEP_UP)
    by = sw.get("by") or "rate"
    steps = {int(s["step"]): s for s in sw.get("steps") or []}
    ok = succeeded()
    good = meets_slos(slos, metrics.columns)
    cells = metrics.filter(pl.col("provider") != baseline).with_columns(
        (pl.col("repeat") // stride).cast(pl.Int64).alias("step"),
        (pl.col("repeat") % stride).alias("_reuse"),
        (pl.col("started_at") + pl.duration(milliseconds=pl.col("latency_ms").fill_null(0))).alias("_end"),
        ok.alias("_ok"),
        good.fill_null(False).alias("_good"),
    )
    if "itl_mean_ms" in cells.columns:
        cells = cells.with_columns(pl.when(pl.col("_ok")).then(pl.col("itl_mean_ms")).alias("itl_ms"))
    else:
        cells = cells.with_columns(pl.lit(None, pl.Float64).alias("itl_ms"))
    pct = [
        pl.col(m)
        .filter(pl.col("_ok"))
        .quantile(q, "nearest")
        .alias(f"{m.removesuffix('_ms')}_p{round(q * 100)}_ms")
        for m in ("ttft_ms", "tpot_ms", "itl_ms", "e2e_ms")
        for q in PCTS
    ]
    span_s = (
        pl.col("_end").filter(pl.col("_ok")).max() - pl.col("_end").filter(pl.col("_ok")).min()
    ).dt.total_milliseconds() / 1000.0
    agg = (
        cells.group_by("provider", "step")
        .agg(
            pl.len().alias("requests"),
            (pl.col("_reuse") > 0).sum().alias("reused"),
            pl.col("_ok").sum().alias("n_ok"),
            pl.col("saw_429").fill_null(False).mean().alias("rate_429"),
            pl.col("_good").mean().alias("goodput_rate"),
            *pct,
            span_s.alias("_span"),
            pl.col("completion_tokens").filter(pl.col("_ok")).sum().alias("_tokens"),
            pl.col("cost_usd").mean().alias("_cost"),
            pl.col("started_at").min().alias("_first"),
            pl.col("started_at").filter(pl.col("_ok")).max().alias("_last_start"),
        )
        .sort("provider", "step")
    )
    out = []
    for r in agg.iter_rows(named=True):
        st = steps.get(r["step"], {})
        secs = float(st.get("seconds") or seconds or 0) or None
        if secs is None:  # no step length stored: the span the step's requests were sent over
            first, last = r["_first"], r["_last_start"]
            secs = max((last - first).total_seconds(), 1e-3) if first and last else None
        window = max(secs or 0.0, r["_span"] or 0.0) or None
        offered = st.get("offered_rate")
        if offered is None and by == "rate" and secs:
            offered = r["requests"] / secs  # a run killed before its steps were written
        achieved = r["n_ok"] / window if window else None
        err = 1.0 - r["n_ok"] / r["requests"] if r["requests"] else None
        row = {
            "provider": r["provider"],
            "step": r["step"],
            "by": by,
            "load": st.get("load"),
            "offered_rate": offered,
            "achieved_rate": achieved,
            "requests": r["requests"],
            "reused": r["reused"],
            "n_ok": r["n_ok"],
            "error_rate": err,
            "rate_429": r["rate_429"],
            "goodput_rate": r["goodput_rate"],
            **{k: r[k] for k in SWEEP_SCHEMA if k in r and k.endswith(("_p50_ms", "_p90_ms", "_p99_ms"))},
            "output_tokens_per_s": (r["_tokens"] or 0) / window if window else None,
            "cost_per_1k_usd": None if r["_cost"] is None else r["_cost"] * 1000.0,
            "schedule_lag_p99_ms": st.get("lag_p99_ms"),
            "client_bound": bool(st.get("client_bound")),
        }
        row["good"], row["why"] = _verdict(row, target, max_err, keep_up)
        out.append(row)
    if by == "concurrency":
        _flat(out)
    df = pl.DataFrame(out, schema=SWEEP_SCHEMA)
    if df["load"].is_null().any():  # steps the config does not describe: the offered rate is their load
        df = df.with_columns(pl.coalesce("load", "offered_rate").alias("load"))
    return df


def _flat(rows: list[dict]) -> None:
    """Closed loop: a step whose throughput grew less than 10% over the last good lighter step is
    saturated (more in flight only queues), as the auto sweep judges it live."""
    last: dict[str, float] = {}
    for r in sorted(rows, key=lambda r: (r["provider"], r["load"] or 0.0)):
        prev, got = last.get(r["provider"]), r["achieved_rate"]
        if r["good"] and prev is not None and (got or 0.0) < 1.1 * prev:
            r["good"], r["why"] = (
                False,
                f"throughput flat: {got or 0:.2f}/s, {prev:.2f}/s with fewer in flight",
            )
        if r["good"]:
            last[r["provider"]] = got or 0.0


def _verdict(row: dict, target: float, max_err: float, keep_up: float) -> tuple[bool, str]:
    if row["client_bound"]:
        return False, "client-bound: the load was not really offered"
    if row["error_rate"] is not None and row["error_rate"] > max_err:
        return False, f"errors {row['error_rate']:.1%} > {max_err:.0%}"
    if row["goodput_rate"] is None or row["goodput_rate"] < target:
        return False, f"goodput {row['goodput_rate'] or 0:.1%} < {target:.0%}"
    off, ach = row["offered_rate"], row["achieved_rate"]
    if off and (ach is None or ach < keep_up * off):
        return False, f"achieved {ach or 0:.2f}/s < {keep_up:.0%} of offered {off:.2f}/s"
    return True, "ok"


def capacity_rows(sweep: pl.DataFrame, config: dict) -> pl.DataFrame:
    """Per provider: the highest good offered rate before the first bad step, its bracket and knee."""
    if sweep.is_empty():
        return pl.DataFrame(schema=CAPACITY_SCHEMA)
    sw = sweep_of(config) or {}
    target = float(sw.get("target") or 0.95)
    out = []
    for (prov,), g in sweep.sort("load", "step").group_by("provider", maintain_order=True):
        rows = g.to_dicts()
        by = rows[0]["by"]
        rate = (lambda r: r["offered_rate"]) if by == "rate" else (lambda r: r["achieved_rate"])
        last_good = first_bad = None
        for r in rows:
            if r["good"]:
                last_good = r
            else:
                first_bad = r
                break
        e2e = [r["e2e_p50_ms"] for r in rows]
        base = next((v for v in e2e if v is not None), None)
        knee = None
        if base is not None:
            for r in rows:
                if r["e2e_p50_ms"] is not None and r["e2e_p50_ms"] > KNEE * base:
                    break
                knee = r
        max_rate = rate(last_good) if last_good else 0.0
        cost = last_good["cost_per_1k_usd"] if last_good else None
        out.append(
            {
                "provider": prov,
                "by": by,
                "target": target,
                "max_rate": max_rate,
                "max_load": last_good["load"] if last_good else None,
                "first_bad_rate": rate(first_bad) if first_bad and by == "rate" else None,
                "first_bad_load": first_bad["load"] if first_bad else None,
                "first_bad_why": first_bad["why"] if first_bad else None,
                "bounded": first_bad is not None,
                "knee_rate": rate(knee) if knee else None,
                "peak_achieved_rate": max((r["achieved_rate"] or 0.0) for r in rows),
                "goodput_at_max": last_good["goodput_rate"] if last_good else None,
                "e2e_p50_at_max_ms": last_good["e2e_p50_ms"] if last_good else None,
                "cost_per_1k_at_max_usd": cost,
                "cost_per_hour_at_max_usd": None
                if cost is None or not max_rate
                else cost / 1000 * max_rate * 3600,
                "steps": len(rows),
                "client_bound_steps": sum(1 for r in rows if r["client_bound"]),
            }
        )
    return pl.DataFrame(out, schema=CAPACITY_SCHEMA)


def fill_summary(summary: pl.DataFrame, capacity: pl.DataFrame | None) -> pl.DataFrame:
    """The summary with its ``capacity.*`` figures set from the capacity rows (null for other providers)."""
    if capacity is None or capacity.is_empty():
        return summary
    fill = capacity.select("provider", *[pl.col(k).cast(pl.Float64).alias(f"_{k}") for k in SUMMARY])
    return (
        summary.join(fill, on="provider", how="left")
        .with_columns(pl.col(f"_{k}").alias(f"capacity.{k}") for k in SUMMARY)
        .drop([f"_{k}" for k in SUMMARY])
    )


def at_rate(sweep: pl.DataFrame, provider: str, rate: float) -> dict | None:
    """The provider's lightest step offering at least ``rate`` (the cost and latency at the rate you need)."""
    sel = sweep.filter((pl.col("provider") == provider) & (pl.col("offered_rate") >= rate)).sort(
        "offered_rate"
    )
    return sel.row(0, named=True) if sel.height else None
