"""Alias changes pushed to the gateway (issue 22, item 5): a real ``mlflow server`` (SQL
backend) delivers its ``model_version_alias.created`` webhook, HMAC-signed, to a real gateway
process that polls the registry only every 10 minutes; the gateway serves the new champion
as soon as the delivery arrives, and refuses deliveries that are unsigned, wrongly signed,
stale or replayed."""

from __future__ import annotations

import json
import os
import time
import uuid

import httpx
import pytest
from platforms import credit_platform
from services import MlflowServer

from retrain_lib.serving.process import GatewayProcess
from retrain_lib.serving.webhooks import signature

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "credit_default"
SECRET = "webhook-secret-for-tests"
POLL_S = 600  # the gateway's registry poll: far longer than the test, so only a push can move it


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.store import registry

    root = tmp_path_factory.mktemp("push")
    allow = {"MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https", "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true"}
    server = MlflowServer(root / "mlflow")
    # the server caches the webhooks of each event for MLFLOW_WEBHOOK_CACHE_TTL s (default 60):
    # the training's alias move just before the webhook exists would hide it for a minute
    server.start(env={**allow, "MLFLOW_WEBHOOK_CACHE_TTL": "1"})
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in {**allow, "MLFLOW_TRACKING_URI": server.uri, "RETRAIN_WEBHOOK_SECRET": SECRET}.items():
                mp.setenv(k, v)
            with credit_platform(root, days=35, rows_per_day=300, seed=1) as (settings, cfg, cfg_dir):
                assert settings.registry_uri == server.uri
                first = retrain_model(MODEL, "2026-01-30", settings=settings)
                assert first.outcome == "deployed", first
                client = registry.get_client(settings.tracking_uri, settings.registry_uri)
                v1 = client.get_model_version(MODEL, "1")
                # through a server, a logged model's source (models:/m-<id>) needs its model id
                model_id = v1.source.removeprefix("models:/").split("/")[0]
                v2 = client.create_model_version(MODEL, source=v1.source, run_id=v1.run_id, model_id=model_id)
                env = {**os.environ, "RETRAIN_HOME": str(settings.state_dir), "RETRAIN_CONFIG_DIR": str(cfg_dir)}
                env.pop("RETRAIN_PREDICTIONS_URL", None)
                with GatewayProcess(
                    MODEL, refresh_s=POLL_S, env=env, log_path=settings.state_dir / "gateway.log"
                ) as gw:
                    yield {"gw": gw, "client": client, "settings": settings, "cfg_dir": cfg_dir, "v2": str(v2.version)}
    finally:
        server.stop()


def _champion(gw) -> str | None:
    return ((gw.health() or {}).get("models", {}).get(MODEL) or {}).get("champion")


def _pushes(gw) -> float:
    for line in httpx.get(f"{gw.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(f'retrain_gateway_registry_pushes_total{{model="{MODEL}"}}'):
            return float(line.split()[1])
    return 0.0


def _delivery(body: dict, *, secret: str = SECRET, age_s: float = 0.0, delivery: str | None = None):
    text = json.dumps(body)
    delivery = delivery or str(uuid.uuid4())
    ts = str(int(time.time() - age_s))
    headers = {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": signature(secret, delivery, ts, text),
    }
    return text, headers


def test_the_mlflow_webhook_pushes_a_promotion_to_the_gateway_without_a_poll(served, capsys):
    from retrain_lib.cli.app import main
    from retrain_lib.store import registry

    gw, client = served["gw"], served["client"]
    assert _champion(gw) == "1"
    code = main(["webhook", f"{gw.url}/v1/registry/events", "--config-dir", str(served["cfg_dir"])])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "model_version_alias.created" in out and "/v1/registry/events" in out, out
    # once more: the same webhook is updated, not duplicated
    assert main(["webhook", f"{gw.url}/v1/registry/events", "--config-dir", str(served["cfg_dir"])]) == 0
    assert [w.name for w in client.list_webhooks()] == ["retrain-gateway"]

    before = _pushes(gw)
    time.sleep(1.5)  # past the server's webhook cache (MLFLOW_WEBHOOK_CACHE_TTL=1)
    t0 = time.monotonic()
    registry.promote_champion(client, MODEL, served["v2"], expected_champion="1")
    deadline = t0 + 60
    while _champion(gw) != served["v2"] and time.monotonic() < deadline:
        time.sleep(0.05)
    took = time.monotonic() - t0
    print(f"alias move -> served by push: {took:.2f} s (the gateway polls every {POLL_S} s)")
    assert _champion(gw) == served["v2"], "the alias move never reached the gateway"
    assert _pushes(gw) > before


def test_deliveries_that_are_unsigned_wrongly_signed_stale_or_replayed_are_refused(served):
    gw = served["gw"]
    url = f"{gw.url}/v1/registry/events"
    body = {"entity": "model_version_alias", "action": "created", "data": {"name": MODEL, "alias": "x", "version": "1"}}
    before = _pushes(gw)

    text, headers = _delivery(body)
    assert httpx.post(url, content=text, headers={"Content-Type": "application/json"}).status_code == 401
    wrong_text, wrong = _delivery(body, secret="not-the-secret")
    r = httpx.post(url, content=wrong_text, headers=wrong)
    assert r.status_code == 401 and "bad signature" in r.text
    stale_text, stale = _delivery(body, age_s=3600)
    r = httpx.post(url, content=stale_text, headers=stale)
    assert r.status_code == 401 and "stale" in r.text
    tampered = text.replace(MODEL, "other_model")
    assert httpx.post(url, content=tampered, headers=headers).status_code == 401
    assert _pushes(gw) == before

    r = httpx.post(url, content=text, headers=headers)
    assert r.status_code == 202 and r.json()["refreshing"] == MODEL
    r = httpx.post(url, content=text, headers=headers)
    assert r.status_code == 401 and "replay" in r.text
    other = {**body, "data": {"name": "not_served", "alias": "champion", "version": "1"}}
    other_text, other_headers = _delivery(other)
    r = httpx.post(url, content=other_text, headers=other_headers)
    assert r.status_code == 200 and "ignored" in r.json()
    assert _pushes(gw) == before + 1
