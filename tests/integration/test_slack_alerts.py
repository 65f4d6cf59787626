"""Slack alerts through ``apache-airflow-providers-slack`` to a local HTTP server standing in
for Slack: the exact JSON each alert kind posts, a Slack that is down (HTTP 500, connection
refused: retried, logged, no exception), de-duplication across calls, a token connection,
a missing connection, and real ``dag.test()`` runs of a retrain DAG (a failed gate; a task
that fails for good, caught by the ``on_failure_callback``).

With ``RETRAIN_TEST_ARTIFACTS=<dir>`` every payload the server received is also written to
``<dir>/slack_<name>.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from airflow_runs import task_states
from fake_slack import WEBHOOK_PATH, FakeSlack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "daily_demand"
AIRFLOW_URL = "http://airflow.test:8080"
MLFLOW_URL = "http://mlflow.test:5000"


def keep(name: str, payload: dict) -> None:
    """Write a received payload to $RETRAIN_TEST_ARTIFACTS (when set) for people to quote."""
    out = os.environ.get("RETRAIN_TEST_ARTIFACTS")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"slack_{name}.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def platform(airflow_db, tmp_path_factory):
    """A config copy whose daily_demand cannot pass its gates and alerts through the fake
    Slack, simulated data, and the DAGs parsed from it."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:  # runs other modules left in the shared DB
        for run in session.query(DagRun).all():
            session.delete(run)

    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.simulate import simulate

    slack = FakeSlack()
    root = tmp_path_factory.mktemp("slack")
    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    (cfg_dir / "models" / "credit_default.yaml").unlink()
    raw = yaml.safe_load((cfg_dir / "models" / f"{MODEL}.yaml").read_text())
    raw["gates"] = [{"metric": "r2", "min": 0.999}, {"metric": "rmse", "max": 1000}]  # the first fails
    raw["alerts"] = {"slack_conn_id": "slack_retrain", "retries": 2, "retry_seconds": 0.05, "dedupe_minutes": 30}
    (cfg_dir / "models" / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {
        "RETRAIN_HOME": str(root / "state"),
        "RETRAIN_CONFIG_DIR": str(cfg_dir),
        "RETRAIN_STRICT": "1",
        "RETRAIN_AIRFLOW_URL": AIRFLOW_URL,
        "RETRAIN_MLFLOW_UI_URL": MLFLOW_URL,
        "AIRFLOW_CONN_SLACK_RETRAIN": json.dumps({"conn_type": "slackwebhook", "password": slack.url + WEBHOOK_PATH}),
        "AIRFLOW_CONN_SLACK_DOWN": json.dumps(
            {"conn_type": "slackwebhook", "password": f"http://127.0.0.1:{_closed_port()}/hook"}
        ),
        "AIRFLOW_CONN_SLACK_TOKEN": json.dumps(
            {"conn_type": "slack", "password": "xoxb-test-token", "extra": {"base_url": slack.url + "/api/"}}
        ),
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            # setenv first records the value before, or that there was none: delenv alone records
            # nothing for an unset name, and a value exported during the module would stay.
            mp.setenv(name, "")
            mp.delenv(name)
        try:
            settings = load_settings(cfg_dir)
            cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
            simulate(cfg, settings.data_root, days=30, rows_per_day=150, seed=5)
            bag = DagBag(dag_folder=str(REPO / "dags"))
            assert bag.import_errors == {}
            yield SimpleNamespace(bag=bag, settings=settings, cfg=cfg, cfg_dir=cfg_dir, slack=slack, root=root)
        finally:
            slack.close()


@pytest.fixture
def slack(platform):
    platform.slack.requests.clear()
    platform.slack.status = 200
    return platform.slack


def fresh_settings(platform, tmp_path):
    """The platform's settings with a state directory of its own (an empty de-duplication table)."""
    import dataclasses

    return dataclasses.replace(platform.settings, state_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'p.db'}")


def all_kinds(links):
    """One alert of each kind, from inputs shaped like the platform's."""
    import datetime as dt

    from retrain_lib.pipeline import alerts, lifecycle_alerts
    from retrain_lib.pipeline.records import DeployOutcome, Evaluation, GateReport
    from retrain_lib.pipeline.retirement import LifecycleChange
    from retrain_lib.pipeline.retirement_plan import LifecyclePlan
    from retrain_lib.pipeline.retirement_step import LifecycleCheck
    from retrain_lib.tools.health_publish import health_alert
    from retrain_lib.tools.health_report import ChampionState, DayHealth, HealthCounts, HealthReport

    plan = LifecyclePlan(
        "daily_demand",
        dt.date(2026, 1, 2),
        status="deprecated",
        retire_on=dt.date(2026, 2, 1),
        reason="replaced by the store-level model",
        replacement="store_demand",
        recorded=True,
    )
    deprecated = LifecycleCheck("daily_demand", "2026-01-02", plan, notice=True)
    change = LifecycleChange(
        "daily_demand",
        "retired",
        "retired",
        "daily_demand is retired",
        reason="replaced by the store-level model",
        replacement="store_demand",
        aliases_removed={"champion": "4"},
        versions_tagged=("1", "2", "3", "4"),
        dags={"daily_demand__monitor": "paused"},
    )
    retired = LifecycleCheck("daily_demand", "2026-02-01", plan, retired=change)
    gates = {
        "passed": False,
        "champion_version": "3",
        "results": [
            {
                "gate": "recall_min",
                "threshold": 0.9,
                "observed": 0.84,
                "champion": 0.91,
                "delta": -0.07,
                "passed": False,
                "reason": "recall 0.8400 < min 0.9 on region=north",
                "slice": "region=north",
            }
        ],
    }
    return [
        alerts.gate_failure(MODEL, GateReport.from_xcom(gates), run_id="abc123", as_of="2026-01-30", links=links),
        alerts.validation_failure(
            MODEL,
            failures=[
                {
                    "column": "price",
                    "expectation": "expect_column_values_to_be_between",
                    "observed_value": None,
                    "explain": "price: expect_column_values_to_be_between(min=0.01, max=1000): 2 rows (1.3%) unexpected, "
                    "e.g. -1.0",
                    "rows": [{"record_id": "r-7", "price": -1.0}],
                }
            ],
            window=["2026-01-03", "2026-01-30"],
            rows=4200,
            quarantine="/q/daily_demand/2026-01-30",
            as_of="2026-01-30",
            links=links,
        ),
        alerts.drift(
            MODEL,
            {
                "as_of": "2026-01-30",
                "action": "retrain",
                "champion_version": "2",
                "drift": {
                    "drifted_share": 0.5,
                    "drift_share_threshold": 0.3,
                    "top": [
                        {
                            "name": "price",
                            "method": "psi",
                            "score": 0.31,
                            "p_value": None,
                            "threshold": 0.2,
                            "drifted": True,
                        }
                    ],
                },
            },
            links=links,
        ),
        alerts.promotion(
            MODEL,
            DeployOutcome.from_xcom(
                {"mode": "direct", "version": "4", "moves": [{"alias": "champion", "from": "3", "to": "4"}]}
            ),
            evaluation=Evaluation.from_xcom({"candidate": {"rmse": 4.1}, "champion": {"rmse": 4.6}}),
            reason="drift",
            as_of="2026-01-30",
            links=links,
        ),
        alerts.rollback(
            MODEL, {"from": "4", "to": "3", "reason": "champion rmse 6.1 vs 4.4"}, as_of="2026-02-03", links=links
        ),
        alerts.rollout_decision(
            MODEL,
            "promote",
            {"challenger": "5", "champion": "4", "mode": "canary"},
            {"promoted": True},
            reason="every canary step passed",
            links=links,
        ),
        alerts.guard_end(
            MODEL,
            {"action": "clean", "version": "5", "reason": "clean after 120 minutes: 2400 requests, 2100 labelled"},
            as_of="2026-02-03",
            links=links,
        ),
        alerts.approval_needed(
            MODEL,
            {"reasons": ["first deployment"], "subject": "Promote daily_demand v1?"},
            version="1",
            timeout_hours=2,
            links=links,
        ),
        alerts.task_failure(
            MODEL,
            dag_id="daily_demand__retrain",
            task_id="train_candidate",
            run_id="manual__1",
            try_number=3,
            max_tries=3,
            exception=TimeoutError("fit took too long"),
            links=links,
        ),
        health_alert(
            HealthReport(
                model=MODEL,
                month="2026-01",
                first_day="2026-01-01",
                last_day="2026-01-31",
                metric="rmse",
                greater_is_better=False,
                drift_share_threshold=0.3,
                counts=HealthCounts(monitor_checks=31, days_checked=31, drift_alarms=2, retrains=1, promotions=1),
                failed_gates=(),
                open_approvals=(),
                champion=ChampionState(at_start="3", at_end="4", now="4"),
                days=(DayHealth("2026-01-10", live=4.6), DayHealth("2026-01-31", live=4.1)),
                events=(),
                generated_at="2026-02-01T07:00:00+00:00",
            ),
            links=links,
        ),
        lifecycle_alerts.deprecation_notice("daily_demand", deprecated, links=links),
        lifecycle_alerts.retirement("daily_demand", retired, links=links),
    ]


def test_each_alert_kind_posts_its_exact_payload_to_the_webhook(platform, slack, tmp_path):
    from retrain_airflow import alerting

    from retrain_lib.pipeline import alert_links, alert_payload, alerts

    settings = fresh_settings(platform, tmp_path)
    links = alert_payload.Links(
        task_log=alert_links.task_log_url(AIRFLOW_URL, "daily_demand__retrain", "manual__1", "t"),
        mlflow_run=alert_links.mlflow_run_url(MLFLOW_URL, "abc123", "1"),
    )
    sent = all_kinds(links)
    assert sorted({a.kind for a in sent}) == sorted(alerts.KINDS)
    for a in sent:
        assert alerting.send(platform.cfg.alerts, settings, a.kind, lambda severity, a=a: a) == "sent"
    received = slack.payloads()
    assert received == [a.payload for a in sent]  # JSON round trip: exactly the dicts built
    names = [
        "gate_failure",
        "validation_failure",
        "drift",
        "promotion",
        "rollback",
        "rollout_promotion",
        "guard",
        "approval_needed",
        "failure",
        "health_report",
        "deprecation",
        "retirement",
    ]
    for name, body in zip(names, received, strict=True):
        keep(name, body)
    assert received[0] == {
        "text": ":large_yellow_circle: daily_demand candidate rejected: gate `recall_min[region=north]` failed: "
        "0.84 < 0.9 (champion 0.91, -0.07); MLflow run http://mlflow.test:5000/#/experiments/1/runs/abc123, "
        "task log http://airflow.test:8080/dags/daily_demand__retrain/runs/manual__1/tasks/t",
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "emoji": True,
                    "text": ":large_yellow_circle: Gate failure: daily_demand candidate rejected",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "*1 of 1 gate checks failed*: the candidate "
                    "(MLflow run `abc123`) is not promoted; champion v3 stays.",
                },
            },
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": "• gate `recall_min[region=north]` failed: 0.84 < 0.9 (champion 0.91, -0.07)",
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
                            {"type": "mrkdwn", "text": "severity *yellow* · model `daily_demand` · as of 2026-01-30"},
                            {
                                "type": "mrkdwn",
                                "text": "<http://mlflow.test:5000/#/experiments/1/runs/abc123|MLflow run> · "
                                "<http://airflow.test:8080/dags/daily_demand__retrain/runs/manual__1/tasks/t|"
                                "task log>",
                            },
                        ],
                    }
                ],
            }
        ],
    }


