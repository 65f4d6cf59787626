"""The prediction log's SQLite journal: rows made durable by one file write before the
gateway answers, moved into the database later by the log's writer thread.

:class:`Journal` appends a request's rows as JSON lines to this process's **journal
segment** (a file under ``<database>.journal/``; once the write returns the rows survive a
kill of the process) and hands them to the writer thread, which commits everything
journaled in one transaction (:meth:`Journal.ingest`). A segment is locked (``flock``) by
its process while it lives and deleted once all its rows are committed; segments whose
process died (the lock is free) are moved into the database by :func:`recover_journals`,
which the next log and every reader run first. Rows are inserted with ``ON CONFLICT
(request_id) DO NOTHING`` there, so a row is never stored twice.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from retrain_lib.serving.predlog_store import (
    all_or_each,
    close_quietly,
    get_engine,
    predictions,
    resolve_url,
    sqlite_connect,
    sqlite_file,
    to_utc,
)

log = logging.getLogger(__name__)

JOURNAL_SEGMENT_BYTES = 8 << 20  # a segment is retired (deleted once committed) past this size
STALE_TMP_S = 60.0  # an unrenamed segment older than this is an orphan (see _stale)


def journal_dir(database: str) -> Path:
    """Where the gateways logging to the SQLite file ``database`` keep their journal segments."""
    return Path(f"{database}.journal")


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
        """Insert ``rows`` (see :func:`all_or_each`); the rows that could not be stored, with
        why. A request id already stored is not stored again."""
        return all_or_each(rows, lambda part: self._insert(conn, [self.params(r) for r in part]))

    def _insert(self, conn: sqlite3.Connection, params: list[tuple]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(self.sql, params)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


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
            row["created_at"] = to_utc(row["created_at"])
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
                    conn = conn or sqlite_connect(database)
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
        close_quietly(conn)
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


class Journal:
    """The journal of one :class:`~retrain_lib.serving.predlog.PredictionLog` on the SQLite
    file ``database``: :meth:`append` runs on request threads (under a lock), everything
    else on the log's writer thread, which keeps a raw connection of its own for it."""

    def __init__(self, engine: sa.Engine, database: str):
        self.database = database
        self._columns = _Columns(engine)
        self._segment: _Segment | None = None
        self._journaled: collections.deque = collections.deque()  # (segment, rows | None = retire)
        self._lock = threading.Lock()
        self._closed = False
        self._raw: sqlite3.Connection | None = None
        self._appended = 0  # rows journaled (under _lock)
        self._moved = 0  # journaled rows the writer has taken up (writer thread only)

    @property
    def pending(self) -> int:
        """Rows in the journal that the writer has not committed (or failed to commit) yet."""
        return self._appended - self._moved

    def append(self, rows: list[dict[str, Any]]) -> bool:
        """Make ``rows`` durable with one ``write`` to this process's segment; ``False`` when
        the journal is closed or the rows could not be written (nothing was acknowledged)."""
        # This runs on every answered request: kept to one encode, one lock and one write.
        try:
            data = _journal_line(rows[0]) if len(rows) == 1 else b"".join([_journal_line(r) for r in rows])
        except TypeError as exc:  # a value JSON cannot hold: the database write reports it
            log.debug("prediction rows cannot be journaled, committing instead: %s", exc)
            return False
        with self._lock:
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

    def close(self) -> None:
        """No more appends; the current segment is retired (deleted once the writer has
        committed its rows)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._segment is not None:
                self._retire_segment()

    def _open_segment(self) -> _Segment:
        """A new segment, locked before it gets the name recovery looks for."""
        jdir = journal_dir(self.database)
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
        journaled before is committed (caller holds ``_lock``)."""
        self._journaled.append((self._segment, None))
        self._segment = None

    # -- writer thread ---------------------------------------------------------------------

    def ingest(self, on_commit: Callable[[int, int], None]) -> None:
        """Commit the journaled rows (one transaction, or row by row after a failure) and
        delete the retired segments whose rows are all in the database. After each
        transaction ``on_commit(rows taken up, rows that could not be committed)`` runs,
        before :attr:`pending` drops by those rows."""
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
            self._commit(rows, segments, on_commit)  # everything before the retirement first
            rows, segments = [], []
            self._delete_segment(seg)
        self._commit(rows, segments, on_commit)

    def checkpoint(self) -> None:
        """A passive WAL checkpoint (it never blocks another writer); raises what SQLite raised."""
        self._raw_connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()

    def disconnect(self) -> None:
        """Close the writer's raw connection (a later call opens a new one)."""
        raw, self._raw = self._raw, None
        close_quietly(raw)

    def _raw_connection(self) -> sqlite3.Connection:
        if self._raw is None:
            self._raw = sqlite_connect(self.database, autocheckpoint=0)
        return self._raw

    def _commit(self, rows: list[dict], segments: list[_Segment], on_commit: Callable[[int, int], None]) -> None:
        if not rows:
            return
        try:
            failed = self._columns.insert(self._raw_connection(), rows)
        except Exception as exc:  # noqa: BLE001 - no connection: everything stays journaled
            failed = [(row, exc) for row in rows]
            self.disconnect()
        if failed:
            bad = {id(row) for row, _ in failed}
            for row, seg in zip(rows, segments):
                if id(row) in bad:
                    seg.failed = True
            log.warning(
                "prediction log: %d journaled row(s) not committed, kept in the journal for recovery: %s",
                len(failed),
                failed[0][1],
            )
        on_commit(len(rows), len(failed))
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
