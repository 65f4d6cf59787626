"""Retiring a model end to end: a version the retrain step registered and promoted, served by a
real gateway process over HTTP; ``retrain retire --now`` (a subprocess, with a tiny HTTP server
standing in for the Airflow api-server) removes the aliases, tags the versions, pauses the DAGs
and records it; the gateway answers 410 naming the replacement; ``retrain status`` says retired;
the model's DAG tasks short-circuit; ``retrain unretire`` and a promotion by hand bring it back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from platforms import credit_platform

from retrain_lib.serving.process import GatewayProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "credit_default"
REASON = "replaced by the v2 model"


@pytest.fixture
def airflow_api():
    """An HTTP server answering ``PATCH /api/v2/dags/{dag_id}`` as Airflow's api-server does."""
    patched: list[tuple[str, dict, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self):  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            patched.append((self.path, body, self.headers.get("Authorization")))
            dag_id = self.path.split("?")[0].rsplit("/", 1)[-1]
            data = json.dumps({"dag_id": dag_id, "is_paused": body["is_paused"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", patched
    finally:
        server.shutdown()
        server.server_close()


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def test_retire_now_then_410_status_short_circuit_and_unretire(tmp_path, airflow_api):
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.store import registry
    from retrain_lib.store.audit import Ledger

    api_url, patched = airflow_api
    with credit_platform(tmp_path, days=35, rows_per_day=300, seed=1) as (settings, cfg, cfg_dir):
        first = retrain_model(MODEL, "2026-01-30", settings=settings)
        assert first.outcome == "deployed", first
        client = registry.get_client(settings.tracking_uri, settings.registry_uri)
        import pandas as pd

        frame = pd.read_parquet(settings.data_root / MODEL / "2026-01-31.parquet").head(3)
        records = frame[cfg.features.all].astype(object).where(frame[cfg.features.all].notna(), None)
        body = {"records": records.to_dict("records")}
        env = {**os.environ, "RETRAIN_HOME": str(settings.state_dir), "RETRAIN_CONFIG_DIR": str(cfg_dir)}
        for var in ("RETRAIN_GATEWAY_TOKEN", "RETRAIN_PREDICTIONS_URL", "RETRAIN_AIRFLOW_USERNAME"):
            env.pop(var, None)

        def retrain(*args: str, **extra_env: str):
            return subprocess.run(
                [sys.executable, "-m", "retrain_lib", "-q", *args],
                capture_output=True,
                text=True,
                env={**env, **extra_env},
                timeout=300,
            )

        with GatewayProcess(MODEL, refresh_s=0.3, env=env, log_path=tmp_path / "gateway.log") as gw:
            url = f"{gw.url}/v1/models/{MODEL}/predict"
            served = httpx.post(url, json=body, timeout=30)
            assert served.status_code == 200 and served.json()["predictions"][0]["version"] == "1"

            out = retrain(
                "retire", MODEL, "--now", "--reason", REASON, "--replacement", "credit_default_v2",
                "--as-of", "2026-02-01", "--format", "json",
                RETRAIN_AIRFLOW_API_URL=api_url, RETRAIN_AIRFLOW_TOKEN="t0k",
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            change = json.loads(out.stdout)
            assert (change["action"], change["aliases_removed"]) == ("retired", {"champion": "1"})
            dags = [f"{MODEL}__{k}" for k in ("monitor", "retrain", "rollout", "guard", "health_report")]
            assert change["dags"] == dict.fromkeys(dags, "paused")
            assert [(p, b, a) for p, b, a in patched] == [
                (f"/api/v2/dags/{d}?update_mask=is_paused", {"is_paused": True}, "Bearer t0k") for d in dags
            ]
            assert "no config" in out.stderr  # the replacement is not a model of this platform (yet)

            assert registry.aliases(client, MODEL) == {}
            tags = client.get_registered_model(MODEL).tags
            assert (tags["lifecycle.status"], tags["lifecycle.reason"], tags["lifecycle.replacement"]) == (
                "retired",
                REASON,
                "credit_default_v2",
            )
            assert client.get_model_version(MODEL, "1").tags["lifecycle.status"] == "retired"
            rec = Ledger.from_settings(settings).records(MODEL)[-1]
            assert (rec["event"], rec["as_of"], rec["before"], rec["reason"]) == ("retire", "2026-02-01", "1", REASON)
            assert rec["actor"].startswith("cli/") and rec["details"]["dags"] == change["dags"]

            gone = _wait(lambda: (r := httpx.post(url, json=body, timeout=30)).status_code == 410 and r, 20, "410 Gone")
            assert gone.json() == {
                "detail": f"model 'credit_default' was retired on 2026-02-01: {REASON}; use 'credit_default_v2' instead",
                "model": MODEL,
                "status": "retired",
                "retired_on": "2026-02-01",
                "reason": REASON,
                "replacement": "credit_default_v2",
                "replacement_url": "/v1/models/credit_default_v2/predict",
            }
            health = httpx.get(f"{gw.url}/health", timeout=10)
            assert health.status_code == 200 and health.json()["models"][MODEL]["retired"]["status"] == "retired"

            fleet = retrain("status")
            assert fleet.returncode == 0, fleet.stderr
            header = fleet.stdout.splitlines()[0].split()
            assert header[-3:] == ["lifecycle", "last", "decision"]
            row = next(line for line in fleet.stdout.splitlines() if line.startswith(MODEL))
            assert "retired 2026-02-01" in row, row
            detail = retrain("status", MODEL)
            assert (
                f"lifecycle: credit_default is retired since 2026-02-01 ({REASON}); use credit_default_v2 instead"
                in detail.stdout
            ), detail.stdout

            _dag_tasks_short_circuit(cfg, cfg_dir)

            back = retrain("unretire", MODEL, "--reason", "the v2 model is late", "--as-of", "2026-02-02")
            assert back.returncode == 0, back.stderr
            assert "credit_default is active again (was retired)" in back.stdout
            assert "retrain promote credit_default 1 --reason" in back.stdout
            assert client.get_registered_model(MODEL).tags["lifecycle.status"] == "active"
            assert Ledger.from_settings(settings).records(MODEL)[-1]["event"] == "unretire"
            row = next(line for line in retrain("status").stdout.splitlines() if line.startswith(MODEL))
            assert " active " in row, row
            # no alias came back: no champion to serve until a person promotes one
            _wait(lambda: httpx.post(url, json=body, timeout=30).status_code == 503, 20, "503 without a champion")
            promoted = retrain("promote", MODEL, "1", "--reason", "back", "--skip-serving-check")
            assert promoted.returncode == 0, promoted.stderr
            _wait(lambda: httpx.post(url, json=body, timeout=30).status_code == 200, 20, "served again")


def _dag_tasks_short_circuit(cfg, cfg_dir) -> None:
    """The monitor's ``check_model`` and the retrain's ``snapshot_data`` of a retired model skip
    with the reason (the functions the tasks call, outside a scheduler)."""
    from airflow.sdk.exceptions import AirflowSkipException
    from retrain_airflow.lifecycle_tasks import check_lifecycle, skip_if_retired
    from retrain_airflow.task_adapter import ModelTasks

    context = {"params": {"as_of": "2026-02-02"}, "run_id": "scheduled__2026-02-02"}
    with pytest.raises(AirflowSkipException, match="credit_default is retired since 2026-02-01.*nothing to monitor"):
        check_lifecycle(ModelTasks(cfg, str(cfg_dir), f"{MODEL}__monitor"), context)
    with pytest.raises(AirflowSkipException, match="retrain unretire credit_default"):
        skip_if_retired(ModelTasks(cfg, str(cfg_dir), f"{MODEL}__retrain"), context)
