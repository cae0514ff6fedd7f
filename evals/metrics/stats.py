"""Distribution-free statistics used by every question: quantile CIs, paired/unpaired tests, Holm, Wilson.

Choices (documented in the README's metric definitions):
- percentile CIs are order-statistic intervals from binomial quantiles (exact coverage >= 1 - alpha,
  no resampling; the few order statistics read are selected, O(n) per group, not sorted); a bound
  the sample cannot support is null;
- the paired median difference uses the same interval on the sorted differences (sign-test CI)
  and the sign test's p-value, its exact dual: the 1 - a interval excludes 0 exactly when p < a;
  unpaired, the MOVER interval of the two medians and the p-value that inverts it (KS beside it);
- a label and the interval beside it come from one procedure: a family of m comparisons is
  adjusted by Bonferroni (p x m, interval at 1 - alpha/m), so "significant" is "the adjusted
  interval excludes 0" (Holm's step-down has no intervals that agree with its decisions);
- a difference of two percentiles gets a MOVER interval (Zou & Donner) from the two order-statistic CIs;
- pooled per-token ITL percentiles get Woodruff intervals with a per-request (cluster) variance.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import polars as pl
from scipy import stats as sps

from parity.evals.metrics import groups

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


@cache
def min_n_bounded(q: float, alpha: float = ALPHA) -> int:
    """The fewest values for which ``quantile_ranks`` bounds the q-quantile on both sides.

    The interval [X(l), X(u)] needs l >= 1, i.e. (1 - q)^n < alpha/2, and u <= n, i.e.
    q^n <= alpha/2: n >= log(alpha/2) / log(max(q, 1 - q)), read off the ranks themselves."""
    guess = int(np.ceil(np.log(alpha / 2) / np.log(max(q, 1 - q))))
    n = np.arange(max(1, guess - 3), guess + 4)
    lo, hi = quantile_ranks(n, q, alpha)
    return int(n[(lo < n) & (hi < n)][0])


def ci_reason(n: int, q: float, alpha: float = ALPHA, unit: str = "requests") -> str | None:
    """Why the order-statistic interval of the q-quantile of ``n`` values has no bound (None if it has)."""
    need = min_n_bounded(q, alpha)
    if n >= need:
        return None
    level = f"{(1 - alpha) * 100:.4g}%"
    return f"{n:,} {unit}: too few for a {level} interval on {pct_name(q)}; need at least {need:,}"


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


def sign_test_p(d: np.ndarray) -> float:
    """Two-sided sign test of "median difference = 0", the exact dual of ``median_ci``: its 1 - a
    interval excludes 0 exactly when this p < a. A zero difference counts against rejection on
    both sides, as the interval counts it: p = 2 min(P(B <= #(d <= 0)), P(B <= #(d >= 0)))."""
    n = len(d)
    if n == 0:
        return 1.0
    le = int(np.count_nonzero(d <= 0))
    ge = int(np.count_nonzero(d >= 0))
    return float(min(1.0, 2 * sps.binom.cdf(min(le, ge), n, 0.5)))


def paired_test(d: np.ndarray, alpha: float = ALPHA, presorted: bool = False) -> dict:
    """Median of paired differences with its sign-test CI and the sign test's p (one procedure).
    ``presorted``: ``d`` is finite and sorted (a caller that tests several levels sorts once)."""
    d = np.asarray(d, dtype=float)
    if not presorted:
        d = d[np.isfinite(d)]
    med, low, high = median_ci(d, alpha, presorted)
    p = sign_test_p(d)
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


def median_diff_ci(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """MOVER CI of median(a) - median(b) from the two sign-test CIs; ``a`` and ``b`` sorted, finite."""
    ea, la, ha = median_ci(a, alpha, presorted=True)
    eb, lb, hb = median_ci(b, alpha, presorted=True)
    low, high = mover_diff(np.array(ea), np.array(la), np.array(ha), np.array(eb), np.array(lb), np.array(hb))
    return float(low), float(high)


def inverted_p(ci: Callable[[float], tuple[float, float]], floor: float = 1e-12) -> float:
    """The p-value dual to a family of nested intervals: the smallest a whose 1 - a interval
    ``ci(a)`` excludes 0 (bisection on log a; an unbounded side never excludes 0)."""

    def excludes(a: float) -> bool:
        lo, hi = ci(a)
        return bool((np.isfinite(lo) and lo > 0) or (np.isfinite(hi) and hi < 0))

    if not excludes(1.0 - 1e-9):
        return 1.0
    if excludes(floor):
        return floor
    lo, hi = np.log(floor), np.log(1.0 - 1e-9)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if excludes(float(np.exp(mid))) else (mid, hi)
    return float(np.exp(hi))


def unpaired_test(a: np.ndarray, b: np.ndarray, alpha: float = ALPHA) -> dict:
    """Difference of medians (a - b) with a MOVER CI and the p-value that inverts it (the interval
    at 1 - a excludes 0 exactly when p < a); the two-sample KS p beside it (no label uses KS)."""
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
    a, b = np.sort(a), np.sort(b)
    low, high = median_diff_ci(a, b, alpha)
    p = inverted_p(lambda x: median_diff_ci(a, b, x))
    ks = ks_p(a, b)
    return {
        "median_diff": median_ci(a, alpha, True)[0] - median_ci(b, alpha, True)[0],
        "median_diff_ci_low": low,
        "median_diff_ci_high": high,
        "p_value": p,
        "ks_p_value": ks,
    }


# Largest n_a * n_b for which the KS p-value is computed exactly. scipy's default ("auto") tries the
# exact distribution up to 10,000 values per sample and, when that computation loses precision
# (unequal sizes in the thousands, p near 0), falls back to the asymptotic one with a RuntimeWarning
# printed into every eval, report and CI log. R's ks.test draws the line at n_a * n_b < 10,000;
# above it Smirnov's asymptotic distribution is accurate to well under the precision a p-value
# beside a latency table needs, so the method is chosen here, deliberately, and never falls back.
KS_EXACT_MAX_PRODUCT = 10_000


def ks_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided two-sample Kolmogorov-Smirnov p: exact for small samples, asymptotic above."""
    method = "exact" if len(a) * len(b) < KS_EXACT_MAX_PRODUCT else "asymp"
    return float(sps.ks_2samp(a, b, method=method).pvalue)


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


def bonferroni(p: np.ndarray) -> tuple[np.ndarray, int]:
    """Bonferroni-adjusted p-values min(1, m p) and the family size m (NaN stays NaN, not counted).

    Chosen over Holm where an interval stands beside the label: p x m < alpha exactly when the
    test's 1 - alpha/m interval excludes 0, and those intervals cover all m effects at once with
    probability >= 1 - alpha. Holm rejects a little more, but no interval agrees with its decisions."""
    p = np.asarray(p, dtype=float)
    m = int(np.count_nonzero(np.isfinite(p)))
    return np.minimum(1.0, p * max(m, 1)), m


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


# What each interval and label of ``parity eval --json`` comes from (its "statistics" key).
PROCEDURES: dict[str, str] = {
    "percentile_ci": "{p}_ci_low/_high: 95% distribution-free order-statistic interval (binomial ranks), "
    "unadjusted, no label; a null bound has {p}_ci_reason (too few values, and the minimum needed: "
    + ", ".join(f"{min_n_bounded(q)} for {pct_name(q)}" for q in QUANTILES)
    + ")",
    "itl_percentile_ci": "pooled per-token ITL: 95% Woodruff interval with requests as clusters, unadjusted",
    "percentile_delta_ci": "{p}_delta_ci_low/_high: 95% MOVER interval of the difference of two percentiles, "
    "unadjusted; the report colours a p95 cell when this interval excludes 0 and marks it unadjusted",
    "median_diff_ci": "median_diff_ci_low/_high: 95% sign-test interval of the median paired difference "
    "(unpaired: MOVER of the two medians), unadjusted; p_value is the same test's (it excludes 0 "
    "exactly when p_value < 0.05)",
    "median_diff_adj_ci": "median_diff_adj_ci_low/_high: the same test's interval at adj_ci_level = "
    "1 - 0.05/family_size (Bonferroni), simultaneous 95% over the family",
    "labels": "significant / slower / faster / significant_slower / significant_faster: p_adjusted = "
    "min(1, family_size x p_value) < 0.05, which is exactly the adjusted interval excluding 0. Family: "
    "the providers compared on one group, TTFT and E2E together, every other metric on its own",
    "report_cost_and_errors": "report verdict: cost (ratio of sums, delta-method z interval) and failed "
    "requests (exact McNemar) are Bonferroni-adjusted over the providers; the cost interval shown is "
    "the family-wise one, at 1 - 0.05/m",
}
