"""Feature drift: a registry of named statistical methods and a dataset-level decision.

Each method carries the feature types it supports, its default threshold and its
direction, so no caller has to remember whether "drift" means a large distance (PSI) or a
small p-value (KS)::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref, cur = rng.normal(0, 1, 5000), rng.normal(0.5, 1, 5000)
    >>> r = compute_feature_drift("x", ref, cur, method="psi", kind="numeric")
    >>> r.drifted
    True

Methods (``METHODS``; direction: distances drift when the score is *at or above* the
threshold, p-values when the p-value is *at or below* it):

============== ======================= ========= ==================================================
name           kinds                   default   score
============== ======================= ========= ==================================================
psi            numeric, categorical    0.2       population stability index over buckets
ks             numeric                 0.05 (p)  two-sample Kolmogorov-Smirnov (p-value as SciPy's)
js             numeric, categorical    0.1       Jensen-Shannon distance (natural log) over buckets
wasserstein    numeric                 0.1       Wasserstein-1 distance / reference std
chi2           categorical             0.05 (p)  chi-squared goodness of fit against reference shares
linf           categorical             0.1       max absolute difference of category shares
missing_share  numeric, categorical    0.1       ``|current missing share - reference missing share|``
unseen         categorical             0.05      share of (non-missing) current rows whose category
                                                 never appears in the reference
============== ======================= ========= ==================================================

Binning of numeric features for PSI and Jensen-Shannon (``binning=``):

* ``"quantile"`` (default): quantiles of the *reference* window (``bins`` buckets, the
  outer ones open-ended, duplicate edges of tied quantiles merged), so every bucket holds
  about the same share of reference rows. Infinite values do not move the edges; they
  count in the outer buckets.
* ``"sturges_combined"``: the rule of Evidently's stattests (``get_binned_data``): after
  dropping NaN and +-inf, ``np.histogram_bin_edges(reference + current, "sturges")`` when the
  reference has more than 20 distinct values, else one bucket per distinct value. ``bins``
  is ignored. Use it to compare scores with Evidently.

Empty buckets would make PSI infinite: a share of 0 is replaced by 0.0001, or by a
millionth of the smallest non-zero share when that is below 0.0001 (the same floor as
Evidently's stattests, so the scores agree on the same bins). Jensen-Shannon uses no floor.
Missing values (NaN/None) are left out of the distribution tests; a feature whose reference
or current sample has no values left scores "no drift". Only ``missing_share`` looks at them.

:func:`compute_drift` scores all features of a data frame at once: numeric columns are
processed in blocks (each column sorted once; quantile edges, bucket counts, the merged
ECDFs of KS and Wasserstein derived from the sorted block with array operations) and
categorical columns are counted with ``pd.factorize`` + ``np.bincount``. It gives the same
scores as calling :func:`compute_feature_drift` (the simple per-column implementation) on
each column; the parity tests hold the two together. KS p-values are SciPy's (exact up to
10,000 values per sample, asymptotic beyond): for large samples with a large statistic the
p-value itself (``kstwo.sf``) can take a good part of a second per column, as in SciPy.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

NUMERIC = "numeric"
CATEGORICAL = "categorical"

BINNINGS = ("quantile", "sturges_combined")
# Evidently bins a numeric feature as categories when its reference has at most this many
# distinct values (legacy/calculations/stattests/utils.py, get_binned_data).
EVIDENTLY_MAX_DISTINCT = 20
# scipy.stats.ks_2samp(method="auto") is exact when both samples have at most this many values.
_KS_MAX_AUTO_N = 10000
# Numeric columns are loaded into blocks of at most this many values per sample (64 MiB of
# float64), so memory stays bounded however many columns a frame has.
_BLOCK_ELEMENTS = 1 << 23


def _check_binning(binning: str, func: str) -> None:
    if binning not in BINNINGS:
        raise ValueError(
            f"The 'binning' parameter of {func} must be 'quantile' or 'sturges_combined'. Got {binning!r} instead."
        )


# -----------------------------------------------------------------------------------------
# Building blocks
# -----------------------------------------------------------------------------------------


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Bucket edges from reference quantiles, outer buckets open (``-inf``/``inf``)."""
    ref = np.asarray(reference, dtype=float)
    ref = ref[np.isfinite(ref)]  # +-inf would make quantiles inf/NaN and the edges unsorted
    if ref.size == 0:
        return np.array([-np.inf, np.inf])
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.concatenate(([-np.inf], inner, [np.inf]))


def sturges_edges(reference, current) -> np.ndarray:
    """Evidently's numeric bucket edges: Sturges' rule over both samples' finite values.

    ``np.histogram_bin_edges(concat(reference, current), bins="sturges")`` after dropping
    NaN and +-inf, as ``get_binned_data`` in Evidently's stattests does.
    """
    both = np.concatenate([_finite(reference), _finite(current)])
    if both.size == 0:
        raise ValueError("sturges_edges needs at least one finite value")
    return np.histogram_bin_edges(both, bins="sturges")


def bucket_shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``values`` in each bucket ``[edges[i], edges[i+1])`` (last bucket closed)."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return np.zeros(len(edges) - 1)
    idx = np.searchsorted(edges, values, side="right") - 1
    idx = np.clip(idx, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1) / values.size


def category_shares(reference, current) -> tuple[np.ndarray, np.ndarray, list]:
    """Shares per category over the union of categories seen in either sample."""
    ref = pd.Series(reference).dropna()
    cur = pd.Series(current).dropna()
    keys = sorted(set(ref.unique()) | set(cur.unique()), key=str)
    ref_counts = ref.value_counts().reindex(keys, fill_value=0).to_numpy(dtype=float)
    cur_counts = cur.value_counts().reindex(keys, fill_value=0).to_numpy(dtype=float)
    ref_share = ref_counts / max(len(ref), 1)
    cur_share = cur_counts / max(len(cur), 1)
    return ref_share, cur_share, keys


