"""The decision ledger on a real PostgreSQL server (127.0.0.1:5432, user postgres).

Each test module creates a fresh database with a unique name and drops it at the end. Rows
are read and tampered with through psycopg directly, and hashes recomputed with hashlib.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
import time
import uuid
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

REPO = Path(__file__).resolve().parents[2]
SERVER = "host=127.0.0.1 port=5432 user=postgres"
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


def _server_up() -> bool:
    try:
        psycopg.connect(f"{SERVER} dbname=postgres", connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


pytestmark = pytest.mark.skipif(not _server_up(), reason="no PostgreSQL on 127.0.0.1:5432")


def canonical_hash(row: dict) -> str:
    body = {k: v for k, v in row.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@pytest.fixture(scope="module")
def pg_db(request) -> str:
    name = f"retrain_ledger_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{SERVER} dbname=postgres", autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')

    def drop():
        from retrain_lib.store import audit

        for (url, _pid), engine in list(audit._engines.items()):
            if name in url:
                engine.dispose()
        with psycopg.connect(f"{SERVER} dbname=postgres", autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    request.addfinalizer(drop)
    return name


@pytest.fixture
def settings(pg_db, tmp_path, monkeypatch):
    from retrain_lib.core.settings import load_settings

    cfg = tmp_path / "configs"
    shutil.copytree(REPO / "configs", cfg)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("RETRAIN_DB_URL", f"postgresql://postgres@127.0.0.1:5432/{pg_db}")
    return load_settings(cfg)


def raw_rows(pg_db: str) -> list[dict]:
    with psycopg.connect(f"{SERVER} dbname={pg_db}") as con:
        cur = con.execute(f"SELECT {', '.join(COLUMNS)} FROM retrain_ledger ORDER BY seq")
        return [dict(zip(COLUMNS, r, strict=True)) for r in cur.fetchall()]


def test_twenty_threads_race_appends_on_a_fresh_database(settings, pg_db):
    from retrain_lib.store.audit import Ledger

    ledger = Ledger.from_settings(settings)
    assert ledger.url == f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_db}"
    writers, n = [f"t{i:02d}" for i in range(20)], 5
    barrier = threading.Barrier(len(writers))
    errors: list[BaseException] = []

    def run(w):
        try:
            barrier.wait()
            led = Ledger.from_settings(settings)  # first use races the table creation too
            for i in range(n):
                led.append(f"model_{w}", "tick", actor=w, details={"i": i})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []

    rows = raw_rows(pg_db)
    assert [r["seq"] for r in rows] == list(range(len(writers) * n))
    assert rows[0]["prev_hash"] == "0" * 64
    for prev, row in zip(rows, rows[1:]):
        assert row["prev_hash"] == prev["hash"]
    assert all(r["hash"] == canonical_hash(r) for r in rows)
    recs = ledger.records()
    for w in writers:
        assert [r["details"]["i"] for r in recs if r["actor"] == w] == list(range(n))
    assert ledger.verify() == []
    assert ledger.head() == {"seq": len(rows) - 1, "hash": rows[-1]["hash"]}


def test_the_lock_serialises_a_transaction_block_and_rollback_appends_nothing(settings, pg_db):
    from retrain_lib.store.audit import Ledger

    ledger = Ledger.from_settings(settings)
    start = ledger.head()["seq"] if ledger.head() else -1
    inside, order = threading.Event(), []

    def other_writer():
        inside.wait(10)
        order.append(("other", Ledger.from_settings(settings).append("m", "other")["seq"]))

    t = threading.Thread(target=other_writer)
    t.start()
    with ledger.transaction() as tx:
        inside.set()
        time.sleep(0.5)
        order.append(("block", tx.append("m", "block", before="1", after="2")["seq"]))
    t.join(30)
    assert order == [("block", start + 1), ("other", start + 2)]

    with pytest.raises(RuntimeError), ledger.transaction() as tx:
        tx.append("m", "never")
        raise RuntimeError("external action failed")
    assert [r["event"] for r in ledger.records("m")][-1] == "other"
    assert ledger.verify() == []


def test_verify_finds_tampering_and_the_cli_reports_it(settings, pg_db, capsys):
    from retrain_lib.cli.app import main
    from retrain_lib.store.audit import Ledger

    ledger = Ledger.from_settings(settings)
    ledger.append(
        "credit_default",
        "promote",
        as_of="2026-01-10",
        after="1",
        reason="first",
        details={"moves": [{"alias": "champion", "from": None, "to": "1"}]},
    )
    code = main(
        [
            "--config-dir",
            str(settings.config_dir),
            "history",
            "credit_default",
            "--at",
            "2026-01-10",
            "--format",
            "json",
        ]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["champion"] == "1"
    code = main(["--config-dir", str(settings.config_dir), "ledger", "verify", "--format", "json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 0 and res["ok"] is True and res["head"] == raw_rows(pg_db)[-1]["hash"]

    with psycopg.connect(f"{SERVER} dbname={pg_db}") as con:  # the guard refuses updates ...
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            con.execute("UPDATE retrain_ledger SET actor = 'mallory' WHERE seq = 0")
    with psycopg.connect(f"{SERVER} dbname={pg_db}") as con:  # ... until someone with rights drops it
        con.execute("ALTER TABLE retrain_ledger DISABLE TRIGGER retrain_ledger_append_only")
        con.execute("UPDATE retrain_ledger SET actor = 'mallory' WHERE seq = 0")
        last = con.execute("SELECT max(seq) FROM retrain_ledger").fetchone()[0]
        con.execute("DELETE FROM retrain_ledger WHERE seq = %s", (last,))
        con.execute("ALTER TABLE retrain_ledger ENABLE TRIGGER retrain_ledger_append_only")
    problems = ledger.verify()
    assert "seq 0: content does not match its hash (edited?)" in problems
    assert f"head names seq {last} but the last row is seq {last - 1}: 1 row(s) at the end deleted?" in problems
    code = main(["--config-dir", str(settings.config_dir), "ledger", "verify", "--format", "json"])
    res = json.loads(capsys.readouterr().out)
    assert code == 1 and res["ok"] is False and res["problems"] == problems
