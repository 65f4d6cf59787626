"""Where a model stands in its retirement on a given day, from its ledger records and its
config's ``lifecycle`` section: pure functions of records and dates (no registry, no clock).

A retirement is planned either in the config (``lifecycle.deprecate_on``, the day it is retired,
deprecated from ``notice_days`` before) or by hand (``retrain retire`` without ``--now``: retired
``notice_days`` after the day it was run); a plan made by hand wins over the config's. The states,
in order::

    active      nothing planned
    scheduled   planned; the deprecation has not started (day < notice_from)
    deprecated  notice_from <= day < retire_on: a notice on Slack (once), tags say deprecated
    due         day >= retire_on: the monitor retires it at its next run
    retired     a ``retire`` record: no alias, DAGs paused, the gateway answers 410

Only what follows the model's last ``unretire`` record counts; after one, a config date that was
not later than the day of the unretire is not applied again (move or remove it).

Example::

    >>> import datetime as dt
    >>> from retrain_lib.core.config_lifecycle import Lifecycle
    >>> plan = plan_lifecycle("m", [], Lifecycle(deprecate_on=dt.date(2027, 1, 31)), dt.date(2027, 1, 5))
    >>> plan.status, str(plan.notice_from), str(plan.retire_on)
    ('deprecated', '2027-01-01', '2027-01-31')
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from retrain_lib.core.config_lifecycle import Lifecycle
from retrain_lib.core.values import as_day, str_or_none

DEPRECATE_EVENT = "deprecate"
NOTICE_EVENT = "deprecation_notice"
RETIRE_EVENT = "retire"
UNRETIRE_EVENT = "unretire"
LIFECYCLE_EVENTS = (DEPRECATE_EVENT, NOTICE_EVENT, RETIRE_EVENT, UNRETIRE_EVENT)

ACTIVE, SCHEDULED, DEPRECATED, DUE, RETIRED = "active", "scheduled", "deprecated", "due", "retired"
SOURCE_CONFIG, SOURCE_HAND = "config", "by_hand"


@dataclass(frozen=True)
class LifecyclePlan:
    """The state of a model (or of one ``version``) on ``day`` and the plan behind it.

    ``recorded``: the deprecation of ``retire_on`` is in the ledger (tags written);
    ``notice_sent``: its Slack notice went out; ``retired_on``, ``aliases``: the day of the
    retirement and the aliases it removed."""

    model: str
    day: dt.date
    status: str = ACTIVE
    version: str | None = None
    retire_on: dt.date | None = None
    notice_from: dt.date | None = None
    reason: str = ""
    replacement: str | None = None
    source: str | None = None
    recorded: bool = False
    notice_sent: bool = False
    retired_on: str | None = None
    aliases: Mapping[str, str] | None = None

    @property
    def days_left(self) -> int | None:
        """Days until ``retire_on`` (0 on the day, negative after)."""
        return None if self.retire_on is None else (self.retire_on - self.day).days

    def explain(self) -> str:
        """One sentence for people (logs, ``retrain status``, alerts)."""
        who = f"{self.model} version {self.version}" if self.version else self.model
        use = f"; use {self.replacement} instead" if self.replacement else ""
        why = f" ({self.reason})" if self.reason else ""
        if self.status == RETIRED:
            return f"{who} is retired" + (f" since {self.retired_on}" if self.retired_on else "") + why + use
        if self.status == ACTIVE:
            return f"{who} is active: no retirement planned"
        when = {
            SCHEDULED: f"is scheduled for retirement on {self.retire_on} (deprecated from {self.notice_from})",
            DEPRECATED: f"is deprecated and retires on {self.retire_on} (in {self.days_left} days)",
            DUE: f"is due for retirement since {self.retire_on}",
        }[self.status]
        return f"{who} {when}{why}{use}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "version": self.version,
            "retire_on": str_or_none(self.retire_on),
            "notice_from": str_or_none(self.notice_from),
            "days_left": self.days_left,
            "reason": self.reason,
            "replacement": self.replacement,
            "source": self.source,
            "recorded": self.recorded,
            "notice_sent": self.notice_sent,
            "retired_on": self.retired_on,
            "aliases": dict(self.aliases) if self.aliases is not None else None,
            "explain": self.explain(),
        }


def _details(rec: Mapping[str, Any]) -> Mapping[str, Any]:
    return rec.get("details") or {}


def _day_of(rec: Mapping[str, Any]) -> dt.date:
    return as_day(rec.get("as_of") or rec["time"])


def _epoch(records: Iterable[Mapping[str, Any]], version: str | None) -> tuple[list[Mapping[str, Any]], dt.date | None]:
    """The lifecycle records of the model (``version`` None) or of one version after its last
    ``unretire``, and the day of that unretire."""
    mine = [
        r for r in records if r.get("event") in LIFECYCLE_EVENTS and str_or_none(_details(r).get("version")) == version
    ]
    undo = max((i for i, r in enumerate(mine) if r["event"] == UNRETIRE_EVENT), default=None)
    if undo is None:
        return mine, None
    return mine[undo + 1 :], _day_of(mine[undo])


def _retired(model: str, day: dt.date, version: str | None, rec: Mapping[str, Any]) -> LifecyclePlan:
    d = _details(rec)
    return LifecyclePlan(
        model,
        day,
        RETIRED,
        version=version,
        reason=str(d.get("reason") or rec.get("reason") or ""),
        replacement=d.get("replacement") or None,
        source=d.get("source"),
        recorded=True,
        retired_on=str(rec.get("as_of") or str(rec.get("time", ""))[:10]),
        aliases=dict(d.get("aliases") or {}),
    )


def _state(day: dt.date, retire_on: dt.date, notice_from: dt.date) -> str:
    if day >= retire_on:
        return DUE
    return DEPRECATED if day >= notice_from else SCHEDULED


def plan_lifecycle(
    model: str,
    records: Iterable[Mapping[str, Any]],
    lifecycle: Lifecycle | None,
    day: dt.date | str,
    *,
    version: str | None = None,
) -> LifecyclePlan:
    """The state of ``model`` (or of its ``version``: then the config plays no part) on ``day``
    from its ledger ``records`` and its config's ``lifecycle`` section (see the module docstring)."""
    day = as_day(day)
    version = str_or_none(version)
    epoch, undone_on = _epoch(records, version)
    retire = next((r for r in reversed(epoch) if r["event"] == RETIRE_EVENT), None)
    if retire is not None:
        return _retired(model, day, version, retire)
    by_hand = next(
        (r for r in reversed(epoch) if r["event"] == DEPRECATE_EVENT and _details(r).get("source") != SOURCE_CONFIG),
        None,
    )
    if by_hand is not None:
        d = _details(by_hand)
        retire_on = as_day(d["retire_on"])
        notice_from = as_day(d.get("notice_from") or _day_of(by_hand))
        reason, replacement, source = str(d.get("reason") or ""), d.get("replacement") or None, SOURCE_HAND
    elif (
        version is None
        and lifecycle is not None
        and lifecycle.deprecate_on is not None
        and (undone_on is None or lifecycle.deprecate_on > undone_on)
    ):
        retire_on = lifecycle.deprecate_on
        notice_from = retire_on - dt.timedelta(days=lifecycle.notice_days)
        reason = f"planned in its config: lifecycle.deprecate_on {retire_on}"
        replacement, source = lifecycle.replacement, SOURCE_CONFIG
    else:
        return LifecyclePlan(model, day, ACTIVE, version=version)
    target = retire_on.isoformat()
    same = [r for r in epoch if str(_details(r).get("retire_on")) == target]
    return LifecyclePlan(
        model,
        day,
        _state(day, retire_on, notice_from),
        version=version,
        retire_on=retire_on,
        notice_from=notice_from,
        reason=reason,
        replacement=replacement,
        source=source,
        recorded=any(r["event"] == DEPRECATE_EVENT for r in same),
        notice_sent=any(r["event"] == NOTICE_EVENT for r in same),
    )


def version_plans(model: str, records: Iterable[Mapping[str, Any]], day: dt.date | str) -> tuple[LifecyclePlan, ...]:
    """The state of every version that has a lifecycle record, by version number."""
    records = list(records)
    versions = {
        str(v) for r in records if r.get("event") in LIFECYCLE_EVENTS and (v := _details(r).get("version")) is not None
    }
    plans = (plan_lifecycle(model, records, None, day, version=v) for v in sorted(versions, key=_version_key))
    return tuple(p for p in plans if p.status != ACTIVE)


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)
