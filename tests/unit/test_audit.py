"""Unit tests of the decision ledger table (retrain_lib.store.audit) on the embedded SQLite database,
and of the ``retrain history`` / ``retrain ledger verify`` commands.

Rows are read and tampered with through the ``sqlite3`` module directly, and hashes are
recomputed here with hashlib from the documented canonical form (every column but ``hash``,
JSON with sorted keys and compact separators), never with the code under test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing as mp
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from retrain_lib.cli.app import main
from retrain_lib.store.audit import (
    Ledger,
    LedgerError,
    normalise_url,
    read_ledger,
    record_decision,
    verify_ledger,
)
from retrain_lib.store.ledger_history import champion_at, champion_changes, live_metric, metric_recovery
from retrain_lib.store.ledger_records import GENESIS

REPO = Path(__file__).resolve().parents[2]
COLUMNS = [
    "seq",
    "time",
    "model",
    "event",
    "as_of",
    "actor",
    "before_version",
    "after_version",
    "reason",
    "details",
    "prev_hash",
    "hash",
]


def canonical_hash(row: dict) -> str:
    body = {k: v for k, v in row.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def raw_rows(db: Path) -> list[dict]:
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(f"SELECT {', '.join(COLUMNS)} FROM retrain_ledger ORDER BY seq")]


def tamper(db: Path, *statements: tuple[str, tuple]) -> None:
    """Run SQL as an attacker with write access would: drop the append-only guards first."""
    con = sqlite3.connect(db)
    try:
        con.execute("DROP TRIGGER retrain_ledger_no_update")
        con.execute("DROP TRIGGER retrain_ledger_no_delete")
        for sql, params in statements:
            con.execute(sql, params)
        con.commit()
    finally:
        con.close()


@pytest.fixture(autouse=True)
def _no_platform_db(monkeypatch):
    monkeypatch.delenv("RETRAIN_DB_URL", raising=False)


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "state" / "platform.db"  # parent created on first use


@pytest.fixture
def ledger(db) -> Ledger:
    led = Ledger(f"sqlite:///{db}")
    led.append("credit", "monitor", as_of="2026-01-10", actor="monitor", details={"drifted": ["income"], "share": 0.25})
    led.append("demand", "retrain_started", as_of="2026-01-10", actor="scheduler")
    led.append(
        "credit",
        "promote",
        as_of="2026-01-11",
        actor="retrain",
        before="2",
        after="3",
        reason="drift",
        details={"moves": [{"alias": "champion", "from": "2", "to": "3"}]},
    )
    led.append("credit", "rollback", as_of="2026-01-12", actor="alice", before="3", after="2", reason="bad AUC")
    return led


# -----------------------------------------------------------------------------------------
# The chain
# -----------------------------------------------------------------------------------------


def test_rows_form_a_chain_over_every_column(ledger, db):
    rows = raw_rows(db)
    assert [r["seq"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["prev_hash"] == GENESIS == "0" * 64
    for prev, row in zip(rows, rows[1:]):
        assert row["prev_hash"] == prev["hash"]
    for row in rows:
        assert row["hash"] == canonical_hash(row)
    assert json.loads(rows[0]["details"]) == {"drifted": ["income"], "share": 0.25}
    assert rows[1]["details"] == "{}"
    assert (rows[2]["before_version"], rows[2]["after_version"], rows[2]["reason"]) == ("2", "3", "drift")
    assert rows[1]["before_version"] is None and rows[1]["as_of"] == "2026-01-10"
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT seq, hash FROM retrain_ledger_head").fetchall() == [(3, rows[3]["hash"])]
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_append_returns_what_it_wrote_and_records_read_it_back(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / 'p.db'}")
    rec = led.append("m", "e", as_of=dt.date(2026, 1, 2), details={"x": 1})
    assert led.records() == [rec]
    assert set(rec) == {
        "seq",
        "time",
        "model",
        "event",
        "as_of",
        "actor",
        "before",
        "after",
        "reason",
        "details",
        "prev",
        "hash",
    }
    assert rec["as_of"] == "2026-01-02" and rec["details"] == {"x": 1} and rec["prev"] == GENESIS
    assert dt.datetime.fromisoformat(rec["time"]).utcoffset() == dt.timedelta(0)
    assert led.head() == {"seq": 0, "hash": rec["hash"]}


def test_records_filter_by_model(ledger):
    assert [r["event"] for r in ledger.records("credit")] == ["monitor", "promote", "rollback"]
    assert [r["seq"] for r in ledger.records(model="demand")] == [1]
    assert ledger.records("nobody") == []
    assert ledger.models() == ["credit", "demand"]


def test_a_new_database_is_empty_and_intact(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / 'new' / 'platform.db'}")
    assert led.records() == [] and led.verify() == [] and led.head() is None
    assert Ledger(led.url).verify() == []  # creating the table again is a no-op


def test_details_with_non_json_types_are_stored_as_json(tmp_path, db):
    led = Ledger(f"sqlite:///{db}")
    rec = led.append(
        "m",
        "e",
        details={
            "f32": np.float32(0.5),
            "f64": np.float64(0.1),
            "i": np.int64(3),
            "arr": np.array([1, 2]),
            "day": dt.date(2026, 1, 1),
            "path": Path("/x"),
            "nan": float("nan"),
            "tuple": (1, 2),
            "nested": {"a": [1, {"b": None}]},
        },
    )
    expected = {
        "f32": 0.5,
        "f64": 0.1,
        "i": 3,
        "arr": [1, 2],
        "day": "2026-01-01",
        "path": "/x",
        "nan": None,
        "tuple": [1, 2],
        "nested": {"a": [1, {"b": None}]},
    }
    assert rec["details"] == expected
    assert json.loads(raw_rows(db)[0]["details"]) == expected  # strict JSON: no NaN
    assert led.verify() == []


def test_rows_cannot_be_updated_or_deleted_through_sql(ledger, db):
    for sql in ("UPDATE retrain_ledger SET actor = 'mallory' WHERE seq = 1", "DELETE FROM retrain_ledger"):
        with sqlite3.connect(db) as con, pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute(sql)
    assert len(raw_rows(db)) == 4


def test_seq_is_unique(ledger, db):
    row = raw_rows(db)[3]
    with sqlite3.connect(db) as con, pytest.raises(sqlite3.IntegrityError):
        con.execute(
            f"INSERT INTO retrain_ledger ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            [row[c] for c in COLUMNS[:-1]] + ["f" * 64],
        )


# -----------------------------------------------------------------------------------------
# Tampering that verify() finds
# -----------------------------------------------------------------------------------------


def test_intact_ledger_verifies(ledger):
    assert ledger.verify() == []


def test_edited_row_is_reported(ledger, db):
    details = json.dumps({"moves": [{"alias": "champion", "from": "2", "to": "4"}]})
    tamper(db, ("UPDATE retrain_ledger SET details = ? WHERE seq = 2", (details,)))
    assert ledger.verify() == ["seq 2: content does not match its hash (edited?)"]


def test_edited_column_outside_details_is_reported(ledger, db):
    tamper(db, ("UPDATE retrain_ledger SET after_version = '9' WHERE seq = 3", ()))
    assert ledger.verify() == ["seq 3: content does not match its hash (edited?)"]


def test_edited_row_with_recomputed_hash_breaks_the_next_link(ledger, db):
    row = raw_rows(db)[1]
    row["actor"] = "mallory"
    row["hash"] = canonical_hash(row)
    tamper(db, ("UPDATE retrain_ledger SET actor = ?, hash = ? WHERE seq = 1", (row["actor"], row["hash"])))
    assert ledger.verify() == [
        "seq 2: prev_hash does not match the hash of seq 1 (a row before it was deleted or rewritten)"
    ]


def test_rewritten_last_row_is_caught_by_the_head(ledger, db):
    row = raw_rows(db)[3]
    row["reason"] = "nothing to see"
    row["hash"] = canonical_hash(row)
    tamper(db, ("UPDATE retrain_ledger SET reason = ?, hash = ? WHERE seq = 3", (row["reason"], row["hash"])))
    assert ledger.verify() == ["head hash does not match seq 3: the last row was rewritten"]


def test_deleted_middle_row_is_reported(ledger, db):
    tamper(db, ("DELETE FROM retrain_ledger WHERE seq = 1", ()))
    problems = ledger.verify()
    assert problems == [
        "seq 2: seq 1 missing (deleted?)",
        "seq 2: prev_hash does not match the hash of seq 0 (a row before it was deleted or rewritten)",
    ]


def test_deleted_first_row_is_reported(ledger, db):
    tamper(db, ("DELETE FROM retrain_ledger WHERE seq = 0", ()))
    problems = ledger.verify()
    assert "seq 1: seq 0 missing (deleted?)" in problems
    assert any(p.startswith("seq 1: prev_hash does not match the hash of the start") for p in problems)


def test_deleted_last_row_is_reported_through_the_head(ledger, db):
    tamper(db, ("DELETE FROM retrain_ledger WHERE seq = 3", ()))
    assert ledger.verify() == ["head names seq 3 but the last row is seq 2: 1 row(s) at the end deleted?"]


def test_every_row_deleted_is_reported(ledger, db):
    tamper(db, ("DELETE FROM retrain_ledger", ()))
    assert ledger.verify() == ["ledger is empty but the head names seq 3: every row deleted?"]


def test_deleted_head_is_reported(ledger, db):
    tamper(db, ("DELETE FROM retrain_ledger_head", ()))
    assert ledger.verify() == ["head missing: 4 row(s) but no retrain_ledger_head row (deleted?)"]


def test_a_rewrite_of_the_tail_and_the_head_is_not_detectable(ledger, db):
    """The documented limit: whoever can write rows and head can forge a consistent chain.
    Only a head hash anchored elsewhere shows it."""
    anchored = ledger.head()
    rows = raw_rows(db)
    tamper(
        db,
        ("DELETE FROM retrain_ledger WHERE seq = 3", ()),
        ("UPDATE retrain_ledger_head SET seq = 2, hash = ?", (rows[2]["hash"],)),
    )
    assert ledger.verify() == []
    assert ledger.head() != anchored


# -----------------------------------------------------------------------------------------
# Writers
# -----------------------------------------------------------------------------------------


def _append_many(url: str, writer: str, n: int) -> None:
    led = Ledger(url)
    for i in range(n):
        led.append(f"model_{writer}", "tick", actor=writer, details={"i": i})


def _check_concurrent(led: Ledger, db: Path, writers: list[str], n: int) -> None:
    recs = led.records()
    assert len(recs) == len(writers) * n
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    assert led.verify() == []
    assert led.head()["seq"] == len(recs) - 1
    for w in writers:
        assert [r["details"]["i"] for r in recs if r["actor"] == w] == list(range(n))
    assert all(r["hash"] == canonical_hash(r) for r in raw_rows(db))


def test_concurrent_appends_from_8_processes(tmp_path, db):
    url = f"sqlite:///{db}"
    led = Ledger(url)
    led.verify()  # the parent has the database open when it forks
    writers = [f"p{i}" for i in range(8)]
    n = 12
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(url, w, n)) for w in writers]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    _check_concurrent(led, db, writers, n)


def test_concurrent_appends_from_threads(tmp_path, db):
    url = f"sqlite:///{db}"
    writers = [f"t{i}" for i in range(6)]
    n = 10
    barrier = threading.Barrier(len(writers))

    def run(w):
        barrier.wait()
        _append_many(url, w, n)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    _check_concurrent(Ledger(url), db, writers, n)


def test_a_failed_transaction_appends_nothing(ledger, db):
    head = ledger.head()
    with pytest.raises(RuntimeError, match="alias moved"):
        with ledger.transaction() as tx:
            tx.append("credit", "promote", before="2", after="5")
            tx.append("credit", "note")
            raise RuntimeError("alias moved")
    assert len(raw_rows(db)) == 4 and ledger.head() == head and ledger.verify() == []
    assert ledger.append("credit", "after")["seq"] == 4  # no gap left behind


def test_appends_in_one_transaction_chain_and_commit_together(ledger):
    with ledger.transaction() as tx:
        a = tx.append("credit", "promote", before="2", after="5")
        b = tx.append("credit", "note")
        assert [r["seq"] for r in tx.records("credit")][-2:] == [4, 5]
    assert (a["seq"], b["seq"], b["prev"]) == (4, 5, a["hash"])
    assert ledger.verify() == [] and ledger.head() == {"seq": 5, "hash": b["hash"]}


def test_a_transaction_holds_off_other_writers(ledger):
    """A compare-and-swap block: another writer's append waits for the whole block."""
    inside, order = threading.Event(), []

    def other_writer():
        inside.wait(10)
        order.append(("other", Ledger(ledger.url).append("credit", "other")["seq"]))

    t = threading.Thread(target=other_writer)
    t.start()
    with ledger.transaction() as tx:
        inside.set()
        time.sleep(0.5)  # the other writer is now blocked on the lock
        order.append(("block", tx.append("credit", "block")["seq"]))
    t.join(30)
    assert order == [("block", 4), ("other", 5)]
    assert ledger.verify() == []