def test_the_same_alert_is_not_repeated_within_the_window(platform, slack, tmp_path):
    from retrain_airflow import alerting

    from retrain_lib.pipeline import alert_delivery, alerts

    settings = fresh_settings(platform, tmp_path)
    first, again, other = (
        alerts.drift(
            MODEL,
            {
                "action": "retrain",
                "as_of": day,
                "drift": {
                    "top": [
                        {"name": f, "method": "psi", "score": 0.4, "p_value": None, "threshold": 0.2, "drifted": True}
                    ]
                },
            },
        )
        for day, f in (("2026-01-30", "price"), ("2026-01-31", "price"), ("2026-01-31", "discount"))
    )
    outcomes = [
        alerting.send(platform.cfg.alerts, settings, "drift", lambda severity, a=a: a) for a in (first, again, other)
    ]
    assert outcomes == ["sent", "suppressed", "sent"]
    assert slack.payloads() == [first.payload, other.payload]
    row = alert_delivery.DedupeStore.from_settings(settings).last_sent(first)
    assert row["suppressed"] == 1


def test_slack_down_is_retried_logged_and_changes_nothing(platform, slack, tmp_path, caplog):
    from retrain_airflow import alerting

    from retrain_lib.pipeline import alerts

    settings = fresh_settings(platform, tmp_path)
    a = alerts.rollback(MODEL, {"from": "4", "to": "3", "reason": "worse"})
    slack.status = 500
    with caplog.at_level(logging.INFO, logger="retrain_lib.pipeline.alerts"):
        assert alerting.send(platform.cfg.alerts, settings, "rollback", lambda severity: a) == "failed"
    assert slack.payloads() == [a.payload] * 3  # first try + alerts.retries (2)
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "retrain_lib.pipeline.alerts" and r.levelname == "WARNING"
    ]
    assert len(warnings) == 3 and all(
        "rollback of daily_demand: attempt" in w and "Status Code: 500" in w for w in warnings
    ), warnings
    assert any(r.levelname == "ERROR" and "NOT sent after 3 attempts" in r.getMessage() for r in caplog.records)
    # Slack is back: the failed alert was not counted as sent, so it goes out now
    slack.status = 200
    assert alerting.send(platform.cfg.alerts, settings, "rollback", lambda severity: a) == "sent"
    assert slack.payloads() == [a.payload] * 4

    # Connection refused (nothing listens on the port)
    down = platform.cfg.alerts.model_copy(update={"slack_conn_id": "slack_down"})
    b = alerts.rollback(MODEL, {"from": "5", "to": "4", "reason": "worse"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="retrain_lib.pipeline.alerts"):
        assert alerting.send(down, settings, "rollback", lambda severity: b) == "failed"
    refused = [
        r.getMessage() for r in caplog.records if r.name == "retrain_lib.pipeline.alerts" and r.levelname == "WARNING"
    ]
    assert len(refused) == 3 and all("Connection refused" in m for m in refused), refused


def test_token_connection_posts_to_chat_post_message(platform, slack, tmp_path):
    from retrain_airflow import alerting

    from retrain_lib.pipeline import alerts
    from retrain_lib.pipeline.records import DeployOutcome

    settings = fresh_settings(platform, tmp_path)
    token_cfg = platform.cfg.alerts.model_copy(update={"slack_conn_id": "slack_token", "channel": "#ml-alerts"})
    a = alerts.promotion(MODEL, DeployOutcome.from_xcom({"mode": "direct", "version": "2", "moves": []}))
    assert alerting.send(token_cfg, settings, "promotion", lambda severity: a) == "sent"
    assert slack.payloads("/api/chat.postMessage") == [{"channel": "#ml-alerts", **a.payload}]
    keep("token_api_promotion", slack.payloads("/api/chat.postMessage")[0])


def test_missing_connection_is_logged_once_and_skipped(platform, slack, tmp_path, caplog):
    from retrain_airflow import alerting

    from retrain_lib.pipeline import alerts

    settings = fresh_settings(platform, tmp_path)
    missing = platform.cfg.alerts.model_copy(update={"slack_conn_id": "slack_nowhere"})
    a = alerts.rollback(MODEL, {"from": "2", "to": "1"})
    with caplog.at_level(logging.INFO):
        assert [alerting.send(missing, settings, "rollback", lambda severity: a) for _ in range(3)] == ["disabled"] * 3
    notices = [r for r in caplog.records if "slack_nowhere" in r.getMessage() and r.levelname == "WARNING"]
    assert len(notices) == 1
    assert slack.requests == []
    off = platform.cfg.alerts.model_copy(update={"on": ["failure"]})
    assert alerting.send(off, settings, "rollback", lambda severity: a) == "disabled"


def test_a_retrain_whose_gates_fail_alerts_through_a_real_airflow_run(platform, slack):
    from retrain_lib.store import registry

    dag = platform.bag.dags[f"{MODEL}__retrain"]
    run = dag.test(run_conf={"as_of": "2026-01-30", "reason": "test"})
    states = task_states(dag.dag_id, run.run_id)
    assert run.state == "success", states
    assert states["reject_candidate"] == "success" and states["register_candidate"] == "skipped"

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:

        def pull(task_id):
            row = (
                session.query(XComModel)
                .filter_by(dag_id=dag.dag_id, run_id=run.run_id, task_id=task_id, key="return_value")
                .one()
            )
            return XComModel.deserialize_value(row)

        gates, trained = pull("check_gates"), pull("train_candidate")
    r2 = next(r for r in gates["results"] if r["gate"] == "r2_min")
    assert not r2["passed"] and gates["passed"] is False
    exp = registry.get_client(platform.settings.tracking_uri).get_run(trained["run_id"]).info.experiment_id
    mlflow_run = f"{MLFLOW_URL}/#/experiments/{exp}/runs/{trained['run_id']}"
    from urllib.parse import quote

    task_log = f"{AIRFLOW_URL}/dags/{MODEL}__retrain/runs/{quote(run.run_id, safe='')}/tasks/reject_candidate"
    line = f"gate `r2_min` failed: {r2['observed']:.4g} < 0.999"
    received = slack.payloads()
    assert received == [
        {
            "text": f":large_yellow_circle: daily_demand candidate rejected: {line}; MLflow run {mlflow_run}, "
            f"task log {task_log}, runbook {AIRFLOW_URL}/retrain/runbooks/gate_failure",
            "blocks": [
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "emoji": True,
                        "text": ":large_yellow_circle: Gate failure: daily_demand candidate rejected",
                    },
                },
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": f"*1 of 2 gate checks failed*: the candidate (MLflow "
                        f"run `{trained['run_id']}`) is not registered "
                        "(no champion yet).",
                    },
                },
                {"type": "section", "text": {"type": "mrkdwn", "text": f"• {line}"}},
            ],
            "attachments": [
                {
                    "color": "#daa038",
                    "blocks": [
                        {
                            "type": "context",
                            "elements": [
                                {
                                    "type": "mrkdwn",
                                    "text": "severity *yellow* · model `daily_demand` · as of 2026-01-30",
                                },
                                {
                                    "type": "mrkdwn",
                                    "text": f"<{mlflow_run}|MLflow run> · <{task_log}|task log> · "
                                    f"<{AIRFLOW_URL}/retrain/runbooks/gate_failure|runbook>",
                                },
                            ],
                        }
                    ],
                }
            ],
        }
    ]
    keep("dag_run_gate_failure", received[0])


