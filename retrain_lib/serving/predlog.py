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
URL (normalised to the ``postgresql+psycopg`` driver); see
:mod:`retrain_lib.serving.predlog_store` (tables, URLs, engines). Reading (monitor,
rollout): :mod:`retrain_lib.serving.predlog_read`.

This module holds the writer.

Writes go through :class:`PredictionLog`: one writer thread drains its queue and commits
everything waiting in one transaction (group commit) on a connection it keeps open, then
tells each submitter; :meth:`PredictionLog.write` waits for that.

The gateway acknowledges a prediction only once it is durable, and on SQLite it makes it
durable without a database transaction on the request path: :meth:`PredictionLog.append`
(through :class:`~retrain_lib.serving.predlog_journal.Journal`) writes the rows as JSON
lines to this process's **journal segment** (one ``write`` to a file under
``<database>.journal/``; once it returns the rows survive a kill of the process) and hands
them to the writer thread, which moves everything journaled into the database four times a
second (``JOURNAL_INGEST_S``) in one transaction, off the request path (a few short bursts
of background work rather than one longer one beside the requests). A segment is locked
(``flock``) by its process while it lives and deleted once all its rows are committed;
segments whose process died (the lock is free) are moved into the database by
:func:`~retrain_lib.serving.predlog_journal.recover_journals`, which the next
:class:`PredictionLog` and every reader
(:func:`~retrain_lib.serving.predlog_read.read_predictions`) run first, so a reader never
misses an acknowledged prediction of a killed gateway. Rows are inserted with ``ON CONFLICT
(request_id) DO NOTHING`` there, so a row is never stored twice. PostgreSQL has no journal:
the gateway waits for the group commit instead. Feedback first waits until everything
journaled is in the database, so a label is never refused for a prediction that was
already answered.

On a SQLite file the writing connections do not checkpoint the WAL as they commit (a
checkpoint syncs the database file): the writer thread runs a passive checkpoint (it never
blocks another writer) at most once a second after it has written, in a wake-up that moves
the journal, so it adds no wake-ups of its own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from retrain_lib.serving.predlog_journal import Journal, recover_journals
from retrain_lib.serving.predlog_store import (
    all_or_each,
    close_quietly,
    feedback,
    get_engine,
    predictions,
    resolve_url,
    sqlite_file,
    utcnow,
)

if TYPE_CHECKING:
    from sqlalchemy.dialects.postgresql import Insert as PgInsert
    from sqlalchemy.dialects.sqlite import Insert as SqliteInsert

log = logging.getLogger(__name__)

_EMPTY_ROW = {c.name: None for c in predictions.columns}
_NCOLS = len(_EMPTY_ROW)


@dataclass(frozen=True)
class FeedbackResult:
    stored: list[str]
    unknown: list[str]


class LogClosedError(RuntimeError):
    """The prediction log was closed; nothing more can be written."""


_STOP = object()
CHECKPOINT_EVERY_S = 1.0
JOURNAL_INGEST_S = 0.25  # how often the writer moves journaled rows into the database


def _upsert(engine: sa.Engine, table: sa.Table, key: str):
    """An upsert on ``key`` for SQLite and PostgreSQL."""
    stmt: PgInsert | SqliteInsert
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(table)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(table)
    return stmt.on_conflict_do_update(
        index_elements=[key], set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != key}
    )


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
        self._conn: sa.Connection | None = None  # the writer thread's connection
        self._upsert_labels = _upsert(self.engine, feedback, "request_id")
        self._count_lock = threading.Lock()
        self._close_lock = threading.Lock()
        # The journal (SQLite files only): appended on request threads, moved into the
        # database by the writer thread on a raw connection of its own.
        database = sqlite_file(self.url)
        self._journal: Journal | None = None
        if database is not None:
            self._journal = Journal(self.engine, database)
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
        return self._journal.pending if self._journal is not None else 0

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
        journal = self._journal
        return journal is not None and journal.append(rows)

    def add_feedback(self, model: str, labels: Iterable[tuple[str, float]]) -> FeedbackResult:
        """Store late labels for answered requests of ``model``; ids the log does not know
        (or that belong to another model) are returned as ``unknown`` and not stored."""
        labels = list(labels)
        ids = [rid for rid, _ in labels]
        if self._journal is not None:
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
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._journal is not None:
            self._journal.close()
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._disconnect()
            if self._journal is not None:
                self._journal.disconnect()

    def _connect(self):
        if self._conn is None:
            conn = self.engine.connect()
            if self._journal is not None:  # checkpointed by _checkpoint() instead
                conn.exec_driver_sql("PRAGMA wal_autocheckpoint=0")
                conn.commit()
            self._conn = conn
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        close_quietly(conn)

    def _checkpoint(self, *, due_only: bool = True) -> None:
        """A passive WAL checkpoint when something was written, at most every
        ``CHECKPOINT_EVERY_S`` unless ``due_only`` is False."""
        if self._journal is None or not self._dirty:
            return
        now = time.monotonic()
        if due_only and now - self._last_checkpoint < CHECKPOINT_EVERY_S:
            return
        self._dirty, self._last_checkpoint = False, now
        try:
            self._journal.checkpoint()
        except Exception as exc:  # noqa: BLE001 - checkpoints are housekeeping; retried next round
            log.warning("prediction log checkpoint failed: %s", exc)

    def _loop(self) -> None:
        wait = JOURNAL_INGEST_S if self._journal is not None else None
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
        """Commit the journaled rows and delete the segments that are done (see
        :meth:`Journal.ingest`)."""
        if self._journal is not None:
            self._journal.ingest(self._count_journaled)

    def _count_journaled(self, rows: int, failed: int) -> None:
        self.failures += failed
        self._dirty = True
        with self._count_lock:
            self.batches += 1
            self.rows += rows - failed

    def _commit(self, batch: list) -> None:
        """Commit queued items (see :func:`~retrain_lib.serving.predlog_store.all_or_each`) and
        tell each submitter its outcome."""
        failed = {id(item): exc for item, exc in all_or_each(batch, self._commit_items)}
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