def test_append_checks_its_arguments(ledger):
    with pytest.raises(ValueError, match="'model' and 'event'"):
        ledger.append("", "x")


def test_an_unreachable_database_is_a_ledger_error(tmp_path):
    (tmp_path / "dir.db").mkdir()  # a directory where the file should be
    with pytest.raises(LedgerError, match="cannot open the decision ledger"):
        Ledger(f"sqlite:///{tmp_path / 'dir.db'}").records()


# -----------------------------------------------------------------------------------------
# Settings and callers
# -----------------------------------------------------------------------------------------


def _configs(tmp_path: Path) -> Path:
    dst = tmp_path / "configs"
    shutil.copytree(REPO / "configs", dst)
    return dst


def test_settings_find_the_database_url(tmp_path, monkeypatch):
    from retrain_lib.core.settings import load_settings

    cfg = _configs(tmp_path)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    s = load_settings(cfg)
    assert s.database_url == f"sqlite:///{tmp_path / 'state' / 'platform.db'}"
    assert Ledger.from_settings(s).url == s.database_url
    monkeypatch.setenv("RETRAIN_DB_URL", "postgresql://u@db.example/retrain")
    s = load_settings(cfg)
    assert s.database_url == "postgresql://u@db.example/retrain"
    assert Ledger.from_settings(s).url == "postgresql+psycopg://u@db.example/retrain"
    text = (cfg / "platform.yaml").read_text()
    (cfg / "platform.yaml").write_text(text.replace("url_env: RETRAIN_DB_URL", "url_env: MY_LEDGER_DB"))
    monkeypatch.setenv("MY_LEDGER_DB", f"sqlite:///{tmp_path / 'other.db'}")
    assert load_settings(cfg).database_url == f"sqlite:///{tmp_path / 'other.db'}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgres://h/d", "postgresql+psycopg://h/d"),
        ("postgresql+psycopg://h/d", "postgresql+psycopg://h/d"),
        ("sqlite:////x/platform.db", "sqlite:////x/platform.db"),
    ],
)
def test_postgres_urls_use_psycopg3(url, expected):
    assert normalise_url(url) == expected


