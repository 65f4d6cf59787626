"""Planted secrets never reach a sink.

A Slack webhook (its secret path), a Slack bot token, S3 keys and the platform database's
password are planted where a deployment puts them (Airflow connections, the environment,
``RETRAIN_DB_URL`` of a real PostgreSQL database). Then the platform works and fails:
a retrain DAG run that promotes (promotion alert), a monitor DAG run, a retrain that fails
for good (failure alert), Slack unreachable, the platform database unreachable while alerting,
a malformed database URL, the CLI. Every sink is grepped for every secret: task logs and
everything printed, XCom and the whole Airflow metadata DB, MLflow params/tags/descriptions
and artifacts, the ledger, the state directory, the Slack payloads, and the fleet UI (pages
and JSON). ``secret_leaks`` = (secret, sink) pairs found."""

from __future__ import annotations

import datetime as dt
import json
import logging
import secrets as pysecrets
import uuid
from pathlib import Path

import pytest
from airflow_runs import task_states
from harness import env, fake_slack, free_port, make_platform, platform_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

psycopg = pytest.importorskip("psycopg")
REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
PG = "host=127.0.0.1 port=5432 user=postgres"


def _pg_up() -> bool:
    try:
        psycopg.connect(f"{PG} dbname=postgres", connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


def _token(prefix: str) -> str:
    return f"{prefix}{pysecrets.token_hex(12)}"


@pytest.fixture
def pg_db():
    if not _pg_up():
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = f"retrain_secrets_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{PG} dbname=postgres", autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    yield name
    from retrain_lib.store import audit

    for (url, _pid), engine in list(audit._engines.items()):
        if name in url:
            engine.dispose()
    with psycopg.connect(f"{PG} dbname=postgres", autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _clear_runs() -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run in session.query(DagRun).all():
            session.delete(run)


def _files_text(root: Path) -> bytes:
    out = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".git/objects" not in str(p):
            try:
                out.append(p.read_bytes())
            except OSError:
                pass
    return b"\n".join(out)


def _mlflow_text(settings) -> str:
    from retrain_lib.store import registry

    client = registry.get_client(settings.tracking_uri)
    parts = []
    for exp in client.search_experiments():
        parts.append(json.dumps({"name": exp.name, "tags": exp.tags}))
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            parts.append(
                json.dumps({"params": run.data.params, "tags": run.data.tags, "metrics": list(run.data.metrics)})
            )
    for rm in client.search_registered_models():
        parts.append(json.dumps({"tags": rm.tags, "description": rm.description}))
        for mv in client.search_model_versions(f"name='{rm.name}'"):
            parts.append(json.dumps({"tags": mv.tags, "description": mv.description, "source": mv.source}))
    return "\n".join(parts)


def _xcom_text(dag_ids) -> str:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id.in_(list(dag_ids))).all()
        return "\n".join(json.dumps(XComModel.deserialize_value(r), default=str) for r in rows)


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_secret_planted_secrets_reach_no_sink(airflow_db, tmp_path, pg_db, capfd, caplog, reliability):
    from airflow.dag_processing.dagbag import DagBag
    from fastapi.testclient import TestClient
    from retrain_airflow import alerting
    from retrain_airflow.ui import create_app

    from retrain_lib.cli.app import main
    from retrain_lib.core.errors import ConfigError
    from retrain_lib.pipeline import alerts
    from retrain_lib.store.audit import Ledger

    planted = {
        "slack_webhook": _token("WH"),
        "slack_webhook_down": _token("WD"),
        "slack_token": _token("xoxb-"),
        "s3_access_key": _token("AKIA").upper(),
        "s3_secret_key": _token("S3"),
        "db_password": _token("PW"),
    }
    _clear_runs()
    slack = fake_slack()
    settings, cfg_dir = make_platform(tmp_path, days=31)
    db_url = f"postgresql://postgres:{planted['db_password']}@127.0.0.1:5432/{pg_db}"
    dead_db = f"postgresql://postgres:{planted['db_password']}@127.0.0.1:{free_port()}/{pg_db}"
    webhook = f"{slack.url}/services/T0SECRET/B0SECRET/{planted['slack_webhook']}"
    down_webhook = f"http://127.0.0.1:{free_port()}/services/T0SECRET/B0SECRET/{planted['slack_webhook_down']}"
    sinks: dict[str, str] = {}
    caplog.set_level(logging.DEBUG)
    try:
        with platform_env(
            tmp_path,
            cfg_dir,
            RETRAIN_DB_URL=db_url,
            RETRAIN_STRICT="1",
            AWS_ACCESS_KEY_ID=planted["s3_access_key"],
            AWS_SECRET_ACCESS_KEY=planted["s3_secret_key"],
            AIRFLOW_CONN_SLACK_RETRAIN=json.dumps({"conn_type": "slackwebhook", "password": webhook}),
            AIRFLOW_CONN_SLACK_DOWN=json.dumps({"conn_type": "slackwebhook", "password": down_webhook}),
            AIRFLOW_CONN_SLACK_TOKEN=json.dumps(
                {"conn_type": "slack", "password": planted["slack_token"], "extra": {"base_url": slack.url + "/api/"}}
            ),
        ):
            from retrain_lib.core.settings import load_settings

            settings = load_settings(cfg_dir)
            assert settings.database_url == db_url
            bag = DagBag(dag_folder=str(REPO / "dags"))
            assert bag.import_errors == {}
            retrain, monitor = bag.dags[f"{MODEL}__retrain"], bag.dags[f"{MODEL}__monitor"]

            # the platform at work: a promotion, a monitor check, a task that fails for good
            run = retrain.test(
                logical_date=dt.datetime(2026, 1, 29, 3, tzinfo=dt.UTC),
                run_conf={"as_of": "2026-01-29", "reason": "secrets"},
            )
            assert run.state == "success", task_states(retrain.dag_id, run.run_id)
            run = monitor.test(logical_date=dt.datetime(2026, 1, 31, 6, tzinfo=dt.UTC))
            assert run.state == "success", task_states(monitor.dag_id, run.run_id)
            run = retrain.test(run_conf={"as_of": "2025-06-01", "reason": "secrets"})  # no data that day
            assert run.state == "failed"
            texts = [p["text"] for p in slack.payloads(f"/services/T0SECRET/B0SECRET/{planted['slack_webhook']}")]
            assert any("promoted" in t for t in texts) and any("failed" in t for t in texts), texts

            # ... and in trouble: Slack unreachable, the platform database unreachable, a malformed URL
            from retrain_lib.core.config import load_model_config

            alerts_cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml").alerts
            a = alerts.rollback(MODEL, {"from": "2", "to": "1", "reason": "secrets"})
            down = alerts_cfg.model_copy(update={"slack_conn_id": "slack_down", "retries": 1, "retry_seconds": 0.01})
            assert alerting.send(down, settings, "rollback", lambda severity: a) == "failed"
            import dataclasses

            no_db = dataclasses.replace(settings, database_url=dead_db)
            assert alerting.send(alerts_cfg, no_db, "rollback", lambda severity: a) == "sent"
            bad_url = f"postgres ql://postgres:{planted['db_password']}@127.0.0.1/{pg_db}"
            with pytest.raises(ConfigError) as err:
                Ledger(bad_url).records()
            logging.getLogger("tests.secrets").error("ledger failed: %s", err.value)  # as a task would log it
            with env(RETRAIN_DB_URL=bad_url):
                assert main(["--config-dir", str(cfg_dir), "ledger", "verify", "--format", "json"]) == 2
            assert main(["--config-dir", str(cfg_dir), "history", MODEL, "--format", "json"]) == 0
            assert main(["--config-dir", str(cfg_dir), "status", "--format", "json"]) == 0

            # the fleet UI, in-process
            ui = TestClient(create_app(lambda: settings, require_auth=False), root_path="/retrain")
            pages = [ui.get(p) for p in ("/", f"/models/{MODEL}", "/api/status", f"/api/status/{MODEL}")]
            assert all(p.status_code == 200 for p in pages), [p.status_code for p in pages]
            sinks["ui"] = "\n".join(p.text for p in pages)

            out, err_text = capfd.readouterr()
            logs_dir = Path(airflow_db).parent / "logs"
            sinks["task logs and output"] = "\n".join([out, err_text, caplog.text]) + (
                _files_text(logs_dir).decode(errors="replace") if logs_dir.exists() else ""
            )
            sinks["xcom"] = _xcom_text([retrain.dag_id, monitor.dag_id])
            sinks["airflow metadata db"] = Path(airflow_db).read_bytes().decode("latin-1")
            sinks["mlflow"] = _mlflow_text(settings)
            sinks["mlflow artifacts and state files"] = _files_text(settings.state_dir).decode("latin-1")
            sinks["ledger"] = json.dumps(Ledger(db_url).records(), default=str)
            sinks["slack payloads"] = json.dumps([body for _, body in slack.requests])
    finally:
        slack.close()
    # the sinks hold what happened (so the grep below means something), with the secrets masked
    logs = sinks["task logs and output"]
    assert "alert de-duplication store postgresql+psycopg://postgres:***@" in logs
    assert "Slack alert rollback of credit_default: attempt 2 of 2 failed" in logs
    assert "is not a SQLAlchemy URL" in logs and "postgres:***@" in logs
    assert sinks["ledger"].count('"event"') >= 3 and "promote" in sinks["ledger"]
    assert "roc_auc" in sinks["mlflow"] and "credit_default" in sinks["ui"]
    leaks = sorted((secret, sink) for secret, value in planted.items() for sink, text in sinks.items() if value in text)
    reliability("secrets", secret_leaks=len(leaks), secrets_planted=len(planted), sinks_checked=len(sinks))
    assert leaks == [], leaks
