"""The MLflow model registry, through aliases (never the deprecated stages).

``champion`` serves, ``challenger`` is in shadow/canary, ``previous-champion`` is the
rollback target. Registration is idempotent per MLflow run, and promotion moves
``champion`` only if it still points where the caller saw it (compare-and-swap).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from retrain_lib.core.errors import RegistryError, StaleChampionError

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous-champion"


_READY: set[str] = set()


def _init_sqlite_store(uri: str) -> None:
    """Create (migrate) an embedded SQLite MLflow store once, under a file lock: two tasks
    starting at once must not both migrate it, and a migration cut short earlier (alembic's
    ``_alembic_tmp_*`` batch tables left behind) is resumed instead of failing every retry."""
    import fcntl
    import sqlite3
    from pathlib import Path

    from mlflow.tracking import MlflowClient

    path = Path(uri[len("sqlite:///") :])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.init.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if path.exists():
                con = sqlite3.connect(path, timeout=60)
                try:
                    for (name,) in con.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '_alembic_tmp_%'"
                    ).fetchall():
                        log.warning("dropping %s left by an interrupted MLflow store migration in %s", name, path)
                        con.execute(f'DROP TABLE "{name}"')
                    con.commit()
                finally:
                    con.close()
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)  # creates / migrates the store
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _READY.add(uri)


def get_client(tracking_uri: str, registry_uri: str | None = None):
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith("sqlite:///") and tracking_uri not in _READY:
        _init_sqlite_store(tracking_uri)
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri or tracking_uri)


def is_not_found(exc: Exception) -> bool:
    """Whether a registry error means the model, version or alias asked for does not exist
    (as opposed to a registry that could not answer)."""
    code = getattr(exc, "error_code", "") or ""
    return "RESOURCE_DOES_NOT_EXIST" in code or "INVALID_PARAMETER_VALUE" in code or "not found" in str(exc).lower()


def get_alias_version(client, name: str, alias: str):
    """The model version an alias points at, or ``None``."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise


def aliases(client, name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        if is_not_found(exc):
            return {}
        raise


def register_version(client, name: str, *, run_id: str, source: str, tags: dict[str, str], description: str = ""):
    """Register the model of ``run_id``; a second call for the same run returns the same version."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if not is_not_found(exc):
            raise
        try:
            client.create_registered_model(
                name, tags={"managed_by": "retrain"}, description=f"Managed by the retraining platform: {name}"
            )
        except MlflowException as exc2:  # created concurrently
            if "ALREADY_EXISTS" not in (getattr(exc2, "error_code", "") or ""):
                raise
    existing = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        version = sorted(existing, key=lambda v: int(v.version))[0]
        log.info("run %s is already registered as %s version %s", run_id, name, version.version)
        return version
    # A logged model's URI (models:/m-<id>) must come with its model_id: an MLflow tracking
    # server refuses the version otherwise (a local store does not check).
    model_id = source[len("models:/") :].split("/")[0] if source.startswith("models:/m-") else None
    return client.create_model_version(
        name, source, run_id=run_id, tags=tags, description=description, model_id=model_id
    )


@dataclass(frozen=True)
class AliasMove:
    alias: str
    from_version: str | None
    to_version: str | None

    def to_dict(self) -> dict:
        return {"alias": self.alias, "from": self.from_version, "to": self.to_version}


def promote_champion(client, name: str, version: str, *, expected_champion: str | None) -> list[AliasMove]:
    """Point ``champion`` at ``version`` and keep the old one as ``previous-champion``.

    Compare-and-swap: fails with :class:`StaleChampionError` when the champion is no longer
    ``expected_champion`` (someone promoted or rolled back meanwhile), so a decision
    taken on stale facts never lands. Promoting the current champion again is a no-op.
    """
    before = aliases(client, name)
    current = before.get(CHAMPION)
    if current == str(version):
        return []
    if current != (str(expected_champion) if expected_champion is not None else None):
        raise StaleChampionError(
            f"champion of {name!r} is version {current}, not {expected_champion} as when the candidate was "
            "evaluated; re-run the evaluation against the new champion",
            expected=None if expected_champion is None else str(expected_champion),
            current=current,
        )
    moves = []
    if current is not None:
        client.set_registered_model_alias(name, PREVIOUS, current)
        moves.append(AliasMove(PREVIOUS, before.get(PREVIOUS), current))
    client.set_registered_model_alias(name, CHAMPION, str(version))
    moves.append(AliasMove(CHAMPION, current, str(version)))
    if before.get(CHALLENGER) == str(version):
        client.delete_registered_model_alias(name, CHALLENGER)
    return moves


def set_challenger(client, name: str, version: str) -> AliasMove:
    before = aliases(client, name).get(CHALLENGER)
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    return AliasMove(CHALLENGER, before, str(version))


def restore_aliases(client, name: str, before: dict[str, str]) -> None:
    """Point ``champion``, ``challenger`` and ``previous-champion`` back to ``before``
    (undo of a promotion whose ledger entry could not be written)."""
    now = aliases(client, name)
    for alias in (CHAMPION, CHALLENGER, PREVIOUS):
        if before.get(alias) == now.get(alias):
            continue
        if before.get(alias) is None:
            client.delete_registered_model_alias(name, alias)
        else:
            client.set_registered_model_alias(name, alias, before[alias])


def rollback_champion(client, name: str, *, expected_champion: str | None) -> list[AliasMove]:
    """Point ``champion`` back at ``previous-champion`` (compare-and-swap on the champion).

    The rolled-back version is tagged ``retrain.rolled_back=true`` and is no rollback target
    any more: ``previous-champion`` is removed (the registry does not know the version before it;
    the ledger does)."""
    before = aliases(client, name)
    current, target = before.get(CHAMPION), before.get(PREVIOUS)
    if current != (str(expected_champion) if expected_champion is not None else None):
        raise StaleChampionError(
            f"champion of {name!r} is version {current}, not {expected_champion} as when the rollback was decided",
            expected=None if expected_champion is None else str(expected_champion),
            current=current,
        )
    if target is None:
        raise RegistryError(f"{name!r} has no previous-champion to roll back to; champion stays version {current}")
    client.set_registered_model_alias(name, CHAMPION, target)
    client.delete_registered_model_alias(name, PREVIOUS)
    if current is not None:
        client.set_model_version_tag(name, current, "retrain.rolled_back", "true")
    return [AliasMove(CHAMPION, current, target), AliasMove(PREVIOUS, target, None)]


def ensure_gateway_webhook(registry_uri: str, url: str, secret: str, *, name: str = "retrain-gateway") -> dict:
    """The MLflow webhook ``name`` posting alias changes to ``url`` signed with ``secret``:
    created, or updated in place when one of that name exists (one per gateway address).
    Returns ``{"id", "name", "url", "events", "status"}``."""
    from mlflow import MlflowClient
    from mlflow.entities.webhook import WebhookAction, WebhookEntity, WebhookEvent

    client = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri)
    alias = WebhookEntity.MODEL_VERSION_ALIAS
    events: list = [WebhookEvent(alias, WebhookAction.CREATED), WebhookEvent(alias, WebhookAction.DELETED)]
    found = next((w for w in client.list_webhooks() if w.name == name), None)
    if found is None:
        hook = client.create_webhook(name=name, url=url, events=events, secret=secret)
    else:
        hook = client.update_webhook(found.webhook_id, url=url, events=events, secret=secret, status="ACTIVE")
    return {
        "id": hook.webhook_id,
        "name": hook.name,
        "url": hook.url,
        "events": [str(e) for e in hook.events],
        "status": str(hook.status),
    }
