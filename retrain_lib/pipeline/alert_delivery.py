"""Delivery of alerts: :func:`deliver` posts an :class:`~retrain_lib.pipeline.alert_payload.Alert`
through any ``post(payload)`` callable (the Airflow plugin passes one that uses the Slack
provider's hooks). The same alert is not sent twice within ``alerts.dedupe_minutes`` (the
last-sent times live in the ``retrain_alerts`` table of the platform database, shared by every
task process: :class:`DedupeStore`), a failed send is retried with exponential backoff and
logged, and nothing ever raises out of it: alerting cannot change the outcome of the step that
alerts.

No Airflow here (an import-linter contract) and nothing heavy at import time (SQLAlchemy is
imported when the store is first used).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from retrain_lib.core.settings import redact
from retrain_lib.pipeline.alert_payload import Alert
from retrain_lib.store.audit import Ledger, normalise_url

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PgInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

# The logger alert delivery has always logged under: log filters and alerting rules select it.
log = logging.getLogger("retrain_lib.pipeline.alerts")

TABLE = "retrain_alerts"


class DedupeStore:
    """Last-sent times of alerts in the ``retrain_alerts`` table of the platform database
    (the ledger's database: SQLite embedded, PostgreSQL in production)::

        key        VARCHAR(32) PRIMARY KEY  -- sha256 of "kind|model|items"
        kind, model, what TEXT              -- what the key stands for
        sent_at    FLOAT                    -- epoch seconds of the last send
        suppressed INTEGER                  -- repeats not sent since
    """

    _lock = threading.Lock()
    _ready: set[tuple[str, int]] = set()

    def __init__(self, url: str):
        self.url = normalise_url(url)

    @classmethod
    def from_settings(cls, settings) -> DedupeStore:
        return cls(settings.database_url)

    @staticmethod
    def _table():
        return _alerts_table()

    def _engine(self):
        import os

        engine = Ledger(self.url).engine  # the same engine (WAL, busy timeout) as the ledger
        key = (self.url, os.getpid())
        if key not in self._ready:
            with self._lock:
                _alerts_table().metadata.create_all(engine, checkfirst=True)
                self._ready.add(key)
        return engine

    def claim(self, alert: Alert, window_minutes: float, now: float | None = None) -> float | None:
        """Record that ``alert`` is being sent unless it was sent within the window: returns the
        send time (a token for :meth:`release`) or ``None`` (a repeat: do not send). Atomic:
        of two processes claiming the same alert at once, one wins."""
        engine = self._engine()
        t = _alerts_table()
        now = time.time() if now is None else now
        values = {
            "key": alert.key_hash,
            "kind": alert.kind,
            "model": alert.model,
            "what": alert.key[:1000],
            "sent_at": now,
            "suppressed": 0,
        }
        insert: PgInsert | SqliteInsert
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            insert = pg_insert(t)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            insert = sqlite_insert(t)
        stmt = (
            insert.values(**values)
            .on_conflict_do_update(
                index_elements=[t.c.key],
                set_={"sent_at": now, "suppressed": 0, "what": values["what"]},
                where=t.c.sent_at <= now - window_minutes * 60,
            )
            .returning(t.c.key)
        )
        with engine.begin() as conn:
            won = conn.execute(stmt).first() is not None
            if not won:
                conn.execute(t.update().where(t.c.key == alert.key_hash).values(suppressed=t.c.suppressed + 1))
        return now if won else None

    def release(self, alert: Alert, token: float) -> None:
        """Forget a claim whose send failed, so the next occurrence is sent."""
        t = _alerts_table()
        with self._engine().begin() as conn:
            conn.execute(t.update().where((t.c.key == alert.key_hash) & (t.c.sent_at == token)).values(sent_at=0.0))

    def last_sent(self, alert: Alert) -> dict[str, Any] | None:
        t = _alerts_table()
        with self._engine().connect() as conn:
            row = conn.execute(t.select().where(t.c.key == alert.key_hash)).mappings().first()
        return None if row is None else dict(row)


_ALERTS_TABLE = None


def _alerts_table():
    global _ALERTS_TABLE
    if _ALERTS_TABLE is None:
        import sqlalchemy as sa

        _ALERTS_TABLE = sa.Table(
            TABLE,
            sa.MetaData(),
            sa.Column("key", sa.String(32), primary_key=True),
            sa.Column("kind", sa.Text, nullable=False),
            sa.Column("model", sa.Text, nullable=False),
            sa.Column("what", sa.Text, nullable=False),
            sa.Column("sent_at", sa.Float, nullable=False),
            sa.Column("suppressed", sa.Integer, nullable=False, default=0),
        )
    return _ALERTS_TABLE


SENT, SUPPRESSED, FAILED, DISABLED = "sent", "suppressed", "failed", "disabled"


def deliver(
    alert: Alert,
    post: Callable[[dict[str, Any]], Any],
    *,
    store: DedupeStore | None = None,
    dedupe_minutes: float = 60,
    retries: int = 3,
    retry_seconds: float = 2.0,
    sleep: Callable[[float], Any] = time.sleep,
) -> str:
    """Send ``alert.payload`` with ``post``; returns ``sent``, ``suppressed`` (sent within
    ``dedupe_minutes`` already) or ``failed`` (every attempt failed, each one logged). A
    failed attempt is retried ``retries`` times, waiting ``retry_seconds``, then twice as
    long each time. Never raises: the caller's outcome must not depend on Slack."""
    token = None
    try:
        if store is not None and dedupe_minutes > 0:
            try:
                token = store.claim(alert, dedupe_minutes)
            except Exception:  # noqa: BLE001 - no dedupe state: rather a repeat than a lost alert
                log.exception(
                    "alert de-duplication store %s unavailable; sending %s without it", redact(store.url), alert.kind
                )
                token = -1.0
            if token is None:
                log.info(
                    "alert %s of %s not sent: the same alert went out within %g min (%s)",
                    alert.kind,
                    alert.model,
                    dedupe_minutes,
                    alert.key,
                )
                return SUPPRESSED
        for attempt in range(retries + 1):
            try:
                post(alert.payload)
            except Exception as exc:  # noqa: BLE001 - Slack down, refused, 5xx, bad token: all logged
                # a client error may quote the webhook URL (its path is the secret) or a token
                log.warning(
                    "Slack alert %s of %s: attempt %d of %d failed: %s: %s",
                    alert.kind,
                    alert.model,
                    attempt + 1,
                    retries + 1,
                    type(exc).__name__,
                    redact(exc),
                )
                if attempt < retries:
                    sleep(retry_seconds * 2**attempt)
                continue
            log.info("Slack alert %s of %s sent: %s", alert.kind, alert.model, alert.text[:300])
            return SENT
        log.error(
            "Slack alert %s of %s NOT sent after %d attempts: %s",
            alert.kind,
            alert.model,
            retries + 1,
            alert.text[:1000],
        )
        if store is not None and token not in (None, -1.0):
            try:
                store.release(alert, token)
            except Exception:  # noqa: BLE001
                log.exception("could not release the de-duplication claim of alert %s", alert.key)
        return FAILED
    except Exception:  # noqa: BLE001 - alerting never changes the outcome of the step that alerts
        log.exception("alert %s of %s could not be delivered", alert.kind, alert.model)
        return FAILED
