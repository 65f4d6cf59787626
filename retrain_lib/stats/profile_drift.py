"""Drift from stored profiles (:mod:`retrain_lib.stats.profile`), without the samples.

:func:`compare_profiles` scores a current window's :class:`~retrain_lib.stats.profile.Profile`
against a reference profile and returns the same :class:`~retrain_lib.stats.drift.DriftReport`
as :func:`retrain_lib.stats.drift.compute_drift` (binning ``"quantile"`` only; the spec's
edges are the reference's quantile edges, as the exact path derives them):

* **Binned methods, exact.** ``psi``, ``js`` (numeric: on the spec's buckets; categorical: per
  category), ``chi2``, ``linf``, ``missing_share`` and ``unseen`` need only counts, so they equal
  the exact path's scores (to float rounding, well under 1e-9): the shares are fed to the same
  functions of :mod:`retrain_lib.stats.drift_stats`.
* **KS and Wasserstein, within a stated error.** They read each side's quantile summary of the
  finite values: a KLL sketch (rank error ``eps`` = DataSketches'
  ``get_normalized_rank_error(k, True)``, 99% confidence; 0 while the sketch still holds every
  value) or a rank grid of ``m + 1`` values (rank error ``1/m``). Both give a step CDF
  ``F_hat`` with ``|F_hat - F| <= eps`` on the finite values; infinite values are counted
  exactly (``neg_inf``/``pos_inf``), so on the non-missing sample the CDF error is
  ``eps * finite / valid``. Hence:

  - KS statistic ``|D_hat - D| <= eps_ref + eps_cur`` (the sup of a difference of two CDFs
    moves by at most the sum of their errors); the p-value is SciPy's for ``D_hat``
    (:func:`~retrain_lib.stats.drift_stats.ks_p_value`), a statement about ``D_hat``;
  - Wasserstein-1 ``= integral |F_ref - F_cur| dx`` over the finite range ``[lo, hi]``, so
    ``|W_hat - W| <= (eps_ref + eps_cur) * (hi - lo)``, divided by the reference standard
    deviation like the score (exact from the profile's moments; estimated from the summary
    when a profile has none, said in the report). Any infinite value makes the score ``inf``.

  The bounds are in ``report.extra["sketch"]``: ``kll_k``, ``ks_rank_error_bound`` (the largest
  KS bound) and per feature ``{"method", "summary", "error_bound"}``.

Thresholds ``"auto"`` need the samples (resampling under no drift): they are refused, as
other binnings are, with a pointer to the exact path.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from retrain_lib.stats.calibration import AUTO
from retrain_lib.stats.drift import DriftReport, FeatureDrift, drifted_share
from retrain_lib.stats.drift_methods import METHODS, check_kind, get_method
from retrain_lib.stats.drift_stats import (
    CATEGORICAL,
    NUMERIC,
    MethodScore,
    chi2_from_shares,
    js_from_shares,
    ks_p_value,
    normalised_wasserstein,
    psi_from_shares,
)
from retrain_lib.stats.profile import CategoricalProfile, NumericProfile, Profile, load_sketch

SKETCH_METHODS = ("ks", "wasserstein")
EXACT_PATH = "retrain_lib.stats.drift.compute_drift (load both windows)"


@dataclass(frozen=True)
class QuantileSummary:
    """The finite values of one numeric feature as a step CDF: ``cdf[i]`` estimates the share of
    finite values ``<= points[i]`` (``points`` sorted and distinct), within ``eps``."""

    points: np.ndarray
    cdf: np.ndarray
    eps: float
    n: int
    kind: str  # "kll" or "grid"

    def at(self, x: np.ndarray) -> np.ndarray:
        """The estimated CDF at ``x`` (0 below the first point)."""
        idx = np.searchsorted(self.points, x, side="right") - 1
        return np.where(idx >= 0, self.cdf[np.clip(idx, 0, None)], 0.0) if self.points.size else np.zeros(len(x))


def kll_rank_error(k: int) -> float:
    """The rank error a KLL sketch of parameter ``k`` states for a CDF value (DataSketches'
    double-sided normalised rank error, 99% confidence)."""
    import datasketches

    return float(datasketches.kll_doubles_sketch.get_normalized_rank_error(k, True))


def quantile_summary(p: NumericProfile) -> QuantileSummary:
    """The step CDF of a profile's finite values from its KLL sketch or rank grid."""
    if p.sketch is not None:
        sk = load_sketch(p.sketch)
        if sk.is_empty():
            return QuantileSummary(np.zeros(0), np.zeros(0), 0.0, 0, "kll")
        points = np.unique(np.fromiter((item for item, _ in sk), dtype=float))
        cdf = np.asarray(sk.get_cdf(points.tolist(), True), dtype=float)[:-1]
        eps = kll_rank_error(sk.k) if sk.is_estimation_mode() else 0.0
        return QuantileSummary(points, cdf, eps, int(sk.n), "kll")
    if p.grid is not None:
        g = np.sort(np.asarray(p.grid, dtype=float))
        m = g.size - 1
        if m < 1:  # no values, or one value standing for all of them
            return QuantileSummary(g, np.ones(g.size), 0.0 if g.size == 0 else 1.0, p.finite, "grid")
        points, last = np.unique(g[::-1], return_index=True)  # the last grid index of each value
        cdf = (m - last) / m
        return QuantileSummary(points, cdf, 1.0 / m, p.finite, "grid")
    raise ValueError(
        "a numeric profile has neither a KLL sketch nor a rank grid: KS and Wasserstein need one "
        "(profile with sketch=True)"
    )


