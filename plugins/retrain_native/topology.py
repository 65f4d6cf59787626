"""docker-compose.yaml's topology, started natively on this machine (no Docker).

Everything comes from ``docker-compose.yaml`` itself: each service's ``environment`` and
``command``, with ``${VAR}`` interpolated as ``docker compose`` does from ``.env.example``
(secrets, which that file leaves empty, are generated per run). Then one small, explicit
mapping turns container addresses and paths into native ones:

=========================  ==============================================================
compose                    natively
=========================  ==============================================================
``@postgres:5432/<db>``    ``@127.0.0.1:5432/<fresh db>``: one fresh database per compose
                           database (airflow, mlflow, retrain), dropped afterwards
``//redis:6379/0``         ``//127.0.0.1:6379/<free DB index>``, flushed afterwards
``minio:9000``             a moto S3 server (``moto_server``) on a free port; the buckets
                           ``minio-init`` creates (its ``BUCKETS``) are created with boto3
``mlflow:5000``            the ``mlflow`` service's command on a free port
``airflow-api-server:8080``  the ``airflow-api-server`` service's command on a free port
``/opt/retrain/...``       the repository's ``dags/`` and ``plugins/``, a config directory
                           and a state directory of this run (the named volume, shared by
                           every process as the volume is shared by the containers)
=========================  ==============================================================

What the image and the container runtime provide is :data:`NATIVE_EXTRAS` (AIRFLOW_HOME,
PATH to this venv, and per worker a host name and free log-server ports, since the workers
share one network namespace here). ``%h`` in a worker's ``--celery-hostname`` is that host
name. The services run with this venv's binaries, each in its own process group; :meth:`stop`
ends every process started (and their descendants, which it tracks) by PID, then drops the
databases. Used by ``tests/production/test_production.py`` and ``benchmarks/fleet_bench.py``;
the compose file is read by :mod:`retrain_native.compose`.
"""

from __future__ import annotations

import json
import os
import re
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

import yaml

from retrain_native.compose import (
    ENV_EXAMPLE,
    REPO,
    ComposeError,
    load_compose,
    read_env_file,
    service_command,
    service_environment,
)

BIN = Path(sys.executable).parent
PG_HOST, PG_PORT, PG_ADMIN_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
AIRFLOW_SERVICES = ("airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer")
WORKER_SERVICE = "airflow-worker"
STOP_GRACE = 30.0


