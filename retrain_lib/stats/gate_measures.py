"""The measurements promotion gates judge, as plain functions of labels, scores, frames and a
model: prediction change, the paired bootstrap of an improvement, leakage scores, latency and
the rank changes of feature importances."""

from __future__ import annotations

import bisect
import math
import time

from retrain_lib.core.metrics import compute_metric, greater_is_better, predict_scores, resampled_metric


def prediction_change(task: str, y_true, candidate_scores, champion_scores) -> float:
    """How much the predictions change from the champion to the candidate on the same rows.

    Classification: share of rows whose decision at 0.5 flips. Regression: mean absolute change
    of the prediction divided by the (population) standard deviation of ``y_true``, so 0.1 means
    the predictions move by a tenth of the target's spread on average.
    """
    import numpy as np

    cand = np.asarray(candidate_scores, dtype=float)
    champ = np.asarray(champion_scores, dtype=float)
    if task == "classification":
        return float(np.mean((cand >= 0.5) != (champ >= 0.5)))
    spread = float(np.std(np.asarray(y_true, dtype=float)))
    if spread == 0:
        raise ValueError("the target is constant on the holdout; the relative change is undefined")
    return float(np.mean(np.abs(cand - champ)) / spread)


def bootstrap_improvement(
    task: str,
    metric: str,
    y_true,
    candidate_scores,
    champion_scores,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    chunk: int = 100,
):
    """Paired bootstrap of the candidate's improvement over the champion in ``metric``.

    Each resample draws ``n`` row indices with replacement (``numpy.random.default_rng(seed)``)
    and scores *both* models on the same rows. The improvement is oriented so that positive
    means the candidate is better (``cand - champ`` for greater-is-better metrics, else
    ``champ - cand``). Returns the ``n_resamples`` improvements (a numpy array; NaN where the
    metric is undefined on a resample, e.g. ROC AUC with a single class).
    """
    import numpy as np

    sign = 1.0 if greater_is_better(metric) else -1.0
    y = np.asarray(y_true, dtype=float)
    n = len(y)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        cand = resampled_metric(task, metric, y, candidate_scores, counts)
        champ = resampled_metric(task, metric, y, champion_scores, counts)
        out.append(sign * (cand - champ))
    return np.concatenate(out)


def leakage_scores(train, target: str, features: list[str], task: str) -> dict[str, float]:
    """How well each feature alone predicts the target on ``train`` (0..1, 1 = perfectly).

    Classification: ROC AUC of the feature oriented as ``max(auc, 1 - auc)`` (numeric), or of the
    per-category target mean (categorical: in-sample, so an id-like column scores high too).
    Regression: ``|Spearman|`` (numeric) or R² of the per-category target mean (categorical).
    Missing numeric values are left out; a missing category is a category of its own.
    """
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    if target not in train.columns:
        raise ValueError(f"target {target!r} is not in the training frame")
    frame = train[train[target].notna()]
    if task == "classification":
        classes = sorted(pd.unique(frame[target]))
        if len(classes) != 2:
            raise ValueError(f"target {target!r} needs two classes in the training rows, found {len(classes)}")
        y = (frame[target] == classes[1]).to_numpy(dtype=float)
    else:
        y = frame[target].to_numpy(dtype=float)
        if np.std(y) == 0:
            raise ValueError(f"target {target!r} is constant in the training rows")
    out: dict[str, float] = {}
    for name in features:
        if name not in frame.columns:
            raise ValueError(f"feature {name!r} is not in the training frame")
        col = frame[name]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if numeric:
            keep = col.notna().to_numpy()
            x, yy = col.to_numpy(dtype=float)[keep], y[keep]
            if len(x) < 2 or np.unique(x).size < 2 or np.unique(yy).size < 2:
                out[name] = 0.0
            elif task == "classification":
                auc = roc_auc_score(yy, x)
                out[name] = float(max(auc, 1 - auc))
            else:
                rho = pd.Series(x).corr(pd.Series(yy), method="spearman")
                out[name] = 0.0 if pd.isna(rho) else float(abs(rho))
            continue
        keys = col.astype(object).where(col.notna(), "<missing>").astype(str)
        encoded = pd.Series(y, index=keys.index).groupby(keys.to_numpy()).transform("mean").to_numpy()
        if task == "classification":
            auc = roc_auc_score(y, encoded) if np.unique(encoded).size > 1 else 0.5
            out[name] = float(max(auc, 1 - auc))
        else:
            out[name] = float(1 - np.sum((y - encoded) ** 2) / np.sum((y - y.mean()) ** 2))
    return out


