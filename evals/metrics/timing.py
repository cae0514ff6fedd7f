"""Latency: per-request metrics, percentiles with CIs, paired comparison to a baseline, reliability.

Pure functions over the frames that ``parity.evals.load`` returns, so notebooks can call them on any
selection. Only successful cells (status 200) enter latency distributions; the rest are rates.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
import polars.selectors as cs

from parity.evals.metrics import groups, stats
from parity.evals.metrics.outcome import succeeded
from parity.evals.metrics.stats import ALPHA, MIN_PAIRS, QUANTILES, pct_name

GROUP = ("provider", "endpoint", "model")
# per-request metric -> True when a larger value is worse (a slowdown)
METRICS: dict[str, bool] = {"ttft_ms": True, "tpot_ms": True, "e2e_ms": True, "output_tps": False}
POOLED = "itl_ms"  # per-token, pooled over requests; not pairable
PRIMARY = ("ttft_ms", "e2e_ms")  # the metrics behind significant_slower


def request_metrics(cells: pl.DataFrame) -> pl.DataFrame:
    """Add per-request ttft_ms, tpot_ms, e2e_ms and output_tps (null unless status 200)."""
    ok = succeeded()
    out_tok = pl.col("completion_tokens").cast(pl.Float64)
    return cells.with_columns(
        pl.when(ok).then(pl.col("ttft_ms")).alias("ttft_ms"),
        pl.when(ok & (out_tok > 1) & pl.col("ttft_ms").is_not_null())
        .then((pl.col("latency_ms") - pl.col("ttft_ms")) / (out_tok - 1))
        .alias("tpot_ms"),
        pl.when(ok).then(pl.col("latency_ms")).alias("e2e_ms"),
        pl.when(ok & (out_tok > 0) & (pl.col("latency_ms") > 0))
        .then(out_tok / (pl.col("latency_ms") / 1000.0))
        .alias("output_tps"),
    )


def percentiles(
    metrics: pl.DataFrame,
    itl: pl.DataFrame | None = None,
    by: Sequence[str] = GROUP,
    qs: Sequence[float] = QUANTILES,
    grouped: pl.DataFrame | None = None,
    itl_rows: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Long table: one row per group and metric with n and each percentile with its CI.

    ``grouped`` (``stats.value_groups(metrics, groups, METRICS)`` for these groups or finer ones)
    saves grouping every metric again: coarser groups join its lists. ``itl_rows``, when given, is
    ``itl_percentiles(itl, by, qs)`` computed already (``itl`` is then not read).
    """
    by = list(by)
    finer = [c for c in grouped.columns if c not in METRICS] if grouped is not None else []
    if set(by) == set(finer):  # the value groups are these groups
        tables = stats.quantiles_of_groups(grouped, by, list(METRICS), qs)
    elif set(by) < set(finer):
        tables = stats.merged_quantiles(grouped, by, list(METRICS), qs)
    else:
        tables = stats.quantiles_of_groups(
            stats.value_groups(metrics, by, list(METRICS)), by, list(METRICS), qs
        )
    parts = [t.with_columns(pl.lit(m).alias("metric")) for m, t in tables.items()]
    if itl_rows is not None:
        parts.append(itl_rows)
    elif itl is not None and not itl.is_empty():
        parts.append(itl_percentiles(itl, by, qs))
    cols = [*by, "metric", "n"] + [f"{pct_name(q)}{s}" for q in qs for s in ("", "_ci_low", "_ci_high")]
    parts = [p.select(cols) for p in parts if not p.is_empty()]
    if not parts:
        return pl.DataFrame(
            schema={c: pl.Utf8 if c in [*by, "metric"] else pl.Float64 for c in cols}
            | {f"{pct_name(q)}_ci_reason": pl.Utf8 for q in qs}
        )
    return ci_reasons(pl.concat(parts, how="vertical_relaxed").sort([*by, "metric"]), qs)


