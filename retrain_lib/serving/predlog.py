"""The prediction log: every answered prediction and every late label, durably.

Two tables (SQLAlchemy Core):

* ``predictions``: ``request_id`` (primary key), ``model``, ``version``, ``arm``
  (``champion``, ``challenger`` or ``shadow``), ``features`` (JSON text of the record),
  ``output`` (positive-class probability or regression prediction), ``latency_ms``,
  ``created_at`` (UTC), and ``parent_id``: for a ``shadow`` row, the request id of the
  answered request it mirrors (its own id is ``<parent_id>:shadow``), else NULL; ``error``:
  why the model could not score the request (the gateway answered 500, ``output`` is NULL),
  else NULL. The monitor's serving checks read error rates and latencies from here.
* ``feedback``: ``request_id`` (primary key, the answered request), ``label``,
  ``received_at`` (UTC). A second label for the same request replaces the first.

Storage: an embedded SQLite file ``<state_dir>/predictions.db`` in WAL mode with
``synchronous=NORMAL`` (a committed transaction survives a kill of the process), or
PostgreSQL when the URL (argument, else ``RETRAIN_PREDICTIONS_URL``) is a ``postgresql://``
URL (normalised to the ``postgresql+psycopg`` driver).

Writes go through :class:`PredictionLog`: one writer thread drains its queue and commits
everything waiting in one transaction (group commit) on a connection it keeps open, then
tells each submitter; :meth:`PredictionLog.write` waits for that.

The gateway acknowledges a prediction only once it is durable, and on SQLite it makes it
durable without a database transaction on the request path: :meth:`PredictionLog.append`
writes the rows as JSON lines to this process's **journal segment** (one ``write`` to a file
under ``<database>.journal/``; once it returns the rows survive a kill of the process) and
hands them to the writer thread, which moves everything journaled into the database four
times a second (``JOURNAL_INGEST_S``) in one transaction, off the request path (a few short
bursts of background work rather than one longer one beside the requests). A segment is
locked (``flock``) by its process while it lives and deleted once all its rows are committed;
segments whose process died (the lock is free) are moved into the database by
:func:`recover_journals`, which the next :class:`PredictionLog` and every reader
(:func:`read_predictions`) run first, so a reader never misses an acknowledged prediction
of a killed gateway. Rows are inserted with ``ON CONFLICT (request_id) DO NOTHING`` there,
so a row is never stored twice. PostgreSQL has no journal: the gateway waits for the group
commit instead. Feedback first waits until everything journaled is in the database, so a
label is never refused for a prediction that was already answered.

On a SQLite file the writing connections do not checkpoint the WAL as they commit (a
checkpoint syncs the database file): the writer thread runs a passive checkpoint (it never
blocks another writer) at most once a second after it has written, in a wake-up that moves
the journal, so it adds no wake-ups of its own.
"""

from __future__ import annotations

import collections
import datetime as dt
import fcntl
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

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
_EMPTY_ROW = {c.name: None for c in predictions.columns}
_NCOLS = len(_EMPTY_ROW)
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
            from retrain_lib.settings import load_settings

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