def test_a_task_that_fails_for_good_alerts_through_its_failure_callback(platform, slack):
    from retrain_lib.core.errors import DataError
    from retrain_lib.pipeline.snapshot import snapshot_data

    with pytest.raises(DataError) as err:  # what the task will hit: no data for that window
        snapshot_data(MODEL, "2025-06-01", settings=platform.settings)
    dag = platform.bag.dags[f"{MODEL}__retrain"]
    run = dag.test(run_conf={"as_of": "2025-06-01", "reason": "test"})
    states = task_states(dag.dag_id, run.run_id)
    assert run.state == "failed" and states["snapshot_data"] == "failed", states
    from urllib.parse import quote

    task_log = f"{AIRFLOW_URL}/dags/{MODEL}__retrain/runs/{quote(run.run_id, safe='')}/tasks/snapshot_data"
    error = (
        f"AirflowFailException: DataError: {err.value}".replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    )
    received = slack.payloads()
    assert received == [
        {
            "text": f":red_circle: daily_demand: task daily_demand__retrain.snapshot_data failed "
            f"(try 1; not retried: a retry cannot fix this error): {error}; "
            f"task log {task_log}, runbook {AIRFLOW_URL}/retrain/runbooks/failure",
            "blocks": [
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "emoji": True,
                        "text": ":red_circle: Task failed: daily_demand__retrain.snapshot_data",
                    },
                },
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": "*daily_demand__retrain.snapshot_data failed* "
                        f"(try 1; not retried: a retry cannot fix this error) in run `{run.run_id}`.\n"
                        f"```{error}```",
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
                                {"type": "mrkdwn", "text": "severity *red* · model `daily_demand` · as of 2025-06-01"},
                                {
                                    "type": "mrkdwn",
                                    "text": f"<{task_log}|task log> · <{AIRFLOW_URL}/retrain/runbooks/failure|runbook>",
                                },
                            ],
                        }
                    ],
                }
            ],
        }
    ]
    keep("dag_run_task_failure", received[0])


