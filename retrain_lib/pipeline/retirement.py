"""Deprecating, retiring and unretiring a model or one of its versions: registry tags
(:mod:`retrain_lib.store.lifecycle_tags`), aliases and the model's DAGs, each act atomic with its
ledger entry (under the ledger's lock, aliases put back when the entry cannot be written).

* :func:`deprecate_model`: tagged ``deprecated`` with the day of its retirement
  (``deprecation.target``); the monitor sends the notice and retires it on that day.
* :func:`retire_model`: the model's aliases removed, its versions tagged ``retired`` with the
  reason and the replacement, its DAGs paused (``pause``, e.g. through the Airflow REST API), the
  gateway answers 410 Gone naming the replacement. With ``version``: that version only (its
  aliases removed; the champion only with ``force``).
* :func:`unretire_model`: a person's undo: ``active`` again, no alias restored (promote a
  version by hand), DAGs left paused until unpaused.

What the monitor does on each run (deprecate when the notice starts, send the notice once,
retire on the day) is :mod:`retrain_lib.pipeline.retirement_step`'s; the dates
:mod:`retrain_lib.pipeline.retirement_plan`'s.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from retrain_lib.core.config_lifecycle import DEFAULT_NOTICE_DAYS
from retrain_lib.core.errors import ConfigError, RegistryError
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import as_day, str_or_none
from retrain_lib.pipeline.retirement_plan import (
    DEPRECATE_EVENT,
    RETIRE_EVENT,
    RETIRED,
    SOURCE_HAND,
    UNRETIRE_EVENT,
    LifecyclePlan,
    plan_lifecycle,
)
from retrain_lib.serving.routing import set_rollout_state
from retrain_lib.store import registry
from retrain_lib.store.lifecycle_tags import ACTIVE, DEPRECATED, LifecycleTags, write_tags
from retrain_lib.store.model_context import ModelContext

log = logging.getLogger(__name__)

DAG_KINDS = ("monitor", "retrain", "rollout", "guard", "health_report")
Pause = Callable[[Sequence[str]], Mapping[str, str]]  # dag ids -> what happened to each


@dataclass(frozen=True)
class LifecycleChange:
    """What a lifecycle act did. ``action``: ``deprecated``, ``retired``, ``unretired``,
    ``unchanged`` or ``refused``; ``status`` the model's (or version's) status after it;
    ``message`` says it in a sentence and ``hints`` what a person may do next."""

    model: str
    action: str
    status: str
    message: str
    version: str | None = None
    retire_on: str | None = None
    reason: str = ""
    replacement: str | None = None
    aliases_removed: Mapping[str, str] = field(default_factory=dict)
    versions_tagged: tuple[str, ...] = ()
    dags: Mapping[str, str] = field(default_factory=dict)
    hints: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return self.action not in ("unchanged", "refused")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "action": self.action,
            "status": self.status,
            "message": self.message,
            "retire_on": self.retire_on,
            "reason": self.reason,
            "replacement": self.replacement,
            "aliases_removed": dict(self.aliases_removed),
            "versions_tagged": list(self.versions_tagged),
            "dags": dict(self.dags),
            "hints": list(self.hints),
        }


def dag_ids(model: str) -> list[str]:
    """The DAGs of ``model`` that a retirement pauses."""
    return [f"{model}__{kind}" for kind in DAG_KINDS]


def _drop_aliases(ctx: ModelContext, aliases: Mapping[str, str]) -> None:
    """Remove ``aliases`` of the model; a removed challenger ends its rollout (traffic back to
    the champion, which the status tag written before says is gone)."""
    for alias in sorted(aliases):
        ctx.client.delete_registered_model_alias(ctx.name, alias)
    if aliases.get(registry.CHALLENGER):
        set_rollout_state(ctx.client, ctx.name, "none", 0.0, ctx.cfg.deploy.sticky_key or "")


def _who(model: str, version: str | None) -> str:
    return f"{model} version {version}" if version else model


def _check_args(ctx: ModelContext, reason: str, replacement: str | None) -> None:
    if not reason.strip():
        raise ConfigError("a lifecycle change needs a reason (kept in the ledger and the tags); pass --reason")
    if replacement is not None and replacement == ctx.name:
        raise ConfigError(f"{ctx.name!r} cannot replace itself; name the model that takes over as --replacement")


def _versions(client, name: str) -> dict[str, dict[str, str]]:
    """Every version of ``name`` with its tags."""
    found = client.search_model_versions(f"name='{name}'", max_results=1000)
    return {str(v.version): dict(v.tags or {}) for v in found}


def _model_tags(client, name: str) -> dict[str, str]:
    """The tags of registered model ``name``; :class:`RegistryError` when it is not registered."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(client.get_registered_model(name).tags or {})
    except MlflowException as exc:
        if registry.is_not_found(exc):
            raise RegistryError(
                f"{name!r} has no registered model in the registry: nothing is served, so nothing to deprecate, "
                "retire or unretire"
            ) from exc
        raise


