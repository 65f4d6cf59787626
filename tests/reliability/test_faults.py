"""Infrastructure faults injected into real runs: the MLflow server down during promotion, S3
unreachable while loading data, the platform's PostgreSQL restarted during a run, a worker
killed in the middle of training, Slack down. Each test asserts what the platform did, that
nothing was lost and that no unvalidated model moved."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from airflow_runs import task_states
from harness import (
    BIN,
    MlflowServer,
    PrivatePostgres,
    champion,
    fake_slack,
    free_port,
    make_platform,
    platform_env,
    stop,
    versions,
)

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
WEBHOOK_PATH = "/services/T000/B000/RELIABILITY"


def _slack_env(slack) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_SLACK_RETRAIN": json.dumps({"conn_type": "slackwebhook", "password": slack.url + WEBHOOK_PATH})
    }


def _clear_runs() -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run in session.query(DagRun).all():
            session.delete(run)


def _fast_retries(dag, *task_ids: str) -> None:
    """Keep the DAG's retries (2) but not their 30 s+ waits, so ``dag.test()`` gets through them."""
    for task_id in task_ids or dag.task_dict:
        t = dag.task_dict[task_id]
        t.retry_delay = dt.timedelta(seconds=1)
        t.retry_exponential_backoff = False


def _ledger(settings):
    from retrain_lib.store.audit import Ledger

    return Ledger.from_settings(settings)


# -----------------------------------------------------------------------------------------
# MLflow down during promotion
# -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_fault_mlflow_server_down_during_promotion(airflow_db, tmp_path, monkeypatch, reliability):
    """A real ``mlflow server`` is stopped when the retrain DAG reaches ``deploy_candidate``:
    the task is retried (2 retries), fails, and the failure alert reaches Slack; no alias
    moved and the ledger has no promotion. With the server back, the step retried (twice,
    as a retry after a lost acknowledgement would) promotes the registered version exactly once."""
    from airflow.dag_processing.dagbag import DagBag

    from retrain_lib.pipeline import promotion
    from retrain_lib.pipeline.records import Evaluation, Registered, Snapshot, TrainedRun

    reliability("fault")
    _clear_runs()
    server = MlflowServer(tmp_path / "mlflow")
    slack = fake_slack()
    settings, cfg_dir = make_platform(tmp_path, days=29)
    try:
        server.start()
        with platform_env(
            tmp_path,
            cfg_dir,
            MLFLOW_TRACKING_URI=server.uri,
            RETRAIN_STRICT="1",
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
            MLFLOW_HTTP_REQUEST_TIMEOUT="10",
            **_slack_env(slack),
        ):
            from retrain_lib.core.settings import load_settings

            settings = load_settings(cfg_dir)
            assert settings.tracking_uri == server.uri
            real = promotion.deploy_candidate
            calls = []

            def deploy_while_mlflow_goes_down(*args, **kwargs):
                calls.append(kwargs.get("actor"))
                if len(calls) == 1:
                    server.kill()  # the tracking server dies as the promotion starts
                return real(*args, **kwargs)

            monkeypatch.setattr(promotion, "deploy_candidate", deploy_while_mlflow_goes_down)
            bag = DagBag(dag_folder=str(REPO / "dags"))
            assert bag.import_errors == {}
            dag = bag.dags[f"{MODEL}__retrain"]
            _fast_retries(dag, "deploy_candidate")
            run = dag.test(
                logical_date=dt.datetime(2026, 1, 29, 3, tzinfo=dt.UTC),
                run_conf={"as_of": "2026-01-29", "reason": "reliability"},
            )
            monkeypatch.setattr(promotion, "deploy_candidate", real)
            states = task_states(dag.dag_id, run.run_id)
            assert run.state == "failed", states
            assert states["deploy_candidate"] == "failed", states
            assert len(calls) == 3, calls  # first try + 2 retries
            failures = [p for p in slack.payloads(WEBHOOK_PATH) if "Task failed" in json.dumps(p)]
            assert len(failures) == 1, slack.payloads(WEBHOOK_PATH)
            assert "deploy_candidate failed" in failures[0]["text"] and "try 3 of 3" in failures[0]["text"]
            assert "MlflowException" in failures[0]["text"]

            server.start()
            assert versions(settings) == ["1"]  # registered before MLflow went down
            assert champion(settings) is None  # ... and never promoted
            events = [r["event"] for r in _ledger(settings).records(MODEL)]
            assert events == ["gates"], events  # no promotion recorded

            # MLflow is back: the step again, with the inputs the task had (XCom)
            xcom = _xcoms(dag.dag_id, run.run_id)
            outs = [
                promotion.deploy_candidate(
                    MODEL,
                    Registered.from_xcom(xcom["register_candidate"]),
                    Evaluation.from_xcom(xcom["evaluate_candidate"]),
                    settings=settings,
                    as_of="2026-01-29",
                    actor="retry",
                    reason="reliability",
                    snap=Snapshot.from_xcom(xcom["snapshot_data"]),
                    trained=TrainedRun.from_xcom(xcom["train_candidate"]),
                )
                for _ in range(2)
            ]
            assert outs[0].moves and not outs[1].moves, outs  # the second retry is a no-op
            assert versions(settings) == ["1"] and champion(settings) == "1"
            promotions = [r for r in _ledger(settings).records(MODEL) if r["event"] == "promote"]
            assert [(r["before"], r["after"]) for r in promotions] == [(None, "1")]
            assert _ledger(settings).verify() == []
    finally:
        server.stop()
        slack.close()


