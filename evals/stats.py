"""Distribution-free statistics used by every question: quantile CIs, paired/unpaired tests, Holm, Wilson.

Choices (documented in the README's metric definitions):
- percentile CIs are order-statistic intervals from binomial quantiles (exact coverage >= 1 - alpha,
  no resampling; the few order statistics read are selected, O(n) per group, not sorted); a bound
  the sample cannot support is null;
- the paired median difference uses the same interval on the sorted differences (sign-test CI)
  and the Wilcoxon signed-rank p-value; unpaired falls back to Mann-Whitney U and Kolmogorov-Smirnov;
- a difference of two percentiles gets a MOVER interval (Zou & Donner) from the two order-statistic CIs;
- pooled per-token ITL percentiles get Woodruff intervals with a per-request (cluster) variance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats as sps

from evals import groups

ALPHA = 0.05
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
MIN_PAIRS = 10  # fewer pairs than this: no paired test


def pct_name(q: float) -> str:
    """``0.5`` -> ``"p50"``, ``0.999`` -> ``"p99.9"``."""
    s = f"{q * 100:.10g}"
    return f"p{s}"


def quantile_ranks(n: np.ndarray, q: float, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """0-based indices of the order statistics bounding the q-quantile (``n`` where unbounded).

    With B ~ Binomial(n, q) observations below the true quantile, [X(l), X(u)] covers it with
    probability P(l <= B <= u - 1) >= 1 - alpha for l = ppf(alpha/2), u = ppf(1 - alpha/2) + 1.
    """
    n = np.asarray(n, dtype=np.int64)
    safe = np.maximum(n, 1)
    lo = sps.binom.ppf(alpha / 2, safe, q).astype(np.int64)  # 1-based rank l; 0 = unbounded
    hi = sps.binom.ppf(1 - alpha / 2, safe, q).astype(np.int64) + 1  # 1-based rank u; > n = unbounded
    lo_idx = np.where(lo >= 1, lo - 1, n)
    hi_idx = np.where(hi <= n, hi - 1, n)
    return lo_idx, hi_idx


def quantile_table(
    df: pl.DataFrame, by: Sequence[str], value: str, qs: Sequence[float] = QUANTILES, alpha: float = ALPHA
) -> pl.DataFrame:
    """Per group of ``by``: n, and for each q the linear-interpolated percentile with its CI."""
    return quantile_tables(df, by, [value], qs, alpha)[value]


def quantile_tables(
    df: pl.DataFrame,
    by: Sequence[str],
    values: Sequence[str],
    qs: Sequence[float] = QUANTILES,
    alpha: float = ALPHA,
) -> dict[str, pl.DataFrame]:
    """``quantile_table`` for several value columns with one group-by pass (value lists per group)."""
    return quantiles_of_groups(value_groups(df, by, values), by, values, qs, alpha)


def value_groups(df: pl.DataFrame, by: Sequence[str], values: Sequence[str]) -> pl.DataFrame:
    """Per group of ``by``: each value column's finite values, as a list (in no particular order:
    the quantiles select the order statistics they read, nothing is sorted)."""
    by = list(by)
    finite = [pl.col(v).cast(pl.Float64) for v in values]
    lf = df.lazy().select(*by, *groups.keys_of(df, by), *finite)
    return groups.agg(lf, by, *[pl.col(v).filter(pl.col(v).is_finite()).alias(v) for v in values]).collect()


def merged_quantiles(
    g: pl.DataFrame,
    by: Sequence[str],
    values: Sequence[str],
    qs: Sequence[float] = QUANTILES,
    alpha: float = ALPHA,
) -> dict[str, pl.DataFrame]:
    """``quantiles_of_groups`` at the coarser ``by`` from finer ``value_groups`` output: each coarse
    group's lists are joined, not grouped again."""
    by = list(by)
    keys = g.select(by).unique(maintain_order=True)
    of_key = (
        g.select(by)
        .join(keys.with_row_index("_k"), on=by, how="left", nulls_equal=True, maintain_order="left")["_k"]
        .to_numpy()
    )
    members = [np.flatnonzero(of_key == k) for k in range(keys.height)]
    out = {}
    for v in values:
        runs = _arrays(g[v])
        joined = [np.concatenate([runs[i] for i in m]) for m in members]
        out[v] = _quantiles_of_arrays(keys, joined, qs, alpha)
    return out


def quantiles_of_groups(
    g: pl.DataFrame,
    by: Sequence[str],
    values: Sequence[str],
    qs: Sequence[float] = QUANTILES,
    alpha: float = ALPHA,
) -> dict[str, pl.DataFrame]:
    """``quantile_tables`` from ``value_groups`` output (the order statistics selected per group)."""
    keys = g.select(list(by))
    return {v: _quantiles_of_arrays(keys, _arrays(g[v]), qs, alpha) for v in values}


