"""The model DAGs under the real Airflow 3.3 scheduler, not ``dag.test()``.

A fresh Airflow home in ``tmp_path``, with its metadata in a fresh PostgreSQL database
(created and dropped here) and the LocalExecutor, runs ``airflow api-server``,
``airflow scheduler`` and ``airflow dag-processor`` as separate processes, the way a
deployment does. The test triggers ``credit_default__monitor`` for 2026-01-29 through the
REST API; with no champion yet the monitor's branch requests a retrain, its
``TriggerDagRunOperator`` creates ``credit_default__retrain`` run
``requested__<monitor run id>``, and the scheduler runs that too, up to promotion of the
first champion in MLflow. Every process started here is stopped in the fixture's teardown,
and the test checks that none of them (nor any of their children) is left.

Then the data pipeline's signal: an event on the model's ``<model>.new_data`` Asset, with the
day that landed in its extra, makes the scheduler run the monitor for that day.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MODEL = "credit_default"
MONITOR = f"{MODEL}__monitor"
RETRAIN = f"{MODEL}__retrain"
LOGICAL_DATE = "2026-01-29T06:00:00+00:00"
STARTUP_TIMEOUT = 120  # api-server healthy, both DAGs parsed
RUN_TIMEOUT = 360  # monitor run and the retrain run it triggers both succeed
POLL = 2.0
STOP_GRACE = 20.0
ADMIN_PASSWORD = "e2e-" + secrets.token_hex(8)


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_table() -> dict[int, tuple[int, int, str, int]]:
    """pid -> (ppid, pgid, state, starttime) for every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()  # the command name may contain spaces and ')'
        table[int(entry)] = (int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
    return table


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


@dataclass
class Stack:
    """The Airflow processes of one test, and every descendant seen while they ran."""

    root: Path
    env: dict[str, str]
    port: int
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)  # pid -> starttime (pid reuse guard)
    settings: object = None  # retrain_lib Settings of the tmp state

    @property
    def home(self) -> Path:
        return Path(self.env["AIRFLOW_HOME"])

    @property
    def pg_dsn(self) -> str:
        return self.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg://", "postgresql://")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str, *args: str) -> None:
        out = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - closed by the child's exit
        try:
            self.procs[name] = subprocess.Popen(
                [str(BIN / "airflow"), *args],
                env=self.env,
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            out.close()
        self.track()

    def track(self) -> None:
        """Remember every descendant of the started processes (task processes change group)."""
        table = _proc_table()
        frontier = [p.pid for p in self.procs.values()]
        while frontier:
            pid = frontier.pop()
            if pid in table and table[pid][2] != "Z":
                self.seen.setdefault(pid, table[pid][3])
            frontier.extend(c for c, (ppid, *_rest) in table.items() if ppid == pid and c not in self.seen)

    def alive(self) -> dict[int, str]:
        """Tracked processes still running (same pid and start time, not a zombie)."""
        table = _proc_table()
        return {
            pid: _cmdline(pid)
            for pid, start in self.seen.items()
            if pid in table and table[pid][3] == start and table[pid][2] != "Z"
        }

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}

    def stop(self) -> dict:
        """SIGTERM each process group, wait up to STOP_GRACE s, then SIGKILL what is left."""
        self.track()
        report: dict = {"killed": {}}
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline:
            for p in self.procs.values():
                p.poll()
            if not self.alive():
                break
            time.sleep(0.25)
        left = self.alive()
        if left:
            report["killed"] = left
            for p in self.procs.values():
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in left:  # a task process in a group of its own
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        report["returncodes"] = {name: p.returncode for name, p in self.procs.items()}
        report["left"] = self.alive()
        return report

    # ----------------------------------------------------------------------- diagnostics

    def diagnostics(self, lines: int = 40) -> str:
        parts = [f"AIRFLOW_HOME={self.home}", f"exited: {self.exited()}"]
        for name in self.procs:
            parts.append(f"--- {name}.log (last {lines} lines) ---\n{_tail(self.root / f'{name}.log', lines)}")
        try:
            with self.sql() as con:
                parts.append(
                    "--- dag_run ---\n"
                    + "\n".join(
                        map(
                            str,
                            con.execute(
                                "SELECT dag_id, run_id, state, run_type, triggered_by FROM dag_run ORDER BY id"
                            ),
                        )
                    )
                )
                parts.append(
                    "--- task_instance ---\n"
                    + "\n".join(
                        map(
                            str,
                            con.execute(
                                "SELECT dag_id, run_id, task_id, state, try_number, hostname, pid FROM task_instance "
                                "ORDER BY dag_id, start_date"
                            ),
                        )
                    )
                )
                errors = list(con.execute("SELECT filename, stacktrace FROM import_error"))
                if errors:
                    parts.append(f"--- import errors ---\n{errors}")
        except psycopg.Error as exc:
            parts.append(f"(metadata DB not readable: {exc})")
        stray = sorted(str(p) for p in self.root.glob("*.db"))
        if stray:
            parts.append(
                f"--- stray database(s) in the processes' working directory: {stray} ---\n"
                "(a task used a default store, e.g. MLflow's sqlite:///mlflow.db, instead of the platform's)"
            )
        logs = sorted((self.home / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
        for path in logs[-4:]:
            parts.append(f"--- {path.relative_to(self.home)} (last 25 lines) ---\n{_tail(path, 25)}")
        return "\n".join(parts)

    def sql(self):
        return psycopg.connect(self.pg_dsn, autocommit=True)


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


# --------------------------------------------------------------------------- REST API


def _request(
    stack: Stack, method: str, path: str, body: dict | None = None, token: str | None = None, timeout: float = 30
) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(stack.base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"detail": raw.decode(errors="replace")}


def _wait(what: str, stack: Stack, timeout: float, check):
    """Poll ``check()`` every POLL s until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        stack.track()
        dead = stack.exited()
        assert not dead, f"Airflow process(es) exited while waiting for {what}: {dead}\n{stack.diagnostics()}"
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}\n{stack.diagnostics()}"
        time.sleep(POLL)


# --------------------------------------------------------------------------- fixture


PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_database():
    """A fresh PostgreSQL database for Airflow's metadata, dropped afterwards."""
    name = f"retrain_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def stack(tmp_path, monkeypatch, pg_database):
    """Simulated data, a migrated Airflow home, and api-server + scheduler + dag-processor."""
    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.simulate import simulate

    state = tmp_path / "state"
    cfg_dir = tmp_path / "configs"
    home = tmp_path / "airflow"
    home.mkdir()
    shutil.copytree(REPO / "configs", cfg_dir)

    # This process reads the same state the tasks write (ledger, MLflow store).
    monkeypatch.setenv("RETRAIN_HOME", str(state))
    monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(cfg_dir))
    monkeypatch.delenv("RETRAIN_DATA_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = load_settings(cfg_dir)
    assert settings.data_root == state / "data", settings
    cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml", settings.platform)
    simulate(cfg, settings.data_root, days=35, drift_kind="none", rows_per_day=600, seed=3)

    port, log_port = _free_port(), _free_port()
    passwords = home / "simple_auth_manager_passwords.json.generated"
    passwords.write_text(json.dumps({"admin": ADMIN_PASSWORD}) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"{PG}/{pg_database}",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": f"{PG}/{pg_database}",  # psycopg 3 is async too
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            # The scheduler's log server binds 8793 by default: taken when another Airflow runs here.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(log_port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
            "RETRAIN_HOME": str(state),
            "RETRAIN_CONFIG_DIR": str(cfg_dir),
            "RETRAIN_STRICT": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            "GIT_OPTIONAL_LOCKS": "0",  # the tasks' `git status` must not take the repo's index lock
        }
    )
    # Deliberately no MLFLOW_TRACKING_URI: like `make up`, the store comes from platform.yaml via
    # RETRAIN_HOME, so a step that relies on MLflow's global default (sqlite:///mlflow.db in the
    # working directory) instead of the platform's store fails here, as it would in production.
    for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "RETRAIN_DATA_ROOT", "PYTEST_CURRENT_TEST"):
        env.pop(k, None)

    migrate = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]

    s = Stack(root=tmp_path, env=env, port=port, settings=settings)
    try:
        s.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
        s.start("dag-processor", "dag-processor")
        s.start("scheduler", "scheduler")
        yield s
    finally:
        report = s.stop()
        assert not report["left"], f"processes still alive after SIGKILL: {report['left']}"
        # Surfaced by `pytest -rA` / on failure: what shutdown needed.
        print(f"shutdown: return codes {report['returncodes']}; needed SIGKILL: {report['killed'] or 'none'}")


