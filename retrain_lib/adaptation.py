"""Adapting after a change: the performance drop as a test, the change day, candidates
trained on several windows, the gain over the champion, the healthy level and backoff.

Everything here is pure (arrays, frames and ledger-shaped records in, frozen records out),
so the monitor and retrain of the DAGs and the backtest's replay share it.

* :func:`drop_test`: a drop of the live metric is declared when it is significant at the
  configured false-alarm rate for the rows of the day (bootstrap standard errors of the live
  metric and of the baseline) and at least ``min_effect``; a fixed threshold fires on noise
  at 100 rows a day and misses real drops at 100,000.
* :func:`change_day`: the day the champion's daily metric shifted down (the split of the
  daily series with the largest significant mean difference), or ``None``.
* :func:`selection_split` / :func:`recipes` / :func:`choose`: candidates trained on several
  windows compete on the newest matured labels (after the change when there is one); the
  winner is compared with the champion on those rows and refit on every row it may use.
* :func:`gain_test`: better than the champion beyond noise (paired bootstrap), else "no gain".
* :func:`healthy_level` / :func:`backoff`: from ledger-shaped records, the level a model
  must get back to after a drop (a degraded champion never becomes its own baseline) and how
  long to wait after retrains that were not deployed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from retrain_lib.metrics import greater_is_better, resampled_metric

if TYPE_CHECKING:
    import pandas as pd

    from retrain_lib.config import ModelConfig

LEVEL_EVENT = "performance_level"
ARMED, RESTORED, ACCEPTED = "armed", "restored", "accepted"
AFTER_CHANGE, RECENCY_WEIGHTED, CONFIGURED = "after_change", "recency_weighted", "configured"


# -----------------------------------------------------------------------------------------
# The drop as a test
# -----------------------------------------------------------------------------------------


def bootstrap_se(task: str, metric: str, y, scores, *, n_resamples: int = 200, seed: int = 0) -> float:
    """Standard error of ``metric`` on these rows (bootstrap, seeded); NaN below 2 rows."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n < 2:
        return math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    counts = np.bincount((idx + (np.arange(n_resamples) * n)[:, None]).ravel(), minlength=n_resamples * n).reshape(
        n_resamples, n
    )
    values = np.asarray(resampled_metric(task, metric, y, scores, counts), dtype=float)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def z_limit(false_alarm_rate: float) -> float:
    """One-sided normal quantile: a drop this many standard errors large happens by chance
    with probability ``false_alarm_rate``."""
    from scipy.stats import norm

    return float(norm.ppf(1 - false_alarm_rate))


@dataclass(frozen=True)
class DropTest:
    """The live metric against the baseline as a one-sided test of a drop."""

    metric: str
    live: float
    baseline: float
    drop: float  # in the metric's bad direction: positive = worse
    live_se: float
    baseline_se: float
    z: float
    z_limit: float
    min_effect: float
    rows: int
    false_alarm_rate: float
    significant: bool

    def explain(self) -> str:
        verdict = "a significant drop" if self.significant else "no significant drop"
        return (
            f"{self.metric} {self.live:.4f} vs {self.baseline:.4f}: drop {self.drop:+.4f} = {self.z:.1f} standard "
            f"errors on {self.rows} labelled rows (limit {self.z_limit:.2f} for a false-alarm rate of "
            f"{self.false_alarm_rate:g} per check; min_effect {self.min_effect:g}): {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drop_test(
    live: float,
    baseline: float,
    metric: str,
    *,
    live_se: float,
    baseline_se: float,
    rows: int,
    false_alarm_rate: float,
    min_effect: float = 0.0,
) -> DropTest:
    """Is ``live`` worse than ``baseline`` beyond noise (and by at least ``min_effect``)?

    The standard error of the difference is ``sqrt(live_se**2 + baseline_se**2)`` (a NaN
    baseline error counts as 0). A NaN live value or baseline is never significant.

    >>> t = drop_test(0.80, 0.90, "accuracy", live_se=0.01, baseline_se=0.005, rows=1000, false_alarm_rate=0.001)
    >>> t.significant, round(t.z, 1)
    (True, 8.9)
    """
    limit = z_limit(false_alarm_rate)
    if any(v is None or not math.isfinite(v) for v in (live, baseline)):
        return DropTest(
            metric,
            float(live if live is not None else math.nan),
            float(baseline if baseline is not None else math.nan),
            math.nan,
            live_se,
            baseline_se,
            math.nan,
            limit,
            min_effect,
            rows,
            false_alarm_rate,
            False,
        )
    drop = (baseline - live) if greater_is_better(metric) else (live - baseline)
    se = math.sqrt(sum(v * v for v in (live_se, baseline_se) if v is not None and math.isfinite(v)))
    z = drop / se if se > 0 else (math.inf if drop > 0 else 0.0)
    return DropTest(
        metric,
        float(live),
        float(baseline),
        float(drop),
        float(live_se),
        float(baseline_se),
        float(z),
        limit,
        float(min_effect),
        int(rows),
        float(false_alarm_rate),
        bool(z >= limit and drop >= min_effect and drop > 0),
    )


