"""Plain values read from registry tags, ledger details and report files for the fleet status:
finite floats, ISO times, JSON files (``None`` for anything unreadable)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float; ``None`` when it is not a number, NaN or infinite."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def ms_to_iso(ms: Any) -> str | None:
    """Milliseconds since the epoch (MLflow's timestamps) as an ISO UTC time to the second."""
    try:
        return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def read_json(path: str | None) -> dict | None:
    """The JSON object in the file ``path``; ``None`` when there is none or it is unreadable."""
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
