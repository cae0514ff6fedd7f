"""Statistics against ground truth: coverage, known values, and the A/A false-positive rate."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from scipy import stats as sps

from parity.evals import load
from parity.evals.metrics import stats, timing

pytestmark = pytest.mark.e2e  # starts processes or servers: make test-fast skips it


def test_quantile_table_matches_numpy_and_covers():
    rng = np.random.default_rng(0)
    x = rng.lognormal(5, 0.5, 500)
    t = stats.quantile_table(pl.DataFrame({"g": ["a"] * 500, "v": x}), ["g"], "v")
    for q in stats.QUANTILES:
        p = stats.pct_name(q)
        assert t[p][0] == pytest.approx(np.quantile(x, q))
        assert t[f"{p}_ci_low"][0] <= t[p][0] <= t[f"{p}_ci_high"][0]
    # coverage of the true median/p95 over repeated samples (exact intervals: >= 95% up to noise)
    true = {0.5: np.exp(5), 0.95: np.exp(5 + 0.5 * 1.6448536)}
    hits = {q: 0 for q in true}
    reps = 300
    for seed in range(reps):
        s = np.sort(np.random.default_rng(seed).lognormal(5, 0.5, 200))
        for q, truth in true.items():
            lo, hi = stats.quantile_ranks(np.array([200]), q)
            hits[q] += s[lo[0]] <= truth <= s[hi[0]]
    for q, h in hits.items():
        assert h / reps >= 0.92, (q, h / reps)


def test_unsupported_bound_is_null():
    t = stats.quantile_table(pl.DataFrame({"g": ["a"] * 20, "v": np.arange(20.0)}), ["g"], "v", qs=[0.99])
    assert t["p99_ci_high"][0] is None  # 20 values cannot bound a p99 from above
    assert t["p99_ci_low"][0] is not None


def test_holm_and_wilson_known_values():
    adj = stats.holm(np.array([0.01, 0.04, 0.03, 0.005, np.nan]))
    assert adj[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(adj[4])
    lo, hi = stats.wilson(np.array([5]), np.array([10]))
    assert (lo[0], hi[0]) == pytest.approx((0.2366, 0.7634), abs=1e-4)


@pytest.mark.parametrize("n", [20, 60, 5000])
def test_wilcoxon_matches_scipy(n):
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(n)
    d = np.round(rng.normal(0.3, 2.0, n), 1)  # rounded: ties and zeros on purpose
    want = wilcoxon(d[d != 0], zero_method="wilcox", method="approx" if n > 50 else "auto").pvalue
    assert stats.wilcoxon_p(d) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("sizes", [(40, 30), (600, 7), (7, 600), (3000, 2500), (2500, 3000), (4, 50_000)])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_mann_whitney_matches_scipy(sizes, alternative):
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(sizes[0])
    a = np.round(rng.lognormal(0.1, 1.0, sizes[0]), 1)  # rounded: ties on purpose
    b = np.round(rng.lognormal(0.0, 1.0, sizes[1]), 1)
    method = "asymptotic" if max(sizes) > 500 else "auto"
    want = mannwhitneyu(a, b, alternative=alternative, method=method).pvalue
    assert stats.mann_whitney(a, b, alternative) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("sizes", [(5, 20_000), (20_000, 5), (900, 1100)])
def test_mann_whitney_without_ties_matches_scipy(sizes):
    """Continuous values: the path that never counts the pooled sample."""
    from scipy.stats import mannwhitneyu

    rng = np.random.default_rng(sizes[1])
    a, b = rng.lognormal(0.2, 1.0, sizes[0]), rng.lognormal(0.0, 1.0, sizes[1])
    for alt in ("two-sided", "greater", "less"):
        want = mannwhitneyu(a, b, alternative=alt, method="asymptotic").pvalue
        assert stats.mann_whitney(a, b, alt) == pytest.approx(want, rel=1e-9)


def test_clustered_quantile_interval_covers_where_token_counting_does_not():
    """Tokens of one request share its speed: Woodruff with request clusters keeps ~95% coverage."""
    reps, r, per = 200, 60, 40
    truth_rng = np.random.default_rng(99)
    big = np.exp(truth_rng.normal(0, 0.5, 200_000) + truth_rng.normal(0, 0.2, 200_000))
    truth = np.median(big)
    ours = naive = 0
    for seed in range(reps):
        rng = np.random.default_rng(seed)
        level = rng.normal(0, 0.5, r)  # per-request speed
        vals = np.exp(np.repeat(level, per) + rng.normal(0, 0.2, r * per))
        cl = np.repeat(np.arange(r), per)
        _, lo, hi = stats.clustered_quantiles(vals, cl, [0.5])
        ours += lo[0] <= truth <= hi[0]
        s = np.sort(vals)
        a, b = stats.quantile_ranks(np.array([len(s)]), 0.5)
        naive += s[a[0]] <= truth <= s[b[0]]
    print(
        f"median CI coverage over {reps} clustered samples: clustered {ours / reps:.2f}, token-iid {naive / reps:.2f}"
    )
    assert ours / reps >= 0.88
    assert naive / reps < 0.6


def _arms(seed: int, n: int, shift_ms: float) -> pl.DataFrame:
    """Per-request metrics of a baseline and a candidate answering the same n requests."""
    rng = np.random.default_rng(seed)
    difficulty = rng.lognormal(np.log(300), 0.4, n)
    tokens = rng.integers(20, 200, n).astype(float)
    rows = []
    for p, shift in (("recorded", 0.0), ("cand", shift_ms)):
        ttft = difficulty * rng.lognormal(0, 0.25, n) + shift
        itl = rng.lognormal(np.log(20), 0.2, n)
        e2e = ttft + itl * (tokens - 1)
        rows.append(
            pl.DataFrame(
                {
                    "provider": p,
                    "endpoint": "chat.completions",
                    "model": "m",
                    "exchange_id": [f"e{i}" for i in range(n)],
                    "repeat": 0,
                    "ttft_ms": ttft,
                    "tpot_ms": itl,
                    "e2e_ms": e2e,
                    "output_tps": tokens / e2e * 1000,
                }
            )
        )
    return pl.concat(rows)


def test_provider_30ms_slower_is_found_with_ci_excluding_zero():
    m = _arms(seed=1, n=400, shift_ms=30.0)
    cmp = timing.compare(m, pl.DataFrame(), "recorded", by=["provider"])
    ttft = cmp.filter(pl.col("metric") == "ttft_ms").row(0, named=True)
    assert ttft["test"] == "sign"
    assert ttft["median_diff_ci_low"] > 0
    assert ttft["median_diff_ci_low"] <= 30.0 <= ttft["median_diff_ci_high"]
    assert ttft["slower"]
    assert timing.declare(cmp).row(0, named=True)["significant_slower"]


def test_aa_false_positive_rate_over_400_seeds():
    """Two identical profiles: 'declared different' (significant_slower or _faster) in <= ~5% of runs."""
    seeds = 400
    declared = 0
    median_ci_misses = 0
    for seed in range(seeds):
        cmp = timing.compare(
            _arms(seed=1000 + seed, n=120, shift_ms=0.0), pl.DataFrame(), "recorded", by=["provider"]
        )
        d = timing.declare(cmp).row(0, named=True)
        declared += d["significant_slower"] or d["significant_faster"]
        t = cmp.filter(pl.col("metric") == "ttft_ms").row(0, named=True)
        median_ci_misses += not (t["median_diff_ci_low"] <= 0 <= t["median_diff_ci_high"])
    rate = declared / seeds
    print(
        f"A/A: declared different in {declared}/{seeds} seeds = {rate:.3f}; ttft median-diff CI excluded 0 in {median_ci_misses}/{seeds}"
    )
    # 5% nominal; 400 seeds put the binomial noise at +-1.1 points
    assert rate <= 0.075
    assert median_ci_misses / seeds <= 0.075


def test_pairs_by_the_integer_exchange_key_match_pairs_by_id_and_repeat():
    """Loaded cells pair on one integer per (exchange, repeat); notebooks' frames on the id."""
    m = pl.concat([_arms(seed=5, n=50, shift_ms=3.0).with_columns(pl.lit(r).alias("repeat")) for r in (0, 1)])
    m = m.filter(
        ~((pl.col("provider") == "cand") & (pl.col("exchange_id") == "e7") & (pl.col("repeat") == 1))
    )
    by_id = timing.pair_differences(m, "recorded", by=["provider"])
    by_xid = timing.pair_differences(m.with_columns(load.xid_of().alias("xid")), "recorded", by=["provider"])
    assert by_id.height == by_xid.height == 99
    assert by_id.sort(by_id.columns).equals(by_xid.sort(by_xid.columns))