def binned_shares(reference, current, *, bins: int = 10, binning: str = "quantile") -> tuple[np.ndarray, np.ndarray]:
    """Bucket shares of a numeric feature in both samples under a binning rule.

    ``binning="quantile"``: reference-quantile buckets (see the module docstring);
    ``binning="sturges_combined"``: Evidently's rule, the same shares as Evidently's
    ``get_binned_data(..., feel_zeroes=False)`` on the NaN/inf-free samples. Feed the result
    to :func:`psi_from_shares` or :func:`js_from_shares`.
    """
    _check_binning(binning, "binned_shares")
    if binning == "quantile":
        edges = quantile_edges(reference, bins)
        return bucket_shares(reference, edges), bucket_shares(current, edges)
    r, c = _finite(reference), _finite(current)
    if r.size == 0 or c.size == 0:
        return np.zeros(0), np.zeros(0)
    if pd.Series(r).nunique() > EVIDENTLY_MAX_DISTINCT:
        edges = np.histogram_bin_edges(np.concatenate([r, c]), bins="sturges")
        return np.histogram(r, edges)[0] / r.size, np.histogram(c, edges)[0] / c.size
    rs, cs, _ = category_shares(r, c)
    return rs, cs


def fill_zero_shares(shares: np.ndarray) -> np.ndarray:
    """Replace empty-bucket shares by a small floor so that logarithms stay finite."""
    shares = np.array(shares, dtype=float)
    nonzero = shares[shares != 0]
    if nonzero.size == 0:
        return np.full_like(shares, 1.0 / max(len(shares), 1))
    floor = nonzero.min() / 10**6 if nonzero.min() <= 0.0001 else 0.0001
    shares[shares == 0] = floor
    return shares


def psi_from_shares(ref_shares: np.ndarray, cur_shares: np.ndarray) -> float:
    """Population stability index: ``sum((r - c) * ln(r / c))`` over buckets."""
    r = fill_zero_shares(ref_shares)
    c = fill_zero_shares(cur_shares)
    return float(np.sum((r - c) * np.log(r / c)))


def js_from_shares(ref_shares: np.ndarray, cur_shares: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) between two bucket distributions."""
    from scipy.spatial import distance

    return float(distance.jensenshannon(np.asarray(ref_shares, float), np.asarray(cur_shares, float)))


def _clean(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[~np.isnan(arr)]


def _finite(values) -> np.ndarray:
    """Values without NaN and +-inf; integer arrays keep their dtype (as Evidently sees them)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr
    arr = pd.Series(values).to_numpy(dtype=float, na_value=np.nan) if arr.dtype.kind not in "fb" else arr.astype(float)
    return arr[np.isfinite(arr)]


def _missing_count(values) -> tuple[int, int]:
    mask = pd.isna(pd.Series(values)).to_numpy()
    return int(mask.sum()), int(mask.size)


# -----------------------------------------------------------------------------------------
# Kernels shared by the per-column and the whole-frame code
# -----------------------------------------------------------------------------------------


def _ks_from_statistic(d: float, n1: int, n2: int) -> tuple[float, float] | None:
    """``(statistic, p-value)`` exactly as ``scipy.stats.ks_2samp(method="auto")`` returns them
    for a two-sided statistic ``d`` of samples of sizes ``n1`` and ``n2``.

    Follows ``ks_2samp``: exact when both samples have at most 10,000 values (the statistic
    is then rounded to a multiple of ``1/lcm(n1, n2)``), Smirnov's asymptotic distribution
    (``kstwo.sf(d, round(n1 n2 / (n1 + n2)))``) otherwise or when the exact computation
    fails. Returns None when SciPy's private helper is not available (the caller then runs
    ``ks_2samp`` itself).
    """
    try:
        from scipy.stats import _stats_py, distributions

        attempt_exact = _stats_py._attempt_exact_2kssamp
    except (ImportError, AttributeError):  # pragma: no cover - depends on the SciPy version
        return None
    mode = "exact" if max(n1, n2) <= _KS_MAX_AUTO_N else "asymp"
    prob = -np.inf
    if mode == "exact":
        success, d, prob = attempt_exact(n1, n2, math.gcd(n1, n2), d, "two-sided")
        if not success:
            log.debug("exact KS p-value failed for n1=%d n2=%d; using the asymptotic one", n1, n2)
            mode = "asymp"
    if mode == "asymp":
        m, n = sorted([float(n1), float(n2)], reverse=True)
        en = m * n / (m + n)
        prob = distributions.kstwo.sf(d, np.round(en))
    return float(d), float(np.clip(prob, 0, 1))