def _close_quietly(conn) -> None:
    """Close a connection (SQLAlchemy or DB-API) that is being dropped either way."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a broken connection is dropped either way
            log.debug("closing a prediction log connection failed", exc_info=True)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(value) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time.min)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def _insert(engine: sa.Engine, table: sa.Table, *, upsert_on: str | None = None):
    """INSERT, or an upsert on ``upsert_on`` for SQLite and PostgreSQL."""
    if upsert_on is None:
        return table.insert()
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[upsert_on], set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != upsert_on}
    )


@dataclass(frozen=True)
class FeedbackResult:
    stored: list[str]
    unknown: list[str]


class LogClosedError(RuntimeError):
    """The prediction log was closed; nothing more can be written."""


_STOP = object()
CHECKPOINT_EVERY_S = 1.0
JOURNAL_INGEST_S = 0.25  # how often the writer moves journaled rows into the database
JOURNAL_SEGMENT_BYTES = 8 << 20  # a segment is retired (deleted once committed) past this size
STALE_TMP_S = 60.0  # an unrenamed segment older than this is an orphan (see _stale)


# -- SQLite journal -------------------------------------------------------------------------


def journal_dir(database: str) -> Path:
    """Where the gateways logging to the SQLite file ``database`` keep their journal segments."""
    return Path(f"{database}.journal")


def sqlite_file(url: str) -> str | None:
    """The database file of a SQLite URL; None for other databases and in-memory SQLite."""
    url = sa.engine.make_url(url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def _all_or_each(items: list, commit: Callable[[list], None]) -> list[tuple[Any, Exception]]:
    """``commit(items)`` as one transaction; if it fails, each item in a transaction of its
    own, so one bad item fails alone. The items that could not be committed, with why."""
    try:
        commit(items)
        return []
    except Exception as exc:  # noqa: BLE001 - retried one by one below, each failure reported
        if len(items) <= 1:
            return [(item, exc) for item in items]
    return [failed for item in items for failed in _all_or_each([item], commit)]


class _Columns:
    """The predictions table as a raw SQLite statement, values encoded as SQLAlchemy encodes
    them for this table (timestamps as text), so rows written either way read back alike."""

    def __init__(self, engine: sa.Engine):
        dialect = engine.dialect
        self.cols = [(c.name, c.type.dialect_impl(dialect).bind_processor(dialect)) for c in predictions.columns]
        self.sql = (
            f"INSERT INTO predictions ({', '.join(c for c, _ in self.cols)}) "
            f"VALUES ({', '.join('?' * len(self.cols))}) ON CONFLICT (request_id) DO NOTHING"
        )

    def params(self, row: dict[str, Any]) -> tuple:
        return tuple(row.get(c) if proc is None else proc(row.get(c)) for c, proc in self.cols)

    def insert(self, conn: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[tuple[dict, Exception]]:
        """Insert ``rows`` (see :func:`_all_or_each`); the rows that could not be stored, with
        why. A request id already stored is not stored again."""
        return _all_or_each(rows, lambda part: self._insert(conn, [self.params(r) for r in part]))

    def _insert(self, conn: sqlite3.Connection, params: list[tuple]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(self.sql, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _sqlite_connect(database: str, *, autocheckpoint: int = 1000) -> sqlite3.Connection:
    """A raw connection with the engine's pragmas (it waits up to 10 s for another writer)."""
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    _sqlite_pragmas(conn, None)
    conn.execute(f"PRAGMA wal_autocheckpoint={autocheckpoint}")
    return conn


_JOURNAL_OPT = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


def _journal_line(row: dict[str, Any]) -> bytes:
    return orjson.dumps(row, option=_JOURNAL_OPT)  # one line; timestamps: RFC 3339 with offset


def _read_segment(path: Path, fd: int) -> tuple[list[dict[str, Any]], int]:
    """The rows of a journal segment and how many lines could not be read (a line cut short
    by a crash in the middle of its write was never acknowledged)."""
    with os.fdopen(os.dup(fd), "rb") as f:
        data = f.read()
    rows, bad = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = orjson.loads(line)
            row["created_at"] = _utc(row["created_at"])
            rows.append(row)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
    if bad:
        log.warning("prediction log journal %s: %d unreadable line(s) skipped", path, bad)
    return rows, bad


