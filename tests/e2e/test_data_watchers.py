"""Sensor-triggered monitoring under the real Airflow 3.3 scheduler and triggerer.

``credit_default`` reads daily parquet partitions from S3 (a moto server over HTTP, in this
process) and turns on both watchers of ``schedule.new_data``: the new-partition trigger and a
Redis pub/sub queue (the machine's Redis, on a channel unique to this test). Airflow runs as
``api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` processes on a fresh
PostgreSQL metadata database, the way a deployment does; every process is started here and
stopped by its PID (process group) in the fixture's teardown.

(a) a parquet file for a new day dropped into S3 starts a monitor run whose ``as_of`` is that
day; (b) ``{"day": ...}`` published on Redis starts a monitor run for that day.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import yaml
from services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL = "credit_default"
MONITOR = f"{MODEL}__monitor"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
REDIS_URL = "redis://127.0.0.1:6379/0"
BUCKET, PREFIX = "lake", "models/credit"
STARTUP_TIMEOUT = 240
RUN_TIMEOUT = 300


def _descendants(pids: set[int]) -> set[int]:
    """Every live process under ``pids`` (task processes start sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2 :].split()
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
    out, frontier = set(), list(pids)
    while frontier:
        pid = frontier.pop()
        for child in children.get(pid, []):
            if child not in out:
                out.add(child)
                frontier.append(child)
    return out


class Airflow:
    """The Airflow processes of this module; ``stop()`` ends each by the PID started here."""

    def __init__(self, root: Path, env: dict[str, str]):
        self.root, self.env = root, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.seen: set[int] = set()

    def start(self, name: str, *args: str) -> None:
        with open(self.root / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                [str(BIN / "airflow"), *args],
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def track(self) -> None:
        self.seen |= _descendants({p.pid for p in self.procs.values()})

    def stop(self) -> list[int]:
        self.track()
        for p in self.procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 25
        for p in self.procs.values():
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)

        # task processes of ours run in sessions of their own: a task still running when the
        # services stopped gets SIGTERM and a grace period, then SIGKILL
        def alive() -> list[int]:
            return [pid for pid in self.seen if Path(f"/proc/{pid}").exists() and _alive(pid)]

        for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
            pending = alive()
            if not pending:
                break
            print(f"task processes still running after the services stopped, sending {sig.name}: {pending}")
            for pid in pending:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while alive() and time.monotonic() < deadline:
                time.sleep(0.2)
        return alive()

    def diagnostics(self, dsn: str) -> str:
        parts = [f"exited: { {n: p.returncode for n, p in self.procs.items() if p.poll() is not None} }"]
        for name in self.procs:
            lines = (self.root / f"{name}.log").read_text(errors="replace").splitlines()
            parts.append(f"--- {name}.log ---\n" + "\n".join(lines[-30:]))
        with psycopg.connect(dsn, autocommit=True) as con:
            for sql in (
                "SELECT dag_id, run_id, run_type, state FROM dag_run ORDER BY id",
                "SELECT run_id, task_id, state FROM task_instance ORDER BY start_date",
                "SELECT asset_id, extra, timestamp FROM asset_event ORDER BY id",
                "SELECT key, value FROM asset_state_store",
                "SELECT id, classpath FROM trigger",
                "SELECT filename, stacktrace FROM import_error",
            ):
                parts.append(f"--- {sql} ---\n" + "\n".join(map(str, con.execute(sql))))
        return "\n".join(parts)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def pg_database():
    name = f"retrain_watch_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def watched(tmp_path_factory, s3_endpoint, pg_database):
    """28 days of credit data in S3, the model watching it and a Redis channel, and Airflow up."""
    import boto3

    from retrain_lib.core.config import load_model_config
    from retrain_lib.tools.simulate import simulate

    root = tmp_path_factory.mktemp("watch")
    channel = f"retrain.{MODEL}.new_data.{uuid.uuid4().hex[:8]}"  # the shared Redis: a channel of our own
    cfg_dir, home, local = root / "configs", root / "airflow", root / "local"
    (cfg_dir / "models").mkdir(parents=True)
    home.mkdir()
    model = yaml.safe_load((REPO / "configs" / "models" / f"{MODEL}.yaml").read_text())
    model["data"].update(source="s3", bucket=BUCKET, path=PREFIX, labels_path=f"{PREFIX}/labels")
    model["schedule"].update(
        monitor="0 0 1 1 *",  # once a year: every run of this test comes from a watcher
        new_data={"partitions": {"poll_seconds": 2}, "queue": {"conn_id": "retrain_redis", "channel": channel}},
    )
    (cfg_dir / "models" / f"{MODEL}.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    platform = yaml.safe_load((REPO / "configs" / "platform.yaml").read_text()) or {}
    platform["s3"] = {"endpoint_url": s3_endpoint}
    (cfg_dir / "platform.yaml").write_text(yaml.safe_dump(platform, sort_keys=False))

    cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
    simulate(cfg, local, days=30, drift_kind="none", rows_per_day=400, seed=5)  # 2026-01-01 .. 01-30
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS["AWS_DEFAULT_REGION"],
    )
    s3.create_bucket(Bucket=BUCKET)
    held_back = {}
    files = sorted((local / PREFIX).rglob("*.parquet"))  # simulate writes under data.path
    assert len(files) > 50, files
    for f in files:
        key = f"{PREFIX}/{f.relative_to(local / PREFIX)}"
        if f.name >= "2026-01-29" and "labels" not in key:
            held_back[f.name[:10]] = (str(f), key)  # the days the test drops in
        else:
            s3.upload_file(str(f), BUCKET, key)

    port, log_port = free_port(), free_port()
    passwords = home / "simple_auth_manager_passwords.json.generated"
    passwords.write_text(json.dumps({"admin": secrets.token_hex(8)}) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RETRAIN", "MLFLOW", "AWS"))}
    env.update(AWS)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # only the monitor is unpaused
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{PG}/{pg_database}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"{PG}/{pg_database}",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
            "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "60",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "AIRFLOW_CONN_RETRAIN_REDIS": REDIS_URL,
            "RETRAIN_HOME": str(root / "state"),
            "RETRAIN_CONFIG_DIR": str(cfg_dir),
            "RETRAIN_STRICT": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            "GIT_OPTIONAL_LOCKS": "0",
        }
    )
    migrate = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, cwd=root, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    airflow = Airflow(root, env)
    dsn = f"postgresql://postgres@127.0.0.1:5432/{pg_database}"
    try:
        airflow.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
        airflow.start("dag-processor", "dag-processor")
        airflow.start("scheduler", "scheduler")
        airflow.start("triggerer", "triggerer")
        yield {"airflow": airflow, "dsn": dsn, "s3": s3, "held_back": held_back, "channel": channel}
    finally:
        left = airflow.stop()
        assert not left, f"processes that outlived SIGKILL: {left}"