def test_the_ledger_url_shown_on_pages_masks_the_password():
    from retrain_lib.store.audit import Ledger

    ledger = Ledger("postgresql://retrain:s3cret@db:5432/platform")
    assert ledger.display_url() == "postgresql+psycopg://retrain:***@db:5432/platform"
    assert "s3cret" not in repr(ledger) and repr(ledger) == f"Ledger({ledger.display_url()!r})"


def test_model_context_record_fills_the_champion_columns(tmp_path, monkeypatch):
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.model_context import ModelContext

    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    ctx = ModelContext("credit_default", load_settings(_configs(tmp_path)))
    rec = ctx.record(
        "promote",
        "2026-02-01",
        "cli",
        {
            "moves": [
                {"alias": "previous-champion", "from": None, "to": "1"},
                {"alias": "champion", "from": "1", "to": "2"},
            ],
            "reason": "drift",
        },
    )
    plain = ctx.record("monitor", "2026-02-02", "cli", {"action": "healthy"})
    rows = raw_rows(tmp_path / "state" / "platform.db")
    assert [(r["model"], r["before_version"], r["after_version"], r["reason"]) for r in rows] == [
        ("credit_default", "1", "2", "drift"),
        ("credit_default", None, None, ""),
    ]
    assert (rec["before"], rec["after"], plain["before"]) == ("1", "2", None)