def _replacement(ctx: ModelContext, given: str | None) -> str | None:
    return given or (ctx.cfg.lifecycle.replacement if ctx.cfg.lifecycle is not None else None)


def deprecate_model(
    model: str,
    *,
    as_of: dt.date | str,
    reason: str,
    settings: Settings | None = None,
    replacement: str | None = None,
    notice_days: int | None = None,
    actor: str = "cli",
    version: str | None = None,
    source: str = SOURCE_HAND,
) -> LifecycleChange:
    """Announce the retirement of ``model`` (or of its ``version``) ``notice_days`` after
    ``as_of`` (default: the config's ``lifecycle.notice_days``, else 30): the registered model
    (and every version not retired) tagged ``deprecated`` with ``deprecation.target``, a
    ``deprecate`` ledger record. The monitor sends the notice and retires it on that day."""
    ctx = ModelContext(model, settings)
    replacement = _replacement(ctx, replacement)
    _check_args(ctx, reason, replacement)
    if notice_days is None:
        notice_days = ctx.cfg.lifecycle.notice_days if ctx.cfg.lifecycle is not None else DEFAULT_NOTICE_DAYS
    if notice_days < 0:
        raise ConfigError(f"notice days must be 0 or more; got {notice_days}")
    day = as_day(as_of)
    retire_on = (day + dt.timedelta(days=notice_days)).isoformat()
    return record_deprecation(
        ctx, day, retire_on, reason=reason, replacement=replacement, actor=actor, version=version, source=source
    )


def record_deprecation(
    ctx: ModelContext,
    day: dt.date,
    retire_on: str,
    *,
    reason: str,
    replacement: str | None,
    actor: str,
    version: str | None = None,
    source: str = SOURCE_HAND,
) -> LifecycleChange:
    """Tags and the ``deprecate`` ledger record of a deprecation (see :func:`deprecate_model`)."""
    client, name, version = ctx.client, ctx.name, str_or_none(version)
    tags = LifecycleTags(DEPRECATED, target=retire_on, reason=reason, replacement=replacement)
    with ctx.ledger().transaction() as tx:
        plan = plan_lifecycle(name, tx.records(name), ctx.cfg.lifecycle, day, version=version)
        if plan.status == RETIRED:
            return LifecycleChange(name, "unchanged", RETIRED, plan.explain(), version=version)
        versions = _versions(client, name)
        if version is not None:
            if version not in versions:
                client.get_model_version(name, version)  # MLflow's own "not found"
            write_tags(client, name, tags, version=version, current=versions[version])
            tagged = [version]
        else:
            write_tags(client, name, tags, current=_model_tags(client, name))
            tagged = [v for v, t in versions.items() if not LifecycleTags.from_tags(t).retired]
            for v in tagged:
                write_tags(client, name, tags, version=v, current=versions[v])
        tx.append(
            name,
            DEPRECATE_EVENT,
            as_of=day,
            actor=actor,
            reason=reason,
            details={
                "version": version,
                "retire_on": retire_on,
                "notice_from": day.isoformat(),
                "reason": reason,
                "replacement": replacement,
                "source": source,
                "versions": tagged,
            },
        )
    message = f"{_who(name, version)} is deprecated: retired on {retire_on}" + (
        f", replaced by {replacement}" if replacement else ""
    )
    log.warning("%s (%s)", message, reason)
    return LifecycleChange(
        name,
        "deprecated",
        DEPRECATED,
        message,
        version=version,
        retire_on=retire_on,
        reason=reason,
        replacement=replacement,
        versions_tagged=tuple(tagged),
        hints=(f"undo with `retrain unretire {name}{f' --version {version}' if version else ''} --reason ...`",),
    )