# -----------------------------------------------------------------------------------------
# The change day
# -----------------------------------------------------------------------------------------


def change_day(daily: dict[str, float], rows: dict[str, int], metric: str, *, z: float = 3.0) -> str | None:
    """The first day of the later part of the daily series when it splits into an earlier
    and a later part whose row-weighted means differ, the later worse, by at least ``z``
    standard errors (the days' scatter around their part's mean, pooled); ``None`` when no
    split is that clear. One change point: the split with the largest such statistic.

    >>> days = {f"2026-03-{d:02d}": (0.9 if d < 8 else 0.6) + 0.01 * (d % 2) for d in range(1, 11)}
    >>> change_day(days, {d: 500 for d in days}, "accuracy")
    '2026-03-08'
    """
    names = sorted(d for d in daily if daily[d] is not None and math.isfinite(daily[d]))
    if len(names) < 3:
        return None
    sign = 1.0 if greater_is_better(metric) else -1.0
    v = np.array([sign * daily[d] for d in names])
    w = np.array([max(int(rows.get(d, 1)), 1) for d in names], dtype=float)
    best, best_day = z, None
    for k in range(1, len(names)):
        a, b = slice(0, k), slice(k, None)
        ma, mb = np.average(v[a], weights=w[a]), np.average(v[b], weights=w[b])
        if mb >= ma:
            continue
        resid = np.concatenate([v[a] - ma, v[b] - mb])
        dof = len(names) - 2
        # per-day variance scaled by rows: var(day) ~ s2 / rows
        s2 = float((w * resid**2).sum() / dof) if dof > 0 else math.nan
        if not math.isfinite(s2) or s2 <= 0:
            s2 = 1e-12
        se = math.sqrt(s2 / w[a].sum() + s2 / w[b].sum())
        stat = (ma - mb) / se
        if stat > best:
            best, best_day = stat, names[k]
    return best_day


