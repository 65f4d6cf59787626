"""Slack alert payloads (exact Block Kit dicts for realistic inputs), severity per config,
de-duplication in the platform database and delivery with retries (no Airflow here)."""

from __future__ import annotations

import logging

import pytest

from retrain_lib.core.config_alerts import Alerts
from retrain_lib.pipeline import alert_delivery, alert_links, alert_payload, alerts
from retrain_lib.pipeline.records import DeployOutcome, Evaluation, GateReport

AIRFLOW = "http://airflow.example:8080"
MLFLOW = "http://mlflow.example:5000"
RUN = "manual__2026-02-05T00:00:00+00:00"
RUN_Q = "manual__2026-02-05T00%3A00%3A00%2B00%3A00"

GATES = {
    "passed": False,
    "champion_version": "3",
    "results": [
        {
            "gate": "roc_auc_min",
            "metric": "roc_auc",
            "threshold": 0.7,
            "observed": 0.8123,
            "champion": 0.8011,
            "delta": 0.0112,
            "passed": True,
            "reason": "roc_auc 0.8123 >= min 0.7",
            "slice": "all",
            "kind": "metric",
            "skipped": False,
            "details": {},
        },
        {
            "gate": "recall_min",
            "metric": "recall",
            "threshold": 0.9,
            "observed": 0.84,
            "champion": 0.91,
            "delta": -0.07,
            "passed": False,
            "reason": "recall 0.8400 < min 0.9 on region=north",
            "slice": "region=north",
            "kind": "metric",
            "skipped": False,
            "details": {},
        },
        {
            "gate": "latency_p95_ms",
            "metric": None,
            "threshold": 100.0,
            "observed": 131.27,
            "champion": None,
            "delta": None,
            "passed": False,
            "reason": "p95 131.3 ms > max 100 ms",
            "slice": "all",
            "kind": "latency",
            "skipped": False,
            "details": {},
        },
        {
            "gate": "calibration_ece",
            "metric": "ece",
            "threshold": None,
            "observed": None,
            "champion": None,
            "delta": None,
            "passed": False,
            "reason": "gate could not be evaluated: no scores",
            "slice": "all",
            "kind": "calibration",
            "skipped": False,
            "details": {},
        },
    ],
}


def full_links(task_id: str = "reject_candidate") -> alert_payload.Links:
    return alert_payload.Links(
        task_log=alert_links.task_log_url(AIRFLOW, "credit_default__retrain", RUN, task_id),
        mlflow_run=alert_links.mlflow_run_url(MLFLOW, "abc123", "7"),
        drift_report=alert_links.mlflow_run_url(MLFLOW, "mon9", "7", "monitor/drift_report.html"),
    )


def test_link_urls():
    assert alert_links.task_log_url(AIRFLOW + "/", "m__retrain", RUN, "check_gates") == (
        f"{AIRFLOW}/dags/m__retrain/runs/{RUN_Q}/tasks/check_gates"
    )
    assert alert_links.task_log_url(None, "d", "r", "t") is None
    assert alert_links.mlflow_run_url(MLFLOW, "abc", "7") == f"{MLFLOW}/#/experiments/7/runs/abc"
    assert alert_links.mlflow_run_url(MLFLOW, "abc") == f"{MLFLOW}/#/runs/abc"
    assert alert_links.mlflow_run_url(MLFLOW, "abc", "7", "monitor/drift_report.html") == (
        f"{MLFLOW}/#/experiments/7/runs/abc/artifactPath/monitor/drift_report.html"
    )
    assert alert_links.mlflow_run_url(MLFLOW, None) is None


def test_the_runbook_link_comes_last_in_both_forms():
    links = alert_payload.Links(task_log="http://af/t", runbook=alert_links.runbook_url(AIRFLOW + "/", "rollback"))
    assert links.runbook == f"{AIRFLOW}/retrain/runbooks/rollback"
    assert links.plain() == f"task log http://af/t, runbook {AIRFLOW}/retrain/runbooks/rollback"
    assert links.mrkdwn() == f"<http://af/t|task log> · <{AIRFLOW}/retrain/runbooks/rollback|runbook>"
    assert alert_links.runbook_url(None, "rollback") is None