def recover_journals(url: str) -> int:
    """Move into the database the journal segments of SQLite log ``url`` that no living
    process holds (their gateway was killed, or could not commit them); each is deleted
    once its rows are committed. Segments of running gateways are left to them. A segment
    with rows the database refuses is renamed ``*.failed`` (kept, not retried) with an
    error in the log. Returns the number of rows recovered (already stored ones count)."""
    url = resolve_url(log_url=url)
    database = sqlite_file(url)
    if database is None:
        return 0
    jdir = journal_dir(database)
    try:
        paths = sorted(p for p in jdir.iterdir() if p.suffix == ".jsonl" or (p.suffix == ".tmp" and _stale(p)))
    except FileNotFoundError:
        return 0
    if not paths:
        return 0
    cols = _Columns(get_engine(url))
    recovered = 0
    conn = None
    try:
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # retired by its gateway meanwhile
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a living gateway's segment
                    continue
                if os.fstat(fd).st_nlink == 0:  # retired (deleted) before we locked it
                    continue
                rows, _bad = _read_segment(path, fd)
                if rows:
                    conn = conn or _sqlite_connect(database)
                    failed = cols.insert(conn, rows)
                    if failed:
                        kept = path.with_suffix(".failed")
                        os.rename(path, kept)
                        log.error(
                            "prediction log journal %s: %d row(s) could not be stored (first: %s); the "
                            "segment is kept as %s, fix the database and move it back to %s",
                            path,
                            len(failed),
                            failed[0][1],
                            kept,
                            path,
                        )
                        recovered += len(rows) - len(failed)
                        continue
                    recovered += len(rows)
                os.unlink(path)
            finally:
                os.close(fd)
    finally:
        _close_quietly(conn)
    if recovered:
        log.info("prediction log: %d journaled prediction(s) recovered from %s", recovered, jdir)
    return recovered


def _stale(path: Path) -> bool:
    """A segment still named ``.tmp`` this long after it was created belongs to a process that
    died between creating and locking it (it holds no rows: appends start after the rename).
    A younger one may be a starting gateway's, about to be locked: recovery leaves it."""
    try:
        return time.time() - path.stat().st_mtime > STALE_TMP_S
    except FileNotFoundError:
        return False


@dataclass(eq=False)
class _Segment:
    path: Path
    fd: int
    size: int = 0
    failed: bool = False  # some of its rows could not be committed: kept for recovery