def _arrays(s: pl.Series) -> list[np.ndarray]:
    """A ``value_groups`` list column as one numpy array per row (views of one flat array)."""
    lens = s.list.len().fill_null(0).to_numpy()
    flat = s.explode().drop_nulls().to_numpy().astype(float, copy=False)  # an empty list explodes to null
    return np.split(flat, np.cumsum(lens)[:-1])


def _quantiles_of_arrays(
    keys: pl.DataFrame, arrays: list[np.ndarray], qs: Sequence[float], alpha: float
) -> pl.DataFrame:
    """Per row of ``keys`` with a non-empty array: n, and for each q the linear-interpolated
    percentile with its order-statistic CI (null where the sample cannot bound it). The arrays
    need no order: each is partitioned at the ranks read (O(n), not a sort)."""
    n = np.array([len(a) for a in arrays], dtype=np.int64)
    keep = n > 0
    cols = {c: keys[c].filter(pl.Series(keep)) for c in keys.columns} | {
        "n": pl.Series("n", n[keep], dtype=pl.Int64)
    }
    arrays = [a for a in arrays if len(a)]
    n = n[keep]
    ranks = {}  # q -> 0-based ranks (floor, ceil), weight of ceil, CI ranks (low, high) per array
    for q in qs:
        h = (n - 1) * q
        f = np.floor(h).astype(np.int64)
        lo, hi = quantile_ranks(n, q, alpha)
        ranks[q] = (f, np.minimum(f + 1, n - 1), h - f, lo, hi)
    arrays = [
        np.partition(a, sorted({int(r[k][i]) for r in ranks.values() for k in (0, 1, 3, 4)} - {len(a)}))
        for i, a in enumerate(arrays)
    ]
    for q in qs:
        name = pct_name(q)
        f, c, w, lo, hi = ranks[q]
        est = [a[fi] * (1 - wi) + a[ci] * wi for a, fi, ci, wi in zip(arrays, f, c, w, strict=True)]
        low = [a[i] if i < len(a) else None for a, i in zip(arrays, lo, strict=True)]
        high = [a[i] if i < len(a) else None for a, i in zip(arrays, hi, strict=True)]
        cols |= {
            name: pl.Series(name, est, dtype=pl.Float64),
            f"{name}_ci_low": pl.Series(f"{name}_ci_low", low, dtype=pl.Float64),
            f"{name}_ci_high": pl.Series(f"{name}_ci_high", high, dtype=pl.Float64),
        }
    return pl.DataFrame(cols)