def test_module_helpers_accept_settings_paths_and_urls(tmp_path, monkeypatch):
    from retrain_lib.core.settings import load_settings

    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    settings = load_settings(_configs(tmp_path))
    record_decision(settings.ledger_path, model="m", event="a")
    record_decision(settings, model="m", event="b", details={"x": 1})
    record_decision(tmp_path / "state" / "platform.db", model="n", event="c")
    assert [r["event"] for r in read_ledger(settings.database_url)] == ["a", "b", "c"]
    assert [r["event"] for r in read_ledger(settings, "m")] == ["a", "b"]
    assert verify_ledger(settings) == []


# -----------------------------------------------------------------------------------------
# Champion history
# -----------------------------------------------------------------------------------------


@pytest.fixture
def history_ledger(tmp_path, monkeypatch) -> tuple[Path, Ledger]:
    cfg = _configs(tmp_path)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    led = Ledger(f"sqlite:///{tmp_path / 'state' / 'platform.db'}")
    m = "credit_default"
    led.append(m, "monitor", as_of="2026-01-09", actor="credit_default__monitor/r1", details={"action": "retrain"})
    led.append(
        m,
        "promote",
        as_of="2026-01-10",
        actor="credit_default__retrain/r1",
        before=None,
        after="1",
        reason="no champion yet",
        details={"moves": [{"alias": "champion", "from": None, "to": "1"}]},
    )
    led.append(
        m, "challenger", as_of="2026-01-15", details={"moves": [{"alias": "challenger", "from": None, "to": "2"}]}
    )
    led.append(
        m,
        "promote",
        as_of="2026-01-20T06:00:00+00:00",
        actor="credit_default__retrain/r2",
        reason="data drift",
        details={
            "moves": [
                {"alias": "previous-champion", "from": None, "to": "1"},
                {"alias": "champion", "from": "1", "to": "3"},
            ]
        },
    )
    led.append(m, "rollback", as_of="2026-01-22", actor="alice", before="3", after="1", reason="AUC dropped")
    led.append("daily_demand", "promote", as_of="2026-01-05", before=None, after="7")
    return cfg, led