def measure_latency_ms(
    model, X, *, task: str = "classification", n: int = 200, seed: int = 0, warmup: int = 5
) -> dict[str, float]:
    """p50/p95 in ms of single-row predictions on ``n`` rows sampled from ``X``: the CPU time
    of the calling thread (the model runs on it alone, OpenMP capped at one thread), so the
    gate judges the model's own cost and a busy machine (a training job beside it, a loaded CI
    runner) cannot fail it. End-to-end wall latency under load is the gateway's concern
    (``benchmarks/gateway_bench.py``, the monitor's serving checks).

    Rows are drawn with ``numpy.random.default_rng(seed)`` (without replacement when ``X`` has
    enough rows); ``warmup`` untimed calls come first. Returns
    ``{"p50": ..., "p95": ..., "n": ...}``, ready for ``GateInputs.latency_ms``.
    """
    import numpy as np

    rows = len(X)
    if rows == 0:
        raise ValueError("X is empty; cannot measure latency")
    rng = np.random.default_rng(seed)
    idx = rng.choice(rows, size=n, replace=rows < n)
    take = (lambda i: X.iloc[[i]]) if hasattr(X, "iloc") else (lambda i: X[i : i + 1])
    from threadpoolctl import threadpool_limits

    # One thread, as a serving worker answers one request: OpenMP pools spinning for a single
    # row on a busy machine would measure contention, not the model.
    with threadpool_limits(limits=1):
        for i in idx[:warmup]:
            predict_scores(model, take(int(i)), task)
        times = []
        for i in idx:
            row = take(int(i))
            start = time.thread_time()
            predict_scores(model, row, task)
            times.append((time.thread_time() - start) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "n": int(n)}


def calibrated_baseline(metric: str, scores, *, bins: int = 10, draws: int = 200, seed: int = 0) -> float:
    """The mean ``metric`` (``ece`` or ``brier``) of a perfectly calibrated model with these
    positive-class ``scores``: labels drawn ``draws`` times as Bernoulli(score). What sampling
    noise alone adds to the metric on this many rows (about 0.05 ECE on 350 rows)."""
    import numpy as np

    p = np.clip(np.asarray(scores, dtype=float), 0.0, 1.0)
    if len(p) == 0:
        return math.nan
    rng = np.random.default_rng(seed)
    values = [
        compute_metric("classification", metric, (rng.random(len(p)) < p).astype(int), p, bins=bins)
        for _ in range(draws)
    ]
    return float(np.nanmean(values))


def importance_ranks(importances: dict[str, float]) -> dict[str, int]:
    """Competition rank of each feature by importance, 1 = most important: a feature's rank is
    1 + the number of features strictly more important (ties share a rank, so the order among
    features of equal importance, e.g. the many clipped at 0, is never counted as a change)."""
    desc = sorted(-v for v in importances.values())
    return {f: 1 + bisect.bisect_left(desc, -v) for f, v in importances.items()}


def rank_changes(champion: dict[str, float], candidate: dict[str, float], *, top_k: int) -> dict[str, int]:
    """For each of the champion's ``top_k`` most important features with an importance above 0,
    how many places its rank moved in the candidate (a feature the candidate lacks ranks last)."""
    old = importance_ranks(champion)
    new = importance_ranks(candidate)
    last = len(set(champion) | set(candidate))
    top = sorted((f for f, v in champion.items() if v > 0), key=lambda f: (old[f], f))[:top_k]
    return {f: abs(new.get(f, last) - old[f]) for f in top}