def test_latest_monitor_report_is_the_newest_check_up_to_the_day():
    records = [
        {
            "seq": 1,
            "event": "monitor",
            "as_of": "2026-02-01",
            "details": {"mlflow_run_id": "a", "drift_report": "/r/1"},
        },
        {"seq": 2, "event": "gates", "as_of": "2026-02-02", "details": {}},
        {
            "seq": 3,
            "event": "monitor",
            "as_of": "2026-02-03",
            "details": {"mlflow_run_id": "b", "drift_report": "/r/3"},
        },
        {
            "seq": 4,
            "event": "monitor",
            "as_of": "2026-02-09",
            "details": {"mlflow_run_id": "c", "drift_report": "/r/9"},
        },
        {"seq": 5, "event": "monitor", "as_of": "2026-02-04", "details": {"mlflow_run_id": "d", "drift_report": None}},
    ]
    assert alert_links.latest_monitor_report(records, "2026-02-05") == {
        "as_of": "2026-02-03",
        "mlflow_run_id": "b",
        "drift_report": "/r/3",
    }
    assert alert_links.latest_monitor_report(records)["mlflow_run_id"] == "c"
    assert alert_links.latest_monitor_report(records, "2026-01-01") is None


def test_gate_failure_payload():
    a = alerts.gate_failure(
        "credit_default", GateReport.from_xcom(GATES), run_id="abc123", as_of="2026-02-05", links=full_links()
    )
    assert (a.kind, a.model, a.severity) == ("gate_failure", "credit_default", "yellow")
    assert a.key == "gate_failure|credit_default|calibration_ece,latency_p95_ms,recall_min[region=north]"
    log_url = f"{AIRFLOW}/dags/credit_default__retrain/runs/{RUN_Q}/tasks/reject_candidate"
    report = f"{MLFLOW}/#/experiments/7/runs/mon9/artifactPath/monitor/drift_report.html"
    assert a.payload == {
        "text": ":large_yellow_circle: credit_default candidate rejected: "
        "gate `recall_min[region=north]` failed: 0.84 < 0.9 (champion 0.91, -0.07); "
        "gate `latency_p95_ms` failed: 131.3 > 100; "
        "gate `calibration_ece` failed: gate could not be evaluated: no scores; "
        f"MLflow run {MLFLOW}/#/experiments/7/runs/abc123, drift report {report}, task log {log_url}",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": ":large_yellow_circle: Gate failure: credit_default candidate rejected",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*3 of 4 gate checks failed*: the candidate (MLflow run `abc123`) is not promoted; champion v3 stays.",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "• gate `recall_min[region=north]` failed: 0.84 < 0.9 (champion 0.91, -0.07)\n"
                    "• gate `latency_p95_ms` failed: 131.3 > 100\n"
                    "• gate `calibration_ece` failed: gate could not be evaluated: no scores",
                },
            },
        ],
        "attachments": [
            {
                "color": "#daa038",
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": "severity *yellow* · model `credit_default` · as of 2026-02-05"},
                            {
                                "type": "mrkdwn",
                                "text": f"<{MLFLOW}/#/experiments/7/runs/abc123|MLflow run> · "
                                f"<{report}|drift report> · <{log_url}|task log>",
                            },
                        ],
                    }
                ],
            }
        ],
    }


def test_gate_failure_before_any_champion_and_a_long_list():
    results = [
        {
            "gate": "r2_min",
            "threshold": 0.999,
            "observed": 0.61 + i / 100,
            "champion": None,
            "delta": None,
            "passed": False,
            "reason": "r2 below min",
            "slice": f"store_type=s{i}",
        }
        for i in range(10)
    ]
    a = alerts.gate_failure(
        "daily_demand",
        GateReport.from_xcom({"passed": False, "champion_version": None, "results": results}),
        links=alert_payload.Links(),
    )
    assert a.payload["blocks"][1]["text"]["text"] == (
        "*10 of 10 gate checks failed*: the candidate is not registered (no champion yet)."
    )
    lines = a.payload["blocks"][2]["text"]["text"].split("\n")
    assert lines[0] == "• gate `r2_min[store_type=s0]` failed: 0.61 < 0.999"
    assert len(lines) == alert_payload.MAX_LISTED + 1 and lines[-1] == "… and 2 more"
    assert a.payload["text"].endswith("; and 7 more")
    assert a.payload["attachments"][0]["blocks"][0]["elements"][1]["text"] == "no links"