def _valid_cdf(p: NumericProfile, s: QuantileSummary, x: np.ndarray) -> np.ndarray:
    """CDF over the non-missing values (+-inf included) at finite ``x``."""
    return (p.neg_inf + p.finite * s.at(x)) / p.valid


def _valid_eps(p: NumericProfile, s: QuantileSummary) -> float:
    return s.eps * p.finite / p.valid if p.valid else 0.0


def sketch_ks(ref: NumericProfile, cur: NumericProfile) -> tuple[MethodScore, float, str]:
    """KS ``(statistic, p-value)`` from two profiles' summaries, its error bound, the summary kinds.

    The statistic is the summaries' estimate; the p-value is that of the smallest statistic the
    summaries allow (estimate minus bound). A sketch's rank error (about 1.5% at k=200) is far
    above the statistic that counts as significant on large windows (about 0.3% at 200,000
    rows), so a p-value of the estimate would flag undrifted features; this way the sketch's
    error never raises an alarm, and a shift larger than the bound still does."""
    if ref.valid == 0 or cur.valid == 0:
        return MethodScore(0.0, 1.0), 0.0, "-"
    sr, sc = quantile_summary(ref), quantile_summary(cur)
    x = np.union1d(sr.points, sc.points)
    diff = np.abs(_valid_cdf(ref, sr, x) - _valid_cdf(cur, sc, x)) if x.size else np.zeros(0)
    at_neg_inf = abs(ref.neg_inf / ref.valid - cur.neg_inf / cur.valid)
    d = float(max(diff.max(initial=0.0), at_neg_inf))
    bound = _valid_eps(ref, sr) + _valid_eps(cur, sc)
    stat, _ = ks_p_value(min(d, 1.0), ref.valid, cur.valid)
    _, p = ks_p_value(max(0.0, min(d, 1.0) - bound), ref.valid, cur.valid)
    return MethodScore(stat, p), bound, f"{sr.kind}/{sc.kind}"


def _summary_std(s: QuantileSummary) -> float:
    w = np.diff(np.concatenate(([0.0], s.cdf)))
    mean = float(np.dot(w, s.points))
    return math.sqrt(max(float(np.dot(w, (s.points - mean) ** 2)), 0.0))


def sketch_wasserstein(ref: NumericProfile, cur: NumericProfile) -> tuple[MethodScore, float, str, bool]:
    """Wasserstein-1 / reference std from two profiles' summaries, its error bound (same
    units), the summary kinds and whether the std was estimated from the summary."""
    if ref.valid == 0 or cur.valid == 0:
        return MethodScore(0.0), 0.0, "-", False
    if ref.neg_inf or ref.pos_inf or cur.neg_inf or cur.pos_inf:
        return MethodScore(float("inf")), 0.0, "inf", False
    sr, sc = quantile_summary(ref), quantile_summary(cur)
    x = np.union1d(sr.points, sc.points)
    if x.size < 2:
        dist, span = 0.0, 0.0
    else:
        dist = float(np.dot(np.abs(sr.at(x[:-1]) - sc.at(x[:-1])), np.diff(x)))
        span = float(x[-1] - x[0])
    std = ref.std
    estimated = std is None
    scale = _summary_std(sr) if std is None else std
    score = normalised_wasserstein(dist, scale)
    bound = (sr.eps + sc.eps) * span
    return (
        MethodScore(score),
        (normalised_wasserstein(bound, scale) if bound else 0.0),
        f"{sr.kind}/{sc.kind}",
        estimated,
    )