# -----------------------------------------------------------------------------------------
# Candidates on several windows
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How one candidate is trained: which rows (``since``: the first day, ``None`` = the
    whole window) and the recency weighting of its config (``cfg``)."""

    name: str
    cfg: Any
    since: str | None = None


def _days(cfg: ModelConfig, frame: pd.DataFrame):
    return frame[cfg.data.timestamp_column].dt.date


def selection_split(
    cfg: ModelConfig, labelled: pd.DataFrame, change: str | None, *, holdout_fraction: float | None = None
):
    """``(pool, selection)``: the newest matured labels the candidates compete on and the
    rows they train on. After a change the selection is the newest half of the rows since
    the change (so the after-change candidate trains on the older half); without a change,
    the newest ``training.split.holdout_fraction`` of the window. Time-ordered, never shuffled."""
    ts, key = cfg.data.timestamp_column, cfg.data.id_column
    ordered = labelled.sort_values([ts, key], kind="mergesort")
    fraction = holdout_fraction if holdout_fraction is not None else cfg.training.split.holdout_fraction
    n = len(ordered)
    cut = int(round(n * (1 - fraction)))
    if change is not None:
        after = int((_days(cfg, ordered) >= dt.date.fromisoformat(change)).sum())
        if after >= 40:
            cut = max(cut, n - after // 2)
    return ordered.iloc[:cut], ordered.iloc[cut:]


def _with_recency(cfg: ModelConfig, recency: dict | None) -> Any:
    from retrain_lib.config import Recency

    training = cfg.training.model_copy(update={"recency": Recency(**recency) if recency else None})
    return cfg.model_copy(update={"training": training})


def recipes(cfg: ModelConfig, pool: pd.DataFrame, as_of: dt.date, change: str | None) -> list[Recipe]:
    """The candidates ``adaptation.windows`` asks for that the rows allow (see the module
    docstring). ``after_change`` needs ``min_rows_after_change`` rows since the change."""
    spec = cfg.adaptation
    out: list[Recipe] = []
    days = _days(cfg, pool)
    for name in spec.windows:
        if name == CONFIGURED:
            out.append(Recipe(CONFIGURED, cfg))
        elif name == AFTER_CHANGE and change is not None:
            if int((days >= dt.date.fromisoformat(change)).sum()) >= spec.min_rows_after_change:
                out.append(Recipe(AFTER_CHANGE, cfg, since=change))
        elif name == RECENCY_WEIGHTED:
            first = min(days) if len(pool) else as_of
            start = (
                dt.date.fromisoformat(change)
                if change is not None
                else as_of - dt.timedelta(days=max(1, ((as_of - first).days + 1) // 4) - 1)
            )
            recent = int((days >= start).sum())
            older = len(pool) - recent
            if recent == 0 or older == 0:
                continue
            share = spec.recent_weight_share
            weight = min(1000.0, max(1.01, share / (1 - share) * older / recent))
            out.append(
                Recipe(
                    RECENCY_WEIGHTED,
                    _with_recency(cfg, {"days": (as_of - start).days + 1, "weight": round(weight, 4)}),
                    since=None,
                )
            )
    if not out:
        out.append(Recipe(CONFIGURED, cfg))
    return out


def rows_for(cfg: ModelConfig, recipe: Recipe, frame: pd.DataFrame) -> pd.DataFrame:
    if recipe.since is None:
        return frame
    return frame[(_days(cfg, frame) >= dt.date.fromisoformat(recipe.since)).to_numpy()]


@dataclass(frozen=True)
class Candidate:
    """One recipe's model scored on the selection rows."""

    name: str
    train_rows: int
    value: float | None
    problem: str | None = None
    recency: dict | None = None
    since: str | None = None


@dataclass(frozen=True)
class Selection:
    """Which candidate goes on to the gates, and why."""

    metric: str
    change_day: str | None
    selection_rows: int
    selection_window: tuple[str, str]
    candidates: tuple[Candidate, ...]
    chosen: str
    reason: str
    change_source: str | None = None  # "performance" (the metric's change day) or "shift" (inputs)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["selection_window"] = list(self.selection_window)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Selection:
        return cls(
            data["metric"],
            data.get("change_day"),
            int(data["selection_rows"]),
            tuple(data["selection_window"]),
            tuple(Candidate(**c) for c in data["candidates"]),
            data["chosen"],
            data["reason"],
            data.get("change_source"),
        )