def median_ci(x: np.ndarray, alpha: float = ALPHA, presorted: bool = False) -> tuple[float, float, float]:
    """Median with its order-statistic (sign-test) CI; NaN bounds when the sample cannot support one.
    ``presorted``: ``x`` is sorted already, so the order statistics are read, not selected."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    if n == 0:
        return (np.nan, np.nan, np.nan)
    lo, hi = quantile_ranks(np.array([n]), 0.5, alpha)
    mid = [(n - 1) // 2, n // 2]
    ranks = sorted({*mid, *(int(r) for r in (lo[0], hi[0]) if r < n)})
    if not presorted:
        x = np.partition(x, ranks)  # the few order statistics needed, in O(n) instead of a sort
    est = float((x[mid[0]] + x[mid[1]]) / 2)
    low = float(x[lo[0]]) if lo[0] < n else np.nan
    high = float(x[hi[0]]) if hi[0] < n else np.nan
    return est, low, high


def mover_diff(
    est1: np.ndarray, lo1: np.ndarray, hi1: np.ndarray, est2: np.ndarray, lo2: np.ndarray, hi2: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """CI of est1 - est2 from the two marginal CIs (MOVER, Zou & Donner 2008; assumes independence)."""
    d = est1 - est2
    low = d - np.sqrt((est1 - lo1) ** 2 + (hi2 - est2) ** 2)
    high = d + np.sqrt((hi1 - est1) ** 2 + (est2 - lo2) ** 2)
    return low, high


def paired_test(d: np.ndarray, alpha: float = ALPHA, presorted: bool = False) -> dict:
    """Median of paired differences with sign-test CI, and the Wilcoxon signed-rank p-value.
    ``presorted``: ``d`` is finite and sorted (a caller that tests several levels sorts once)."""
    d = np.asarray(d, dtype=float)
    if not presorted:
        d = d[np.isfinite(d)]
    med, low, high = median_ci(d, alpha, presorted)
    p = wilcoxon_p(d, presorted)
    return {
        "n_pairs": len(d),
        "median_diff": med,
        "median_diff_ci_low": low,
        "median_diff_ci_high": high,
        "p_value": p,
    }


def wilcoxon_p(d: np.ndarray, presorted: bool = False) -> float:
    """Two-sided Wilcoxon signed-rank p-value (zeros dropped), as scipy's; O(n log n) for large n.

    Up to 50 non-zero differences scipy computes it (exact distribution when there are no ties);
    above, the normal approximation with the tie correction, computed here with one sort (scipy's
    general rank machinery costs several times more on 10^5-10^6 pairs).
    """
    nz = d[d != 0]
    n = len(nz)
    if n == 0:
        return 1.0
    if n <= 50:
        return float(sps.wilcoxon(nz, zero_method="wilcox", alternative="two-sided").pvalue)
    # Without ties, a positive difference x ranks above the positives and the |negatives| below
    # it: W+ comes from one sort of d and binary searches, no argsort of |d|.
    sd = nz if presorted else np.sort(nz)
    k = int(np.searchsorted(sd, 0.0))
    neg, pos = -sd[:k][::-1], sd[k:]  # both ascending
    if not (np.any(pos[1:] == pos[:-1]) or np.any(neg[1:] == neg[:-1])):
        left = np.searchsorted(neg, pos, side="left")
        if not _meets(neg, pos, left):  # no |neg| equals a pos
            r_plus = float(np.sum(left, dtype=np.float64)) + len(pos) * (len(pos) + 1) / 2.0
            mean = n * (n + 1) / 4.0
            sd_w = np.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
            return float(2 * sps.norm.sf(abs(r_plus - mean) / sd_w))
    a = np.abs(nz)
    order = np.argsort(a)
    sa = a[order]
    starts = np.flatnonzero(np.concatenate(([True], sa[1:] != sa[:-1])))
    counts = np.diff(np.append(starts, n))
    ranks = np.repeat(starts + (counts + 1) / 2.0, counts)  # 1-based average ranks of sorted |d|
    r_plus = ranks[nz[order] > 0].sum()
    mean = n * (n + 1) / 4.0
    var = n * (n + 1) * (2 * n + 1) / 24.0 - np.sum(counts.astype(float) ** 3 - counts) / 48.0
    if var <= 0:
        return 1.0
    return float(2 * sps.norm.sf(abs(r_plus - mean) / np.sqrt(var)))


def unpaired_test(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> dict:
    """Difference of medians (a - b) with a MOVER CI, Mann-Whitney U and two-sample KS p-values."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a = a[np.isfinite(a)]
    b = b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        nan = np.nan
        return {
            "median_diff": nan,
            "median_diff_ci_low": nan,
            "median_diff_ci_high": nan,
            "p_value": nan,
            "ks_p_value": nan,
        }
    ea, la, ha = median_ci(a, alpha)
    eb, lb, hb = median_ci(b, alpha)
    low, high = mover_diff(np.array(ea), np.array(la), np.array(ha), np.array(eb), np.array(lb), np.array(hb))
    p = mann_whitney(a, b)
    ks = float(sps.ks_2samp(a, b).pvalue)
    return {
        "median_diff": ea - eb,
        "median_diff_ci_low": float(low),
        "median_diff_ci_high": float(high),
        "p_value": p,
        "ks_p_value": ks,
    }


def mann_whitney(a: np.ndarray, b: np.ndarray, alternative: str = "two-sided") -> float:
    """Mann-Whitney U p-value; the normal approximation once the exact null would be costly.

    Above 500 values scipy's asymptotic p-value (tie-corrected, with continuity correction) is
    computed here without ranking the pooled sample: both samples are sorted and U counts, for
    each value of ``a``, the values of ``b`` below it (binary searches); ties are looked for in
    the sorted arrays, and only when there are some are the runs of the merged arrays counted.
    """
    if max(len(a), len(b)) <= 500:
        return float(sps.mannwhitneyu(a, b, alternative=alternative, method="auto").pvalue)
    sa = np.sort(np.asarray(a, dtype=float))
    sb = np.sort(np.asarray(b, dtype=float))
    n1, n2 = len(sa), len(sb)
    n = n1 + n2
    below = np.searchsorted(sb, sa, side="left")
    # a second search only when some value of a is in b: else every count of ties is 0
    upto = np.searchsorted(sb, sa, side="right") if _meets(sb, sa, below) else below
    u1 = float(below.sum(dtype=np.float64)) + float((upto - below).sum(dtype=np.float64)) / 2.0
    u2 = n1 * n2 - u1
    u, f = {"greater": (u1, 1), "less": (u2, 1)}.get(alternative, (max(u1, u2), 2))
    tie = 0.0
    if np.any(upto != below) or np.any(sa[1:] == sa[:-1]) or np.any(sb[1:] == sb[:-1]):
        pooled = np.concatenate([sa, sb])
        pooled.sort(kind="stable")  # a merge of two sorted runs
        tie = tie_sum(pooled)
    sd = np.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie / (n * (n - 1))))
    if sd <= 0:
        return 1.0
    return float(np.clip(f * sps.norm.sf((u - n1 * n2 / 2.0 - 0.5) / sd), 0, 1))