def _numeric_shares(p: NumericProfile) -> np.ndarray:
    n = p.valid
    return np.asarray(p.counts, dtype=float) / n if n else np.zeros(len(p.counts))


def binned_numeric(method: str, ref: NumericProfile, cur: NumericProfile) -> MethodScore:
    """A binned method on the spec's buckets (the exact path's numbers)."""
    if method == "missing_share":
        return MethodScore(abs(_share(cur.missing, cur.rows) - _share(ref.missing, ref.rows)))
    r, c = _numeric_shares(ref), _numeric_shares(cur)
    if method == "psi":
        return MethodScore(psi_from_shares(r, c))
    if method == "js":
        return MethodScore(0.0 if r.sum() == 0 or c.sum() == 0 else js_from_shares(r, c))
    raise ValueError(f"drift method {method!r} has no profile implementation for numeric features")


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def category_counts(ref: CategoricalProfile, cur: CategoricalProfile) -> tuple[np.ndarray, np.ndarray]:
    """Both samples' counts over the union of categories (ordered by text, as the exact path)."""
    keys = sorted(set(ref.counts) | set(cur.counts))
    r = np.array([ref.counts.get(k, 0) for k in keys], dtype=np.int64)
    c = np.array([cur.counts.get(k, 0) for k in keys], dtype=np.int64)
    return r, c


def binned_categorical(method: str, ref: CategoricalProfile, cur: CategoricalProfile) -> MethodScore:
    """A method on category counts (the exact path's numbers)."""
    if method == "missing_share":
        return MethodScore(abs(_share(cur.missing, cur.rows) - _share(ref.missing, ref.rows)))
    r_counts, c_counts = category_counts(ref, cur)
    nr, nc = int(r_counts.sum()), int(c_counts.sum())
    r, c = r_counts / max(nr, 1), c_counts / max(nc, 1)
    if method == "psi":
        return MethodScore(psi_from_shares(r, c))
    if method == "js":
        return MethodScore(0.0 if nr == 0 or nc == 0 else js_from_shares(r, c))
    if method == "linf":
        return MethodScore(float(np.max(np.abs(r - c))) if r.size else 0.0)
    if method == "chi2":
        return chi2_from_shares(r, c, nc)
    if method == "unseen":
        return MethodScore(int(c_counts[r_counts == 0].sum()) / nc if nc else 0.0)
    raise ValueError(f"drift method {method!r} has no profile implementation for categorical features")