class PredictionLog:
    """Group-committing writer of the prediction log (one per gateway process).

    :meth:`submit` queues rows and returns at once; ``callback(error)`` runs on the writer
    thread after the rows are committed (``error`` is ``None``) or could not be (the
    exception). :meth:`write` waits for the commit. Every batch is one transaction; when a
    batch fails, its items are retried one by one so one bad item fails alone.
    :meth:`append` (SQLite) makes rows durable in this process's journal at once and leaves
    the database write to the writer thread.
    """

    def __init__(self, url: str, *, max_batch: int = 512):
        self.url = resolve_url(log_url=url)
        self.engine = get_engine(self.url)
        self.max_batch = max_batch
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self.batches = 0  # transactions committed
        self.rows = 0  # prediction rows committed
        self.failures = 0
        self._conn = None  # the writer thread's connection
        self._upsert_labels = _insert(self.engine, feedback, upsert_on="request_id")
        self._count_lock = threading.Lock()
        # The journal (SQLite files only): appended under _journal_lock, moved into the
        # database by the writer thread on a raw connection of its own.
        self._database = sqlite_file(self.url)
        self._segment: _Segment | None = None
        self._journaled: collections.deque = collections.deque()  # (segment, rows | None = retire)
        self._journal_lock = threading.Lock()
        self._raw: sqlite3.Connection | None = None
        self._appended = 0  # rows journaled (under _journal_lock)
        self._moved = 0  # journaled rows the writer has taken up (writer thread only)
        if self._database is not None:
            self._columns = _Columns(self.engine)
            recover_journals(self.url)  # what a killed gateway left behind
        self._dirty = False  # written since the last checkpoint (writer thread only)
        self._last_checkpoint = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="predlog-writer", daemon=True)
        self._thread.start()

    # -- writing ---------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Items queued for the writer."""
        return self._queue.qsize()

    @property
    def journaled(self) -> int:
        """Rows in the journal that the writer has not committed (or failed to commit) yet."""
        return self._appended - self._moved

    def submit(
        self,
        rows: list[dict[str, Any]],
        callback: Callable[[BaseException | None], None] | None = None,
        *,
        labels: bool = False,
    ):
        """Queue prediction rows (or, with ``labels``, feedback rows: upserts by request id)."""
        if self._closed:
            raise LogClosedError("the prediction log is closed")
        self._queue.put((rows, callback, labels))

    def write(self, rows: list[dict[str, Any]], timeout: float | None = 30.0, *, labels: bool = False) -> None:
        """Queue ``rows`` and wait until they are committed (raises what the commit raised)."""
        done = threading.Event()
        box: list[BaseException | None] = [None]

        def callback(error):
            box[0] = error
            done.set()

        self.submit(rows, callback, labels=labels)
        if not done.wait(timeout):
            raise TimeoutError(f"prediction log commit did not finish within {timeout} s")
        if box[0] is not None:
            raise box[0]

    def flush(self, timeout: float | None = 30.0) -> None:
        """Wait until everything appended or submitted before this call is in the database."""
        self.write([], timeout)

    def append(self, rows: list[dict[str, Any]]) -> bool:
        """Make prediction ``rows`` durable now, on the calling thread: one ``write`` of JSON
        lines to this process's journal segment (SQLite files only). Once it returns
        ``True`` the rows survive a kill of the process; the writer thread commits them to
        the database within ``JOURNAL_INGEST_S``. ``False`` when there is no journal (the
        log is PostgreSQL or in memory), the log is closed or the write failed; nothing was
        acknowledged then, and the caller uses :meth:`submit` and waits for the commit."""
        if self._database is None:
            return False
        # This runs on every answered request: kept to one encode, one lock and one write.
        try:
            data = _journal_line(rows[0]) if len(rows) == 1 else b"".join([_journal_line(r) for r in rows])
        except TypeError as exc:  # a value JSON cannot hold: the database write reports it
            log.debug("prediction rows cannot be journaled, committing instead: %s", exc)
            return False
        with self._journal_lock:
            if self._closed:
                return False
            try:
                seg = self._segment or self._open_segment()
                written = os.write(seg.fd, data)
                if written < len(data):  # a short write (rare): the rest of the lines
                    view = memoryview(data)[written:]
                    while view:
                        view = view[os.write(seg.fd, view) :]
            except OSError as exc:
                log.warning("prediction log journal write failed, committing instead: %s", exc)
                if self._segment is not None:  # a partly written line: start a new segment
                    self._retire_segment()
                return False
            seg.size += len(data)
            self._appended += len(rows)
            self._journaled.append((seg, rows))
            if seg.size >= JOURNAL_SEGMENT_BYTES:
                self._retire_segment()
        return True

    def _open_segment(self) -> _Segment:
        """A new segment, locked before it gets the name recovery looks for."""
        jdir = journal_dir(self._database)
        jdir.mkdir(parents=True, exist_ok=True)
        name = f"{os.getpid()}-{time.time_ns()}-{os.urandom(4).hex()}"
        tmp = jdir / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(tmp, jdir / f"{name}.jsonl")
        except OSError:
            os.close(fd)
            raise
        self._segment = _Segment(jdir / f"{name}.jsonl", fd)
        return self._segment

    def _retire_segment(self) -> None:
        """No more appends to the current segment; the writer deletes it once what was
        journaled before is committed (caller holds ``_journal_lock``)."""
        self._journaled.append((self._segment, None))
        self._segment = None

    def add_feedback(self, model: str, labels: Iterable[tuple[str, float]]) -> FeedbackResult:
        """Store late labels for answered requests of ``model``; ids the log does not know
        (or that belong to another model) are returned as ``unknown`` and not stored."""
        labels = list(labels)
        ids = [rid for rid, _ in labels]
        if self._database is not None:
            self.flush()  # answered predictions still in the journal are in the database now
        known: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                known.update(
                    r[0]
                    for r in conn.execute(
                        sa.select(predictions.c.request_id).where(
                            predictions.c.request_id.in_(chunk),
                            predictions.c.model == model,
                            predictions.c.parent_id.is_(None),
                        )
                    )
                )
        now = utcnow()
        rows = {
            rid: {"request_id": rid, "label": float(label), "received_at": now} for rid, label in labels if rid in known
        }
        if rows:  # through the writer: committed with the predictions waiting beside them
            self.write(list(rows.values()), labels=True)
        return FeedbackResult(stored=[r for r in ids if r in known], unknown=[r for r in ids if r not in known])

    def close(self, timeout: float = 30.0) -> None:
        """Commit what is queued and journaled, then stop the writer."""
        with self._journal_lock:
            if self._closed:
                return
            self._closed = True
            if self._segment is not None:
                self._retire_segment()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._disconnect()
            raw, self._raw = self._raw, None
            _close_quietly(raw)

    def _connect(self):
        if self._conn is None:
            conn = self.engine.connect()
            if self._database is not None:  # checkpointed by _checkpoint() instead
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                conn.commit()
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        _close_quietly(conn)

    def _raw_connection(self) -> sqlite3.Connection:
        if self._raw is None:
            self._raw = _sqlite_connect(self._database, autocheckpoint=0)
        return self._raw

    def _checkpoint(self, *, due_only: bool = True) -> None:
        """A passive WAL checkpoint when something was written, at most every
        ``CHECKPOINT_EVERY_S`` unless ``due_only`` is False."""
        if self._database is None or not self._dirty:
            return
        now = time.monotonic()
        if due_only and now - self._last_checkpoint < CHECKPOINT_EVERY_S:
            return
        self._dirty, self._last_checkpoint = False, now
        try:
            self._raw_connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except Exception as exc:  # noqa: BLE001 - checkpoints are housekeeping; retried next round
            log.warning("prediction log checkpoint failed: %s", exc)

    def _loop(self) -> None:
        wait = JOURNAL_INGEST_S if self._database is not None else None
        stop = False
        while not stop:
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            # Everything journaled before this item was taken goes first (flush() relies on it).
            self._ingest_journaled()
            if item is None:
                self._checkpoint()
                continue
            batch = []
            if item is _STOP:
                stop = True
            else:
                batch.append(item)
            n = len(item[0]) if batch else 0
            while n < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
                n += len(item[0])
            if batch:
                self._commit(batch)
            self._checkpoint()
        self._ingest_journaled()
        self._checkpoint(due_only=False)

    def _ingest_journaled(self) -> None:
        """Commit the journaled rows (one transaction, or row by row after a failure) and
        delete the retired segments whose rows are all in the database."""
        rows: list[dict] = []
        segments: list[_Segment] = []
        while True:
            try:
                seg, seg_rows = self._journaled.popleft()
            except IndexError:
                break
            if seg_rows is not None:
                rows.extend(seg_rows)
                segments.extend(seg for _ in seg_rows)
                continue
            self._commit_journaled(rows, segments)  # everything before the retirement first
            rows, segments = [], []
            self._delete_segment(seg)
        self._commit_journaled(rows, segments)

    def _commit_journaled(self, rows: list[dict], segments: list[_Segment]) -> None:
        if not rows:
            return
        try:
            failed = self._columns.insert(self._raw_connection(), rows)
        except Exception as exc:  # noqa: BLE001 - no connection: everything stays journaled
            failed = [(row, exc) for row in rows]
            raw, self._raw = self._raw, None
            _close_quietly(raw)
        if failed:
            bad = {id(row) for row, _ in failed}
            for row, seg in zip(rows, segments):
                if id(row) in bad:
                    seg.failed = True
            self.failures += len(failed)
            log.warning(
                "prediction log: %d journaled row(s) not committed, kept in the journal for recovery: %s",
                len(failed),
                failed[0][1],
            )
        self._dirty = True
        with self._count_lock:
            self.batches += 1
            self.rows += len(rows) - len(failed)
        self._moved += len(rows)

    @staticmethod
    def _delete_segment(seg: _Segment) -> None:
        """A retired segment: deleted when all its rows are committed, else closed and left
        for :func:`recover_journals` (deleted before its lock is released, so recovery never
        sees a finished segment)."""
        try:
            if not seg.failed:
                os.unlink(seg.path)
        except OSError as exc:
            log.warning("prediction log journal %s could not be deleted: %s", seg.path, exc)
        finally:
            os.close(seg.fd)

    def _commit(self, batch: list) -> None:
        """Commit queued items (see :func:`_all_or_each`) and tell each submitter its outcome."""
        failed = {id(item): exc for item, exc in _all_or_each(batch, self._commit_items)}
        for item in batch:
            error = failed.get(id(item))
            if error is not None:
                log.warning("prediction log write failed: %s", error)
                self.failures += 1
            if item[1] is not None:
                try:
                    item[1](error)
                except Exception:  # noqa: BLE001 - a broken callback must not stop the writer
                    log.exception("prediction log callback failed")

    def _commit_items(self, batch: list) -> None:
        """The prediction rows and labels of ``batch`` in one transaction."""
        # Every row names every column (one executemany needs the same keys in each row).
        rows = [
            row if len(row) == _NCOLS else {**_EMPTY_ROW, **row}
            for rs, _, is_labels in batch
            if not is_labels
            for row in rs
        ]
        labels: dict[str, dict] = {}  # a later label of a request replaces an earlier one
        for rs, _, is_labels in batch:
            if is_labels:
                labels.update((r["request_id"], r) for r in rs)
        if rows or labels:
            conn = self._connect()
            try:
                with conn.begin():
                    if rows:
                        conn.execute(predictions.insert(), rows)
                    if labels:
                        conn.execute(self._upsert_labels, list(labels.values()))
            except Exception:
                if conn.invalidated or conn.closed:
                    self._disconnect()
                raise
            self._dirty = True
        with self._count_lock:
            self.batches += 1
            self.rows += len(rows)


