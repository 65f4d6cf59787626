"""The records of the retrain path (:mod:`retrain_lib.pipeline.records`): each one's
``to_xcom()`` is JSON and ``from_xcom`` reads back every field; the XCom keys stay those the
steps returned as plain dicts; a partial (older or hand-written) payload decodes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from retrain_lib.pipeline.records import (
    DeployOutcome,
    Evaluation,
    GateReport,
    Registered,
    Rejection,
    Snapshot,
    SnapshotValidation,
    TrainedRun,
)
from retrain_lib.quality.gate_types import GateResult
from retrain_lib.store.registry import AliasMove

PASSED = GateResult("roc_auc", "roc_auc", 0.7, 0.81, 0.8, 0.01, True, "roc_auc 0.81 >= min 0.7")
FAILED = GateResult(
    "recall_min",
    "recall",
    0.9,
    0.84,
    0.91,
    -0.07,
    False,
    "recall 0.84 < min 0.9 on region=north",
    slice="region=north",
    kind="segment",
    skipped=True,
    details={"rows": 120, "bins": [0.1, 0.2]},
)
GAIN = {
    "metric": "roc_auc",
    "candidate": 0.81,
    "champion": 0.8,
    "mean": 0.01,
    "lower": -0.002,
    "confidence": 0.95,
    "rows": 900,
    "significant": False,
}

# Every field of every record set to a value other than its default, so a field that
# to_xcom forgets (or from_xcom does not read) changes the round trip.
RECORDS = {
    "snapshot": Snapshot(
        model="credit_default",
        as_of="2026-01-30",
        start="2026-01-03",
        end="2026-01-30",
        fingerprint="abc123",
        rows=4200,
        labelled_rows=3900,
        files=28,
        problems=("feature 'age' is 60% missing (> 50%)",),
        dvc={"path": "models/credit_default/train.parquet", "md5": "m", "rev": "r", "remote": "file:///x"},
        validation=SnapshotValidation(
            expectations=12, failed_expectations=2, mlflow_run_id="v1", quarantine="/q/credit_default/2026-01-30"
        ),
    ),
    "trained": TrainedRun(
        run_id="r1",
        model_uri="models:/m-1",
        metrics={"roc_auc": 0.81, "brier": 0.12},
        reused=True,
        selection={"chosen": "since_change", "change_day": "2026-01-20", "candidates": []},
        selection_model_uri="models:/m-2",
    ),
    "evaluation": Evaluation(
        candidate={"roc_auc": 0.81},
        champion={"roc_auc": 0.8},
        champion_version="3",
        holdout_rows=900,
        candidate_se={"roc_auc": 0.004, "brier": None},
        compared_on="cross_fit",
        candidate_day_sd={"roc_auc": 0.012},
        compared_days=7,
    ),
    "gates": GateReport(
        passed=False,
        outcome="no_gain",
        gates_passed=True,
        follow_up=True,
        gain=GAIN,
        results=(PASSED, FAILED),
        champion_version="3",
    ),
    "registered": Registered(version="4", run_id="r1"),
    "deployed": DeployOutcome(
        version="4",
        mode="canary",
        moves=(AliasMove("challenger", None, "4"),),
        reevaluated=({"champion_was": "3", "champion_now": "5", "passed": False},),
        champion="5",
        rejected=True,
        failed=("roc_auc 0.79 < max_regression bound 0.8",),
    ),
    "rejection": Rejection(outcome="no_gain", failed=("x",), run_id="r1", gain=GAIN, reason="not better"),
}

# The keys each step returned as a plain dict before the records (what XCom, the fleet page
# and the tests that pull XCom read).
XCOM_KEYS = {
    "snapshot": {
        "model",
        "as_of",
        "start",
        "end",
        "fingerprint",
        "rows",
        "labelled_rows",
        "files",
        "problems",
        "valid",
        "dvc",
        "validation",
    },
    "trained": {"run_id", "model_uri", "metrics", "reused", "selection", "selection_model_uri"},
    "evaluation": {
        "candidate",
        "champion",
        "champion_version",
        "holdout_rows",
        "candidate_se",
        "compared_on",
        "candidate_day_sd",
        "compared_days",
    },
    "gates": {"follow_up", "passed", "gates_passed", "outcome", "gain", "results", "failed", "champion_version"},
    "registered": {"version", "run_id"},
    "deployed": {"mode", "version", "moves", "reevaluated", "champion", "rejected", "failed"},
    "rejection": {"rejected", "outcome", "failed", "gain", "reason", "run_id"},
}


@pytest.mark.parametrize("name", list(RECORDS))
def test_every_field_of_the_fixture_differs_from_its_default(name):
    """A guard on the fixture: a new field must get a value here, or the round trip below
    would not notice that to_xcom leaves it out."""
    rec = RECORDS[name]
    for f in dataclasses.fields(rec):
        if f.default is not dataclasses.MISSING:
            assert getattr(rec, f.name) != f.default, f"{name}.{f.name} has its default value"
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(rec, f.name) != f.default_factory(), f"{name}.{f.name} has its default value"


@pytest.mark.parametrize("name", list(RECORDS))
def test_round_trip_through_json_keeps_every_field(name):
    rec = RECORDS[name]
    payload = rec.to_xcom()
    wire = json.loads(json.dumps(payload, allow_nan=False))  # what XCom stores: strict JSON
    assert type(rec).from_xcom(wire) == rec
    assert set(payload) == XCOM_KEYS[name]


def test_snapshot_validity_is_its_problems():
    snap = RECORDS["snapshot"]
    assert snap.to_xcom()["valid"] is False and snap.valid is False
    ok = dataclasses.replace(snap, problems=())
    assert ok.valid and ok.to_xcom()["valid"] is True and Snapshot.from_xcom(ok.to_xcom()) == ok


def test_optional_parts_are_left_out_of_the_payload_as_before():
    """A snapshot without DVC version or validation, a run without selection, an evaluation
    without standard errors, a deployment and a rejection of the plain kind: the keys the
    steps never wrote in those cases stay absent."""
    snap = Snapshot("m", "2026-01-30", "2026-01-03", "2026-01-30", "f", rows=1, labelled_rows=1, files=1)
    assert "dvc" not in snap.to_xcom() and "validation" not in snap.to_xcom()
    trained = TrainedRun("r", "models:/m-1", {"rmse": 4.0})
    assert "selection" not in trained.to_xcom() and "selection_model_uri" not in trained.to_xcom()
    assert "candidate_se" not in Evaluation({"rmse": 4.0}).to_xcom()
    deployed = DeployOutcome("2", mode="direct", moves=(AliasMove("champion", "1", "2"),), champion="2")
    assert set(deployed.to_xcom()) == {"mode", "version", "moves", "reevaluated", "champion"}
    assert deployed.champion_move == AliasMove("champion", "1", "2")
    rejected = Rejection(failed=("r2 0.41 < min 0.999",), run_id="r")
    assert rejected.to_xcom() == {
        "rejected": True,
        "outcome": "rejected",
        "failed": ["r2 0.41 < min 0.999"],
        "run_id": "r",
    }


def test_gate_report_failed_is_the_results_that_did_not_pass_and_nan_becomes_none():
    nan = dataclasses.replace(FAILED, observed=float("nan"))
    report = GateReport(passed=False, outcome="rejected", gates_passed=False, results=(PASSED, nan))
    assert report.failed == (nan,)
    payload = report.to_xcom()
    assert payload["failed"] == [payload["results"][1]] and payload["failed"][0]["observed"] is None
    json.dumps(payload, allow_nan=False)
    assert GateReport.from_xcom(payload).failed[0].observed is None


def test_partial_payloads_decode_with_defaults():
    """Payloads written by hand (tests, older runs) carry only some keys."""
    gates = GateReport.from_xcom({"passed": True, "results": [{"gate": "r2_min", "passed": True, "reason": "ok"}]})
    assert gates.results[0].slice == "all" and gates.results[0].metric is None and gates.outcome is None
    assert DeployOutcome.from_xcom({"version": "1", "moves": []}).mode == "direct"
    assert Rejection.from_xcom({"rejected": True, "failed": "one reason"}).failed == ("one reason",)
    assert Evaluation.from_xcom({"candidate": {"rmse": 1.0}}).champion is None
    with pytest.raises(KeyError, match="run_id"):
        TrainedRun.from_xcom({"model_uri": "models:/m-1"})