USER_DAG = """
from airflow.sdk import DAG, task
from retrain_airflow.slack_notifier import SlackAlertNotifier

with DAG("user_notifier_dag", schedule=None):

    @task(retries=0, on_failure_callback=SlackAlertNotifier(slack_conn_id="slack_retrain", model="churn_{{ task.task_id }}"))
    def explode():
        raise RuntimeError("boom <3")

    explode()
"""


def test_the_notifier_is_an_on_failure_callback_for_any_dag(platform, slack, tmp_path):
    """A user's own DAG: ``SlackAlertNotifier`` as a task's ``on_failure_callback`` posts the
    failure alert (its template fields rendered) through a real ``dag.test()`` run."""
    from airflow.api.common.delete_dag import delete_dag
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db

    (tmp_path / "user_dag.py").write_text(USER_DAG)
    bag = BundleDagBag(dag_folder=tmp_path, bundle_path=tmp_path, bundle_name="dags-folder")
    assert bag.import_errors == {}
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    dag = bag.dags["user_notifier_dag"]
    try:
        run = dag.test()
        assert run.state == "failed"
    finally:  # the session's metadata DB is shared: leave no DAG of this test behind
        delete_dag(dag.dag_id)
    (received,) = slack.payloads()
    assert received["blocks"][0]["text"]["text"] == ":red_circle: Task failed: user_notifier_dag.explode"
    assert "RuntimeError: boom &lt;3" in received["blocks"][1]["text"]["text"]
    context = received["attachments"][0]["blocks"][0]["elements"]
    assert "model `churn_explode`" in context[0]["text"] and "|task log>" in context[1]["text"], context


