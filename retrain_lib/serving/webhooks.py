"""Registry changes pushed to the gateway: MLflow webhooks (OSS MLflow 3 with a SQL backend,
delivered by the MLflow server) POST ``model_version_alias.created`` / ``.deleted`` events to
``/v1/registry/events``; the gateway checks their HMAC signature (:func:`verify_delivery`) and
wakes its refresher for the model named (:meth:`Refresher.wake
<retrain_lib.serving.refresher.Refresher.wake>`), so a promotion or rollback is served within
a second while the registry poll stays as the fallback.

MLflow signs ``"{delivery_id}.{timestamp}.{body}"`` with HMAC-SHA256 and sends
``X-MLflow-Signature: v1,<base64>``, ``X-MLflow-Timestamp`` (Unix seconds) and
``X-MLflow-Delivery-Id``. A delivery older than ``MAX_AGE_S`` or seen before is refused
(replay protection).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

from retrain_lib.serving.payloads import RequestError

SIGNATURE_HEADER = "x-mlflow-signature"
TIMESTAMP_HEADER = "x-mlflow-timestamp"
DELIVERY_HEADER = "x-mlflow-delivery-id"
EVENTS = ("model_version_alias.created", "model_version_alias.deleted")
MAX_AGE_S = 300
SECRET_ENV = "RETRAIN_WEBHOOK_SECRET"


def signature(secret: str, delivery_id: str, timestamp: str, body: str) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for ``body``."""
    digest = hmac.new(secret.encode(), f"{delivery_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass(frozen=True)
class RegistryEvent:
    """One verified delivery: ``event`` (``entity.action``) about registered model ``model``."""

    delivery_id: str
    event: str
    model: str | None


class DeliveryCheck:
    """Verifies deliveries signed with ``secret`` and remembers the last ``remember`` ids."""

    def __init__(self, secret: str, *, remember: int = 10_000, max_age_s: float = MAX_AGE_S):
        self.secret = secret
        self.max_age_s = max_age_s
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def verify(self, headers, body: bytes, *, now: float | None = None) -> RegistryEvent:
        """The event of a delivery; :class:`RequestError` 401 for a missing or wrong signature,
        a stale timestamp or a replayed id, 400 for a body that is not an MLflow event."""
        h = {k.lower(): v for k, v in headers.items()}
        sig, ts, delivery = h.get(SIGNATURE_HEADER), h.get(TIMESTAMP_HEADER), h.get(DELIVERY_HEADER)
        if not (sig and ts and delivery):
            raise RequestError(401, "missing X-MLflow-Signature, X-MLflow-Timestamp or X-MLflow-Delivery-Id")
        text = body.decode("utf-8", errors="replace")
        if not hmac.compare_digest(sig, signature(self.secret, delivery, ts, text)):
            raise RequestError(401, "bad signature: the webhook's secret is not this gateway's")
        try:
            age = (time.time() if now is None else now) - float(ts)
        except ValueError:
            raise RequestError(401, f"X-MLflow-Timestamp {ts!r} is not Unix seconds") from None
        if abs(age) > self.max_age_s:
            raise RequestError(401, f"stale delivery: signed {age:.0f} s ago (more than {self.max_age_s:g} s)")
        with self._lock:
            if delivery in self._seen:
                raise RequestError(401, f"delivery {delivery} was already received (replay)")
            self._seen[delivery] = None
            while len(self._seen) > self._remember:
                self._seen.popitem(last=False)
        try:
            payload = json.loads(text)
            event = f"{payload['entity']}.{payload['action']}"
            data = payload.get("data") or {}
        except (ValueError, KeyError, TypeError):
            raise RequestError(400, "the body is not an MLflow webhook event (entity, action, data)") from None
        name = data.get("name") if isinstance(data, dict) else None
        return RegistryEvent(delivery, event, str(name) if name else None)
