"""The adaptation policy's state, from ledger-shaped records and a champion's tags: the healthy
level a model must get back to after a drop, the backoff after retrains that were not deployed,
the drift reference a shift was rebased to, the regime a champion learnt and its follow-up
retrains, and the one retrain a covariate shift gets.

Everything here is pure (records and tags in, frozen records out), so the monitor and retrain
of the DAGs and the backtest's replay share it. The drop test and the change day are in
:mod:`retrain_lib.stats.change_detection`, the candidates on several windows in
:mod:`retrain_lib.learn.window_choice`, the gain over the champion in :mod:`retrain_lib.stats.champion_gain`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from retrain_lib.learn.window_choice import AFTER_CHANGE

LEVEL_EVENT = "performance_level"
ARMED, RESTORED, ACCEPTED = "armed", "restored", "accepted"


# -----------------------------------------------------------------------------------------
# Healthy level and backoff (from ledger-shaped records)
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthyLevel:
    """The level a model must get back to: frozen when a drop was first declared."""

    metric: str
    level: float
    se: float
    since: str
    version: str | None = None
    change_day: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def healthy_level(records: Iterable[dict], metric: str, before: str | None = None) -> HealthyLevel | None:
    """The armed level of ``metric`` (the latest ``performance_level`` record ``armed`` and
    not ``restored``/``accepted`` since), from records before day ``before``."""
    state = None
    for r in records:
        if r.get("event") != LEVEL_EVENT or (before is not None and (r.get("as_of") or "") >= before):
            continue
        d = r.get("details") or {}
        if d.get("metric") != metric:
            continue
        if d.get("action") == ARMED:
            state = HealthyLevel(
                metric,
                float(d["level"]),
                float(d.get("se") or 0.0),
                r.get("as_of") or "",
                d.get("version"),
                d.get("change_day"),
            )
        elif d.get("action") in (RESTORED, ACCEPTED):
            state = None
    return state


@dataclass(frozen=True)
class Backoff:
    """Retrains not deployed since the last deployment, and the wait they impose."""

    not_deployed: int
    last_attempt: str | None
    wait_days: int
    blocked: bool
    attempts: list[str] = field(default_factory=list)

    def explain(self) -> str:
        return (
            f"backoff: {self.not_deployed} retrain(s) since the last deployment brought no model "
            f"({', '.join(self.attempts)}); next attempt {self.wait_days} day(s) after {self.last_attempt}"
        )


def backoff(records: Iterable[dict], as_of: dt.date, interval_days: int) -> Backoff:
    """From ``gates`` records (``details.outcome``: ``promote``, ``rejected``, ``no_gain``):
    after ``k`` retrains in a row that were not deployed, the next waits ``interval * 2**(k-1)``
    days (at least 1) after the last attempt."""
    misses: list[str] = []
    for r in records:
        if r.get("event") != "gates" or not r.get("as_of") or r["as_of"] >= as_of.isoformat():
            continue
        outcome = (r.get("details") or {}).get("outcome")
        if outcome is None:
            outcome = "promote" if (r.get("details") or {}).get("passed") else "rejected"
        if outcome == "promote":
            misses = []
        else:
            misses.append(r["as_of"])
    if not misses:
        return Backoff(0, None, 0, False, [])
    wait = max(1, interval_days) * 2 ** (len(misses) - 1)
    last = misses[-1]
    blocked = (as_of - dt.date.fromisoformat(last)).days < wait
    return Backoff(len(misses), last, int(wait), bool(blocked), misses[-5:])


def level_updates(
    performance: dict | None, healthy: HealthyLevel | None, *, min_effect: float, champion_version: str | None
) -> list[dict]:
    """The ``performance_level`` records a monitor check adds (``details`` of each): ``armed``
    at the first significant drop (the baseline it dropped from is frozen as the healthy
    level), ``restored`` when an armed model's live metric is back within ``min_effect`` (or
    one standard error) of that level."""
    performance = performance or {}
    test = performance.get("test")
    if not test or test.get("live") is None or not math.isfinite(test.get("drop", math.nan)):
        return []
    metric = test["metric"]
    if healthy is None and test["significant"]:
        return [
            {
                "action": ARMED,
                "metric": metric,
                "level": test["baseline"],
                "se": test["baseline_se"],
                "version": champion_version,
                "live": test["live"],
                "change_day": performance.get("change_day"),
                "reason": f"drop declared: the healthy level {test['baseline']:.4f} stays the baseline until a "
                "model gets back to it",
            }
        ]
    if healthy is not None and test["drop"] <= max(min_effect, test.get("live_se") or 0.0):
        return [
            {
                "action": RESTORED,
                "metric": metric,
                "level": healthy.level,
                "version": champion_version,
                "live": test["live"],
                "reason": f"live {metric} {test['live']:.4f} is back at the healthy level {healthy.level:.4f}",
            }
        ]
    return []


REBASE_EVENT = "drift_rebased"


def rebased_window(
    records: Iterable[dict], champion_version: str | None, before: str | None = None
) -> tuple[str, str] | None:
    """The drift reference a covariate shift was rebased to for this champion version (the
    latest ``drift_rebased`` record: its ``reference``, or the drifted ``window`` in records
    written before references were the window's last day), or ``None``."""
    found = None
    for r in records:
        if r.get("event") != REBASE_EVENT or (before is not None and (r.get("as_of") or "") >= before):
            continue
        d = r.get("details") or {}
        days = d.get("reference") or d.get("window")
        if str(d.get("champion_version")) == str(champion_version) and days:
            found = (days[0], days[1])
    return found


def acceptance(selection: dict | None, *, metric: str, min_rows_after_change: int) -> dict | None:
    """A ``performance_level`` ``accepted`` record (details) when a retrain brought no gain
    although a candidate learnt on plenty of rows since the change (five times
    ``min_rows_after_change``), or the champion's own metric shows no change since it was
    trained (it was trained after the change): the champion is as good as the new data
    allows, so its level becomes the model's healthy level instead of re-arming the trigger
    forever."""
    if not selection:
        return None
    if not selection.get("change_day"):
        return {
            "action": ACCEPTED,
            "metric": metric,
            "reason": "no gain, and the champion's metric shows no change since it was trained: its level is "
            "the new healthy level",
        }
    after = next((c for c in selection.get("candidates") or [] if c.get("name") == AFTER_CHANGE), None)
    if after is None or after.get("value") is None or after.get("train_rows", 0) < 5 * min_rows_after_change:
        return None
    return {
        "action": ACCEPTED,
        "metric": metric,
        "reason": f"no gain although a candidate learnt on {after['train_rows']} rows since the change on "
        f"{selection['change_day']}: the champion's level is the new healthy level",
    }


# -----------------------------------------------------------------------------------------
# The regime a champion learnt, and follow-up retrains while its data grows
# -----------------------------------------------------------------------------------------

CHANGE_TAG, LABELLED_UNTIL_TAG = "adaptation.change_day", "adaptation.labelled_until"
CHANGE_SOURCE_TAG = "adaptation.change_source"  # "performance" or "shift"


def regime_change(tags: dict, window_start: dt.date, training_days: int | None = None) -> str | None:
    """The change day a champion was trained after (its ``adaptation.change_day`` tag) while
    that day is still inside the training window starting ``window_start``: the regime its
    successors must keep learning from. A champion trained after the change shows no change
    in its own daily metric, so without this a retrain would fall back to a window that is
    still mostly pre-change.

    With ``training_days``, also while the whole window is after the change but the champion
    learnt fewer than ``training_days`` days of the regime (its follow-ups are not done) and
    the change is at most ``training_days`` before the window: the retrain that fills the
    window with the regime is a follow-up of it, not a search for a new change."""
    change = tags.get(CHANGE_TAG)
    if not change or change == "none":
        return None
    day = dt.date.fromisoformat(change)
    if day >= window_start:
        return change
    until = tags.get(LABELLED_UNTIL_TAG)
    if training_days is None or not until:
        return None
    learnt = (dt.date.fromisoformat(until) - day).days + 1
    return change if learnt < training_days and (window_start - day).days <= training_days else None


@dataclass(frozen=True)
class FollowUp:
    """A champion trained on a few days of labels since a change, and the matured days now."""

    change_day: str
    trained_days: int
    matured_days: int
    training_days: int
    due: bool

    def explain(self) -> str:
        return (
            f"follow-up: the champion learnt the regime since the change on {self.change_day} from "
            f"{self.trained_days} day(s) of labels; {self.matured_days} have matured (a retrain each time they "
            f"double, until they fill the {self.training_days}-day training window)"
        )


def follow_up(tags: dict, as_of: dt.date, *, label_delay_days: int, training_days: int) -> FollowUp | None:
    """Whether a champion trained after a change (tags ``adaptation.change_day`` and
    ``adaptation.labelled_until``, the last labelled day it saw) is due for a follow-up
    retrain on ``as_of``: the matured days since the change (up to ``as_of - label_delay``)
    are at least twice the days it learnt from, and those did not yet fill the training
    window. A model fitted on one day after a change is far from what two weeks of the new
    regime allow; doubling bounds the follow-ups to about log2(training_days) per change.
    ``None`` when the champion was not trained after a change."""
    change, until = tags.get(CHANGE_TAG), tags.get(LABELLED_UNTIL_TAG)
    if not change or change == "none" or not until or tags.get(CHANGE_SOURCE_TAG) == "shift":
        return None  # a covariate shift gets its one retrain, no follow-ups
    first = dt.date.fromisoformat(change)
    trained = (dt.date.fromisoformat(until) - first).days + 1
    matured = (as_of - dt.timedelta(days=label_delay_days) - first).days + 1
    if trained < 1 or trained >= training_days:
        return None
    return FollowUp(change, trained, matured, training_days, matured >= 2 * trained)


def extends_regime(tags: dict, selection: dict | None) -> bool:
    """Whether a candidate (its ``selection``) learnt the same regime as the champion (same
    change day) from more matured days than the champion did: a follow-up. Such a candidate
    is not held to ``require_gain`` (the champion saw the rows its competitor was held out
    from, so a gain cannot be shown on them yet is expected from the larger sample); the
    gates still keep a worse one out."""
    change, until = tags.get(CHANGE_TAG), tags.get(LABELLED_UNTIL_TAG)
    if not selection or not change or change == "none" or not until:
        return False
    window = selection.get("selection_window") or [None, None]
    return selection.get("change_day") == change and bool(window[1]) and window[1] > until


def regime_learnt(tags: dict, training_days: int, change_day: str | None = None) -> bool:
    """Whether a champion learnt from a full training window after a change: its own change
    tag says so, or its training data (tag ``data.start``) begin on or after ``change_day``
    (the change its healthy level was armed for)."""
    change, until = tags.get(CHANGE_TAG), tags.get(LABELLED_UNTIL_TAG)
    if (
        change
        and change != "none"
        and until
        and (dt.date.fromisoformat(until) - dt.date.fromisoformat(change)).days + 1 >= training_days
    ):
        return True
    start = tags.get("data.start")
    return bool(change_day and start and start >= change_day)


@dataclass(frozen=True)
class ShiftCheck:
    """Inputs shifted (drift recorded, reference rebased) while the champion kept its level:
    once ``wait_days`` of labels since the shift have matured, a retrain asks whether they
    allow a better model (the gain test decides). With ``adaptation.shift_follow_up`` a retrain
    that brought no gain is followed up when the matured days have doubled (``follow_up``),
    until they fill the training window; then the shift is settled."""

    shift_day: str
    matured_days: int
    wait_days: int
    due: bool
    follow_up: bool = False

    @property
    def signal(self) -> str:
        return "shift_follow_up" if self.follow_up else "shift_labels"

    def explain(self) -> str:
        if self.follow_up:
            return (
                f"covariate shift from {self.shift_day}: {self.matured_days} day(s) of its labels have matured, "
                f"twice the days of the last retrain not deployed (>= {self.wait_days}); retrain on them"
            )
        return (
            f"covariate shift from {self.shift_day}: {self.matured_days} day(s) of its labels have matured "
            f"(>= {self.wait_days}); retrain on them (gates and gain test decide)"
        )


def shift_day(records: Iterable[dict], champion_version: str | None) -> str | None:
    """The first day of the earliest drift window rebased for this champion version (the day
    its inputs shifted), or ``None``."""
    days = [
        (r.get("details") or {}).get("window", [None])[0]
        for r in records
        if r.get("event") == REBASE_EVENT
        and str((r.get("details") or {}).get("champion_version")) == str(champion_version)
    ]
    days = [d for d in days if d]
    return min(days) if days else None


def shift_check(
    records: Iterable[dict],
    champion_version: str | None,
    as_of: dt.date,
    *,
    label_delay_days: int,
    wait_days: int,
    follow_up_until_days: int | None = None,
) -> ShiftCheck | None:
    """``None`` unless this champion's inputs shifted and the shift is not settled. A retrain
    since the first rebase (a ``gates`` record) settles it, unless ``follow_up_until_days``:
    then the next retrain is due once the matured days doubled since the last one, and the
    shift is settled when the last one had that many matured days (the training window)."""
    records = list(records)
    first = shift_day(records, champion_version)
    if first is None:
        return None
    rebased_on = min(
        r.get("as_of") or ""
        for r in records
        if r.get("event") == REBASE_EVENT
        and str((r.get("details") or {}).get("champion_version")) == str(champion_version)
    )
    tried = [
        r.get("as_of") or ""
        for r in records
        if r.get("event") == "gates"
        and (r.get("as_of") or "") >= rebased_on
        and (r.get("as_of") or "") < as_of.isoformat()
    ]

    def matured_on(day: dt.date) -> int:
        return (day - dt.timedelta(days=label_delay_days) - dt.date.fromisoformat(first)).days + 1

    matured = matured_on(as_of)
    if not tried:
        return ShiftCheck(first, matured, wait_days, matured >= wait_days)
    if follow_up_until_days is None:
        return None
    last = matured_on(dt.date.fromisoformat(max(tried)[:10]))
    if last >= follow_up_until_days:
        return None
    wait = min(2 * max(last, 1), follow_up_until_days)
    return ShiftCheck(first, matured, wait, matured >= wait, follow_up=True)
