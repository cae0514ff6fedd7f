"""A label and the interval beside it come from one procedure: where the unadjusted 95% interval
excludes 0 but the family-wise test does not reject, the label says "not significant" and the
interval shown (the family-wise one) contains 0; the minimum sample size in "no CI" reasons."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from parity.evals.metrics import stats, timing
from parity.evals.report import data as report_data
from parity.evals.report.verdict import cost_cell, latency_median_cell

ALPHA = stats.ALPHA


def _borderline_arms(n_candidates: int, n: int = 40, up: int = 27) -> pl.DataFrame:
    """A baseline and ``n_candidates`` providers whose TTFT and E2E exceed the baseline's on
    ``up`` of ``n`` paired requests: a sign test p between alpha / (2 x n_candidates) and alpha."""
    rows = []
    base = 300.0 + np.arange(n)
    for p in ["recorded", *[f"c{i}" for i in range(n_candidates)]]:
        if p == "recorded":
            d = np.zeros(n)
        else:
            d = np.where(np.arange(n) < up, 5.0, -5.0) + 0.01 * np.arange(n)  # distinct, no zeros
        rows.append(
            pl.DataFrame(
                {
                    "provider": p,
                    "endpoint": "chat.completions",
                    "model": "m",
                    "exchange_id": [f"e{i}" for i in range(n)],
                    "repeat": 0,
                    "ttft_ms": base + d,
                    "tpot_ms": np.full(n, 10.0),
                    "e2e_ms": base * 3 + d,
                    "output_tps": np.full(n, 50.0),
                }
            )
        )
    return pl.concat(rows)


def test_latency_label_and_interval_agree_where_only_the_unadjusted_interval_excludes_zero():
    k = 3
    cmp = timing.compare(_borderline_arms(k), pl.DataFrame(), "recorded", by=["provider"])
    primary = cmp.filter(pl.col("metric").is_in(list(timing.PRIMARY)))
    assert primary.height == 2 * k
    for r in primary.iter_rows(named=True):
        # the situation of the issue: unadjusted p < 0.05 and its 95% interval excludes 0 ...
        assert r["test"] == "sign" and r["p_value"] < ALPHA
        assert r["median_diff_ci_low"] > 0
        # ... but the family (k providers x TTFT, E2E) does not reject
        assert r["family_size"] == 2 * k and r["adjustment"] == "bonferroni"
        assert r["adj_ci_level"] == pytest.approx(1 - ALPHA / (2 * k))
        assert r["p_adjusted"] == pytest.approx(min(1.0, 2 * k * r["p_value"]))
        assert r["p_adjusted"] >= ALPHA
        # label and the interval shown with it agree: not significant, interval covers 0
        assert not r["significant"] and not r["slower"]
        assert r["median_diff_adj_ci_low"] <= 0 <= r["median_diff_adj_ci_high"]
    assert not any(timing.declare(cmp)["significant_slower"])
    # the report cell reads the same figures: grey, with the family-wise interval
    from parity.evals.summarise import summarise

    rel = pl.DataFrame({"provider": ["recorded", *[f"c{i}" for i in range(k)]]})
    s = {r["provider"]: r for r in summarise("recorded", pl.DataFrame(), cmp, rel).iter_rows(named=True)}
    cell = latency_median_cell(s["c0"], "ttft", "TTFT")
    assert cell.tone == "same" and cell.sub.startswith("family-wise CI −")
    assert s["c0"]["significant_slower"] is False


def test_with_one_candidate_the_same_data_is_significant_and_its_interval_excludes_zero():
    cmp = timing.compare(_borderline_arms(1), pl.DataFrame(), "recorded", by=["provider"])
    for r in cmp.filter(pl.col("metric").is_in(list(timing.PRIMARY))).iter_rows(named=True):
        assert r["family_size"] == 2
        assert (r["p_adjusted"] < ALPHA) == (r["median_diff_adj_ci_low"] > 0) == r["slower"]


@pytest.mark.parametrize("seed", range(40))
def test_adjusted_label_is_the_adjusted_interval_excluding_zero(seed):
    """Random families, paired and unpaired: significant exactly when the adjusted interval excludes 0."""
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(1, 5)), int(rng.integers(12, 80))
    rows = []
    for i, p in enumerate(["recorded", *[f"c{j}" for j in range(k)]]):
        shift = 0.0 if i == 0 else rng.normal(0, 15)
        ids = [f"e{j}" for j in range(n)] if seed % 3 or i == 0 else [f"x{j}" for j in range(n)]  # unpaired
        v = rng.lognormal(np.log(300), 0.3, n) + shift
        rows.append(
            pl.DataFrame(
                {
                    "provider": p,
                    "endpoint": "chat.completions",
                    "model": "m",
                    "exchange_id": ids,
                    "repeat": 0,
                    "ttft_ms": v,
                    "tpot_ms": v / 30,
                    "e2e_ms": v * 3,
                    "output_tps": 3000 / v,
                }
            )
        )
    cmp = timing.compare(pl.concat(rows), pl.DataFrame(), "recorded", by=["provider"])
    for r in cmp.iter_rows(named=True):
        if r["p_value"] is None:
            continue
        lo, hi = r["median_diff_adj_ci_low"], r["median_diff_adj_ci_high"]
        excludes = (lo is not None and lo > 0) or (hi is not None and hi < 0)
        assert r["significant"] == excludes, r
        lo, hi = r["median_diff_ci_low"], r["median_diff_ci_high"]
        excludes = (lo is not None and lo > 0) or (hi is not None and hi < 0)
        assert (r["p_value"] < ALPHA) == excludes, r


def _cost_frames(k: int, n: int = 100) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Baseline cost 1.0 per exchange; ``k`` candidates at 0.95 +/- 0.227: z ~ 2.2, p ~ 0.03."""
    e = np.where(np.arange(n) % 2 == 0, 0.227, -0.227)
    cost, met = [], []
    for p in ["recorded", *[f"c{i}" for i in range(k)]]:
        c = np.ones(n) if p == "recorded" else 0.95 + e
        ids = [f"e{i}" for i in range(n)]
        cost.append(
            pl.DataFrame(
                {"provider": p, "exchange_id": ids, "status": 200, "error_type": None, "cost_usd": c}
            )
        )
        met.append(
            pl.DataFrame({"provider": p, "exchange_id": ids, "repeat": 0, "status": 200, "error_type": None})
        )
    return pl.concat(met, how="vertical_relaxed"), pl.concat(cost, how="vertical_relaxed")