def retire_model(
    model: str,
    *,
    as_of: dt.date | str,
    reason: str,
    settings: Settings | None = None,
    replacement: str | None = None,
    actor: str = "cli",
    version: str | None = None,
    force: bool = False,
    pause: Pause | None = None,
    source: str = SOURCE_HAND,
) -> LifecycleChange:
    """Retire ``model`` now (or only its ``version``; see the module docstring). A model
    already retired is left as it is (``unchanged``); the champion version is refused
    (``refused``) unless ``force``."""
    ctx = ModelContext(model, settings)
    replacement = _replacement(ctx, replacement)
    _check_args(ctx, reason, replacement)
    day = as_day(as_of)
    if version is not None:
        return _retire_version(ctx, str(version), day, reason, replacement, actor, force)
    plan = plan_lifecycle(ctx.name, ctx.ledger().records(ctx.name), ctx.cfg.lifecycle, day)
    if plan.status == RETIRED:
        return LifecycleChange(ctx.name, "unchanged", RETIRED, plan.explain(), reason=plan.reason)
    # the DAGs first (slow calls, outside the ledger's lock), so that their outcome is in the record
    dags = dict(pause(dag_ids(ctx.name))) if pause is not None else {}
    return _retire_whole(ctx, day, reason, replacement, actor, source, dags)


def _retire_whole(
    ctx: ModelContext, day: dt.date, reason: str, replacement: str | None, actor: str, source: str, dags: dict
) -> LifecycleChange:
    client, name = ctx.client, ctx.name
    tags = LifecycleTags(RETIRED, reason=reason, replacement=replacement, retired_on=day.isoformat())
    with ctx.ledger().transaction() as tx:
        plan = plan_lifecycle(name, tx.records(name), ctx.cfg.lifecycle, day)
        if plan.status == RETIRED:  # retired meanwhile
            return LifecycleChange(name, "unchanged", RETIRED, plan.explain(), reason=plan.reason)
        before_tags = _model_tags(client, name)
        before = registry.aliases(client, name)
        # the status tag before the aliases go: a gateway that sees no champion sees why (410, not 503)
        write_tags(client, name, tags, current=before_tags)
        _drop_aliases(ctx, before)
        try:
            tagged = _tag_versions(client, name, tags)
            tx.append(
                name,
                RETIRE_EVENT,
                as_of=day,
                actor=actor,
                before=before.get(registry.CHAMPION),
                reason=reason,
                details={
                    "reason": reason,
                    "replacement": replacement,
                    "source": source,
                    "retire_on": str_or_none(plan.retire_on),
                    "aliases": before,
                    "moves": [{"alias": a, "from": v, "to": None} for a, v in sorted(before.items())],
                    "versions": tagged,
                    "dags": dags,
                },
            )
        except Exception:
            registry.restore_aliases(client, name, before)
            write_tags(client, name, LifecycleTags.from_tags(before_tags), current=_model_tags(client, name))
            raise
    message = f"{name} is retired: aliases {_aliases_text(before)} removed, {len(tagged)} version(s) tagged retired"
    log.warning("%s (%s)", message, reason)
    return LifecycleChange(
        name,
        "retired",
        RETIRED,
        message,
        reason=reason,
        replacement=replacement,
        aliases_removed=before,
        versions_tagged=tuple(tagged),
        dags=dags,
        hints=_paused_hints(name, dags),
    )


def _tag_versions(client, name: str, tags: LifecycleTags) -> list[str]:
    """Tag every version of ``name`` not retired on its own as retired with its model."""
    tagged = []
    for v, current in _versions(client, name).items():
        mine = LifecycleTags.from_tags(current)
        if mine.retired and mine.retired_by == "version":
            continue
        write_tags(client, name, dataclasses.replace(tags, retired_by="model"), version=v, current=current)
        tagged.append(v)
    return sorted(tagged, key=int)


def _aliases_text(aliases: Mapping[str, str]) -> str:
    return ", ".join(f"{a} (v{v})" for a, v in sorted(aliases.items())) or "(none)"


def _paused_hints(name: str, dags: Mapping[str, str]) -> tuple[str, ...]:
    missed = [d for d in dag_ids(name) if dags.get(d) not in ("paused", "not found")]
    if not missed:
        return ()
    return (
        "pause its DAGs (their runs do nothing for a retired model meanwhile): "
        + "; ".join(f"`airflow dags pause {d}`" for d in missed),
    )


