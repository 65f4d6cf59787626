"""Model metrics, their direction, and evaluation of a model on a frame.

The module is light at import time (numpy and scikit-learn load inside the functions) so that
``retrain_lib.core.config_gates`` can check metric names against :data:`GREATER_IS_BETTER` while DAGs parse.
"""

from __future__ import annotations

import math

GREATER_IS_BETTER = {
    "roc_auc": True,
    "accuracy": True,
    "f1": True,
    "precision": True,
    "recall": True,
    "log_loss": False,
    "brier": False,
    "ece": False,
    "rmse": False,
    "mae": False,
    "r2": True,
    "mape": False,
}
CLASSIFICATION_ONLY = ("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier", "ece")
_EPS = 1e-15


def greater_is_better(metric: str) -> bool:
    try:
        return GREATER_IS_BETTER[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; use one of {sorted(GREATER_IS_BETTER)}") from None


def classification_metrics(y_true, proba, threshold: float = 0.5) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics as m

    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(proba, dtype=float), _EPS, 1 - _EPS)
    pred = (p >= threshold).astype(int)
    out = {
        "accuracy": m.accuracy_score(y, pred),
        "f1": m.f1_score(y, pred, zero_division=0),
        "precision": m.precision_score(y, pred, zero_division=0),
        "recall": m.recall_score(y, pred, zero_division=0),
        "brier": m.brier_score_loss(y, p),
        "ece": expected_calibration_error(y, p),
        "log_loss": m.log_loss(y, p, labels=[0, 1]),
        "roc_auc": m.roc_auc_score(y, p) if len(np.unique(y)) == 2 else math.nan,
    }
    return {k: float(v) for k, v in out.items()}


def regression_metrics(y_true, pred) -> dict[str, float]:
    import numpy as np
    from sklearn import metrics as m

    y = np.asarray(y_true, dtype=float)
    p = np.asarray(pred, dtype=float)
    nonzero = np.abs(y) > 1e-9
    out = {
        "rmse": math.sqrt(m.mean_squared_error(y, p)),
        "mae": m.mean_absolute_error(y, p),
        "r2": m.r2_score(y, p) if len(y) > 1 else math.nan,
        "mape": float(np.mean(np.abs((y[nonzero] - p[nonzero]) / y[nonzero]))) if nonzero.any() else math.nan,
    }
    return {k: float(v) for k, v in out.items()}


def expected_calibration_error(y_true, proba, bins: int = 10) -> float:
    """Expected calibration error of positive-class probabilities, with ``bins`` equal-width bins.

    ``ECE = sum_b n_b / N * |mean(y in b) - mean(p in b)|``; bin ``b`` holds ``p`` in
    ``[b/bins, (b+1)/bins)`` and the last bin includes 1. Lower is better; 0 = perfectly
    calibrated on this sample.

    >>> round(expected_calibration_error([0, 1, 1, 0], [0.1, 0.9, 0.8, 0.3], bins=2), 3)
    0.175
    """
    import numpy as np

    y = np.asarray(y_true, dtype=float)
    p = np.asarray(proba, dtype=float)
    if len(y) == 0:
        return math.nan
    b = _bin_index(p, bins)
    sum_y = np.bincount(b, weights=y, minlength=bins)
    sum_p = np.bincount(b, weights=p, minlength=bins)
    return float(np.abs(sum_y - sum_p).sum() / len(y))


def _bin_index(p, bins: int):
    import numpy as np

    return np.clip((np.asarray(p, dtype=float) * bins).astype(int), 0, bins - 1)


def compute_metric(task: str, metric: str, y_true, scores, *, bins: int = 10) -> float:
    """One metric of scores (probabilities or predictions) against ``y_true``; NaN where it
    is undefined (ROC AUC of one class, R2 of one row, no rows).

    Computed by numpy alone (:func:`resampled_metric` with every row drawn once): the same
    values as :func:`classification_metrics` / :func:`regression_metrics` (scikit-learn),
    without scikit-learn's per-call validation, which dominates on the few hundred rows of a
    day. Raises ``ValueError`` for a metric that does not belong to the task.
    """
    import numpy as np

    greater_is_better(metric)
    if (metric in CLASSIFICATION_ONLY) != (task == "classification"):
        raise ValueError(f"metric {metric!r} does not apply to a {task} model")
    y = np.asarray(y_true, dtype=float)
    if len(y) == 0 or (metric == "r2" and len(y) < 2):
        return math.nan
    if metric == "ece":
        return expected_calibration_error(y, scores, bins=bins)
    return float(resampled_metric(task, metric, y, scores, np.ones((1, len(y))), bins=bins)[0])