# --------------------------------------------------------------------------- test


def _token(stack: Stack) -> str | None:
    try:
        status, body = _request(
            stack, "POST", "/auth/token", {"username": "admin", "password": ADMIN_PASSWORD}, timeout=5
        )
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None
    return body.get("access_token") if status == 201 else None


def _parsed(stack: Stack) -> bool:
    with stack.sql() as con:
        found = {
            r[0] for r in con.execute("SELECT dag_id FROM serialized_dag WHERE dag_id IN (%s, %s)", (MONITOR, RETRAIN))
        }
        errors = list(con.execute("SELECT filename, stacktrace FROM import_error"))
    assert not errors, f"DAG import errors: {errors}"
    return found == {MONITOR, RETRAIN}


def _task_log(stack: Stack, dag_id: str, run_id: str, task_id: str) -> list[str]:
    """The lines of a task's log file(s) under the Airflow home (every attempt)."""
    folder = stack.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
    files = sorted(folder.glob("**/*.log"))
    assert files, f"no log of {dag_id}/{run_id}/{task_id} under {folder}"
    return [line for f in files for line in f.read_text(errors="replace").splitlines()]


MAX_TASK_LOG_LINES = 100


def _assert_readable(lines: list[str], what: str) -> None:
    """A task log tells the platform's story, not the libraries' noise (issue 20: a monitor's
    check_model log had 1,160 skops/Airflow DeprecatedImportWarning lines and 209 Great
    Expectations "Skipping registering function" lines)."""
    noise = [line for line in lines if "DeprecatedImportWarning" in line or "Skipping registering function" in line]
    assert not noise, f"{what}: {len(noise)} lines of library noise, e.g. {noise[:2]}"
    assert len(lines) < MAX_TASK_LOG_LINES, f"{what}: {len(lines)} lines:\n" + "\n".join(lines[:200])