def _wait(what: str, watched: dict, timeout: float, check):
    deadline = time.monotonic() + timeout
    while True:
        watched["airflow"].track()
        dead = {n: p.returncode for n, p in watched["airflow"].procs.items() if p.poll() is not None}
        assert not dead, f"Airflow process(es) exited waiting for {what}: {dead}\n" + watched["airflow"].diagnostics(
            watched["dsn"]
        )
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}\n" + watched[
            "airflow"
        ].diagnostics(watched["dsn"])
        time.sleep(2)


def _rows(watched: dict, sql: str, *args) -> list[tuple]:
    with psycopg.connect(watched["dsn"], autocommit=True) as con:
        return list(con.execute(sql, args))


@pytest.fixture(scope="module")
def monitoring(watched):
    """The monitor DAG parsed and unpaused, and the partition watcher's first look recorded."""

    def parsed():
        errors = _rows(watched, "SELECT filename, stacktrace FROM import_error")
        assert not errors, errors
        return _rows(watched, "SELECT dag_id FROM dag WHERE dag_id = %s", MONITOR)

    _wait("the dag-processor to parse the monitor", watched, STARTUP_TIMEOUT, parsed)
    _rows(watched, "UPDATE dag SET is_paused = false WHERE dag_id = %s RETURNING dag_id", MONITOR)

    def baseline():
        rows = _rows(watched, "SELECT value FROM asset_state_store WHERE key = 'new_partition'")
        return json.loads(rows[0][0]) if rows else None

    state = _wait("the partition watcher's first look", watched, STARTUP_TIMEOUT, baseline)
    # the 28 days already in S3 are history: no run for them
    assert state == {"where": f"s3://{BUCKET}/{PREFIX}/", "last_day": "2026-01-28"}, state
    return watched