VALIDATION_FAILURES = [
    {
        "check": "between",
        "expectation": "expect_column_values_to_be_between",
        "column": "income",
        "kwargs": {"column": "income", "min_value": 0, "max_value": 10000000},
        "success": False,
        "observed_value": None,
        "element_count": 11200,
        "unexpected_count": 20,
        "unexpected_percent": 0.17857,
        "partial_unexpected_list": [-5.0] * 20,
        "rows": [
            {"application_id": "a-1", "income": -5.0, "region": "north"},
            {"application_id": "a-2", "income": -5.0, "region": "south"},
            {"application_id": "a-3", "income": -5.0, "region": "east"},
            {"application_id": "a-4", "income": -5.0, "region": "west"},
        ],
        "explain": "income: expect_column_values_to_be_between(min=0, max=10000000): 20 rows (0.18%) unexpected, "
        "e.g. -5.0",
    },
    {
        "check": "in_set",
        "expectation": "expect_column_values_to_be_in_set",
        "column": "region",
        "kwargs": {"column": "region", "value_set": ["north", "south", "east", "west"]},
        "success": False,
        "observed_value": None,
        "unexpected_count": 1,
        "unexpected_percent": 0.0089,
        "partial_unexpected_list": ["atlantis"],
        "rows": [{"application_id": "a-26", "income": 41000.0, "region": "atlantis"}],
        "explain": "region: expect_column_values_to_be_in_set(values=[north, south, east, west]): 1 row (0.01%) "
        "unexpected, e.g. atlantis",
    },
    {
        "check": "row_count",
        "expectation": "expect_table_row_count_to_be_between",
        "column": None,
        "kwargs": {"min_value": 2800, "max_value": 2800000},
        "success": False,
        "observed_value": 2750,
        "rows": [],
        "explain": "table: expect_table_row_count_to_be_between(min=2800, max=2800000): observed 2750",
    },
]


def test_validation_failure_payload_of_a_retrain():
    problems = [f["explain"] for f in VALIDATION_FAILURES] + ["only 80 labelled rows (need at least 100)"]
    links = alert_payload.Links(
        task_log="http://af/log",
        mlflow_run="http://ml/run",
        drift_report_path="/state/reports/credit_default/2026-02-03/drift_report.html",
    )
    a = alerts.validation_failure(
        "credit_default",
        failures=VALIDATION_FAILURES,
        problems=problems,
        window=["2026-01-08", "2026-02-04"],
        rows=11200,
        quarantine="/state/quarantine/credit_default/2026-02-04",
        as_of="2026-02-04",
        links=links,
    )
    assert (a.kind, a.severity) == ("validation_failure", "red")
    assert a.key == (
        "validation_failure:retrain|credit_default|income:expect_column_values_to_be_between,"
        "only # labelled rows (need at least #),region:expect_column_values_to_be_in_set,"
        "table:expect_table_row_count_to_be_between"
    )
    assert a.payload == {
        "text": ":red_circle: credit_default: data validation failed (retrain): "
        "income: expect_column_values_to_be_between(min=0, max=10000000): 20 rows (0.18%) unexpected, "
        "e.g. -5.0; region: expect_column_values_to_be_in_set(values=[north, south, east, west]): 1 row "
        "(0.01%) unexpected, e.g. atlantis; table: expect_table_row_count_to_be_between(min=2800, "
        "max=2800000): observed 2750; MLflow run http://ml/run, drift report "
        "/state/reports/credit_default/2026-02-03/drift_report.html, task log http://af/log",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": ":red_circle: Data validation failed: credit_default (retrain)",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*4 check(s) failed* on 2026-01-08..2026-02-04 (11200 rows): the retrain stopped before training; "
                    "batch quarantined in `/state/quarantine/credit_default/2026-02-04`.",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "• income: expect_column_values_to_be_between(min=0, max=10000000): 20 rows (0.18%) unexpected, "
                    "e.g. -5.0\n"
                    "• region: expect_column_values_to_be_in_set(values=[north, south, east, west]): 1 row (0.01%) "
                    "unexpected, e.g. atlantis\n"
                    "• table: expect_table_row_count_to_be_between(min=2800, max=2800000): observed 2750\n"
                    "• only 80 labelled rows (need at least 100)",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Offending rows*\n"
                    "`income` expect_column_values_to_be_between:\n"
                    '```{"application_id": "a-1", "income": -5.0, "region": "north"}\n'
                    '{"application_id": "a-2", "income": -5.0, "region": "south"}\n'
                    '{"application_id": "a-3", "income": -5.0, "region": "east"}```\n'
                    "`region` expect_column_values_to_be_in_set:\n"
                    '```{"application_id": "a-26", "income": 41000.0, "region": "atlantis"}```',
                },
            },
        ],
        "attachments": [
            {
                "color": "#a30200",
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": "severity *red* · model `credit_default` · as of 2026-02-04"},
                            {
                                "type": "mrkdwn",
                                "text": "<http://ml/run|MLflow run> · drift report "
                                "`/state/reports/credit_default/2026-02-03/drift_report.html` · "
                                "<http://af/log|task log>",
                            },
                        ],
                    }
                ],
            }
        ],
    }


