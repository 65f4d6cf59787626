"""Pausing a model's DAGs through the Airflow REST API (:mod:`retrain_lib.tools.airflow_api`),
against a tiny real HTTP server that answers as Airflow 3's api-server does: the request built
(method, path, query, body, bearer token), a DAG it does not know, and a server it cannot reach."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from retrain_lib.pipeline.retirement import dag_ids
from retrain_lib.tools.airflow_api import AirflowApi, AirflowApiError, pause_dags

KNOWN = {"credit_default__monitor", "credit_default__retrain", "credit_default__rollout"}  # no guard DAG


@pytest.fixture
def api_server():
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict:
            return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

        def do_POST(self):  # noqa: N802 - http.server's name
            body = self._body()
            seen.append({"method": "POST", "path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            if self.path == "/auth/token" and body == {"username": "ops", "password": "pw"}:
                return self._answer(201, {"access_token": "jwt-from-login"})
            return self._answer(401, {"detail": "bad credentials"})

        def do_PATCH(self):  # noqa: N802
            body = self._body()
            seen.append({"method": "PATCH", "path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            if self.headers.get("Authorization") not in ("Bearer t0k", "Bearer jwt-from-login"):
                return self._answer(401, {"detail": "Not authenticated"})
            dag_id = self.path.split("?")[0].rsplit("/", 1)[-1]
            if dag_id not in KNOWN:
                return self._answer(404, {"detail": f"Dag with id: {dag_id} was not found"})
            return self._answer(200, {"dag_id": dag_id, "is_paused": body["is_paused"]})

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_pause_patches_each_dag_with_is_paused_and_the_bearer_token(api_server):
    url, seen = api_server
    out = pause_dags(AirflowApi(url, token="t0k"), dag_ids("credit_default"))
    assert out == {
        "credit_default__monitor": "paused",
        "credit_default__retrain": "paused",
        "credit_default__rollout": "paused",
        "credit_default__guard": "not found",  # a model without a guard has no guard DAG
        "credit_default__health_report": "not found",  # not known to this server either
    }
    assert [(r["method"], r["path"], r["body"], r["auth"]) for r in seen] == [
        ("PATCH", f"/api/v2/dags/{d}?update_mask=is_paused", {"is_paused": True}, "Bearer t0k")
        for d in dag_ids("credit_default")
    ]


def test_pause_logs_in_with_a_username_and_password_first(api_server):
    url, seen = api_server
    api = AirflowApi.from_env(
        {"RETRAIN_AIRFLOW_API_URL": url + "/", "RETRAIN_AIRFLOW_USERNAME": "ops", "RETRAIN_AIRFLOW_PASSWORD": "pw"}
    )
    assert api.set_paused("credit_default__monitor") == {"dag_id": "credit_default__monitor", "is_paused": True}
    assert [(r["method"], r["path"]) for r in seen] == [
        ("POST", "/auth/token"),
        ("PATCH", "/api/v2/dags/credit_default__monitor?update_mask=is_paused"),
    ]
    assert seen[1]["auth"] == "Bearer jwt-from-login"


def test_a_refusal_says_why_and_pause_dags_never_raises(api_server):
    url, _ = api_server
    with pytest.raises(AirflowApiError, match="pausing credit_default__monitor was refused: HTTP 401") as err:
        AirflowApi(url, token="wrong").set_paused("credit_default__monitor")
    assert err.value.status == 401
    out = pause_dags(AirflowApi(url, token="wrong"), ["credit_default__monitor"])
    assert out["credit_default__monitor"].startswith(
        "not paused: pausing credit_default__monitor was refused: HTTP 401"
    )


def test_without_the_api_or_with_a_dead_one_nothing_is_paused_and_it_says_why():
    assert pause_dags(None, ["m__monitor"]) == {"m__monitor": "not paused: RETRAIN_AIRFLOW_API_URL is not set"}
    dead = AirflowApi("http://127.0.0.1:9", token="t", timeout_s=2)
    out = pause_dags(dead, ["m__monitor"])
    assert out["m__monitor"].startswith("not paused: cannot reach the Airflow api-server http://127.0.0.1:9")
