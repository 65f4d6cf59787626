"""Model metrics, their direction, and evaluation of a model on a frame."""

from __future__ import annotations

import math

import numpy as np

GREATER_IS_BETTER = {
    "roc_auc": True, "accuracy": True, "f1": True, "precision": True, "recall": True,
    "log_loss": False, "brier": False,
    "rmse": False, "mae": False, "r2": True, "mape": False,
}


def greater_is_better(metric: str) -> bool:
    try:
        return GREATER_IS_BETTER[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; use one of {sorted(GREATER_IS_BETTER)}") from None


def classification_metrics(y_true, proba, threshold: float = 0.5) -> dict[str, float]:
    from sklearn import metrics as m

    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(proba, dtype=float), 1e-15, 1 - 1e-15)
    pred = (p >= threshold).astype(int)
    out = {
        "accuracy": m.accuracy_score(y, pred),
        "f1": m.f1_score(y, pred, zero_division=0),
        "precision": m.precision_score(y, pred, zero_division=0),
        "recall": m.recall_score(y, pred, zero_division=0),
        "brier": m.brier_score_loss(y, p),
        "log_loss": m.log_loss(y, p, labels=[0, 1]),
        "roc_auc": m.roc_auc_score(y, p) if len(np.unique(y)) == 2 else math.nan,
    }
    return {k: float(v) for k, v in out.items()}


def regression_metrics(y_true, pred) -> dict[str, float]:
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


def predict_scores(model, X, task: str) -> np.ndarray:
    """Positive-class probability for classifiers, the prediction for regressors."""
    if task == "classification":
        return np.asarray(model.predict_proba(X))[:, 1]
    return np.asarray(model.predict(X), dtype=float)


def evaluate(model, X, y, task: str) -> dict[str, float]:
    scores = predict_scores(model, X, task)
    if task == "classification":
        return classification_metrics(y, scores)
    return regression_metrics(y, scores)