def latency_levels(
    metrics: pl.DataFrame,
    itl_rows: Sequence[pl.DataFrame | None] | None,
    baseline: str,
    levels: Sequence[Sequence[str]],
) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    """``percentiles`` and ``compare`` with the baseline at each of ``levels``, finest first;
    ``itl_rows``: the pooled ITL rows of each level (``pooled_itl``), None when nothing streamed.

    The levels share their work here, and only here: the paired differences are computed once, each
    metric's values are grouped once at the finest level (coarser levels merge those groups), and a
    coarser level's sorted differences are merged from the finer level's sorted runs instead of
    sorted again.
    """
    pairs = pair_differences(metrics, baseline, levels[0])
    grouped = stats.value_groups(metrics, levels[0], list(METRICS))
    itl_rows = itl_rows or [None] * len(levels)
    sorted_runs: dict = {}
    out = []
    for by, itl_by in zip(levels, itl_rows, strict=True):
        pct = percentiles(metrics, None, by, grouped=grouped, itl_rows=itl_by)
        cmp = compare(metrics, pct, baseline, by, pairs=pairs, sorted_pairs=sorted_runs, grouped=grouped)
        out.append((pct, cmp))
    return out


def pooled_itl(itl: pl.DataFrame, levels: Sequence[Sequence[str]]) -> list[pl.DataFrame] | None:
    """The pooled ITL percentile rows at each of ``levels`` (``itl_levels``; the tokens are flattened
    once for all levels), None when no request streamed tokens."""
    return itl_levels(itl, levels) if not itl.is_empty() else None


def ci_reason(n: int | None, q: float, metric: str) -> str:
    """Why a percentile's 95% interval has no bound, in words a reader can act on."""
    if metric == POOLED:  # Woodruff: no closed-form minimum, it depends on the requests' spread
        return f"{n or 0:,} tokens: too few requests to bound a 95% interval on {pct_name(q)} (requests as clusters)"
    return stats.ci_reason(n or 0, q) or f"{n or 0:,} requests: the interval on {pct_name(q)} has no bound"


def ci_reasons(pct: pl.DataFrame, qs: Sequence[float] = QUANTILES) -> pl.DataFrame:
    """Add ``{p}_ci_reason`` per percentile: null when both bounds exist, else why not."""
    cols = {}
    for q in qs:
        p = pct_name(q)
        cols[f"{p}_ci_reason"] = pl.Series(
            f"{p}_ci_reason",
            [
                None if lo is not None and hi is not None else ci_reason(n, q, m)
                for n, m, lo, hi in pct.select("n", "metric", f"{p}_ci_low", f"{p}_ci_high").iter_rows()
            ],
            dtype=pl.Utf8,
        )
    return pct.with_columns(**cols)


def itl_percentiles(
    itl: pl.DataFrame, by: Sequence[str] = GROUP, qs: Sequence[float] = QUANTILES
) -> pl.DataFrame:
    """Pooled per-token ITL percentiles per group; CIs by Woodruff with requests as clusters.

    The requests are ordered by group and their lists flattened once: each group's tokens are
    then one slice of a single array, not a frame of its own exploded again."""
    return itl_levels(itl, [by], qs)[0]


def itl_levels(
    itl: pl.DataFrame, levels: Sequence[Sequence[str]], qs: Sequence[float] = QUANTILES
) -> list[pl.DataFrame]:
    """``itl_percentiles`` at each level of ``levels``. The requests are sorted and flattened once
    by the first level's columns; a level whose columns lead those (``provider`` after
    ``provider, endpoint, model``) reads its groups as slices of the same array."""
    if not levels:
        return []
    order = list(levels[0])
    if any(list(by) != order[: len(by)] for by in levels):
        return [itl_levels(itl, [by], qs)[0] for by in levels]
    g = itl.select(*order, "itl_ms").filter(pl.col("itl_ms").list.len() > 0).sort(order, nulls_last=True)
    if g.is_empty():
        return [pl.DataFrame() for _ in levels]
    lens = g["itl_ms"].list.len().to_numpy().astype(np.int64)
    vals = g["itl_ms"].explode().cast(pl.Float64).to_numpy()
    offsets = np.concatenate(([0], np.cumsum(lens)))
    return [_itl_rows(g, lens, vals, offsets, list(by), qs) for by in levels]