def _run(stack: Stack, dag_id: str, run_id: str) -> dict | None:
    with stack.sql() as con:
        con.row_factory = dict_row
        row = con.execute("SELECT * FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)).fetchone()
        if row is None:
            return None
        tis = con.execute(
            "SELECT task_id, state, hostname, pid, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id),
        ).fetchall()
    return {**dict(row), "tis": {t["task_id"]: dict(t) for t in tis}}


def test_monitor_triggers_a_retrain_that_promotes_the_first_champion_under_the_scheduler(stack):
    from retrain_lib.store import registry
    from retrain_lib.store.audit import read_ledger, verify_ledger

    t0 = time.monotonic()
    token = _wait("the api-server to issue a token", stack, STARTUP_TIMEOUT, lambda: _token(stack))
    _wait("the dag-processor to parse both DAGs", stack, STARTUP_TIMEOUT, lambda: _parsed(stack))
    for dag_id in (MONITOR, RETRAIN):
        status, body = _request(stack, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
        assert status == 200 and body["is_paused"] is False, (status, body)

    status, body = _request(stack, "POST", f"/api/v2/dags/{MONITOR}/dagRuns", {"logical_date": LOGICAL_DATE}, token)
    assert status == 200, (status, body)
    monitor_run_id = body["dag_run_id"]
    retrain_run_id = f"requested__{monitor_run_id}"
    ready = time.monotonic() - t0

    finished = {"success", "failed"}

    def done():
        monitor = _run(stack, MONITOR, monitor_run_id)
        if monitor is None or monitor["state"] not in finished:
            return None
        if monitor["state"] == "failed":
            return monitor, None  # fail below with diagnostics
        retrain = _run(stack, RETRAIN, retrain_run_id)
        if retrain is None:
            # The monitor succeeded; the retrain run exists only if the branch chose request_retrain.
            if monitor["tis"].get("request_retrain", {}).get("state") == "skipped":
                return monitor, None
            return None
        return (monitor, retrain) if retrain["state"] in finished else None

    monitor, retrain = _wait(f"{MONITOR}/{monitor_run_id} and {RETRAIN}/{retrain_run_id}", stack, RUN_TIMEOUT, done)
    took = time.monotonic() - t0
    why = f"\n{stack.diagnostics()}"

    # The monitor: no champion yet, so it requested a retrain.
    assert monitor["state"] == "success", f"monitor run {monitor['state']}: {monitor['tis']}{why}"
    mtis = {t: ti["state"] for t, ti in monitor["tis"].items()}
    assert mtis == {
        "check_model": "success",
        "decide_action": "success",
        "request_retrain": "success",
        "healthy": "skipped",
        "rollback_champion": "skipped",
        "guard_needed": "skipped",
        "guard_champion": "skipped",
    }, f"{mtis}{why}"
    assert retrain is not None, f"the monitor did not trigger {RETRAIN}/{retrain_run_id}{why}"

    # The retrain run the TriggerDagRunOperator created, with the monitor's conf and logical date.
    assert retrain["state"] == "success", f"retrain run {retrain['state']}: {retrain['tis']}{why}"
    rtis = {t: ti["state"] for t, ti in retrain["tis"].items()}
    assert rtis == {
        "snapshot_data": "success",
        "train_candidate": "success",
        "evaluate_candidate": "success",
        "check_gates": "success",
        "decide_promotion": "success",
        "register_candidate": "success",
        "deploy_candidate": "success",
        "reject_candidate": "skipped",
        "retrain_rejected": "skipped",
        "retrain_no_gain": "skipped",
        # a direct promotion: no rollout to start
        "rollout_needed": "success",
        "start_rollout": "skipped",
        # a new champion: its post-deploy guard is started
        "guard_needed": "success",
        "guard_champion": "success",
    }, f"{rtis}{why}"
    conf = retrain["conf"] if isinstance(retrain["conf"], dict) else json.loads(retrain["conf"])
    assert conf["as_of"] == "2026-01-29" and "no champion" in conf["reason"], conf
    assert str(retrain["logical_date"]).startswith("2026-01-29 06:00:00"), retrain["logical_date"]

    # They ran under the scheduler, not dag.test() (triggered_by 'test'): the monitor run came from
    # the REST API, the retrain run from the TriggerDagRunOperator (Airflow 3.3 gives it its own run
    # type, 'operator_triggered'; triggered_by is stored as the enum name, e.g. 'REST_API').
    assert (monitor["run_type"], monitor["triggered_by"].lower()) == ("manual", "rest_api"), monitor
    assert (retrain["run_type"], retrain["triggered_by"].lower()) == ("operator_triggered", "operator"), retrain
    # Every task that ran was executed by its own supervised task process on this host.
    for run in (monitor, retrain):
        for task_id, ti in run["tis"].items():
            if ti["state"] == "success":
                assert ti["hostname"] and ti["pid"], f"{run['dag_id']}.{task_id} has no hostname/pid: {ti}"
                assert ti["pid"] not in (os.getpid(), *(p.pid for p in stack.procs.values())), ti

    # MLflow: version 1 is the champion, in the platform's store (and no task fell back to a default store).
    assert not list(stack.root.glob("*.db")), f"stray store(s): {list(stack.root.glob('*.db'))}"
    client = registry.get_client(stack.settings.tracking_uri)
    assert stack.settings.tracking_uri == f"sqlite:///{stack.root / 'state' / 'mlflow' / 'mlflow.db'}"
    assert registry.aliases(client, MODEL) == {"champion": "1"}

    # The decision ledger: monitor -> gates -> promote, chain intact, written by these runs.
    ledger = stack.settings.ledger_path
    records = read_ledger(ledger, MODEL)
    # (the guard run the promotion started may have written its guard_start; this stack has no
    # triggerer, so its watch stays deferred)
    assert [r["event"] for r in records if not r["event"].startswith("guard_")] == ["monitor", "gates", "promote"]
    assert records[0]["actor"] == f"{MONITOR}/{monitor_run_id}", records[0]
    assert records[2]["actor"] == f"{RETRAIN}/{retrain_run_id}", records[2]
    assert verify_ledger(ledger) == []

    print(f"scheduler e2e: stack ready and run triggered after {ready:.0f} s, both runs done after {took:.0f} s")

    # New data lands: the pipeline emits an event on the model's Asset, with the day it wrote.
    # The scheduler runs the monitor for that day (cron OR asset schedule); the champion is
    # fresh and nothing drifted, so it stays healthy.
    status, body = _request(stack, "GET", "/api/v2/assets?name_pattern=credit_default.new_data", None, token)
    assert status == 200 and body["assets"], (status, body)
    asset_id = body["assets"][0]["id"]
    status, body = _request(
        stack, "POST", "/api/v2/assets/events", {"asset_id": asset_id, "extra": {"as_of": "2026-01-31"}}, token
    )
    assert status == 200, (status, body)

    def asset_run():
        with stack.sql() as con:
            row = con.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = %s AND run_type = 'asset_triggered'", (MONITOR,)
            ).fetchone()
        if row is None:
            return None
        run = _run(stack, MONITOR, row[0])
        return run if run["state"] in finished else None

    event_run = _wait("an asset-triggered monitor run", stack, RUN_TIMEOUT, asset_run)
    assert event_run["state"] == "success", f"{event_run['tis']}\n{stack.diagnostics()}"
    assert event_run["tis"]["healthy"]["state"] == "success", event_run["tis"]
    # this check loaded the champion (skops) and validated the window (Great Expectations)
    lines = _task_log(stack, MONITOR, event_run["run_id"], "check_model")
    print(f"check_model log of the asset-triggered monitor run: {len(lines)} lines")
    _assert_readable(lines, "check_model log with a champion")
    last = read_ledger(ledger, MODEL)[-1]
    assert (last["event"], last["as_of"], last["details"]["action"]) == ("monitor", "2026-01-31", "healthy"), last
    assert last["actor"] == f"{MONITOR}/{event_run['run_id']}"

    # A promotion by hand starts its post-deploy guard through the REST API (`retrain promote`
    # with RETRAIN_AIRFLOW_API_URL and credentials), after a fresh gateway process served it.
    from retrain_lib.cli.app import main
    from retrain_lib.store.model_context import ModelContext

    v1 = client.get_model_version(MODEL, "1")
    # MLflow's SQL registry looks the logged model of a models:/m-... source up through the
    # global tracking URI: point it at this stack's store as the platform does (environment kept)
    ModelContext(MODEL, stack.settings).mlflow()
    v2 = str(client.create_model_version(MODEL, v1.source, run_id=v1.run_id).version)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_AIRFLOW_API_URL", f"http://127.0.0.1:{stack.port}")
        mp.setenv("RETRAIN_AIRFLOW_USERNAME", "admin")
        mp.setenv("RETRAIN_AIRFLOW_PASSWORD", ADMIN_PASSWORD)
        cfg = ["--config-dir", str(stack.settings.config_dir)]
        code = main(["promote", MODEL, v2, "--reason", "known-good twin", "--as-of", "2026-01-31", *cfg])
    assert code == 0
    assert registry.aliases(client, MODEL)["champion"] == v2
    promotions = [r for r in read_ledger(ledger, MODEL) if r["event"] == "promote"]
    assert promotions[-1]["details"]["mode"] == "by_hand"
    with stack.sql() as con:
        rows = con.execute(
            "SELECT run_id, conf FROM dag_run WHERE dag_id = %s AND run_id LIKE %s",
            (f"{MODEL}__guard", f"guard__promote_v{v2}_%"),
        ).fetchall()
    assert len(rows) == 1, rows
    guard_conf = rows[0][1] if isinstance(rows[0][1], dict) else json.loads(rows[0][1])
    assert guard_conf == {"version": v2, "as_of": "2026-01-31"}, guard_conf
    print(f"retrain promote started {rows[0][0]}")


def test_a_rest_trigger_with_a_null_logical_date_starts_the_retrain(stack):
    """The README's recipe: ``POST /api/v2/dags/<model>__monitor/dagRuns`` with ``logical_date:
    null`` (Airflow 3's default for API triggers) and the day in ``conf``. With no champion yet the
    monitor requests a retrain; ``request_retrain`` must create ``<model>__retrain`` run
    ``requested__<monitor run id>`` (it failed with ``UndefinedError: 'logical_date' is
    undefined`` when the triggered run's date came from a template), and the scheduler starts it."""
    token = _wait("the api-server to issue a token", stack, STARTUP_TIMEOUT, lambda: _token(stack))
    _wait("the dag-processor to parse both DAGs", stack, STARTUP_TIMEOUT, lambda: _parsed(stack))
    for dag_id in (MONITOR, RETRAIN):
        status, body = _request(stack, "PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
        assert status == 200 and body["is_paused"] is False, (status, body)

    status, body = _request(
        stack, "POST", f"/api/v2/dags/{MONITOR}/dagRuns", {"logical_date": None, "conf": {"as_of": "2026-01-29"}}, token
    )
    assert status == 200 and body["logical_date"] is None, (status, body)
    monitor_run_id = body["dag_run_id"]
    retrain_run_id = f"requested__{monitor_run_id}"

    def started():
        monitor = _run(stack, MONITOR, monitor_run_id)
        if monitor is None or monitor["state"] not in ("success", "failed"):
            return None
        if monitor["state"] == "failed":
            return monitor, None
        retrain = _run(stack, RETRAIN, retrain_run_id)
        if retrain is None:
            return None if monitor["tis"].get("request_retrain", {}).get("state") != "skipped" else (monitor, None)
        # started: its first task ran (or the whole run already ended)
        first = retrain["tis"].get("snapshot_data", {}).get("state")
        return (monitor, retrain) if first in ("success", "failed") or retrain["state"] == "failed" else None

    monitor, retrain = _wait(
        f"{MONITOR}/{monitor_run_id} and the start of {RETRAIN}/{retrain_run_id}", stack, RUN_TIMEOUT, started
    )
    why = f"\n{stack.diagnostics()}"
    assert monitor["logical_date"] is None, monitor
    mtis = {t: ti["state"] for t, ti in monitor["tis"].items()}
    assert monitor["state"] == "success", f"monitor run {monitor['state']}: {mtis}{why}"
    assert mtis["request_retrain"] == "success", f"{mtis}{why}"
    assert retrain is not None, f"the monitor did not trigger {RETRAIN}/{retrain_run_id}{why}"
    assert retrain["tis"]["snapshot_data"]["state"] == "success", f"{retrain['tis']}{why}"
    conf = retrain["conf"] if isinstance(retrain["conf"], dict) else json.loads(retrain["conf"])
    assert conf["as_of"] == "2026-01-29" and "no champion" in conf["reason"], conf
    # the monitor run had no logical date: the retrain run is dated when the monitor run was due
    assert retrain["logical_date"] == monitor["run_after"], (retrain["logical_date"], monitor["run_after"])

    lines = _task_log(stack, MONITOR, monitor_run_id, "check_model")
    print(f"check_model log of the REST-triggered monitor run: {len(lines)} lines")
    _assert_readable(lines, "check_model log without a champion")
