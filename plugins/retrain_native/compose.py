"""docker-compose.yaml read the way ``docker compose`` reads it: the ``.env`` file
(:func:`read_env_file`), ``${VAR}`` interpolation (:func:`interpolate`, :func:`load_compose`),
and each service's ``environment`` and ``command`` in the exec form
(:func:`service_environment`, :func:`service_command`). Used by
:class:`retrain_native.topology.NativeTopology` and by ``tests/production/test_compose_schema.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"


class ComposeError(ValueError):
    """docker-compose.yaml (or its interpolation) cannot be turned into native processes."""


_VAR = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
)


def read_env_file(path: Path = ENV_EXAMPLE) -> dict[str, str]:
    """``KEY=VALUE`` lines of an ``.env`` file (comments and blank lines skipped)."""
    out = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ComposeError(f"{path}:{n}: expected KEY=VALUE, got {line!r}")
        key, value = line.split("=", 1)
        out[key.strip()] = value.strip().strip('"').strip("'")
    return out


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's interpolation: ``${V}``, ``${V:-default}``, ``${V-default}``, ``${V:?error}``,
    ``${V?error}``, ``$V``, and ``$$`` for a literal ``$``."""

    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("plain")
        value, op, arg = variables.get(name), m.group("op"), m.group("arg")
        if op == ":-":
            return value if value else arg
        if op == "-":
            return value if value is not None else arg
        if op in (":?", "?") and (value is None or (op == ":?" and not value)):
            raise ComposeError(f"required variable {name} is missing a value: {arg}")
        return value or ""

    return _VAR.sub(sub, text)


def _interpolate_all(node, variables):
    if isinstance(node, str):
        return interpolate(node, variables)
    if isinstance(node, list):
        return [_interpolate_all(v, variables) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_all(v, variables) for k, v in node.items()}
    return node


def load_compose(variables: dict[str, str], path: Path = COMPOSE_FILE) -> dict:
    """The compose file with anchors merged and every ``${VAR}`` interpolated."""
    raw = yaml.safe_load(Path(path).read_text())
    return _interpolate_all({k: v for k, v in raw.items() if not k.startswith("x-")}, variables)


def service_environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: "" if v is None else str(v).lower() if isinstance(v, bool) else str(v) for k, v in env.items()}


def service_command(service: dict) -> list[str]:
    cmd = service.get("command")
    if isinstance(cmd, str):
        raise ComposeError(f"use the exec (list) form for commands, got {cmd!r}")
    return [str(c) for c in cmd or []]
