"""The per-day timeline of the fleet status: each calendar day's monitor check (action, drifted
share, the champion's live metric) and the markers of that day's retrains, promotions,
rollbacks and rejections."""

from __future__ import annotations

import datetime as dt

from retrain_lib.pipeline.adaptation_steps import REJECTED
from retrain_lib.tools.status_decisions import GATES_EVENT, decision_reason, retrain_outcome
from retrain_lib.tools.status_monitor import day_of, is_throttled, monitors_by_day, performance_signal
from retrain_lib.tools.status_values import finite_float

# Timeline markers: ledger event -> marker kind (a failed ``gates`` verdict and the outcomes of
# :data:`~retrain_lib.tools.status_decisions.NOT_DEPLOYED` are added by :func:`retrain_outcome`).
MARKER_EVENTS = {GATES_EVENT: "retrain", "promote": "promote", "challenger": "challenger", "rollback": "rollback"}


def _markers(rec: dict) -> list[str]:
    kinds = []
    kind = MARKER_EVENTS.get(rec["event"])
    if kind:
        kinds.append(kind)
    outcome = retrain_outcome(rec)
    if outcome is None and rec["event"] == GATES_EVENT and (rec.get("details") or {}).get("passed") is False:
        outcome = REJECTED
    if outcome:
        kinds.append(outcome)
    return kinds


def timeline(monitors: list[dict], others: list[dict], days: int) -> list[dict]:
    """One entry per calendar day of the last ``days`` days up to the latest day with a record:
    the day's monitor check (action, throttled, drifted share, the champion's live metric with
    its baseline and retrain limit) and the markers of that day's retrains, promotions,
    rollbacks and rejections. Days without a record are present with ``None`` values."""
    by_day = monitors_by_day(monitors)
    events: dict[str, list[dict]] = {}
    for rec in others:
        for kind in _markers(rec):
            day = day_of(rec)
            seen = events.setdefault(day, [])
            if not any(m["kind"] == kind for m in seen):  # a failed gate and its rejection: one marker
                seen.append(
                    {
                        "kind": kind,
                        "seq": rec["seq"],
                        "event": rec["event"],
                        "version": rec.get("after") or (rec.get("details") or {}).get("version"),
                        "reason": decision_reason(rec),
                    }
                )
    known = sorted(set(by_day) | set(events))
    if not known or days <= 0:
        return []
    try:
        last = dt.date.fromisoformat(known[-1][:10])
        first = max(dt.date.fromisoformat(known[0][:10]), last - dt.timedelta(days=days - 1))
    except ValueError:  # not ISO days: the known days themselves
        span = known[-days:]
    else:
        span = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    out = []
    for day in span:
        monitor = by_day.get(day)
        d = (monitor or {}).get("details") or {}
        perf = performance_signal(d) or {}
        out.append(
            {
                "as_of": day,
                "monitor_seq": monitor["seq"] if monitor else None,
                "action": d.get("action"),
                "throttled": is_throttled(d) if monitor else None,
                "drifted_share": finite_float(d.get("drifted_share")),
                "live": perf.get("live"),
                "baseline": perf.get("baseline"),
                "limit": perf.get("limit"),
                "markers": events.get(day, []),
            }
        )
    return out