# -----------------------------------------------------------------------------------------
# Reading (monitor, rollout)
# -----------------------------------------------------------------------------------------


def read_predictions(url: str, model: str, since, until=None, arm: str | None = None):
    """Predictions of ``model`` with ``since <= created_at < until`` (UTC; naive = UTC), with
    their label joined (``label``, ``received_at``; NaN/NaT when none yet). Shadow rows get
    the label of the request they mirror. Columns: request_id, model, version, arm, features
    (dict), output, latency_ms, created_at (tz-aware UTC), parent_id, label, received_at.
    """
    import pandas as pd

    recover_journals(url)  # predictions a killed gateway acknowledged but did not commit
    engine = get_engine(url)
    p, f = predictions, feedback
    key = sa.func.coalesce(p.c.parent_id, p.c.request_id)
    query = (
        sa.select(p, f.c.label, f.c.received_at)
        .select_from(p.outerjoin(f, f.c.request_id == key))
        .where(p.c.model == model, p.c.created_at >= _utc(since))
    )
    if until is not None:
        query = query.where(p.c.created_at < _utc(until))
    if arm is not None:
        query = query.where(p.c.arm == arm)
    query = query.order_by(p.c.created_at, p.c.request_id)
    with engine.connect() as conn:
        frame = pd.DataFrame(
            conn.execute(query).mappings().all(), columns=[*(c.name for c in p.columns), "label", "received_at"]
        )
    frame["features"] = frame["features"].map(json.loads)
    for col in ("created_at", "received_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    frame["label"] = frame["label"].astype(float)
    return frame


def arm_summary(url: str, model: str, since, until=None) -> dict[str, dict[str, Any]]:
    """Per arm: ``n``, ``versions``, ``mean_output``, ``p50_latency_ms``, ``p95_latency_ms``,
    ``labelled``, ``mean_label`` and, for 0/1 labels with both classes, ``roc_auc``
    of the outputs (None otherwise)."""
    import numpy as np

    frame = read_predictions(url, model, since, until)
    out: dict[str, dict[str, Any]] = {}
    for arm_name, part in frame.groupby("arm", sort=True):
        labelled = part[part["label"].notna()]
        auc = None
        if len(labelled) and set(np.unique(labelled["label"])) == {0.0, 1.0}:
            from sklearn.metrics import roc_auc_score

            auc = float(roc_auc_score(labelled["label"].astype(int), labelled["output"]))
        out[str(arm_name)] = {
            "n": int(len(part)),
            "versions": sorted(part["version"].unique().tolist(), key=lambda v: (len(v), v)),
            "mean_output": float(part["output"].mean()),
            "p50_latency_ms": float(part["latency_ms"].quantile(0.5)),
            "p95_latency_ms": float(part["latency_ms"].quantile(0.95)),
            "labelled": int(len(labelled)),
            "mean_label": float(labelled["label"].mean()) if len(labelled) else None,
            "roc_auc": auc,
        }
    return out