def test_champion_changes_and_champion_at(history_ledger):
    _, led = history_ledger
    changes = champion_changes(led.records("credit_default"))
    assert [(c["seq"], c["event"], c["from"], c["to"]) for c in changes] == [
        (1, "promote", None, "1"),
        (3, "promote", "1", "3"),
        (4, "rollback", "3", "1"),
    ]
    assert changes[1]["effective"] == "2026-01-20T06:00:00+00:00" and changes[1]["reason"] == "data drift"

    def at(text):
        hit = champion_at(changes, dt.datetime.fromisoformat(text))
        return hit and (hit["to"], hit["seq"])

    assert at("2026-01-09T23:59:59+00:00") is None  # before the first promotion
    assert at("2026-01-10T00:00:00+00:00") == ("1", 1)
    assert at("2026-01-20T05:59:59+00:00") == ("1", 1)  # the challenger did not move the champion
    assert at("2026-01-20T06:00:00+00:00") == ("3", 3)
    assert at("2026-01-21T12:00:00") == ("3", 3)  # naive = UTC
    assert at("2026-01-22T00:00:00+00:00") == ("1", 4)


def test_effective_time_falls_back_to_the_wall_clock(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / 'p.db'}")
    rec = led.append("m", "promote", after="1")  # no as_of
    [change] = champion_changes(led.records())
    assert change["effective"] == dt.datetime.fromisoformat(rec["time"]).isoformat()
    assert champion_at([change], dt.datetime.fromisoformat(rec["time"]) - dt.timedelta(seconds=1)) is None


