"""The calibration gate's ``debias``: the ECE a perfectly calibrated model shows on the same
scores and rows is sampling noise, not miscalibration (on 350 rows it is about 0.05)."""

from __future__ import annotations

import numpy as np

from retrain_lib.core.config_gates import Gate
from retrain_lib.core.metrics import expected_calibration_error
from retrain_lib.quality.gate_types import GateInputs
from retrain_lib.quality.gates import run_gates
from retrain_lib.stats.gate_measures import calibrated_baseline


def _calibrated(n: int, seed: int):
    rng = np.random.default_rng(seed)
    p = rng.beta(1.2, 4.0, n)  # a credit model's scores: mostly low
    return (rng.random(n) < p).astype(int), p


def _gate_inputs(y, p) -> GateInputs:
    return GateInputs(task="classification", y_true=y, candidate_scores=p, champion_scores=None)


def test_the_noise_of_a_calibrated_model_shrinks_with_the_rows():
    small = calibrated_baseline("ece", _calibrated(350, 0)[1])
    large = calibrated_baseline("ece", _calibrated(100_000, 0)[1], draws=20)
    assert 0.03 < small < 0.08  # what a raw 'max 0.05' gate judges on a day of 100 rows x 14 x 25%
    assert large < 0.005


def test_a_calibrated_model_on_few_rows_passes_and_a_miscalibrated_one_still_fails():
    raw_fails = 0
    for seed in range(20):
        y, p = _calibrated(350, seed)
        raw = expected_calibration_error(y, p)
        [plain] = run_gates([Gate(type="calibration", metric="ece", max=0.05)], _gate_inputs(y, p))
        [fair] = run_gates([Gate(type="calibration", metric="ece", max=0.05, debias=True)], _gate_inputs(y, p))
        raw_fails += not plain.passed
        assert fair.observed < raw and fair.passed, fair.reason
        assert "of a calibrated model on these 350 rows" in fair.reason
        # the same model, its scores 0.25 too high: miscalibrated, and the gate says so
        [off] = run_gates(
            [Gate(type="calibration", metric="ece", max=0.05, debias=True)],
            _gate_inputs(y, np.clip(p + 0.25, 0, 1)),
        )
        assert not off.passed, off.reason
    assert raw_fails >= 5  # the raw ECE fails a calibrated model often on 350 rows
