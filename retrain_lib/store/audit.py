"""The decision ledger: an append-only, hash-chained table of every decision the platform takes.

Every monitor verdict, gate result, promotion, rollback and rejection is one row of the
``retrain_ledger`` table in the platform database (SQLAlchemy Core): an embedded SQLite
file ``<state_dir>/platform.db`` by default, PostgreSQL in production (the URL comes from
the environment variable named by ``database.url_env`` in ``platform.yaml``, see
:mod:`retrain_lib.core.settings`). The table is created on first use.

The table's schema, the canonical JSON and the row hash are in :mod:`retrain_lib.store.ledger_records`;
queries over the records (champion history, the live metric) in :mod:`retrain_lib.store.ledger_history`.

Appends are serialised across processes and machines: on SQLite with ``BEGIN IMMEDIATE``
(plus WAL mode and a busy timeout), on PostgreSQL with a transaction-scoped advisory lock
taken before the head is read; the primary key on ``seq`` is the backstop. Rows are never
updated or deleted (triggers refuse it, to catch accidents).

What the chain proves, and what it does not:

* :meth:`Ledger.verify` finds a row edited in place (its hash no longer matches), an
  edited row whose hash was recomputed (the next row's ``prev_hash`` no longer matches, or
  the head does not for the last row), deleted or reordered rows (a ``seq`` gap, a broken
  link) and a deleted tail (the head names a later row than the table holds).
* It cannot detect a rewrite by someone who can write the whole table *and* the head
  table: they can recompute every hash from the edited row on. Nothing in one database can
  prove that. To make such a rewrite detectable, anchor the head hash somewhere the database
  owner cannot write (``retrain ledger verify --format json`` prints it: store it in a
  ticket, a signed commit, a WORM bucket) and compare later heads with it: an honest ledger's
  later chain still contains the anchored hash at the anchored ``seq``.
* The ``time`` column is the writer's clock; the chain proves order of appends, not time.

Example::

    ledger = Ledger.from_settings(load_settings())
    ledger.append("credit_default", "promote", as_of="2026-01-11", actor="cli",
                  before="2", after="3", reason="manual", details={"run_id": "abc"})
    with ledger.transaction() as tx:         # exclusive: concurrent appends wait
        ...                                  # check the champion alias, then move it
        tx.append("credit_default", "promote", before="3", after="4")
    assert ledger.verify() == []
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from retrain_lib.core.errors import ConfigError, RetrainError
from retrain_lib.core.settings import redact
from retrain_lib.store.ledger_records import (
    GENESIS,
    HEAD_TABLE,
    TABLE,
    as_record,
    canonical_json,
    chain_problems,
    opt_str,
    row_hash,
)

log = logging.getLogger(__name__)

# pg_advisory_xact_lock key of ledger appends: the ASCII of "retrain_" as a signed 64-bit integer.
_PG_LOCK_KEY = int.from_bytes(b"retrain_", "big", signed=True)
_BUSY_TIMEOUT_MS = 60_000


class LedgerError(RetrainError, RuntimeError):
    """The ledger could not be written or read (database unreachable, chain head moved)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


# -----------------------------------------------------------------------------------------
# Database
# -----------------------------------------------------------------------------------------


def normalise_url(url: str) -> str:
    """A SQLAlchemy URL for the ledger: ``postgres://`` and ``postgresql://`` use psycopg 3."""
    url = url.strip()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@functools.lru_cache(maxsize=1)
