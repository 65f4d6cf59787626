"""docker-compose.yaml's topology, natively: proof that the shipped file works.

``retrain_native`` reads ``docker-compose.yaml`` (environment and command of every service)
and starts the same processes on this machine: Airflow with the CeleryExecutor on a fresh
PostgreSQL database and a free Redis database, two Celery workers, scheduler, dag-processor,
triggerer and api-server; an MLflow server on PostgreSQL with its artifacts in S3 (a moto
server standing in for MinIO); the serving gateway. The example models read their data from
S3, the DVC remote is in S3, the ledger and the prediction log are in PostgreSQL.

The test triggers both example models' monitors through Airflow's REST API (authenticated).
With no champion yet each monitor requests a retrain, which snapshots, trains, evaluates,
passes its gates and promotes version 1 in MLflow; the tasks of these runs are spread over
both workers (their host names, as the REST API reports them). Then the gateway serves the
new champion and logs the prediction in PostgreSQL.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from retrain_native.compose import REPO
from retrain_native.topology import NativeTopology, s3_model_configs, upload_tree

pytestmark = [pytest.mark.production, pytest.mark.slow, pytest.mark.timeout(900)]

MODELS = ("credit_default", "daily_demand")
LOGICAL_DATE = "2026-01-29T06:00:00+00:00"
STARTUP_TIMEOUT = 180
RUN_TIMEOUT = 480
# The second monitor run of credit_default (drift.engine: profile), its window of 3 days
PROFILE_DATE = "2026-02-01T06:00:00+00:00"
PROFILE_DAYS = 3
ROWS_PER_DAY = {"credit_default": 600, "daily_demand": 300}
# The lifecycle's decisive tasks and the state each must end in (other tasks may exist too).
MONITOR_TASKS = {
    "check_model": "success",
    "decide_action": "success",
    "request_retrain": "success",
    "healthy": "skipped",
    "rollback_champion": "skipped",
}
RETRAIN_TASKS = {
    "snapshot_data": "success",
    "train_candidate": "success",
    "evaluate_candidate": "success",
    "check_gates": "success",
    "decide_promotion": "success",
    "register_candidate": "success",
    "deploy_candidate": "success",
    "reject_candidate": "skipped",
}


@pytest.fixture
def topology(tmp_path):
    from retrain_lib.core.config import load_model_config
    from retrain_lib.tools.simulate import simulate

    config_dir = s3_model_configs(REPO / "configs", tmp_path / "configs")
    # credit_default checks drift from profiles: its monitor maps one task per partition
    credit = config_dir / "models" / "credit_default.yaml"
    raw = yaml.safe_load(credit.read_text())
    raw["drift"].update(engine="profile", threshold=0.2, features={})
    credit.write_text(yaml.safe_dump(raw, sort_keys=False))
    topo = NativeTopology(
        tmp_path,
        config_dir,
        workers=2,
        variables={
            "AIRFLOW_WORKER_CONCURRENCY": "1",  # two tasks at a time = one on each worker
            "AIRFLOW_API_WORKERS": "1",
            "AIRFLOW_DAG_REFRESH_INTERVAL": "5",
            "RETRAIN_STRICT": "1",
        },
    )
    with topo:
        # The data pipeline's side: daily partitions and labels land in the bucket.
        local = tmp_path / "simulated"
        for i, model in enumerate(MODELS):
            cfg = load_model_config(REPO / "configs" / "models" / f"{model}.yaml")
            simulate(cfg, local, days=35, drift_kind="none", rows_per_day=ROWS_PER_DAY[model], seed=3 + i)
        assert upload_tree(topo.s3_client(), topo.env_vars["RETRAIN_BUCKET"], local) > 100
        yield topo
    report = topo.stop_report
    print(
        f"shutdown: return codes {report['returncodes']}; needed SIGKILL: {sorted(report['killed'].values()) or 'none'}"
    )


def _states(tis: dict[str, str], wanted: dict[str, str]) -> dict[str, str | None]:
    return {task: tis.get(task) for task in wanted}


def _run(topo: NativeTopology, token: str, dag_id: str, run_id: str) -> dict | None:
    status, run = topo.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}", token=token)
    if status == 404:
        return None
    assert status == 200, (status, run)
    status, body = topo.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", token=token)
    assert status == 200, (status, body)
    return {**run, "tis": {ti["task_id"]: ti for ti in body["task_instances"]}}


def test_example_models_go_through_the_whole_lifecycle_on_the_compose_topology(topology):
    topo = topology
    t0 = time.monotonic()
    token = topo.wait("a token from the api-server", STARTUP_TIMEOUT, topo.token)
    dags = {f"{m}__{kind}" for m in MODELS for kind in ("monitor", "retrain")}

    def parsed():
        errors = topo.import_errors()
        assert not errors, f"DAG import errors: {errors}"
        return dags <= topo.parsed_dags()

    topo.wait("the dag-processor to parse the models' DAGs", STARTUP_TIMEOUT, parsed)
    for dag_id in sorted(dags):  # paused at creation, as in production
        status, body = topo.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
        assert status == 200 and body["is_paused"] is False, (status, body)
    runs = {}
    for model in MODELS:
        status, body = topo.request(
            "POST", f"/api/v2/dags/{model}__monitor/dagRuns", {"logical_date": LOGICAL_DATE}, token
        )
        assert status == 200, (status, body)
        runs[model] = body["dag_run_id"]
    ready = time.monotonic() - t0
    finished = {"success", "failed"}

    def done():
        out = {}
        for model, monitor_id in runs.items():
            monitor = _run(topo, token, f"{model}__monitor", monitor_id)
            if monitor is None or monitor["state"] not in finished:
                return None
            retrain = _run(topo, token, f"{model}__retrain", f"requested__{monitor_id}")
            if monitor["state"] == "success" and (retrain is None or retrain["state"] not in finished):
                return None
            out[model] = (monitor, retrain)
        return out

    results = topo.wait("both models' monitor and retrain runs", RUN_TIMEOUT, done, poll=3)
    took = time.monotonic() - t0
    why = f"\n{topo.diagnostics()}"

    hosts = {}
    for model, (monitor, retrain) in results.items():
        mtis = {t: ti["state"] for t, ti in monitor["tis"].items()}
        assert monitor["state"] == "success", f"{model} monitor: {mtis}{why}"
        assert _states(mtis, MONITOR_TASKS) == MONITOR_TASKS, f"{model}: {mtis}{why}"
        assert retrain is not None and retrain["state"] == "success", f"{model} retrain: {retrain}{why}"
        rtis = {t: ti["state"] for t, ti in retrain["tis"].items()}
        assert _states(rtis, RETRAIN_TASKS) == RETRAIN_TASKS, f"{model}: {rtis}{why}"
        assert not {t for t, state in {**mtis, **rtis}.items() if state not in ("success", "skipped")}, why
        for run in (monitor, retrain):
            for task_id, ti in run["tis"].items():
                if ti["state"] == "success":
                    hosts[f"{run['dag_id']}.{task_id}"] = ti["hostname"]
    # Celery spread the tasks over both workers (each reports its own host name).
    assert set(hosts.values()) == {"w1", "w2"}, hosts

    # MLflow server (PostgreSQL backend): version 1 of each model is the champion, and its
    # artifacts went through the server to the S3 bucket.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=topo.mlflow_url, registry_uri=topo.mlflow_url)
    for model in MODELS:
        assert client.get_registered_model(model).aliases == {"champion": "1"}, model
    s3 = topo.s3_client()

    def keys(bucket: str, prefix: str) -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    mlflow_keys = keys(topo.env_vars["MLFLOW_BUCKET"], "artifacts/")
    assert any(k.endswith("MLmodel") for k in mlflow_keys), mlflow_keys[:20]
    # DVC remote in S3: each training set was pushed.
    assert len(keys(topo.env_vars["RETRAIN_BUCKET"], "dvc/")) >= len(MODELS)
    assert not list(Path(topo.root).glob("*.db")), "a process fell back to a SQLite store in its working directory"

    # The decision ledger in PostgreSQL: monitor -> gates -> promote per model, chain intact.
    from retrain_lib.store.audit import read_ledger, verify_ledger

    ledger = topo.database_url("retrain")
    for model in MODELS:
        assert [r["event"] for r in read_ledger(ledger, model)] == ["monitor", "gates", "promote"], model
    assert verify_ledger(ledger) == []

    # The gateway serves the new champion and logs the prediction in PostgreSQL.
    import pandas as pd

    from retrain_lib.core.config import load_model_config

    features = load_model_config(REPO / "configs" / "models" / "credit_default.yaml").features.all
    record = pd.read_parquet(Path(topo.root) / "simulated" / "credit_default" / "2026-01-29.parquet").iloc[0]
    payload = {"record": {k: (v.item() if hasattr(v, "item") else v) for k, v in record[features].items()}}
    gw_token = topo.env_vars["RETRAIN_GATEWAY_TOKEN"]

    def predicted():
        status, body = topo.request(
            "POST", "/v1/models/credit_default/predict", payload, gw_token, base=topo.gateway_url
        )
        return body if status == 200 else None

    body = topo.wait("the gateway to serve the new champion", 60, predicted, poll=2)
    assert body["predictions"][0]["version"] == "1", body
    with topo.sql("retrain") as con:
        tables = [
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        ]
        logged = [t for t in tables if "prediction" in t]
        assert logged, tables
        assert sum(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in logged) >= 1

    # drift.engine: profile with a champion: the current window's partitions are profiled by
    # mapped tasks, which Celery spreads over both workers
    status, body = topo.request(
        "POST", "/api/v2/dags/credit_default__monitor/dagRuns", {"logical_date": PROFILE_DATE}, token
    )
    assert status == 200, (status, body)
    profile_run = body["dag_run_id"]

    def profiled():
        run = _run(topo, token, "credit_default__monitor", profile_run)
        return run if run is not None and run["state"] in finished else None

    run = topo.wait("the monitor run with mapped profile tasks", RUN_TIMEOUT, profiled, poll=3)
    assert run["state"] == "success", f"{ {t: ti['state'] for t, ti in run['tis'].items()} }{why}"
    status, body = topo.request(
        "GET",
        f"/api/v2/dags/credit_default__monitor/dagRuns/{profile_run}/taskInstances/profile_partitions/listMapped",
        token=token,
    )
    assert status == 200, (status, body)
    mapped = {ti["map_index"]: (ti["state"], ti["hostname"]) for ti in body["task_instances"]}
    assert sorted(mapped) == list(range(PROFILE_DAYS)), mapped
    assert {state for state, _ in mapped.values()} == {"success"}, mapped
    # Celery gives a free worker the next task: 3 short tasks may all land on one worker (cc27)
    assert {host for _, host in mapped.values()} <= {"w1", "w2"}, mapped

    print(
        f"production topology: servers up after {topo.startup_s:.0f} s, DAGs parsed and runs triggered "
        f"{ready:.0f} s later, lifecycle done after {took:.0f} s; "
        f"tasks per worker: { {h: list(hosts.values()).count(h) for h in ('w1', 'w2')} }"
    )