def test_validation_failure_of_the_monitor_says_it_carried_on():
    a = alerts.validation_failure(
        "credit_default",
        stage="monitor",
        problems=["income: 3 rows <0"],
        window=["2026-02-08", "2026-02-10"],
        as_of="2026-02-10",
    )
    assert a.payload["blocks"][0]["text"]["text"] == ":red_circle: Data validation failed: credit_default (monitor)"
    assert a.payload["blocks"][1]["text"]["text"] == (
        "*1 check(s) failed* on 2026-02-08..2026-02-10: the monitor carried on (drift and performance were still "
        "checked)."
    )
    assert a.payload["blocks"][2]["text"]["text"] == "• income: 3 rows &lt;0"  # Slack control characters escaped
    assert len(a.payload["blocks"]) == 3  # no offending rows to show
    assert a.key == "validation_failure:monitor|credit_default|income: # rows <#"  # counts change daily


MONITOR = {
    "model": "credit_default",
    "as_of": "2026-02-10",
    "action": "retrain",
    "throttled": False,
    "champion_version": "1",
    "reasons": ["data drift: 38% of features drifted (>= 25%)"],
    "drift": {
        "drifted_share": 0.375,
        "drift_share_threshold": 0.25,
        "dataset_drift": True,
        "top": [
            {"name": "income", "method": "ks", "score": 0.21, "p_value": 1.2e-09, "threshold": 0.001, "drifted": True},
            {
                "name": "credit_utilization",
                "method": "psi",
                "score": 0.4123,
                "p_value": None,
                "threshold": 0.2,
                "drifted": True,
            },
            {"name": "age", "method": "psi", "score": 0.05, "p_value": None, "threshold": 0.2, "drifted": False},
        ],
    },
    "mlflow_run_id": "mon9",
    "drift_report_path": "/state/reports/credit_default/2026-02-10/drift_report.html",
}


def test_drift_payload():
    report = f"{MLFLOW}/#/experiments/7/runs/mon9/artifactPath/monitor/drift_report.html"
    links = alert_payload.Links(
        task_log="http://af/check_model", mlflow_run=f"{MLFLOW}/#/experiments/7/runs/mon9", drift_report=report
    )
    a = alerts.drift("credit_default", MONITOR, links=links)
    assert (a.kind, a.severity, a.key) == ("drift", "yellow", "drift|credit_default|credit_utilization,income")
    assert a.payload == {
        "text": ":large_yellow_circle: credit_default: drift, retrain: `income` ks p-value 1.2e-09 <= 0.001; "
        "`credit_utilization` psi 0.4123 >= 0.2; "
        f"MLflow run {MLFLOW}/#/experiments/7/runs/mon9, drift report {report}, task log http://af/check_model",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": ":large_yellow_circle: Drift: credit_default → retrain",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*37.5% of features drifted* (>= 25%) on the current window vs the champion's training data: "
                    "*retrain*; champion v1.",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Top drifted features*\n• `income` ks p-value 1.2e-09 <= 0.001\n"
                    "• `credit_utilization` psi 0.4123 >= 0.2",
                },
            },
        ],
        "attachments": [
            {
                "color": "#daa038",
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": "severity *yellow* · model `credit_default` · as of 2026-02-10"},
                            {
                                "type": "mrkdwn",
                                "text": f"<{MLFLOW}/#/experiments/7/runs/mon9|MLflow run> · <{report}|drift report> · "
                                "<http://af/check_model|task log>",
                            },
                        ],
                    }
                ],
            }
        ],
    }