def _tables():
    """The ledger's tables (one MetaData per process)."""
    import sqlalchemy as sa

    md = sa.MetaData()
    ledger = sa.Table(
        TABLE,
        md,
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("time", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("as_of", sa.Text, nullable=True),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("before_version", sa.Text, nullable=True),
        sa.Column("after_version", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.CheckConstraint("seq >= 0", name="retrain_ledger_seq_nonnegative"),
    )
    sa.Index("retrain_ledger_model_seq", ledger.c.model, ledger.c.seq)
    head = sa.Table(
        HEAD_TABLE,
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.CheckConstraint("id = 1", name="retrain_ledger_head_single_row"),
    )
    return md, ledger, head


_SQLITE_GUARDS = [
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
    f"CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE} "
    f"BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only'); END",
]
_PG_GUARDS = [
    f"CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    f"$$ BEGIN RAISE EXCEPTION '{TABLE} is append-only'; END $$",
    f"CREATE OR REPLACE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {TABLE} "
    f"FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_append_only()",
]

_engines: dict[tuple[str, int], Any] = {}
_ready: set[tuple[str, int]] = set()
_engines_lock = threading.Lock()


def _engine(url: str):
    """One engine per URL and process (a forked child must not share its parent's sockets)."""
    key = (url, os.getpid())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _create_engine(url)
            _engines[key] = engine
        return engine


def _create_engine(url: str):
    import sqlalchemy as sa
    from sqlalchemy import event

    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is not a number
        raise ConfigError(
            f"ledger database URL {redact(url)!r} is not a SQLAlchemy URL ({redact(exc)}); use "
            "e.g. postgresql://user@host/db or sqlite:////path/platform.db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ledger_write") else "BEGIN")

        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(parsed, pool_pre_ping=True)
    raise ConfigError(f"ledger database {parsed.get_backend_name()!r} is not supported; use sqlite or postgresql")


class Ledger:
    """The decision ledger in one database.

    Args:
        url: SQLAlchemy URL (``sqlite:///...``, ``postgresql://...``; the latter is run
            through psycopg 3).
    """

    def __init__(self, url: str):
        self.url = normalise_url(url)
        self._md, self._table, self._head = _tables()

    def display_url(self) -> str:
        """The ledger's database URL with any password masked (for pages and logs)."""
        import sqlalchemy as sa

        return sa.engine.make_url(self.url).render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"Ledger({self.display_url()!r})"

    @classmethod
    def from_settings(cls, settings) -> Ledger:
        """The ledger of a platform: ``settings.database_url`` (see :mod:`retrain_lib.core.settings`)."""
        return cls(settings.database_url)

    # -- connections ------------------------------------------------------------------

    @property
    def engine(self):
        engine = _engine(self.url)
        self._ensure_schema(engine)
        return engine

    def _ensure_schema(self, engine) -> None:
        key = (self.url, os.getpid())
        if key in _ready:
            return
        import sqlalchemy as sa

        try:
            with self._write_conn(engine) as conn:
                self._md.create_all(conn, checkfirst=True)
                for stmt in _PG_GUARDS if engine.dialect.name == "postgresql" else _SQLITE_GUARDS:
                    conn.exec_driver_sql(stmt)
        except sa.exc.OperationalError as exc:
            raise LedgerError(f"cannot open the decision ledger at {self!r}: {exc.orig}") from exc
        _ready.add(key)

    @contextlib.contextmanager
    def _write_conn(self, engine) -> Iterator[Any]:
        """A connection in a transaction that holds the ledger's exclusive write lock."""
        import sqlalchemy as sa

        with engine.connect() as conn:
            conn.execution_options(ledger_write=True)
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
                yield conn

    # -- writing ----------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[LedgerTransaction]:
        """Hold the ledger's exclusive lock for a block and append in it atomically.

        Every other append (any process, any machine using the same database) waits until
        the block ends. Use it to make an external check-and-act and its ledger row one
        step, e.g. a compare-and-swap promotion::

            with ledger.transaction() as tx:
                moves = registry.promote_champion(client, name, version, expected_champion=seen)
                tx.append(name, "promote", before=seen, after=version)

        When the block raises, nothing it appended is kept. (What the block did outside
        the database, such as moving an alias, is not undone: do the external action last
        but one and the append last.)
        """
        import sqlalchemy as sa

        try:
            with self._write_conn(self.engine) as conn:
                yield LedgerTransaction(self, conn)
        except sa.exc.IntegrityError as exc:
            raise LedgerError(f"ledger append conflicted with another writer ({exc.orig}); retry") from exc

    def append(
        self,
        model: str,
        event: str,
        *,
        as_of: str | dt.date | None = None,
        actor: str = "",
        before: str | None = None,
        after: str | None = None,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> dict:
        """Append one decision in its own transaction and return the record written.

        Args:
            model: the model the decision is about.
            event: what was decided (``monitor``, ``gates``, ``promote``, ``rollback``, ...).
            as_of: the logical day of the run that decided (not "now").
            actor: who decided (``cli``, ``<dag_id>/<run_id>``, a person).
            before, after: the champion version before and after, when the decision moved it.
            reason: why, in a sentence.
            details: JSON-able facts (numpy values, dates and paths are converted).
        """
        with self.transaction() as tx:
            return tx.append(
                model, event, as_of=as_of, actor=actor, before=before, after=after, reason=reason, details=details
            )

    # -- reading ----------------------------------------------------------------------

    def records(self, model: str | None = None, *, models: list[str] | None = None) -> list[dict]:
        """Every record (of ``model``, or of the ``models`` listed), in ``seq`` order, as dicts
        with the keys ``seq, time, model, event, as_of, actor, before, after, reason, details,
        prev, hash``."""
        t = self._table
        query = t.select().order_by(t.c.seq)
        if model is not None:
            query = query.where(t.c.model == model)
        if models is not None:
            query = query.where(t.c.model.in_(list(models)))
        with self.engine.connect() as conn:
            return [as_record(r) for r in conn.execute(query).mappings()]

    def models(self) -> list[str]:
        """The models that have at least one record."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return sorted(conn.execute(sa.select(self._table.c.model).distinct()).scalars())

    def head(self) -> dict | None:
        """``{"seq": ..., "hash": ...}`` of the last append (from the head table), or ``None``."""
        with self.engine.connect() as conn:
            row = conn.execute(self._head.select()).mappings().first()
        return None if row is None else {"seq": row["seq"], "hash": row["hash"]}

    def verify(self) -> list[str]:
        """Problems of the chain, one sentence each (empty when intact). See the module
        docstring for what an intact chain does and does not prove."""
        t = self._table
        with self.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")  # rows and head: one snapshot
            with conn.begin():
                rows = list(conn.execute(t.select().order_by(t.c.seq)).mappings())
                head = conn.execute(self._head.select()).mappings().first()
        return chain_problems(rows, None if head is None else dict(head))


class LedgerTransaction:
    """Appends inside :meth:`Ledger.transaction` (the exclusive lock is held)."""

    def __init__(self, ledger: Ledger, conn):
        self._ledger = ledger
        self._conn = conn
        self._last: tuple[int, str] | None = None

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last row (``(-1, GENESIS)`` on an empty ledger)."""
        if self._last is None:
            import sqlalchemy as sa

            t = self._ledger._table
            row = self._conn.execute(sa.select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)).first()
            self._last = (-1, GENESIS) if row is None else (int(row[0]), row[1])
        return self._last

    def records(self, model: str | None = None) -> list[dict]:
        """Like :meth:`Ledger.records`, seen from inside the transaction."""
        t = self._ledger._table
        query = t.select().order_by(t.c.seq)
        if model is not None:
            query = query.where(t.c.model == model)
        return [as_record(r) for r in self._conn.execute(query).mappings()]

    def append(
        self,
        model: str,
        event: str,
        *,
        as_of: str | dt.date | None = None,
        actor: str = "",
        before: str | None = None,
        after: str | None = None,
        reason: str = "",
        details: Mapping[str, Any] | None = None,
    ) -> dict:
        """Append one decision (kept when the transaction commits); see :meth:`Ledger.append`."""
        if not model or not event:
            raise ValueError(
                f"The 'model' and 'event' parameters of append must be non-empty. Got {model!r} and {event!r} instead."
            )
        if isinstance(as_of, dt.date | dt.datetime):
            as_of = as_of.isoformat()
        last_seq, last_hash = self.head()
        row: dict[str, Any] = {
            "seq": last_seq + 1,
            "time": _now(),
            "model": str(model),
            "event": str(event),
            "as_of": opt_str(as_of),
            "actor": str(actor or ""),
            "before_version": opt_str(before),
            "after_version": opt_str(after),
            "reason": str(reason or ""),
            "details": canonical_json(dict(details or {})),
            "prev_hash": last_hash,
        }
        row["hash"] = row_hash(row)
        self._conn.execute(self._ledger._table.insert().values(**row))
        head = self._ledger._head
        updated = self._conn.execute(head.update().where(head.c.id == 1).values(seq=row["seq"], hash=row["hash"]))
        if updated.rowcount == 0:
            self._conn.execute(head.insert().values(id=1, seq=row["seq"], hash=row["hash"]))
        self._last = (row["seq"], row["hash"])
        return as_record(row)


# -----------------------------------------------------------------------------------------
# Module-level helpers (the functions of the former JSONL ledger)
# -----------------------------------------------------------------------------------------


def open_ledger(target) -> Ledger:
    """A :class:`Ledger` from a ``Ledger``, a ``Settings``, a database URL or a SQLite file path."""
    if isinstance(target, Ledger):
        return target
    if hasattr(target, "database_url"):
        return Ledger.from_settings(target)
    text = os.fspath(target)
    if "://" in text:
        return Ledger(text)
    return Ledger(f"sqlite:///{Path(text).resolve()}")


def record_decision(
    target,
    *,
    model: str,
    event: str,
    as_of: str | None = None,
    actor: str = "",
    details: dict[str, Any] | None = None,
    before: str | None = None,
    after: str | None = None,
    reason: str = "",
) -> dict:
    """Append one decision to the ledger ``target`` (see :func:`open_ledger`)."""
    return open_ledger(target).append(
        model, event, as_of=as_of, actor=actor, before=before, after=after, reason=reason, details=details
    )


def read_ledger(target, model: str | None = None) -> list[dict]:
    """The records of the ledger ``target`` (of ``model``), in ``seq`` order."""
    return open_ledger(target).records(model)


def verify_ledger(target) -> list[str]:
    """Problems of the ledger ``target`` (empty when intact)."""
    return open_ledger(target).verify()
