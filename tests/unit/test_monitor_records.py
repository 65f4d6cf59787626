"""The records of the monitor path (:mod:`retrain_lib.pipeline.monitor_records`): each one's
``to_xcom()`` is JSON and ``from_xcom`` reads back every field; the keys stay those the monitor
returned as plain dicts (``decide``'s decision, ``monitor_model``'s result, the ``check_model``
task's XCom); a partial (older or hand-written) payload decodes."""

from __future__ import annotations

import dataclasses
import json

import pytest

from retrain_lib.pipeline.monitor_records import MonitorDecision, MonitorResult, MonitorSummary, Signal

DRIFT = Signal("drift", True, 0.5, 0.3, {"features": ["income"]})
PERF = Signal(
    "performance",
    True,
    0.74,
    0.75,
    {"baseline": 0.8, "level": "critical", "labels": 900, "window": ["2026-02-03", "2026-02-07"]},
)
PRED = Signal("prediction_drift", True, 0.21, 0.2, "prediction psi 0.21 >= 0.2")
TOP = {"name": "income", "method": "psi", "score": 0.31, "p_value": None, "threshold": 0.2, "drifted": True}
DRIFT_SUMMARY = {"drifted_share": 0.5, "dataset_drift": True, "drift_share_threshold": 0.3, "top": [TOP]}
PERFORMANCE = {"metric": "roc_auc", "live": 0.74, "baseline": 0.8, "labels": 900, "segments": []}
VALIDATION = {"success": False, "expectations": 12, "failed_expectations": 1, "failed": ["income: nulls"]}

# Every field of every record set to a value other than its default, so a field that
# to_xcom forgets (or from_xcom does not read) changes the round trip.
RECORDS = {
    "signal": PRED,
    "decision": MonitorDecision(
        action="rollback",
        reasons=("performance: roc_auc 0.7400 vs holdout baseline 0.8000", "throttled: ..."),
        throttled=True,
        signals=(DRIFT, PERF),
        rebase={"window": ["2026-02-04", "2026-02-10"], "champion_version": "3"},
        change_day="2026-02-06",
        rollback={"from": "3", "to": "2"},
    ),
    "result": MonitorResult(
        model="credit_default",
        as_of="2026-02-10",
        action="retrain",
        reasons=("data drift: 50% of features drifted",),
        throttled=True,
        signals=(DRIFT, PERF, PRED),
        champion_version="3",
        drift=DRIFT_SUMMARY,
        performance=PERFORMANCE,
        validation=VALIDATION,
        rollback={"champion": "3", "previous": "2", "worse": False},
        serving={"requests": 10, "error_rate": 0.0, "max_error_rate": 0.05},
        drift_report_path="/r/credit_default/2026-02-10/drift_report.html",
        report_error="RuntimeError: boom",
        config_hash="abc123",
        report_path="/r/credit_default/2026-02-10/monitor.json",
        mlflow_run_id="mon1",
    ),
    "summary": MonitorSummary(
        as_of="2026-02-10",
        action="retrain",
        reasons=("data drift: 50% of features drifted",),
        throttled=True,
        champion_version="3",
        drifted_share=0.5,
        dataset_drift=True,
        top_features=(TOP,),
        performance=PERFORMANCE,
        signals=(DRIFT,),
        report_path="/r/credit_default/2026-02-10/monitor.json",
        mlflow_run_id="mon1",
        drift_report_path="/r/credit_default/2026-02-10/drift_report.html",
        validation=VALIDATION,
    ),
}

# The keys the monitor's dicts carried before the records.
XCOM_KEYS = {
    "signal": {"signal", "triggered", "value", "threshold", "detail"},
    "decision": {"action", "reasons", "throttled", "signals", "rebase", "change_day", "rollback"},
    "result": {
        "model",
        "as_of",
        "action",
        "reasons",
        "throttled",
        "signals",
        "champion_version",
        "drift",
        "performance",
        "validation",
        "rollback",
        "serving",
        "drift_report_path",
        "report_error",
        "config_hash",
        "report_path",
        "mlflow_run_id",
    },
    "summary": {
        "as_of",
        "action",
        "reasons",
        "throttled",
        "champion_version",
        "drifted_share",
        "dataset_drift",
        "top_features",
        "performance",
        "signals",
        "report_path",
        "mlflow_run_id",
        "drift_report_path",
        "validation",
    },
}


