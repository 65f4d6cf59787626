"""The lifecycle step of a monitor run (:func:`lifecycle_step`), before it checks anything:

* a retired model: nothing to check (``skip``): the DAG short-circuits with the reason;
* the day of a planned retirement reached: retire it (:func:`~retrain_lib.pipeline.retirement.retire_model`,
  DAGs paused through ``pause``) and skip;
* deprecated: the deprecation of a config's plan recorded (tags, ledger) once, the notice due
  once (a ``deprecation_notice`` ledger record, so a daily monitor does not repeat it);
* versions deprecated by hand whose day came: retired (the champion is left as it is, with a
  warning: promote another version first).

Sending the notice is the caller's (the DAG's Slack alert: :mod:`retrain_lib.pipeline.lifecycle_alerts`).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from retrain_lib.core.settings import Settings
from retrain_lib.core.values import as_day, str_or_none
from retrain_lib.pipeline.retirement import LifecycleChange, Pause, record_deprecation, retire_model
from retrain_lib.pipeline.retirement_plan import (
    DEPRECATED,
    DUE,
    NOTICE_EVENT,
    RETIRED,
    SOURCE_CONFIG,
    LifecyclePlan,
    plan_lifecycle,
    version_plans,
)
from retrain_lib.store.model_context import ModelContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LifecycleCheck:
    """What the monitor's lifecycle step found and did on ``as_of``: the model's ``plan`` after
    the step, the retirement it made (``retired``), the deprecation it recorded (``deprecated``),
    whether the deprecation notice is to be sent now (``notice``, true on one run only) and the
    versions it retired or could not retire (``versions``)."""

    model: str
    as_of: str
    plan: LifecyclePlan
    retired: LifecycleChange | None = None
    deprecated: LifecycleChange | None = None
    notice: bool = False
    versions: tuple[LifecycleChange, ...] = ()

    @property
    def skip(self) -> bool:
        """Whether the model is retired: the monitor has nothing to check."""
        return self.plan.status == RETIRED

    def explain(self) -> str:
        text = self.plan.explain()
        if self.skip:
            text += f": nothing to monitor (undo with `retrain unretire {self.model} --reason ...`)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "as_of": self.as_of,
            "skip": self.skip,
            "plan": self.plan.to_dict(),
            "retired": self.retired.to_dict() if self.retired else None,
            "deprecated": self.deprecated.to_dict() if self.deprecated else None,
            "notice": self.notice,
            "versions": [v.to_dict() for v in self.versions],
            "explain": self.explain(),
        }


def lifecycle_step(
    model: str,
    as_of: dt.date | str,
    *,
    settings: Settings | None = None,
    actor: str = "cli",
    pause: Pause | None = None,
) -> LifecycleCheck:
    """The monitor's lifecycle step for ``as_of`` (see the module docstring)."""
    ctx = ModelContext(model, settings)
    day = as_day(as_of)
    records = ctx.ledger().records(ctx.name)
    plan = plan_lifecycle(ctx.name, records, ctx.cfg.lifecycle, day)
    versions = _retire_due_versions(ctx, records, day, actor) if plan.status != RETIRED else ()
    retired = deprecated = None
    notice = False
    if plan.status == DUE:
        retired = retire_model(
            ctx.name,
            as_of=day,
            reason=plan.reason or f"retirement planned for {plan.retire_on}",
            settings=ctx.settings,
            replacement=plan.replacement,
            actor=actor,
            pause=pause,
            source=plan.source or SOURCE_CONFIG,
        )
    elif plan.status == DEPRECATED:
        assert plan.retire_on is not None  # a deprecated plan has its day
        if not plan.recorded:
            deprecated = record_deprecation(
                ctx,
                day,
                plan.retire_on.isoformat(),
                reason=plan.reason,
                replacement=plan.replacement,
                actor=actor,
                source=SOURCE_CONFIG,
            )
        notice = not plan.notice_sent and _claim_notice(ctx, day, actor)
    if retired or deprecated or notice or versions:
        plan = plan_lifecycle(ctx.name, ctx.ledger().records(ctx.name), ctx.cfg.lifecycle, day)
    check = LifecycleCheck(ctx.name, day.isoformat(), plan, retired, deprecated, notice, versions)
    if plan.status != "active":
        log.info("%s", check.explain())
    return check


def _claim_notice(ctx: ModelContext, day: dt.date, actor: str) -> bool:
    """Record that the deprecation notice goes out now, unless it went out already (under the
    ledger's lock: of two runs at once, one sends it)."""
    with ctx.ledger().transaction() as tx:
        plan = plan_lifecycle(ctx.name, tx.records(ctx.name), ctx.cfg.lifecycle, day)
        if plan.status != DEPRECATED or plan.notice_sent:
            return False
        tx.append(
            ctx.name,
            NOTICE_EVENT,
            as_of=day,
            actor=actor,
            reason=plan.explain(),
            details={
                "retire_on": str_or_none(plan.retire_on),
                "notice_from": str_or_none(plan.notice_from),
                "reason": plan.reason,
                "replacement": plan.replacement,
                "source": plan.source,
            },
        )
    return True


def _retire_due_versions(ctx: ModelContext, records, day: dt.date, actor: str) -> tuple[LifecycleChange, ...]:
    """Retire the versions deprecated by hand whose day came (never the champion)."""
    out = []
    for plan in version_plans(ctx.name, records, day):
        if plan.status != DUE:
            continue
        change = retire_model(
            ctx.name,
            as_of=day,
            reason=plan.reason or f"retirement planned for {plan.retire_on}",
            settings=ctx.settings,
            replacement=plan.replacement,
            actor=actor,
            version=plan.version,
        )
        if change.action == "refused":
            log.warning("%s is due for retirement since %s but %s", ctx.name, plan.retire_on, change.message)
        out.append(change)
    return tuple(out)


def model_plan(model: str, as_of: dt.date | str, *, settings: Settings | None = None) -> LifecyclePlan:
    """The state of ``model`` on ``as_of`` (read only: the retrain, rollout and guard DAGs ask
    whether it is retired before doing anything)."""
    ctx = ModelContext(model, settings)
    return plan_lifecycle(ctx.name, ctx.ledger().records(ctx.name), ctx.cfg.lifecycle, as_day(as_of))