def test_unpaired_fallback_when_exchanges_do_not_overlap():
    m = _arms(seed=3, n=100, shift_ms=0.0)
    m = m.with_columns(
        pl.when(pl.col("provider") == "cand")
        .then(pl.col("exchange_id") + "x")
        .otherwise(pl.col("exchange_id"))
    )
    cmp = timing.compare(m, pl.DataFrame(), "recorded", by=["provider"])
    row = cmp.filter(pl.col("metric") == "ttft_ms").row(0, named=True)
    assert row["test"] == "mover"
    assert row["n_pairs"] == 0
    assert 0.0 <= row["ks_p_value"] <= 1.0


def _clustered_by_sorting(v, c, qs, alpha=0.05):
    """The textbook form of ``stats.clustered_quantiles``: sort, count clusters below, map back."""
    from scipy.stats import norm

    r = int(c.max()) + 1
    lens = np.bincount(c, minlength=r).astype(float)
    order = np.argsort(v, kind="stable")
    sv, n = v[order], float(len(v))
    est = np.quantile(sv, qs)
    lo, hi = np.full(len(qs), np.nan), np.full(len(qs), np.nan)
    z = norm.ppf(1 - alpha / 2)
    for i, q in enumerate(qs):
        k = int(np.searchsorted(sv, est[i], side="right"))
        below = np.bincount(c[order[:k]], minlength=r).astype(float)
        se = np.sqrt(r / (r - 1) * np.sum((below - k / n * lens) ** 2)) / n
        if q - z * se >= 0:
            lo[i] = sv[max(0, int(np.ceil((q - z * se) * n)) - 1)]
        if q + z * se <= 1:
            hi[i] = sv[min(len(sv) - 1, int(np.ceil((q + z * se) * n)))]
    return est, lo, hi