@pytest.mark.parametrize("name", list(RECORDS))
def test_every_field_of_the_fixture_differs_from_its_default(name):
    """A guard on the fixture: a new field must get a value here, or the round trip below
    would not notice that to_xcom leaves it out."""
    rec = RECORDS[name]
    for f in dataclasses.fields(rec):
        if f.default is not dataclasses.MISSING:
            assert getattr(rec, f.name) != f.default, f"{name}.{f.name} has its default value"


@pytest.mark.parametrize("name", list(RECORDS))
def test_round_trip_through_json_keeps_every_field(name):
    rec = RECORDS[name]
    payload = rec.to_xcom()
    wire = json.loads(json.dumps(payload, allow_nan=False))  # what XCom stores: strict JSON
    assert type(rec).from_xcom(wire) == rec
    assert set(payload) == XCOM_KEYS[name]


def test_a_decision_leaves_out_what_did_not_apply_as_before():
    """``rebase``, ``change_day`` and ``rollback`` were keys only of the decisions that had them."""
    plain = MonitorDecision("healthy", ("no trigger fired",), signals=(DRIFT,))
    assert plain.to_xcom() == {
        "action": "healthy",
        "reasons": ["no trigger fired"],
        "throttled": False,
        "signals": [{"signal": "drift", "triggered": True, "value": 0.5, "threshold": 0.3, "detail": DRIFT.detail}],
    }
    assert MonitorDecision.from_xcom(plain.to_xcom()) == plain


def test_with_signal_appends_the_signal_and_its_reason():
    d = MonitorDecision("healthy", ("no trigger fired",), signals=(DRIFT,))
    assert d.with_signal(PRED).signals == (DRIFT, PRED) and d.with_signal(PRED).reasons == d.reasons
    assert d.with_signal(PRED, "prediction drift (reported)").reasons == (
        "no trigger fired",
        "prediction drift (reported)",
    )
    assert d.signal("drift") is DRIFT and d.signal("age") is None


def test_the_result_report_is_monitor_json_and_its_summary_the_check_model_xcom():
    result = RECORDS["result"]
    assert result.to_xcom() == {
        **result.report(),
        "report_path": result.report_path,
        "mlflow_run_id": result.mlflow_run_id,
    }
    assert set(result.report()) == XCOM_KEYS["result"] - {"report_path", "mlflow_run_id"}
    summary = result.summary()
    assert summary.to_xcom() == {
        "as_of": "2026-02-10",
        "action": "retrain",
        "reasons": list(result.reasons),
        "throttled": True,
        "champion_version": "3",
        "drifted_share": 0.5,
        "dataset_drift": True,
        "top_features": [TOP],
        "performance": PERFORMANCE,
        "signals": [s.to_xcom() for s in result.signals],
        "report_path": result.report_path,
        "mlflow_run_id": "mon1",
        "drift_report_path": result.drift_report_path,
        "validation": VALIDATION,
    }
    no_drift = dataclasses.replace(result, drift=None).summary()
    assert (no_drift.drifted_share, no_drift.dataset_drift, no_drift.top_features) == (None, None, ())


def test_partial_payloads_decode_with_defaults():
    """Payloads written by hand (tests, older runs) carry only some keys."""
    assert Signal.from_xcom({"signal": "drift"}) == Signal("drift", False)
    d = MonitorDecision.from_xcom({"action": "retrain", "signals": [{"signal": "drift", "triggered": True}]})
    assert d.signals == (Signal("drift", True),) and d.rebase is None and d.reasons == ()
    r = MonitorResult.from_xcom({"model": "m", "as_of": "2026-02-10", "action": "healthy"})
    assert r.drift is None and r.signals == () and r.mlflow_run_id is None
    assert MonitorSummary.from_xcom({"as_of": "2026-02-10", "action": "healthy"}).top_features == ()
    with pytest.raises(KeyError, match="action"):
        MonitorSummary.from_xcom({"as_of": "2026-02-10"})
