"""The building blocks of a model card: :class:`CardSection` (a titled list of text, field,
table and list blocks that :mod:`retrain_lib.quality.model_card` renders as Markdown and HTML)
and :func:`format_value` (a value as card text)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NOT_RECORDED = "not recorded"


def format_value(value: Any) -> str:
    """A value as card text: numbers with up to 6 significant digits, booleans yes/no,
    lists joined by commas, missing values "not recorded"."""
    if value is None or value == "" or (isinstance(value, (list, tuple, dict)) and not value):
        return NOT_RECORDED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return f"{value:.6g}"
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return format_value(value.item())
        except (TypeError, ValueError):
            pass
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


@dataclass
class CardSection:
    """One section of a card: its title and blocks, each ``(kind, content)`` with kind
    ``text`` (a paragraph), ``fields`` (name/value pairs), ``table`` (header, rows) or ``list``.
    Values are formatted with :func:`format_value` when added; the renderers escape them."""

    title: str
    blocks: list[tuple[str, Any]] = field(default_factory=list)

    def text(self, value: str) -> CardSection:
        self.blocks.append(("text", value))
        return self

    def fields(self, pairs: list[tuple[str, Any]]) -> CardSection:
        self.blocks.append(("fields", [(k, format_value(v)) for k, v in pairs]))
        return self

    def table(self, header: list[str], rows: list[list[Any]]) -> CardSection:
        self.blocks.append(("table", (header, [[format_value(c) for c in row] for row in rows])))
        return self

    def items(self, values: list[str]) -> CardSection:
        self.blocks.append(("list", [str(v) for v in values]))
        return self
