"""Metric gates decide exactly as MLflow's model validation does on the same numbers.

Every decision is compared with ``mlflow.validate_evaluation_results`` on
``MetricThreshold`` objects built from the gate (MLflow is the independent implementation):

* ``min``/``max``            -> ``threshold`` (with the metric's ``greater_is_better``)
* ``min_improvement``        -> ``min_absolute_change``; with ``relative`` ``min_relative_change``
* ``max_regression: X``      -> no MLflow counterpart (MLflow rejects negative changes, checked
  below); it equals an MLflow ``threshold`` of ``champion - X`` (``+ X`` when lower is better;
  ``X * |champion|`` when relative), which is what is compared.

The cases are random, plus the edges: a candidate exactly at the threshold and one float step
to either side, a champion value of 0 with a relative change, negative metric values (r2).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from retrain_lib.core.config_gates import Gate
from retrain_lib.quality.gates import all_passed, evaluate_gate, evaluate_gates

DIRECTIONS = {"roc_auc": True, "r2": True, "accuracy": True, "rmse": False, "brier": False, "mae": False}


@pytest.fixture(autouse=True, scope="module")
def quiet_mlflow():
    logger = logging.getLogger("mlflow.models.evaluation.validation")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def mlflow_passes(metric: str, greater: bool, candidate: float, baseline: float | None, **threshold) -> bool:
    import mlflow
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    thresholds = {metric: MetricThreshold(greater_is_better=greater, **threshold)}
    cand = EvaluationResult(metrics={metric: candidate}, artifacts={})
    base = EvaluationResult(metrics={metric: baseline}, artifacts={}) if baseline is not None else None
    try:
        mlflow.validate_evaluation_results(thresholds, cand, base)
    except ModelValidationFailedException:
        return False
    return True


def ours(gate: Gate, candidate: float, champion: float | None) -> bool:
    results = evaluate_gate(gate, {gate.metric: candidate}, None if champion is None else {gate.metric: champion})
    assert len(results) == 1
    return results[0].passed


def near(value: float, rng) -> float:
    """``value`` itself or one float step either side (the boundary edge cases)."""
    return float(rng.choice([value, np.nextafter(value, -np.inf), np.nextafter(value, np.inf)]))


def champion_value(metric: str, rng) -> float:
    if metric == "r2":  # negative r2 values are common for poor models
        return float(rng.uniform(-3, 1))
    return float(rng.uniform(0.01, 10))


def test_absolute_thresholds_match_mlflow():
    decisions: list[bool] = []
    rng = np.random.default_rng(0)
    at_boundary = 0
    for i in range(300):
        metric = str(rng.choice(list(DIRECTIONS)))
        greater = DIRECTIONS[metric]
        bound = float(rng.uniform(-2, 5))
        value = near(bound, rng) if i % 3 == 0 else float(bound + rng.normal(0, 1))
        at_boundary += value == bound
        # MLflow has one threshold per metric, in the metric's direction: a lower bound for
        # greater-is-better metrics (our `min`), an upper bound otherwise (our `max`).
        gate = Gate(metric=metric, min=bound) if greater else Gate(metric=metric, max=bound)
        decisions.append(ours(gate, value, None))
        assert decisions[-1] == mlflow_passes(metric, greater, value, None, threshold=bound), (metric, bound, value)
    assert at_boundary > 10
    assert 0.2 < np.mean(decisions) < 0.8  # the equality edge case was exercised (and passes in both)


def test_min_absolute_improvement_matches_mlflow():
    decisions: list[bool] = []
    rng = np.random.default_rng(1)
    for i in range(300):
        metric = str(rng.choice(list(DIRECTIONS)))
        greater = DIRECTIONS[metric]
        champion = champion_value(metric, rng)
        change = float(rng.uniform(1e-4, 0.5))
        target = champion + change if greater else champion - change
        candidate = near(target, rng) if i % 2 == 0 else float(champion + rng.normal(0, 0.5))
        gate = Gate(metric=metric, min_improvement=change)
        decisions.append(ours(gate, candidate, champion))
        assert decisions[-1] == mlflow_passes(metric, greater, candidate, champion, min_absolute_change=change), (
            metric,
            champion,
            change,
            candidate,
        )
    assert 0.2 < np.mean(decisions) < 0.8


def test_min_relative_improvement_matches_mlflow():
    decisions: list[bool] = []
    rng = np.random.default_rng(2)
    zero_champions = 0
    for i in range(300):
        metric = str(rng.choice(list(DIRECTIONS)))
        greater = DIRECTIONS[metric]
        champion = 0.0 if i % 10 == 0 else champion_value(metric, rng)
        zero_champions += champion == 0
        change = float(rng.uniform(0.0, 1.0))  # MLflow allows 0..1
        target = champion + (1 if greater else -1) * change * abs(champion)
        if i % 10 == 0:  # champion 0: MLflow falls back to "better by at least 1e-10"
            candidate = float(rng.choice([0.0, 1e-10, -1e-10, 5e-11, -5e-11, 1e-3, -1e-3]))
        elif i % 2 == 0:
            candidate = near(target, rng)
        else:
            candidate = float(champion + rng.normal(0, 0.5))
        gate = Gate(metric=metric, min_improvement=change, relative=True)
        decisions.append(ours(gate, candidate, champion))
        assert decisions[-1] == mlflow_passes(metric, greater, candidate, champion, min_relative_change=change), (
            metric,
            champion,
            change,
            candidate,
        )
    assert 0.2 < np.mean(decisions) < 0.8
    assert zero_champions == 30


def test_mlflow_has_no_negative_change():
    from mlflow.models import MetricThreshold

    with pytest.raises(Exception, match="positive"):
        MetricThreshold(min_absolute_change=-0.01, greater_is_better=True)
    with pytest.raises(Exception, match="between 0 and 1"):
        MetricThreshold(min_relative_change=-0.01, greater_is_better=True)


@pytest.mark.parametrize("relative", [False, True])
def test_max_regression_matches_mlflow_threshold_at_champion_minus_x(relative):
    decisions: list[bool] = []
    rng = np.random.default_rng(3 + relative)
    for i in range(300):
        metric = str(rng.choice(list(DIRECTIONS)))
        greater = DIRECTIONS[metric]
        champion = 0.0 if i % 15 == 0 else champion_value(metric, rng)
        x = float(rng.uniform(0, 0.5))
        scale = abs(champion) if relative else 1.0
        worst_allowed = champion - x * scale if greater else champion + x * scale
        candidate = near(worst_allowed, rng) if i % 2 == 0 else float(champion + rng.normal(0, 0.5))
        gate = Gate(metric=metric, max_regression=x, relative=relative)
        decisions.append(ours(gate, candidate, champion))
        assert decisions[-1] == mlflow_passes(metric, greater, candidate, champion, threshold=worst_allowed), (
            metric,
            champion,
            x,
            candidate,
        )
    assert 0.2 < np.mean(decisions) < 0.8


def test_max_regression_zero_equals_mlflow_min_relative_change_zero():
    rng = np.random.default_rng(5)
    for _ in range(100):
        metric = str(rng.choice(list(DIRECTIONS)))
        champion = champion_value(metric, rng)
        candidate = near(champion, rng) if rng.random() < 0.5 else float(champion + rng.normal(0, 0.1))
        assert ours(Gate(metric=metric, max_regression=0.0), candidate, champion) == mlflow_passes(
            metric, DIRECTIONS[metric], candidate, champion, min_relative_change=0.0
        )


def test_combined_threshold_and_min_improvement_match_mlflow():
    rng = np.random.default_rng(6)
    for _ in range(100):
        metric = str(rng.choice(list(DIRECTIONS)))
        greater = DIRECTIONS[metric]
        champion = champion_value(metric, rng)
        bound = float(champion + rng.normal(0, 0.3))
        change = float(rng.uniform(1e-3, 0.3))
        candidate = float(champion + rng.normal(0, 0.4))
        gates = [
            Gate(metric=metric, min=bound) if greater else Gate(metric=metric, max=bound),
            Gate(metric=metric, min_improvement=change),
        ]
        mine = all_passed(evaluate_gates(gates, {metric: candidate}, {metric: champion}))
        theirs = mlflow_passes(metric, greater, candidate, champion, threshold=bound, min_absolute_change=change)
        assert mine == theirs, (metric, bound, change, candidate, champion)


def test_missing_or_nan_candidate_metric_fails_in_both():
    assert not mlflow_passes("roc_auc", True, math.nan, None, threshold=0.5)
    assert not all_passed(evaluate_gates([Gate(metric="roc_auc", min=0.5)], {"roc_auc": math.nan}, None))

    import mlflow
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    with pytest.raises(ModelValidationFailedException):
        mlflow.validate_evaluation_results(
            {"roc_auc": MetricThreshold(threshold=0.5, greater_is_better=True)},
            EvaluationResult(metrics={}, artifacts={}),
        )
    assert not all_passed(evaluate_gates([Gate(metric="roc_auc", min=0.5)], {}, None))


def test_champion_without_the_metric_fails_in_both():
    import mlflow
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    # MLflow 3.17 raises a KeyError here rather than a validation failure: it never passes.
    with pytest.raises((ModelValidationFailedException, KeyError)):
        mlflow.validate_evaluation_results(
            {"rmse": MetricThreshold(min_absolute_change=0.1, greater_is_better=False)},
            EvaluationResult(metrics={"rmse": 1.0}, artifacts={}),
            EvaluationResult(metrics={"mae": 1.0}, artifacts={}),
        )
    res = evaluate_gate(Gate(metric="rmse", min_improvement=0.1), {"rmse": 1.0}, {"mae": 1.0})
    assert not res[0].passed and "cannot compare" in res[0].reason


def test_no_champion_at_all_is_the_one_documented_difference():
    # MLflow fails a comparison without a baseline; the first model has no champion, so the
    # gates skip champion-relative checks instead (absolute thresholds still apply).
    assert not mlflow_passes("rmse", False, 1.0, None, min_absolute_change=0.1)
    res = evaluate_gate(Gate(metric="rmse", min_improvement=0.1), {"rmse": 1.0}, None)
    assert res[0].passed and res[0].skipped and "no champion" in res[0].reason