def _retire_version(
    ctx: ModelContext, version: str, day: dt.date, reason: str, replacement: str | None, actor: str, force: bool
) -> LifecycleChange:
    client, name = ctx.client, ctx.name
    tags = LifecycleTags(
        RETIRED, reason=reason, replacement=replacement, retired_on=day.isoformat(), retired_by="version"
    )
    with ctx.ledger().transaction() as tx:
        current = dict(client.get_model_version(name, version).tags or {})  # MLflow's "not found" first
        if LifecycleTags.from_tags(current).retired:
            return LifecycleChange(name, "unchanged", RETIRED, f"{name} version {version} is retired already", version)
        before = registry.aliases(client, name)
        pointing = {a: v for a, v in before.items() if v == version}
        if registry.CHAMPION in pointing and not force:
            return LifecycleChange(
                name,
                "refused",
                ACTIVE,
                f"{name} version {version} is the champion: promote another version first "
                f"(`retrain promote {name} OTHER --reason ...`), or pass --force to leave {name} without a champion",
                version,
            )
        write_tags(client, name, tags, version=version, current=current)
        _drop_aliases(ctx, pointing)
        try:
            tx.append(
                name,
                RETIRE_EVENT,
                as_of=day,
                actor=actor,
                before=pointing.get(registry.CHAMPION),
                reason=reason,
                details={
                    "version": version,
                    "reason": reason,
                    "replacement": replacement,
                    "source": SOURCE_HAND,
                    "aliases": pointing,
                    "moves": [{"alias": a, "from": v, "to": None} for a, v in sorted(pointing.items())],
                    "forced": force and registry.CHAMPION in pointing,
                },
            )
        except Exception:
            registry.restore_aliases(client, name, before)
            write_tags(client, name, LifecycleTags.from_tags(current), version=version, current=tags.to_tags())
            raise
    message = f"{name} version {version} is retired" + (
        f": aliases {_aliases_text(pointing)} removed" if pointing else " (no alias pointed at it)"
    )
    hints = (f"{name} has no champion now: promote a version with `retrain promote {name} VERSION --reason ...`",)
    return LifecycleChange(
        name,
        "retired",
        RETIRED,
        message,
        version=version,
        reason=reason,
        replacement=replacement,
        aliases_removed=pointing,
        versions_tagged=(version,),
        hints=hints if registry.CHAMPION in pointing else (),
    )


def unretire_model(
    model: str,
    *,
    as_of: dt.date | str,
    reason: str,
    settings: Settings | None = None,
    actor: str = "cli",
    version: str | None = None,
) -> LifecycleChange:
    """A person's undo of a retirement or of a pending deprecation of ``model`` (or of its
    ``version``): tagged ``active`` again, an ``unretire`` ledger record. No alias is restored
    and no DAG unpaused: the change's ``hints`` say how."""
    ctx = ModelContext(model, settings)
    _check_args(ctx, reason, None)
    client, name, version, day = ctx.client, ctx.name, str_or_none(version), as_day(as_of)
    with ctx.ledger().transaction() as tx:
        records = tx.records(name)
        plan = plan_lifecycle(name, records, ctx.cfg.lifecycle, day, version=version)
        versions = _versions(client, name)
        current = versions.get(version, {}) if version is not None else _model_tags(client, name)
        if version is not None and version not in versions:
            client.get_model_version(name, version)  # MLflow's own "not found"
        if plan.status == "active" and LifecycleTags.from_tags(current).status == ACTIVE:
            return LifecycleChange(
                name, "unchanged", ACTIVE, f"{_who(name, version)} is not retired nor deprecated", version
            )
        write_tags(client, name, LifecycleTags(ACTIVE), version=version, current=current)
        restored = [version] if version is not None else []
        if version is None:
            for v, tags in versions.items():
                mine = LifecycleTags.from_tags(tags)
                if mine.status != ACTIVE and mine.retired_by != "version":
                    write_tags(client, name, LifecycleTags(ACTIVE), version=v, current=tags)
                    restored.append(v)
        tx.append(
            name,
            UNRETIRE_EVENT,
            as_of=day,
            actor=actor,
            reason=reason,
            details={"version": version, "reason": reason, "was": plan.to_dict(), "versions": restored},
        )
    return LifecycleChange(
        name,
        "unretired",
        ACTIVE,
        f"{_who(name, version)} is active again (was {plan.status})",
        version=version,
        reason=reason,
        versions_tagged=tuple(restored),
        hints=_unretire_hints(ctx, plan, day),
    )


def _unretire_hints(ctx: ModelContext, plan: LifecyclePlan, day: dt.date) -> tuple[str, ...]:
    name = ctx.name
    hints = []
    if plan.status == RETIRED:
        champion = (plan.aliases or {}).get(registry.CHAMPION)
        hints.append(
            "no alias was restored: promote a version with "
            f"`retrain promote {name} {champion or 'VERSION'} --reason ...`"
            + (f" (v{champion} was the champion when it was retired)" if champion else "")
        )
        if plan.version is None:
            hints.append("then unpause its DAGs: " + "; ".join(f"`airflow dags unpause {d}`" for d in dag_ids(name)))
    lc = ctx.cfg.lifecycle
    if plan.version is None and lc is not None and lc.deprecate_on is not None and lc.deprecate_on > day:
        hints.append(
            f"its config still plans a retirement on {lc.deprecate_on}: remove or move lifecycle.deprecate_on "
            f"in {ctx.config_path}"
        )
    return tuple(hints)
