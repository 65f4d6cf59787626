"""Live performance of a model: drops against a baseline, per segment, and estimated
performance before the labels arrive.

Everything here works on arrays and frames already in memory (the monitor gathers them), so
it is cheap to test against an independent implementation.

Confidence-based performance estimation (CBPE, as in NannyML): a calibrated classifier's
probability ``p`` is the chance that the label is 1, so without labels

* the expected accuracy (threshold 0.5) is ``mean(max(p, 1 - p))``;
* any other metric is estimated by drawing labels ``y ~ Bernoulli(p)`` many times with a
  fixed seed and computing the metric on each draw: the mean is the estimate, the spread of
  the draws its uncertainty.

The estimate is only as good as the calibration of ``p``.

Example:
    >>> import numpy as np
    >>> est = estimate_performance(np.array([0.9, 0.8, 0.1, 0.3]), "accuracy", draws=20, seed=0)
    >>> round(est.value, 3)
    0.825
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from retrain_lib.core.metrics import compute_metric, greater_is_better

OK, WARN, CRITICAL = "ok", "warn", "critical"
_LEVEL_ORDER = {OK: 0, WARN: 1, CRITICAL: 2}


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


# -----------------------------------------------------------------------------------------
# Estimated performance (CBPE)
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """An estimated metric with its uncertainty: ``low..high`` is a ``level`` interval."""

    metric: str
    value: float
    low: float
    high: float
    std: float
    rows: int
    draws: int
    level: float = 0.95

    def contains(self, observed: float) -> bool:
        return self.low <= observed <= self.high

    def explain(self) -> str:
        return (
            f"estimated {self.metric} {self.value:.4f} ({self.level:.0%} interval {self.low:.4f}..{self.high:.4f}, "
            f"{self.rows} unlabelled rows, {self.draws} draws)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


def estimate_performance(proba, metric: str, *, draws: int = 50, seed: int = 0, level: float = 0.95) -> Estimate:
    """Estimate a classification metric from calibrated positive-class probabilities alone.

    Args:
        proba: probabilities of the positive class, one per row (no labels needed).
        metric: a classification metric of :mod:`retrain_lib.core.metrics` (``roc_auc``, ``accuracy``...).
        draws: label draws ``y ~ Bernoulli(proba)``; the spread of the metric over them is the
            uncertainty (and, except for accuracy, the mean is the estimate).
        seed: seed of the draws: the same inputs give the same estimate.
        level: coverage of the ``low..high`` interval (normal approximation, ``value +- z*std``).

    Returns:
        An :class:`Estimate`. Accuracy's value is the closed form ``mean(max(p, 1-p))``.

    Raises:
        ValueError: an unknown metric, fewer than two draws, no rows, or probabilities outside 0..1.
    """
    p = np.asarray(proba, dtype=float).ravel()
    if metric not in ("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier"):
        raise ValueError(
            f"The 'metric' parameter of estimate_performance must be a classification metric. Got {metric!r} instead."
        )
    if draws < 2:
        raise ValueError(f"The 'draws' parameter of estimate_performance must be at least 2. Got {draws!r} instead.")
    if p.size == 0:
        raise ValueError("The 'proba' parameter of estimate_performance must hold at least one row. Got none.")
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("The 'proba' parameter of estimate_performance must hold probabilities in 0..1.")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(draws):
        y = (rng.random(p.size) < p).astype(int)
        if metric == "roc_auc" and (y.min() == y.max()):
            continue  # one class only: AUC undefined for this draw
        values.append(compute_metric("classification", metric, y, p))
    sample = np.asarray(values, dtype=float)
    if sample.size < 2:
        nan = math.nan
        return Estimate(metric, nan, nan, nan, nan, int(p.size), draws, level)
    std = float(sample.std(ddof=1))
    if metric == "accuracy":
        q = np.maximum(p, 1 - p)
        value = float(q.mean())
        std = float(math.sqrt(np.sum(q * (1 - q))) / p.size)  # exact: correctness is Bernoulli(q) per row
    else:
        value = float(sample.mean())
    half = _z(level) * std
    return Estimate(metric, value, value - half, value + half, std, int(p.size), draws, level)


# -----------------------------------------------------------------------------------------
# Drops and levels
# -----------------------------------------------------------------------------------------


def metric_drop(live: float, baseline: float, metric: str) -> float:
    """How much worse ``live`` is than ``baseline`` in the metric's units (negative: better)."""
    return (baseline - live) if greater_is_better(metric) else (live - baseline)


def relative_drop(live: float, baseline: float, metric: str) -> float:
    """:func:`metric_drop` as a fraction of ``|baseline|`` (NaN when the baseline is 0 or NaN)."""
    if baseline is None or math.isnan(baseline) or baseline == 0:
        return math.nan
    return metric_drop(live, baseline, metric) / abs(baseline)