def test_drift_from_a_ledger_record_details():
    details = {
        "action": "retrain",
        "drifted_share": 0.5,
        "top": [
            {"name": "region", "method": "chi2", "score": 40.1, "p_value": 0.0001, "threshold": 0.01, "drifted": True}
        ],
    }
    a = alerts.drift("credit_default", {**details, "as_of": "2026-02-11"})
    assert a.payload["blocks"][1]["text"]["text"] == (
        "*50% of features drifted* on the current window vs the champion's training data: *retrain*."
    )
    assert a.payload["blocks"][2]["text"]["text"] == "*Top drifted features*\n• `region` chi2 p-value 0.0001 <= 0.01"


LINKS = alert_payload.Links(task_log="http://af/t", mlflow_run="http://ml/r")
ATTACHMENT_LINKS = {"type": "mrkdwn", "text": "<http://ml/r|MLflow run> · <http://af/t|task log>"}


def test_promotion_payload():
    deployed = {
        "mode": "direct",
        "version": "4",
        "reevaluated": [],
        "champion": "4",
        "moves": [
            {"alias": "champion", "from": "3", "to": "4"},
            {"alias": "previous-champion", "from": "2", "to": "3"},
        ],
    }
    evaluation = {"candidate": {"roc_auc": 0.83, "brier": 0.12}, "champion": {"roc_auc": 0.81, "brier": 0.13}}
    a = alerts.promotion(
        "credit_default",
        DeployOutcome.from_xcom(deployed),
        evaluation=Evaluation.from_xcom(evaluation),
        reason="data drift",
        as_of="2026-02-10",
        links=LINKS,
    )
    assert (a.kind, a.severity, a.key) == ("promotion", "green", "promotion|credit_default|4")
    assert a.payload == {
        "text": ":large_green_circle: credit_default: v4 promoted to champion (was v3); MLflow run http://ml/r, "
        "task log http://af/t",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": ":large_green_circle: Promoted: credit_default v4",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*v4 is now champion*, replacing v3 (deploy mode direct).\nWhy: data drift",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Holdout metrics*\n• brier 0.12 (was 0.13, -0.01)\n• roc_auc 0.83 (was 0.81, +0.02)",
                },
            },
        ],
        "attachments": [
            {
                "color": "#2eb886",
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": "severity *green* · model `credit_default` · as of 2026-02-10"},
                            ATTACHMENT_LINKS,
                        ],
                    }
                ],
            }
        ],
    }


def test_rollback_payload():
    result = {
        "rolled_back": True,
        "from": "4",
        "to": "3",
        "reason": "rollback: champion v4 roc_auc 0.7012 vs previous-champion v3 0.8011: 12.5% worse",
    }
    a = alerts.rollback("credit_default", result, as_of="2026-02-20", links=LINKS)
    assert (a.kind, a.severity, a.key) == ("rollback", "red", "rollback|credit_default|4->3")
    assert a.payload == {
        "text": ":red_circle: credit_default: rolled back from v4 to v3: rollback: champion v4 roc_auc 0.7012 vs "
        "previous-champion v3 0.8011: 12.5% worse; MLflow run http://ml/r, task log http://af/t",
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "emoji": True, "text": ":red_circle: Rollback: credit_default v4 → v3"},
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*champion moved back from v4 to v3*; v4 is tagged `retrain.rolled_back=true`.\n"
                    "Why: rollback: champion v4 roc_auc 0.7012 vs previous-champion v3 0.8011: 12.5% worse",
                },
            },
        ],
        "attachments": [
            {
                "color": "#a30200",
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": "severity *red* · model `credit_default` · as of 2026-02-20"},
                            ATTACHMENT_LINKS,
                        ],
                    }
                ],
            }
        ],
    }


