"""The ``<model>__health_report`` DAG in real ``dag.test()`` runs: a real decision ledger and
MLflow store, the DAGs parsed from a config copy, and a local HTTP server standing in for the
Slack webhook (through the Airflow connection and the Slack provider, as every alert). The
scheduled run of March 1st reports February: its MLflow run holds the HTML (with both charts)
and the JSON, and Slack receives the summary with the task log and report links; a second run
for the same month replaces the MLflow run and its summary is not repeated."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from airflow_runs import task_states, xcom_return
from fake_slack import WEBHOOK_PATH, FakeSlack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
DAG_ID = f"{MODEL}__health_report"
AIRFLOW_URL = "http://airflow.test:8080"
MLFLOW_URL = "http://mlflow.test:5000"


def _ledger(settings) -> None:
    """February: 6 monitor checks (2 drift alarms, live roc_auc 0.80 -> 0.75), 2 retrains (one
    promoted, one failing roc_auc_min), a rollback by the guard, an approval still open; and
    a check on March 1st that is not February's."""
    from retrain_lib.store.audit import record_decision

    def rec(event, day, **kw):
        record_decision(settings, model=MODEL, event=event, as_of=day, actor="test", **kw)

    rec("promote", "2026-01-25", after="1", details={"mode": "direct", "version": "1"})
    for d, live in zip(range(2, 8), (0.80, 0.79, 0.78, 0.77, 0.76, 0.75), strict=True):
        drift = d in (3, 6)
        rec(
            "monitor",
            f"2026-02-{d:02d}",
            details={
                "action": "retrain" if drift else "healthy",
                "drifted_share": 0.5 if drift else 0.1,
                "signals": [
                    {"signal": "drift", "triggered": drift, "value": 0.5 if drift else 0.1, "threshold": 0.25},
                    {"signal": "performance", "triggered": False, "value": live, "threshold": 0.7, "detail": {}},
                ],
            },
        )
    rec("gates", "2026-02-03", details={"run_id": None, "passed": True, "failed": []})
    rec("promote", "2026-02-03", before="1", after="2", details={"mode": "direct", "version": "2"})
    rec("rollback", "2026-02-04", before="2", after="1", reason="post-deploy guard: p95 latency 240 ms > 100 ms")
    rec("gates", "2026-02-06", details={"passed": False, "failed": ["roc_auc 0.66 < min 0.7"]})
    rec("reject", "2026-02-06", details={"failed": ["roc_auc 0.66 < min 0.7"]})
    rec("approval_requested", "2026-02-20", details={"version": "3", "reasons": ["first deployment"]})
    rec("monitor", "2026-03-01", details={"action": "retrain", "signals": [{"signal": "drift", "triggered": True}]})


@pytest.fixture(scope="module")
def platform(airflow_db, tmp_path_factory):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:  # runs other modules left in the shared DB
        for run in session.query(DagRun).all():
            session.delete(run)

    from retrain_lib.core.settings import load_settings
    from retrain_lib.store import registry
    from retrain_lib.store.model_context import ModelContext

    slack = FakeSlack()
    root = tmp_path_factory.mktemp("health_dag")
    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    (cfg_dir / "models" / "daily_demand.yaml").unlink()
    path = cfg_dir / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["alerts"] = {"slack_conn_id": "slack_retrain", "retries": 0, "dedupe_minutes": 60}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {
        "RETRAIN_HOME": str(root / "state"),
        "RETRAIN_CONFIG_DIR": str(cfg_dir),
        "RETRAIN_STRICT": "1",
        "RETRAIN_AIRFLOW_URL": AIRFLOW_URL,
        "RETRAIN_MLFLOW_UI_URL": MLFLOW_URL,
        "AIRFLOW_CONN_SLACK_RETRAIN": json.dumps({"conn_type": "slackwebhook", "password": slack.url + WEBHOOK_PATH}),
    }
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            mp.setenv(name, "")
            mp.delenv(name)
        try:
            settings = load_settings(cfg_dir)
            ctx = ModelContext(MODEL, settings)
            client = ctx.client
            exp = ctx.experiment_id()
            for _ in range(2):
                run_id = client.create_run(exp).info.run_id
                registry.register_version(client, MODEL, run_id=run_id, source=f"runs:/{run_id}/model", tags={})
            registry.promote_champion(client, MODEL, "1", expected_champion=None)
            _ledger(settings)
            bag = DagBag(dag_folder=str(REPO / "dags"))
            assert bag.import_errors == {}
            yield SimpleNamespace(bag=bag, settings=settings, client=client, slack=slack, root=root)
        finally:
            slack.close()


