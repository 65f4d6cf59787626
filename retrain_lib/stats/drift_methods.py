"""The registry of named drift methods (:data:`METHODS`, :class:`DriftMethod`) with their
per-column implementations and the whole-frame (batch) implementations that
:func:`retrain_lib.stats.drift.compute_drift` uses.

Each method carries the feature types it supports, its default threshold and its
direction, so no caller has to remember whether "drift" means a large distance (PSI) or a
small p-value (KS). Methods (direction: distances drift when the score is *at or above* the
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

Numeric buckets of PSI and JS follow ``binning`` (see :mod:`retrain_lib.stats.drift_stats`).
Missing values (NaN/None) are left out of the distribution tests; a feature whose reference
or current sample has no values left scores "no drift". Only ``missing_share`` looks at them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from retrain_lib.stats.drift_stats import (
    CATEGORICAL,
    EVIDENTLY_MAX_DISTINCT,
    NUMERIC,
    MethodScore,
    binned_shares,
    category_shares,
    chi2_from_shares,
    js_from_shares,
    js_rows,
    ks_sorted,
    missing_count,
    normalised_wasserstein,
    pad_rows,
    psi_from_shares,
    psi_rows,
    wasserstein_sorted,
    without_nan,
)

# -----------------------------------------------------------------------------------------
# Methods: per-column (scalar) implementations
# -----------------------------------------------------------------------------------------


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

    r, c = without_nan(ref), without_nan(cur)
    if r.size == 0 or c.size == 0:
        return MethodScore(0.0, 1.0)
    res = stats.ks_2samp(r, c)
    return MethodScore(float(res.statistic), float(res.pvalue))


def _wasserstein(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    """Wasserstein-1 distance divided by the reference standard deviation."""
    from scipy import stats

    r, c = without_nan(ref), without_nan(cur)
    if r.size == 0 or c.size == 0:
        return MethodScore(0.0)
    with np.errstate(invalid="ignore", over="ignore"):  # +-inf values give inf/NaN, not warnings
        return MethodScore(normalised_wasserstein(stats.wasserstein_distance(r, c), np.std(r)))


def _chi2(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    """Chi-squared test of the current category counts against the reference shares."""
    r_share, c_share, _ = category_shares(ref, cur)
    return chi2_from_shares(r_share, c_share, pd.Series(cur).dropna().size)


def _linf(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    """L-infinity distance: the largest absolute difference of a category's shares."""
    r, c, _ = category_shares(ref, cur)
    return MethodScore(float(np.max(np.abs(r - c))) if r.size else 0.0)


def _missing_share(ref, cur, kind: str, bins: int, binning: str = "quantile") -> MethodScore:
    """``|current missing share - reference missing share|`` (NaN/None count as missing)."""
    (mr, nr), (mc, nc) = missing_count(ref), missing_count(cur)
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


class SortedBlock:
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


def _quantile_inner_edges(block: SortedBlock, bins: int) -> list[np.ndarray]:
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
    ref: SortedBlock, cur: SortedBlock, bins: int, binning: str, integer: np.ndarray
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
    ref: SortedBlock, cur: SortedBlock, *, bins: int, binning: str, integer: np.ndarray
) -> list[MethodScore]:
    r_rows, c_rows = _block_shares(ref, cur, bins, binning, integer)
    (r, mask), (c, _) = pad_rows(r_rows), pad_rows(c_rows)
    return [MethodScore(float(v)) for v in psi_rows(r, c, mask)]


def _js_numeric_batch(
    ref: SortedBlock, cur: SortedBlock, *, bins: int, binning: str, integer: np.ndarray
) -> list[MethodScore]:
    r_rows, c_rows = _block_shares(ref, cur, bins, binning, integer)
    (r, _), (c, _) = pad_rows(r_rows), pad_rows(c_rows)
    values = js_rows(r, c)
    empty = (r.sum(axis=1) == 0) | (c.sum(axis=1) == 0)
    return [MethodScore(0.0 if e else float(v)) for v, e in zip(values, empty)]


def _ks_numeric_batch(ref: SortedBlock, cur: SortedBlock, **_) -> list[MethodScore]:
    return [ks_sorted(ref.valid(j), cur.valid(j)) for j in range(ref.values.shape[0])]


def _wasserstein_numeric_batch(ref: SortedBlock, cur: SortedBlock, **_) -> list[MethodScore]:
    out = []
    for j in range(ref.values.shape[0]):
        a, b = ref.valid(j), cur.valid(j)
        if a.size == 0 or b.size == 0:
            out.append(MethodScore(0.0))
            continue
        with np.errstate(invalid="ignore", over="ignore"):  # +-inf values give inf/NaN, not warnings
            out.append(MethodScore(normalised_wasserstein(wasserstein_sorted(a, b), np.std(a))))
    return out


def _missing_numeric_batch(ref: SortedBlock, cur: SortedBlock, **_) -> list[MethodScore]:
    def share(block: SortedBlock) -> np.ndarray:
        n = block.n_rows
        return (n - block.n_valid) / n if n else np.zeros(block.n_valid.size)

    return [MethodScore(float(v)) for v in np.abs(share(cur) - share(ref))]


@dataclass(frozen=True)
class CategoryCounts:
    """Counts of one categorical column over the union of categories (sorted by ``str``)."""

    ref: np.ndarray
    cur: np.ndarray
    ref_missing: int
    cur_missing: int

    def shares(self) -> tuple[np.ndarray, np.ndarray]:
        nr, nc = int(self.ref.sum()), int(self.cur.sum())
        return self.ref / max(nr, 1), self.cur / max(nc, 1)


def _psi_categorical_batch(items: list[CategoryCounts]) -> list[MethodScore]:
    shares = [it.shares() for it in items]
    (r, mask), (c, _) = pad_rows([s[0] for s in shares]), pad_rows([s[1] for s in shares])
    return [MethodScore(float(v)) for v in psi_rows(r, c, mask)]


def _js_categorical_batch(items: list[CategoryCounts]) -> list[MethodScore]:
    shares = [it.shares() for it in items]
    (r, _), (c, _) = pad_rows([s[0] for s in shares]), pad_rows([s[1] for s in shares])
    values = js_rows(r, c)
    return [MethodScore(0.0 if it.ref.sum() == 0 or it.cur.sum() == 0 else float(v)) for v, it in zip(values, items)]


def _linf_categorical_batch(items: list[CategoryCounts]) -> list[MethodScore]:
    shares = [it.shares() for it in items]
    (r, _), (c, _) = pad_rows([s[0] for s in shares]), pad_rows([s[1] for s in shares])
    values = np.abs(r - c).max(axis=1, initial=0.0)
    return [MethodScore(float(v)) for v in values]


def _chi2_categorical_batch(items: list[CategoryCounts]) -> list[MethodScore]:
    out = []
    for it in items:
        r, c = it.shares()
        out.append(chi2_from_shares(r, c, int(it.cur.sum())))
    return out


def _unseen_categorical_batch(items: list[CategoryCounts]) -> list[MethodScore]:
    out = []
    for it in items:
        n = int(it.cur.sum())
        out.append(MethodScore(int(it.cur[it.ref == 0].sum()) / n if n else 0.0))
    return out


def _missing_categorical_batch(items: list[CategoryCounts]) -> list[MethodScore]:
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


def check_kind(m: DriftMethod, kind: str, name: str) -> None:
    if kind not in m.kinds:
        raise ValueError(
            f"drift method {m.name!r} does not support {kind} feature {name!r}; it supports {sorted(m.kinds)}"
        )