def test_rollout_decision_payloads():
    started = {"model": "credit_default", "challenger": "5", "champion": "4", "mode": "canary", "as_of": "2026-02-21"}
    up = alerts.rollout_decision(
        "credit_default",
        "promote",
        started,
        {"promoted": True, "version": "5", "champion": "5"},
        reason="shadow and every canary step passed",
        as_of="2026-02-21",
        links=LINKS,
    )
    assert (up.kind, up.severity, up.key) == ("promotion", "green", "promotion|credit_default|rollout:5:promote")
    assert up.payload == {
        "text": ":large_green_circle: credit_default: canary rollout promoted v5 (was v4); MLflow run http://ml/r, "
        "task log http://af/t",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": ":large_green_circle: Rollout promoted: credit_default v5",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*challenger v5 is now champion* after its canary rollout, replacing v4.\n"
                    "Why: shadow and every canary step passed",
                },
            },
        ],
        "attachments": [
            {
                "color": "#2eb886",
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {
                                "type": "mrkdwn",
                                "text": "severity *green* · model `credit_default` · as of 2026-02-21 · mode canary",
                            },
                            ATTACHMENT_LINKS,
                        ],
                    }
                ],
            }
        ],
    }
    down = alerts.rollout_decision(
        "credit_default",
        "rollback",
        started,
        {"promoted": False, "version": "5", "champion": "4"},
        reason="canary 20%: challenger worse (p=0.003)",
        as_of="2026-02-21",
        links=LINKS,
    )
    assert (down.kind, down.severity, down.key) == ("rollback", "red", "rollback|credit_default|rollout:5:rollback")
    assert down.payload == {
        "text": ":red_circle: credit_default: canary rollout of v5 rolled back: canary 20%: challenger worse "
        "(p=0.003); MLflow run http://ml/r, task log http://af/t",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": ":red_circle: Rollout rolled back: credit_default v5",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*challenger v5 was rolled back* during its canary rollout; champion v4 keeps all traffic.\n"
                    "Why: canary 20%: challenger worse (p=0.003)",
                },
            },
        ],
        "attachments": [
            {
                "color": "#a30200",
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {
                                "type": "mrkdwn",
                                "text": "severity *red* · model `credit_default` · as of 2026-02-21 · mode canary",
                            },
                            ATTACHMENT_LINKS,
                        ],
                    }
                ],
            }
        ],
    }


def test_approval_needed_payload():
    request = {
        "required": True,
        "reasons": ["first deployment of credit_default", "narrow margin: roc_auc +0.002"],
        "subject": "Promote credit_default version 2 to champion?",
    }
    links = alert_payload.Links(
        task_log="http://af/decide", mlflow_run="http://ml/r", extra=(("answer in Airflow", "http://af/approve"),)
    )
    a = alerts.approval_needed(
        "credit_default",
        request,
        version="2",
        timeout_hours=24,
        approvers=["alice", "bob"],
        as_of="2026-02-01",
        links=links,
    )
    assert (a.kind, a.severity, a.key) == ("approval_needed", "yellow", "approval_needed|credit_default|2")
    assert a.payload == {
        "text": ":large_yellow_circle: credit_default: approval needed to promote v2: first deployment of "
        "credit_default; narrow margin: roc_auc +0.002; answer in Airflow http://af/approve, MLflow run "
        "http://ml/r, task log http://af/decide",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": ":large_yellow_circle: Approval needed: credit_default v2",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Promote credit_default version 2 to champion?*\nVersion v2 passed its gates; answer in Airflow "
                    "(*Required actions*) (alice, bob) within 24 h, or it counts as a rejection.",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Why*\n• first deployment of credit_default\n• narrow margin: roc_auc +0.002",
                },
            },
        ],
        "attachments": [
            {
                "color": "#daa038",
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": "severity *yellow* · model `credit_default` · as of 2026-02-01"},
                            {
                                "type": "mrkdwn",
                                "text": "<http://af/approve|answer in Airflow> · <http://ml/r|MLflow run> · "
                                "<http://af/decide|task log>",
                            },
                        ],
                    }
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    ("try_number", "max_tries", "said"),
    [
        (3, 2, "(try 3 of 3; no retries left)"),  # every retry was used
        (1, 2, "(try 1; not retried: a retry cannot fix this error)"),  # AirflowFailException: no retry ran
        (1, 0, "(try 1; no retries configured)"),
        (2, None, "(try 2)"),
    ],
)
def test_task_failure_says_which_try_failed_and_that_no_retry_follows(try_number, max_tries, said):
    a = alerts.task_failure(
        "m",
        dag_id="m__retrain",
        task_id="snapshot_data",
        run_id="r",
        try_number=try_number,
        max_tries=max_tries,
        exception="boom",
    )
    assert a.payload["text"] == f":red_circle: m: task m__retrain.snapshot_data failed {said}: boom"


