"""A model's monthly health report: what its decision ledger and its MLflow registry say about
one calendar month, as one frozen record (:class:`HealthReport`).

* counts of the month's ledger records (:class:`HealthCounts`): monitor checks, drift and
  performance alarms, retrain requests, retrains (candidates judged by their gates), gate
  failures with the gates that failed (:class:`GateCount`, from each run's
  ``gates/results.json``), rejections, promotions, rollbacks (those of the post-deploy guard
  among them), withdrawn rollouts and approvals;
* the month day by day (:class:`DayHealth`): the champion's live metric the monitor measured
  (its ``performance`` signal), the baseline and retrain limit, the drifted share of features,
  and the day's decisions;
* the approvals still unanswered at the month's end (:class:`OpenApproval`) and the champion
  at the month's start and end (ledger) and now (registry) (:class:`ChampionState`).

A record belongs to the month of its logical day (``as_of``; the day it was written when it
has none). Rendering, MLflow and Slack are :mod:`retrain_lib.tools.health_publish`'s.

Example::

    from retrain_lib.tools.health_report import build_health_report

    report = build_health_report("credit_default", "2026-02")
    report.counts.drift_alarms, report.trend_direction, [a.version for a in report.open_approvals]
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import logging
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from typing import Any

from retrain_lib.core.metrics import greater_is_better
from retrain_lib.core.settings import Settings, load_settings
from retrain_lib.pipeline.adaptation_steps import NO_GAIN, REJECTED
from retrain_lib.store.audit import Ledger
from retrain_lib.store.ledger_history import champion_at, champion_changes, parse_instant
from retrain_lib.store.model_context import ModelContext
from retrain_lib.tools.status_decisions import GATES_EVENT, MONITOR_EVENT, decision_reason, gates_summary
from retrain_lib.tools.status_monitor import day_of, is_throttled, monitors_by_day, performance_signal
from retrain_lib.tools.status_registry import registry_state
from retrain_lib.tools.status_values import finite_float

log = logging.getLogger(__name__)

MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")
# Decisions listed in the report's table of events (monitor checks and approvals are counted only)
LISTED_EVENTS = ("promote", "challenger", "rollback", "reject", NO_GAIN, "rollout_rollback", "data_validation_failed")
# Day markers: ledger event -> kind (a failed ``gates`` verdict is a ``gate_failure``)
DAY_MARKERS = {
    GATES_EVENT: "retrain",
    "promote": "promotion",
    "challenger": "challenger",
    "rollback": "rollback",
    "reject": REJECTED,
    NO_GAIN: NO_GAIN,
    "rollout_rollback": "rollout_rollback",
}
# What answers an approval request of a version: an answer, a timeout, a rejection, a deployment
APPROVAL_CLOSERS = ("approval", "approval_timeout", "reject", "promote", "challenger")
GUARD_REASON = "post-deploy guard"  # how a rollback by the post-deploy guard starts its reason


def month_days(month: str) -> tuple[dt.date, dt.date]:
    """The first and last day of ``month`` (``YYYY-MM``).

    >>> month_days("2026-02")
    (datetime.date(2026, 2, 1), datetime.date(2026, 2, 28))
    """
    if not isinstance(month, str) or not MONTH.fullmatch(month.strip()):
        raise ValueError(f"The 'month' parameter of month_days must be a month as YYYY-MM. Got {month!r} instead.")
    year, mon = (int(p) for p in month.strip().split("-"))
    return dt.date(year, mon, 1), dt.date(year, mon, calendar.monthrange(year, mon)[1])


def previous_month(day: dt.date | dt.datetime | str) -> str:
    """The month (``YYYY-MM``) before the one ``day`` falls in: what a report run on ``day`` covers.

    >>> previous_month("2026-03-01")
    '2026-02'
    """
    first = parse_instant(day).date().replace(day=1)
    return (first - dt.timedelta(days=1)).strftime("%Y-%m")


# -----------------------------------------------------------------------------------------
# Records
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthCounts:
    """How often each thing happened in the month (ledger records of its days).

    ``monitor_checks`` counts every check (``days_checked`` the days with one); a
    ``drift_alarm`` is a check whose ``drift`` signal fired (dataset drift), a
    ``performance_alarm`` one whose ``performance`` signal did; ``retrain_requests`` are checks
    that asked for a retrain, ``throttled`` those held back by the retrain throttle.
    ``retrains`` are candidates trained and judged (``gates`` records), ``gate_failures`` the
    verdicts that failed; ``validation_failures`` retrains stopped by data validation.
    ``promotions`` moved the champion (``promotions_by_hand`` by ``retrain promote``),
    ``challengers`` started a shadow/canary rollout; ``rollbacks`` moved the champion back
    (``guard_rollbacks`` by the post-deploy guard), ``rollout_rollbacks`` withdrew a challenger."""

    monitor_checks: int = 0
    days_checked: int = 0
    drift_alarms: int = 0
    performance_alarms: int = 0
    retrain_requests: int = 0
    throttled: int = 0
    retrains: int = 0
    gate_failures: int = 0
    validation_failures: int = 0
    rejections: int = 0
    no_gain: int = 0
    promotions: int = 0
    promotions_by_hand: int = 0
    challengers: int = 0
    rollbacks: int = 0
    guard_rollbacks: int = 0
    rollout_rollbacks: int = 0
    approvals_requested: int = 0
    approvals_answered: int = 0
    approval_timeouts: int = 0


@dataclass(frozen=True)
class GateCount:
    """A gate (``gate[slice]`` when it judged a slice) and how many verdicts of the month it failed."""

    gate: str
    failures: int


@dataclass(frozen=True)
class DayHealth:
    """One calendar day: its monitor checks (the last check's action, drifted share, whether its
    drift fired, the champion's ``live`` metric with its ``baseline`` and retrain ``limit``)
    and the kinds of decisions taken that day (``retrain``, ``promotion``, ``rollback``...)."""

    day: str
    checks: int = 0
    action: str | None = None
    throttled: bool = False
    drifted_share: float | None = None
    drift_alarm: bool = False
    live: float | None = None
    baseline: float | None = None
    limit: float | None = None
    champion_version: str | None = None
    events: tuple[str, ...] = ()


@dataclass(frozen=True)
class OpenApproval:
    """A promotion that waited for a human answer at the month's end, since ``requested_on``."""

    version: str
    requested_on: str
    waiting_days: int
    reasons: tuple[str, ...] = ()
    run_id: str | None = None


@dataclass(frozen=True)
class ReportEvent:
    """A decision of the month: a promotion, a rollback, a rejection, a withdrawn rollout..."""

    seq: int
    day: str
    event: str
    version: str | None
    actor: str
    reason: str


@dataclass(frozen=True)
class ChampionState:
    """The champion when the month began and ended (from the ledger's alias moves) and in the
    registry now, the challenger and previous champion now, and the versions registered in the month."""

    at_start: str | None = None
    at_end: str | None = None
    now: str | None = None
    challenger_now: str | None = None
    previous_now: str | None = None
    registered: tuple[str, ...] = ()


@dataclass(frozen=True)
class HealthReport:
    """The health of one model over one month (see the module docstring)."""

    model: str
    month: str
    first_day: str
    last_day: str
    metric: str | None
    greater_is_better: bool | None
    drift_share_threshold: float | None
    counts: HealthCounts
    failed_gates: tuple[GateCount, ...]
    open_approvals: tuple[OpenApproval, ...]
    champion: ChampionState
    days: tuple[DayHealth, ...]
    events: tuple[ReportEvent, ...]
    generated_at: str

    @property
    def live_values(self) -> list[float]:
        """The live metric of the days that have one, oldest first."""
        return [d.live for d in self.days if d.live is not None]

    @property
    def live_mean(self) -> float | None:
        values = self.live_values
        return statistics.fmean(values) if values else None

    @property
    def trend_direction(self) -> str | None:
        """``better``, ``worse`` or ``flat`` (first to last day with a live metric, in the
        metric's direction); ``None`` with fewer than two such days."""
        values = self.live_values
        if len(values) < 2 or self.greater_is_better is None:
            return None
        change = values[-1] - values[0]
        if change == 0:
            return "flat"
        return "better" if (change > 0) == self.greater_is_better else "worse"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (what the report's JSON artifact holds)."""
        out = dataclasses.asdict(self)
        values = self.live_values
        out["trend"] = {
            "first": values[0] if values else None,
            "last": values[-1] if values else None,
            "mean": self.live_mean,
            "min": min(values) if values else None,
            "max": max(values) if values else None,
            "days_measured": len(values),
            "direction": self.trend_direction,
        }
        return out


# -----------------------------------------------------------------------------------------
# Building
# -----------------------------------------------------------------------------------------


def build_health_report(
    model: str,
    month: str,
    *,
    settings: Settings | None = None,
    client=None,
    now: dt.datetime | None = None,
) -> HealthReport:
    """The :class:`HealthReport` of ``model`` for ``month`` (``YYYY-MM``) from the platform's
    ledger and registry (``client``: an ``MlflowClient``, default the platform's).

    Raises:
        ValueError: ``month`` is not ``YYYY-MM``.
        ConfigError: the model has no valid config.
    """
    first, last = month_days(month)
    settings = settings or load_settings()
    ctx = ModelContext(model, settings)
    client = client if client is not None else ctx.client
    cfg = ctx.cfg
    metric = cfg.performance.metric if cfg.performance is not None else None
    records = [r for r in Ledger.from_settings(settings).records(ctx.name) if day_of(r)[:10] <= last.isoformat()]
    in_month = [r for r in records if day_of(r)[:7] == month.strip()]
    ui_url = settings.platform.mlflow_ui_url
    cache: dict = {}
    verdicts = {
        r["seq"]: gates_summary(client, r, ui_url, cache=cache)
        for r in in_month
        if r["event"] == GATES_EVENT and (r.get("details") or {}).get("passed") is False
    }
    return HealthReport(
        model=ctx.name,
        month=month.strip(),
        first_day=first.isoformat(),
        last_day=last.isoformat(),
        metric=metric,
        greater_is_better=greater_is_better(metric) if metric else None,
        drift_share_threshold=cfg.drift.drift_share if cfg.drift.enabled else None,
        counts=count_records(in_month),
        failed_gates=failed_gates(in_month, verdicts),
        open_approvals=open_approvals(records, last),
        champion=champion_state(client, ctx.name, records, first, last, ui_url),
        days=month_days_health(in_month, first, last),
        events=tuple(report_event(r) for r in sorted(in_month, key=lambda r: r["seq"]) if r["event"] in LISTED_EVENTS),
        generated_at=(now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
    )


def signal_fired(details: dict, name: str) -> bool:
    """Whether a monitor record's signal ``name`` fired."""
    return any(s.get("signal") == name and s.get("triggered") for s in details.get("signals") or [])


def _monitor_counts(monitors: list[dict]) -> dict[str, int]:
    details = [r.get("details") or {} for r in monitors]
    return {
        "monitor_checks": len(monitors),
        "days_checked": len({day_of(r)[:10] for r in monitors}),
        "drift_alarms": sum(signal_fired(d, "drift") for d in details),
        "performance_alarms": sum(signal_fired(d, "performance") for d in details),
        "retrain_requests": sum(d.get("action") == "retrain" for d in details),
        "throttled": sum(is_throttled(d) for d in details),
    }


def count_records(records: list[dict]) -> HealthCounts:
    """The :class:`HealthCounts` of one month's ledger ``records``."""
    events = Counter(r["event"] for r in records)
    details = {r["seq"]: r.get("details") or {} for r in records}
    rollbacks = [r for r in records if r["event"] == "rollback"]
    return HealthCounts(
        **_monitor_counts([r for r in records if r["event"] == MONITOR_EVENT]),
        retrains=events[GATES_EVENT],
        gate_failures=sum(r["event"] == GATES_EVENT and details[r["seq"]].get("passed") is False for r in records),
        validation_failures=events["data_validation_failed"],
        rejections=events["reject"],
        no_gain=events[NO_GAIN],
        promotions=events["promote"],
        promotions_by_hand=sum(r["event"] == "promote" and details[r["seq"]].get("mode") == "by_hand" for r in records),
        challengers=events["challenger"],
        rollbacks=len(rollbacks),
        guard_rollbacks=sum(str(r.get("reason") or "").startswith(GUARD_REASON) for r in rollbacks),
        rollout_rollbacks=events["rollout_rollback"],
        approvals_requested=events["approval_requested"],
        approvals_answered=events["approval"],
        approval_timeouts=events["approval_timeout"],
    )


def failed_gates(records: list[dict], verdicts: dict[int, dict | None]) -> tuple[GateCount, ...]:
    """Which gates failed how often in the failed ``gates`` verdicts of ``records``: each failed
    result of the run's ``gates/results.json`` (``verdicts``: seq -> the verdict with its
    ``results``), else the failure reasons the ledger recorded. Most failures first."""
    counts: Counter[str] = Counter()
    for rec in records:
        d = rec.get("details") or {}
        if rec["event"] != GATES_EVENT or d.get("passed") is not False:
            continue
        results = (verdicts.get(rec["seq"]) or {}).get("results")
        if results:
            labels = {
                f"{r.get('gate')}[{r['slice']}]" if r.get("slice") not in (None, "", "all") else str(r.get("gate"))
                for r in results
                if r.get("passed") is False
            }
        else:
            labels = {str(reason) for reason in d.get("failed") or []} or {"unknown gate"}
        counts.update(labels)
    return tuple(GateCount(g, n) for g, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _version_of(rec: dict) -> str | None:
    d = rec.get("details") or {}
    version = d.get("version") if d.get("version") is not None else rec.get("after")
    return None if version is None else str(version)


def open_approvals(records: list[dict], last: dt.date) -> tuple[OpenApproval, ...]:
    """Approval requests (``approval_requested``) of the ``records`` up to ``last`` that no
    answer, timeout, rejection or deployment of the same version followed, oldest first."""
    waiting: dict[str, dict] = {}
    for rec in sorted(records, key=lambda r: (day_of(r)[:10], r["seq"])):
        if day_of(rec)[:10] > last.isoformat():
            continue
        version = _version_of(rec)
        if version is None:
            continue
        if rec["event"] == "approval_requested":
            waiting[version] = rec
        elif rec["event"] in APPROVAL_CLOSERS:
            waiting.pop(version, None)
    out = []
    for version, rec in waiting.items():
        d = rec.get("details") or {}
        since = day_of(rec)[:10]
        out.append(
            OpenApproval(
                version=version,
                requested_on=since,
                waiting_days=max((last - dt.date.fromisoformat(since)).days, 0),
                reasons=tuple(str(x) for x in d.get("reasons") or []),
                run_id=d.get("run_id"),
            )
        )
    return tuple(sorted(out, key=lambda a: (a.requested_on, a.version)))


def champion_state(client, model: str, records: list[dict], first: dt.date, last: dt.date, ui_url: str):
    """The :class:`ChampionState` of ``model``: the champion at the start of ``first`` and the end
    of ``last`` from the alias moves in ``records``, the aliases now and the versions created
    in the month from the registry (``client``)."""
    changes = champion_changes(records)
    start = champion_at(changes, dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC) - dt.timedelta(microseconds=1))
    end = champion_at(changes, dt.datetime.combine(last, dt.time.max, tzinfo=dt.UTC))
    aliases = registry_state(client, model, ui_url)["aliases"]
    return ChampionState(
        at_start=start["to"] if start else None,
        at_end=end["to"] if end else None,
        now=aliases.get("champion"),
        challenger_now=aliases.get("challenger"),
        previous_now=aliases.get("previous-champion"),
        registered=registered_in(client, model, first, last),
    )


def registered_in(client, model: str, first: dt.date, last: dt.date) -> tuple[str, ...]:
    """The versions of ``model`` created between ``first`` and ``last`` (UTC days), in order;
    empty when the registry cannot list them (logged: the count is informative only)."""
    lo = dt.datetime.combine(first, dt.time(), tzinfo=dt.UTC).timestamp() * 1000
    hi = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC).timestamp() * 1000
    try:
        found = client.search_model_versions(f"name='{model}'", max_results=1000)
    except Exception as exc:  # noqa: BLE001 - not registered yet, or the registry cannot list
        log.warning("cannot list the versions of %s: %s", model, exc)
        return ()
    created = [v for v in found if v.creation_timestamp is not None and lo <= v.creation_timestamp < hi]
    return tuple(str(v.version) for v in sorted(created, key=lambda v: int(v.version)))


def month_days_health(records: list[dict], first: dt.date, last: dt.date) -> tuple[DayHealth, ...]:
    """One :class:`DayHealth` per calendar day of the month, from its ``records``."""
    monitors = [r for r in records if r["event"] == MONITOR_EVENT]
    last_check = monitors_by_day([{**r, "as_of": day_of(r)[:10]} for r in monitors])
    checks = Counter(day_of(r)[:10] for r in monitors)
    markers: dict[str, list[str]] = {}
    for rec in sorted(records, key=lambda r: r["seq"]):
        kind = DAY_MARKERS.get(rec["event"])
        if rec["event"] == GATES_EVENT and (rec.get("details") or {}).get("passed") is False:
            kind = "gate_failure"
        seen = markers.setdefault(day_of(rec)[:10], [])
        if kind and kind not in seen:
            seen.append(kind)
    out = []
    for i in range((last - first).days + 1):
        day = (first + dt.timedelta(days=i)).isoformat()
        check = last_check.get(day)
        d = (check or {}).get("details") or {}
        perf = performance_signal(d) or {}
        out.append(
            DayHealth(
                day=day,
                checks=checks[day],
                action=d.get("action"),
                throttled=bool(check) and is_throttled(d),
                drifted_share=finite_float(d.get("drifted_share")),
                drift_alarm=signal_fired(d, "drift"),
                live=perf.get("live"),
                baseline=perf.get("baseline"),
                limit=perf.get("limit"),
                champion_version=None if d.get("champion_version") is None else str(d["champion_version"]),
                events=tuple(markers.get(day, ())),
            )
        )
    return tuple(out)


def report_event(rec: dict) -> ReportEvent:
    """A ledger record as a :class:`ReportEvent`."""
    return ReportEvent(
        seq=int(rec["seq"]),
        day=day_of(rec)[:10],
        event=str(rec["event"]),
        version=_version_of(rec),
        actor=str(rec.get("actor") or ""),
        reason=decision_reason(rec),
    )
