"""The registry side of the fleet status: a model's aliases, rollout state and aliased versions
(lineage and metric tags) from MLflow or the SQLite registry reader."""

from __future__ import annotations

import logging
from typing import Any

from retrain_lib.quality.registry_record import MODEL_CARD_PAGE_TAG
from retrain_lib.serving.routing import state_from_tags
from retrain_lib.store.lifecycle_tags import LifecycleTags
from retrain_lib.store.registry import is_not_found
from retrain_lib.store.registry_reader import name_filter
from retrain_lib.tools.status_links import mlflow_run_url, mlflow_version_url
from retrain_lib.tools.status_values import finite_float, ms_to_iso

log = logging.getLogger(__name__)

ALIASES = ("champion", "challenger", "previous-champion")


def _registry_errors(client) -> tuple[type[Exception], ...]:
    """What ``client``'s calls raise for a missing model or version: the
    :class:`~retrain_lib.store.registry_reader.SqliteRegistryReader`'s own errors (MLflow is not
    imported), else ``MlflowException``."""
    errors = getattr(client, "errors", None)
    if isinstance(errors, tuple):
        return errors
    from mlflow.exceptions import MlflowException

    return (MlflowException,)


def _version_info(client, model: str, version: str, aliases: list[str], ui_url: str) -> dict[str, Any]:
    """One registered version: lineage and metric tags, as plain values."""
    try:
        mv = client.get_model_version(model, str(version))
    except _registry_errors(client) as exc:
        log.warning("%s version %s: %s", model, version, exc)
        return {"version": str(version), "aliases": aliases, "missing": True}
    return version_record(mv, model, aliases, ui_url)


def version_record(mv, model: str, aliases: list[str], ui_url: str) -> dict[str, Any]:
    """One registered version (an MLflow ``ModelVersion`` or the reader's row) as plain values."""
    tags = dict(mv.tags or {})
    metrics = {k[len("metric.") :]: finite_float(v) for k, v in tags.items() if k.startswith("metric.")}
    gates = tags.get("gates.passed")
    return {
        "version": str(mv.version),
        "aliases": aliases,
        "run_id": mv.run_id,
        "created": ms_to_iso(mv.creation_timestamp),
        "trained_as_of": tags.get("trained_as_of"),
        "promoted_as_of": tags.get("promoted_as_of"),
        "data_window": [tags.get("data.start"), tags.get("data.end")] if tags.get("data.start") else None,
        "metrics": {k: v for k, v in sorted(metrics.items()) if v is not None},
        "gates_passed": None if gates is None else gates == "true",
        "gates_summary": tags.get("gates.summary"),
        "rolled_back": tags.get("retrain.rolled_back") == "true",
        "approval": tags.get("approval.answer"),
        "description": mv.description or "",
        "mlflow_url": mlflow_version_url(ui_url, model, mv.version),
        "run_url": mlflow_run_url(ui_url, mv.run_id),
        "card_url": f"{ui_url.rstrip('/')}/{tags[MODEL_CARD_PAGE_TAG]}" if tags.get(MODEL_CARD_PAGE_TAG) else None,
    }


def unregistered() -> dict[str, Any]:
    """The registry state of a model that is not registered."""
    return {
        "registered": False,
        "aliases": {},
        "rollout": state_from_tags({}).to_dict(),
        "versions": {},
        "lifecycle": LifecycleTags().to_dict(),
    }


def registry_states(client, names: list[str], ui_url: str, *, chunk: int = 100) -> dict[str, dict[str, Any]]:
    """:func:`registry_state` of every model in ``names``, in two registry queries per ``chunk``
    names (a fleet page): ``search_registered_models`` (aliases, rollout and lifecycle tags) and
    ``search_model_versions`` (every version with its tags; page tokens followed when MLflow
    pages them), both filtered by ``name IN (...)`` - not one call or more per model."""
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(names), chunk):
        part = list(names[i : i + chunk])
        flt = name_filter(part)
        models = {rm.name: rm for rm in _all_pages(client.search_registered_models, flt, len(part))}
        versions: dict[str, dict[str, Any]] = {}
        for mv in _all_pages(client.search_model_versions, flt, 10000):
            versions.setdefault(mv.name, {})[str(mv.version)] = mv
        for name in part:
            rm = models.get(name)
            if rm is None:
                out[name] = unregistered()
                continue
            aliases = {k: str(v) for k, v in (rm.aliases or {}).items()}
            by_version: dict[str, list[str]] = {}
            for alias in ALIASES:
                if alias in aliases:
                    by_version.setdefault(aliases[alias], []).append(alias)
            mine = versions.get(name, {})
            infos = {
                v: version_record(mine[v], name, names_, ui_url)
                if v in mine
                else {"version": v, "aliases": names_, "missing": True}
                for v, names_ in by_version.items()
            }
            latest = max((int(v) for v in mine), default=None)
            out[name] = {
                "registered": True,
                "aliases": {a: aliases[a] for a in ALIASES if a in aliases},
                "rollout": state_from_tags(rm.tags).to_dict(),
                "lifecycle": LifecycleTags.from_tags(rm.tags).to_dict(),
                "versions": infos,
                "latest_version": None if latest is None else str(latest),
            }
    return out


def _all_pages(search, filter_string: str, max_results: int) -> list:
    """Every result of an MLflow search, following ``token`` (one call when it fits one page)."""
    found = search(filter_string=filter_string, max_results=max_results)
    out = list(found)
    token = getattr(found, "token", None)
    while token:
        found = search(filter_string=filter_string, max_results=max_results, page_token=token)
        out += list(found)
        token = getattr(found, "token", None)
    return out


def registry_state(client, model: str, ui_url: str) -> dict[str, Any]:
    """Aliases, rollout state and the aliased versions of ``model`` (empty when unregistered)."""
    errors = _registry_errors(client)
    try:
        rm = client.get_registered_model(model)
    except errors as exc:
        if is_not_found(exc):
            return unregistered()
        raise
    aliases = {k: str(v) for k, v in (rm.aliases or {}).items()}
    by_version: dict[str, list[str]] = {}
    for alias in ALIASES:
        if alias in aliases:
            by_version.setdefault(aliases[alias], []).append(alias)
    versions = {v: _version_info(client, model, v, names, ui_url) for v, names in by_version.items()}
    latest = None
    try:
        found = client.search_model_versions(f"name='{model}'", max_results=1000)
        latest = max((int(v.version) for v in found), default=None)
    except errors as exc:  # the count is informative only
        log.warning("cannot list the versions of %s: %s", model, exc)
    return {
        "registered": True,
        "aliases": {a: aliases[a] for a in ALIASES if a in aliases},
        "rollout": state_from_tags(rm.tags).to_dict(),
        "lifecycle": LifecycleTags.from_tags(rm.tags).to_dict(),
        "versions": versions,
        "latest_version": None if latest is None else str(latest),
    }
