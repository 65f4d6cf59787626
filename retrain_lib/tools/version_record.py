"""The full registry record of one model version, as ``retrain show MODEL VERSION`` prints it.

:func:`version_record` reads the version's tags and the aliases pointing at it from the
registry (an embedded SQLite registry straight from its file, any other through
``MlflowClient``) and its deployment history from the decision ledger
(:func:`retrain_lib.store.ledger_history.version_history`), and returns a
:class:`VersionRecord`: semantic version and its rule, intended use, ``registered_by``,
compliance status, deprecation target, model card URI, lineage (data version, commit, lock
hash, the MLflow run) and every raw tag.

Example::

    record = version_record("credit_default", "2")
    record.semantic_version, record.compliance_status, [e.summary for e in record.deployment_history]
    print(record.to_json())
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from retrain_lib.core.config import load_model_config
from retrain_lib.core.errors import ConfigError, RegistryError
from retrain_lib.core.settings import Settings, load_settings
from retrain_lib.quality import registry_record as rr
from retrain_lib.store import registry
from retrain_lib.store.audit import Ledger
from retrain_lib.store.ledger_history import VersionEvent, version_history
from retrain_lib.store.registry_reader import reader_for
from retrain_lib.tools.status_values import ms_to_iso

MODEL_CARD_TAG = "model_card"
_VERSION_RE = re.compile(r"[1-9]\d{0,8}")


class UnknownVersionError(RegistryError, LookupError):
    """The model or version asked for is not registered; the message names what exists."""


@dataclass(frozen=True)
class VersionLineage:
    """Where a version came from: its MLflow run, training data (window, content hash, DVC
    version), code (git commit), environment (lock hash), config hash and warm-start parent."""

    run_id: str | None
    data_start: str | None
    data_end: str | None
    trained_as_of: str | None
    data_fingerprint: str | None
    dvc_path: str | None
    dvc_rev: str | None
    dvc_md5: str | None
    git_commit: str | None
    lock_hash: str | None
    config_hash: str | None
    warm_start_from: str | None

    @classmethod
    def from_tags(cls, run_id: str | None, tags: Mapping[str, str]) -> VersionLineage:
        return cls(
            run_id=run_id,
            data_start=tags.get("data.start"),
            data_end=tags.get("data.end"),
            trained_as_of=tags.get("trained_as_of"),
            data_fingerprint=tags.get(rr.FINGERPRINT_TAG),
            dvc_path=tags.get("dvc.path"),
            dvc_rev=tags.get("dvc.rev"),
            dvc_md5=tags.get("dvc.md5"),
            git_commit=tags.get("git.commit"),
            lock_hash=tags.get("lock.hash"),
            config_hash=tags.get(rr.CONFIG_HASH_TAG),
            warm_start_from=tags.get("training.warm_start_from"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "data": {
                "start": self.data_start,
                "end": self.data_end,
                "trained_as_of": self.trained_as_of,
                "fingerprint": self.data_fingerprint,
                "dvc": {"path": self.dvc_path, "rev": self.dvc_rev, "md5": self.dvc_md5},
            },
            "git_commit": self.git_commit,
            "lock_hash": self.lock_hash,
            "config_hash": self.config_hash,
            "warm_start_from": self.warm_start_from,
        }


@dataclass(frozen=True)
class VersionRecord:
    """Everything the registry and the ledger hold about one registered version."""

    model: str
    version: str
    semantic_version: str | None
    semantic_version_reason: str | None
    aliases: tuple[str, ...]
    intended_use: str | None
    registered_by: str | None
    compliance_status: str
    deprecation_target: str | None
    model_card_uri: str | None
    created: str | None
    status: str | None
    description: str
    source: str | None
    gates_passed: bool | None
    gates_summary: str | None
    metrics: dict[str, str]
    lineage: VersionLineage
    deployment_history: tuple[VersionEvent, ...]
    lifecycle: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-able values (the ``--format json`` output)."""
        return {
            "model": self.model,
            "version": self.version,
            "semantic_version": self.semantic_version,
            "semantic_version_reason": self.semantic_version_reason,
            "aliases": list(self.aliases),
            "intended_use": self.intended_use,
            "registered_by": self.registered_by,
            "compliance_status": self.compliance_status,
            "deprecation_target": self.deprecation_target,
            "lifecycle": dict(self.lifecycle),
            "model_card_uri": self.model_card_uri,
            "created": self.created,
            "status": self.status,
            "description": self.description,
            "source": self.source,
            "gates": {"passed": self.gates_passed, "summary": self.gates_summary},
            "metrics": dict(self.metrics),
            "lineage": self.lineage.to_dict(),
            "deployment_history": [e.to_dict() for e in self.deployment_history],
            "tags": dict(sorted(self.tags.items())),
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


def _registry_client(settings: Settings):
    return reader_for(settings.tracking_uri, settings.registry_uri) or registry.get_client(
        settings.tracking_uri, settings.registry_uri
    )


def _not_found_errors(client) -> tuple[type[Exception], ...]:
    errors = getattr(client, "errors", None)
    if isinstance(errors, tuple):
        return errors
    from mlflow.exceptions import MlflowException

    return (MlflowException,)


def _known_models(settings: Settings, ledger: Ledger) -> list[str]:
    configs = {p.stem for p in settings.models_dir.glob("*.yaml")} if settings.models_dir.is_dir() else set()
    return sorted(configs | set(ledger.models()))


def _approval_configured(settings: Settings, model: str) -> bool | None:
    """Whether the model's config asks for approvals (``None``: no valid config to say)."""
    path = settings.models_dir / f"{model}.yaml"
    if not path.is_file():
        return None
    try:
        return load_model_config(path, settings.platform).approval is not None
    except ConfigError:
        return None


def version_record(model: str, version: str | int, *, settings: Settings | None = None) -> VersionRecord:
    """The :class:`VersionRecord` of ``model`` version ``version``.

    Raises:
        UnknownVersionError: ``version`` is not a version number, the model is not registered
            (the message lists the known models) or has no such version (it lists its versions).
    """
    settings = settings or load_settings()
    version = str(version).strip()
    if not _VERSION_RE.fullmatch(version):
        raise UnknownVersionError(
            f"The 'version' parameter of version_record must be a version number such as '3'. Got {version!r} instead."
        )
    client = _registry_client(settings)
    ledger = Ledger.from_settings(settings)
    missing = _not_found_errors(client)
    try:
        rm = client.get_registered_model(model)
    except missing as exc:
        if not registry.is_not_found(exc):
            raise
        known = _known_models(settings, ledger)
        raise UnknownVersionError(
            f"no registered model {model!r} in {settings.registry_uri}; models with a config or ledger "
            f"records: {', '.join(known) or 'none'}"
        ) from None
    try:
        mv = client.get_model_version(model, version)
    except missing as exc:
        if not registry.is_not_found(exc):
            raise
        numbers = sorted(int(v.version) for v in client.search_model_versions(f"name='{model}'"))
        raise UnknownVersionError(
            f"{model} has no version {version}; its versions: {', '.join(map(str, numbers)) or 'none'}"
        ) from None
    return _record(model, version, rm, mv, ledger.records(model), _approval_configured(settings, model))


def _record(model: str, version: str, rm, mv, records: list[dict], approval_configured: bool | None) -> VersionRecord:
    tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
    model_tags = {str(k): str(v) for k, v in (getattr(rm, "tags", None) or {}).items()}
    gates = tags.get("gates.passed")
    return VersionRecord(
        model=model,
        version=version,
        semantic_version=tags.get(rr.SEMVER_TAG),
        semantic_version_reason=tags.get(rr.SEMVER_REASON_TAG),
        aliases=tuple(sorted(a for a, v in (rm.aliases or {}).items() if str(v) == version)),
        intended_use=tags.get(rr.INTENDED_USE_TAG),
        registered_by=tags.get(rr.REGISTERED_BY_TAG),
        compliance_status=rr.compliance_status(tags, approval_configured=approval_configured),
        deprecation_target=tags.get(rr.DEPRECATION_TAG) or model_tags.get(rr.DEPRECATION_TAG),
        lifecycle={k: v for k, v in {**model_tags, **tags}.items() if k.startswith("lifecycle.")},
        model_card_uri=tags.get(MODEL_CARD_TAG),
        created=ms_to_iso(mv.creation_timestamp),
        status=str(mv.status) if mv.status is not None else None,
        description=mv.description or "",
        source=mv.source,
        gates_passed=None if gates is None else gates == "true",
        gates_summary=tags.get("gates.summary"),
        metrics={k[len("metric.") :]: v for k, v in sorted(tags.items()) if k.startswith("metric.")},
        lineage=VersionLineage.from_tags(mv.run_id, tags),
        deployment_history=tuple(version_history(records, version)),
        tags=tags,
    )