def test_the_notifier_delivers_with_de_duplication_and_retries(platform, slack, tmp_path):
    """``SlackAlertNotifier.deliver``: what every platform alert goes through."""
    from retrain_airflow.slack_notifier import SlackAlertNotifier

    from retrain_lib.pipeline import alerts

    a = alerts.rollback(MODEL, {"from": "3", "to": "2", "reason": "worse"})
    db = f"sqlite:///{tmp_path / 'p.db'}"
    notifier = SlackAlertNotifier(slack_conn_id="slack_retrain", database_url=db, retries=1, retry_seconds=0.01)
    assert [notifier.deliver(a), notifier.deliver(a)] == ["sent", "suppressed"]
    slack.status = 500
    b = alerts.rollback(MODEL, {"from": "4", "to": "3", "reason": "worse"})
    assert notifier.deliver(b) == "failed"
    assert slack.payloads() == [a.payload, b.payload, b.payload]
    assert SlackAlertNotifier(slack_conn_id="slack_nowhere").deliver(a) == "disabled"


def test_monitor_and_rollout_wiring_send_drift_validation_and_rollout_alerts(platform, slack, tmp_path):
    """The factory's helpers on a monitor result shaped like ``monitor_model``'s (drift that
    triggered a retrain, a failed validation with its ``validation.json``) and on a rollout's end."""
    from retrain_airflow.monitor_dag import monitor_alerts
    from retrain_airflow.rollout_dag import rollout_alert

    from retrain_lib.pipeline.monitor_records import MonitorResult

    report_dir = tmp_path / "reports" / MODEL / "2026-01-30"
    report_dir.mkdir(parents=True)
    (report_dir / "validation.json").write_text(
        json.dumps(
            {
                "rows": 1050,
                "results": [
                    {"success": True, "column": "price", "expectation": "expect_column_values_to_not_be_null"},
                    {
                        "success": False,
                        "column": "discount",
                        "expectation": "expect_column_values_to_be_between",
                        "observed_value": None,
                        "rows": [{"record_id": "r-3", "discount": 1.5}],
                        "explain": "discount: expect_column_values_to_be_between(min=0, max=0.9): 1 row (0.1%) unexpected, "
                        "e.g. 1.5",
                    },
                ],
            }
        )
    )
    res = {
        "model": MODEL,
        "as_of": "2026-01-30",
        "action": "retrain",
        "throttled": False,
        "champion_version": "1",
        "reasons": ["data drift"],
        "signals": [{"signal": "drift", "triggered": True}],
        "drift": {
            "drifted_share": 0.4,
            "drift_share_threshold": 0.3,
            "top": [
                {"name": "price", "method": "psi", "score": 0.52, "p_value": None, "threshold": 0.2, "drifted": True}
            ],
        },
        "validation": {"success": False, "failed": ["discount: ..."], "window": ["2026-01-24", "2026-01-30"]},
        "report_path": str(report_dir / "monitor.json"),
        "mlflow_run_id": None,
        "drift_report_path": str(report_dir / "drift_report.html"),
    }
    monitor_alerts(platform.cfg, str(platform.cfg_dir), MonitorResult.from_xcom(res), context=None)
    drift, validation = slack.payloads()
    assert drift["text"] == (
        ":large_yellow_circle: daily_demand: drift, retrain: `price` psi 0.52 >= 0.2; "
        f"drift report {report_dir / 'drift_report.html'}, runbook {AIRFLOW_URL}/retrain/runbooks/drift"
    )
    assert validation["blocks"][1:] == [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*1 check(s) failed* on 2026-01-24..2026-01-30 "
                "(1050 rows): the monitor carried on (drift and "
                "performance were still checked).",
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "• discount: expect_column_values_to_be_between(min=0, "
                "max=0.9): 1 row (0.1%) unexpected, e.g. 1.5",
            },
        },
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": "*Offending rows*\n`discount` "
                "expect_column_values_to_be_between:\n"
                '```{"record_id": "r-3", "discount": 1.5}```',
            },
        },
    ]
    keep("monitor_drift", drift)
    keep("monitor_validation_failure", validation)
    slack.requests.clear()
    started = {"challenger": "7", "champion": "6", "mode": "shadow", "as_of": "2026-01-30"}
    rollout_alert(
        platform.cfg,
        str(platform.cfg_dir),
        "rollback",
        started,
        {"promoted": False, "champion": "6"},
        "shadow: output PSI 0.41 > 0.2",
        None,
    )
    (body,) = slack.payloads()
    assert body["text"] == (
        ":red_circle: daily_demand: shadow rollout of v7 rolled back: shadow: output PSI 0.41 &gt; 0.2; "
        f"runbook {AIRFLOW_URL}/retrain/runbooks/rollback"
    )
    keep("rollout_rollback", body)