def _check_threshold(value: Any, where: str) -> None:
    if value is None:
        return
    if value == AUTO:
        raise ValueError(
            f"The {where!r} threshold 'auto' needs the samples (it resamples them under no drift); "
            f"profiles cannot calibrate it: use the exact path, {EXACT_PATH}, or a number."
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not float(value) > 0:
        raise ValueError(
            f"The {where!r} threshold of compare_profiles must be a positive number or None. Got {value!r} instead."
        )


def plan_features(
    numeric: Sequence[str],
    categorical: Sequence[str],
    method: str,
    categorical_method: str,
    threshold: float | None,
    per_feature: dict[str, tuple[str | None, float | str | None]],
) -> list[tuple[str, str, str, float]]:
    """``(feature, kind, method, threshold)`` of every checked feature, in order, with the same
    defaults and overrides as :func:`retrain_lib.stats.drift.compute_drift`."""
    plan: list[tuple[str, str, str, float]] = []
    for kind, columns, default in ((NUMERIC, numeric, method), (CATEGORICAL, categorical, categorical_method)):
        for col in columns:
            m, t = per_feature.get(col, (None, None))
            chosen = m or default
            if t is None and m is None and chosen == default and (kind == NUMERIC or default == method):
                t = threshold
            dm = get_method(chosen)
            check_kind(dm, kind, col)
            plan.append((col, kind, chosen, dm.default_threshold if t is None else float(t)))
    return plan


def _selected(available: tuple[str, ...], chosen: Sequence[str] | None, kind: str) -> list[str]:
    out = list(available if chosen is None else chosen)
    for col in out:
        if col not in available:
            raise ValueError(f"{kind} feature {col!r} is not in the profiles' spec {list(available)}")
    return out


def _score(
    reference: Profile, current: Profile, col: str, kind: str, method: str
) -> tuple[MethodScore, int, int, dict[str, Any] | None]:
    """One feature's score, its non-missing counts and (KS, Wasserstein) its error bound."""
    if kind == CATEGORICAL:
        rc, cc = reference.categorical[col], current.categorical[col]
        return binned_categorical(method, rc, cc), rc.rows - rc.missing, cc.rows - cc.missing, None
    rp, cp = reference.numeric[col], current.numeric[col]
    if method == "ks":
        res, bound, summary = sketch_ks(rp, cp)
        return res, rp.valid, cp.valid, {"method": method, "summary": summary, "error_bound": bound}
    if method == "wasserstein":
        res, bound, summary, estimated = sketch_wasserstein(rp, cp)
        info: dict[str, Any] = {"method": method, "summary": summary, "error_bound": bound}
        if estimated:
            info["std_from_summary"] = True
        return res, rp.valid, cp.valid, info
    return binned_numeric(method, rp, cp), rp.valid, cp.valid, None


def compare_profiles(
    reference: Profile,
    current: Profile,
    *,
    method: str = "psi",
    categorical_method: str = "psi",
    threshold: float | str | None = None,
    per_feature: dict[str, tuple[str | None, float | str | None]] | None = None,
    drift_share: float = 0.3,
    weights: dict[str, float] | None = None,
    numeric: Sequence[str] | None = None,
    categorical: Sequence[str] | None = None,
    bins: int | None = None,
    binning: str = "quantile",
) -> DriftReport:
    """Drift of ``current`` against ``reference`` (both on the same spec) and the dataset-level
    decision, with :func:`~retrain_lib.stats.drift.compute_drift`'s arguments and meaning.

    ``numeric``/``categorical`` check a subset of the spec's features (default: all of them).
    ``bins``/``binning`` are accepted only as the spec's (``binning="quantile"``); ``"auto"``
    thresholds are refused. KS and Wasserstein results carry their error bounds in
    ``extra["sketch"]`` (see the module docstring).
    """
    if binning != "quantile":
        raise ValueError(
            f"compare_profiles supports binning='quantile' only (profiles count on the reference's quantile "
            f"edges). Got {binning!r}: use the exact path, {EXACT_PATH}."
        )
    if reference.spec != current.spec:
        raise ValueError("the reference and current profiles were computed on different specs (buckets)")
    spec = reference.spec
    if bins is not None and bins != spec.bins:
        raise ValueError(f"the profiles count in {spec.bins} buckets, not {bins}: recompute them or use {EXACT_PATH}")
    per_feature = per_feature or {}
    _check_threshold(threshold, "threshold")
    for col, (_, t) in per_feature.items():
        _check_threshold(t, f"per_feature[{col!r}]")
    num = _selected(spec.numeric, numeric, "numeric")
    cat = _selected(spec.categorical, categorical, "categorical")
    plan = plan_features(
        num, cat, method, categorical_method, None if threshold is None else float(threshold), per_feature
    )

    results: list[FeatureDrift] = []
    bounds: dict[str, dict[str, Any]] = {}
    for col, kind, chosen, t in plan:
        res, n_ref, n_cur, bound_info = _score(reference, current, col, kind, chosen)
        if bound_info is not None:
            bounds[col] = bound_info
        results.append(
            FeatureDrift(
                name=col,
                method=chosen,
                kind=kind,
                score=res.score,
                p_value=res.p_value,
                threshold=t,
                drifted=bool(METHODS[chosen].is_drift(res, t)),
                reference_rows=int(n_ref),
                current_rows=int(n_cur),
            )
        )
    extra: dict[str, Any] = {"engine": "profile"}
    if bounds:
        ks_bounds = [b["error_bound"] for b in bounds.values() if b["method"] == "ks"]
        extra["sketch"] = {
            "kll_k": spec.kll_k,
            "ks_rank_error_bound": max(ks_bounds, default=0.0),
            "features": bounds,
        }
    share, normalised = drifted_share(results, weights)
    if normalised is not None:
        extra["weights"] = normalised
    return DriftReport(results, share, drift_share, share >= drift_share, reference.rows, current.rows, extra)


def profile_drift_for_config(
    cfg: Any, reference: Profile, current: Profile, *, weights: dict[str, float] | None = None
) -> DriftReport:
    """:func:`compare_profiles` with the methods, thresholds and exclusions of a model config
    (as :func:`retrain_lib.stats.drift.drift_for_config`)."""
    d = cfg.drift
    skip = set(d.exclude)
    return compare_profiles(
        reference,
        current,
        method=d.method,
        categorical_method=d.categorical_method,
        threshold=d.threshold,
        per_feature={name: (f.method, f.threshold) for name, f in d.features.items()},
        drift_share=d.drift_share,
        weights=weights,
        numeric=[c for c in reference.spec.numeric if c not in skip],
        categorical=[c for c in reference.spec.categorical if c not in skip],
        bins=d.bins,
    )
