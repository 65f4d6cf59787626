"""Problems of a config file and their messages: :class:`ConfigProblem` (file, line, field, reason,
fix), the YAML line index that locates a field, and the translation of pydantic errors.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class ConfigProblem:
    """One problem of one config file."""

    file: str
    line: int | None
    column: int | None
    field: str
    reason: str
    fix: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.field or '<file>'}: {self.reason}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "reason": self.reason,
            "fix": self.fix,
        }


def did_you_mean(word: object, options) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class LineIndex:
    """Maps a path in a YAML document (tuple of keys/indices) to the line of its key."""

    def __init__(self, text: str | None = None, *, root=None):
        self.marks: dict[tuple, tuple[int, int]] = {}
        if root is None and text is not None:
            try:
                root = yaml.compose(text, Loader=yaml.SafeLoader)
            except yaml.YAMLError:
                root = None
        if root is not None:
            self._walk(root, ())

    def _walk(self, node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, key.value)
                self.marks[sub] = (key.start_mark.line + 1, key.start_mark.column + 1)
                self._walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = (*path, i)
                self.marks[sub] = (item.start_mark.line + 1, item.start_mark.column + 1)
                self._walk(item, sub)

    def find(self, loc: tuple) -> tuple[int | None, int | None]:
        loc = tuple(loc)
        while loc:
            if loc in self.marks:
                return self.marks[loc]
            loc = loc[:-1]
        return (1, 1) if self.marks else (None, None)


def _unwrap(annotation) -> list:
    """The BaseModel / dict / list types an annotation can hold."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out = []
        for arg in typing.get_args(annotation):
            out += _unwrap(arg)
        return out
    return [annotation]


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc``."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            if typing.get_origin(current) in (list, dict):
                current = typing.get_args(current)[-1]
                for candidate in _unwrap(current):
                    current = candidate
                    break
                continue
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        candidates = [c for c in _unwrap(field.annotation) if c is not type(None)]
        current = candidates[0] if candidates else None
        if typing.get_origin(current) in (list, dict):
            continue
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


_FIXES = {
    "missing": "add the field",
    "extra_forbidden": "remove it or fix its spelling",
    "literal_error": "use one of the allowed values",
    "float_parsing": "write a number",
    "int_parsing": "write a whole number",
    "int_from_float": "write a whole number",
    "bool_parsing": "write true or false",
    "string_type": "write a string (quote it)",
    "list_type": "write a YAML list",
    "dict_type": "write a YAML mapping",
    "model_type": "write a YAML mapping",
    "model_attributes_type": "write a YAML mapping",
    "string_pattern_mismatch": "use lower-case letters, digits and '_', starting with a letter",
}


def problems_from_validation(
    exc: ValidationError, file: str, index: LineIndex, model: type[BaseModel]
) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        line, col = index.find(loc)
        reason = err["msg"]
        fix = _FIXES.get(kind, "")
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            options = list(parent.model_fields) if parent else []
            reason = f"unknown field {loc[-1]!r}{did_you_mean(loc[-1], options)}"
            if options:
                fix = f"remove it or use one of: {', '.join(options)}"
        elif kind == "missing":
            reason = "required field is missing"
            fix = f"add '{loc[-1]}:' here" if loc else fix
            line, col = index.find(loc[:-1])
        elif kind == "literal_error":
            got = err.get("input")
            expected = err.get("ctx", {}).get("expected", "")
            allowed = re.findall(r"'([^']*)'", expected)
            reason = f"{got!r} is not allowed{did_you_mean(got, allowed)}"
            fix = f"use one of {expected}"
        elif "input" in err and kind not in ("value_error", "assertion_error"):
            got = err["input"]
            if not isinstance(got, (dict, list)):
                reason = f"{reason} (got {got!r})"
        if reason.startswith("Value error, "):
            reason = reason[len("Value error, ") :]
        problems.append(ConfigProblem(file, line, col, dotted(loc), reason, fix))
    return problems