def test_the_monthly_run_logs_the_report_to_mlflow_and_summarises_it_in_slack(platform):
    dag = platform.bag.dags[DAG_ID]
    run = dag.test(logical_date=dt.datetime(2026, 3, 1, 7, tzinfo=dt.UTC))
    assert task_states(DAG_ID, run.run_id) == {"publish_report": "success"}
    out = xcom_return(DAG_ID, run.run_id, "publish_report")
    assert out["month"] == "2026-02" and out["slack"] == "sent" and out["replaced"] == []

    client = platform.client
    mlflow_run = client.get_run(out["run_id"])
    assert mlflow_run.info.run_name == "health_report_credit_default_2026-02"
    assert (
        mlflow_run.info.experiment_id == client.get_experiment_by_name("retrain/credit_default/monitor").experiment_id
    )
    assert {a.path for a in client.list_artifacts(out["run_id"], "health_report")} == {
        "health_report/2026-02.html",
        "health_report/2026-02.json",
    }
    html = Path(client.download_artifacts(out["run_id"], "health_report/2026-02.html", str(platform.root))).read_text()
    assert html.count("<svg") == 2 and html.count('class="live"') == 6  # one point per day with a live metric
    assert html.count('data-alarm="true"') == 2
    facts = json.loads(
        Path(client.download_artifacts(out["run_id"], "health_report/2026-02.json", str(platform.root))).read_text()
    )
    assert facts["counts"]["monitor_checks"] == 6 and facts["counts"]["guard_rollbacks"] == 1
    assert facts["trend"]["first"] == 0.80 and facts["trend"]["last"] == 0.75 and facts["trend"]["direction"] == "worse"

    [payload] = platform.slack.payloads()
    assert payload["blocks"][0]["text"]["text"] == ":large_green_circle: Health report: credit_default 2026-02"
    assert payload["text"].startswith(
        ":large_green_circle: credit_default health 2026-02: 2 drift alarms, 2 retrains, 1 promotion, 1 rollback, "
        "live roc_auc 0.8 -> 0.75 (worse), 1 open approval"
    )
    facts_text = payload["blocks"][2]["text"]["text"]
    assert "3 gate" not in facts_text and "1 gate failure(s) (`roc_auc 0.66 &lt; min 0.7` ×1)" in facts_text
    assert "• *open approvals*: v3 since 2026-02-20 (8 d)" in facts_text
    links = payload["attachments"][0]["blocks"][0]["elements"][1]["text"]
    html_url = f"{MLFLOW_URL}/#/experiments/{out['experiment_id']}/runs/{out['run_id']}/artifactPath/health_report/2026-02.html"
    assert links.startswith(f"<{html_url}|health report> · ")
    assert f"{AIRFLOW_URL}/dags/{DAG_ID}/runs/" in links and "/tasks/publish_report|task log>" in links
    assert links.endswith(f"<{AIRFLOW_URL}/retrain/runbooks/health_report|runbook>")

    # the same month by hand: the MLflow run is replaced, the summary is not sent twice
    again = dag.test(logical_date=dt.datetime(2026, 4, 2, tzinfo=dt.UTC), run_conf={"month": "2026-02"})
    second = xcom_return(DAG_ID, again.run_id, "publish_report")
    assert second["month"] == "2026-02" and second["replaced"] == [out["run_id"]]
    assert second["slack"] == "suppressed" and len(platform.slack.payloads()) == 1
    assert client.get_run(out["run_id"]).info.lifecycle_stage == "deleted"
