"""Queries over decision-ledger records: the champion's history (who was champion when) and the
live metric the monitor recorded, with a model's recovery after a drift."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from retrain_lib.store.ledger_records import opt_str

# -----------------------------------------------------------------------------------------
# Champion history
# -----------------------------------------------------------------------------------------

CHAMPION_EVENTS = ("promote", "rollback")


def effective_time(record: Mapping[str, Any]) -> dt.datetime:
    """When a decision took effect: its ``as_of`` (the logical day of the run that decided; a
    date is the start of that day, UTC) when set, else the wall-clock ``time`` of the append."""
    return parse_instant(record.get("as_of") or record["time"])


def parse_instant(value: str | dt.date | dt.datetime) -> dt.datetime:
    """An aware UTC datetime from an ISO date (its start) or datetime (naive means UTC)."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime.combine(value, dt.time())
    else:
        moment = dt.datetime.fromisoformat(str(value).strip())
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def champion_changes(records: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The records that moved a model's ``champion`` alias, oldest (lowest ``seq``) first.

    A record moved the champion when its ``details['moves']`` holds a ``champion`` move, or
    when it is a ``promote``/``rollback`` event with ``before``/``after`` versions.
    """
    out = []
    for r in records:
        details = r.get("details") or {}
        moves = [m for m in details.get("moves") or [] if isinstance(m, dict) and m.get("alias") == "champion"]
        if moves:
            before, after = moves[-1].get("from"), moves[-1].get("to")
        elif r.get("event") in CHAMPION_EVENTS and (r.get("before") is not None or r.get("after") is not None):
            before, after = r.get("before"), r.get("after")
        else:
            continue
        out.append(
            {
                "seq": r["seq"],
                "time": r["time"],
                "as_of": r.get("as_of"),
                "effective": effective_time(r).isoformat(),
                "event": r["event"],
                "from": opt_str(before),
                "to": opt_str(after),
                "reason": r.get("reason") or str(details.get("reason") or ""),
                "actor": r.get("actor") or "",
                "hash": r["hash"],
            }
        )
    return out


def champion_at(changes: Sequence[Mapping[str, Any]], at: dt.datetime) -> dict | None:
    """The change (from :func:`champion_changes`) that made the champion of instant ``at``:
    the latest by effective time (then ``seq``) at or before ``at``; ``None`` before the first."""
    at = parse_instant(at)
    past = [c for c in changes if parse_instant(c["effective"]) <= at]
    if not past:
        return None
    return dict(max(past, key=lambda c: (parse_instant(c["effective"]), c["seq"])))


# -----------------------------------------------------------------------------------------
# The live metric over time, as the monitor recorded it
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricPoint:
    """The champion's live metric that one monitor run measured: on the matured labels of its
    performance ``window`` (event days), ``labels`` rows, scored by ``champion_version``."""

    as_of: str
    value: float
    champion_version: str | None
    labels: int | None
    window: tuple[str, str] | None


def live_metric(records: list[Mapping[str, Any]]) -> list[MetricPoint]:
    """One :class:`MetricPoint` per ``monitor`` record of ``records`` (ledger order) whose
    ``performance`` signal carries a live value; days without enough matured labels have none."""
    points = []
    for r in records:
        if r.get("event") != "monitor":
            continue
        details = r.get("details") or {}
        signal = next((s for s in details.get("signals") or [] if s.get("signal") == "performance"), None)
        if not signal:
            continue
        value = signal.get("value")
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            continue
        detail = signal.get("detail") or {}
        window = detail.get("window")
        points.append(
            MetricPoint(
                as_of=str(r.get("as_of")),
                value=float(value),
                champion_version=opt_str(details.get("champion_version")),
                labels=detail.get("labels"),
                window=tuple(window) if window else None,
            )
        )
    return points


@dataclass(frozen=True)
class Recovery:
    """Whether a model's live metric came back after a drift, from the monitor records alone.

    A point is on the drift's side when the event days its labels came from reach
    ``drift_start`` (the end of its ``window``; its ``as_of`` when it has none): with labels
    that arrive days late, the first checks after the drift still measure the days before it.
    ``before`` is the last point before the drift; ``worst`` the worst point after it (lowest
    when ``greater_is_better``, else highest); ``after`` the latest point scored by a champion
    promoted on or after ``drift_start`` (``None`` when no such champion was measured yet).
    ``retrained`` lists those promoted versions in order."""

    metric: str
    greater_is_better: bool
    drift_start: str
    before: MetricPoint | None
    worst: MetricPoint | None
    after: MetricPoint | None
    retrained: tuple[str, ...]

    @property
    def recovered_share(self) -> float | None:
        """``(after - worst) / (before - worst)``: 1.0 is back at the pre-drift level, 0.0 no
        better than the worst, above 1.0 better than before; ``None`` when undefined."""
        if self.before is None or self.worst is None or self.after is None:
            return None
        lost = self.before.value - self.worst.value
        if lost == 0:
            return None
        return (self.after.value - self.worst.value) / lost


def metric_recovery(
    records: list[Mapping[str, Any]], *, metric: str, greater_is_better: bool, drift_start: str | dt.date
) -> Recovery:
    """The :class:`Recovery` of one model around ``drift_start`` from its ledger ``records``
    (monitor records for the metric, ``promote`` records for the retrained champions).

    Example::

        r = metric_recovery(ledger.records("daily_demand"), metric="rmse", greater_is_better=False,
                            drift_start="2026-11-26")
        r.before.value, r.worst.value, r.after.value, r.recovered_share
    """
    start = drift_start.isoformat() if isinstance(drift_start, dt.date) else str(drift_start)[:10]
    points = live_metric(records)

    def measured(p: MetricPoint) -> str:
        return str(p.window[1])[:10] if p.window else p.as_of

    before = [p for p in points if measured(p) < start]
    since = [p for p in points if measured(p) >= start]
    pick = min if greater_is_better else max
    retrained = tuple(
        c["to"]
        for c in champion_changes([r for r in records if r.get("event") == "promote"])
        if c["to"] is not None and str(c.get("as_of") or "") >= start
    )
    after = [p for p in since if p.champion_version in retrained]
    return Recovery(
        metric=metric,
        greater_is_better=greater_is_better,
        drift_start=start,
        before=before[-1] if before else None,
        worst=pick(since, key=lambda p: p.value) if since else None,
        after=after[-1] if after else None,
        retrained=retrained,
    )


# -----------------------------------------------------------------------------------------
# The deployment history of one version
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionEvent:
    """One ledger record about a model version: what happened to it (``summary``), when
    (``effective``: see :func:`effective_time`), by whom, why, and the record's ``seq``/``hash``."""

    seq: int
    effective: str
    event: str
    actor: str
    summary: str
    reason: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "effective": self.effective,
            "event": self.event,
            "actor": self.actor,
            "summary": self.summary,
            "reason": self.reason,
            "hash": self.hash,
        }