@dataclass(frozen=True)
class DropAssessment:
    """A live (or estimated) metric against its baseline and the configured levels."""

    metric: str
    live: float
    baseline: float
    drop: float
    relative_drop: float
    level: str  # ok | warn | critical
    threshold: str  # the level that was passed, e.g. "critical_drop 10%"; "" when ok

    @property
    def critical(self) -> bool:
        return self.level == CRITICAL

    def explain(self) -> str:
        rel = "" if math.isnan(self.relative_drop) else f", {self.relative_drop:.1%} of baseline"
        passed = f" > {self.threshold}" if self.threshold else ""
        return f"{self.metric} {self.live:.4f} vs baseline {self.baseline:.4f} (drop {self.drop:.4f}{rel}{passed})"

    def to_dict(self) -> dict:
        return asdict(self)


def assess_drop(
    live: float,
    baseline: float,
    metric: str,
    *,
    max_drop: float | None = None,
    warn_drop: float | None = None,
    critical_drop: float | None = None,
) -> DropAssessment:
    """Classify a drop: ``critical`` past ``max_drop`` (absolute) or ``critical_drop``
    (relative), ``warn`` past ``warn_drop`` (relative), else ``ok``. A NaN live value or
    baseline is ``ok`` (nothing to compare)."""
    drop = metric_drop(live, baseline, metric) if not (_nan(live) or _nan(baseline)) else math.nan
    rel = relative_drop(live, baseline, metric) if not math.isnan(drop) else math.nan
    level, threshold = OK, ""
    if not math.isnan(drop):
        if max_drop is not None and drop > max_drop:
            level, threshold = CRITICAL, f"max_drop {max_drop:g}"
        elif critical_drop is not None and not math.isnan(rel) and rel > critical_drop:
            level, threshold = CRITICAL, f"critical_drop {critical_drop:.0%}"
        elif warn_drop is not None and not math.isnan(rel) and rel > warn_drop:
            level, threshold = WARN, f"warn_drop {warn_drop:.0%}"
    live = math.nan if live is None else float(live)
    baseline = math.nan if baseline is None else float(baseline)
    return DropAssessment(metric, live, baseline, float(drop), float(rel), level, threshold)


def critical_limit(
    baseline: float, metric: str, *, max_drop: float | None = None, critical_drop: float | None = None
) -> float | None:
    """The live value beyond which a drop is critical (the stricter of both levels), or
    ``None`` without a level or baseline."""
    if _nan(baseline):
        return None
    drops = [d for d in (max_drop, None if critical_drop is None else critical_drop * abs(baseline)) if d is not None]
    if not drops:
        return None
    return baseline - min(drops) if greater_is_better(metric) else baseline + min(drops)


def _nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


# -----------------------------------------------------------------------------------------
# Metrics per segment and per day
# -----------------------------------------------------------------------------------------


def metric_value(y, scores, metric: str, task: str) -> float:
    """One metric of scores against labels (NaN when it is undefined, e.g. AUC of one class)."""
    return compute_metric(task, metric, y, scores)


def segment_metrics(segments: pd.DataFrame, y, scores, *, metric: str, task: str) -> dict[str, dict[str, dict]]:
    """``{column: {value: {"rows": n, "value": metric}}}`` for every segment column of
    ``segments`` (one row per scored row, aligned with ``y`` and ``scores``)."""
    y = np.asarray(y)
    scores = np.asarray(scores)
    out: dict[str, dict[str, dict]] = {}
    for column in segments.columns:
        keys = segments[column].astype("string").fillna("<missing>").to_numpy()
        out[column] = {}
        for value in sorted(set(keys)):
            mask = keys == value
            out[column][str(value)] = {
                "rows": int(mask.sum()),
                "value": metric_value(y[mask], scores[mask], metric, task),
            }
    return out


def daily_metrics(days, y, scores, *, metric: str, task: str, min_rows: int = 1) -> dict[str, float]:
    """The metric per day (``days``: one date per row), for days with at least ``min_rows``
    rows and a defined value, in day order."""
    days = pd.Series(pd.to_datetime(days)).dt.date.to_numpy()
    y = np.asarray(y)
    scores = np.asarray(scores)
    out: dict[str, float] = {}
    for day in sorted(set(days)):
        mask = days == day
        if mask.sum() < min_rows:
            continue
        value = metric_value(y[mask], scores[mask], metric, task)
        if not math.isnan(value):
            out[day.isoformat()] = value
    return out


def worst_level(levels) -> str:
    return max(levels, key=_LEVEL_ORDER.__getitem__, default=OK)