# --------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_table() -> dict[int, tuple[int, str, int]]:
    """pid -> (ppid, state, starttime) of every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()  # the command name may contain spaces and ')'
        table[int(entry)] = (int(fields[1]), fields[0], int(fields[19]))
    return table


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc})"


def http_status(url: str, timeout: float = 5) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


# --------------------------------------------------------------------------- topology


# The image copies it into $AIRFLOW_HOME/config/ (Dockerfile); natively into the same place.
LOCAL_SETTINGS = REPO / "deploy" / "airflow_local_settings.py"
# Provided by the image or the container runtime, not by docker-compose.yaml's environment.
NATIVE_EXTRAS = {
    "AIRFLOW_HOME": "{root}/airflow",  # the image's ENV AIRFLOW_HOME=/opt/airflow
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # the image's Python environment
    "GIT_OPTIONAL_LOCKS": "0",  # tasks read git metadata of the repository the lead commits to
}
# Per worker: what its own container would give it (host name, network namespace).
WORKER_EXTRAS = {
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "retrain_native.hostname.hostname",
}
# Each Airflow process gets free log-server ports: containers have a network namespace each.
LOG_PORT_SETTINGS = ("AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT", "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT")
# The port each service listens on inside its container (``--port`` of its command).
LISTEN_PORTS = {"airflow-api-server": "8080", "mlflow": "5000", "gateway": "8000"}


@dataclass
class NativeTopology:
    """The compose services as native processes under ``root``.

    ``config_dir`` is mounted where compose mounts ``${RETRAIN_CONFIGS}``; ``variables``
    override ``.env.example`` (as a deployment's ``.env`` would)."""

    root: Path
    config_dir: Path
    workers: int = 2
    variables: dict[str, str] = field(default_factory=dict)
    gateway: bool = True
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)  # pid -> starttime (pid reuse guard)
    databases: dict[str, str] = field(default_factory=dict)  # compose database -> fresh database
    redis_db: int | None = None
    ports: dict[str, int] = field(default_factory=dict)
    env_vars: dict[str, str] = field(default_factory=dict)
    compose: dict = field(default_factory=dict)
    startup_s: float | None = None  # start(): until every server answered
    stop_report: dict = field(default_factory=dict)  # stop(): return codes, what needed SIGKILL, what is left

    # ------------------------------------------------------------------ settings

    def __post_init__(self):
        self.root = Path(self.root)
        self.state_dir = self.root / "state"
        self.home = self.root / "airflow"
        self.ports = {name: free_port() for name in ("s3", *LISTEN_PORTS)}
        api = f"http://127.0.0.1:{self.ports['airflow-api-server']}"
        from cryptography.fernet import Fernet

        generated = {  # the secrets .env.example leaves empty, new for every run
            "POSTGRES_USER": PG_ADMIN_USER,  # this machine's PostgreSQL: trust auth, user postgres
            "POSTGRES_PASSWORD": "pw-" + secrets.token_hex(8),
            "S3_ACCESS_KEY": "ak-" + secrets.token_hex(6),
            "S3_SECRET_KEY": "sk-" + secrets.token_hex(12),
            "AIRFLOW_FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW_ADMIN_PASSWORD": "admin-" + secrets.token_hex(8),
            "RETRAIN_GATEWAY_TOKEN": secrets.token_urlsafe(24),
            "AIRFLOW_BASE_URL": api,
            "MLFLOW_BASE_URL": f"http://127.0.0.1:{self.ports['mlflow']}",
        }
        self.env_vars = {**read_env_file(ENV_EXAMPLE), **generated, **self.variables}
        self.compose = load_compose(self.env_vars)

    @property
    def services(self) -> dict:
        return self.compose["services"]

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['airflow-api-server']}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['mlflow']}"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def s3_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def database_url(self, compose_db: str, driver: str = "postgresql") -> str:
        return f"{driver}://{PG_ADMIN_USER}@{PG_HOST}:{PG_PORT}/{self.databases[compose_db]}"

    def compose_databases(self) -> set[str]:
        found = set()
        for service in self.services.values():
            for value in service_environment(service).values():
                found.update(re.findall(r"@postgres:5432/(\w+)", value))
        return found

    def native(self, value: str, service: str) -> str:
        """One value of a service's environment or command, with the explicit mapping applied."""
        value = re.sub(r"@postgres:5432/(\w+)", lambda m: f"@{PG_HOST}:{PG_PORT}/{self.databases[m.group(1)]}", value)
        value = re.sub(r"//redis:6379/\d+", f"//{REDIS_HOST}:{REDIS_PORT}/{self.redis_db}", value)
        addresses = {
            "minio:9000": self.ports["s3"],
            "mlflow:5000": self.ports["mlflow"],
            "airflow-api-server:8080": self.ports["airflow-api-server"],
            "gateway:8000": self.ports["gateway"],
        }
        for address, port in addresses.items():
            value = re.sub(rf"(^|(?<=//)|(?<=@)|(?<=,)){re.escape(address)}", f"127.0.0.1:{port}", value)
        paths = {
            "/opt/retrain/dags": REPO / "dags",
            "/opt/retrain/plugins": REPO / "plugins",
            "/opt/retrain/configs": self.config_dir,
            "/opt/retrain/state": self.state_dir,
            "/opt/airflow/logs": self.home / "logs",
        }
        for container, here in paths.items():
            value = value.replace(container, str(here))
        left = re.search(r"(^|(?<=//)|(?<=@)|(?<=,))(postgres|redis|minio|mlflow|airflow-[a-z-]+|gateway):\d+", value)
        if left:
            raise ComposeError(
                f"service {service}: {left.group(0)!r} has no native address in the mapping (in {value!r})"
            )
        return value

    def environment(self, service: str, hostname: str | None = None) -> dict[str, str]:
        base = {
            k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "TZ")
        }
        env = {**base, **{k: v.format(root=self.root) for k, v in NATIVE_EXTRAS.items()}}
        env.update({k: self.native(v, service) for k, v in service_environment(self.services[service]).items()})
        if service.startswith("airflow-"):
            env.update({k: str(free_port()) for k in LOG_PORT_SETTINGS})
        if hostname:
            env.update(WORKER_EXTRAS, RETRAIN_NATIVE_HOSTNAME=hostname)
        return env

    def command(self, service: str, hostname: str | None = None) -> list[str]:
        cmd = [self.native(c, service) for c in service_command(self.services[service])]
        if service in LISTEN_PORTS and "--port" in cmd:
            i = cmd.index("--port") + 1
            if cmd[i] != LISTEN_PORTS[service]:
                raise ComposeError(f"{service} listens on {cmd[i]}, the mapping expects {LISTEN_PORTS[service]}")
            cmd[i] = str(self.ports[service])
        cmd = ["127.0.0.1" if c == "0.0.0.0" else c for c in cmd]
        if hostname:
            cmd = [c.replace("%h", hostname) for c in cmd]
        if cmd and (BIN / cmd[0]).exists():
            cmd[0] = str(BIN / cmd[0])  # the venv's airflow, mlflow, retrain, python
        return cmd

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> NativeTopology:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        report = self.stop()
        if report["left"] and exc[0] is None:
            raise AssertionError(f"processes still alive after SIGKILL: {report['left']}")

    def start(self, *, timeout: float = 180) -> None:
        import psycopg
        import redis

        t0 = time.monotonic()
        for d in (self.state_dir, self.home / "logs", self.home / "config", self.root / "logs"):
            d.mkdir(parents=True, exist_ok=True)
        # the image's $AIRFLOW_HOME/config/airflow_local_settings.py (Dockerfile)
        shutil.copy(LOCAL_SETTINGS, self.home / "config" / LOCAL_SETTINGS.name)
        tag = uuid.uuid4().hex[:8]
        with psycopg.connect(self._admin_dsn(), autocommit=True) as con:
            for db in sorted(self.compose_databases()):
                self.databases[db] = f"retrain_prod_{tag}_{db}"
                con.execute(f'CREATE DATABASE "{self.databases[db]}"')
        # A free Redis database: empty, and claimed by a key until stop() flushes it.
        for index in range(15, 0, -1):
            r = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=index)
            if r.dbsize() == 0 and r.set("retrain-native-topology", tag, nx=True):
                self.redis_db = index
                break
        if self.redis_db is None:
            raise RuntimeError("no free Redis database index (1-15) on 127.0.0.1:6379")

        # minio -> moto; minio-init -> the same buckets, created with boto3
        self._spawn(
            "s3",
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.ports["s3"])],
            {k: v.format(root=self.root) for k, v in NATIVE_EXTRAS.items()},
        )
        self.wait("the S3 server", timeout, lambda: http_status(self.s3_url) is not None)
        s3 = self.s3_client()
        for bucket in service_environment(self.services["minio-init"])["BUCKETS"].split():
            s3.create_bucket(Bucket=bucket)

        init = subprocess.run(
            self.command("airflow-init"),
            env=self.environment("airflow-init"),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
            start_new_session=True,
        )
        (self.root / "logs" / "airflow-init.log").write_text(init.stdout + init.stderr)
        if init.returncode != 0:
            raise RuntimeError(f"airflow-init failed ({init.returncode}):\n{(init.stdout + init.stderr)[-4000:]}")

        self.start_service("mlflow")
        for service in AIRFLOW_SERVICES:
            self.start_service(service)
        for i in range(1, self.workers + 1):
            self.start_service(WORKER_SERVICE, hostname=f"w{i}")
        if self.gateway:
            self.start_service("gateway")
        self.wait("the MLflow server", timeout, lambda: http_status(self.mlflow_url + "/health") == 200)
        self.wait(
            "the Airflow api-server", timeout, lambda: http_status(self.api_url + "/api/v2/monitor/health") == 200
        )
        if self.gateway:
            self.wait("the gateway", timeout, lambda: http_status(self.gateway_url + "/health") in (200, 503))
        self.startup_s = time.monotonic() - t0

    def start_service(self, service: str, hostname: str | None = None) -> None:
        name = f"{service}-{hostname}" if hostname else service
        self._spawn(name, self.command(service, hostname), self.environment(service, hostname))

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        out = open(self.root / "logs" / f"{name}.log", "wb")  # noqa: SIM115 - the child keeps it
        try:
            self.procs[name] = subprocess.Popen(
                cmd,
                env=env,
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
        """Remember every descendant of the started processes (task processes may change group)."""
        table = _proc_table()
        frontier = [p.pid for p in self.procs.values()]
        while frontier:
            pid = frontier.pop()
            if pid in table and table[pid][1] != "Z":
                self.seen.setdefault(pid, table[pid][2])
            frontier.extend(c for c, (ppid, *_rest) in table.items() if ppid == pid and c not in self.seen)

    def alive(self) -> dict[int, str]:
        table = _proc_table()
        return {
            pid: _cmdline(pid)
            for pid, start in self.seen.items()
            if pid in table and table[pid][2] == start and table[pid][1] != "Z"
        }

    def exited(self) -> dict[str, int]:
        return {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}

    def wait(self, what: str, timeout: float, check, poll: float = 1.0):
        """Poll ``check()`` until it returns something truthy; fail early if a process died."""
        deadline = time.monotonic() + timeout
        while True:
            self.track()
            dead = self.exited()
            if dead:
                raise AssertionError(f"process(es) exited while waiting for {what}: {dead}\n{self.diagnostics()}")
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnostics()}")
            time.sleep(poll)

    def stop(self) -> dict:
        """SIGTERM each process group, wait, SIGKILL what is left (groups, then tracked
        descendants by PID); then drop the databases and flush the Redis database."""
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
            for pid in left:
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
        self._drop_stores()
        self.stop_report = report
        return report

    def _drop_stores(self) -> None:
        import psycopg
        import redis

        if self.databases:
            with psycopg.connect(self._admin_dsn(), autocommit=True) as con:
                for name in self.databases.values():
                    con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if self.redis_db is not None:
            redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=self.redis_db).flushdb()
            self.redis_db = None

    @staticmethod
    def _admin_dsn() -> str:
        return f"postgresql://{PG_ADMIN_USER}@{PG_HOST}:{PG_PORT}/postgres"

    # ------------------------------------------------------------------ clients

    def s3_client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name=self.env_vars.get("S3_REGION") or None,
            aws_access_key_id=self.env_vars["S3_ACCESS_KEY"],
            aws_secret_access_key=self.env_vars["S3_SECRET_KEY"],
        )

    def token(self) -> str | None:
        status, body = self.request(
            "POST", "/auth/token", {"username": "admin", "password": self.env_vars["AIRFLOW_ADMIN_PASSWORD"]}
        )
        return body.get("access_token") if status == 201 else None

    def request(
        self,
        method: str,
        path: str,
        body: dict | None = None,
        token: str | None = None,
        base: str | None = None,
        timeout: float = 30,
    ) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request((base or self.api_url) + path, data=data, method=method, headers=headers)
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
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            return 0, {"detail": str(exc)}

    def sql(self, compose_db: str = "airflow"):
        import psycopg

        return psycopg.connect(self.database_url(compose_db), autocommit=True)

    def parsed_dags(self) -> set[str]:
        with self.sql() as con:
            return {r[0] for r in con.execute("SELECT dag_id FROM serialized_dag")}

    def import_errors(self) -> list:
        with self.sql() as con:
            return list(con.execute("SELECT filename, stacktrace FROM import_error"))

    def diagnostics(self, lines: int = 30) -> str:
        parts = [f"root={self.root}", f"exited: {self.exited()}"]
        for name in self.procs:
            parts.append(f"--- {name}.log (last {lines} lines) ---\n{_tail(self.root / 'logs' / f'{name}.log', lines)}")
        try:
            with self.sql() as con:
                parts.append(
                    "--- dag_run ---\n"
                    + "\n".join(map(str, con.execute("SELECT dag_id, run_id, state FROM dag_run ORDER BY id")))
                )
                parts.append(
                    "--- task_instance ---\n"
                    + "\n".join(
                        map(
                            str,
                            con.execute(
                                "SELECT dag_id, run_id, task_id, state, try_number, hostname FROM task_instance "
                                "ORDER BY dag_id, start_date"
                            ),
                        )
                    )
                )
                errors = list(con.execute("SELECT filename, stacktrace FROM import_error"))
                if errors:
                    parts.append(f"--- import errors ---\n{errors}")
        except Exception as exc:  # noqa: BLE001 - diagnostics must not hide the original failure
            parts.append(f"(metadata DB not readable: {exc})")
        logs = sorted((self.home / "logs").rglob("*.log"), key=lambda p: p.stat().st_mtime)
        for path in logs[-4:]:
            parts.append(f"--- {path.relative_to(self.home)} (last 25 lines) ---\n{_tail(path, 25)}")
        return "\n".join(parts)


# --------------------------------------------------------------------------- data


def s3_model_configs(src: Path, dst: Path, models: dict[str, str] | None = None) -> Path:
    """Copy a config directory, with every model's data read from S3 (``data.source: s3``,
    bucket from ``RETRAIN_S3_BUCKET``), as a production deployment's configs would say.
    ``models`` (new name -> source model) adds copies of a model under other names."""
    import shutil

    shutil.copytree(src, dst)
    for path in sorted((dst / "models").glob("*.yaml")):
        model = yaml.safe_load(path.read_text())
        model["data"]["source"] = "s3"
        path.write_text(yaml.safe_dump(model, sort_keys=False))
    for name, base in (models or {}).items():
        model = yaml.safe_load((dst / "models" / f"{base}.yaml").read_text())
        model["name"] = name
        (dst / "models" / f"{name}.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    return dst


def upload_tree(s3, bucket: str, root: Path) -> int:
    """Upload every file under ``root`` to ``bucket`` with its relative path as key."""
    n = 0
    for f in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        s3.upload_file(str(f), bucket, f.relative_to(root).as_posix())
        n += 1
    return n