def _version_summary(record: Mapping[str, Any], version: str) -> str | None:
    """What ``record`` did to ``version`` in a few words, or ``None`` when it is not about it."""
    details = record.get("details") or {}
    moves = [
        f"{m.get('alias')}: {m.get('from') or '-'} -> {m.get('to') or '-'}"
        for m in details.get("moves") or []
        if isinstance(m, dict) and version in (opt_str(m.get("from")), opt_str(m.get("to")))
    ]
    if moves:
        return "; ".join(moves)
    if record.get("event") in CHAMPION_EVENTS and version in (
        opt_str(record.get("before")),
        opt_str(record.get("after")),
    ):
        return f"champion: {record.get('before') or '-'} -> {record.get('after') or '-'}"
    if opt_str(details.get("version")) != version:
        return None
    extra = [
        f"{k} {details[k]}" for k in ("decision", "percent", "status", "answer", "by") if details.get(k) is not None
    ]
    return record["event"] + (f" ({', '.join(map(str, extra))})" if extra else "")


def version_history(records: Sequence[Mapping[str, Any]], version: str | int) -> list[VersionEvent]:
    """The deployment history of ``version`` from a model's ledger ``records``, oldest first:
    every record that moved an alias to or from it (promotion, challenger, rollback, its
    replacement), and every record about it (``details.version``: rollout steps, approval,
    guard, rejection, retirement)."""
    version = str(version)
    out = []
    for r in records:
        summary = _version_summary(r, version)
        if summary is None:
            continue
        details = r.get("details") or {}
        out.append(
            VersionEvent(
                seq=int(r["seq"]),
                effective=effective_time(r).isoformat(),
                event=str(r["event"]),
                actor=str(r.get("actor") or ""),
                summary=summary,
                reason=str(r.get("reason") or details.get("reason") or ""),
                hash=str(r.get("hash") or ""),
            )
        )
    return out
