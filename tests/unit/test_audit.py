"""Unit tests of the hash-chained decision ledger (retrain_lib.audit).

Hashes are recomputed here with hashlib from the documented canonical form (the record
without its ``hash`` key, JSON with sorted keys and compact separators).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import threading
from pathlib import Path

import numpy as np
import pytest

from retrain_lib.audit import GENESIS, read_ledger, record_decision, verify_ledger


def canonical_hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


@pytest.fixture
def ledger(tmp_path) -> Path:
    path = tmp_path / "state" / "ledger.jsonl"  # parent created on first write
    record_decision(path, model="credit", event="drift_detected", as_of="2026-01-10", actor="monitor",
                    details={"drifted": ["income"], "share": 0.25})
    record_decision(path, model="demand", event="retrain_started", as_of="2026-01-10", actor="scheduler")
    record_decision(path, model="credit", event="promoted", as_of="2026-01-11", actor="retrain",
                    details={"version": 3, "gates": {"roc_auc_min": True}})
    record_decision(path, model="credit", event="rolled_back", as_of="2026-01-12", actor="alice")
    return path


def test_records_form_a_chain(ledger):
    recs = read_ledger(ledger)
    assert [r["seq"] for r in recs] == [0, 1, 2, 3]
    assert recs[0]["prev"] == GENESIS == "0" * 64
    for prev, rec in zip(recs, recs[1:]):
        assert rec["prev"] == prev["hash"]
    for rec in recs:
        assert rec["hash"] == canonical_hash(rec)
        assert len(rec["hash"]) == 64
    assert recs[0]["details"] == {"drifted": ["income"], "share": 0.25}
    assert recs[1]["details"] == {}
    assert recs[2]["actor"] == "retrain" and recs[2]["as_of"] == "2026-01-11"
    # one JSON object per line
    assert all(json.loads(line)["seq"] == i for i, line in enumerate(lines(ledger)))


def test_record_decision_returns_what_it_wrote(tmp_path):
    path = tmp_path / "l.jsonl"
    rec = record_decision(path, model="m", event="e", details={"x": 1})
    assert read_ledger(path) == [rec]
    assert rec["time"].endswith("+00:00")


def test_read_ledger_filters_by_model(ledger, tmp_path):
    assert [r["event"] for r in read_ledger(ledger, model="credit")] == ["drift_detected", "promoted", "rolled_back"]
    assert [r["seq"] for r in read_ledger(ledger, model="demand")] == [1]
    assert read_ledger(tmp_path / "missing.jsonl") == []


def test_intact_ledger_verifies(ledger, tmp_path):
    assert verify_ledger(ledger) == []
    assert verify_ledger(tmp_path / "missing.jsonl") == []


def test_details_with_non_json_types_still_verify(tmp_path):
    import datetime as dt

    path = tmp_path / "l.jsonl"
    record_decision(path, model="m", event="e", details={
        "f32": np.float32(0.5), "f64": np.float64(0.1), "i": np.int64(3), "day": dt.date(2026, 1, 1),
        "path": Path("/x"), "nan": float("nan"), "tuple": (1, 2), "nested": {"a": [1, {"b": None}]},
    })
    record_decision(path, model="m", event="e2")
    assert verify_ledger(path) == []


def test_edited_line_is_reported(ledger):
    content = lines(ledger)
    rec = json.loads(content[2])
    rec["details"]["version"] = 4  # tamper with the promoted version
    content[2] = json.dumps(rec, sort_keys=True) + "\n"
    ledger.write_text("".join(content), encoding="utf-8")
    problems = verify_ledger(ledger)
    assert problems == ["record 2: content does not match its hash (edited?)"]


def test_edited_line_with_recomputed_hash_breaks_the_next_link(ledger):
    content = lines(ledger)
    rec = json.loads(content[1])
    rec["actor"] = "mallory"
    rec["hash"] = canonical_hash(rec)
    content[1] = json.dumps(rec, sort_keys=True) + "\n"
    ledger.write_text("".join(content), encoding="utf-8")
    problems = verify_ledger(ledger)
    assert problems == ["record 2: previous hash does not match record 1"]


def test_deleted_line_is_reported(ledger):
    content = lines(ledger)
    del content[1]
    ledger.write_text("".join(content), encoding="utf-8")
    problems = verify_ledger(ledger)
    assert any("record 1: sequence number 2 (expected 1)" in p for p in problems)
    assert any("record 1: previous hash does not match record 0" in p for p in problems)
    assert any(p.startswith("record 2: sequence number 3") for p in problems)
    assert not any("content does not match" in p for p in problems)


def test_deleted_first_line_is_reported(ledger):
    content = lines(ledger)
    ledger.write_text("".join(content[1:]), encoding="utf-8")
    problems = verify_ledger(ledger)
    assert "record 0: sequence number 1 (expected 0)" in problems
    assert "record 0: previous hash does not match record -1" in problems


def test_swapped_lines_are_reported(ledger):
    content = lines(ledger)
    content[1], content[2] = content[2], content[1]
    ledger.write_text("".join(content), encoding="utf-8")
    problems = verify_ledger(ledger)
    assert any(p.startswith("record 1:") for p in problems) and any(p.startswith("record 2:") for p in problems)


def test_appending_after_blank_lines_keeps_the_chain(ledger):
    with open(ledger, "a", encoding="utf-8") as fh:
        fh.write("\n\n")
    rec = record_decision(ledger, model="m", event="after_blank")
    assert rec["seq"] == 4 and verify_ledger(ledger) == []


# -----------------------------------------------------------------------------------------
# Concurrent writers
# -----------------------------------------------------------------------------------------


def _append_many(path: str, writer: str, n: int) -> None:
    for i in range(n):
        record_decision(Path(path), model=f"model_{writer}", event="tick", actor=writer, details={"i": i})


def _check_concurrent_ledger(path: Path, writers: list[str], n: int) -> None:
    recs = read_ledger(path)
    assert len(recs) == len(writers) * n
    assert [r["seq"] for r in recs] == list(range(len(recs)))
    assert verify_ledger(path) == []
    for w in writers:
        # every writer's records are present, and each writer's own appends stay in order
        assert [r["details"]["i"] for r in recs if r["actor"] == w] == list(range(n))
    assert len(lines(path)) == len(recs)  # no torn or interleaved lines


def test_concurrent_appends_from_threads(tmp_path):
    path = tmp_path / "ledger.jsonl"
    writers = [f"t{i}" for i in range(8)]
    n = 15
    barrier = threading.Barrier(len(writers))

    def run(w):
        barrier.wait()
        _append_many(str(path), w, n)

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    _check_concurrent_ledger(path, writers, n)


def test_concurrent_appends_from_processes(tmp_path):
    path = tmp_path / "ledger.jsonl"
    writers = [f"p{i}" for i in range(4)]
    n = 15
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(str(path), w, n)) for w in writers]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    _check_concurrent_ledger(path, writers, n)
