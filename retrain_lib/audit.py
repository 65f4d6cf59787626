"""An append-only, hash-chained ledger of every decision the platform takes.

One JSON object per line. Each record carries the hash of the previous one, so an edited or
deleted line breaks the chain and :func:`verify_ledger` finds it.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def _hash(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def record_decision(path: Path, *, model: str, event: str, as_of: str | None = None, actor: str = "",
                    details: dict[str, Any] | None = None) -> dict:
    """Append one decision; safe against concurrent writers on one machine."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.seek(0)
            prev = GENESIS
            seq = 0
            for line in fh:
                if line.strip():
                    last = json.loads(line)
                    prev, seq = last["hash"], last["seq"] + 1
            record = {
                "seq": seq,
                "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "model": model, "event": event, "as_of": as_of, "actor": actor,
                "details": details or {}, "prev": prev,
            }
            record["hash"] = _hash(record)
            fh.seek(0, os.SEEK_END)
            fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return record


def read_ledger(path: Path, model: str | None = None) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rec = json.loads(line)
                if model is None or rec.get("model") == model:
                    out.append(rec)
    return out


def verify_ledger(path: Path) -> list[str]:
    """Problems of the chain (empty when intact)."""
    problems = []
    prev = GENESIS
    for i, rec in enumerate(read_ledger(path)):
        if rec.get("seq") != i:
            problems.append(f"record {i}: sequence number {rec.get('seq')} (expected {i})")
        if rec.get("prev") != prev:
            problems.append(f"record {i}: previous hash does not match record {i - 1}")
        if _hash(rec) != rec.get("hash"):
            problems.append(f"record {i}: content does not match its hash (edited?)")
        prev = rec.get("hash")
    return problems
