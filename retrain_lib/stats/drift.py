"""Feature drift of a dataset: per-feature results (:class:`FeatureDrift`), the dataset-level
decision (:class:`DriftReport`) and the functions that compute them over a reference and a
current window with the methods of :mod:`retrain_lib.stats.drift_methods`::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref, cur = rng.normal(0, 1, 5000), rng.normal(0.5, 1, 5000)
    >>> r = compute_feature_drift("x", ref, cur, method="psi", kind="numeric")
    >>> r.drifted
    True

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
from dataclasses import asdict, dataclass, field
from typing import TypeGuard

import numpy as np
import pandas as pd

from retrain_lib.stats.calibration import AUTO, MULTIPLE_TESTING, calibrate_feature, decide_calibrated
from retrain_lib.stats.drift_methods import METHODS, CategoryCounts, SortedBlock, check_kind, get_method
from retrain_lib.stats.drift_stats import CATEGORICAL, NUMERIC, MethodScore, check_binning

log = logging.getLogger(__name__)

# Numeric columns are loaded into blocks of at most this many values per sample (64 MiB of
# float64), so memory stays bounded however many columns a frame has.
_BLOCK_ELEMENTS = 1 << 23


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
    calibration: dict | None = None  # threshold: auto -> how the threshold was set (retrain_lib.stats.calibration)

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
        if "sketch" in self.extra:  # error bounds of KS / Wasserstein from profiles (stats.profile_drift)
            out["sketch"] = dict(self.extra["sketch"])
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
    check_binning(binning, "compute_feature_drift")
    m = get_method(method)
    check_kind(m, kind, name)
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


def _category_counts(ref: pd.Series, cur: pd.Series) -> CategoryCounts:
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
    for _, seen, seen_counts in counted:
        arr = np.zeros(len(keys), dtype=np.int64)
        arr[[pos[u] for u in seen]] = seen_counts
        union.append(arr)
    return CategoryCounts(union[0], union[1], counted[0][0], counted[1][0])


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
            ref_block = SortedBlock(r_values)
            c_values, c_int = _load_numeric(current, chunk, "current")
            cur_block = SortedBlock(c_values)
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


def drifted_share(
    results: list[FeatureDrift], weights: dict[str, float] | None
) -> tuple[float, dict[str, float] | None]:
    """The dataset's share of drifted features: weighted by ``weights`` (then with the
    normalised weights) or plain (``None``). Every engine that builds a :class:`DriftReport`
    decides with it."""
    if weights is not None and results:
        return _weighted_share(results, weights)
    return (sum(r.drifted for r in results) / len(results) if results else 0.0), None


def _plan(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    method: str,
    categorical_method: str,
    threshold: float | str | None,
    per_feature: dict[str, tuple[str | None, float | str | None]],
) -> list[tuple[str, str, str, float | str]]:
    """``(column, kind, method, threshold or AUTO)`` of every checked feature, in order."""
    plan: list[tuple[str, str, str, float | str]] = []
    t: float | str | None
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
            check_kind(dm, kind, col)
            plan.append((col, kind, chosen, dm.default_threshold if t is None else (AUTO if t == AUTO else float(t))))
    return plan


def compute_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: list[str],
    categorical: list[str],
    method: str = "psi",
    categorical_method: str = "psi",
    threshold: float | str | None = None,
    per_feature: dict[str, tuple[str | None, float | str | None]] | None = None,
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
    ``binning`` chooses the numeric buckets of PSI and JS (see :mod:`retrain_lib.stats.drift_stats`).

    Calibrated thresholds: ``threshold="auto"`` calibrates every feature without its own
    threshold (whatever its method), a ``per_feature`` threshold ``"auto"`` that feature, to a
    false-alarm rate ``false_alarm_rate`` under no drift at the actual sample sizes;
    ``multiple_testing`` (``"bh"``, the default, or ``"none"``) corrects across the calibrated
    features and ``seed`` fixes the resampling of methods without a closed form. Each such
    :class:`FeatureDrift` carries the threshold used and a ``calibration`` dict; see
    :mod:`retrain_lib.stats.calibration`.

    Scores equal those of :func:`compute_feature_drift` on each column; this function
    computes them for all columns at once.
    """
    check_binning(binning, "compute_drift")
    per_feature = per_feature or {}
    _check_threshold(threshold, "threshold")
    for col, (_, col_threshold) in per_feature.items():
        _check_threshold(col_threshold, f"per_feature[{col!r}]")
    plan = _plan(reference, current, numeric, categorical, method, categorical_method, threshold, per_feature)
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
    for col, kind, chosen, planned in plan:
        res, n_ref, n_cur = scores[col]
        info: dict | None
        if col in calibrated:
            t, drifted, info = calibrated[col]
        else:
            t = float(planned)  # a number: every "auto" threshold was calibrated above
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
    share, normalised = drifted_share(results, weights)
    if normalised is not None:
        extra["weights"] = normalised
    if binning != "quantile":
        extra["binning"] = binning
    return DriftReport(results, share, drift_share, share >= drift_share, len(reference), len(current), extra)


def _is_real(value: object) -> TypeGuard[float]:
    """A real number (numpy's too), not a bool."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real)


def _check_threshold(value, where: str) -> None:
    if value is None or value == AUTO:
        return
    if not _is_real(value) or not value > 0:
        raise ValueError(
            f"The {where!r} threshold of compute_drift must be a positive number, 'auto' or None. "
            f"Got {value!r} instead."
        )


def _calibrate(
    plan, scores, reference, current, *, bins, binning, false_alarm_rate, multiple_testing, seed
) -> tuple[dict[str, tuple[float, bool, dict]], dict]:
    if not _is_real(false_alarm_rate) or not 0 < false_alarm_rate < 1:
        raise ValueError(
            "The 'false_alarm_rate' parameter of compute_drift must be a number in (0, 1). "
            f"Got {false_alarm_rate!r} instead."
        )
    multiple_testing = "bh" if multiple_testing is None else multiple_testing
    if multiple_testing not in MULTIPLE_TESTING:
        raise ValueError(
            "The 'multiple_testing' parameter of compute_drift must be 'bh', 'none' or None. "
            f"Got {multiple_testing!r} instead."
        )
    found = {}
    for col, kind, chosen, t in plan:
        if t != AUTO:
            continue
        res, n_ref, n_cur = scores[col]
        found[col] = calibrate_feature(
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
    decided = decide_calibrated(found, false_alarm_rate=false_alarm_rate, multiple_testing=multiple_testing)
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
    :func:`retrain_lib.stats.calibration.apply_persistence`.
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