def _watched_runs(watched: dict) -> dict[str, str]:
    rows = _rows(
        watched, "SELECT run_id, state FROM dag_run WHERE dag_id = %s AND run_type = 'asset_triggered'", MONITOR
    )
    return dict(rows)


def _checked_day(watched: dict, run_id: str) -> str | None:
    """The ``as_of`` of the run's check_model (its XCom), once it succeeded."""
    rows = _rows(
        watched,
        "SELECT ti.state, x.value FROM task_instance ti LEFT JOIN xcom x ON x.dag_id = ti.dag_id "
        "AND x.run_id = ti.run_id AND x.task_id = ti.task_id AND x.key = 'return_value' "
        "WHERE ti.dag_id = %s AND ti.run_id = %s AND ti.task_id = 'check_model'",
        MONITOR,
        run_id,
    )
    if not rows or rows[0][0] in (None, "queued", "scheduled", "running", "up_for_retry", "deferred"):
        return None
    state, value = rows[0]
    assert state == "success", f"check_model of {run_id}: {state}\n" + watched["airflow"].diagnostics(watched["dsn"])
    value = json.loads(value) if isinstance(value, str) else value
    return value["as_of"]


def _new_run(watched: dict, before: set[str]) -> str:
    def created():
        return sorted(set(_watched_runs(watched)) - before)

    (run_id,) = _wait("an asset-triggered monitor run", watched, RUN_TIMEOUT, created)
    return run_id


def test_a_partition_dropped_into_s3_starts_a_monitor_run_for_its_day(monitoring):
    t0 = time.monotonic()
    assert _watched_runs(monitoring) == {}  # the backlog started nothing
    before = set(_watched_runs(monitoring))
    path, key = monitoring["held_back"]["2026-01-29"]
    monitoring["s3"].upload_file(path, BUCKET, key)

    run_id = _new_run(monitoring, before)
    noticed = time.monotonic() - t0
    day = _wait(f"check_model of {run_id}", monitoring, RUN_TIMEOUT, lambda: _checked_day(monitoring, run_id))
    assert day == "2026-01-29"
    (extra,) = _rows(
        monitoring,
        "SELECT e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.name = %s",
        f"{MODEL}.new_data",
    )
    payload = (json.loads(extra[0]) if isinstance(extra[0], str) else extra[0])["payload"]
    assert payload["day"] == "2026-01-29" and payload["source"] == f"s3://{BUCKET}/{PREFIX}/"
    print(f"S3 partition: run created {noticed:.0f} s after the upload, checked in {time.monotonic() - t0:.0f} s")
    # announced once: the watcher's state moved on, and no second run follows
    (state,) = _rows(monitoring, "SELECT value FROM asset_state_store WHERE key = 'new_partition'")
    assert json.loads(state[0])["last_day"] == "2026-01-29"
    time.sleep(8)  # four more looks of the watcher
    assert set(_watched_runs(monitoring)) == {run_id}


def test_a_message_on_redis_starts_a_monitor_run_for_the_day_it_names(monitoring):
    import redis

    t0 = time.monotonic()
    client = redis.Redis.from_url(REDIS_URL)
    channel = monitoring["channel"]

    def listening():
        return dict(client.pubsub_numsub(channel)).get(channel.encode(), 0) > 0

    _wait(f"the queue watcher to subscribe to {channel}", monitoring, STARTUP_TIMEOUT, listening)
    before = set(_watched_runs(monitoring))
    # an earlier day than the newest partition: the run checks the day the message names
    assert client.publish(channel, json.dumps({"day": "2026-01-27"})) >= 1
    run_id = _new_run(monitoring, before)
    day = _wait(f"check_model of {run_id}", monitoring, RUN_TIMEOUT, lambda: _checked_day(monitoring, run_id))
    assert day == "2026-01-27"
    extra = _rows(monitoring, "SELECT extra FROM asset_event ORDER BY id DESC LIMIT 1")[0][0]
    payload = (json.loads(extra) if isinstance(extra, str) else extra)["payload"]
    assert payload["channel"] == channel and json.loads(payload["data"]) == {"day": "2026-01-27"}, payload
    print(f"Redis message: monitor run {run_id} checked 2026-01-27 in {time.monotonic() - t0:.0f} s")
