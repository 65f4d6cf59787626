"""The prediction log's storage: its two tables, where it lives (URL resolution), one
engine per URL, SQLite connections with the log's pragmas, and the small helpers every part
of the log shares (request ids, UTC timestamps, all-or-each commits).

Storage: an embedded SQLite file ``<state_dir>/predictions.db`` in WAL mode with
``synchronous=NORMAL`` (a committed transaction survives a kill of the process), or
PostgreSQL when the URL (argument, else ``RETRAIN_PREDICTIONS_URL``) is a ``postgresql://``
URL (normalised to the ``postgresql+psycopg`` driver). The tables are described in
:mod:`retrain_lib.serving.predlog`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from retrain_lib.core.settings import load_settings

log = logging.getLogger(__name__)


URL_ENV = "RETRAIN_PREDICTIONS_URL"

metadata = sa.MetaData()
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("request_id", sa.String(80), primary_key=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(40), nullable=False),
    sa.Column("arm", sa.String(20), nullable=False),
    sa.Column("features", sa.Text, nullable=False),
    sa.Column("output", sa.Float, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("parent_id", sa.String(80), nullable=True),
    sa.Column("error", sa.String(300), nullable=True),
    sa.Index("ix_predictions_model_created", "model", "created_at"),
)
feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("request_id", sa.String(80), primary_key=True),
    sa.Column("label", sa.Float, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
)


def resolve_url(settings=None, log_url: str | None = None) -> str:
    """The prediction log URL: ``log_url``, else ``$RETRAIN_PREDICTIONS_URL``, else the
    embedded SQLite file ``<state_dir>/predictions.db``; ``postgresql://`` and
    ``postgres://`` become ``postgresql+psycopg://``."""
    url = (log_url or os.environ.get(URL_ENV) or "").strip()
    if not url:
        if settings is None:
            settings = load_settings()
        url = f"sqlite:///{Path(settings.state_dir) / 'predictions.db'}"
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


_ENGINES: dict[str, sa.Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(url: str) -> sa.Engine:
    """One engine per URL and process, with the tables created."""
    url = resolve_url(log_url=url)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(url)
        if engine is None:
            if url.startswith("sqlite"):
                path = url.split("///", 1)[-1]
                if path and path != ":memory:":
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                engine = sa.create_engine(url, connect_args={"check_same_thread": False})
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = sa.create_engine(url, pool_pre_ping=True)
            metadata.create_all(engine)
            _add_missing_columns(engine)
            _ENGINES[url] = engine
        return engine


def _add_missing_columns(engine: sa.Engine) -> None:
    """Columns added since a log was created (nullable ones only): added in place."""
    have = {c["name"] for c in sa.inspect(engine).get_columns("predictions")}
    for col in predictions.columns:
        if col.name not in have and col.nullable:
            kind = col.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(sa.text(f'ALTER TABLE predictions ADD COLUMN "{col.name}" {kind}'))


def new_request_id() -> str:
    """A request id: a UUIDv7 (RFC 9562) as 32 hex digits, i.e. the time in milliseconds
    followed by 74 random bits. Ids made later sort later, so the log's primary-key index
    grows at its end instead of being written at a random page by every insert."""
    ms = time.time_ns() // 1_000_000 & _MASK48
    rand = int.from_bytes(os.urandom(10), "big")  # 80 random bits, 74 used
    value = ms << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64 | 0b10 << 62 | rand & _MASK62
    return f"{value:032x}"


_MASK48 = (1 << 48) - 1
_MASK62 = (1 << 62) - 1


def close_quietly(conn) -> None:
    """Close a connection (SQLAlchemy or DB-API) that is being dropped either way."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a broken connection is dropped either way
            log.debug("closing a prediction log connection failed", exc_info=True)


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC (the log's timestamps)."""
    return dt.datetime.now(dt.UTC)


def to_utc(value) -> dt.datetime:
    """A timestamp (datetime, date or ISO string; naive = UTC) as a timezone-aware UTC datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time.min)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return parsed.database


def all_or_each(items: list, commit: Callable[[list], None]) -> list[tuple[Any, Exception]]:
    """``commit(items)`` as one transaction; if it fails, each item in a transaction of its
    own, so one bad item fails alone. The items that could not be committed, with why."""
    try:
        commit(items)
        return []
    except Exception as exc:  # noqa: BLE001 - retried one by one below, each failure reported
        if len(items) <= 1:
            return [(item, exc) for item in items]
    return [failed for item in items for failed in all_or_each([item], commit)]


def sqlite_connect(database: str, *, autocheckpoint: int = 1000) -> sqlite3.Connection:
    """A raw connection with the engine's pragmas (it waits up to 10 s for another writer)."""
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    _sqlite_pragmas(conn, None)
    conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
    return conn