def test_task_failure_without_a_try_number_says_nothing_of_tries():
    a = alerts.task_failure("m", dag_id="m__retrain", task_id="snapshot_data", run_id="r", exception="boom")
    assert a.payload["text"] == ":red_circle: m: task m__retrain.snapshot_data failed: boom"


def test_task_failure_payload():
    a = alerts.task_failure(
        "credit_default",
        dag_id="credit_default__retrain",
        task_id="train_candidate",
        run_id="manual__x",
        try_number=3,
        max_tries=2,
        exception=RuntimeError("fit timed out after 30 min <limit>"),
        as_of="2026-02-01",
        links=alert_payload.Links(task_log="http://af/t"),
    )
    assert (a.kind, a.severity) == ("failure", "red")
    assert a.key == "failure|credit_default|RuntimeError,credit_default__retrain,train_candidate"
    assert a.payload == {
        "text": ":red_circle: credit_default: task credit_default__retrain.train_candidate failed "
        "(try 3 of 3; no retries left): "
        "RuntimeError: fit timed out after 30 min &lt;limit&gt;; task log http://af/t",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": ":red_circle: Task failed: credit_default__retrain.train_candidate",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*credit_default__retrain.train_candidate failed* (try 3 of 3; no retries left) in run `manual__x`.\n"
                    "```RuntimeError: fit timed out after 30 min &lt;limit&gt;```",
                },
            },
        ],
        "attachments": [
            {
                "color": "#a30200",
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": "severity *red* · model `credit_default` · as of 2026-02-01"},
                            {"type": "mrkdwn", "text": "<http://af/t|task log>"},
                        ],
                    }
                ],
            }
        ],
    }


# -- severity and config ---------------------------------------------------------------------


def test_severity_per_kind_from_config():
    cfg = Alerts(slack_conn_id="slack_retrain", severity={"gate_failure": "red", "promotion": "yellow"})
    assert cfg.severity_of("gate_failure") == "red"
    assert cfg.severity_of("promotion") == "yellow"
    assert cfg.severity_of("drift") == "yellow" and cfg.severity_of("failure") == "red"  # defaults
    a = alerts.gate_failure("m", GateReport.from_xcom(GATES), severity=cfg.severity_of("gate_failure"))
    assert a.severity == "red" and a.payload["attachments"][0]["color"] == "#a30200"
    assert a.payload["text"].startswith(":red_circle: m candidate rejected: ")
    assert a.payload["blocks"][0]["text"]["text"].startswith(":red_circle: ")
    with pytest.raises(ValueError, match="severity 'purple'"):
        alerts.gate_failure("m", GateReport.from_xcom(GATES), severity="purple")


def test_alerts_config_defaults_and_errors(tmp_path, retrain_cfg_model_yaml):
    from retrain_lib.core.config import check_model_file

    cfg = Alerts()
    assert cfg.on == list(alerts.KINDS) and cfg.dedupe_minutes == 60 and cfg.retries == 3
    assert cfg.wants("drift") and not Alerts(on=["failure"]).wants("drift")
    text = retrain_cfg_model_yaml + (
        "alerts:\n  slack_conn_id: slack_ml\n  severity: {drift: purple, gate_falure: red}\n  dedupe_minutes: -1\n"
    )
    path = tmp_path / "churn_risk.yaml"
    path.write_text(text)
    config, found = check_model_file(path)
    problems = {p.field: p for p in found}
    assert config is None
    assert set(problems) == {"alerts.severity.drift", "alerts.severity.gate_falure.[key]", "alerts.dedupe_minutes"}
    assert "'purple' is not allowed" in problems["alerts.severity.drift"].reason
    assert "did you mean 'gate_failure'?" in problems["alerts.severity.gate_falure.[key]"].reason


