"""What a validation run found: one :class:`ExpectationResult` per expectation, gathered in a
:class:`ValidationReport` that explains each failure in one line and fits in XCom and the ledger."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

_ARG_NAMES = {"min_value": "min", "max_value": "max", "value_set": "values", "column_set": "columns"}


@dataclass(frozen=True)
class ExpectationResult:
    """The outcome of one expectation, with what was observed.

    ``check`` is the config key it came from (``not_null``, ``between``, ...); ``kwargs`` are
    the Great Expectations arguments; ``rows`` holds up to five offending rows of the frame.
    """

    check: str
    expectation: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    observed_value: Any = None
    element_count: int | None = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    partial_unexpected_list: list = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    error: str | None = None

    def _args(self) -> str:
        if self.check == "dtypes":
            return f"type={self.note}"
        shown = []
        for key, value in self.kwargs.items():
            if key in ("column", "exact_match", "batch_id", "type_list") or value is None:
                continue
            if key == "mostly" and value == 1:
                continue
            shown.append(f"{_ARG_NAMES.get(key, key)}={_fmt_arg(value)}")
        return ", ".join(shown)

    def explain(self) -> str:
        """One line: where, which expectation with which arguments, what was observed."""
        head = f"{self.column or 'table'}: {self.expectation}({self._args()})"
        if self.error:
            return f"{head}: could not be evaluated: {self.error}"
        if self.unexpected_count is not None and (self.unexpected_count or not self.success):
            rows = "row" if self.unexpected_count == 1 else "rows"
            text = f"{head}: {self.unexpected_count} {rows} ({_pct(self.unexpected_percent)}) unexpected"
            examples = _distinct(self.partial_unexpected_list)[:3]
            if examples:
                text += ", e.g. " + ", ".join(_fmt(v) for v in examples)
            if self.success:
                text += " (within mostly)"
        elif self.check == "exact_columns" and not self.success:
            parts = [f"{k} column(s) {_fmt(v)}" for k, v in self.details.items() if v]
            text = f"{head}: {'; '.join(parts) or f'observed {_fmt_arg(self.observed_value)}'}"
        elif self.observed_value is not None:
            text = f"{head}: observed {_fmt_arg(self.observed_value)}"
        else:
            text = f"{head}: {'passed' if self.success else 'failed'}"
        if self.note and self.check != "dtypes":
            text += f" [{self.note}]"
        return text

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["explain"] = self.explain()
        return jsonable(out)


@dataclass(frozen=True)
class ValidationReport:
    """Every expectation of a model's suite on one frame."""

    model: str
    as_of: str
    rows: int
    results: tuple[ExpectationResult, ...]

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failed(self) -> list[ExpectationResult]:
        return [r for r in self.results if not r.success]

    def explain(self) -> list[str]:
        """One line per failed expectation (empty when the frame passed)."""
        return [r.explain() for r in self.failed]

    def summary(self) -> dict[str, Any]:
        """Small enough for XCom and the decision ledger."""
        return {
            "success": self.success,
            "expectations": len(self.results),
            "failed_expectations": len(self.failed),
            "failed": self.explain(),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "as_of": self.as_of,
            "rows": self.rows,
            **self.summary(),
            "results": [r.to_dict() for r in self.results],
        }


# -----------------------------------------------------------------------------------------
# Suite from config
# -----------------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    if value is None:
        return "?%"
    if value >= 10 or value == 0:
        return f"{value:.0f}%"
    if value >= 0.1:
        return f"{value:.1f}%"
    return f"{value:.2g}%"


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, list):
        shown = ", ".join(_fmt(v) for v in value[:8])
        return f"[{shown}{', ...' if len(value) > 8 else ''}]"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _fmt_arg(value) -> str:
    """An expectation argument: numbers without a needless ``.0`` (``max=10000000``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return f"{value:.15g}"
    if isinstance(value, list):
        shown = ", ".join(_fmt_arg(v) for v in value[:8])
        return f"[{shown}{', ...' if len(value) > 8 else ''}]"
    if isinstance(value, str):
        return value
    return _fmt(value)


def _distinct(values: list) -> list:
    out: list = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def jsonable(value):
    """A JSON-ready copy: numpy scalars unboxed, dates as ISO strings, NaN and inf as None."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (dt.datetime, dt.date, pd.Timestamp)):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            return value.item()
        except (TypeError, ValueError):
            return str(value)
    return value
