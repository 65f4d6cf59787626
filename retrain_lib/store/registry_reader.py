"""Reading an embedded SQLite MLflow registry without importing MLflow.

``retrain status`` reads a few aliases, version tags and one small artifact per model.
Through ``MlflowClient`` that costs MLflow's import (6 s cold, 10 s on a busy 2-core machine)
before the first call; read straight from the SQLite file MLflow keeps them in, it takes
milliseconds. :class:`SqliteRegistryReader` answers the read calls ``status`` makes with the
attribute names of MLflow's entities, read-only (``mode=ro``: it never creates or migrates the
store, never writes). Any other registry (a server, PostgreSQL) or a store MLflow has not
created yet gets ``None`` from :func:`reader_for`: the caller uses ``MlflowClient`` then.

The tables and columns read (``registered_models``, ``registered_model_aliases``,
``registered_model_tags``, ``model_versions``, ``model_version_tags``, ``runs``) are those of
MLflow's SQLAlchemy store; a test compares every answer with ``MlflowClient``'s on the same
store.

>>> reader_for("http://mlflow:5000") is None
True
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from retrain_lib.core.errors import RegistryError
from retrain_lib.store.registry import get_client

_TABLES = (
    "registered_models",
    "registered_model_aliases",
    "registered_model_tags",
    "model_versions",
    "model_version_tags",
)
_DELETED = "Deleted_Internal"  # MLflow's current_stage of a deleted version (hidden from its API)


class RegistryReadError(RegistryError):
    """A registered model or version that is not there (``error_code`` as MLflow's)."""

    error_code = "RESOURCE_DOES_NOT_EXIST"


@dataclass(frozen=True)
class RegisteredModelRow:
    """The fields of ``mlflow.entities.model_registry.RegisteredModel`` that are read."""

    name: str
    description: str | None
    aliases: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersionRow:
    """The fields of ``mlflow.entities.model_registry.ModelVersion`` that are read."""

    name: str
    version: str
    run_id: str | None
    creation_timestamp: int | None
    description: str | None
    source: str | None
    status: str | None
    tags: dict[str, str] = field(default_factory=dict)


def sqlite_path(uri: str | None) -> Path | None:
    """The file of a ``sqlite:///`` URI (as :mod:`retrain_lib.store.registry` reads it); None for any
    other URI, in-memory SQLite or a URI with query options."""
    if not uri or not uri.startswith("sqlite:///") or "?" in uri:
        return None
    path = uri[len("sqlite:///") :]
    return None if path in ("", ":memory:") else Path(path)


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
    con.row_factory = sqlite3.Row
    return con


def _has_tables(con: sqlite3.Connection, tables) -> bool:
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return set(tables) <= names


_QUOTED = re.compile(r"'((?:[^']|'')*)'")
_FILTER = re.compile(r"^\s*name\s*(=\s*'(?:[^']|'')*'|IN\s*\((?:\s*'(?:[^']|'')*'\s*,?)+\))\s*$", re.IGNORECASE)


def filter_names(filter_string: str) -> list[str]:
    """The model names of an MLflow filter ``name='<a>'`` or ``name IN ('<a>', '<b>')`` (the
    only filters the reader answers); ``ValueError`` for any other."""
    if not _FILTER.match(filter_string or ""):
        raise ValueError(
            "The 'filter_string' parameter of SqliteRegistryReader searches must be \"name='<model>'\" or "
            f"\"name IN ('<a>', '<b>')\". Got {filter_string!r} instead."
        )
    return [m.replace("''", "'") for m in _QUOTED.findall(filter_string)]


def name_filter(names) -> str:
    """The MLflow filter string selecting the models ``names``: ``name IN ('<a>', '<b>')``."""
    quoted = ", ".join("'" + str(n).replace("'", "''") + "'" for n in names)
    return f"name IN ({quoted})"


class SqliteRegistryReader:
    """The read calls of ``MlflowClient`` that ``retrain status`` makes, on SQLite files.

    ``errors`` are the exceptions its calls raise for a missing model or version (status
    catches them instead of ``MlflowException``). :meth:`download_artifacts` copies a run's
    artifact from a local artifact store; for any other store it asks ``MlflowClient``.
    """

    errors: tuple[type[Exception], ...] = (RegistryReadError,)

    def __init__(self, registry_db: Path, tracking_db: Path | None, *, tracking_uri: str, registry_uri: str):
        self._registry = _connect(registry_db)
        self._tracking = _connect(tracking_db) if tracking_db is not None else None
        self._uris = (tracking_uri, registry_uri)
        self._workspace = "workspace" in {r[1] for r in self._registry.execute("PRAGMA table_info(registered_models)")}

    def __repr__(self) -> str:
        return f"SqliteRegistryReader({self._uris[1]!r})"

    def close(self) -> None:
        self._registry.close()
        if self._tracking is not None:
            self._tracking.close()

    def _where(self, alias: str = "") -> str:
        # MLflow's workspaces: a store without them enabled keeps everything in 'default'
        return f" AND {alias}workspace = 'default'" if self._workspace else ""

    def get_registered_model(self, name: str) -> RegisteredModelRow:
        row = self._registry.execute(
            f"SELECT name, description FROM registered_models WHERE name = ?{self._where()}", (name,)
        ).fetchone()
        if row is None:
            raise RegistryReadError(f"Registered Model with name={name} not found")
        aliases = {
            r["alias"]: str(r["version"])
            for r in self._registry.execute(
                f"SELECT alias, version FROM registered_model_aliases WHERE name = ?{self._where()}", (name,)
            )
        }
        tags = {
            r["key"]: r["value"]
            for r in self._registry.execute(
                f"SELECT key, value FROM registered_model_tags WHERE name = ?{self._where()}", (name,)
            )
        }
        return RegisteredModelRow(row["name"], row["description"], aliases, tags)

    def get_model_version(self, name: str, version) -> ModelVersionRow:
        try:
            number = int(version)
        except (TypeError, ValueError):
            raise RegistryReadError(f"Model Version (name={name}, version={version}) not found") from None
        row = self._registry.execute(
            "SELECT name, version, run_id, creation_time, description, source, status FROM model_versions "
            f"WHERE name = ? AND version = ? AND current_stage != ?{self._where()}",
            (name, number, _DELETED),
        ).fetchone()
        if row is None:
            raise RegistryReadError(f"Model Version (name={name}, version={version}) not found")
        tags = {
            r["key"]: r["value"]
            for r in self._registry.execute(
                f"SELECT key, value FROM model_version_tags WHERE name = ? AND version = ?{self._where()}",
                (name, number),
            )
        }
        return ModelVersionRow(
            row["name"],
            str(row["version"]),
            row["run_id"],
            row["creation_time"],
            row["description"],
            row["source"],
            row["status"],
            tags,
        )

    def search_registered_models(self, filter_string: str, max_results: int = 1000) -> list[RegisteredModelRow]:
        """The registered models named by ``name='<model>'`` or ``name IN ('<a>', '<b>', ...)``
        (the filters the fleet status uses), with their aliases and tags, in name order."""
        names = filter_names(filter_string)[: int(max_results)]
        if not names:
            return []
        marks = ", ".join("?" * len(names))
        found = {
            r["name"]: RegisteredModelRow(r["name"], r["description"], {}, {})
            for r in self._registry.execute(
                f"SELECT name, description FROM registered_models WHERE name IN ({marks}){self._where()}", names
            )
        }
        for r in self._registry.execute(
            f"SELECT name, alias, version FROM registered_model_aliases WHERE name IN ({marks}){self._where()}", names
        ):
            if r["name"] in found:
                found[r["name"]].aliases[r["alias"]] = str(r["version"])
        for r in self._registry.execute(
            f"SELECT name, key, value FROM registered_model_tags WHERE name IN ({marks}){self._where()}", names
        ):
            if r["name"] in found:
                found[r["name"]].tags[r["key"]] = r["value"]
        return [found[n] for n in sorted(found)]

    def search_model_versions(self, filter_string: str, max_results: int = 1000) -> list[ModelVersionRow]:
        """The versions of the models named by ``name='<model>'`` or ``name IN (...)``, with
        their tags, newest first per model."""
        names = filter_names(filter_string)
        if not names:
            return []
        marks = ", ".join("?" * len(names))
        rows = self._registry.execute(
            "SELECT name, version, run_id, creation_time, description, source, status FROM model_versions "
            f"WHERE name IN ({marks}) AND current_stage != ?{self._where()} ORDER BY name, version DESC LIMIT ?",
            (*names, _DELETED, int(max_results)),
        ).fetchall()
        tags: dict[tuple[str, str], dict[str, str]] = {}
        for r in self._registry.execute(
            f"SELECT name, version, key, value FROM model_version_tags WHERE name IN ({marks}){self._where()}", names
        ):
            tags.setdefault((r["name"], str(r["version"])), {})[r["key"]] = r["value"]
        return [
            ModelVersionRow(
                r["name"],
                str(r["version"]),
                r["run_id"],
                r["creation_time"],
                r["description"],
                r["source"],
                r["status"],
                tags.get((r["name"], str(r["version"])), {}),
            )
            for r in rows
        ]

    def download_artifacts(self, run_id: str, path: str, dst_path: str) -> str:
        """Copy ``path`` of run ``run_id``'s artifacts into ``dst_path`` and return the copy's
        path, as ``MlflowClient.download_artifacts`` does."""
        root = None
        if self._tracking is not None:
            row = self._tracking.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
            if row is None:
                raise RegistryReadError(f"Run '{run_id}' not found")
            root = _local_dir(row["artifact_uri"])
        if root is None:  # a remote artifact store, or the runs are elsewhere: MLflow's client
            return get_client(*self._uris).download_artifacts(run_id, path, dst_path)
        source = (root / path).resolve()
        if root.resolve() not in source.parents or not source.is_file():
            raise RegistryReadError(f"artifact {path!r} of run {run_id} not found under {root}")
        target = Path(dst_path) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        return str(target)


def _local_dir(artifact_uri: str | None) -> Path | None:
    if not artifact_uri:
        return None
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if parsed.scheme == "" and artifact_uri.startswith("/"):
        return Path(artifact_uri)
    return None


def reader_for(tracking_uri: str | None, registry_uri: str | None = None) -> SqliteRegistryReader | None:
    """A :class:`SqliteRegistryReader` when the registry is an SQLite file MLflow has created
    (its tables exist); None otherwise (use ``MlflowClient``)."""
    registry_uri = registry_uri or tracking_uri
    registry_db = sqlite_path(registry_uri)
    if registry_uri is None or registry_db is None or not registry_db.is_file():
        return None
    tracking_db = sqlite_path(tracking_uri)
    if tracking_db is not None and not tracking_db.is_file():
        tracking_db = None
    try:
        con = _connect(registry_db)
        try:
            if not _has_tables(con, _TABLES):
                return None
        finally:
            con.close()
        if tracking_db is not None:
            con = _connect(tracking_db)
            try:
                tracking_db = tracking_db if _has_tables(con, ("runs",)) else None
            finally:
                con.close()
        return SqliteRegistryReader(
            registry_db, tracking_db, tracking_uri=tracking_uri or registry_uri, registry_uri=registry_uri
        )
    except sqlite3.Error:
        return None