def _meets(sorted_x: np.ndarray, y: np.ndarray, left: np.ndarray) -> bool:
    """Does some value of ``y`` occur in ``sorted_x``? ``left`` is ``searchsorted(sorted_x, y)``:
    the only place a value equal to y can be."""
    at = np.minimum(left, len(sorted_x) - 1)
    return bool(len(sorted_x)) and bool(np.any((left < len(sorted_x)) & (sorted_x[at] == y)))


def tie_sum(x: np.ndarray) -> float:
    """Sum of t^3 - t over the runs of equal values of the sorted ``x`` (the rank tests' tie term)."""
    if len(x) < 2:
        return 0.0
    starts = np.flatnonzero(np.concatenate(([True], x[1:] != x[:-1])))
    if len(starts) == len(x):
        return 0.0
    t = np.diff(np.append(starts, len(x))).astype(float)
    return float(np.sum(t**3 - t))


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (NaN stays NaN and is not counted in the family)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out[order] = adj
    return out


def wilson(k: np.ndarray, n: np.ndarray, alpha: float = ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes out of n (NaN where n == 0)."""
    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    z = sps.norm.ppf(1 - alpha / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        den = 1 + z**2 / n
        center = (p + z**2 / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / den
    return center - half, center + half


def clustered_quantiles(
    values: np.ndarray, cluster: np.ndarray, qs: Sequence[float] = QUANTILES, alpha: float = ALPHA
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pooled quantiles of ``values`` with Woodruff CIs that treat each cluster as the sampling unit.

    ``cluster`` holds a dense 0..R-1 id per value (one id per request). Tokens of one request are
    correlated, so an interval that counted tokens as independent would be too narrow. Woodruff's
    method takes the standard error of the pooled CDF at the estimate (a ratio estimator over
    requests, linearised) and maps q -/+ z*se back through the pooled distribution. O(n) per q:
    no sort, only selections (``np.quantile``, ``np.partition``) and one count per q; values whose
    clusters come in runs (requests flattened one after another) are counted by summing each run.
    """
    v = np.asarray(values, dtype=float)
    qs_arr = np.asarray(qs, dtype=float)
    nan = np.full(len(qs_arr), np.nan)
    if len(v) == 0:
        return nan, nan.copy(), nan.copy()
    c = np.asarray(cluster, dtype=np.int64)
    r = int(c.max()) + 1
    starts = None
    if bool(np.all(c[1:] >= c[:-1])):  # runs: empty clusters add nothing to the sums below
        starts = np.flatnonzero(np.concatenate(([True], c[1:] != c[:-1])))
        lens = np.diff(np.append(starts, len(c))).astype(float)
    else:
        lens = np.bincount(c, minlength=r).astype(float)
    n = float(len(v))
    est = np.quantile(v, qs_arr)
    z = sps.norm.ppf(1 - alpha / 2)
    lo, hi = nan.copy(), nan.copy()
    if r < 2:
        return est, lo, hi
    ranks: dict[tuple[int, str], int] = {}  # (q index, side) -> 0-based rank in the sorted values
    for i, q in enumerate(qs_arr):
        below_est = v <= est[i]
        if starts is not None:  # a sum per run, not a gather of ids and a count
            below = np.add.reduceat(below_est, starts, dtype=np.int64).astype(float)
            k = int(below.sum())  # values <= estimate
        else:
            k = int(np.count_nonzero(below_est))
            below = np.bincount(c[below_est], minlength=r).astype(float)
        f = k / n
        se = np.sqrt(r / (r - 1) * np.sum((below - f * lens) ** 2)) / n
        p_lo, p_hi = q - z * se, q + z * se
        if p_lo >= 0:
            ranks[(i, "lo")] = max(0, int(np.ceil(p_lo * n)) - 1)
        if p_hi <= 1:
            ranks[(i, "hi")] = min(len(v) - 1, int(np.ceil(p_hi * n)))
    if ranks:
        kth = sorted(set(ranks.values()))
        part = np.partition(v, kth)
        for (i, side), k in ranks.items():
            (lo if side == "lo" else hi)[i] = part[k]
    return est, lo, hi
