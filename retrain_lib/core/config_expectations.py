"""The ``validation:`` section of a model config: the data expectations (not_null, between,
in_set, unique, row_count, dtypes, freshness) that :mod:`retrain_lib.quality.validation` runs.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from retrain_lib.core.config_sections import StrictModel

DTYPES = ("numeric", "string", "datetime")


def _share(description: str):
    return Field(default=None, gt=0, le=1, description=description)


class NotNull(StrictModel):
    column: str
    mostly: float | None = _share("Share of rows that must be non-missing; default: validation.mostly.")


def _check_bounds(lo: float | None, hi: float | None) -> None:
    if lo is None and hi is None:
        raise ValueError("give min, max or both")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min ({lo:g}) is greater than max ({hi:g})")


class ValueRange(StrictModel):
    min: float | None = None
    max: float | None = None
    mostly: float | None = _share("Share of non-missing values that must be in range; default: validation.mostly.")

    @model_validator(mode="after")
    def _bounds(self) -> ValueRange:
        _check_bounds(self.min, self.max)
        return self


class ValueSet(StrictModel):
    values: list[str | int | float | bool] = Field(min_length=1)
    mostly: float | None = _share("Share of non-missing values that must be in the set; default: validation.mostly.")


class RowCount(StrictModel):
    """Rows per day; a window of N days must hold between ``min * N`` and ``max * N`` rows."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> RowCount:
        _check_bounds(self.min, self.max)
        return self


class Validation(StrictModel):
    """Data expectations (Great Expectations) checked on the training window before a retrain
    (a failure stops it and quarantines the batch) and on the monitor's current window (a
    failure is recorded, the monitor carries on)."""

    enabled: bool = True
    mostly: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Default share of rows a column-value expectation needs (1.0 = every row).",
    )
    not_null: list[NotNull] = Field(
        default_factory=list,
        description="Columns without missing values: names, or {column, mostly}.",
    )
    between: dict[str, ValueRange] = Field(default_factory=dict, description="Column -> {min, max, mostly}.")
    in_set: dict[str, ValueSet] = Field(
        default_factory=dict,
        description="Column -> allowed values (a list, or {values, mostly}).",
    )
    unique: list[str] = Field(default_factory=list, description="Columns whose values must be unique.")
    row_count: RowCount | None = Field(default=None, description="Rows per day of the window: {min, max}.")
    exact_columns: bool = Field(
        default=False,
        description="The columns must be exactly the id, timestamp, features and target (no extra column).",
    )
    dtypes: dict[str, Literal["numeric", "string", "datetime"]] = Field(
        default_factory=dict,
        description="Column -> numeric, string or datetime.",
    )
    dtypes_from_features: bool = Field(
        default=True,
        description="Also expect numeric features to be numeric and the timestamp a datetime.",
    )
    freshness_hours: float | None = Field(
        default=None,
        gt=0,
        description="The latest timestamp must be within this many hours of the end of the as_of day.",
    )

    @field_validator("not_null", mode="before", json_schema_input_type=list[str | NotNull])
    @classmethod
    def _names_or_rules(cls, value):
        if not isinstance(value, list):
            return value
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append({"column": item})
            elif isinstance(item, dict):
                out.append(item)
            else:
                raise ValueError(
                    f"item {i} ({item!r}) must be a column name or a mapping such as {{column: income, mostly: 0.98}}"
                )
        return out

    @field_validator(
        "in_set", mode="before", json_schema_input_type=dict[str, list[str | int | float | bool] | ValueSet]
    )
    @classmethod
    def _list_or_rule(cls, value):
        if not isinstance(value, dict):
            return value
        return {k: {"values": v} if isinstance(v, list) else v for k, v in value.items()}
