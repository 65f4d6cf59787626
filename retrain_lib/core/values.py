"""Small pure conversions the lifecycle steps share: a day from what a task or a tag holds,
a version as an optional string, the finite metrics of a dict and JSON-safe values (no NaN)."""

from __future__ import annotations

import datetime as dt
import math


def as_day(value) -> dt.date:
    """A date from a date, a datetime or an ISO string (only its first ten characters are read)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def str_or_none(value) -> str | None:
    """``str(value)``, or ``None`` for ``None`` (a model version that may be missing)."""
    return None if value is None else str(value)


def finite(metrics: dict) -> dict:
    """The metrics that have a value and are not NaN, as floats (what MLflow and tags keep)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(float(v))}


def json_safe(value):
    """NaN floats become ``None`` (XCom and strict JSON readers reject NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
