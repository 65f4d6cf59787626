"""The prediction log commits in groups, only acknowledges durable rows (committed, or in the
SQLite journal that survives a kill), joins late labels, and runs SQLite in WAL mode."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sqlite3
import threading
import time
import uuid

import pytest

from retrain_lib.serving import predlog, predlog_journal, predlog_store
from retrain_lib.serving.predlog import PredictionLog
from retrain_lib.serving.predlog_read import arm_summary, read_predictions
from retrain_lib.serving.predlog_store import resolve_url

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def _row(i, *, arm="champion", model="m", at=T0, output=0.5, parent=None, latency=5.0):
    rid = f"r{i}" if parent is None else f"{parent}:shadow"
    return {
        "request_id": rid,
        "model": model,
        "version": "2" if arm != "champion" else "1",
        "arm": arm,
        "features": f'{{"x": {i}}}',
        "output": output,
        "latency_ms": latency,
        "created_at": at,
        "parent_id": parent,
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """The embedded SQLite log, and the production one on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'predictions.db'}"
        return
    psycopg = pytest.importorskip("psycopg")
    server = "host=127.0.0.1 port=5432 user=postgres"
    try:
        psycopg.connect(f"{server} dbname=postgres", connect_timeout=3).close()
    except psycopg.OperationalError:
        if os.environ.get("RETRAIN_STRICT") == "1":
            raise
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    name = f"retrain_predlog_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server} dbname=postgres", autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        for key, engine in list(predlog_store._ENGINES.items()):
            if name in key:
                engine.dispose()
                predlog_store._ENGINES.pop(key)
        with psycopg.connect(f"{server} dbname=postgres", autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path / 'predictions.db'}"


def test_a_log_created_before_the_error_column_gets_it(url):
    import sqlalchemy as sa

    old = sa.MetaData()
    sa.Table(
        "predictions",
        old,
        *[
            sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
            for c in predlog_store.predictions.columns
            if c.name != "error"
        ],
    )
    engine = sa.create_engine(predlog_store.resolve_url(log_url=url))
    old.create_all(engine)
    engine.dispose()
    plog = PredictionLog(url)
    plog.write([_row(1), {**_row(2), "output": None, "error": "ValueError: boom"}])
    plog.close()
    frame = read_predictions(url, "m", T0)
    assert dict(zip(frame["request_id"], frame["error"])) == {"r1": None, "r2": "ValueError: boom"}


def test_sqlite_runs_in_wal_mode_with_the_tables(sqlite_url, tmp_path):
    url = sqlite_url
    plog = PredictionLog(url)
    plog.write([_row(1)])
    plog.close()
    con = sqlite3.connect(tmp_path / "predictions.db")  # an independent reader
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {r[0] for r in con.execute("select name from sqlite_master where type='table'")} >= {
        "predictions",
        "feedback",
    }
    assert con.execute("select request_id, output from predictions").fetchall() == [("r1", 0.5)]


def test_concurrent_writers_are_group_committed_and_each_waits_for_its_commit(sqlite_url, tmp_path):
    plog = PredictionLog(sqlite_url)
    n_threads, per_thread = 8, 60
    seen_committed = []

    def writer(t):
        con = sqlite3.connect(tmp_path / "predictions.db")
        for j in range(per_thread):
            rid = t * 1000 + j
            plog.write([_row(rid)])
            # write() returned: the row is visible to another connection
            seen_committed.append(
                con.execute("select count(*) from predictions where request_id=?", (f"r{rid}",)).fetchone()[0]
            )
        con.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    plog.close()
    total = n_threads * per_thread
    assert seen_committed == [1] * total
    assert plog.rows == total
    assert plog.batches < total, f"{plog.batches} transactions for {total} writes: no group commit"