def test_clustered_quantiles_select_what_sorting_would():
    rng = np.random.default_rng(11)
    qs = [0.5, 0.9, 0.95, 0.99]
    for trial in range(60):
        lens = rng.integers(0, 25, int(rng.integers(2, 50)))
        if lens.sum() == 0:
            continue
        v = np.round(rng.lognormal(3, 0.5, lens.sum()), int(trial % 3))  # ties on some trials
        c = np.repeat(np.arange(len(lens)), lens)
        for got, want in zip(
            stats.clustered_quantiles(v, c, qs), _clustered_by_sorting(v, c, qs), strict=True
        ):
            assert np.array_equal(got, want, equal_nan=True), trial


def test_rank_tests_with_ties_only_across_samples_match_scipy():
    """Distinct values within each side, but some |negative| equals a positive (and some value of
    one sample is in the other): the tie corrections must still be made."""
    from scipy.stats import mannwhitneyu, wilcoxon

    rng = np.random.default_rng(8)
    d = rng.normal(0.1, 1.0, 3000)
    d[:40] = -d[40:80]  # mirrored pairs: |d| ties across signs only
    want = wilcoxon(d, zero_method="wilcox", method="approx").pvalue
    assert stats.wilcoxon_p(d) == pytest.approx(want, rel=1e-9)
    assert stats.wilcoxon_p(np.sort(d), presorted=True) == pytest.approx(want, rel=1e-9)
    a, b = rng.lognormal(0.1, 1.0, 900), rng.lognormal(0.0, 1.0, 1200)
    a[:25] = b[:25]
    want = mannwhitneyu(a, b, method="asymptotic").pvalue
    assert stats.mann_whitney(a, b) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("shift", [0.0, 0.05])
def test_wilcoxon_without_ties_matches_scipy(shift):
    from scipy.stats import wilcoxon

    d = np.random.default_rng(3).normal(shift, 1.0, 4000)  # continuous: the sort-and-search path
    want = wilcoxon(d, zero_method="wilcox", method="approx").pvalue
    assert stats.wilcoxon_p(d) == pytest.approx(want, rel=1e-9)


def test_merged_quantiles_select_what_sorting_the_coarse_groups_gives():
    """Provider-level percentiles from the finer groups' sorted runs (partitioned, not merged)
    equal those of sorting each provider's values."""
    rng = np.random.default_rng(21)
    n = 4000
    df = pl.DataFrame(
        {
            "provider": rng.choice(["a", "b", "c"], n),
            "endpoint": rng.choice(["chat", "emb", "resp"], n),
            "v": np.round(rng.lognormal(5, 1, n), 0),  # ties
            "w": np.where(rng.random(n) < 0.2, np.nan, rng.normal(0, 1, n)),  # some not finite
        }
    ).with_columns(pl.when(pl.col("v") > 400).then(None).otherwise(pl.col("v")).alias("v"))
    fine = stats.value_groups(df, ["provider", "endpoint"], ["v", "w"])
    got = stats.merged_quantiles(fine, ["provider"], ["v", "w"])
    want = stats.quantile_tables(df, ["provider"], ["v", "w"])
    for v in ("v", "w"):
        assert got[v].sort("provider").equals(want[v].sort("provider")), v


def test_ks_method_is_chosen_and_never_warns():
    """Exact below n_a * n_b = 10,000 (R's line), asymptotic above: never scipy's warned fallback."""
    rng = np.random.default_rng(3)
    small_a, small_b = rng.normal(size=40), rng.normal(size=60) + 0.5
    big_a, big_b = rng.lognormal(size=2500), rng.lognormal(size=1700) * 1.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stats.ks_p(small_a, small_b) == sps.ks_2samp(small_a, small_b, method="exact").pvalue
        assert stats.ks_p(big_a, big_b) == sps.ks_2samp(big_a, big_b, method="asymp").pvalue
        assert stats.unpaired_test(big_a, big_b)["ks_p_value"] < 1e-6
