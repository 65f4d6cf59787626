"""Unit tests of retrain_lib.quality.gates.

Expected values (thresholds, gaps, ECE, flip shares, leakage scores) are computed by hand
or with scikit-learn/scipy in the tests; metric-gate decisions are compared with MLflow's own
model validation in ``test_gate_parity.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from retrain_lib.core.config import load_model_config
from retrain_lib.core.config_gates import Gate
from retrain_lib.core.metrics import GREATER_IS_BETTER, resampled_metric
from retrain_lib.quality.gate_types import GateInputs, GateResult
from retrain_lib.quality.gates import (
    all_passed,
    evaluate_gate,
    evaluate_gates,
    run_gates,
)
from retrain_lib.stats.gate_measures import bootstrap_improvement, measure_latency_ms

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


def test_relative_max_regression_with_zero_champion_allows_no_worsening():
    gate = Gate(metric="r2", max_regression=0.1, relative=True)
    r = one(gate, {"r2": 0.3}, {"r2": 0.0})
    assert r.passed and r.threshold == 0.0  # 10 % of |0| = 0
    assert not one(gate, {"r2": -0.01}, {"r2": 0.0}).passed


def test_relative_min_improvement_with_zero_champion_needs_strictly_better():
    # MLflow's fallback for a 0 baseline: better by at least 1e-10.
    gate = Gate(metric="r2", min_improvement=0.1, relative=True)
    assert one(gate, {"r2": 0.3}, {"r2": 0.0}).passed
    assert not one(gate, {"r2": 0.0}, {"r2": 0.0}).passed
    assert not one(gate, {"r2": 5e-11}, {"r2": 0.0}).passed


def test_candidate_exactly_at_the_threshold_passes():
    assert 0.8 - 0.01 == 0.79
    assert one(Gate(metric="roc_auc", max_regression=0.01), {"roc_auc": 0.79}, {"roc_auc": 0.80}).passed
    assert one(Gate(metric="rmse", min_improvement=0.5), {"rmse": 9.5}, {"rmse": 10.0}).passed
    # The threshold is computed in floats like MLflow (champion - change): 0.3 - 0.1 is
    # 0.19999999999999998, so an rmse of 0.2 is not "0.1 better" for MLflow nor for us.
    r = one(Gate(metric="rmse", min_improvement=0.1), {"rmse": 0.2}, {"rmse": 0.3})
    assert r.threshold == 0.3 - 0.1 and not r.passed
    assert one(Gate(metric="rmse", min_improvement=0.1), {"rmse": 0.3 - 0.1}, {"rmse": 0.3}).passed


# -----------------------------------------------------------------------------------------
# First model, missing values
# -----------------------------------------------------------------------------------------


def test_first_model_skips_relative_gates_but_applies_absolute_ones():
    gates = [
        Gate(metric="roc_auc", min=0.7),
        Gate(metric="roc_auc", max_regression=0.01),
        Gate(metric="roc_auc", min_improvement=0.05, relative=True),
    ]
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


def test_unknown_metric_is_a_config_error_naming_the_valid_ones():
    with pytest.raises(ValidationError) as err:
        Gate(metric="roc_auk", min=0.1)
    text = str(err.value)
    assert "unknown metric 'roc_auk'" in text and "did you mean 'roc_auc'" in text
    for name in GREATER_IS_BETTER:
        assert name in text


def test_unknown_metric_that_slipped_past_validation_fails_closed():
    gate = Gate.model_construct(metric="gini", min=0.1)  # skips validation
    for results in (
        evaluate_gates([gate], {"gini": 0.5}, None),
        run_gates([gate], GateInputs(task="classification", candidate_metrics={"gini": 0.5})),
    ):
        assert len(results) == 1 and not results[0].passed
        assert "could not be evaluated" in results[0].reason and "gini" in results[0].reason


def test_gate_result_to_dict():
    r = one(Gate(metric="roc_auc", max_regression=0.01), {"roc_auc": 0.8}, {"roc_auc": 0.805})
    d = r.to_dict()
    assert set(d) == {
        "gate",
        "metric",
        "threshold",
        "observed",
        "champion",
        "delta",
        "passed",
        "reason",
        "slice",
        "kind",
        "skipped",
        "details",
    }
    assert json.loads(json.dumps(d)) == d
    assert d["observed"] == 0.8 and d["champion"] == 0.805 and d["threshold"] == pytest.approx(0.795)
    assert d["delta"] == pytest.approx(-0.005) and d["passed"] is True and d["slice"] == "all"


def test_shipped_config_gates():
    def plain(cfg):  # the overall metric gates: what evaluate_gates decides from metric dicts alone
        return [g for g in cfg.gates if g.type == "metric" and g.segment is None]

    credit = load_model_config(MODELS / "credit_default.yaml")
    ok = evaluate_gates(plain(credit), {"roc_auc": 0.75, "brier": 0.15}, {"roc_auc": 0.755})
    assert all_passed(ok) and len(ok) == 3
    worse = evaluate_gates(plain(credit), {"roc_auc": 0.75, "brier": 0.15}, {"roc_auc": 0.77})
    assert [r.passed for r in worse] == [True, True, False]
    demand = load_model_config(MODELS / "daily_demand.yaml")
    res = evaluate_gates(plain(demand), {"r2": 0.8, "rmse": 10.6}, {"rmse": 10.0})
    assert [r.passed for r in res] == [True, False]
    assert res[1].threshold == pytest.approx(10.5)


# -----------------------------------------------------------------------------------------
# Configuration of the gate kinds
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"type": "fairness", "metric": "recall"}, "a fairness gate needs 'by' and 'max_gap'"),
        ({"type": "fairness", "metric": "recall", "by": "region"}, "needs 'max_gap'"),
        ({"type": "latency"}, "a latency gate needs 'max_ms'"),
        ({"type": "stability"}, "needs 'max_change'"),
        ({"type": "bootstrap"}, "a bootstrap gate needs 'metric'"),
        ({"type": "calibration", "metric": "roc_auc", "max": 0.1}, "calibration gate measures brier or ece"),
        ({"type": "latency", "max_ms": 5, "metric": "roc_auc"}, "'metric' does not apply to a latency gate"),
        ({"metric": "roc_auc", "min": 0.7, "max_gap": 0.1}, "'max_gap' does not apply to a metric gate"),
        ({"metric": "roc_auc", "min": 0.7, "min_rows": 10}, "min_rows only applies with segment"),
        ({"metric": "roc_auc", "min": 0.7, "relative": True}, "relative only applies to max_regression"),
        ({"type": "bootstrap", "metric": "roc_auc", "confidence": 1.5}, "confidence"),
        ({"type": "leakage", "max_score": 1.5}, "max_score"),
        ({"type": "drift", "metric": "roc_auc"}, "type"),
    ],
)
def test_wrong_gate_combinations_are_config_errors(kwargs, message):
    with pytest.raises(ValidationError, match=message):
        Gate(**kwargs)


def test_gate_kinds_in_yaml_form_and_json_schema():
    import yaml

    from retrain_lib.core.config import json_schema

    entries = yaml.safe_load("""
    - {metric: roc_auc, min: 0.70}
    - {metric: roc_auc, max_regression: 0.01}
    - {metric: rmse, max_regression: 0.05, relative: true}
    - {metric: roc_auc, min: 0.65, segment: region, min_rows: 50}
    - {type: fairness, metric: recall, by: region, max_gap: 0.10}
    - {type: calibration, metric: ece, max: 0.05, bins: 10}
    - {type: latency, max_ms: 20}
    - {type: stability, max_change: 0.05}
    - {type: bootstrap, metric: roc_auc, margin: 0.0, confidence: 0.95}
    - {type: leakage, max_score: 0.98}
    """)
    gates = [Gate(**e) for e in entries]
    assert [g.type for g in gates][:4] == ["metric"] * 4
    assert gates[6].max_ms == 20 and gates[8].n_resamples == 1000 and gates[9].max_score == 0.98
    schema = json.dumps(json_schema())
    for kind in ("fairness", "calibration", "latency", "stability", "bootstrap", "leakage"):
        assert f'"{kind}"' in schema


# -----------------------------------------------------------------------------------------
# run_gates: helpers to build inputs
# -----------------------------------------------------------------------------------------


def classification_data(n=2000, seed=0, champion_noise=1.0, candidate_noise=1.0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    signal = 1.5 * y
    cand = 1 / (1 + np.exp(-(signal - 0.75 + rng.normal(0, candidate_noise, n))))
    champ = 1 / (1 + np.exp(-(signal - 0.75 + rng.normal(0, champion_noise, n))))
    return y, cand, champ


def inputs(task="classification", **kw) -> GateInputs:
    return GateInputs(task=task, **kw)


# -----------------------------------------------------------------------------------------
# Metric gates through run_gates, per segment
# -----------------------------------------------------------------------------------------


def test_run_gates_metric_gate_matches_evaluate_gates():
    gates = [Gate(metric="roc_auc", min=0.7), Gate(metric="roc_auc", max_regression=0.01)]
    cand, champ = {"roc_auc": 0.75}, {"roc_auc": 0.77}
    a = run_gates(gates, inputs(candidate_metrics=cand, champion_metrics=champ))
    assert [r.to_dict() for r in a] == [r.to_dict() for r in evaluate_gates(gates, cand, champ)]
    assert [r.passed for r in a] == [True, False]


def test_metric_gate_computes_a_missing_metric_from_scores():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.1, 0.9, 0.8, 0.3])
    # ECE with 10 bins by hand: bins 1, 9, 8, 3 hold one row each: |0-.1|+|1-.9|+|1-.8|+|0-.3| = 0.7 -> /4
    r = run_gates([Gate(metric="ece", max=0.2)], inputs(y_true=y, candidate_scores=p))[0]
    assert r.observed == pytest.approx(0.175) and r.passed


def test_segment_gate_checks_every_slice_and_skips_small_ones():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    n_north, n_south, n_tiny = 300, 300, 20
    y = rng.integers(0, 2, n_north + n_south + n_tiny)
    region = np.array(["north"] * n_north + ["south"] * n_south + ["tiny"] * n_tiny)
    # good scores in the north, random ones in the south
    scores = np.where(region == "north", 0.3 * y + 0.7 * rng.random(len(y)), rng.random(len(y)))
    holdout = pd.DataFrame({"region": region, "x": rng.random(len(y))})
    gate = Gate(metric="roc_auc", min=0.7, segment="region", min_rows=50)
    results = run_gates([gate], inputs(y_true=y, candidate_scores=scores, holdout=holdout))
    by = {r.slice: r for r in results}
    assert set(by) == {"region=north", "region=south", "region=tiny"}
    for name in ("north", "south"):
        m = region == name
        assert by[f"region={name}"].observed == pytest.approx(roc_auc_score(y[m], scores[m]))
    assert by["region=north"].passed and not by["region=south"].passed
    tiny = by["region=tiny"]
    # on_skip: fail (the default): a slice nobody could check fails the gate, saying how to proceed
    assert not tiny.passed and tiny.skipped and "20 rows < min_rows 50" in tiny.reason
    assert "set on_skip: pass" in tiny.reason
    assert not all_passed(results)


def test_segment_gate_on_skip_pass_lets_small_slices_through_recorded():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 320)
    region = np.array(["north"] * 300 + ["tiny"] * 20)
    scores = 0.3 * y + 0.7 * rng.random(len(y))  # good everywhere
    holdout = pd.DataFrame({"region": region})
    strict = run_gates(
        [Gate(metric="roc_auc", min=0.7, segment="region", min_rows=50)],
        inputs(y_true=y, candidate_scores=scores, holdout=holdout),
    )
    assert not all_passed(strict)  # only the unchecked tiny slice fails
    assert [r.slice for r in strict if not r.passed] == ["region=tiny"]
    lenient = run_gates(
        [Gate(metric="roc_auc", min=0.7, segment="region", min_rows=50, on_skip="pass")],
        inputs(y_true=y, candidate_scores=scores, holdout=holdout),
    )
    assert all_passed(lenient)
    tiny = {r.slice: r for r in lenient}["region=tiny"]
    assert tiny.passed and tiny.skipped and "not checked (on_skip: pass)" in tiny.reason


def test_segment_gate_relative_to_the_champion_per_slice():

    y = np.array([0, 1] * 60)
    region = np.array(["a"] * 60 + ["b"] * 60)
    champ = np.where(y == 1, 0.8, 0.2).astype(float)  # perfect everywhere
    cand = champ.copy()
    cand[60:] = 1 - cand[60:]  # reversed in b: accuracy 0 there
    gate = Gate(metric="accuracy", max_regression=0.05, segment="region", min_rows=10)
    data = inputs(
        y_true=y,
        candidate_scores=cand,
        champion_scores=champ,
        holdout=pd.DataFrame({"region": region}),
        champion_metrics={},
    )
    by = {r.slice: r for r in run_gates([gate], data)}
    assert by["region=a"].passed and by["region=a"].observed == 1.0 and by["region=a"].champion == 1.0
    assert not by["region=b"].passed and by["region=b"].observed == 0.0 and by["region=b"].threshold == 0.95
    # no champion: the relative check is skipped for every slice
    data = inputs(y_true=y, candidate_scores=cand, holdout=pd.DataFrame({"region": region}))
    assert all(r.passed and r.skipped for r in run_gates([gate], data))


# -----------------------------------------------------------------------------------------
# Fairness, calibration, latency, stability
# -----------------------------------------------------------------------------------------


def fairness_data():

    # accuracy by hand: a = 8/8, b = 6/8, c = 7/8 -> worst pair a vs b, gap 0.25 (exact in floats)
    y = np.ones(24, dtype=int)
    p = np.full(24, 0.9)
    p[8:10] = 0.1
    p[16:17] = 0.1
    group = np.array(["a"] * 8 + ["b"] * 8 + ["c"] * 8)
    return y, p, pd.DataFrame({"group": group})


@pytest.mark.parametrize(("max_gap", "passed"), [(0.3, True), (0.25, True), (0.2, False)])
def test_fairness_gap_by_hand(max_gap, passed):
    y, p, frame = fairness_data()
    gate = Gate(type="fairness", metric="accuracy", by="group", max_gap=max_gap, min_rows=5)
    [r] = run_gates([gate], inputs(y_true=y, candidate_scores=p, holdout=frame))
    assert r.observed == 0.25 and r.threshold == max_gap
    assert r.passed is passed and r.slice == "group=a vs group=b"
    assert r.details["groups"] == {"a": 1.0, "b": 0.75, "c": 0.875}


@pytest.mark.parametrize(("on_skip", "passed"), [("fail", False), ("pass", True)])
def test_fairness_needs_two_groups_large_enough(on_skip, passed):
    y, p, frame = fairness_data()
    gate = Gate(type="fairness", metric="accuracy", by="group", max_gap=0.01, min_rows=9, on_skip=on_skip)
    [r] = run_gates([gate], inputs(y_true=y, candidate_scores=p, holdout=frame))
    assert r.passed is passed and r.skipped and "fewer than two groups" in r.reason
    assert "group=a (8 rows)" in r.reason


@pytest.mark.parametrize(("on_skip", "passed"), [("fail", False), ("pass", True)])
def test_fairness_group_too_small_to_compare(on_skip, passed):
    # groups a and b (8 rows) are compared; c is cut to 3 rows, below min_rows 5: not compared
    y, p, frame = fairness_data()
    keep = np.r_[0:16, 16:19]
    gate = Gate(type="fairness", metric="accuracy", by="group", max_gap=0.3, min_rows=5, on_skip=on_skip)
    [r] = run_gates([gate], inputs(y_true=y[keep], candidate_scores=p[keep], holdout=frame.iloc[keep]))
    assert r.observed == 0.25 and r.details["skipped_groups"] == {"c": 3}
    assert r.passed is passed and r.skipped and "group=c (3 rows)" in r.reason


def test_on_skip_only_where_slices_exist():
    with pytest.raises(ValueError, match="on_skip only applies with segment"):
        Gate(metric="roc_auc", min=0.7, on_skip="pass")
    with pytest.raises(ValueError, match="'on_skip' does not apply to a calibration gate"):
        Gate(type="calibration", metric="ece", max=0.1, on_skip="pass")


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        # y, p below; ECE, 2 bins: [0, .5): (y 0,0 | p .1,.3) -> |0-.4|; [.5, 1]: (y 1,1 | p .9,.8) -> |2-1.7|
        ("ece", 0.7 / 4),
        ("brier", (0.1**2 + 0.1**2 + 0.2**2 + 0.3**2) / 4),
    ],
)
def test_calibration_by_hand(metric, expected):
    y = np.array([0, 1, 1, 0])
    p = np.array([0.1, 0.9, 0.8, 0.3])
    data = inputs(y_true=y, candidate_scores=p)
    kw = {"bins": 2} if metric == "ece" else {}
    [ok] = run_gates([Gate(type="calibration", metric=metric, max=expected + 1e-9, **kw)], data)
    [bad] = run_gates([Gate(type="calibration", metric=metric, max=expected - 1e-3, **kw)], data)
    assert ok.observed == pytest.approx(expected) and ok.passed
    assert not bad.passed and bad.kind == "calibration"


def test_calibration_on_a_regression_model_fails_closed():
    [r] = run_gates(
        [Gate(type="calibration", metric="brier", max=0.2)],
        inputs("regression", y_true=[1.0, 2.0], candidate_scores=[1.0, 2.0]),
    )
    assert not r.passed and r.reason.startswith("gate could not be evaluated:") and "classification" in r.reason


def test_latency_gate_uses_the_measured_number():
    gate = Gate(type="latency", max_ms=10)
    assert run_gates([gate], inputs(latency_ms={"p50": 3.0, "p95": 10.0}))[0].passed
    r = run_gates([gate], inputs(latency_ms={"p50": 3.0, "p95": 12.5}))[0]
    assert not r.passed and r.observed == 12.5 and "12.50 ms > max 10 ms" in r.reason
    r = run_gates([gate], inputs())[0]
    assert not r.passed and "measure_latency_ms" in r.reason


def test_servable_gate_passes_only_a_probe_that_loaded_answered_everything_and_matched():
    from retrain_lib.pipeline.alerts import gate_line
    from retrain_lib.quality.gate_types import ServedProbe

    gate = Gate(type="servable", requests=20)
    good = ServedProbe("models:/m-1", True, 20, answered=20, max_abs_diff=0.0, p50_ms=1.0, p95_ms=2.0, startup_s=4.2)
    cases = {
        "loaded": (good, True, "loaded it in 4.2 s and answered 20 of 20"),
        "not loaded": (ServedProbe("models:/m-1", False, 20, error="ImportError: no x"), False, "could not serve"),
        "refused some": (
            ServedProbe("models:/m-1", True, 20, answered=18, p95_ms=2.0, error="request 3: HTTP 500"),
            False,
            "answered 18 of 20 requests: request 3: HTTP 500",
        ),
        "skew": (
            ServedProbe("models:/m-1", True, 20, answered=20, mismatched=5, max_abs_diff=0.2, p95_ms=2.0),
            False,
            "5 of 20 requests differently",
        ),
    }
    for name, (probe, ok, text) in cases.items():
        [r] = run_gates([gate], inputs(served=probe))
        assert (r.passed, r.kind) == (ok, "servable"), name
        assert text in r.reason, (name, r.reason)
        if not ok:
            assert gate_line(r) == f"gate `servable` failed: {r.reason}"
    [unseen] = run_gates([gate], inputs())
    assert not unseen.passed and "was not served" in unseen.reason
    # the latency gate then judges the served p95, and says why there is none
    latency = Gate(type="latency", max_ms=10)
    [r] = run_gates([latency], inputs(served=good, latency_ms={"p50": 1.0, "p95": 2.0, "path": "served"}))
    assert r.passed and r.reason.startswith("p95 of single-row requests to the served candidate 2.00 ms")
    [r] = run_gates([latency], inputs(served=cases["not loaded"][0]))
    assert not r.passed and "no served latency: a fresh gateway process could not serve" in r.reason


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"type": "servable", "max_ms": 5}, "'max_ms' does not apply to a servable gate"),
        ({"type": "servable", "requests": 2}, "greater than or equal to 5"),
        ({"type": "metric", "metric": "roc_auc", "min": 0.5, "requests": 10}, "'requests' does not apply"),
    ],
)
def test_servable_gate_config_errors(raw, message):
    with pytest.raises(ValidationError, match=message):
        Gate.model_validate(raw)


def test_measure_latency_ms_times_single_row_predictions():

    calls = []

    class Model:
        def predict_proba(self, X):
            calls.append(len(X))
            return np.tile([0.5, 0.5], (len(X), 1))

    X = pd.DataFrame({"a": np.arange(50.0)})
    out = measure_latency_ms(Model(), X, n=30, seed=1, warmup=2)
    assert set(out) == {"p50", "p95", "n"} and out["n"] == 30
    assert 0 <= out["p50"] <= out["p95"] < 1000
    assert calls == [1] * 32  # 2 warm-up + 30 timed calls, one row each


def test_stability_classification_flip_share_by_hand():
    cand = np.array([0.6, 0.4, 0.7, 0.2, 0.5])
    champ = np.array([0.4, 0.3, 0.8, 0.6, 0.49])  # flips at rows 0, 3, 4 -> 3/5
    data = inputs(y_true=[1, 0, 1, 0, 1], candidate_scores=cand, champion_scores=champ, champion_metrics={})
    [r] = run_gates([Gate(type="stability", max_change=0.6)], data)
    assert r.observed == pytest.approx(0.6) and r.passed
    assert not run_gates([Gate(type="stability", max_change=0.5)], data)[0].passed


def test_stability_regression_change_over_std_by_hand():
    y = np.array([1.0, 3.0, 5.0, 7.0])  # population std = sqrt(5)
    cand = np.array([1.0, 3.0, 5.0, 7.0])
    champ = np.array([2.0, 3.0, 5.0, 4.0])  # mean |change| = (1 + 3) / 4 = 1
    data = inputs("regression", y_true=y, candidate_scores=cand, champion_scores=champ)
    [r] = run_gates([Gate(type="stability", max_change=0.5)], data)
    assert r.observed == pytest.approx(1 / math.sqrt(5)) and r.passed
    assert not run_gates([Gate(type="stability", max_change=0.4)], data)[0].passed


def test_stability_is_skipped_without_champion_and_fails_without_its_scores():
    gate = Gate(type="stability", max_change=0.1)
    r = run_gates([gate], inputs(y_true=[0, 1], candidate_scores=[0.2, 0.8]))[0]
    assert r.passed and r.skipped and "no champion" in r.reason
    r = run_gates([gate], inputs(y_true=[0, 1], candidate_scores=[0.2, 0.8], champion_metrics={"roc_auc": 0.7}))[0]
    assert not r.passed and "champion scores" in r.reason and "could not be evaluated" in r.reason


# -----------------------------------------------------------------------------------------
# Bootstrap
# -----------------------------------------------------------------------------------------


def test_resampled_metrics_equal_sklearn_on_the_resampled_rows():
    from sklearn.metrics import brier_score_loss, mean_squared_error, r2_score, roc_auc_score

    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.3).astype(int)
    p = np.round(0.4 * y + 0.6 * rng.random(n), 2)  # rounded: ties
    idx = rng.integers(0, n, size=(6, n))
    counts = np.stack([np.bincount(i, minlength=n) for i in idx])
    auc = resampled_metric("classification", "roc_auc", y, p, counts)
    brier = resampled_metric("classification", "brier", y, p, counts)
    for b, i in enumerate(idx):
        assert auc[b] == pytest.approx(roc_auc_score(y[i], p[i]), abs=1e-12)
        assert brier[b] == pytest.approx(brier_score_loss(y[i], p[i]), abs=1e-12)
    yr = rng.normal(10, 3, n)
    pr = yr + rng.normal(0, 1, n)
    rmse = resampled_metric("regression", "rmse", yr, pr, counts)
    r2 = resampled_metric("regression", "r2", yr, pr, counts)
    for b, i in enumerate(idx):
        assert rmse[b] == pytest.approx(math.sqrt(mean_squared_error(yr[i], pr[i])), abs=1e-12)
        assert r2[b] == pytest.approx(r2_score(yr[i], pr[i]), abs=1e-12)


@pytest.mark.parametrize("metric", ["roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier", "ece"])
def test_compute_metric_equals_sklearn_for_every_classification_metric(metric):
    from retrain_lib.core.metrics import classification_metrics, compute_metric

    rng = np.random.default_rng(11)
    y = (rng.random(300) < 0.35).astype(int)
    p = np.round(np.clip(0.5 * y + 0.6 * rng.random(300) - 0.05, 0, 1), 2)  # ties, exact 0 and 1
    assert compute_metric("classification", metric, y, p) == pytest.approx(
        classification_metrics(y, p)[metric], abs=1e-12
    )
    never = np.zeros(50, dtype=int)
    expected = classification_metrics(never, p[:50])[metric]
    got = compute_metric("classification", metric, never, p[:50])
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2", "mape"])
def test_compute_metric_equals_sklearn_for_every_regression_metric(metric):
    from retrain_lib.core.metrics import compute_metric, regression_metrics

    rng = np.random.default_rng(12)
    y = np.round(rng.normal(10, 4, 200))
    y[:5] = 0  # mape skips zero targets
    pred = y + rng.normal(0, 2, 200)
    assert compute_metric("regression", metric, y, pred) == pytest.approx(regression_metrics(y, pred)[metric], abs=1e-9)
    one = compute_metric("regression", metric, y[5:6], pred[5:6])
    expected = regression_metrics(y[5:6], pred[5:6])[metric]
    assert (math.isnan(one) and math.isnan(expected)) or one == pytest.approx(expected, abs=1e-9)
    assert math.isnan(compute_metric("regression", metric, [], []))


def bootstrap_gate(**kw):
    return Gate(type="bootstrap", metric="roc_auc", **kw)


def test_bootstrap_fails_a_clearly_worse_challenger_and_passes_a_better_one():
    y, good, bad = classification_data(n=1500, seed=4, candidate_noise=0.7, champion_noise=2.0)
    worse = run_gates(
        [bootstrap_gate()], inputs(y_true=y, candidate_scores=bad, champion_scores=good, champion_metrics={}, seed=1)
    )[0]
    assert not worse.passed and worse.observed < 0 and worse.details["upper_bound"] < 0
    assert "the candidate is worse" in worse.reason
    better = run_gates(
        [bootstrap_gate()], inputs(y_true=y, candidate_scores=good, champion_scores=bad, champion_metrics={}, seed=1)
    )[0]
    assert better.passed and better.observed > 0 and better.details["ci_low"] > 0
    # lower-is-better metrics are oriented too: positive = candidate better
    rmse_worse = run_gates(
        [Gate(type="bootstrap", metric="brier")],
        inputs(y_true=y, candidate_scores=bad, champion_scores=good, champion_metrics={}),
    )[0]
    assert not rmse_worse.passed and rmse_worse.observed < 0


def test_bootstrap_margin_tolerates_a_small_loss():
    y, cand, champ = classification_data(n=1500, seed=5)
    champ = champ.copy()
    data = inputs(y_true=y, candidate_scores=0.5 * cand + 0.5 * champ, champion_scores=cand, champion_metrics={})
    strict = run_gates([bootstrap_gate()], data)[0]
    loose = run_gates([bootstrap_gate(margin=0.2)], data)[0]
    assert loose.passed and loose.threshold == -0.2
    assert strict.details["upper_bound"] == loose.details["upper_bound"]  # same seed, same resamples


def test_identical_models_pass_the_bootstrap_gate():
    y, cand, _ = classification_data(n=500, seed=6)
    r = run_gates(
        [bootstrap_gate()], inputs(y_true=y, candidate_scores=cand, champion_scores=cand, champion_metrics={})
    )[0]
    assert r.passed and r.observed == 0 and r.details["upper_bound"] == 0


def test_bootstrap_is_deterministic_with_a_seed():
    y, cand, champ = classification_data(n=800, seed=7)
    a = bootstrap_improvement("classification", "roc_auc", y, cand, champ, n_resamples=300, seed=11)
    b = bootstrap_improvement("classification", "roc_auc", y, cand, champ, n_resamples=300, seed=11)
    c = bootstrap_improvement("classification", "roc_auc", y, cand, champ, n_resamples=300, seed=12)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    data = inputs(y_true=y, candidate_scores=cand, champion_scores=champ, champion_metrics={}, seed=3)
    assert run_gates([bootstrap_gate()], data)[0].to_dict() == run_gates([bootstrap_gate()], data)[0].to_dict()


def test_bootstrap_interval_covers_the_true_difference():
    from sklearn.metrics import roc_auc_score

    # The true AUC difference of the two scoring rules, from one very large sample.
    y, cand, champ = classification_data(n=400_000, seed=100, candidate_noise=1.0, champion_noise=1.3)
    true_diff = roc_auc_score(y, cand) - roc_auc_score(y, champ)
    assert true_diff > 0.02
    covered = 0
    for rep in range(20):
        y, cand, champ = classification_data(n=1000, seed=200 + rep, candidate_noise=1.0, champion_noise=1.3)
        r = run_gates(
            [bootstrap_gate(n_resamples=500)],
            inputs(y_true=y, candidate_scores=cand, champion_scores=champ, champion_metrics={}, seed=rep),
        )[0]
        covered += r.details["ci_low"] <= true_diff <= r.details["ci_high"]
    assert covered >= 16  # nominal 95 %: 19 of 20 expected, 16 allows for chance


def test_bootstrap_is_skipped_without_champion():
    y, cand, _ = classification_data(n=200)
    r = run_gates([bootstrap_gate()], inputs(y_true=y, candidate_scores=cand))[0]
    assert r.passed and r.skipped and "no champion" in r.reason


# -----------------------------------------------------------------------------------------
# Leakage
# -----------------------------------------------------------------------------------------


def test_leakage_catches_a_feature_equal_to_the_target_plus_noise():
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(8)
    n = 1000
    y = (rng.random(n) < 0.4).astype(int)
    train = pd.DataFrame(
        {
            "leak": y + rng.normal(0, 0.05, n),  # target plus noise
            "neg_leak": -y + rng.normal(0, 0.05, n),  # the same, reversed
            "weak": 0.3 * y + rng.normal(0, 1, n),
            "city": rng.choice(["a", "b", "c"], n),
            "label_text": np.where(y == 1, "yes", "no"),  # the target spelled out
            "target": y,
        }
    )
    gate = Gate(type="leakage")
    data = inputs(train=train, target="target", features=["leak", "neg_leak", "weak", "city", "label_text"])
    results = run_gates([gate], data)
    assert {r.slice for r in results} == {"leak", "neg_leak", "label_text"}
    assert not any(r.passed for r in results)
    by = {r.slice: r for r in results}
    assert by["leak"].observed == pytest.approx(roc_auc_score(y, train["leak"]))
    assert by["neg_leak"].observed == pytest.approx(1 - roc_auc_score(y, train["neg_leak"]))
    assert by["label_text"].observed == 1.0
    clean = run_gates([gate], inputs(train=train, target="target", features=["weak", "city"]))
    assert len(clean) == 1 and clean[0].passed and clean[0].slice == "weak"
    assert clean[0].observed == pytest.approx(roc_auc_score(y, train["weak"]))

    # regression: |Spearman|
    yr = rng.normal(0, 1, n)
    reg = pd.DataFrame({"leak": yr + rng.normal(0, 0.01, n), "x": rng.normal(0, 1, n), "target": yr})
    results = run_gates([gate], inputs("regression", train=reg, target="target", features=["leak", "x"]))
    assert [r.slice for r in results] == ["leak"] and not results[0].passed
    assert results[0].observed == pytest.approx(abs(spearmanr(reg["leak"], yr).statistic))


def test_leakage_compared_out_of_fold_reads_every_row_the_candidate_learnt():
    # out of fold the candidate learnt the whole window; the rows the champion saw (``train``)
    # can be none of them, when it never saw any
    rng = np.random.default_rng(9)
    y = (rng.random(400) < 0.4).astype(int)
    rows = pd.DataFrame({"leak": y + rng.normal(0, 0.05, 400), "x": rng.normal(0, 1, 400), "y": y})
    data = inputs(train=rows.iloc[:0], holdout=rows, target="y", features=["leak", "x"], compared_on="cross_fit")
    results = run_gates([Gate(type="leakage")], data)
    assert [(r.slice, r.passed) for r in results] == [("leak", False)]
    held_out = run_gates([Gate(type="leakage")], inputs(train=rows.iloc[:0], holdout=rows, target="y"))[0]
    assert not held_out.passed and "could not be evaluated" in held_out.reason


def test_leakage_without_training_rows_fails_closed():
    r = run_gates([Gate(type="leakage")], inputs(target="y"))[0]
    assert not r.passed and "could not be evaluated" in r.reason and "train" in r.reason


# -----------------------------------------------------------------------------------------
# Fail closed, and the worse challenger is never passed
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate", "data", "words"),
    [
        (
            Gate(type="calibration", metric="brier", max=0.5),
            GateInputs(task="classification", y_true=[0, 1], candidate_scores=[0.2, math.nan]),
            "NaN",
        ),
        (
            Gate(metric="roc_auc", min=0.5, segment="nope"),
            GateInputs(task="classification", y_true=[0, 1], candidate_scores=[0.2, 0.8], holdout=None),
            "holdout",
        ),
        (
            Gate(type="fairness", metric="accuracy", by="nope", max_gap=0.1),
            GateInputs(
                task="classification",
                y_true=[0, 1],
                candidate_scores=[0.2, 0.8],
                holdout=pd.DataFrame({"region": ["a", "b"]}),
            ),
            "'nope' is not in the holdout",
        ),
        (
            Gate(type="bootstrap", metric="roc_auc"),
            GateInputs(task="classification", y_true=[0, 1], candidate_scores=[0.2, 0.8], champion_metrics={}),
            "champion scores",
        ),
        (
            Gate(type="bootstrap", metric="roc_auc"),
            GateInputs(
                task="classification", y_true=[0, 1, 1], candidate_scores=[0.2, 0.8], champion_scores=[0.1, 0.2, 0.3]
            ),
            "2 rows, expected 3",
        ),
        (
            Gate(type="stability", max_change=0.1),
            GateInputs(task="classification", y_true="abc", candidate_scores=object(), champion_metrics={}),
            "",
        ),
    ],
)
def test_any_exception_inside_a_gate_fails_closed(gate, data, words):
    results = run_gates(
        [gate, Gate(type="latency", max_ms=5)], GateInputs(**{**data.__dict__, "latency_ms": {"p95": 1}})
    )
    assert len(results) == 2 and results[1].passed  # the other gates still run
    r = results[0]
    assert not r.passed and r.reason.startswith("gate could not be evaluated: ") and words in r.reason
    assert not all_passed(results)


def test_an_unexpected_error_inside_a_gate_blocks(monkeypatch):
    import retrain_lib.quality.gate_kinds as gates_module

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(gates_module, "compute_metric", boom)
    y, cand, _ = classification_data(n=100)
    [r] = run_gates([Gate(type="calibration", metric="ece", max=1.0)], inputs(y_true=y, candidate_scores=cand))
    assert not r.passed and r.reason == "gate could not be evaluated: disk on fire"


def test_evaluate_gates_fails_closed_on_kinds_that_need_scores():
    results = evaluate_gates(
        [Gate(type="stability", max_change=0.1), Gate(metric="roc_auc", min=0.5, segment="region")],
        {"roc_auc": 0.9},
        None,
    )
    assert [r.passed for r in results] == [False, False]
    assert all("run_gates" in r.reason for r in results)


def test_a_worse_challenger_never_passes_relative_gates():
    rng = np.random.default_rng(9)
    for _ in range(300):
        metric = str(rng.choice(["roc_auc", "r2", "rmse", "brier", "accuracy"]))
        greater = GREATER_IS_BETTER[metric]
        champion = float(rng.uniform(-1, 1) if metric == "r2" else rng.uniform(0.05, 5))
        relative = bool(rng.random() < 0.5)
        bound = float(rng.uniform(0, 0.3))
        allowed = bound * (abs(champion) if relative else 1.0)
        worse_by = allowed + float(rng.uniform(1e-6, 1))  # beyond what the gate tolerates
        candidate = champion - worse_by if greater else champion + worse_by
        for gate in (
            Gate(metric=metric, max_regression=bound, relative=relative),
            Gate(metric=metric, min_improvement=bound, relative=relative),
        ):
            r = run_gates([gate], inputs(candidate_metrics={metric: candidate}, champion_metrics={metric: champion}))
            assert not r[0].passed, (gate, candidate, champion)


def test_measure_latency_ms_counts_the_models_cpu_time_not_the_machines_load():
    import threading
    import time as _time

    class Busy:  # burns about 2 ms of CPU per row
        def predict_proba(self, X):
            end = _time.thread_time() + 0.002
            while _time.thread_time() < end:
                pass
            return np.tile([0.5, 0.5], (len(X), 1))

    class Waits:  # waits 20 ms per row without computing (what contention looks like from inside)
        def predict_proba(self, X):
            _time.sleep(0.02)
            return np.tile([0.5, 0.5], (len(X), 1))

    X = pd.DataFrame({"a": np.arange(50.0)})
    stop = threading.Event()
    hog = threading.Thread(target=lambda: [None for _ in iter(stop.is_set, True)], daemon=True)
    hog.start()  # another thread competing for the GIL and the CPU
    try:
        busy = measure_latency_ms(Busy(), X, n=20, seed=0, warmup=1)
        waits = measure_latency_ms(Waits(), X, n=20, seed=0, warmup=1)
    finally:
        stop.set()
        hog.join(5)
    assert 1.5 <= busy["p50"] <= 10
    assert waits["p95"] < 5  # 20 ms of waiting per row is not the model's cost


def test_an_absolute_gate_the_champion_fails_too_does_not_keep_it_serving():
    """With ``champion_relative_floor`` (config ``adaptation``) a failed min/max, segment,
    fairness or calibration check passes when the champion fails it on the same rows and the
    candidate is not worse; without it, or when the candidate is worse, it fails as before."""
    import numpy as np

    from retrain_lib.core.config_gates import Gate
    from retrain_lib.quality.gate_types import GateInputs
    from retrain_lib.quality.gates import run_gates

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    noise = rng.normal(0, 1, 2000)
    candidate = 1 / (1 + np.exp(-(1.0 * (2 * y - 1) + 1.5 * noise)))
    champion = 1 / (1 + np.exp(-(0.5 * (2 * y - 1) + 1.5 * noise)))  # same noise, weaker signal
    gates = [Gate(metric="roc_auc", min=0.9)]  # candidate ~0.83, champion ~0.69
    base = dict(
        task="classification",
        y_true=y,
        candidate_scores=candidate,
        champion_scores=champion,
        candidate_metrics={"roc_auc": float(_auc(y, candidate))},
        champion_metrics={"roc_auc": float(_auc(y, champion))},
    )
    strict = run_gates(gates, GateInputs(**base))
    assert not strict[0].passed
    floored = run_gates(gates, GateInputs(**base, champion_relative_floor=True))[0]
    assert floored.passed and "the champion fails it too" in floored.reason
    assert floored.champion == pytest.approx(_auc(y, champion))
    # the candidate worse than the failing champion: still fails
    swapped = dict(
        base,
        candidate_scores=champion,
        champion_scores=candidate,
        candidate_metrics=base["champion_metrics"],
        champion_metrics=base["candidate_metrics"],
    )
    assert not run_gates(gates, GateInputs(**swapped, champion_relative_floor=True))[0].passed
    # a champion that passes the gate gives no floor
    good = dict(base, champion_scores=y * 0.9 + 0.05, champion_metrics={"roc_auc": 1.0})
    assert not run_gates(gates, GateInputs(**good, champion_relative_floor=True))[0].passed
    # calibration (lower is better) follows the same rule
    cal = [Gate(type="calibration", metric="ece", max=0.0001)]
    assert not run_gates(cal, GateInputs(**swapped, champion_relative_floor=False))[0].passed


def _auc(y, s):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(y, s)
