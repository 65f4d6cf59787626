"""The decision ledger's record format: the table names and schema, the canonical JSON and the
row hash of the chain, the record dict readers get, and the check of a chain of rows.

Schema (``retrain_ledger``)::

    seq             BIGINT PRIMARY KEY   -- 0, 1, 2, ... contiguous over the whole ledger
    time            TEXT NOT NULL        -- wall clock of the append, ISO 8601 UTC
    model           TEXT NOT NULL
    event           TEXT NOT NULL        -- monitor, gates, promote, challenger, reject, ...
    as_of           TEXT NULL            -- the logical day of the run that decided
    actor           TEXT NOT NULL        -- "cli", "<dag_id>/<run_id>", a person
    before_version  TEXT NULL            -- champion version before the decision (if it moved)
    after_version   TEXT NULL            -- champion version after the decision (if it moved)
    reason          TEXT NOT NULL
    details         TEXT NOT NULL        -- canonical JSON of the details dict
    prev_hash       VARCHAR(64) NOT NULL -- hash of row seq-1 (64 zeros for seq 0)
    hash            VARCHAR(64) NOT NULL UNIQUE

``retrain_ledger_head`` holds one row (``id = 1``): the ``seq`` and ``hash`` of the last
row, written in the same transaction as every append.

The hash of a row is ``sha256`` of the canonical JSON (sorted keys, ``","``/``":"``
separators, ASCII) of every other column, ``prev_hash`` included (see :func:`row_hash`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64
TABLE = "retrain_ledger"
HEAD_TABLE = "retrain_ledger_head"
HASHED_COLUMNS = (
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
)


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: numpy scalars and arrays, dates, paths, tuples and
    sets become JSON values; NaN and infinities become ``None`` (strict JSON has neither)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=json.dumps) if isinstance(value, set | frozenset) else items
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if hasattr(value, "dtype") and hasattr(value, "tolist"):  # numpy scalar or array
        return _jsonable(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def canonical_json(value: Any) -> str:
    """The one JSON text of ``value`` the ledger stores and hashes."""
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def row_hash(row: Mapping[str, Any]) -> str:
    """``sha256`` of the canonical JSON of the row's :data:`HASHED_COLUMNS` (all but ``hash``)."""
    body = {k: row[k] for k in HASHED_COLUMNS}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def as_record(row: Mapping[str, Any]) -> dict:
    """A row as the dict readers use (the keys of the JSONL ledger plus before/after/reason)."""
    try:
        details = json.loads(row["details"])
    except (TypeError, ValueError):
        details = {"_unparsable": row["details"]}
    return {
        "seq": row["seq"],
        "time": row["time"],
        "model": row["model"],
        "event": row["event"],
        "as_of": row["as_of"],
        "actor": row["actor"],
        "before": row["before_version"],
        "after": row["after_version"],
        "reason": row["reason"],
        "details": details,
        "prev": row["prev_hash"],
        "hash": row["hash"],
    }


def chain_problems(rows: list[Mapping[str, Any]], head: dict | None) -> list[str]:
    problems: list[str] = []
    expected, prev, prev_seq = 0, GENESIS, None
    for row in rows:
        seq = row["seq"]
        if seq != expected:
            missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
            problems.append(f"seq {seq}: {missing} missing (deleted?)")
        if row["prev_hash"] != prev:
            after = "the start of the ledger" if prev_seq is None else f"seq {prev_seq}"
            problems.append(
                f"seq {seq}: prev_hash does not match the hash of {after} (a row before it was deleted or rewritten)"
            )
        if row_hash(row) != row["hash"]:
            problems.append(f"seq {seq}: content does not match its hash (edited?)")
        expected, prev, prev_seq = seq + 1, row["hash"], seq
    if head is None:
        if rows:
            problems.append(f"head missing: {len(rows)} row(s) but no {HEAD_TABLE} row (deleted?)")
        return problems
    if not rows:
        problems.append(f"ledger is empty but the head names seq {head['seq']}: every row deleted?")
    elif head["seq"] > prev_seq:
        problems.append(
            f"head names seq {head['seq']} but the last row is seq {prev_seq}: "
            f"{head['seq'] - prev_seq} row(s) at the end deleted?"
        )
    elif head["seq"] < prev_seq:
        problems.append(
            f"head names seq {head['seq']} but rows go on to seq {prev_seq}: "
            "rows appended without the ledger (or the head rewound)"
        )
    elif head["hash"] != prev:
        problems.append(f"head hash does not match seq {prev_seq}: the last row was rewritten")
    return problems
