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

Binning of numeric features for PSI and Jensen-Shannon uses quantiles of the *reference*
window (``bins`` buckets, the outer ones open-ended), so every bucket holds about the same
share of reference rows. Empty buckets would make PSI infinite: a share of 0 is replaced by
0.0001, or by a millionth of the smallest non-zero share when that is below 0.0001 (the
same floor as Evidently's stattests, so the scores agree on the same bins). Missing values
are left out of the distribution tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

NUMERIC = "numeric"
CATEGORICAL = "categorical"


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


# -----------------------------------------------------------------------------------------
# Methods
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodScore:
    score: float
    p_value: float | None = None


@dataclass(frozen=True)
class DriftMethod:
    """A named drift test. ``p_value`` methods drift when the p-value is *at or below*
    the threshold; distance methods drift when the score is *at or above* it."""

    name: str
    kinds: frozenset
    default_threshold: float
    uses_p_value: bool
    func: Callable[..., MethodScore]
    description: str = ""

    def is_drift(self, result: MethodScore, threshold: float) -> bool:
        if self.uses_p_value:
            return result.p_value is not None and result.p_value <= threshold
        return result.score >= threshold


def _psi(ref, cur, kind: str, bins: int) -> MethodScore:
    if kind == CATEGORICAL:
        r, c, _ = category_shares(ref, cur)
    else:
        edges = quantile_edges(ref, bins)
        r, c = bucket_shares(ref, edges), bucket_shares(cur, edges)
    return MethodScore(psi_from_shares(r, c))


def _js(ref, cur, kind: str, bins: int) -> MethodScore:
    if kind == CATEGORICAL:
        r, c, _ = category_shares(ref, cur)
    else:
        edges = quantile_edges(ref, bins)
        r, c = bucket_shares(ref, edges), bucket_shares(cur, edges)
    return MethodScore(js_from_shares(r, c))


def _ks(ref, cur, kind: str, bins: int) -> MethodScore:
    from scipy import stats

    r, c = _clean(ref), _clean(cur)
    if r.size == 0 or c.size == 0:
        return MethodScore(0.0, 1.0)
    res = stats.ks_2samp(r, c)
    return MethodScore(float(res.statistic), float(res.pvalue))


def _wasserstein(ref, cur, kind: str, bins: int) -> MethodScore:
    """Wasserstein-1 distance divided by the reference standard deviation."""
    from scipy import stats

    r, c = _clean(ref), _clean(cur)
    if r.size == 0 or c.size == 0:
        return MethodScore(0.0)
    scale = np.std(r)
    dist = stats.wasserstein_distance(r, c)
    return MethodScore(float(dist / scale) if scale > 0 else (0.0 if dist == 0 else float("inf")))


def _chi2(ref, cur, kind: str, bins: int) -> MethodScore:
    """Chi-squared test of the current category counts against the reference shares."""
    from scipy import stats

    r_share, c_share, _ = category_shares(ref, cur)
    n_cur = pd.Series(cur).dropna().size
    if n_cur == 0 or len(r_share) < 2:
        return MethodScore(0.0, 1.0)
    expected = fill_zero_shares(r_share) * n_cur
    expected *= n_cur / expected.sum()
    observed = c_share * n_cur
    res = stats.chisquare(observed, expected)
    return MethodScore(float(res.statistic), float(res.pvalue))


METHODS: dict[str, DriftMethod] = {}


def register_method(method: DriftMethod) -> DriftMethod:
    METHODS[method.name] = method
    return method


register_method(DriftMethod("psi", frozenset({NUMERIC, CATEGORICAL}), 0.2, False, _psi,
                            "Population stability index over reference-quantile buckets"))
register_method(DriftMethod("ks", frozenset({NUMERIC}), 0.05, True, _ks,
                            "Two-sample Kolmogorov-Smirnov test (p-value)"))
register_method(DriftMethod("js", frozenset({NUMERIC, CATEGORICAL}), 0.1, False, _js,
                            "Jensen-Shannon distance over buckets"))
register_method(DriftMethod("wasserstein", frozenset({NUMERIC}), 0.1, False, _wasserstein,
                            "Wasserstein distance in reference standard deviations"))
register_method(DriftMethod("chi2", frozenset({CATEGORICAL}), 0.05, True, _chi2,
                            "Chi-squared goodness of fit against reference shares (p-value)"))


def get_method(name: str) -> DriftMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown drift method {name!r}; use one of {sorted(METHODS)}") from None


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

    def explain(self) -> str:
        if self.p_value is not None:
            op = "<=" if self.drifted else ">"
            return f"{self.name}: {self.method} p={self.p_value:.3g} {op} {self.threshold:g}"
        op = ">=" if self.drifted else "<"
        return f"{self.name}: {self.method} {self.score:.3f} {op} {self.threshold:g}"


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
        return {
            "features": [
                {k: v for k, v in asdict(f).items() if k in ("name", "method", "score", "p_value", "threshold",
                                                               "drifted", "kind")}
                for f in self.features
            ],
            "drifted_share": self.drifted_share,
            "drift_share_threshold": self.drift_share_threshold,
            "dataset_drift": self.dataset_drift,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
        }


def compute_feature_drift(
    name: str, reference, current, *, method: str, kind: str, threshold: float | None = None, bins: int = 10
) -> FeatureDrift:
    m = get_method(method)
    if kind not in m.kinds:
        raise ValueError(f"drift method {method!r} does not support {kind} feature {name!r}; "
                         f"it supports {sorted(m.kinds)}")
    threshold = m.default_threshold if threshold is None else float(threshold)
    result = m.func(reference, current, kind, bins)
    return FeatureDrift(
        name=name, method=method, kind=kind, score=result.score, p_value=result.p_value, threshold=threshold,
        drifted=bool(m.is_drift(result, threshold)),
        reference_rows=int(pd.Series(reference).notna().sum()), current_rows=int(pd.Series(current).notna().sum()),
    )


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
) -> DriftReport:
    """Drift of every feature and the dataset-level decision.

    ``threshold`` applies to the default methods (``None`` = each method's default);
    ``per_feature`` maps a feature to ``(method, threshold)`` overrides.
    The dataset drifts when the share of drifted features is at least ``drift_share``.
    """
    per_feature = per_feature or {}
    results = []
    for kind, columns, default in ((NUMERIC, numeric, method), (CATEGORICAL, categorical, categorical_method)):
        for col in columns:
            if col not in reference.columns or col not in current.columns:
                raise ValueError(f"feature {col!r} is missing from the {'reference' if col not in reference.columns else 'current'} data")
            m, t = per_feature.get(col, (None, None))
            chosen = m or default
            if t is None and m is None and chosen == default and (kind == NUMERIC or default == method):
                t = threshold
            results.append(compute_feature_drift(col, reference[col], current[col], method=chosen, kind=kind,
                                                 threshold=t, bins=bins))
    share = sum(r.drifted for r in results) / len(results) if results else 0.0
    return DriftReport(results, share, drift_share, share >= drift_share, len(reference), len(current))


def drift_for_config(cfg, reference: pd.DataFrame, current: pd.DataFrame) -> DriftReport:
    """:func:`compute_drift` with methods and thresholds from a model config."""
    d = cfg.drift
    per = {name: (spec.method, spec.threshold) for name, spec in d.features.items()}
    skip = set(d.exclude)
    return compute_drift(
        reference, current, numeric=[c for c in cfg.features.numeric if c not in skip],
        categorical=[c for c in cfg.features.categorical if c not in skip],
        method=d.method, categorical_method=d.categorical_method, threshold=d.threshold,
        per_feature=per, bins=d.bins, drift_share=d.drift_share,
    )