def test_appended_rows_are_journaled_at_once_and_committed_like_the_writers(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setattr(predlog, "JOURNAL_INGEST_S", 60.0)  # nothing moves unless asked
    plog = PredictionLog(sqlite_url)
    at = dt.datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)
    plog.write([_row(1, at=at, output=0.25, latency=1.5)])  # through the writer thread
    journaled = [_row(2, at=at, output=0.25, latency=1.5), {**_row(3, at=at), "output": None, "error": "E: x"}]
    assert plog.append(journaled) is True
    segments = list(predlog_journal.journal_dir(str(tmp_path / "predictions.db")).glob("*.jsonl"))
    assert len(segments) == 1
    lines = segments[0].read_bytes().splitlines()
    assert [json.loads(x)["request_id"] for x in lines] == ["r2", "r3"]  # on disk when append returns
    plog.flush()
    con = sqlite3.connect(tmp_path / "predictions.db")  # an independent reader sees them now
    raw = {
        r[0]: r[1:]
        for r in con.execute("select request_id, created_at, output, latency_ms, features, error from predictions")
    }
    con.close()
    assert raw["r2"] == raw["r1"][:3] + ('{"x": 2}', None)  # the same encoding (timestamp text too)
    assert raw["r3"][1] is None and raw["r3"][4] == "E: x"
    assert plog.rows == 3
    plog.close()
    assert not segments[0].exists(), "a closed log's segment is deleted once its rows are committed"
    frame = read_predictions(sqlite_url, "m", T0)
    assert sorted(frame["request_id"]) == ["r1", "r2", "r3"]
    assert set(frame["created_at"]) == {at}