def _xcoms(dag_id: str, run_id: str) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id, key="return_value").all()
        return {row.task_id: XComModel.deserialize_value(row) for row in rows}


# -----------------------------------------------------------------------------------------
# S3 unreachable
# -----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_fault_s3_unreachable_while_loading_data(tmp_path, reliability):
    """Data in S3 whose endpoint does not answer: the load fails with a network error (a
    transient error: the task's retries run, it is not a bad-input failure), nothing is
    snapshotted, trained or recorded, and nothing is quarantined."""
    from botocore.exceptions import BotoCoreError

    from retrain_lib.core.errors import DataError
    from retrain_lib.pipeline.snapshot import snapshot_data

    reliability("fault")

    def to_s3(raw):
        raw["data"].update(source="s3", bucket="ml-data", path="credit", labels_path="credit/labels")
        raw.pop("validation", None)

    settings, cfg_dir = make_platform(tmp_path, edit=to_s3, days=1)
    dead = f"http://127.0.0.1:{free_port()}"
    with platform_env(
        tmp_path,
        cfg_dir,
        AWS_ENDPOINT_URL=dead,
        AWS_ACCESS_KEY_ID="AKIARELIABILITY",
        AWS_SECRET_ACCESS_KEY="reliability-secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="2",
        AWS_RETRY_MODE="standard",
        AWS_EC2_METADATA_DISABLED="true",
    ):
        from retrain_airflow.task_adapter import fail_fast

        t0 = time.monotonic()
        with pytest.raises(BotoCoreError) as err:  # what the snapshot_data task runs
            fail_fast(snapshot_data, MODEL, "2026-01-30", settings=settings)
        # transient: not a DataError, so not turned into AirflowFailException, so the task's retries run
        assert not isinstance(err.value, DataError)
        assert dead.split("//")[1] in str(err.value) or "Could not connect" in str(err.value), err.value
        assert time.monotonic() - t0 < 60
    assert _ledger(settings).records() == []
    assert not (settings.state_dir / "quarantine").exists()
    assert not (settings.state_dir / "data-registry").exists()
    assert not (settings.state_dir / "mlflow").exists() or versions(settings) == []


# -----------------------------------------------------------------------------------------
# PostgreSQL restarted during a run
# -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def private_pg():
    why = PrivatePostgres.available()
    if why:
        pytest.skip(why)
    pg = PrivatePostgres()
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        pg.cleanup()


