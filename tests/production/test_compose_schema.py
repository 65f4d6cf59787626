"""docker-compose.yaml against the compose specification's JSON schema, and the rules the
README promises for it (no secret in the file, health checks, named volumes). Fast: no
process is started; ``test_production.py`` runs the topology itself."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from retrain_native.compose import COMPOSE_FILE, ENV_EXAMPLE, ComposeError, interpolate, read_env_file
from retrain_native.topology import NativeTopology

BIN = Path(sys.executable).parent
SECRETS = (
    "POSTGRES_PASSWORD",
    "S3_ACCESS_KEY",
    "S3_SECRET_KEY",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_ADMIN_PASSWORD",
    "RETRAIN_WEBHOOK_SECRET",
    "RETRAIN_GATEWAY_TOKEN",
    "SLACK_WEBHOOK_URL",
)
ONE_SHOT = {"airflow-init", "minio-init"}


def _services() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())["services"]


def test_compose_file_matches_the_compose_specification():
    proc = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_secret_is_written_in_the_compose_file_or_the_env_example():
    secret_key = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|ACCESS_KEY|WEBHOOK")
    for name, service in _services().items():
        for key, value in (service.get("environment") or {}).items():
            value = str(value)
            if secret_key.search(key) and not key.endswith(
                "_FILE"
            ):  # the whole value is a reference to the deployment's .env
                assert re.fullmatch(r"\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}", value), f"{name}: {key}={value!r}"
            for userinfo in re.findall(r"://([^@/\s]+)@", value):  # credentials inside a URL
                assert re.fullmatch(r"\$\{[^}]+\}:\$\{[^}]+\}", userinfo), f"{name}: {key}={value!r}"
    example = read_env_file(ENV_EXAMPLE)
    assert {name: example.get(name) for name in SECRETS} == dict.fromkeys(SECRETS, ""), (
        ".env.example must leave every secret empty"
    )


def test_every_long_running_service_has_a_health_check_and_state_is_in_named_volumes():
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    services = compose["services"]
    assert {
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "mlflow",
        "airflow-init",
        "airflow-api-server",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "gateway",
    } <= set(services)
    for name, service in services.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert "container_name" not in services["airflow-worker"], "a fixed container name prevents --scale"
    assert {"postgres-data", "minio-data", "retrain-state", "airflow-logs"} <= set(compose["volumes"])
    mounted = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if isinstance(v, str)}
    assert {"postgres-data", "minio-data", "retrain-state", "airflow-logs"} <= mounted


def test_interpolation_follows_compose():
    env = {"A": "a", "EMPTY": ""}
    assert interpolate("${A} $A ${B:-x} ${EMPTY:-y} ${EMPTY-z} $$HOME", env) == "a a x y  $HOME"
    with pytest.raises(ComposeError, match="EMPTY"):
        interpolate("${EMPTY:?set it}", env)


def test_the_native_mapping_covers_every_address_of_the_file(tmp_path):
    """Every container address and path in the environment and commands has a native value
    (``NativeTopology.native`` raises on any it does not map)."""
    topo = NativeTopology(tmp_path, tmp_path / "configs")
    topo.databases = {db: f"fresh_{db}" for db in topo.compose_databases()}
    topo.redis_db = 7
    assert set(topo.databases) == {"airflow", "mlflow", "retrain"}
    for name in topo.services:
        if name in ("postgres", "redis", "minio", "minio-init"):
            continue  # replaced by this machine's PostgreSQL and Redis, and moto
        env = topo.environment(name, hostname="w1" if name == "airflow-worker" else None)
        cmd = topo.command(name, hostname="w1" if name == "airflow-worker" else None)
        assert "/opt/" not in " ".join([*env.values(), *cmd]), name
    env = topo.environment("airflow-worker", hostname="w1")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6379/7"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@127.0.0.1:5432/fresh_airflow")
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{topo.api_url}/execution/"
    assert topo.command("airflow-worker", hostname="w1")[-2:] == ["--celery-hostname", "worker@w1"]