def _itl_rows(
    g: pl.DataFrame,
    lens: np.ndarray,
    vals: np.ndarray,
    offsets: np.ndarray,
    by: list[str],
    qs: Sequence[float],
) -> pl.DataFrame:
    """The percentile rows of the groups of ``by``, runs of ``g``'s requests (sorted with ``by``
    leading); ``vals`` their tokens flattened, request i's at ``offsets[i]:offsets[i + 1]``."""
    rows = []
    run = g.select(pl.struct(by).rle_id()).to_series().to_numpy()
    starts = np.flatnonzero(np.concatenate(([True], run[1:] != run[:-1])))
    for a, b in zip(starts, np.append(starts[1:], g.height), strict=True):
        v = vals[offsets[a] : offsets[b]]
        cluster = np.repeat(np.arange(b - a), lens[a:b])
        keep = np.isfinite(v)
        if not keep.all():
            v, cluster = v[keep], cluster[keep]
        est, lo, hi = stats.clustered_quantiles(v, cluster, qs)
        row = g.row(int(a), named=True)
        row = {c: row[c] for c in by} | {"metric": POOLED, "n": len(v)}
        for i, q in enumerate(qs):
            row |= {pct_name(q): est[i], f"{pct_name(q)}_ci_low": lo[i], f"{pct_name(q)}_ci_high": hi[i]}
        rows.append(row)
    return pl.DataFrame(rows).fill_nan(None) if rows else pl.DataFrame()


