"""Pushed registry changes: the MLflow webhook signature check (what MLflow itself signs is
accepted; a wrong secret, tampering, a stale timestamp and a replay are refused) and the
refresher's wake-up (a woken model is polled at once on the refresher's thread)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from retrain_lib.serving.payloads import RequestError
from retrain_lib.serving.refresher import Refresher
from retrain_lib.serving.webhooks import DeliveryCheck, signature

SECRET = "s3cret"
BODY = {
    "entity": "model_version_alias",
    "action": "created",
    "data": {"name": "m", "alias": "champion", "version": "2"},
}


def mlflow_headers(text: str, secret: str = SECRET, ts: float | None = None, delivery: str | None = None):
    """The headers MLflow's own delivery code would send for ``text``."""
    from mlflow.webhooks.delivery import _generate_hmac_signature

    delivery = delivery or str(uuid.uuid4())
    stamp = str(int(time.time() if ts is None else ts))
    return {
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": stamp,
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery, stamp, text),
    }


def test_a_delivery_signed_by_mlflow_is_accepted_once():
    check = DeliveryCheck(SECRET)
    text = json.dumps(BODY)
    headers = mlflow_headers(text)
    assert headers["X-MLflow-Signature"] == signature(
        SECRET, headers["X-MLflow-Delivery-Id"], headers["X-MLflow-Timestamp"], text
    )
    event = check.verify(headers, text.encode())
    assert (event.event, event.model) == ("model_version_alias.created", "m")
    with pytest.raises(RequestError, match="replay") as exc:
        check.verify(headers, text.encode())
    assert exc.value.status == 401


@pytest.mark.parametrize(
    "case, message",
    [
        ("wrong secret", "bad signature"),
        ("tampered", "bad signature"),
        ("stale", "stale delivery"),
        ("future", "stale delivery"),
        ("unsigned", "missing X-MLflow-Signature"),
    ],
)
def test_a_delivery_that_is_not_genuine_and_fresh_is_refused(case, message):
    check = DeliveryCheck(SECRET, max_age_s=300)
    text = json.dumps(BODY)
    headers = {
        "wrong secret": lambda: mlflow_headers(text, secret="other"),
        "tampered": lambda: mlflow_headers(text),
        "stale": lambda: mlflow_headers(text, ts=time.time() - 301),
        "future": lambda: mlflow_headers(text, ts=time.time() + 301),
        "unsigned": lambda: {"X-MLflow-Timestamp": str(int(time.time()))},
    }[case]()
    body = text.replace('"2"', '"3"') if case == "tampered" else text
    with pytest.raises(RequestError, match=message) as exc:
        check.verify(headers, body.encode())
    assert exc.value.status == 401


def test_a_signed_body_that_is_not_an_event_is_a_400():
    check = DeliveryCheck(SECRET)
    with pytest.raises(RequestError) as exc:
        check.verify(mlflow_headers("[1, 2]"), b"[1, 2]")
    assert exc.value.status == 400


class _Slot:
    def __init__(self, name):
        self.name = name
        self.error = None
        self.last_refresh = 0.0


def test_wake_polls_the_named_model_at_once_and_only_it(monkeypatch):
    """With a poll interval of an hour, a woken model is refreshed within the test's wait;
    models not woken are not, and an unknown model is refused."""
    from retrain_lib.serving import refresher as refresher_mod

    polled: list[str] = []
    done = threading.Event()

    def fake_refresh(slot, client):
        polled.append(slot.name)
        done.set()
        return False

    monkeypatch.setattr(refresher_mod, "refresh_slot", fake_refresh)
    slots = {"a": _Slot("a"), "b": _Slot("b")}
    r = Refresher(slots, lambda: object(), None, refresh_s=3600)  # type: ignore[arg-type]
    r.start()
    try:
        assert r.wake("unknown") is False
        assert r.wake("b") is True
        assert done.wait(10), "the woken model was not polled"
        time.sleep(0.2)
        assert polled == ["b"]
    finally:
        r.stop()