def test_links_of_a_retrain_alert_point_at_the_latest_monitor_drift_report(platform, tmp_path):
    import mlflow  # noqa: F401 - loaded, as in the tasks that alert (links resolve experiments then)
    from retrain_airflow import alerting

    from retrain_lib.store import registry
    from retrain_lib.store.audit import Ledger

    settings = fresh_settings(platform, tmp_path)
    client = registry.get_client(settings.tracking_uri, settings.registry_uri)
    exp = client.create_experiment(f"links-{tmp_path.name}")
    monitor_run, candidate_run = client.create_run(exp).info.run_id, client.create_run(exp).info.run_id
    ledger = Ledger.from_settings(settings)
    for day, run_id in (("2026-01-28", "older"), ("2026-01-29", monitor_run), ("2026-02-02", "later")):
        ledger.append(
            MODEL,
            "monitor",
            as_of=day,
            actor="test",
            details={"mlflow_run_id": run_id, "drift_report": f"/r/{MODEL}/{day}/drift_report.html"},
        )
    ti = SimpleNamespace(dag_id=f"{MODEL}__retrain", task_id="reject_candidate", run_id="manual__1", try_number=1)
    link = alerting.links(
        settings,
        MODEL,
        {"ti": ti, "run_id": "manual__1"},
        mlflow_run_id=candidate_run,
        as_of="2026-01-30",
        other_tasks=(("answer in Airflow", "approve_promotion"),),
    )
    assert link == alerting_links(exp, monitor_run, candidate_run)


def alerting_links(exp: str, monitor_run: str, candidate_run: str):
    from retrain_lib.pipeline.alert_payload import Links

    return Links(
        task_log=f"{AIRFLOW_URL}/dags/{MODEL}__retrain/runs/manual__1/tasks/reject_candidate",
        mlflow_run=f"{MLFLOW_URL}/#/experiments/{exp}/runs/{candidate_run}",
        drift_report=f"{MLFLOW_URL}/#/experiments/{exp}/runs/{monitor_run}/artifactPath/monitor/drift_report.html",
        extra=(("answer in Airflow", f"{AIRFLOW_URL}/dags/{MODEL}__retrain/runs/manual__1/tasks/approve_promotion"),),
    )