def resampled_metric(task: str, metric: str, y_true, scores, counts, *, bins: int = 10):
    """``metric`` on many bootstrap resamples at once, without materialising them.

    ``counts`` is a ``(B, n)`` array: how often each of the ``n`` rows is drawn in each of the
    ``B`` resamples (each row summing to ``n``). Returns ``B`` values equal to
    :func:`compute_metric` on the corresponding resampled rows (ROC AUC by the Mann-Whitney rank
    statistic with ties counted one half, as scikit-learn computes it).
    """
    import numpy as np

    greater_is_better(metric)
    if (metric in CLASSIFICATION_ONLY) != (task == "classification"):
        raise ValueError(f"metric {metric!r} does not apply to a {task} model")
    w = np.asarray(counts, dtype=float)
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(scores, dtype=float)
    total = w.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if task == "classification":
            p = np.clip(s, _EPS, 1 - _EPS)
            pred = (p >= 0.5).astype(float)
            if metric == "roc_auc":
                return _resampled_auc(y, p, w)
            if metric == "ece":
                b = _bin_index(p, bins)
                return np.abs(_sum_by_group(w * (y - p), b, bins)).sum(axis=1) / total
            if metric == "accuracy":
                return w @ (pred == y).astype(float) / total
            if metric == "brier":
                return w @ (p - y) ** 2 / total
            if metric == "log_loss":
                return w @ -(y * np.log(p) + (1 - y) * np.log(1 - p)) / total
            tp, fp, fn = w @ (pred * y), w @ (pred * (1 - y)), w @ ((1 - pred) * y)
            num, den = {"precision": (tp, tp + fp), "recall": (tp, tp + fn), "f1": (2 * tp, 2 * tp + fp + fn)}[metric]
            return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
        e = s - y
        if metric == "rmse":
            return np.sqrt(w @ e**2 / total)
        if metric == "mae":
            return w @ np.abs(e) / total
        if metric == "mape":
            nz = (np.abs(y) > 1e-9).astype(float)
            ratio = np.divide(np.abs(e), np.abs(y), out=np.zeros_like(y), where=nz > 0)
            return w @ ratio / (w @ nz)
        sse = w @ e**2
        sst = w @ y**2 - (w @ y) ** 2 / total
        sst = np.where(np.abs(sst) < 1e-12 * np.maximum(1.0, w @ y**2), 0.0, sst)
        r2 = 1 - sse / np.where(sst > 0, sst, 1)
        return np.where(sst > 0, r2, np.where(sse == 0, 1.0, 0.0))  # sklearn's force_finite


def _sum_by_group(values, groups, n_groups: int):
    """Column sums of ``values`` (B, n) per group id of each column: (B, n_groups)."""
    import numpy as np

    order = np.argsort(groups, kind="stable")
    g = groups[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    out = np.zeros((values.shape[0], n_groups))
    out[:, g[starts]] = np.add.reduceat(values[:, order], starts, axis=1)
    return out


def _resampled_auc(y, p, w):
    import numpy as np

    uniq, inv = np.unique(p, return_inverse=True)
    pos = _sum_by_group(w * y, inv, len(uniq))  # weight of positives at each distinct score
    neg = _sum_by_group(w * (1 - y), inv, len(uniq))
    below = np.cumsum(neg, axis=1) - neg  # negatives with a strictly lower score
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def predict_scores(model, X, task: str):
    """Positive-class probability for classifiers, the prediction for regressors."""
    import numpy as np

    if task == "classification":
        return np.asarray(model.predict_proba(X))[:, 1]
    return np.asarray(model.predict(X), dtype=float)


def evaluate(model, X, y, task: str) -> dict[str, float]:
    return metrics_from_scores(y, predict_scores(model, X, task), task)


def metrics_from_scores(y, scores, task: str) -> dict[str, float]:
    """The metrics :func:`evaluate` reports, from scores already computed."""
    if task == "classification":
        return classification_metrics(y, scores)
    return regression_metrics(y, scores)