def _cli(cfg: Path, *argv: str, capsys) -> tuple[int, str, str]:
    code = main(["--config-dir", str(cfg), *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_history_lists_champion_changes(history_ledger, capsys):
    cfg, _ = history_ledger
    code, out, _ = _cli(cfg, "history", "credit_default", "--format", "json", capsys=capsys)
    assert code == 0
    res = json.loads(out)
    assert res["model"] == "credit_default"
    assert [
        (c["time"] is not None, c["as_of"], c["from"], c["to"], c["reason"], c["actor"], c["seq"])
        for c in res["changes"]
    ] == [
        (True, "2026-01-10", None, "1", "no champion yet", "credit_default__retrain/r1", 1),
        (True, "2026-01-20T06:00:00+00:00", "1", "3", "data drift", "credit_default__retrain/r2", 3),
        (True, "2026-01-22", "3", "1", "AUC dropped", "alice", 4),
    ]
    code, out, _ = _cli(cfg, "history", "credit_default", capsys=capsys)
    assert code == 0 and "1 -> 3" in out and "AUC dropped" in out


@pytest.mark.parametrize(
    ("at", "champion", "seq"),
    [
        ("2026-01-09", None, None),  # before the first promotion
        ("2026-01-10", "1", 1),  # a date is the end of that day: the promotion of that day counts
        ("2026-01-20", "3", 3),
        ("2026-01-20T05:00:00+00:00", "1", 1),
        ("2026-01-20T08:00:00+02:00", "3", 3),
        ("2026-02-01", "1", 4),
    ],
)
def test_cli_history_at_answers_what_was_champion_and_why(history_ledger, capsys, at, champion, seq):
    cfg, _ = history_ledger
    code, out, _ = _cli(cfg, "history", "credit_default", "--at", at, "--format", "json", capsys=capsys)
    assert code == 0
    res = json.loads(out)
    assert res["champion"] == champion
    assert (res["entry"] or {}).get("seq") == seq
    assert res["first_change"] == "2026-01-10T00:00:00+00:00"
    if seq == 3:
        assert res["entry"]["reason"] == "data drift" and res["entry"]["actor"] == "credit_default__retrain/r2"


def test_cli_history_text_before_the_first_promotion(history_ledger, capsys):
    cfg, _ = history_ledger
    code, out, _ = _cli(cfg, "history", "credit_default", "--at", "2026-01-01", capsys=capsys)
    assert code == 0 and "no champion" in out


def test_cli_history_bad_input_exits_2(history_ledger, capsys):
    cfg, _ = history_ledger
    code, _, err = _cli(cfg, "history", "no_such_model", capsys=capsys)
    assert code == 2 and "unknown model 'no_such_model'" in err and "credit_default" in err
    with pytest.raises(SystemExit) as exc:
        main(["--config-dir", str(cfg), "history", "credit_default", "--at", "yesterday"])
    assert exc.value.code == 2
    assert "not a date or ISO datetime" in capsys.readouterr().err


def test_cli_history_of_a_configured_model_without_changes(history_ledger, capsys):
    cfg, led = history_ledger
    shutil.copy(cfg / "models" / "credit_default.yaml", cfg / "models" / "quiet_model.yaml")
    code, out, _ = _cli(cfg, "history", "quiet_model", "--format", "json", capsys=capsys)
    assert code == 0 and json.loads(out) == {"model": "quiet_model", "changes": []}


def test_cli_ledger_verify(history_ledger, capsys, tmp_path):
    cfg, led = history_ledger
    code, out, _ = _cli(cfg, "ledger", "verify", "--format", "json", capsys=capsys)
    rows = raw_rows(tmp_path / "state" / "platform.db")
    assert code == 0
    assert json.loads(out) == {"ok": True, "records": 6, "head": rows[-1]["hash"], "head_seq": 5}
    tamper(tmp_path / "state" / "platform.db", ("UPDATE retrain_ledger SET after_version = '2' WHERE seq = 4", ()))
    code, out, _ = _cli(cfg, "ledger", "verify", "--format", "json", capsys=capsys)
    res = json.loads(out)
    assert code == 1 and res["ok"] is False and res["problems"] == ["seq 4: content does not match its hash (edited?)"]
    code, _, err = _cli(cfg, "ledger", "verify", capsys=capsys)
    assert code == 1 and "ledger BROKEN" in err


def test_cli_entry_point_exit_codes_and_help(history_ledger, tmp_path):
    cfg, _ = history_ledger
    env = {"RETRAIN_HOME": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}

    def run(*argv):
        return subprocess.run(
            [sys.executable, "-m", "retrain_lib", "--config-dir", str(cfg), *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    ok = run("ledger", "verify", "--format", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    tamper(tmp_path / "state" / "platform.db", ("DELETE FROM retrain_ledger WHERE seq = 5", ()))
    broken = run("ledger", "verify")
    assert broken.returncode == 1 and "1 row(s) at the end deleted" in broken.stderr
    helped = run("history", "--help")
    assert helped.returncode == 0 and "as_of" in helped.stdout and "end of that day" in helped.stdout


# -----------------------------------------------------------------------------------------
# The live metric over time and the recovery after a drift (what `make demo` prints)
# -----------------------------------------------------------------------------------------


def _monitor(as_of, champion, live, labels=500, window_end=None):
    signals = [{"signal": "drift", "triggered": False, "value": 0.1, "threshold": 0.5, "detail": {}}]
    if live is not None:
        signals.append(
            {
                "signal": "performance",
                "triggered": False,
                "value": live,
                "threshold": 7.0,
                "detail": {"labels": labels, "window": ["2026-02-20", window_end or as_of]},
            }
        )
    return {"event": "monitor", "as_of": as_of, "details": {"champion_version": champion, "signals": signals}}


def _promote(seq, as_of, before, after):
    return {
        "seq": seq,
        "time": f"{as_of}T07:00:00+00:00",
        "event": "promote",
        "as_of": as_of,
        "actor": "dag",
        "before": before,
        "after": after,
        "reason": "",
        "hash": str(seq),
        "details": {"moves": [{"alias": "champion", "from": before, "to": after}]},
    }


def test_metric_recovery_reads_before_worst_and_after_the_retrain():
    records = [
        _promote(0, "2026-03-01", None, "1"),
        _monitor("2026-03-02", "1", 5.0),
        _monitor("2026-03-03", "1", 5.2),
        _monitor("2026-03-04", "1", 9.0),
        _monitor("2026-03-05", "1", 11.0),
        _promote(5, "2026-03-05", "1", "2"),
        _monitor("2026-03-06", "2", None),  # no matured labels yet for v2
        _monitor("2026-03-07", "2", 6.0),
        _monitor("2026-03-08", "2", 5.6),
    ]
    r = metric_recovery(records, metric="rmse", greater_is_better=False, drift_start="2026-03-04")
    assert (r.before.as_of, r.before.value, r.before.champion_version) == ("2026-03-03", 5.2, "1")
    assert (r.worst.as_of, r.worst.value) == ("2026-03-05", 11.0)
    assert (r.after.as_of, r.after.value, r.after.champion_version) == ("2026-03-08", 5.6, "2")
    assert r.retrained == ("2",)
    assert r.recovered_share == pytest.approx((5.6 - 11.0) / (5.2 - 11.0))
    assert [p.as_of for p in live_metric(records)] == [
        "2026-03-02",
        "2026-03-03",
        "2026-03-04",
        "2026-03-05",
        "2026-03-07",
        "2026-03-08",
    ]
    higher = metric_recovery(records, metric="r2", greater_is_better=True, drift_start=dt.date(2026, 3, 4))
    assert higher.worst.value == 5.6  # the lowest is the worst when greater is better


def test_metric_recovery_without_a_retrain_has_no_after():
    records = [
        _promote(0, "2026-03-01", None, "1"),
        _monitor("2026-03-02", "1", 0.84),
        _monitor("2026-03-04", "1", 0.70),
        _monitor("2026-03-05", "1", float("nan")),
    ]
    r = metric_recovery(records, metric="roc_auc", greater_is_better=True, drift_start="2026-03-04")
    assert r.after is None and r.retrained == () and r.recovered_share is None
    assert (r.before.value, r.worst.value) == (0.84, 0.70)


def test_metric_recovery_sides_of_the_drift_by_the_days_the_labels_came_from():
    """Labels 3 days late: the checks of the first days after the drift measure days before it."""
    records = [
        _promote(0, "2026-03-01", None, "1"),
        _monitor("2026-03-04", "1", 0.85, window_end="2026-03-01"),
        _monitor("2026-03-06", "1", 0.84, window_end="2026-03-03"),  # after the drift day, before its labels
        _monitor("2026-03-08", "1", 0.72, window_end="2026-03-05"),
    ]
    r = metric_recovery(records, metric="roc_auc", greater_is_better=True, drift_start="2026-03-04")
    assert (r.before.as_of, r.before.value) == ("2026-03-06", 0.84)
    assert (r.worst.as_of, r.worst.value) == ("2026-03-08", 0.72)