def compare(
    metrics: pl.DataFrame,
    pct: pl.DataFrame,
    baseline: str,
    by: Sequence[str] = GROUP,
    qs: Sequence[float] = QUANTILES,
    family_by: Sequence[str] | None = None,
    pairs: pl.DataFrame | None = None,
    sorted_pairs: dict | None = None,
    grouped: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Each non-baseline group vs the baseline's same group: percentile deltas, paired test, and
    the family-wise (Bonferroni) interval and label of the median difference.

    Pairs are (exchange, repeat) cells answered by both arms; against ``recorded`` (one repeat)
    that is each provider's repeat 0. With too few pairs the test is unpaired (MOVER of medians).
    ``family_by`` names the columns that define one family (default: every column of ``by`` but
    provider, plus metric, i.e. the providers compared on one metric), with TTFT and E2E counted as
    one metric (``PRIMARY``: the pair behind ``significant_slower``). In each family of m tests,
    ``p_adjusted`` = min(1, m p) and ``median_diff_adj_ci_*`` is the 1 - alpha/m interval of the
    same test, so ``significant`` (p_adjusted < alpha) is exactly "the adjusted interval excludes
    0"; ``median_diff_ci_*`` is the unadjusted 95% interval. ``pairs`` is
    ``pair_differences(metrics, baseline)`` when the caller compares at several levels, and
    ``sorted_pairs`` a dict shared by those calls, finest level first: each level leaves its sorted
    differences there and a coarser one merges them instead of sorting again. ``grouped`` is
    ``stats.value_groups`` output at ``by`` or finer, as for ``percentiles``: its lists say how
    many values each arm has, which spares counting them here.
    """
    by = list(by)
    rest = [c for c in by if c != "provider"]
    family_by = list(family_by) if family_by is not None else [*rest, "metric"]
    deltas = _percentile_deltas(pct, baseline, rest, qs)
    tests, cis = _tests(metrics, baseline, by, rest, pairs, sorted_pairs, _value_counts(metrics, by, grouped))
    if tests.is_empty():
        out = deltas
    elif deltas.width == 0:
        out = tests
    else:
        out = deltas.join(tests, on=[*by, "metric"], how="full", coalesce=True)
    if out.is_empty():
        return out
    if "p_value" not in out.columns:
        out = out.with_columns(
            pl.lit(None, pl.Float64).alias("p_value"), pl.lit(None, pl.Float64).alias("median_diff")
        )
    out = _adjust(out, family_by, cis, by)
    worse = pl.col("metric").replace_strict({**METRICS, POOLED: True}, default=True, return_dtype=pl.Boolean)
    sig = pl.col("p_adjusted") < ALPHA
    return out.with_columns(
        sig.fill_null(False).alias("significant"),
        (sig & pl.when(worse).then(pl.col("median_diff") > 0).otherwise(pl.col("median_diff") < 0))
        .fill_null(False)
        .alias("slower"),
        (sig & pl.when(worse).then(pl.col("median_diff") < 0).otherwise(pl.col("median_diff") > 0))
        .fill_null(False)
        .alias("faster"),
    )


def declare(cmp: pl.DataFrame, metrics: Sequence[str] = PRIMARY, alpha: float = ALPHA) -> pl.DataFrame:
    """Per provider: ``significant_slower`` / ``significant_faster`` on the ``metrics`` comparisons.

    One Bonferroni family over every (provider, metric) row of ``cmp`` (provider-level
    comparisons; the family ``compare`` adjusts TTFT and E2E in, so its ``slower`` rows, adjusted
    intervals and this agree), so a CI gate on significant_slower raises a false alarm in at most
    ``alpha`` of A/A runs.
    """
    schema = {"provider": pl.Utf8, "significant_slower": pl.Boolean, "significant_faster": pl.Boolean}
    if cmp.is_empty() or "p_value" not in cmp.columns:
        return pl.DataFrame(schema=schema)
    fam = cmp.filter(pl.col("metric").is_in(list(metrics)))
    worse = pl.col("metric").replace_strict({**METRICS, POOLED: True}, default=True, return_dtype=pl.Boolean)
    fam = fam.with_columns(
        pl.Series("_adj", stats.bonferroni(fam["p_value"].cast(pl.Float64).to_numpy())[0]).fill_nan(None)
    )
    sig = (pl.col("_adj") < alpha).fill_null(False)
    up = pl.col("median_diff") > 0
    slower = sig & pl.when(worse).then(up).otherwise(~up).fill_null(False)
    faster = sig & pl.when(worse).then(~up).otherwise(up).fill_null(False)
    return fam.group_by("provider").agg(
        slower.any().alias("significant_slower"), faster.any().alias("significant_faster")
    )


ADJUSTMENT = "bonferroni"


def _adjust(df: pl.DataFrame, family_by: list[str], cis: dict, by: list[str]) -> pl.DataFrame:
    """Per family: ``p_adjusted``, ``family_size`` m, and the median difference's interval at
    1 - alpha/m (``median_diff_adj_ci_*``, level in ``adj_ci_level``) from the test's own
    interval function in ``cis``; TTFT and E2E share a family (see ``compare``)."""
    fam = [c if c != "metric" else "_family_metric" for c in family_by]
    df = df.with_columns(
        pl.when(pl.col("metric").is_in(list(PRIMARY)))
        .then(pl.lit("+".join(PRIMARY)))
        .otherwise(pl.col("metric"))
        .alias("_family_metric")
    )
    parts = []
    for g in df.partition_by(fam, maintain_order=True) if fam else [df]:
        adj, m = stats.bonferroni(g["p_value"].cast(pl.Float64).to_numpy())
        level = ALPHA / max(m, 1)
        lows, highs = [], []
        for r in g.iter_rows(named=True):
            ci = cis.get(tuple(r[c] for c in [*by, "metric"])) if r["p_value"] is not None else None
            lo, hi = ci(level) if ci is not None else (None, None)
            lows.append(lo)
            highs.append(hi)
        tested = pl.col("p_value").is_not_null()
        parts.append(
            g.with_columns(
                pl.Series("p_adjusted", adj, dtype=pl.Float64).fill_nan(None),
                pl.when(tested).then(pl.lit(m)).alias("family_size"),
                pl.when(tested).then(pl.lit(1 - level)).alias("adj_ci_level"),
                pl.Series("median_diff_adj_ci_low", lows, dtype=pl.Float64).fill_nan(None),
                pl.Series("median_diff_adj_ci_high", highs, dtype=pl.Float64).fill_nan(None),
                pl.when(tested).then(pl.lit(ADJUSTMENT)).alias("adjustment"),
            )
        )
    return pl.concat(parts, how="vertical_relaxed").drop("_family_metric")


def _percentile_deltas(
    pct: pl.DataFrame, baseline: str, rest: list[str], qs: Sequence[float]
) -> pl.DataFrame:
    if pct.is_empty():
        return pl.DataFrame()
    base = pct.filter(pl.col("provider") == baseline).drop("provider", "n", cs.ends_with("_ci_reason"))
    base = base.rename({c: f"{c}__b" for c in base.columns if c not in [*rest, "metric"]})
    cand = pct.filter(pl.col("provider") != baseline).select("provider", *rest, "metric")
    both = pct.filter(pl.col("provider") != baseline).join(base, on=[*rest, "metric"], how="inner")
    if both.is_empty():
        return cand.head(0)
    out = both.select("provider", *rest, "metric")
    for q in qs:
        p = pct_name(q)
        cols = [both[c].cast(pl.Float64).to_numpy() for c in (p, f"{p}_ci_low", f"{p}_ci_high")]
        bcols = [both[f"{c}__b"].cast(pl.Float64).to_numpy() for c in (p, f"{p}_ci_low", f"{p}_ci_high")]
        lo, hi = stats.mover_diff(*cols, *bcols)
        with np.errstate(invalid="ignore", divide="ignore"):
            pctd = 100.0 * (cols[0] / bcols[0] - 1.0)
        reason = both[f"{p}_ci_reason"] if f"{p}_ci_reason" in both.columns else None
        base_reason = _reasons_of(pct, baseline, rest, both, p)
        out = out.with_columns(
            pl.Series(f"{p}_delta", cols[0] - bcols[0]),
            pl.Series(f"{p}_delta_ci_low", lo),
            pl.Series(f"{p}_delta_ci_high", hi),
            pl.Series(f"{p}_delta_pct", pctd),
            pl.Series(
                f"{p}_delta_ci_reason",
                [
                    None
                    if not (a or b)
                    else "; ".join(
                        [*([f"this provider: {a}"] if a else []), *([f"baseline: {b}"] if b else [])]
                    )
                    for a, b in zip(
                        reason.to_list() if reason is not None else [None] * both.height,
                        base_reason,
                        strict=True,
                    )
                ],
                dtype=pl.Utf8,
            ),
        )
    return out.fill_nan(None)


def _reasons_of(pct: pl.DataFrame, baseline: str, rest: list[str], both: pl.DataFrame, p: str) -> list:
    """The baseline's ``{p}_ci_reason`` for each row of ``both`` (its group and metric)."""
    col = f"{p}_ci_reason"
    if col not in pct.columns:
        return [None] * both.height
    base = pct.filter(pl.col("provider") == baseline).select(*rest, "metric", pl.col(col).alias("_r"))
    return (
        both.select(*rest, "metric")
        .join(base, on=[*rest, "metric"], how="left", maintain_order="left")["_r"]
        .to_list()
    )


def key_column(df: pl.DataFrame) -> str:
    """The exchange key to join on: the integer ``xid`` (hash of the id) when loaded, else the id."""
    return "xid" if "xid" in df.columns else "exchange_id"


def pair_differences(metrics: pl.DataFrame, baseline: str, by: Sequence[str] = GROUP) -> pl.DataFrame:
    """Candidate minus baseline per metric for every (exchange, repeat) cell both arms answered,
    with the ``by`` columns (so any coarser level partitions the same frame)."""
    names = list(METRICS)
    k = key_column(metrics)
    keys = groups.keys_of(metrics, by)
    if k == "xid":  # one integer key per (exchange, repeat): a third less time than joining on two
        on = ["_pair"]
        m = metrics.select(
            *by, *keys, (pl.col(k) ^ pl.col("repeat").cast(pl.Int64).hash(_PAIR_SEED)).alias("_pair"), *names
        )
    else:
        on = [k, "repeat"]
        m = metrics.select(*by, *keys, *on, *names)
    b = m.filter(pl.col("provider") == baseline).select(*on, *[pl.col(n).alias(f"{n}__b") for n in names])
    return (
        m.filter(pl.col("provider") != baseline)
        .join(b, on=on, how="inner")
        .select(*by, *keys, *[(pl.col(n) - pl.col(f"{n}__b")).alias(n) for n in names])
    )


_PAIR_SEED = 7  # xid is a 64-bit hash already: xid ^ hash(repeat) collides no more than xid does


def _value_counts(metrics: pl.DataFrame, by: list[str], grouped: pl.DataFrame | None) -> pl.DataFrame:
    """Per group of ``by``: how many finite values each metric has."""
    names = list(METRICS)
    if grouped is not None and set(by) <= set(grouped.columns):
        lens = grouped.select(*by, *[pl.col(n).list.len().cast(pl.Int64) for n in names])
        return lens.group_by(by).agg(pl.col(n).sum() for n in names)
    return groups.agg(metrics, by, *[pl.col(n).cast(pl.Float64).is_finite().sum().alias(n) for n in names])


def _tests(
    metrics: pl.DataFrame,
    baseline: str,
    by: list[str],
    rest: list[str],
    pairs: pl.DataFrame | None,
    sorted_pairs: dict | None,
    counts: pl.DataFrame,
) -> pl.DataFrame:
    """The paired (or unpaired) test of every non-baseline group and metric, and each test's
    interval at any level, keyed by (``by`` values, metric); ``counts``: how many finite values
    each group has per metric (``_value_counts``)."""
    names = list(METRICS)
    base_counts = {
        tuple(r[c] for c in rest): r
        for r in counts.filter(pl.col("provider") == baseline).iter_rows(named=True)
    }
    if not base_counts:
        return pl.DataFrame(), {}
    if pairs is None or not set(by) <= set(pairs.columns):
        pairs = pair_differences(metrics, baseline, by)
    cols = pairs.select(*by, *groups.keys_of(pairs, by), *names)
    finite = groups.agg(cols, by, *[pl.col(n).cast(pl.Float64).is_finite().sum().alias(n) for n in names])
    pair_counts = {tuple(r[c] for c in by): r for r in finite.iter_rows(named=True)}
    parts: dict = {}

    def group_frame(k: tuple) -> pl.DataFrame | None:
        """The group's differences, split out only when they are sorted here, not merged."""
        if not parts:
            parts.update(groups.partition(cols, by))
        return parts.get(k)

    jobs = []
    for cand in counts.filter(pl.col("provider") != baseline).iter_rows(named=True):
        kd = {c: cand[c] for c in by}
        bc = base_counts.get(tuple(kd[c] for c in rest))
        if bc is None:
            continue
        k = tuple(kd[c] for c in by)
        pc = pair_counts.get(k)
        for n in names:
            d = _sorted_differences(kd, n, pc[n] if pc else 0, lambda k=k: group_frame(k), sorted_pairs)
            jobs.append((kd | {"metric": n}, d, cand[n], bc[n], metrics, baseline, rest))
    # numpy's sorts release the GIL: the tests of different groups run on every core
    with ThreadPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1) or 1) as pool:
        done = [r for r in pool.map(lambda j: _test(*j), jobs) if r is not None]
    if not done:
        return pl.DataFrame(), {}
    rows = [r for r, _ in done]
    cis = {tuple(r[c] for c in [*by, "metric"]): ci for r, ci in done}
    df = pl.DataFrame(rows, infer_schema_length=None)
    return df.with_columns(
        pl.col(c).cast(pl.Float64) for c in df.columns if c.endswith(("p_value", "diff", "_low", "_high"))
    ), cis