def _merged_cdf_diff(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sorted, non-empty, NaN-free samples merged: the merged values and
    ``F_a - F_b`` at each position (exact ECDF values at the last position of each run of
    equal values; partial counts inside a run, where the next gap is zero)."""
    n1, n2 = a.size, b.size
    both = np.concatenate((a, b))
    order = np.argsort(both, kind="stable")  # two sorted runs: a linear merge
    merged = both[order]
    from_a = np.cumsum(order < n1)
    diff = from_a / n1 - (np.arange(1, n1 + n2 + 1) - from_a) / n2
    return merged, diff


def _ks_sorted(a: np.ndarray, b: np.ndarray) -> MethodScore:
    """KS statistic from the merged ECDFs of two sorted samples, p-value as SciPy's."""
    if a.size == 0 or b.size == 0:
        return MethodScore(0.0, 1.0)
    merged, diff = _merged_cdf_diff(a, b)
    run_end = np.empty(merged.size, dtype=bool)
    run_end[-1] = True
    np.not_equal(merged[1:], merged[:-1], out=run_end[:-1])
    at_ends = diff[run_end]
    max_s = at_ends.max()
    min_s = np.clip(-at_ends.min(), 0, 1)
    d = float(min_s if min_s > max_s else max_s)
    res = _ks_from_statistic(d, a.size, b.size)
    if res is None:  # SciPy moved its internals: let ks_2samp do all of it
        from scipy import stats

        full = stats.ks_2samp(a, b)
        res = (float(full.statistic), float(full.pvalue))
    return MethodScore(*res)


def _wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance of two sorted samples: integral of ``|F_a - F_b|``."""
    merged, diff = _merged_cdf_diff(a, b)
    vecdot = getattr(np, "vecdot", None)
    gaps = np.diff(merged)
    dist = np.abs(diff[:-1])
    return float(vecdot(dist, gaps) if vecdot is not None else np.dot(dist, gaps))


def _normalised_wasserstein(dist: float, scale: float) -> float:
    return float(dist / scale) if scale > 0 else (0.0 if dist == 0 else float("inf"))


def _chi2_from_shares(r_share: np.ndarray, c_share: np.ndarray, n_cur: int) -> MethodScore:
    from scipy import stats

    if n_cur == 0 or len(r_share) < 2:
        return MethodScore(0.0, 1.0)
    expected = fill_zero_shares(r_share) * n_cur
    expected *= n_cur / expected.sum()
    observed = c_share * n_cur
    res = stats.chisquare(observed, expected)
    return MethodScore(float(res.statistic), float(res.pvalue))


def _fill_zero_rows(shares: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """:func:`fill_zero_shares` for each row of a padded matrix (``mask``: real buckets)."""
    nonzero = (shares != 0) & mask
    mins = np.where(nonzero, shares, np.inf).min(axis=1, initial=np.inf)
    floor = np.where(mins <= 0.0001, mins / 10**6, 0.0001)
    out = np.where((shares == 0) & mask, floor[:, None], shares)
    empty = ~nonzero.any(axis=1)
    if empty.any():
        width = np.maximum(mask.sum(axis=1), 1)
        out[empty] = np.where(mask[empty], (1.0 / width[empty])[:, None], 0.0)
    return out


def _psi_rows(ref: np.ndarray, cur: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PSI of every row pair of two padded share matrices."""
    r = np.where(mask, _fill_zero_rows(ref, mask), 1.0)
    c = np.where(mask, _fill_zero_rows(cur, mask), 1.0)
    return np.sum((r - c) * np.log(r / c), axis=1)


def _js_rows(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (natural log) of every row pair; zero padding is neutral."""
    from scipy.spatial import distance

    if ref.shape[1] == 0:
        return np.zeros(ref.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.atleast_1d(distance.jensenshannon(ref, cur, axis=1))


def _pad(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), width))
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = True
    return out, mask


# -----------------------------------------------------------------------------------------
# Methods: per-column (scalar) implementations
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodScore:
    score: float
    p_value: float | None = None


@dataclass(frozen=True)
class DriftMethod:
    """A named drift test. ``p_value`` methods drift when the p-value is *at or below*
    the threshold; distance methods drift when the score is *at or above* it.

    ``func(reference, current, kind, bins, binning=...)`` scores one column (the simple
    reference implementation). ``numeric_batch``/``categorical_batch`` score many columns at
    once for :func:`compute_drift`; a method without them is scored column by column.
    """

    name: str
    kinds: frozenset
    default_threshold: float
    uses_p_value: bool
    func: Callable[..., MethodScore]
    description: str = ""
    numeric_batch: Callable[..., list[MethodScore]] | None = None
    categorical_batch: Callable[..., list[MethodScore]] | None = None

    def is_drift(self, result: MethodScore, threshold: float) -> bool:
        if self.uses_p_value:
            return result.p_value is not None and result.p_value <= threshold
        return result.score >= threshold


def _shares(ref, cur, kind: str, bins: int, binning: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == CATEGORICAL:
        r, c, _ = category_shares(ref, cur)
        return r, c
    return binned_shares(ref, cur, bins=bins, binning=binning)


def _psi(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    r, c = _shares(ref, cur, kind, bins, binning)
    return MethodScore(psi_from_shares(r, c))


def _js(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    r, c = _shares(ref, cur, kind, bins, binning)
    if r.size == 0 or r.sum() == 0 or c.sum() == 0:
        return MethodScore(0.0)
    return MethodScore(js_from_shares(r, c))


def _ks(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    from scipy import stats

    r, c = _clean(ref), _clean(cur)
    if r.size == 0 or c.size == 0:
        return MethodScore(0.0, 1.0)
    res = stats.ks_2samp(r, c)
    return MethodScore(float(res.statistic), float(res.pvalue))


def _wasserstein(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    """Wasserstein-1 distance divided by the reference standard deviation."""
    from scipy import stats

    r, c = _clean(ref), _clean(cur)
    if r.size == 0 or c.size == 0:
        return MethodScore(0.0)
    with np.errstate(invalid="ignore", over="ignore"):  # +-inf values give inf/NaN, not warnings
        return MethodScore(_normalised_wasserstein(stats.wasserstein_distance(r, c), np.std(r)))


def _chi2(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    """Chi-squared test of the current category counts against the reference shares."""
    r_share, c_share, _ = category_shares(ref, cur)
    return _chi2_from_shares(r_share, c_share, pd.Series(cur).dropna().size)


def _linf(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    """L-infinity distance: the largest absolute difference of a category's shares."""
    r, c, _ = category_shares(ref, cur)
    return MethodScore(float(np.max(np.abs(r - c))) if r.size else 0.0)


def _missing_share(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    """``|current missing share - reference missing share|`` (NaN/None count as missing)."""
    (mr, nr), (mc, nc) = _missing_count(ref), _missing_count(cur)
    return MethodScore(abs((mc / nc if nc else 0.0) - (mr / nr if nr else 0.0)))


def _unseen(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    """Share of the non-missing current rows whose category never appears in the reference."""
    seen = set(pd.Series(ref).dropna().unique())
    c = pd.Series(cur).dropna()
    if c.empty:
        return MethodScore(0.0)
    return MethodScore(int((~c.isin(seen)).sum()) / c.size)


# -----------------------------------------------------------------------------------------
# Methods: whole-frame (batch) implementations
# -----------------------------------------------------------------------------------------


class _SortedBlock:
    """``k`` numeric columns of one sample, one row per column, each row sorted ascending
    (NaN last). Per row: ``n_valid`` non-NaN values, of which ``[lo, hi)`` are finite."""

    def __init__(self, values: np.ndarray):
        values.sort(axis=1)
        self.values = values
        k = values.shape[0]
        self.n_rows = values.shape[1]
        self.n_valid = np.empty(k, dtype=np.intp)
        self.lo = np.empty(k, dtype=np.intp)
        self.hi = np.empty(k, dtype=np.intp)
        for j in range(k):
            row = values[j]
            nv = int(np.searchsorted(row, np.nan, side="left"))  # NaN sorts last
            self.n_valid[j] = nv
            self.lo[j] = np.searchsorted(row[:nv], -np.inf, side="right")
            self.hi[j] = np.searchsorted(row[:nv], np.inf, side="left")

    def valid(self, j: int) -> np.ndarray:
        return self.values[j, : self.n_valid[j]]

    def finite(self, j: int) -> np.ndarray:
        return self.values[j, self.lo[j] : self.hi[j]]


def _quantile_inner_edges(block: _SortedBlock, bins: int) -> list[np.ndarray]:
    """Inner reference-quantile edges of every row, exactly as :func:`quantile_edges`:
    ``np.quantile``'s linear interpolation (its ``_lerp``) on the sorted finite values."""
    q = np.linspace(0, 1, bins + 1)[1:-1]
    k, width = block.values.shape
    m = block.hi - block.lo
    if q.size == 0 or k == 0 or width == 0:
        return [np.zeros(0)] * k
    virtual = (m - 1)[:, None] * q[None, :]
    prev = np.floor(virtual)
    gamma = virtual - prev
    prev_i = prev.astype(np.intp)
    next_i = np.minimum(prev_i + 1, np.maximum(m - 1, 0)[:, None])
    prev_i = np.clip(prev_i, 0, None)
    base = block.lo[:, None]
    a = np.take_along_axis(block.values, np.minimum(base + prev_i, width - 1), axis=1)
    b = np.take_along_axis(block.values, np.minimum(base + next_i, width - 1), axis=1)
    with np.errstate(invalid="ignore", over="ignore"):  # rows without finite values are dropped below
        diff = b - a
        edges = a + diff * gamma
        upper = gamma >= 0.5
        edges[upper] = (b - diff * (1 - gamma))[upper]
    edges.sort(axis=1)
    out = []
    for j in range(k):
        if m[j] == 0:
            out.append(np.zeros(0))
            continue
        e = edges[j]
        keep = np.ones(e.size, dtype=bool)
        np.not_equal(e[1:], e[:-1], out=keep[1:])
        out.append(e[keep])
    return out


def _counts_below(sorted_values: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """Bucket counts for buckets ``(-inf, e1), [e1, e2), ..., [e_last, inf]`` of a sorted sample."""
    below = np.searchsorted(sorted_values, inner, side="left")
    return np.diff(np.concatenate(([0], below, [sorted_values.size])))


def _sturges_edges_from_range(lo: float, hi: float, n: int, integer: bool) -> np.ndarray:
    """``np.histogram_bin_edges(x, "sturges")`` from ``x.min()``, ``x.max()`` and ``x.size``."""
    first, last = lo, hi
    if first == last:
        first, last = first - 0.5, last + 0.5
    width = (hi - lo) / (np.log2(n) + 1.0)
    if width:
        if integer and width < 1:
            width = 1
        n_bins = int(np.ceil((last - first) / width))
    else:
        n_bins = 1
    return np.linspace(first, last, n_bins + 1, endpoint=True)


def _block_shares(
    ref: _SortedBlock, cur: _SortedBlock, bins: int, binning: str, integer: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Bucket shares of every column under ``binning`` (same values as :func:`binned_shares`)."""
    k = ref.values.shape[0]
    r_rows: list[np.ndarray] = []
    c_rows: list[np.ndarray] = []
    if binning == "quantile":
        for j, inner in enumerate(_quantile_inner_edges(ref, bins)):
            for block, rows in ((ref, r_rows), (cur, c_rows)):
                v = block.valid(j)
                rows.append(_counts_below(v, inner) / v.size if v.size else np.zeros(inner.size + 1))
        return r_rows, c_rows
    for j in range(k):
        r, c = ref.finite(j), cur.finite(j)
        if r.size == 0 or c.size == 0:
            r_rows.append(np.zeros(0))
            c_rows.append(np.zeros(0))
            continue
        distinct_r = 1 + int(np.count_nonzero(r[1:] != r[:-1]))
        if distinct_r > EVIDENTLY_MAX_DISTINCT:
            edges = _sturges_edges_from_range(min(r[0], c[0]), max(r[-1], c[-1]), r.size + c.size, bool(integer[j]))
            inner = edges[1:-1]
        else:  # one bucket per distinct value of either sample
            keys = np.union1d(r[np.r_[True, r[1:] != r[:-1]]], c[np.r_[True, c[1:] != c[:-1]]])
            inner = keys[1:]  # [k_i, k_i+1) holds exactly the values equal to k_i
        r_rows.append(_counts_below(r, inner) / r.size)
        c_rows.append(_counts_below(c, inner) / c.size)
    return r_rows, c_rows


def _psi_numeric_batch(
    ref: _SortedBlock, cur: _SortedBlock, *, bins: int, binning: str, integer: np.ndarray
) -> list[MethodScore]:
    r_rows, c_rows = _block_shares(ref, cur, bins, binning, integer)
    (r, mask), (c, _) = _pad(r_rows), _pad(c_rows)
    return [MethodScore(float(v)) for v in _psi_rows(r, c, mask)]


def _js_numeric_batch(
    ref: _SortedBlock, cur: _SortedBlock, *, bins: int, binning: str, integer: np.ndarray
) -> list[MethodScore]:
    r_rows, c_rows = _block_shares(ref, cur, bins, binning, integer)
    (r, _), (c, _) = _pad(r_rows), _pad(c_rows)
    values = _js_rows(r, c)
    empty = (r.sum(axis=1) == 0) | (c.sum(axis=1) == 0)
    return [MethodScore(0.0 if e else float(v)) for v, e in zip(values, empty)]


def _ks_numeric_batch(ref: _SortedBlock, cur: _SortedBlock, **_) -> list[MethodScore]:
    return [_ks_sorted(ref.valid(j), cur.valid(j)) for j in range(ref.values.shape[0])]


def _wasserstein_numeric_batch(ref: _SortedBlock, cur: _SortedBlock, **_) -> list[MethodScore]:
    out = []
    for j in range(ref.values.shape[0]):
        a, b = ref.valid(j), cur.valid(j)
        if a.size == 0 or b.size == 0:
            out.append(MethodScore(0.0))
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # +-inf values give inf/NaN, not warnings
            out.append(MethodScore(_normalised_wasserstein(_wasserstein_sorted(a, b), np.std(a))))
    return out


def _missing_numeric_batch(ref: _SortedBlock, cur: _SortedBlock, **_) -> list[MethodScore]:
    def share(block: _SortedBlock) -> np.ndarray:
        n = block.n_rows
        return (n - block.n_valid) / n if n else np.zeros(block.n_valid.size)

    return [MethodScore(float(v)) for v in np.abs(share(cur) - share(ref))]


@dataclass(frozen=True)
class _CategoryCounts:
    """Counts of one categorical column over the union of categories (sorted by ``str``)."""

    ref: np.ndarray
    cur: np.ndarray
    ref_missing: int
    cur_missing: int

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        nr, nc = int(self.ref.sum()), int(self.cur.sum())
        return self.ref / max(nr, 1), self.cur / max(nc, 1)


def _psi_categorical_batch(items: list[_CategoryCounts]) -> list[MethodScore]:
    shares = [it.shares() for it in items]
    (r, mask), (c, _) = _pad([s[0] for s in shares]), _pad([s[1] for s in shares])
    return [MethodScore(float(v)) for v in _psi_rows(r, c, mask)]


def _js_categorical_batch(items: list[_CategoryCounts]) -> list[MethodScore]:
    shares = [it.shares() for it in items]
    (r, _), (c, _) = _pad([s[0] for s in shares]), _pad([s[1] for s in shares])
    values = _js_rows(r, c)
    return [MethodScore(0.0 if it.ref.sum() == 0 or it.cur.sum() == 0 else float(v)) for v, it in zip(values, items)]


def _linf_categorical_batch(items: list[_CategoryCounts]) -> list[MethodScore]:
    shares = [it.shares() for it in items]
    (r, _), (c, _) = _pad([s[0] for s in shares]), _pad([s[1] for s in shares])
    values = np.abs(r - c).max(axis=1, initial=0.0)
    return [MethodScore(float(v)) for v in values]


def _chi2_categorical_batch(items: list[_CategoryCounts]) -> list[MethodScore]:
    out = []
    for it in items:
        r, c = it.shares()
        out.append(_chi2_from_shares(r, c, int(it.cur.sum())))
    return out


def _unseen_categorical_batch(items: list[_CategoryCounts]) -> list[MethodScore]:
    out = []
    for it in items:
        n = int(it.cur.sum())
        out.append(MethodScore(int(it.cur[it.ref == 0].sum()) / n if n else 0.0))
    return out


def _missing_categorical_batch(items: list[_CategoryCounts]) -> list[MethodScore]:
    out = []
    for it in items:
        nr, nc = int(it.ref.sum()) + it.ref_missing, int(it.cur.sum()) + it.cur_missing
        out.append(MethodScore(abs((it.cur_missing / nc if nc else 0.0) - (it.ref_missing / nr if nr else 0.0))))
    return out


# -----------------------------------------------------------------------------------------
# Registry
# -----------------------------------------------------------------------------------------

METHODS: dict[str, DriftMethod] = {}


def register_method(method: DriftMethod) -> DriftMethod:
    METHODS[method.name] = method
    return method


_BOTH = frozenset({NUMERIC, CATEGORICAL})
register_method(
    DriftMethod(
        "psi",
        _BOTH,
        0.2,
        False,
        _psi,
        "Population stability index over buckets",
        _psi_numeric_batch,
        _psi_categorical_batch,
    )
)
register_method(
    DriftMethod(
        "ks", frozenset({NUMERIC}), 0.05, True, _ks, "Two-sample Kolmogorov-Smirnov test (p-value)", _ks_numeric_batch
    )
)
register_method(
    DriftMethod(
        "js", _BOTH, 0.1, False, _js, "Jensen-Shannon distance over buckets", _js_numeric_batch, _js_categorical_batch
    )
)
register_method(
    DriftMethod(
        "wasserstein",
        frozenset({NUMERIC}),
        0.1,
        False,
        _wasserstein,
        "Wasserstein distance in reference standard deviations",
        _wasserstein_numeric_batch,
    )
)
register_method(
    DriftMethod(
        "chi2",
        frozenset({CATEGORICAL}),
        0.05,
        True,
        _chi2,
        "Chi-squared goodness of fit against reference shares (p-value)",
        None,
        _chi2_categorical_batch,
    )
)
register_method(
    DriftMethod(
        "linf",
        frozenset({CATEGORICAL}),
        0.1,
        False,
        _linf,
        "L-infinity distance: largest absolute difference of category shares",
        None,
        _linf_categorical_batch,
    )
)
register_method(
    DriftMethod(
        "missing_share",
        _BOTH,
        0.1,
        False,
        _missing_share,
        "Absolute change of the share of missing values",
        _missing_numeric_batch,
        _missing_categorical_batch,
    )
)
register_method(
    DriftMethod(
        "unseen",
        frozenset({CATEGORICAL}),
        0.05,
        False,
        _unseen,
        "Share of current rows whose category the reference never had",
        None,
        _unseen_categorical_batch,
    )
)


def get_method(name: str) -> DriftMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown drift method {name!r}; use one of {sorted(METHODS)}") from None


def _check_kind(m: DriftMethod, kind: str, name: str) -> None:
    if kind not in m.kinds:
        raise ValueError(
            f"drift method {m.name!r} does not support {kind} feature {name!r}; it supports {sorted(m.kinds)}"
        )


# -----------------------------------------------------------------------------------------
# Results
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    method: str
    kind: str
    score: float
    p_value: float | None
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int
    calibration: dict | None = None  # threshold: auto -> how the threshold was set (retrain_lib.calibration)

    def explain(self) -> str:
        t = f"{self.threshold:g}" if self.calibration is None else f"{self.threshold:.3g}"
        if self.p_value is not None:
            op = "<=" if self.drifted else ">"
            text = f"{self.name}: {self.method} p={self.p_value:.3g} {op} {t}"
        else:
            op = ">=" if self.drifted else "<"
            text = f"{self.name}: {self.method} {self.score:.3f} {op} {t}"
        if self.calibration is None:
            return text
        c = self.calibration
        mt = ", BH" if c.get("multiple_testing") == "bh" else ""
        return f"{text} (auto: {c['source']}, false-alarm rate {c['false_alarm_rate']:g}{mt})"


@dataclass(frozen=True)
class DriftReport:
    features: list[FeatureDrift]
    drifted_share: float
    drift_share_threshold: float
    dataset_drift: bool
    reference_rows: int = 0
    current_rows: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [f for f in self.features if f.drifted]

    def top(self, n: int = 3) -> list[FeatureDrift]:
        """The most drifted features first (by how far past their threshold they are)."""

        def severity(f: FeatureDrift) -> float:
            if f.p_value is not None:
                return -np.log10(max(f.p_value, 1e-300)) / -np.log10(max(f.threshold, 1e-300))
            return f.score / f.threshold

        return sorted(self.features, key=severity, reverse=True)[:n]

    def to_dict(self) -> dict:
        out = {
            "features": [
                {
                    k: v
                    for k, v in asdict(f).items()
                    if k in ("name", "method", "score", "p_value", "threshold", "drifted", "kind")
                }
                | ({"calibration": dict(f.calibration)} if f.calibration is not None else {})
                for f in self.features
            ],
            "drifted_share": self.drifted_share,
            "drift_share_threshold": self.drift_share_threshold,
            "dataset_drift": self.dataset_drift,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }
        if "weights" in self.extra:
            out["weights"] = dict(self.extra["weights"])
        if "calibration" in self.extra:
            out["calibration"] = dict(self.extra["calibration"])
        return out


def compute_feature_drift(
    name: str,
    reference,
    current,
    *,
    method: str,
    kind: str,
    threshold: float | None = None,
    bins: int = 10,
    binning: str = "quantile",
) -> FeatureDrift:
    """Drift of one feature (the simple per-column implementation of every method)."""
    _check_binning(binning, "compute_feature_drift")
    m = get_method(method)
    _check_kind(m, kind, name)
    threshold = m.default_threshold if threshold is None else float(threshold)
    result = m.func(reference, current, kind, bins, binning=binning)
    return FeatureDrift(
        name=name,
        method=method,
        kind=kind,
        score=result.score,
        p_value=result.p_value,
        threshold=threshold,
        drifted=bool(m.is_drift(result, threshold)),
        reference_rows=int(pd.Series(reference).notna().sum()),
        current_rows=int(pd.Series(current).notna().sum()),
    )


def prediction_drift(
    reference_scores,
    current_scores,
    method: str = "psi",
    *,
    threshold: float | None = None,
    bins: int = 10,
    kind: str | None = None,
    binning: str = "quantile",
) -> FeatureDrift:
    """Drift of a model's outputs (scores, probabilities or predicted labels), named ``"prediction"``.

    ``kind`` defaults to numeric for numeric outputs and categorical otherwise (class
    labels as strings, booleans)::

        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> prediction_drift(rng.beta(2, 5, 4000), rng.beta(5, 2, 4000)).drifted
        True
    """
    ref, cur = np.asarray(reference_scores), np.asarray(current_scores)
    if ref.ndim != 1 or cur.ndim != 1:
        raise ValueError(
            "The 'reference_scores' and 'current_scores' parameters of prediction_drift must be "
            f"one-dimensional. Got shapes {ref.shape} and {cur.shape} instead; pass one column of "
            "scores (e.g. the positive-class probability)."
        )
    if kind is None:
        numeric = all(a.dtype.kind in "iuf" for a in (ref, cur))
        kind = NUMERIC if numeric else CATEGORICAL
    return compute_feature_drift(
        "prediction", ref, cur, method=method, kind=kind, threshold=threshold, bins=bins, binning=binning
    )


# -----------------------------------------------------------------------------------------
# Whole-frame engine
# -----------------------------------------------------------------------------------------


def _load_numeric(frame: pd.DataFrame, columns: list[str], which: str) -> tuple[np.ndarray, np.ndarray]:
    """A ``(len(columns), len(frame))`` float64 block (one row per column) and integer flags."""
    n = len(frame)
    out = np.empty((len(columns), n), dtype=np.float64)
    integer = np.zeros(len(columns), dtype=bool)
    views = []
    for i, col in enumerate(columns):
        s = frame[col]
        plain = isinstance(s.dtype, np.dtype)  # not a pandas extension dtype (Int64, Float64, ...)
        integer[i] = plain and s.dtype.kind in "iu"
        try:
            views.append(
                s.to_numpy() if plain and s.dtype.kind in "iufb" else s.to_numpy(dtype=np.float64, na_value=np.nan)
            )
            if views[-1].dtype.kind not in "iufb":
                views[-1] = views[-1].astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"numeric feature {col!r} has non-numeric values in the {which} data ({exc}); "
                "list it as categorical or clean the data"
            ) from exc
    if all(v.strides[0] == v.itemsize for v in views):
        for i, v in enumerate(views):
            out[i] = v
    else:  # columns of a row-major 2-D block: copy row tiles of all columns (cache friendly)
        step = 1 << 14
        for start in range(0, n, step):
            for i, v in enumerate(views):
                out[i, start : start + step] = v[start : start + step]
    return out, integer


def _category_counts(ref: pd.Series, cur: pd.Series) -> _CategoryCounts:
    """Category counts of both samples over their union, ordered like :func:`category_shares`."""
    if (
        isinstance(ref.dtype, pd.CategoricalDtype)
        and isinstance(cur.dtype, pd.CategoricalDtype)
        and ref.cat.categories.equals(cur.cat.categories)
    ):
        pairs = [(ref.cat.codes.to_numpy(), ref.cat.categories), (cur.cat.codes.to_numpy(), cur.cat.categories)]
    else:
        pairs = [pd.factorize(s, use_na_sentinel=True) for s in (ref, cur)]
    counted = []
    for codes, uniques in pairs:
        counts = np.bincount(codes.astype(np.intp) + 1, minlength=len(uniques) + 1)
        present = counts[1:] > 0
        counted.append((int(counts[0]), [u for u, p in zip(uniques, present) if p], counts[1:][present]))
    keys = sorted(dict.fromkeys(counted[0][1] + counted[1][1]), key=str)
    pos = {k: i for i, k in enumerate(keys)}
    union = []
    for _, uniques, counts in counted:
        arr = np.zeros(len(keys), dtype=np.int64)
        arr[[pos[u] for u in uniques]] = counts
        union.append(arr)
    return _CategoryCounts(union[0], union[1], counted[0][0], counted[1][0])


def _score_numeric(reference, current, columns_by_method, bins, binning) -> dict[str, tuple[MethodScore, int, int]]:
    out: dict[str, tuple[MethodScore, int, int]] = {}
    per_block = max(1, _BLOCK_ELEMENTS // max(len(reference), len(current), 1))
    for name, cols in columns_by_method.items():
        m = METHODS[name]
        if m.numeric_batch is None:
            for col in cols:
                r = m.func(reference[col], current[col], NUMERIC, bins, binning=binning)
                out[col] = (r, int(reference[col].notna().sum()), int(current[col].notna().sum()))
            continue
        for start in range(0, len(cols), per_block):
            chunk = cols[start : start + per_block]
            r_values, r_int = _load_numeric(reference, chunk, "reference")
            ref_block = _SortedBlock(r_values)
            c_values, c_int = _load_numeric(current, chunk, "current")
            cur_block = _SortedBlock(c_values)
            scores = m.numeric_batch(ref_block, cur_block, bins=bins, binning=binning, integer=r_int & c_int)
            for j, col in enumerate(chunk):
                out[col] = (scores[j], int(ref_block.n_valid[j]), int(cur_block.n_valid[j]))
            del ref_block, cur_block, r_values, c_values
    return out


def _score_categorical(reference, current, columns_by_method, bins, binning) -> dict[str, tuple[MethodScore, int, int]]:
    out: dict[str, tuple[MethodScore, int, int]] = {}
    for name, cols in columns_by_method.items():
        m = METHODS[name]
        if m.categorical_batch is None:
            for col in cols:
                r = m.func(reference[col], current[col], CATEGORICAL, bins, binning=binning)
                out[col] = (r, int(reference[col].notna().sum()), int(current[col].notna().sum()))
            continue
        items = [_category_counts(reference[col], current[col]) for col in cols]
        for col, it, score in zip(cols, items, m.categorical_batch(items)):
            out[col] = (score, int(it.ref.sum()), int(it.cur.sum()))
    return out


def _weighted_share(results: list[FeatureDrift], weights: dict[str, float]) -> tuple[float, dict[str, float]]:
    bad = {
        k: v
        for k, v in weights.items()
        if not isinstance(v, numbers.Real) or isinstance(v, bool) or not math.isfinite(v) or v < 0
    }
    if bad:
        raise ValueError(
            "The 'weights' parameter of compute_drift must map feature names to non-negative "
            f"finite numbers. Got {bad!r} instead."
        )
    raw = {f.name: float(weights.get(f.name, 0.0)) for f in results}
    total = sum(raw.values())
    if total <= 0:
        raise ValueError(
            "The 'weights' parameter of compute_drift gives every checked feature a weight of 0; "
            f"give a positive weight to at least one of {[f.name for f in results]}."
        )
    unweighted = [name for name, w in raw.items() if name not in weights]
    if unweighted:
        log.info("drift weights: %d checked feature(s) without a weight count 0: %s", len(unweighted), unweighted)
    norm = {name: w / total for name, w in raw.items()}
    return sum(norm[f.name] for f in results if f.drifted), norm


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    method: str = "psi",
    categorical_method: str = "psi",
    threshold: float | None = None,
    per_feature: dict[str, tuple[str | None, float | None]] | None = None,
    bins: int = 10,
    drift_share: float = 0.3,
    weights: dict[str, float] | None = None,
    binning: str = "quantile",
    false_alarm_rate: float = 0.01,
    multiple_testing: str | None = None,
    seed: int = 0,
) -> DriftReport:
    """Drift of every feature and the dataset-level decision.

    ``threshold`` applies to the default methods (``None`` = each method's default);
    ``per_feature`` maps a feature to ``(method, threshold)`` overrides.
    The dataset drifts when the share of drifted features is at least ``drift_share``.
    With ``weights`` (e.g. feature importances) that share is weighted: each checked
    feature counts ``weight / sum of the checked features' weights``; a checked feature
    missing from ``weights`` counts 0 and names that are not checked are ignored.
    ``binning`` chooses the numeric buckets of PSI and JS (see the module docstring).

    Calibrated thresholds: ``threshold="auto"`` calibrates every feature without its own
    threshold (whatever its method), a ``per_feature`` threshold ``"auto"`` that feature, to a
    false-alarm rate ``false_alarm_rate`` under no drift at the actual sample sizes;
    ``multiple_testing`` (``"bh"``, the default, or ``"none"``) corrects across the calibrated
    features and ``seed`` fixes the resampling of methods without a closed form. Each such
    :class:`FeatureDrift` carries the threshold used and a ``calibration`` dict; see
    :mod:`retrain_lib.calibration`.

    Scores equal those of :func:`compute_feature_drift` on each column; this function
    computes them for all columns at once.
    """
    _check_binning(binning, "compute_drift")
    per_feature = per_feature or {}
    _check_threshold(threshold, "threshold")
    for col, (_, t) in per_feature.items():
        _check_threshold(t, f"per_feature[{col!r}]")
    plan: list[tuple[str, str, str, float | str]] = []
    for kind, columns, default in ((NUMERIC, numeric, method), (CATEGORICAL, categorical, categorical_method)):
        for col in columns:
            if col not in reference.columns or col not in current.columns:
                raise ValueError(
                    f"feature {col!r} is missing from the {'reference' if col not in reference.columns else 'current'} data"
                )
            m, t = per_feature.get(col, (None, None))
            chosen = m or default
            if t is None and threshold == AUTO:
                t = AUTO
            if t is None and m is None and chosen == default and (kind == NUMERIC or default == method):
                t = threshold
            dm = get_method(chosen)
            _check_kind(dm, kind, col)
            plan.append((col, kind, chosen, dm.default_threshold if t is None else (AUTO if t == AUTO else float(t))))

    by_method: dict[str, dict[str, list[str]]] = {NUMERIC: {}, CATEGORICAL: {}}
    for col, kind, chosen, _ in plan:
        by_method[kind].setdefault(chosen, []).append(col)
    scores = _score_numeric(reference, current, by_method[NUMERIC], bins, binning)
    scores.update(_score_categorical(reference, current, by_method[CATEGORICAL], bins, binning))

    extra: dict = {}
    calibrated: dict[str, tuple[float, bool, dict]] = {}
    if any(t == AUTO for *_, t in plan):
        calibrated, extra["calibration"] = _calibrate(
            plan,
            scores,
            reference,
            current,
            bins=bins,
            binning=binning,
            false_alarm_rate=false_alarm_rate,
            multiple_testing=multiple_testing,
            seed=seed,
        )
    results = []
    for col, kind, chosen, t in plan:
        res, n_ref, n_cur = scores[col]
        if col in calibrated:
            t, drifted, info = calibrated[col]
        else:
            drifted, info = bool(METHODS[chosen].is_drift(res, t)), None
        results.append(
            FeatureDrift(
                name=col,
                method=chosen,
                kind=kind,
                score=res.score,
                p_value=res.p_value,
                threshold=t,
                drifted=drifted,
                reference_rows=n_ref,
                current_rows=n_cur,
                calibration=info,
            )
        )
    if weights is not None and results:
        share, extra["weights"] = _weighted_share(results, weights)
    else:
        share = sum(r.drifted for r in results) / len(results) if results else 0.0
    if binning != "quantile":
        extra["binning"] = binning
    return DriftReport(results, share, drift_share, share >= drift_share, len(reference), len(current), extra)


AUTO = "auto"


def _check_threshold(value, where: str) -> None:
    if value is None or value == AUTO:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(
            f"The {where!r} threshold of compute_drift must be a positive number, 'auto' or None. "
            f"Got {value!r} instead."
        )


def _calibrate(
    plan, scores, reference, current, *, bins, binning, false_alarm_rate, multiple_testing, seed
) -> tuple[dict[str, tuple[float, bool, dict]], dict]:
    from retrain_lib import calibration

    if (
        isinstance(false_alarm_rate, bool)
        or not isinstance(false_alarm_rate, numbers.Real)
        or not 0 < false_alarm_rate < 1
    ):
        raise ValueError(
            "The 'false_alarm_rate' parameter of compute_drift must be a number in (0, 1). "
            f"Got {false_alarm_rate!r} instead."
        )
    multiple_testing = "bh" if multiple_testing is None else multiple_testing
    if multiple_testing not in calibration.MULTIPLE_TESTING:
        raise ValueError(
            "The 'multiple_testing' parameter of compute_drift must be 'bh', 'none' or None. "
            f"Got {multiple_testing!r} instead."
        )
    found = {}
    for col, kind, chosen, t in plan:
        if t != AUTO:
            continue
        res, n_ref, n_cur = scores[col]
        found[col] = calibration.calibrate_feature(
            col,
            chosen,
            kind,
            reference[col],
            current[col],
            score=res.score,
            p_value=res.p_value,
            n_ref=n_ref,
            n_cur=n_cur,
            bins=bins,
            binning=binning,
            false_alarm_rate=false_alarm_rate,
            seed=seed,
        )
    decided = calibration.decide_calibrated(found, false_alarm_rate=false_alarm_rate, multiple_testing=multiple_testing)
    level = next(iter(decided.values()))[2]["level"]
    summary = {
        "false_alarm_rate": float(false_alarm_rate),
        "multiple_testing": multiple_testing,
        "features": len(found),
        "level": level,
    }
    return decided, summary


def drift_for_config(
    cfg, reference: pd.DataFrame, current: pd.DataFrame, *, weights: dict[str, float] | None = None
) -> DriftReport:
    """:func:`compute_drift` with methods and thresholds from a model config.

    ``drift.threshold: auto`` (or a feature's ``threshold: auto``) calibrates thresholds
    to ``drift.false_alarm_rate`` with ``drift.multiple_testing``. ``drift.persistence`` is
    not applied here (one report is one check): see
    :func:`retrain_lib.calibration.apply_persistence`.
    """
    d = cfg.drift
    per = {name: (spec.method, spec.threshold) for name, spec in d.features.items()}
    skip = set(d.exclude)
    return compute_drift(
        reference,
        current,
        numeric=[c for c in cfg.features.numeric if c not in skip],
        categorical=[c for c in cfg.features.categorical if c not in skip],
        method=d.method,
        categorical_method=d.categorical_method,
        threshold=d.threshold,
        per_feature=per,
        bins=d.bins,
        drift_share=d.drift_share,
        false_alarm_rate=d.false_alarm_rate,
        multiple_testing=d.multiple_testing,
        weights=weights,
    )


# -----------------------------------------------------------------------------------------
# Features of two files without a model config
# -----------------------------------------------------------------------------------------

_ID_NAMES = ("id", "uuid", "guid")
_ID_SUFFIXES = ("_id", "-id", ".id", " id", "_uuid", "_guid")
_MIN_ROWS_FOR_UNIQUE = 20  # fewer rows than this prove nothing by being all different


@dataclass(frozen=True)
class FeatureSelection:
    """The columns two tables are compared on, when no model config names the features.

    ``shared`` are the columns both have; ``left_out`` maps the shared columns that are not
    features (identifiers, timestamps, ``exclude``) to why; ``numeric`` and ``categorical``
    are the rest, by dtype.
    """

    shared: list[str]
    numeric: list[str]
    categorical: list[str]
    left_out: dict[str, str]
    reference_columns: int
    current_columns: int

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical

    @property
    def shared_fraction(self) -> float:
        """Shared columns over the columns of the wider table (1.0: the same columns)."""
        widest = max(self.reference_columns, self.current_columns)
        return len(self.shared) / widest if widest else 0.0


def _looks_like_timestamps(values: pd.Series) -> bool:
    sample = values.dropna().head(50)
    if sample.empty or not all(isinstance(v, str) for v in sample):
        return False
    if not all(any(ch.isdigit() for ch in v) and ("-" in v or ":" in v or "/" in v) for v in sample):
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="ISO8601", utc=True)
    return bool(parsed.notna().all())


def _not_a_feature(name: str, reference: pd.Series, current: pd.Series) -> str | None:
    """Why a column is an identifier or a timestamp rather than a feature; None for a feature."""
    lowered = str(name).lower()
    if lowered in _ID_NAMES or lowered.endswith(_ID_SUFFIXES) or (str(name).endswith("Id") and len(str(name)) > 2):
        return "id: named like one"
    for s in (reference, current):
        if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
            return "timestamp: datetime column"
    if _looks_like_timestamps(reference) and _looks_like_timestamps(current):
        return "timestamp: ISO date/time text"
    if min(len(reference), len(current)) >= _MIN_ROWS_FOR_UNIQUE:
        unique = all(s.notna().all() and s.is_unique for s in (reference, current))
        if unique and not pd.api.types.is_numeric_dtype(reference) and not pd.api.types.is_bool_dtype(reference):
            return "id: a different value in every row"
        if (
            unique
            and pd.api.types.is_integer_dtype(reference)
            and all(s.is_monotonic_increasing for s in (reference, current))
        ):
            return "id: an increasing integer in every row"
    return None


def select_features(reference: pd.DataFrame, current: pd.DataFrame, *, exclude=(), keep=()) -> FeatureSelection:
    """The columns to score when comparing ``reference`` and ``current`` without a model
    config: the shared ones, less identifiers (named ``id``/``*_id``, a different text value
    in every row, an increasing integer counter), timestamps (datetime dtype, ISO date/time
    text) and ``exclude``; ``keep`` names columns to score even so. Numeric columns (not bool)
    are numeric features, the others categorical.

    >>> ref = pd.DataFrame({"order_id": range(30), "amount": [1.0] * 30, "shop": ["a"] * 30})
    >>> sel = select_features(ref, ref)
    >>> sel.numeric, sel.categorical, sel.left_out
    (['amount'], ['shop'], {'order_id': 'id: named like one'})
    """
    excluded, kept = set(exclude or ()), set(keep or ())
    shared = [c for c in reference.columns if c in current.columns]
    left_out: dict[str, str] = {}
    features = []
    for c in shared:
        why = "excluded" if c in excluded else None if c in kept else _not_a_feature(c, reference[c], current[c])
        if why:
            left_out[c] = why
        else:
            features.append(c)
    numeric = [
        c
        for c in features
        if pd.api.types.is_numeric_dtype(reference[c]) and not pd.api.types.is_bool_dtype(reference[c])
    ]
    categorical = [c for c in features if c not in numeric]
    return FeatureSelection(shared, numeric, categorical, left_out, len(reference.columns), len(current.columns))
