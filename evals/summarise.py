"""One row of documented figures per provider, joined from the provider-level frames of each question."""

from __future__ import annotations

import math
from datetime import date, datetime

import polars as pl

from parity.evals.figures import (
    BOOL_FIGURES,
    FIGURES,
    INT_FIGURES,
    LATENCY_METRICS,
    PAIRABLE,
    RELIABILITY_FIGURES,
    STR_FIGURES,
)
from parity.evals.metrics.stats import QUANTILES, pct_name
from parity.evals.metrics.timing import declare


def _dtype(name: str) -> pl.DataType:
    if name in BOOL_FIGURES:
        return pl.Boolean()
    if name in INT_FIGURES:
        return pl.Int64()
    if name in STR_FIGURES:
        return pl.Utf8()
    return pl.Float64()


def summarise(
    baseline: str,
    pct: pl.DataFrame,
    cmp: pl.DataFrame,
    rel: pl.DataFrame,
    cost: pl.DataFrame | None = None,
    breakeven: pl.DataFrame | None = None,
    quality: pl.DataFrame | None = None,
    compat: pl.DataFrame | None = None,
    judge: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per provider: every figure of ``FIGURES`` (null where it does not apply). Inputs are by provider."""
    providers = sorted(set(rel["provider"].to_list()))
    rows: dict[str, dict] = {p: {"provider": p, "is_baseline": p == baseline} for p in providers}

    def put(frame: pl.DataFrame | None, names: dict[str, str]) -> None:
        if frame is None or frame.is_empty():
            return
        for r in frame.iter_rows(named=True):
            if r["provider"] in rows:
                rows[r["provider"]].update({fig: r.get(col) for fig, col in names.items() if col in r})

    put(rel, {k: k for k in RELIABILITY_FIGURES} | {"n_success": "n_ok"})
    for r in pct.iter_rows(named=True):
        m, u, _ = LATENCY_METRICS[r["metric"]]
        for q in QUANTILES:
            p = pct_name(q)
            rows[r["provider"]].update(
                {f"{m}_{p}{u}{s}": r.get(f"{p}{s}") for s in ("", "_ci_low", "_ci_high", "_ci_reason")}
            )
    for r in cmp.iter_rows(named=True) if not cmp.is_empty() else []:
        m, u, _ = LATENCY_METRICS[r["metric"]]
        d = rows[r["provider"]]
        for q in QUANTILES:
            p = pct_name(q)
            for s in ("", "_ci_low", "_ci_high", "_ci_reason"):
                d[f"{m}_{p}_delta{u}{s}"] = r.get(f"{p}_delta{s}")
            d[f"{m}_{p}_delta_pct"] = r.get(f"{p}_delta_pct")
        if r["metric"] in PAIRABLE:
            for s in ("", "_ci_low", "_ci_high", "_adj_ci_low", "_adj_ci_high"):
                d[f"{m}_median_diff{u}{s}"] = r.get(f"median_diff{s}")
            d[f"{m}_adj_ci_level"] = r.get("adj_ci_level")
            d[f"{m}_p_value"] = r.get("p_value")
            d[f"{m}_p_adjusted"] = r.get("p_adjusted")
            d[f"{m}_test"] = r.get("test")
    _significance(rows, cmp, baseline)
    put(
        cost,
        {
            k: k
            for k in (
                "cost_total_usd",
                "cost_per_success_usd",
                "cost_per_1k_usd",
                "cost_priced_share",
                "cost_month_usd",
                "cost_month_basis",
                "cost_delta_pct",
                "cost_delta_basis",
                "cost_estimated_share",
            )
        },
    )
    _breakeven(rows, breakeven, baseline)
    qcols = [k for k in FIGURES if k in (quality.columns if quality is not None else [])]
    put(quality, {k: k for k in qcols if k not in ("n_cells", "n_success")})
    put(
        compat,
        {k: k for k in FIGURES if k.startswith("compat") and compat is not None and k in compat.columns},
    )
    put(judge, {k: k for k in FIGURES if k.startswith("judge_")})
    schema = {"provider": pl.Utf8()} | {k: _dtype(k) for k in FIGURES}
    clean = [{k: _clean(r.get(k)) for k in schema} for r in rows.values()]
    return pl.DataFrame(clean, schema=schema)


def _significance(rows: dict[str, dict], cmp: pl.DataFrame, baseline: str) -> None:
    for d in rows.values():
        if d["provider"] != baseline:
            d["significant_slower"] = False
            d["significant_faster"] = False
    for r in declare(cmp).iter_rows(named=True):
        if r["provider"] in rows:
            rows[r["provider"]].update(
                significant_slower=r["significant_slower"], significant_faster=r["significant_faster"]
            )


def _breakeven(rows: dict[str, dict], be: pl.DataFrame | None, baseline: str) -> None:
    if be is None or be.is_empty():
        return
    for prov, d in rows.items():
        if prov == baseline:
            continue
        sel = be.filter(
            ((pl.col("flat_provider") == prov) & (pl.col("token_provider") == baseline))
            | ((pl.col("flat_provider") == baseline) & (pl.col("token_provider") == prov))
        )
        if sel.is_empty():
            continue
        n = sel["n_requests"].sum()
        d["breakeven_traffic_share"] = (
            float((sel["share_flat_cheaper"] * sel["n_requests"]).sum() / n) if n else None
        )
        d["breakeven_prompt_tokens"] = sel.sort("n_requests", descending=True)["breakeven_prompt_tokens"][0]


def _clean(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def jsonable(v: object) -> object:
    """Make a value from a frame row JSON-safe (NaN/inf -> None, dates -> ISO text)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def rows(frame: pl.DataFrame | None) -> list[dict]:
    """A frame as a list of JSON-safe dicts."""
    return [] if frame is None else [jsonable(r) for r in frame.iter_rows(named=True)]