def choose(
    metric: str,
    candidates: list[Candidate],
    *,
    change: str | None,
    selection_rows: int,
    window: tuple[str, str],
    change_source: str | None = None,
) -> Selection:
    """The best candidate on the selection rows (ties: the earlier in ``adaptation.windows``)."""
    up = greater_is_better(metric)
    scored = [c for c in candidates if c.value is not None and math.isfinite(c.value)]
    if not scored:
        raise ValueError(
            "no candidate could be trained and scored: " + "; ".join(f"{c.name}: {c.problem}" for c in candidates)
        )
    best = scored[0]
    for c in scored[1:]:
        if (c.value > best.value) if up else (c.value < best.value):
            best = c
    others = ", ".join(
        f"{c.name} {c.value:.4f}" if c.value is not None else f"{c.name} ({c.problem})"
        for c in candidates
        if c is not best
    )
    where = f"the newest {selection_rows} matured labels ({window[0]}..{window[1]}" + (
        f", since the change on {change})" if change else ")"
    )
    reason = f"{best.name} {metric} {best.value:.4f} on {where}" + (f"; others: {others}" if others else "")
    return Selection(
        metric, change, selection_rows, window, tuple(candidates), best.name, reason, change_source if change else None
    )


# -----------------------------------------------------------------------------------------
# Gain over the champion
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gain:
    """The candidate's improvement over the champion on the same rows (positive = better)."""

    metric: str
    candidate: float
    champion: float
    mean: float
    lower: float
    confidence: float
    rows: int
    significant: bool

    def explain(self) -> str:
        verdict = "better beyond noise" if self.significant else "not better beyond noise: no gain"
        return (
            f"{self.metric} {self.candidate:.4f} vs champion {self.champion:.4f} on the same {self.rows} rows: "
            f"improvement {self.mean:+.4f}, {self.confidence:.0%} lower bound {self.lower:+.4f} ({verdict})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gain_test(
    task: str,
    metric: str,
    y,
    candidate_scores,
    champion_scores,
    *,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Gain:
    """Paired bootstrap of the improvement; significant when its ``confidence`` lower bound is
    above zero."""
    from retrain_lib.gates import bootstrap_improvement
    from retrain_lib.metrics import compute_metric

    diffs = bootstrap_improvement(
        task, metric, y, candidate_scores, champion_scores, n_resamples=n_resamples, seed=seed
    )
    valid = diffs[np.isfinite(diffs)]
    cand = float(compute_metric(task, metric, y, candidate_scores))
    champ = float(compute_metric(task, metric, y, champion_scores))
    if len(valid) < 0.9 * len(diffs):
        return Gain(metric, cand, champ, math.nan, math.nan, confidence, len(y), False)
    lower = float(np.quantile(valid, 1 - confidence))
    return Gain(metric, cand, champ, float(valid.mean()), lower, confidence, int(len(y)), bool(lower > 0))


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
    test = (performance or {}).get("test")
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
    latest ``drift_rebased`` record), or ``None``."""
    found = None
    for r in records:
        if r.get("event") != REBASE_EVENT or (before is not None and (r.get("as_of") or "") >= before):
            continue
        d = r.get("details") or {}
        if str(d.get("champion_version")) == str(champion_version) and d.get("window"):
            found = (d["window"][0], d["window"][1])
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
    once ``wait_days`` of labels since the shift have matured, one retrain asks whether they
    allow a better model (the gain test decides); after it, the shift is settled."""

    shift_day: str
    matured_days: int
    wait_days: int
    due: bool

    def explain(self) -> str:
        return (
            f"covariate shift from {self.shift_day}: {self.matured_days} day(s) of its labels have matured "
            f"(>= {self.wait_days}); one retrain on them, promoted only with a gain"
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
    records: Iterable[dict], champion_version: str | None, as_of: dt.date, *, label_delay_days: int, wait_days: int
) -> ShiftCheck | None:
    """``None`` unless this champion's inputs shifted and no retrain ran since (a ``gates``
    record after the first rebase settles it)."""
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
    if any(
        r.get("event") == "gates"
        and (r.get("as_of") or "") >= rebased_on
        and (r.get("as_of") or "") < as_of.isoformat()
        for r in records
    ):
        return None
    matured = (as_of - dt.timedelta(days=label_delay_days) - dt.date.fromisoformat(first)).days + 1
    return ShiftCheck(first, matured, wait_days, matured >= wait_days)
