"""Safe reading of one YAML config file: size and alias limits, YAML 1.2 booleans, problems
instead of exceptions, and validation of the result against a pydantic model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from retrain_lib.core.config_problems import ConfigProblem, LineIndex, problems_from_validation

MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_NODES = 100_000  # YAML values once aliases are expanded: stops "billion laughs" files


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans: only true/false are booleans, so the key
    ``on`` (``alerts.on``) and values such as ``no`` stay strings instead of becoming bools."""


_LOADERS: list[type[yaml.SafeLoader | yaml.CSafeLoader]] = [_SafeLoader]
if getattr(yaml, "CSafeLoader", None) is not None:  # libyaml: the same documents, ~10x faster to parse

    class _CSafeLoader(yaml.CSafeLoader):
        """:class:`_SafeLoader` on libyaml's parser (same resolvers: YAML 1.2 booleans)."""

    _LOADERS.insert(0, _CSafeLoader)

for _loader in _LOADERS:
    _loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )


def _timestamp(loader, node):
    """A YAML date or time; an impossible one (``2027-02-30``) stays text, so the schema reports
    it as a problem of its field instead of the loader raising ``ValueError``."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


for _loader in _LOADERS:
    _loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp)


def _expanded_size(root) -> int | None:
    """Nodes of a composed YAML document, an aliased node counted at every use (linear time);
    None when an alias refers to a node that contains it."""
    sizes: dict[int, int | None] = {}

    def size(node) -> int | None:
        if id(node) in sizes:
            return sizes[id(node)]  # None while the node is still being counted: a cycle
        sizes[id(node)] = None
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        total = 1
        for child in children:
            sub = size(child)
            if sub is None:
                return None
            total += sub
        sizes[id(node)] = total
        return total

    return 0 if root is None else size(root)


def _compose(text: str):
    """``(loader, root node)`` of a YAML document. A document the fast (libyaml) parser rejects
    is read again by the pure-Python one, so that the problem reported (wording, line, column)
    does not depend on which parser is installed."""
    for i, cls in enumerate(_LOADERS):
        loader = cls(text)
        try:
            return loader, loader.get_single_node()
        except (yaml.YAMLError, RecursionError):
            loader.dispose()
            if i == len(_LOADERS) - 1:
                raise
    raise AssertionError("unreachable")


def _read_text(path: Path) -> str | ConfigProblem:
    """The UTF-8 text of a config file, or the problem that stops reading it (unreadable, too
    big, not UTF-8)."""
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return ConfigProblem(name, None, None, "", f"cannot read the file: {exc.strerror}", "check the path")
    if size > MAX_CONFIG_BYTES:
        return ConfigProblem(
            name,
            None,
            None,
            "",
            f"file is {size} bytes, more than the {MAX_CONFIG_BYTES} allowed",
            "a model config is a short YAML file; check you pointed at the right file",
        )
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return ConfigProblem(
            name, None, None, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})", "save the file as UTF-8"
        )


def read_yaml(path: Path) -> tuple[Any, LineIndex | None, list[ConfigProblem]]:
    """Read one YAML file safely; problems instead of exceptions."""
    name = str(path)
    text = _read_text(path)
    if isinstance(text, ConfigProblem):
        return None, None, [text]
    loader = None
    try:
        loader, root = _compose(text)
        nodes = _expanded_size(root)
        if nodes is None or nodes > MAX_CONFIG_NODES:
            reason = (
                "a YAML alias refers to a node that contains it"
                if nodes is None
                else f"has {nodes} YAML values once aliases are expanded, more than the {MAX_CONFIG_NODES} allowed"
            )
            return (
                None,
                None,
                [
                    ConfigProblem(
                        name, None, None, "", reason, "write the values out instead of repeating '*alias' references"
                    )
                ],
            )
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, None, [ConfigProblem(name, line, col, "", f"invalid YAML: {problem}", "fix the YAML syntax")]
    except RecursionError:
        return None, None, [ConfigProblem(name, None, None, "", "YAML nesting is too deep", "flatten the file")]
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return (
            None,
            None,
            [
                ConfigProblem(
                    name,
                    1,
                    1,
                    "",
                    f"top level must be a mapping, got {type(data).__name__}",
                    "write 'key: value' pairs at the top level",
                )
            ],
        )
    return data, LineIndex(root=root) if root is not None else LineIndex(text), []


def validate_file(path: Path, model: type[BaseModel]):
    """Read ``path`` and validate it against ``model``: ``(instance or None, line index or None,
    problems)``. Cross-field checks of a model config are left to the caller (context
    ``defer_cross_checks``) so that each is reported with its own line."""
    data, index, problems = read_yaml(path)
    if problems or index is None:  # read_yaml has an index whenever it has no problem
        return None, None, problems
    try:
        return model.model_validate(data, context={"defer_cross_checks": True}), index, []
    except ValidationError as exc:
        return None, index, problems_from_validation(exc, str(path), index, model)