@pytest.mark.slow
@pytest.mark.integration
def test_fault_postgres_restarted_during_a_retrain(tmp_path, private_pg, reliability):
    """The platform database (ledger) on a private PostgreSQL cluster, restarted between the
    steps of one retrain (after training, before the gates write their record and the
    promotion its compare-and-swap entry): the run completes, the pooled connections that
    died with the server are replaced, and the ledger has every record, chained and verifiable."""
    from retrain_lib.pipeline.evaluation import check_gates, evaluate_candidate
    from retrain_lib.pipeline.promotion import deploy_candidate
    from retrain_lib.pipeline.registration import register_candidate
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.pipeline.snapshot import snapshot_data
    from retrain_lib.pipeline.training_run import train_candidate
    from retrain_lib.store import audit

    reliability("fault")
    settings, cfg_dir = make_platform(tmp_path)
    db_url = private_pg.url()
    with platform_env(tmp_path, cfg_dir, RETRAIN_DB_URL=db_url):
        from retrain_lib.core.settings import load_settings

        settings = load_settings(cfg_dir)
        assert settings.database_url.startswith("postgresql")
        first = retrain_model(MODEL, "2026-01-28", settings=settings, actor="setup")
        assert first.outcome == "deployed", first
        before = _ledger(settings).records()

        snap = snapshot_data(MODEL, "2026-02-03", settings=settings, actor="pg")
        trained = train_candidate(MODEL, snap, settings=settings, run_key="pg", actor="pg")
        private_pg.restart()  # every pooled connection of the ledger engine is dead now
        evaluation = evaluate_candidate(MODEL, snap, trained, settings=settings)
        gates = check_gates(MODEL, evaluation, trained, settings=settings, as_of=snap.as_of, actor="pg", snap=snap)
        assert gates.passed, gates
        registered = register_candidate(MODEL, snap, trained, evaluation, gates, settings=settings)
        private_pg.restart()
        deployed = deploy_candidate(
            MODEL,
            registered,
            evaluation,
            settings=settings,
            as_of=snap.as_of,
            actor="pg",
            reason="reliability",
            snap=snap,
            trained=trained,
        )
        assert deployed.champion == registered.version == "2"
        after = _ledger(settings).records()
        assert after[: len(before)] == before  # nothing lost
        assert [r["event"] for r in after[len(before) :]] == ["gates", "promote"]
        assert (after[-1]["before"], after[-1]["after"]) == ("1", "2")
        assert _ledger(settings).verify() == []
        assert champion(settings) == "2"
        for (url, _pid), engine in list(audit._engines.items()):
            if url.startswith(db_url.split("/postgres")[0]):
                engine.dispose()


# -----------------------------------------------------------------------------------------
# A worker killed in the middle of training
# -----------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.mark.slow
@pytest.mark.integration
def test_fault_worker_killed_mid_training_then_retry_yields_one_version(tmp_path, reliability):
    """``retrain retrain`` (the retrain DAG's steps in one worker process) is killed with
    SIGKILL while its training child process runs; the retry registers exactly one new version
    and promotes it once, and the killed attempt left no finished run to reuse by mistake."""
    from retrain_lib.store import registry

    reliability("fault")

    def slow_fit(raw):
        raw["training"]["timeout_minutes"] = 5  # the fit runs in a child process
        raw["training"]["params"] = {"max_iter": 100, "max_leaf_nodes": 15, "early_stopping": False}

    settings, cfg_dir = make_platform(tmp_path, edit=slow_fit, rows_per_day=300)
    cmd = [
        str(BIN / "python"),
        "-m",
        "retrain_lib",
        "--config-dir",
        str(cfg_dir),
        "retrain",
        MODEL,
        "--as-of",
        "2026-01-30",
    ]
    with platform_env(tmp_path, cfg_dir):
        envv = dict(os.environ)
    out = tmp_path / "killed-worker.log"
    with open(out, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=envv, start_new_session=True)
    killed_during_fit = False
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            fitting = [
                c for c in _children(proc.pid) if "spawn_main" in _cmdline(c) and "resource_tracker" not in _cmdline(c)
            ]
            if fitting:
                time.sleep(0.5)  # the training child is starting up or fitting: the training step runs
                killed_during_fit = proc.poll() is None and any(Path(f"/proc/{c}").exists() for c in fitting)
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.05)
        proc.wait(30)
    finally:
        stop(proc, sig=signal.SIGKILL)
    assert killed_during_fit, out.read_text()[-3000:]
    assert proc.returncode == -signal.SIGKILL
    with platform_env(tmp_path, cfg_dir):
        assert versions(settings) == []
        assert champion(settings) is None
        retry = subprocess.run(cmd, capture_output=True, text=True, env=envv, timeout=300)
        assert retry.returncode == 0, retry.stdout[-3000:] + retry.stderr[-3000:]
        assert versions(settings) == ["1"]  # exactly one new version
        assert champion(settings) == "1"
        client = registry.get_client(settings.tracking_uri)
        exp = client.get_experiment_by_name(settings.experiment_name(MODEL))
        finished = client.search_runs(
            [exp.experiment_id], "tags.`retrain.kind` = 'train' and attributes.status = 'FINISHED'"
        )
        assert len(finished) == 1
        promotions = [r for r in _ledger(settings).records(MODEL) if r["event"] == "promote"]
        assert [(r["before"], r["after"]) for r in promotions] == [(None, "1")]
        assert _ledger(settings).verify() == []


