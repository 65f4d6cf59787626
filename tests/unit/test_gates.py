"""Unit tests of retrain_lib.gates.

Expected thresholds are computed by hand in the tests; pass/fail decisions are also
compared with MLflow's own model validation (``mlflow.validate_evaluation_results``)
where the semantics line up: absolute thresholds and ``min_improvement`` (MLflow's
``min_absolute_change`` / ``min_relative_change``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from retrain_lib.config import Gate, load_model_config
from retrain_lib.gates import GateResult, all_passed, evaluate_gate, evaluate_gates

MODELS = Path(__file__).resolve().parents[2] / "configs" / "models"


def one(gate: Gate, candidate: dict, champion: dict | None) -> GateResult:
    results = evaluate_gate(gate, candidate, champion)
    assert len(results) == 1, results
    return results[0]


# -----------------------------------------------------------------------------------------
# Absolute gates
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate", "value", "passed"),
    [
        (Gate(metric="roc_auc", min=0.7), 0.71, True),
        (Gate(metric="roc_auc", min=0.7), 0.70, True),  # bound included
        (Gate(metric="roc_auc", min=0.7), 0.69, False),
        (Gate(metric="brier", max=0.2), 0.19, True),
        (Gate(metric="brier", max=0.2), 0.2, True),
        (Gate(metric="brier", max=0.2), 0.2001, False),
        (Gate(metric="rmse", max=5.0), 6.0, False),
        (Gate(metric="r2", min=0.5), 0.49, False),
    ],
)
def test_absolute_min_max(gate, value, passed):
    r = one(gate, {gate.metric: value}, None)
    assert r.passed is passed
    assert r.observed == value and r.champion is None and r.delta is None
    assert r.threshold == (gate.min if gate.min is not None else gate.max)
    assert r.gate == f"{gate.metric}_{'min' if gate.min is not None else 'max'}"
    assert ("<" in r.reason or ">" in r.reason) and gate.metric in r.reason


def test_min_and_max_in_one_gate_give_two_results():
    results = evaluate_gate(Gate(metric="r2", min=0.5, max=0.99), {"r2": 0.995}, None)
    assert [(r.gate, r.passed) for r in results] == [("r2_min", True), ("r2_max", False)]
    assert not all_passed(results)


# -----------------------------------------------------------------------------------------
# Relative gates: hand-computed thresholds
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate", "champion", "candidate", "threshold", "passed"),
    [
        # roc_auc: greater is better. At most 0.01 worse than 0.80 -> threshold 0.79.
        (Gate(metric="roc_auc", max_regression=0.01), 0.80, 0.795, 0.79, True),
        (Gate(metric="roc_auc", max_regression=0.01), 0.80, 0.785, 0.79, False),
        (Gate(metric="roc_auc", max_regression=0.01), 0.80, 0.85, 0.79, True),
        # At least 0.02 better than 0.80 -> 0.82.
        (Gate(metric="roc_auc", min_improvement=0.02), 0.80, 0.83, 0.82, True),
        (Gate(metric="roc_auc", min_improvement=0.02), 0.80, 0.81, 0.82, False),
        # Relative: at most 5 % of 0.80 worse -> 0.76; at least 10 % better -> 0.88.
        (Gate(metric="roc_auc", max_regression=0.05, relative=True), 0.80, 0.765, 0.76, True),
        (Gate(metric="roc_auc", max_regression=0.05, relative=True), 0.80, 0.755, 0.76, False),
        (Gate(metric="roc_auc", min_improvement=0.10, relative=True), 0.80, 0.89, 0.88, True),
        (Gate(metric="roc_auc", min_improvement=0.10, relative=True), 0.80, 0.87, 0.88, False),
        # rmse: lower is better. At most 0.5 worse than 10 -> 10.5.
        (Gate(metric="rmse", max_regression=0.5), 10.0, 10.4, 10.5, True),
        (Gate(metric="rmse", max_regression=0.5), 10.0, 10.6, 10.5, False),
        (Gate(metric="rmse", max_regression=0.5), 10.0, 8.0, 10.5, True),
        # At least 0.5 better than 10 -> 9.5.
        (Gate(metric="rmse", min_improvement=0.5), 10.0, 9.4, 9.5, True),
        (Gate(metric="rmse", min_improvement=0.5), 10.0, 9.6, 9.5, False),
        (Gate(metric="rmse", min_improvement=0.5), 10.0, 10.0, 9.5, False),
        # Relative (daily_demand): at most 5 % worse than 10 -> 10.5; at least 10 % better -> 9.0.
        (Gate(metric="rmse", max_regression=0.05, relative=True), 10.0, 10.45, 10.5, True),
        (Gate(metric="rmse", max_regression=0.05, relative=True), 10.0, 10.55, 10.5, False),
        (Gate(metric="rmse", min_improvement=0.10, relative=True), 10.0, 8.9, 9.0, True),
        (Gate(metric="rmse", min_improvement=0.10, relative=True), 10.0, 9.1, 9.0, False),
        # A negative champion: the scale is |champion|. r2 at most 10 % of 0.5 worse than -0.5 -> -0.55.
        (Gate(metric="r2", max_regression=0.1, relative=True), -0.5, -0.54, -0.55, True),
        (Gate(metric="r2", max_regression=0.1, relative=True), -0.5, -0.56, -0.55, False),
    ],
)
def test_relative_gates(gate, champion, candidate, threshold, passed):
    r = one(gate, {gate.metric: candidate}, {gate.metric: champion})
    assert r.passed is passed, r.reason
    assert r.threshold == pytest.approx(threshold, abs=1e-12)
    assert r.observed == candidate and r.champion == champion
    assert r.delta == pytest.approx(candidate - champion, abs=1e-12)
    kind = "max_regression" if gate.max_regression is not None else "min_improvement"
    assert r.gate == f"{gate.metric}_{kind}"
    assert ("ok" if passed else "failed") in r.reason
    # the decision is the comparison with the threshold, in the metric's direction
    greater = gate.metric in ("roc_auc", "r2")
    assert passed == (candidate >= threshold if greater else candidate <= threshold)


def test_relative_gate_with_zero_champion_fails_closed():
    r = one(Gate(metric="r2", max_regression=0.1, relative=True), {"r2": 0.3}, {"r2": 0.0})
    assert not r.passed and "is 0" in r.reason and r.threshold is None


def test_exact_boundary_passes_despite_float_rounding():
    # 0.3 - 0.2 == 0.09999999999999998 in floats: a candidate exactly 0.1 better must pass.
    r = one(Gate(metric="rmse", min_improvement=0.1), {"rmse": 0.2}, {"rmse": 0.3})
    assert r.passed
    r = one(Gate(metric="roc_auc", max_regression=0.01), {"roc_auc": 0.79}, {"roc_auc": 0.80})
    assert r.passed


# -----------------------------------------------------------------------------------------
# First model, missing values
# -----------------------------------------------------------------------------------------


def test_first_model_skips_relative_gates_but_applies_absolute_ones():
    gates = [Gate(metric="roc_auc", min=0.7), Gate(metric="roc_auc", max_regression=0.01),
             Gate(metric="roc_auc", min_improvement=0.05, relative=True)]
    results = evaluate_gates(gates, {"roc_auc": 0.65}, None)
    by = {r.gate: r for r in results}
    assert not by["roc_auc_min"].passed
    for name in ("roc_auc_max_regression", "roc_auc_min_improvement"):
        assert by[name].passed and by[name].threshold is None and by[name].champion is None
        assert "no champion" in by[name].reason
    assert not all_passed(results)
    assert all_passed(evaluate_gates(gates, {"roc_auc": 0.75}, None))


@pytest.mark.parametrize("bad", [None, math.nan, float("nan"), "n/a", np.nan, "missing"])
def test_missing_or_nan_metric_fails_closed(bad):
    gate = Gate(metric="roc_auc", min=0.5, max_regression=0.01)
    candidate = {} if bad == "missing" else {"roc_auc": bad}
    results = evaluate_gates([gate], candidate, {"roc_auc": 0.8})
    assert len(results) == 1
    r = results[0]
    assert not r.passed and r.observed is None
    assert "missing or not a number" in r.reason and "roc_auc" in r.reason
    assert not all_passed(results)


def test_numeric_strings_and_numpy_values_are_accepted():
    r = one(Gate(metric="roc_auc", min=0.7), {"roc_auc": np.float32(0.75)}, None)
    assert r.passed and isinstance(r.observed, float)
    r = one(Gate(metric="roc_auc", min=0.7), {"roc_auc": "0.75"}, None)
    assert r.passed


@pytest.mark.parametrize("champ", [{}, {"roc_auc": None}, {"roc_auc": math.nan}, {"auc": 0.8}])
def test_champion_without_metric_fails_relative_gate(champ):
    r = one(Gate(metric="roc_auc", max_regression=0.01), {"roc_auc": 0.8}, champ)
    assert not r.passed and "cannot compare" in r.reason


def test_unknown_metric_fails_closed():
    results = evaluate_gates([Gate(metric="gini", min=0.1)], {"gini": 0.5}, None)
    assert len(results) == 1 and not results[0].passed
    assert "could not be evaluated" in results[0].reason and "gini" in results[0].reason


def test_gate_result_to_dict():
    r = one(Gate(metric="roc_auc", max_regression=0.01), {"roc_auc": 0.8}, {"roc_auc": 0.805})
    d = r.to_dict()
    assert set(d) == {"gate", "metric", "threshold", "observed", "champion", "delta", "passed", "reason", "slice"}
    assert d["observed"] == 0.8 and d["champion"] == 0.805 and d["threshold"] == pytest.approx(0.795)
    assert d["delta"] == pytest.approx(-0.005) and d["passed"] is True and d["slice"] == "all"


def test_shipped_config_gates():
    credit = load_model_config(MODELS / "credit_default.yaml")
    ok = evaluate_gates(credit.gates, {"roc_auc": 0.75, "brier": 0.15}, {"roc_auc": 0.755})
    assert all_passed(ok) and len(ok) == 3
    worse = evaluate_gates(credit.gates, {"roc_auc": 0.75, "brier": 0.15}, {"roc_auc": 0.77})
    assert [r.passed for r in worse] == [True, True, False]
    demand = load_model_config(MODELS / "daily_demand.yaml")
    res = evaluate_gates(demand.gates, {"r2": 0.8, "rmse": 10.6}, {"rmse": 10.0})
    assert [r.passed for r in res] == [True, False]
    assert res[1].threshold == pytest.approx(10.5)


# -----------------------------------------------------------------------------------------
# Parity with MLflow model validation
# -----------------------------------------------------------------------------------------


def mlflow_passes(metric: str, threshold_kwargs: dict, greater: bool, candidate: float,
                  baseline: float | None) -> bool:
    import mlflow
    from mlflow.models import MetricThreshold
    from mlflow.models.evaluation import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    thresholds = {metric: MetricThreshold(greater_is_better=greater, **threshold_kwargs)}
    cand = EvaluationResult(metrics={metric: candidate}, artifacts={})
    base = EvaluationResult(metrics={metric: baseline}, artifacts={}) if baseline is not None else None
    try:
        mlflow.validate_evaluation_results(thresholds, cand, base)
    except ModelValidationFailedException:
        return False
    return True


@pytest.fixture(scope="module")
def quiet_mlflow():
    import logging

    logger = logging.getLogger("mlflow.models.evaluation.validation")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


METRIC_DIRECTIONS = {"roc_auc": True, "r2": True, "rmse": False, "brier": False, "mae": False}


def test_absolute_thresholds_match_mlflow(quiet_mlflow):
    rng = np.random.default_rng(0)
    for _ in range(150):
        metric = str(rng.choice(list(METRIC_DIRECTIONS)))
        greater = METRIC_DIRECTIONS[metric]
        bound = float(round(rng.uniform(0.1, 5), 3))
        value = float(bound + rng.choice([-1, 1]) * rng.uniform(1e-6, 1))
        # MLflow has one threshold per metric, in the metric's direction: a lower bound for
        # greater-is-better metrics (our `min`), an upper bound otherwise (our `max`).
        gate = Gate(metric=metric, min=bound) if greater else Gate(metric=metric, max=bound)
        ours = one(gate, {metric: value}, None).passed
        assert ours == mlflow_passes(metric, {"threshold": bound}, greater, value, None), (metric, bound, value)


def test_min_improvement_matches_mlflow(quiet_mlflow):
    rng = np.random.default_rng(1)
    compared = 0
    for _ in range(200):
        metric = str(rng.choice(list(METRIC_DIRECTIONS)))
        greater = METRIC_DIRECTIONS[metric]
        relative = bool(rng.random() < 0.5)
        champion = float(rng.uniform(-2, 5) if metric == "r2" else rng.uniform(0.05, 5))
        bound = float(round(rng.uniform(0.001, 0.5), 4))
        candidate = float(champion + rng.normal(0, 0.5))
        scale = abs(champion) if relative else 1.0
        required = bound * scale
        margin = (candidate - champion if greater else champion - candidate) - required
        if abs(margin) < 1e-9 or champion == 0:  # exact boundaries differ by rounding: see below
            continue
        gate = Gate(metric=metric, min_improvement=bound, relative=relative)
        ours = one(gate, {metric: candidate}, {metric: champion})
        kwargs = {"min_relative_change": bound} if relative else {"min_absolute_change": bound}
        assert ours.passed == mlflow_passes(metric, kwargs, greater, candidate, champion), (
            metric, relative, champion, bound, candidate)
        assert ours.passed == (margin > 0)
        compared += 1
    assert compared > 150


def test_combined_threshold_and_min_improvement_match_mlflow(quiet_mlflow):
    cases = [  # (metric, min/max bound, min_improvement, candidate, champion)
        ("roc_auc", 0.7, 0.01, 0.75, 0.73),
        ("roc_auc", 0.7, 0.01, 0.75, 0.745),
        ("roc_auc", 0.8, 0.01, 0.75, 0.70),
        ("rmse", 10.0, 0.5, 9.0, 9.8),
        ("rmse", 10.0, 0.5, 9.0, 9.4),
        ("rmse", 8.0, 0.5, 9.0, 12.0),
    ]
    for metric, bound, imp, cand, champ in cases:
        greater = METRIC_DIRECTIONS[metric]
        gates = [Gate(metric=metric, min=bound) if greater else Gate(metric=metric, max=bound),
                 Gate(metric=metric, min_improvement=imp)]
        ours = all_passed(evaluate_gates(gates, {metric: cand}, {metric: champ}))
        theirs = mlflow_passes(metric, {"threshold": bound, "min_absolute_change": imp}, greater, cand, champ)
        assert ours == theirs, (metric, bound, imp, cand, champ)


def test_missing_candidate_metric_fails_in_both(quiet_mlflow):
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