def _sorted_differences(
    key: dict, metric: str, n: int, group: Callable[[], pl.DataFrame | None], cache: dict | None
) -> np.ndarray:
    """The group's ``n`` finite paired differences, sorted: merged from the finer groups' sorted
    runs in ``cache`` when they add up to this group, else read from ``group()`` and sorted here
    (and left in ``cache``)."""
    if cache is not None and n:
        runs = [
            v
            for (k, m), v in cache.items()
            if m == metric and len(k) > len(key) and all(dict(k)[c] == key[c] for c in key)
        ]
        if runs and sum(len(r) for r in runs) == n:
            d = np.concatenate(runs)
            d.sort(kind="stable")  # a merge of sorted runs
            cache[(tuple(key.items()), metric)] = d
            return d
    pg = group() if n else None
    d = _finite(pg[metric]) if pg is not None else np.array([])
    d.sort()  # _finite's array is this function's own: sorted in place, not copied
    if cache is not None:
        cache[(tuple(key.items()), metric)] = d
    return d


def _test(
    key: dict, d: np.ndarray, n_a: int, n_b: int, metrics: pl.DataFrame, baseline: str, rest: list[str]
) -> tuple[dict, Callable[[float], tuple[float, float]]] | None:
    """Paired test on the differences ``d`` when they cover the arms (``n_a``, ``n_b`` values),
    else unpaired on the two arms' values (read from ``metrics`` only then); with the function
    giving the same test's interval at any level (the family-wise one is read from it)."""
    if len(d) >= MIN_PAIRS and len(d) >= 0.5 * min(n_a, n_b):  # d is sorted (_sorted_differences)
        row = key | stats.paired_test(d, presorted=True) | {"test": "sign", "ks_p_value": None}
        return row, lambda a: stats.median_ci(d, a, presorted=True)[1:]
    if min(n_a, n_b) >= 3:
        metric = key["metric"]
        arm = pl.all_horizontal(pl.col(c).eq_missing(key[c]) for c in key if c != "metric")
        same = pl.all_horizontal(
            [pl.col("provider") == baseline, *[pl.col(c).eq_missing(key[c]) for c in rest]]
        )
        a = np.sort(_finite(metrics.filter(arm)[metric]))
        b = np.sort(_finite(metrics.filter(same)[metric]))
        row = key | stats.unpaired_test(a, b) | {"test": "mover", "n_pairs": len(d)}
        return row, lambda x: stats.median_diff_ci(a, b, x)
    return None


def _finite(s: pl.Series) -> np.ndarray:
    x = s.cast(pl.Float64).drop_nulls().to_numpy()
    return x[np.isfinite(x)]