# -----------------------------------------------------------------------------------------
# Slack down
# -----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.integration
def test_fault_slack_down_changes_no_outcome_and_loses_no_alert(airflow_db, tmp_path, reliability):
    """Slack answers 500 to every post while a retrain DAG run promotes its first champion:
    the run still succeeds and promotes exactly once; the promotion alert was tried, logged
    as failed, and (not counted as sent) goes out when Slack is back."""
    from airflow.dag_processing.dagbag import DagBag

    from retrain_lib.pipeline import alert_delivery, alerts
    from retrain_lib.pipeline.records import DeployOutcome

    reliability("fault")
    _clear_runs()
    slack = fake_slack()
    slack.status = 500

    def fast_alerts(raw):
        raw["alerts"] = {"slack_conn_id": "slack_retrain", "retries": 1, "retry_seconds": 0.05}

    settings, cfg_dir = make_platform(tmp_path, edit=fast_alerts)
    try:
        with platform_env(tmp_path, cfg_dir, RETRAIN_STRICT="1", **_slack_env(slack)):
            bag = DagBag(dag_folder=str(REPO / "dags"))
            assert bag.import_errors == {}
            dag = bag.dags[f"{MODEL}__retrain"]
            run = dag.test(
                logical_date=dt.datetime(2026, 1, 30, 3, tzinfo=dt.UTC),
                run_conf={"as_of": "2026-01-30", "reason": "reliability"},
            )
            states = task_states(dag.dag_id, run.run_id)
            assert run.state == "success", states
            assert states["deploy_candidate"] == "success"
            assert champion(settings) == "1" and versions(settings) == ["1"]
            tried = slack.payloads(WEBHOOK_PATH)
            assert len(tried) == 2 and "promoted" in tried[0]["text"], tried  # first try + 1 retry, both 500
            promotions = [r for r in _ledger(settings).records(MODEL) if r["event"] == "promote"]
            assert len(promotions) == 1
            # Slack is back: the alert that failed was not recorded as sent, so it is not suppressed
            slack.status = 200
            slack.requests.clear()
            from retrain_airflow import alerting

            from retrain_lib.core.config import load_model_config

            same = alerts.promotion(
                MODEL,
                DeployOutcome.from_xcom(
                    {"mode": "direct", "version": "1", "moves": [{"alias": "champion", "from": None, "to": "1"}]}
                ),
            )
            row = alert_delivery.DedupeStore.from_settings(settings).last_sent(same)
            assert row is None or row["sent_at"] == 0.0, row  # the failed send is not counted as sent
            model_cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
            assert alerting.send(model_cfg.alerts, settings, "promotion", lambda severity: same) == "sent"
            assert len(slack.payloads(WEBHOOK_PATH)) == 1
    finally:
        slack.close()