def test_cost_label_and_interval_agree_where_only_the_unadjusted_interval_excludes_zero():
    metrics, costs = _cost_frames(3)
    tests = report_data.verdict_tests(metrics, costs, "recorded")
    for p in ("c0", "c1", "c2"):
        t = tests[p]["cost"]
        assert t["p_value"] < ALPHA and t["delta_pct_ci_high"] < 0  # unadjusted: excludes 0
        assert t["p_adjusted"] == pytest.approx(3 * t["p_value"]) and t["p_adjusted"] >= ALPHA
        assert t["adj_ci_level"] == pytest.approx(1 - ALPHA / 3)
        assert t["delta_pct_adj_ci_low"] <= 0 <= t["delta_pct_adj_ci_high"]
        assert t["tone"] == "same"
        row = {"cost_per_success_usd": 0.95, "cost_per_1k_usd": 950.0, "cost_delta_pct": t["delta_pct"]}
        cell = cost_cell(row, t)
        assert cell.tone == "same" and "family-wise 95% CI" in cell.title
    # one provider: a family of one, the same data is significant and its interval excludes 0
    metrics, costs = _cost_frames(1)
    t = report_data.verdict_tests(metrics, costs, "recorded")["c0"]["cost"]
    assert t["tone"] == "better" and t["delta_pct_adj_ci_high"] < 0


@pytest.mark.parametrize("q", stats.QUANTILES)
def test_min_n_is_the_first_sample_size_whose_interval_has_both_bounds(q):
    need = stats.min_n_bounded(q)
    n = np.arange(1, need + 1)
    lo, hi = stats.quantile_ranks(n, q)
    bounded = (lo < n) & (hi < n)
    assert bounded[-1] and not bounded[:-1].any()
    # larger samples stay bounded (the order statistics move inward)
    m = np.arange(need, need * 4)
    lo, hi = stats.quantile_ranks(m, q)
    assert ((lo < m) & (hi < m)).all()
    assert stats.ci_reason(need, q) is None
    reason = stats.ci_reason(need - 1, q)
    assert (
        reason
        == f"{need - 1} requests: too few for a 95% interval on {stats.pct_name(q)}; need at least {need}"
    )


def test_percentile_rows_say_why_an_interval_has_no_bound():
    n = 12
    df = pl.DataFrame(
        {"provider": "p", "endpoint": "e", "model": "m", "ttft_ms": np.arange(n, dtype=float) + 100}
    )
    df = df.with_columns(
        pl.col("ttft_ms").alias("e2e_ms"),
        pl.lit(None, pl.Float64).alias("tpot_ms"),
        pl.lit(None, pl.Float64).alias("output_tps"),
    )
    pct = timing.percentiles(df)
    row = pct.filter(pl.col("metric") == "ttft_ms").row(0, named=True)
    assert row["p50_ci_reason"] is None and row["p50_ci_low"] is not None
    assert row["p95_ci_high"] is None
    assert (
        row["p95_ci_reason"]
        == f"12 requests: too few for a 95% interval on p95; need at least {stats.min_n_bounded(0.95)}"
    )
