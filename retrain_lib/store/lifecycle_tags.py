"""A model's lifecycle as the registry holds it: tags of the registered model (the whole model)
and of its versions (one version), which a serving stack reads to know whether a model is still
served and what replaced it.

=========================  ===================================================================
tag                        meaning
=========================  ===================================================================
``lifecycle.status``       ``active`` (or missing), ``deprecated`` (retired on
                           ``deprecation.target``) or ``retired`` (no alias, not served: the
                           gateway answers 410 Gone)
``deprecation.target``     the day of the planned retirement (YYYY-MM-DD)
``lifecycle.reason``       why it is deprecated or retired
``lifecycle.replacement``  the model that replaces it (empty: none named)
``lifecycle.retired_on``   the day it was retired
``lifecycle.retired_by``   version tags only: ``model`` (retired with its model) or ``version``
=========================  ===================================================================

The acts that write them (with their ledger entries) are
:mod:`retrain_lib.pipeline.retirement`'s; the gateway reads them in
:mod:`retrain_lib.serving.refresher`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from retrain_lib.core.errors import RegistryError
from retrain_lib.store.registry import is_not_found

TAG_STATUS = "lifecycle.status"
TAG_TARGET = "deprecation.target"
TAG_REASON = "lifecycle.reason"
TAG_REPLACEMENT = "lifecycle.replacement"
TAG_RETIRED_ON = "lifecycle.retired_on"
TAG_RETIRED_BY = "lifecycle.retired_by"
LIFECYCLE_TAGS = (TAG_STATUS, TAG_TARGET, TAG_REASON, TAG_REPLACEMENT, TAG_RETIRED_ON, TAG_RETIRED_BY)

ACTIVE, DEPRECATED, RETIRED = "active", "deprecated", "retired"
STATUSES = (ACTIVE, DEPRECATED, RETIRED)


class ModelRetiredError(RegistryError):
    """The model or version is retired: nothing may serve it until a person unretires it."""


@dataclass(frozen=True)
class LifecycleTags:
    """The lifecycle tags of a registered model or of one version (see the module docstring)."""

    status: str = ACTIVE
    target: str | None = None
    reason: str = ""
    replacement: str | None = None
    retired_on: str | None = None
    retired_by: str | None = None

    @classmethod
    def from_tags(cls, tags: Mapping[str, str] | None) -> LifecycleTags:
        """The lifecycle held by ``tags``; a missing or unknown status reads as ``active``."""
        tags = tags or {}
        status = (tags.get(TAG_STATUS) or ACTIVE).strip().lower()
        return cls(
            status=status if status in STATUSES else ACTIVE,
            target=tags.get(TAG_TARGET) or None,
            reason=tags.get(TAG_REASON) or "",
            replacement=tags.get(TAG_REPLACEMENT) or None,
            retired_on=tags.get(TAG_RETIRED_ON) or None,
            retired_by=tags.get(TAG_RETIRED_BY) or None,
        )

    def to_tags(self) -> dict[str, str]:
        """The tags to write (a field without a value is not written: see :func:`write_tags`)."""
        values = {
            TAG_STATUS: self.status,
            TAG_TARGET: self.target,
            TAG_REASON: self.reason,
            TAG_REPLACEMENT: self.replacement,
            TAG_RETIRED_ON: self.retired_on,
            TAG_RETIRED_BY: self.retired_by,
        }
        return {k: str(v) for k, v in values.items() if v}

    @property
    def retired(self) -> bool:
        return self.status == RETIRED

    def explain(self, model: str) -> str:
        """One sentence: ``'credit_default' was retired on 2026-03-01: <reason>; use 'x' instead``."""
        if self.status == RETIRED:
            text = f"{model!r} was retired" + (f" on {self.retired_on}" if self.retired_on else "")
        elif self.status == DEPRECATED:
            text = f"{model!r} is deprecated" + (f" and retires on {self.target}" if self.target else "")
        else:
            return f"{model!r} is active"
        text += f": {self.reason}" if self.reason else ""
        return text + (f"; use {self.replacement!r} instead" if self.replacement else "")

    def to_dict(self) -> dict[str, str | None]:
        return {
            "status": self.status,
            "target": self.target,
            "reason": self.reason,
            "replacement": self.replacement,
            "retired_on": self.retired_on,
            "retired_by": self.retired_by,
        }


def model_lifecycle(client, name: str) -> LifecycleTags:
    """The lifecycle of registered model ``name`` (``active`` when it is not registered)."""
    from mlflow.exceptions import MlflowException

    try:
        return LifecycleTags.from_tags(client.get_registered_model(name).tags)
    except MlflowException as exc:
        if is_not_found(exc):
            return LifecycleTags()
        raise


def write_tags(client, name: str, lifecycle: LifecycleTags, *, version: str | None = None, current=None) -> None:
    """Write ``lifecycle`` as the tags of registered model ``name`` (or of its ``version``):
    the fields with a value set, the other lifecycle tags among ``current`` (the tags there now)
    deleted. The status is written last, so a reader that sees it sees its reason and target."""
    wanted = lifecycle.to_tags()
    for key in LIFECYCLE_TAGS:
        if key in wanted or key not in (current or {}):
            continue
        if version is None:
            client.delete_registered_model_tag(name, key)
        else:
            client.delete_model_version_tag(name, str(version), key)
    for key, value in sorted(wanted.items(), key=lambda kv: kv[0] == TAG_STATUS):
        if version is None:
            client.set_registered_model_tag(name, key, value)
        else:
            client.set_model_version_tag(name, str(version), key, value)


def check_not_retired(client, name: str, version: str | None = None) -> None:
    """:class:`ModelRetiredError` when model ``name`` (or its ``version``) is retired: a promotion
    must not bring a retired model back behind the back of `retrain unretire`."""
    model = model_lifecycle(client, name)
    if model.retired:
        raise ModelRetiredError(f"{model.explain(name)}. Unretire it first: `retrain unretire {name} --reason ...`")
    if version is not None:
        tags = LifecycleTags.from_tags(client.get_model_version(name, str(version)).tags)
        if tags.retired:
            raise ModelRetiredError(
                f"version {version} of {tags.explain(name)}. Unretire it first: "
                f"`retrain unretire {name} --version {version} --reason ...`"
            )
