"""The expectation suite a model config asks for, as plain specs (no Great Expectations import).

:func:`build_specs` turns the ``validation:`` section (and the declared column types) into
:class:`ExpectationSpec` records in a fixed order; :mod:`retrain_lib.quality.validation` runs them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from retrain_lib.core.config import ModelConfig

NUMERIC_TYPES = (
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "UInt8",
    "UInt16",
    "UInt32",
    "UInt64",
    "Float32",
    "Float64",
)
STRING_TYPES = ("str", "string", "StringDtype")
DATETIME_TYPES = ("datetime64", "datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]")
TYPE_LISTS = {"numeric": NUMERIC_TYPES, "string": STRING_TYPES, "datetime": DATETIME_TYPES}


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation: the config key it came from, its column, GX class name and arguments."""

    check: str
    column: str | None
    kind: str  # the gx.expectations class name
    kwargs: dict[str, Any]
    note: str = ""


def _mostly(value: float | None, default: float) -> dict[str, float]:
    share = default if value is None else value
    return {} if share >= 1 else {"mostly": share}


def end_of_day(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time())


def build_specs(cfg: ModelConfig, *, as_of: dt.date, days: int = 1) -> list[ExpectationSpec]:
    """The expectations a config asks for, in a fixed order (pure: no GX import)."""
    v = cfg.validation
    if v is None:
        return []
    specs: list[ExpectationSpec] = []
    if v.exact_columns:
        specs.append(
            ExpectationSpec(
                "exact_columns",
                None,
                "ExpectTableColumnsToMatchSet",
                {"column_set": list(cfg.columns), "exact_match": True},
            )
        )
    if v.row_count is not None:
        lo = None if v.row_count.min is None else v.row_count.min * days
        hi = None if v.row_count.max is None else v.row_count.max * days
        per_day = f"{v.row_count.min if v.row_count.min is not None else 0}..{v.row_count.max or 'any'}"
        specs.append(
            ExpectationSpec(
                "row_count",
                None,
                "ExpectTableRowCountToBeBetween",
                {"min_value": lo, "max_value": hi},
                f"row_count {per_day} per day x {days} day(s)",
            )
        )
    for column, kind in cfg.expected_dtypes().items():
        specs.append(
            ExpectationSpec(
                "dtypes",
                column,
                "ExpectColumnValuesToBeInTypeList",
                {"column": column, "type_list": list(TYPE_LISTS[kind])},
                kind,
            )
        )
    specs.extend(_column_rule_specs(v))
    if v.freshness_hours is not None:
        end = end_of_day(as_of)
        start = end - dt.timedelta(hours=v.freshness_hours)
        specs.append(
            ExpectationSpec(
                "freshness_hours",
                cfg.data.timestamp_column,
                "ExpectColumnMaxToBeBetween",
                {"column": cfg.data.timestamp_column, "min_value": start, "max_value": end},
                f"freshness_hours {v.freshness_hours:g} before the end of {as_of.isoformat()}",
            )
        )
    return specs


# -----------------------------------------------------------------------------------------
# Running the suite
# -----------------------------------------------------------------------------------------


def _column_rule_specs(v) -> list[ExpectationSpec]:
    """The per-column rules: not_null, unique, between and in_set, each with its ``mostly``."""
    specs: list[ExpectationSpec] = []
    for rule in v.not_null:
        specs.append(
            ExpectationSpec(
                "not_null",
                rule.column,
                "ExpectColumnValuesToNotBeNull",
                {"column": rule.column, **_mostly(rule.mostly, v.mostly)},
            )
        )
    for column in v.unique:
        specs.append(
            ExpectationSpec(
                "unique", column, "ExpectColumnValuesToBeUnique", {"column": column, **_mostly(None, v.mostly)}
            )
        )
    for column, rng in v.between.items():
        specs.append(
            ExpectationSpec(
                "between",
                column,
                "ExpectColumnValuesToBeBetween",
                {"column": column, "min_value": rng.min, "max_value": rng.max, **_mostly(rng.mostly, v.mostly)},
            )
        )
    for column, allowed in v.in_set.items():
        specs.append(
            ExpectationSpec(
                "in_set",
                column,
                "ExpectColumnValuesToBeInSet",
                {"column": column, "value_set": list(allowed.values), **_mostly(allowed.mostly, v.mostly)},
            )
        )
    return specs