def test_the_writer_moves_journaled_rows_into_the_database_on_its_own(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setattr(predlog, "JOURNAL_INGEST_S", 0.05)
    monkeypatch.setattr(predlog_journal, "JOURNAL_SEGMENT_BYTES", 600)  # a new segment every few rows
    plog = PredictionLog(sqlite_url)
    try:
        for i in range(20):
            assert plog.append([_row(i)]) is True
        deadline = time.monotonic() + 10
        while plog.rows < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert plog.rows == 20 and plog.depth == 0
        segments = list(predlog_journal.journal_dir(str(tmp_path / "predictions.db")).glob("*.jsonl"))
        # 20 rows of ~180 bytes filled 5 or more segments: the retired ones are deleted once
        # committed, only the open one (if any) is left
        assert len(segments) <= 1, segments
    finally:
        plog.close()
    assert len(read_predictions(sqlite_url, "m", T0)) == 20


_KILLED_GATEWAY = """
import datetime as dt, os, signal, sys
from retrain_lib.serving import predlog
predlog.JOURNAL_INGEST_S = 3600.0
plog = predlog.PredictionLog(sys.argv[1])
at = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
for i in range(int(sys.argv[2])):
    row = {"request_id": f"k{i}", "model": "m", "version": "1", "arm": "champion", "features": "{}",
           "output": 0.5, "latency_ms": 1.0, "created_at": at, "parent_id": None, "error": None}
    assert plog.append([row])
print("acknowledged", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_processs_journal_is_recovered_by_the_next_reader_and_the_next_log(sqlite_url, tmp_path):
    import subprocess
    import sys

    db = str(tmp_path / "predictions.db")
    out = subprocess.run(
        [sys.executable, "-c", _KILLED_GATEWAY, sqlite_url, "30"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == -signal.SIGKILL and "acknowledged" in out.stdout, out.stderr
    con = sqlite3.connect(db)
    assert con.execute("select count(*) from predictions").fetchone()[0] == 0  # nothing committed
    con.close()
    segment = next(predlog_journal.journal_dir(db).glob("*.jsonl"))
    with open(segment, "ab") as f:  # a line cut short by the kill: never acknowledged, skipped
        f.write(b'{"request_id": "torn", "model"')
    frame = read_predictions(sqlite_url, "m", T0)  # the monitor's reader recovers first
    assert sorted(frame["request_id"]) == sorted(f"k{i}" for i in range(30))
    assert set(frame["created_at"]) == {dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)}
    assert not segment.exists()
    # a second killed process: its journal is recovered by the next log (the next gateway)
    subprocess.run(
        [sys.executable, "-c", _KILLED_GATEWAY.replace('f"k{i}"', 'f"j{i}"'), sqlite_url, "5"],
        capture_output=True,
        timeout=120,
    )
    plog = PredictionLog(sqlite_url)
    plog.close()
    assert len(read_predictions(sqlite_url, "m", T0)) == 35
    assert predlog_journal.recover_journals(sqlite_url) == 0


def test_recovery_leaves_a_living_logs_segment_alone(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setattr(predlog, "JOURNAL_INGEST_S", 60.0)
    plog = PredictionLog(sqlite_url)
    try:
        assert plog.append([_row(1)])
        assert predlog_journal.recover_journals(sqlite_url) == 0  # locked by its living log
        assert len(list(predlog_journal.journal_dir(str(tmp_path / "predictions.db")).glob("*.jsonl"))) == 1
        assert plog.add_feedback("m", [("r1", 1.0)]).stored == ["r1"]  # feedback waits for the journal
    finally:
        plog.close()
    frame = read_predictions(sqlite_url, "m", T0)
    assert frame["label"].tolist() == [1.0]


def test_recovery_leaves_a_starting_logs_unlocked_tmp_segment_and_clears_an_orphaned_one(sqlite_url, tmp_path):
    PredictionLog(sqlite_url).close()  # the database exists
    jdir = predlog_journal.journal_dir(str(tmp_path / "predictions.db"))
    jdir.mkdir(exist_ok=True)
    starting = jdir / ".1-1-aa.tmp"  # created, not yet locked: a gateway between open and flock
    orphan = jdir / ".2-2-bb.tmp"  # a process killed between open and rename, long ago
    starting.touch()
    orphan.touch()
    old = time.time() - predlog_journal.STALE_TMP_S - 5
    os.utime(orphan, (old, old))
    assert predlog_journal.recover_journals(sqlite_url) == 0
    assert starting.exists() and not orphan.exists()


def test_rows_the_database_refuses_keep_their_segment(sqlite_url, tmp_path, monkeypatch):
    monkeypatch.setattr(predlog, "JOURNAL_INGEST_S", 60.0)
    plog = PredictionLog(sqlite_url)
    assert plog.append([_row(1), {**_row(2), "model": None}, _row(3)])  # model is NOT NULL
    plog.close()
    assert plog.failures == 1 and plog.rows == 2
    assert sorted(read_predictions(sqlite_url, "m", T0)["request_id"]) == ["r1", "r3"]
    jdir = predlog_journal.journal_dir(str(tmp_path / "predictions.db"))
    assert not list(jdir.glob("*.jsonl"))  # the reader tried it once more, then set it aside
    kept = list(jdir.glob("*.failed"))
    assert len(kept) == 1 and b'"request_id":"r2"' in kept[0].read_bytes()


def test_append_is_sqlite_file_only(url):
    plog = PredictionLog(url)
    try:
        assert plog.append([_row(1)]) is url.startswith("sqlite")
    finally:
        plog.close()
    assert plog.append([_row(2)]) is False  # closed
    assert len(read_predictions(url, "m", T0)) == (1 if url.startswith("sqlite") else 0)


def test_request_ids_are_uuid7_ordered_by_time():
    import time

    first = [predlog_store.new_request_id() for _ in range(5000)]
    time.sleep(0.005)
    later = predlog_store.new_request_id()
    assert len(set(first)) == len(first)
    for rid in first[:50] + [later]:
        u = uuid.UUID(rid)
        assert len(rid) == 32 and u.hex == rid and u.version == 7 and u.variant == uuid.RFC_4122
        assert abs(int(rid[:12], 16) / 1000 - time.time()) < 60  # the leading 48 bits are the time in ms
    assert later > max(first)


def test_a_failing_item_fails_alone(url):
    plog = PredictionLog(url)
    plog.write([_row(1)])
    results = {}
    # a duplicate primary key in the same batch as a good row
    ev = threading.Event()
    plog.submit([_row(1)], lambda e: results.__setitem__("dup", e))
    plog.submit([_row(2)], lambda e: (results.__setitem__("ok", e), ev.set()))
    assert ev.wait(10)
    plog.close()
    assert results["ok"] is None
    assert results["dup"] is not None
    assert sorted(read_predictions(url, "m", T0)["request_id"]) == ["r1", "r2"]


def test_read_predictions_joins_labels_and_filters_by_time_and_arm(url):
    plog = PredictionLog(url)
    plog.write(
        [
            _row(1, output=0.9),
            _row(2, output=0.1),
            _row(3, arm="challenger", output=0.7),
            _row(4, at=T0 - dt.timedelta(days=2)),
            _row(5, model="other"),
            _row(9, arm="shadow", parent="r1", output=0.8),
        ]
    )
    res = plog.add_feedback("m", [("r1", 1), ("r3", 0.0), ("nope", 1), ("r5", 1), ("r1:shadow", 1)])
    assert res.stored == ["r1", "r3"]
    assert res.unknown == ["nope", "r5", "r1:shadow"]  # other model's and shadow ids are not answerable ids
    plog.add_feedback("m", [("r3", 1.0)])  # a second label replaces the first
    plog.close()
    frame = read_predictions(url, "m", T0 - dt.timedelta(hours=1), T0 + dt.timedelta(hours=1))
    assert sorted(frame["request_id"]) == ["r1", "r1:shadow", "r2", "r3"]
    labels = dict(zip(frame["request_id"], frame["label"]))
    assert labels["r1"] == 1.0 and labels["r3"] == 1.0 and labels["r1:shadow"] == 1.0
    assert labels["r2"] != labels["r2"]  # NaN: no label yet
    assert frame["features"].iloc[0] == {"x": 1}
    assert str(frame["created_at"].dt.tz) == "UTC"
    assert list(read_predictions(url, "m", "2026-02-27", "2026-02-28T00:00:00")["request_id"]) == ["r4"]
    assert list(read_predictions(url, "m", T0, arm="challenger")["request_id"]) == ["r3"]
    assert read_predictions(url, "m", T0 + dt.timedelta(days=1)).empty


def test_arm_summary(url):
    plog = PredictionLog(url)
    plog.write(
        [_row(i, output=o, latency=float(i)) for i, o in enumerate([0.9, 0.8, 0.2, 0.1], start=1)]
        + [_row(10 + i, arm="challenger", output=0.4) for i in range(3)]
    )
    plog.add_feedback("m", [("r1", 1), ("r2", 1), ("r3", 0), ("r4", 0)])
    plog.close()
    out = arm_summary(url, "m", T0)
    assert set(out) == {"champion", "challenger"}
    champ = out["champion"]
    assert champ["n"] == 4 and champ["labelled"] == 4 and champ["versions"] == ["1"]
    assert champ["mean_output"] == pytest.approx(0.5)
    assert champ["mean_label"] == pytest.approx(0.5)
    assert champ["roc_auc"] == pytest.approx(1.0)
    assert champ["p95_latency_ms"] == pytest.approx(3.85)  # numpy's linear interpolation of 1..4
    assert out["challenger"]["labelled"] == 0 and out["challenger"]["roc_auc"] is None


def test_resolve_url(monkeypatch, tmp_path):
    monkeypatch.delenv("RETRAIN_PREDICTIONS_URL", raising=False)
    assert resolve_url(log_url="postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert resolve_url(log_url="postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    monkeypatch.setenv("RETRAIN_PREDICTIONS_URL", "postgresql://x@y/z")
    assert resolve_url(log_url=None, settings=object()) == "postgresql+psycopg://x@y/z"
    monkeypatch.delenv("RETRAIN_PREDICTIONS_URL")

    class S:
        state_dir = tmp_path

    assert resolve_url(S()) == f"sqlite:///{tmp_path / 'predictions.db'}"


def test_the_writer_checkpoints_the_wal_into_the_database_file(sqlite_url, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(predlog, "JOURNAL_INGEST_S", 0.05)
    monkeypatch.setattr(predlog, "CHECKPOINT_EVERY_S", 0.05)
    plog = PredictionLog(sqlite_url)
    try:
        assert plog.append([_row(i) for i in range(5)])

        def in_the_file_alone() -> int:  # a copy of the database file without its WAL
            shutil.copy(tmp_path / "predictions.db", tmp_path / "copy.db")
            con = sqlite3.connect(tmp_path / "copy.db")
            try:
                return con.execute("select count(*) from predictions").fetchone()[0]
            except sqlite3.OperationalError:  # not even the table is in the file yet
                return 0
            finally:
                con.close()

        deadline = time.monotonic() + 10
        while in_the_file_alone() < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert in_the_file_alone() == 5
    finally:
        plog.close()


def test_all_or_each_commits_once_and_isolates_the_failing_items():
    calls = []

    def commit(items):
        calls.append(list(items))
        if any(i % 3 == 0 for i in items):
            raise ValueError(f"refused {items}")

    assert predlog_store.all_or_each([1, 2, 4], commit) == [] and calls == [[1, 2, 4]]
    calls.clear()
    failed = predlog_store.all_or_each([1, 3, 4, 6], commit)
    assert [item for item, _ in failed] == [3, 6]
    assert all(isinstance(exc, ValueError) and str(exc) == f"refused [{item}]" for item, exc in failed)
    assert calls == [[1, 3, 4, 6], [1], [3], [4], [6]]