# -- de-duplication and delivery -----------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    return alert_delivery.DedupeStore(f"sqlite:///{tmp_path / 'platform.db'}")


def test_dedupe_window_in_the_platform_database(store):
    a = alerts.gate_failure("credit_default", GateReport.from_xcom(GATES))
    same = alerts.gate_failure(
        "credit_default", GateReport.from_xcom(GATES), run_id="another-run", as_of="2026-02-06"
    )  # same failing gates
    other = alerts.gate_failure("daily_demand", GateReport.from_xcom(GATES))
    t0 = 1_800_000_000.0
    assert store.claim(a, 30, now=t0) == t0
    assert same.key == a.key
    assert store.claim(same, 30, now=t0 + 29 * 60) is None  # within the window: a repeat
    assert store.claim(other, 30, now=t0 + 60) == t0 + 60  # another model: another alert
    row = store.last_sent(a)
    assert (row["kind"], row["model"], row["sent_at"], row["suppressed"]) == ("gate_failure", "credit_default", t0, 1)
    assert store.claim(a, 30, now=t0 + 31 * 60) == t0 + 31 * 60  # the window has passed
    # A failed send gives its claim back: the next occurrence goes out
    token = store.claim(a, 30, now=t0 + 100 * 60)
    store.release(a, token)
    assert store.claim(a, 30, now=t0 + 101 * 60) is not None
    # Shared state: a second store object (another process) sees the same table
    again = alert_delivery.DedupeStore(store.url)
    assert again.claim(a, 30, now=t0 + 102 * 60) is None


def test_deliver_retries_with_backoff_logs_and_never_raises(store, caplog):
    a = alerts.drift("credit_default", MONITOR)
    calls, waits = [], []

    def flaky(payload):
        calls.append(payload)
        if len(calls) < 3:
            raise ConnectionError("Slack is down")

    with caplog.at_level(logging.WARNING, logger="retrain_lib.pipeline.alerts"):
        out = alert_delivery.deliver(
            a, flaky, store=store, dedupe_minutes=10, retries=3, retry_seconds=1.5, sleep=waits.append
        )
    assert out == alert_delivery.SENT and len(calls) == 3 and calls[0] is a.payload
    assert waits == [1.5, 3.0]
    assert [r.message for r in caplog.records] == [
        "Slack alert drift of credit_default: attempt 1 of 4 failed: ConnectionError: Slack is down",
        "Slack alert drift of credit_default: attempt 2 of 4 failed: ConnectionError: Slack is down",
    ]
    assert (
        alert_delivery.deliver(a, flaky, store=store, dedupe_minutes=10, sleep=waits.append)
        == alert_delivery.SUPPRESSED
    )
    assert len(calls) == 3

    def down(payload):
        raise OSError("connection refused")

    b = alerts.rollback("credit_default", {"from": "2", "to": "1", "reason": "worse"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="retrain_lib.pipeline.alerts"):
        assert (
            alert_delivery.deliver(b, down, store=store, retries=2, retry_seconds=0.5, sleep=waits.append)
            == alert_delivery.FAILED
        )
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "WARNING", "ERROR"]
    assert "NOT sent after 3 attempts" in caplog.records[-1].message
    assert store.last_sent(b)["sent_at"] == 0.0  # released: it is sent as soon as Slack is back
    assert alert_delivery.deliver(b, lambda p: None, store=store, sleep=waits.append) == alert_delivery.SENT


def test_deliver_without_a_usable_store_still_sends(caplog):
    broken = alert_delivery.DedupeStore("sqlite:////nonexistent-dir/\0/x.db")
    sent = []
    a = alerts.promotion("m", DeployOutcome.from_xcom({"version": "1", "moves": []}))
    assert alert_delivery.deliver(a, sent.append, store=broken, sleep=lambda s: None) == alert_delivery.SENT
    assert sent == [a.payload]
