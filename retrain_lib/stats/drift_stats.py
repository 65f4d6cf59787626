"""Building blocks of the drift statistics on NumPy arrays: feature kinds, bucket edges and
shares, PSI / Jensen-Shannon / KS / Wasserstein / chi-squared kernels, per column and per row
of a share matrix. The methods of :mod:`retrain_lib.stats.drift_methods` and the null models of
:mod:`retrain_lib.stats.calibration` are built from them.

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
KS p-values are SciPy's (exact up to 10,000 values per sample, asymptotic beyond).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def check_binning(binning: str, func: str) -> None:
    """Raise ValueError unless ``binning`` is one of :data:`BINNINGS` (``func`` names the caller)."""
    if binning not in BINNINGS:
        raise ValueError(
            f"The 'binning' parameter of {func} must be 'quantile' or 'sturges_combined'. Got {binning!r} instead."
        )


@dataclass(frozen=True)
class MethodScore:
    """The result of one drift method on one feature: a score and, for tests, a p-value."""

    score: float
    p_value: float | None = None


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
    check_binning(binning, "binned_shares")
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


def without_nan(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    return arr[~np.isnan(arr)]


def _finite(values) -> np.ndarray:
    """Values without NaN and +-inf; integer arrays keep their dtype (as Evidently sees them)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr
    arr = pd.Series(values).to_numpy(dtype=float, na_value=np.nan) if arr.dtype.kind not in "fb" else arr.astype(float)
    return arr[np.isfinite(arr)]


def missing_count(values) -> tuple[int, int]:
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


def ks_p_value(d: float, n1: int, n2: int) -> tuple[float, float]:
    """``(statistic, p-value)`` for a two-sided KS statistic ``d`` of samples of sizes ``n1``
    and ``n2``, as ``scipy.stats.ks_2samp(method="auto")`` computes them (see
    :func:`_ks_from_statistic`); Smirnov's asymptotic p-value if SciPy's exact helper is gone."""
    if n1 <= 0 or n2 <= 0:
        return 0.0, 1.0
    res = _ks_from_statistic(float(d), int(n1), int(n2))
    if res is not None:
        return res
    from scipy.stats import distributions  # pragma: no cover - depends on the SciPy version

    en = n1 * n2 / (n1 + n2)  # pragma: no cover
    return float(d), float(np.clip(distributions.kstwo.sf(d, np.round(en)), 0, 1))  # pragma: no cover


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


def ks_sorted(a: np.ndarray, b: np.ndarray) -> MethodScore:
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


def wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance of two sorted samples: integral of ``|F_a - F_b|``."""
    merged, diff = _merged_cdf_diff(a, b)
    vecdot = getattr(np, "vecdot", None)
    gaps = np.diff(merged)
    dist = np.abs(diff[:-1])
    return float(vecdot(dist, gaps) if vecdot is not None else np.dot(dist, gaps))


def normalised_wasserstein(dist: float, scale: float) -> float:
    return float(dist / scale) if scale > 0 else (0.0 if dist == 0 else float("inf"))


def chi2_from_shares(r_share: np.ndarray, c_share: np.ndarray, n_cur: int) -> MethodScore:
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


def psi_rows(ref: np.ndarray, cur: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """PSI of every row pair of two padded share matrices."""
    r = np.where(mask, _fill_zero_rows(ref, mask), 1.0)
    c = np.where(mask, _fill_zero_rows(cur, mask), 1.0)
    return np.sum((r - c) * np.log(r / c), axis=1)


def js_rows(ref: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (natural log) of every row pair; zero padding is neutral."""
    from scipy.spatial import distance

    if ref.shape[1] == 0:
        return np.zeros(ref.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.atleast_1d(distance.jensenshannon(ref, cur, axis=1))


def pad_rows(rows: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), width))
    mask = np.zeros((len(rows), width), dtype=bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = True
    return out, mask
