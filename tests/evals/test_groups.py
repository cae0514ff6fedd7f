"""The hashed group key changes no result: every keyed path equals the plain group-by."""

from __future__ import annotations

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from parity.evals.metrics import groups, reliability, stats, timing

BY = ["provider", "endpoint", "model"]


def _frame(n: int = 3000) -> pl.DataFrame:
    rng = np.random.default_rng(4)
    pick = lambda xs: [xs[i] for i in rng.integers(0, len(xs), n)]  # noqa: E731
    return pl.DataFrame(
        {
            "provider": pick(["recorded", "alpha", "beta"]),
            "endpoint": pick(["chat.completions", "responses", None]),  # a null group value too
            "model": pick(["gpt-4o", "gpt-4o-mini"]),
            "v": rng.lognormal(5, 1, n),
        }
    )


def test_agg_and_partition_by_key_equal_the_plain_ones():
    df = _frame()
    keyed = groups.with_key(df, BY)
    assert groups.key_name(BY) in keyed.columns
    aggs = (pl.len().alias("n"), pl.col("v").sum().alias("s"))
    want = df.group_by(BY).agg(*aggs).sort(BY, nulls_last=True)
    got = groups.agg(keyed, BY, *aggs).sort(BY, nulls_last=True)
    assert_frame_equal(got, want)
    assert groups.key_name(BY) not in got.columns
    lazy = groups.agg(keyed.lazy(), BY, *aggs).collect().sort(BY, nulls_last=True)
    assert_frame_equal(lazy, want)
    plain = df.partition_by(BY, as_dict=True)
    parts = groups.partition(keyed, BY)
    assert set(parts) == set(plain)
    for k, part in parts.items():
        assert_frame_equal(part.sort("v"), plain[k].sort("v"))
    # a key for other columns is not used for these
    other = groups.with_key(df, ["provider", "model"])
    assert_frame_equal(groups.agg(other, BY, *aggs).sort(BY, nulls_last=True), want)


def test_timing_functions_give_the_same_tables_with_the_key():
    df = _frame().with_columns(
        pl.col("v").alias("ttft_ms"),
        (pl.col("v") * 3).alias("latency_ms"),
        pl.lit(200).alias("status"),
        pl.lit(None, pl.Utf8).alias("error_type"),
        pl.lit(40).alias("completion_tokens"),
        pl.lit(False).alias("saw_429"),
        pl.lit(1).alias("attempts"),
        pl.lit(0.0).alias("rate_limit_wait_ms"),
        pl.lit(False).alias("tokens_estimated"),
    )
    m = timing.request_metrics(df)
    keyed = groups.with_key(m, BY)
    names = list(timing.METRICS)
    assert_frame_equal(
        stats.value_groups(keyed, BY, names).sort(BY, nulls_last=True),
        stats.value_groups(m, BY, names).sort(BY, nulls_last=True),
    )
    assert_frame_equal(
        reliability.reliability_sums(keyed, BY).sort(BY, nulls_last=True),
        reliability.reliability_sums(m, BY).sort(BY, nulls_last=True),
    )


def test_itl_percentiles_per_group_equal_each_group_alone():
    """Groups read as slices of one flattened array give what each group's own tokens give,
    with a null group value and a non-finite token among them."""
    rng = np.random.default_rng(9)
    rows = []
    for i in range(300):
        n = int(rng.integers(1, 30))
        vals = list(rng.lognormal(3, 0.4, n))
        if i == 7:
            vals[0] = float("nan")
        rows.append(
            {
                "provider": ["a", "b"][i % 2],
                "endpoint": "chat.completions",
                "model": [None, "m1", "m2"][i % 3],
                "itl_ms": vals,
            }
        )
    itl = pl.DataFrame(rows)
    got = timing.itl_percentiles(itl, BY).sort(BY, nulls_last=True)
    for r in got.iter_rows(named=True):
        same = pl.all_horizontal(pl.col(c).eq_missing(r[c]) for c in BY)
        part = itl.filter(same)
        lens = part["itl_ms"].list.len().to_numpy()
        v = part["itl_ms"].explode().to_numpy()
        c = np.repeat(np.arange(len(lens)), lens)
        keep = np.isfinite(v)
        est, lo, hi = stats.clustered_quantiles(v[keep], c[keep], stats.QUANTILES)
        assert r["n"] == keep.sum()
        assert r["p50"] == est[0] and r["p99_ci_low"] == lo[3]
    assert got.height == 6


def test_itl_levels_from_one_sort_equal_each_level_alone():
    """The provider level read as runs of the groups' sorted requests gives what sorting by
    provider alone gives; a level that does not lead the first is sorted on its own."""
    rng = np.random.default_rng(12)
    rows = [
        {
            "provider": ["a", "b", "c"][i % 3],
            "endpoint": ["chat.completions", "responses"][i % 2],
            "model": ["m1", "m2", None][i % 3 == 0 and i % 2],
            "itl_ms": list(rng.lognormal(3, 0.5, int(rng.integers(0, 40)))),
        }
        for i in range(600)
    ]
    itl = pl.DataFrame(rows)
    by_group, by_provider = timing.itl_levels(itl, [BY, ["provider"]])
    assert_frame_equal(by_group, timing.itl_percentiles(itl, BY))
    assert_frame_equal(by_provider, timing.itl_percentiles(itl, ["provider"]))
    assert by_provider.height == 3
    # ["endpoint"] does not lead BY: computed apart, same as alone
    _, by_endpoint = timing.itl_levels(itl, [BY, ["endpoint"]])
    assert_frame_equal(by_endpoint, timing.itl_percentiles(itl, ["endpoint"]))


def test_clustered_quantiles_same_for_runs_and_scattered_clusters():
    """Clusters in runs are counted per run; shuffled, by their ids: the same figures."""
    rng = np.random.default_rng(13)
    lens = rng.integers(1, 60, 400)
    c = np.repeat(np.arange(len(lens)), lens)
    v = rng.lognormal(3, 0.5, len(c)).round(1)  # ties too
    keep = rng.random(len(v)) > 0.2  # and clusters left empty
    perm = rng.permutation(int(keep.sum()))
    runs = stats.clustered_quantiles(v[keep], c[keep], stats.QUANTILES)
    scattered = stats.clustered_quantiles(v[keep][perm], c[keep][perm], stats.QUANTILES)
    for a, b in zip(runs, scattered, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
