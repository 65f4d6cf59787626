"""The monitor's decision: retrain, stay healthy or roll back, from the facts the monitor
gathered (:mod:`retrain_lib.pipeline.monitor_facts`, :mod:`retrain_lib.pipeline.performance_facts`,
:mod:`retrain_lib.pipeline.live_facts`). Pure: the same facts give the same decision, so the DAGs and
the backtest decide alike."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.metrics import greater_is_better
from retrain_lib.core.values import as_day, str_or_none
from retrain_lib.pipeline.adaptation import follow_up
from retrain_lib.pipeline.monitor_records import MonitorDecision, Signal
from retrain_lib.stats.change_detection import DropTest
from retrain_lib.stats.performance import assess_drop, critical_limit

RETRAIN = "retrain"
HEALTHY = "healthy"
ROLLBACK = "rollback"

_SERVING_DETAIL = (
    "source",
    "window",
    "requests",
    "errors",
    "p95_latency_ms",
    "max_p95_latency_ms",
    "labels",
    "champion_live",
    "previous_live",
    "relative_worse",
)
_ROLLBACK_DETAIL = ("champion", "previous", "champion_live", "previous_live", "labels", "window")
_SEGMENT_DETAIL = ("segment", "value", "rows", "live", "baseline", "relative_drop", "level")


def decide(
    cfg: ModelConfig,
    *,
    as_of: dt.date,
    champion,
    drift: dict | None,
    performance: dict | None,
    new_labels: dict | None = None,
    recent_retrains: list[str] | None = None,
    rollback: dict | None = None,
    serving: dict | None = None,
    backoff=None,
    shift=None,
) -> MonitorDecision:
    """Retrain or not, with the reasons and the signals. Pure: the same facts give the same
    decision.

    Signals (each a :class:`Signal`): ``drift`` (dataset
    drift), ``performance`` (live metric vs baseline: a critical level retrains, a warning
    is only recorded), ``performance_segments`` (segments past a level: recorded),
    ``performance_estimate`` (CBPE before labels arrive: retrains when critical and
    ``performance.use_estimate``), ``new_labels`` (matured labelled rows since training vs
    ``schedule.new_labels_share`` of the training rows), ``age``
    (``schedule.max_days_without_retrain``). A retrain request is then throttled (the
    decision is ``healthy``) by ``min_retrain_interval`` or ``max_retrains``, or by the
    ``backoff`` after retrains that were not deployed (``adaptation.backoff``).

    With ``adaptation.rebase_on_drift`` and a performance trigger, data drift alone does not
    retrain: it is recorded, the decision carries ``rebase`` (the drifted window, the next
    drift reference) and the matured labels after the shift decide.
    """
    if champion is None:
        return MonitorDecision(
            RETRAIN,
            reasons=("no champion yet: train the first model",),
            signals=(_signal("champion", True, None, None, "no champion yet"),),
        )
    found = _Findings()
    back = _serving_rollback_decision(serving, found) or _rollback_decision(
        rollback, found, _previous_bad_too(cfg, performance, rollback)
    )
    if back is not None:
        return back
    rebase = _check_drift(cfg, drift, champion, found)
    pending = _check_follow_up(cfg, champion, as_of, backoff, found)
    if performance and cfg.performance is not None:
        if "live" in performance:
            critical = _check_live_performance(cfg.performance, performance, pending, found)
            _check_segments(cfg.performance, performance, critical, found)
        _check_estimate(cfg.performance, performance, found)
    _check_new_labels(cfg, new_labels, found)
    trained = champion.tags.get("trained_as_of")
    age = (as_of - as_day(trained)).days if trained else None
    _check_age(cfg, age, trained, found)
    if pending is not None and pending.due:
        found.reasons.append(pending.explain())
    _check_shift(shift, found)
    extra: dict[str, Any] = {
        "rebase": rebase or None,
        "change_day": (performance.get("change_day") or None) if performance else None,
    }
    if not found.reasons:
        return MonitorDecision(HEALTHY, (*found.notes, "no trigger fired"), False, tuple(found.signals), **extra)
    held = (
        _backoff_throttle(backoff, found)
        or _interval_throttle(cfg, age, trained, found)
        or _max_retrains_throttle(cfg, recent_retrains, found)
    )
    if held is not None:
        return MonitorDecision(HEALTHY, tuple(held), True, tuple(found.signals), **extra)
    return MonitorDecision(RETRAIN, (*found.reasons, *found.notes), False, tuple(found.signals), **extra)


@dataclass
class _Findings:
    """What the checks of one decision found so far: the signals, the reasons to retrain and
    the notes recorded without retraining, each in the order the checks ran."""

    signals: list[Signal] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def signal(self, signal: str, triggered: bool, value, threshold, detail) -> None:
        self.signals.append(_signal(signal, triggered, value, threshold, detail))


def _signal(signal: str, triggered: bool, value, threshold, detail) -> Signal:
    return Signal(signal, bool(triggered), value, threshold, detail)


# -----------------------------------------------------------------------------------------
# Rollback: live serving, then the matured labels
# -----------------------------------------------------------------------------------------


def _serving_rollback_decision(serving: dict | None, found: _Findings) -> MonitorDecision | None:
    """The ``serving`` signal; a rollback decision when live serving degraded and there is a
    previous champion to go back to."""
    why = _serving_rollback(serving)
    if serving:
        found.signal(
            "serving",
            bool(why),
            serving["error_rate"],
            serving["max_error_rate"],
            {k: serving.get(k) for k in _SERVING_DETAIL},
        )
    if not (why and serving and serving.get("previous")):  # why: serving is there
        return None
    return MonitorDecision(
        ROLLBACK,
        reasons=(f"rollback: champion v{serving['champion']} degraded in live serving: " + "; ".join(why),),
        signals=tuple(found.signals),
        rollback={"from": serving["champion"], "to": serving["previous"]},
    )


def _serving_rollback(serving: dict | None) -> list[str]:
    """Why the live serving facts call for a rollback (empty: they do not)."""
    if not serving or serving["requests"] < serving["min_requests"]:
        return []
    out = []
    if serving["max_error_rate"] is not None and serving["error_rate"] > serving["max_error_rate"]:
        out.append(
            f"error rate {serving['error_rate']:.1%} of the champion's {serving['requests']} requests "
            f"in the last {_minutes(serving)} (limit {serving['max_error_rate']:.1%})"
        )
    p95, limit = serving["p95_latency_ms"], serving["max_p95_latency_ms"]
    if limit is not None and p95 is not None and p95 > limit:
        out.append(f"p95 latency {p95:.1f} ms over the last {_minutes(serving)} (limit {limit:g} ms)")
    if serving.get("worse"):
        out.append(
            f"{serving['metric']} {serving['champion_live']:.4f} on {serving['labels']} labelled live "
            f"requests vs previous-champion v{serving['previous']} {serving['previous_live']:.4f} on the same "
            f"requests: {serving['relative_worse']:.1%} worse (limit {serving['max_drop']:.0%})"
        )
    return out


def _minutes(serving: dict) -> str:
    a, b = (dt.datetime.fromisoformat(x) for x in serving["window"])
    return f"{(b - a).total_seconds() / 60:g} min"


def _previous_bad_too(cfg: ModelConfig, performance: dict | None, rollback: dict | None) -> str | None:
    """Why the rollback target is no way back (``None`` when it is): the champion's live metric
    dropped significantly from the healthy level and the previous champion's, on the same
    rows, is past the same limit and at least ``performance.min_effect`` from it. Both bad is
    a change neither model knows (a concept drift): a retrain, not a rollback."""
    perf_cfg = cfg.performance
    if not (rollback and rollback.get("worse")) or perf_cfg is None or not performance or "live" not in performance:
        return None
    _, _, limit, critical = _judged_drop(perf_cfg, performance)
    previous, baseline, metric = rollback.get("previous_live"), performance.get("baseline"), performance["metric"]
    if not critical or limit is None or previous is None or baseline is None or not math.isfinite(baseline):
        return None
    past = previous < limit if greater_is_better(metric) else previous > limit
    if not past or abs(previous - baseline) < (perf_cfg.min_effect or 0.0):
        return None
    return f"previous-champion v{rollback['previous']} {metric} {previous:.4f} is past the limit {limit:.4f} of the healthy level {baseline:.4f} too"


def _rollback_decision(rollback: dict | None, found: _Findings, both_bad: str | None = None) -> MonitorDecision | None:
    """The ``rollback`` signal (champion vs previous-champion on matured labels); a rollback
    decision when the champion is worse by more than the limit, unless the previous champion
    is bad too (``both_bad``, from :func:`_previous_bad_too`): then a note, and the
    performance signal decides (a retrain)."""
    if not (rollback and "worse" in rollback):
        return None
    m = rollback["metric"]
    text = (
        f"champion v{rollback['champion']} (promoted {rollback['promoted_as_of']}) {m} "
        f"{rollback['champion_live']:.4f} vs previous-champion v{rollback['previous']} "
        f"{rollback['previous_live']:.4f} on the same {rollback['labels']} matured labels: "
        f"{rollback['relative_worse']:.1%} worse (limit {rollback['max_drop']:.0%})"
    )
    found.signal(
        "rollback",
        bool(rollback["worse"] and not both_bad),
        rollback["relative_worse"],
        rollback["max_drop"],
        {k: rollback[k] for k in _ROLLBACK_DETAIL},
    )
    if not rollback["worse"]:
        return None
    if both_bad:
        found.notes.append(f"no rollback: {text}, but {both_bad}: both are bad, the performance trigger decides")
        return None
    return MonitorDecision(
        ROLLBACK,
        reasons=(f"rollback: {text}",),
        signals=tuple(found.signals),
        rollback={"from": rollback["champion"], "to": rollback["previous"]},
    )


# -----------------------------------------------------------------------------------------
# Drift and follow-ups
# -----------------------------------------------------------------------------------------


def _check_drift(cfg: ModelConfig, drift: dict | None, champion, found: _Findings) -> dict | None:
    """The ``drift`` signal. Fired drift is a reason to retrain, or with
    ``adaptation.rebase_on_drift`` and a performance trigger a note and the returned rebase
    (the drifted window becomes the next reference)."""
    if drift is None:
        return None
    fired = bool(drift.get("dataset_drift"))
    top = ", ".join(f["explain"] for f in drift.get("top", []) if f.get("drifted"))
    found.signal(
        "drift",
        fired,
        drift.get("drifted_share"),
        drift.get("drift_share_threshold"),
        {"features": [f["name"] for f in drift.get("top", []) if f.get("drifted")]},
    )
    if not fired:
        return None
    text = (
        f"data drift: {drift['drifted_share']:.0%} of features drifted (>= {drift['drift_share_threshold']:.0%}): {top}"
    )
    labels_decide = (
        cfg.adaptation is not None
        and cfg.adaptation.rebase_on_drift
        and cfg.performance is not None
        and cfg.performance.enabled
    )
    if not labels_decide:
        found.reasons.append(text)
        return None
    window = drift.get("current_window")
    ready = (
        (dt.date.fromisoformat(window[0]) + dt.timedelta(days=cfg.data.label_delay_days)).isoformat() if window else "?"
    )
    # The new reference is the window's last day: the earlier days of a window that just
    # drifted may be from before the shift, and a reference mixing both would see the same
    # shift again as the later checks' windows fill with shifted days.
    reference = [window[1], window[1]] if window else None
    found.notes.append(
        f"{text}; recorded, drift reference rebased to {reference[0] if reference else '?'} (the last day of the "
        f"drifted window {window}): the labels of the shifted rows (matured from {ready}) decide a retrain, "
        "not the drift alone"
    )
    return {"window": window, "reference": reference, "champion_version": str_or_none(champion.version)}


def _check_follow_up(cfg: ModelConfig, champion, as_of: dt.date, backoff, found: _Findings):
    """The champion's pending follow-up (it learnt a change from a few days) and its
    ``follow_up`` signal; ``None`` without one, or when a retrain since the champion's
    deployment brought no model (that ends its follow-ups)."""
    if cfg.adaptation is None or not cfg.adaptation.follow_up:
        return None

    pending = follow_up(
        champion.tags, as_of, label_delay_days=cfg.data.label_delay_days, training_days=cfg.windows.training_days
    )
    if pending is None:
        return None
    stopped = backoff is not None and backoff.not_deployed > 0
    found.signal(
        "follow_up",
        pending.due and not stopped,
        pending.matured_days,
        2 * pending.trained_days,
        {"change_day": pending.change_day, "trained_days": pending.trained_days, "stopped_by_no_gain": stopped},
    )
    return None if stopped else pending


# -----------------------------------------------------------------------------------------
# Performance: live metric, segments, estimate
# -----------------------------------------------------------------------------------------


def _levels(perf_cfg) -> dict[str, Any]:
    return dict(max_drop=perf_cfg.max_drop, warn_drop=perf_cfg.warn_drop, critical_drop=perf_cfg.critical_drop)


def _judged_drop(perf_cfg, performance: dict):
    """The live metric's drop from its baseline: ``(assessment, text, limit, critical)``. With a
    drop test (``performance.false_alarm_rate``) the test decides, its text and limit apply."""
    metric = performance["metric"]
    a = assess_drop(performance["live"], performance["baseline"], metric, **_levels(perf_cfg))
    source = performance.get("baseline_source", "holdout")
    text = (
        f"{metric} {a.live:.4f} vs {source} baseline {a.baseline:.4f} "
        f"(drop {a.drop:.4f}, {a.relative_drop:.1%} of baseline" + (f" > {a.threshold})" if a.threshold else ")")
    )
    limit = critical_limit(a.baseline, metric, max_drop=perf_cfg.max_drop, critical_drop=perf_cfg.critical_drop)
    test = performance.get("test")
    if test is None:
        return a, text, limit, a.critical

    t = DropTest(**test)
    limit = (
        t.baseline - t.z_limit * math.sqrt(t.live_se**2 + t.baseline_se**2) * (1 if greater_is_better(metric) else -1)
        if math.isfinite(t.baseline)
        else None
    )
    return a, f"{t.explain()} (baseline: {source})", limit, t.significant


def _check_live_performance(perf_cfg, performance: dict, pending, found: _Findings) -> bool:
    """The ``performance`` signal; returns whether the drop retrains. A critical drop below the
    level the champion had before a change it learnt is deferred to its pending follow-up
    (more of the new regime is coming: the follow-ups retrain when the days since the change
    have doubled)."""
    a, text, limit, critical = _judged_drop(perf_cfg, performance)
    source = performance.get("baseline_source", "holdout")
    test = performance.get("test")
    deferred = critical and pending is not None and source.startswith("healthy level")
    critical = critical and not deferred
    found.signal(
        "performance",
        critical,
        a.live,
        limit,
        {
            "baseline": a.baseline,
            "level": a.level,
            "drop": a.drop,
            "relative_drop": a.relative_drop,
            "passed": a.threshold,
            "baseline_source": source,
            "labels": performance.get("labels"),
            "window": performance.get("window"),
            **({"test": test, "change_day": performance.get("change_day")} if test is not None else {}),
            **({"deferred_to_follow_up": True} if deferred else {}),
        },
    )
    if critical:
        found.reasons.append(f"performance: {text}")
    elif deferred:
        found.notes.append(
            f"performance: {text}"
            + (
                ""
                if pending.due
                else f"; waiting for the follow-up at {2 * pending.trained_days} matured day(s) since the change"
            )
        )
    elif a.level == "warn" or (test is not None and a.level != "ok"):
        found.notes.append(f"performance warning (no retrain by itself): {text}")
    return critical


def _check_segments(perf_cfg, performance: dict, critical: bool, found: _Findings) -> None:
    """The ``performance_segments`` signal (recorded only): segments with enough labels past a
    level. They join the reasons when the overall drop retrains, else the notes."""
    metric = performance["metric"]
    flagged = []
    for seg in performance.get("segments", []):
        if seg["rows"] < perf_cfg.min_segment_labels:
            continue
        s = assess_drop(seg["live"], seg["baseline"], metric, **_levels(perf_cfg))
        if s.level != "ok":
            flagged.append({**seg, "relative_drop": s.relative_drop, "drop": s.drop, "level": s.level})
    if performance.get("segments"):
        found.signal(
            "performance_segments",
            False,
            len(flagged),
            None,
            {
                "min_segment_labels": perf_cfg.min_segment_labels,
                "flagged": [{k: f[k] for k in _SEGMENT_DETAIL} for f in flagged],
            },
        )
    if flagged:
        (found.reasons if critical else found.notes).append(
            f"performance segments past a level: {_segment_text(flagged, metric)}"
        )


def _segment_text(segments: list[dict], metric: str) -> str:
    return "; ".join(
        f"{s['segment']}={s['value']} {metric} {s['live']:.4f} vs {s['baseline']:.4f} "
        f"(drop {s['relative_drop']:.1%}, {s['level']}, {s['rows']} rows)"
        for s in segments
    )


def _check_estimate(perf_cfg, performance: dict, found: _Findings) -> None:
    """The ``performance_estimate`` signal (CBPE before the labels arrive): a critical estimate
    retrains with ``performance.use_estimate``, any other level is a note."""
    metric = performance["metric"]
    est = performance.get("estimate") or {}
    if est.get("value") is None or math.isnan(est["value"]):
        return
    e = assess_drop(
        est["value"],
        performance["baseline"],
        metric,
        warn_drop=perf_cfg.warn_drop,
        critical_drop=perf_cfg.critical_drop,
    )
    fired = e.critical and perf_cfg.use_estimate
    text = (
        f"estimated {metric} {e.live:.4f} (interval {est['low']:.4f}..{est['high']:.4f}, "
        f"{est['rows']} rows without labels) vs baseline {e.baseline:.4f} "
        f"(drop {e.drop:.4f}, {e.relative_drop:.1%} of baseline" + (f" > {e.threshold})" if e.threshold else ")")
    )
    found.signal(
        "performance_estimate",
        fired,
        e.live,
        critical_limit(e.baseline, metric, critical_drop=perf_cfg.critical_drop),
        {
            "baseline": e.baseline,
            "level": e.level,
            "low": est["low"],
            "high": est["high"],
            "rows": est["rows"],
            "relative_drop": e.relative_drop,
            "passed": e.threshold,
            "use_estimate": perf_cfg.use_estimate,
        },
    )
    if fired:
        found.reasons.append(f"performance (estimated, labels not yet arrived): {text}")
    elif e.level != "ok":
        found.notes.append(
            f"performance warning (estimated{'' if perf_cfg.use_estimate else ', use_estimate off'}): {text}"
        )


# -----------------------------------------------------------------------------------------
# Schedule: new labels, age, shift
# -----------------------------------------------------------------------------------------


def _check_new_labels(cfg: ModelConfig, new_labels: dict | None, found: _Findings) -> None:
    """The ``new_labels`` signal: matured labelled rows since training against
    ``schedule.new_labels_share`` of the champion's training rows."""
    share = cfg.schedule.new_labels_share
    if share is None or not new_labels or not new_labels.get("train_rows"):
        return
    got = new_labels["labelled_rows"] / new_labels["train_rows"]
    fired = got >= share
    found.signal("new_labels", fired, got, share, dict(new_labels))
    if fired:
        found.reasons.append(
            f"new labels: {new_labels['labelled_rows']} labelled rows matured since "
            f"{new_labels['since']} ({got:.0%} of the champion's {new_labels['train_rows']} training "
            f"rows >= new_labels_share {share:.0%})"
        )


def _check_age(cfg: ModelConfig, age: int | None, trained: str | None, found: _Findings) -> None:
    """The ``age`` signal: days since the champion was trained against
    ``schedule.max_days_without_retrain``."""
    limit = cfg.schedule.max_days_without_retrain
    if not limit or age is None:
        return
    found.signal("age", age >= limit, age, limit, {"trained_as_of": trained})
    if age >= limit:
        found.reasons.append(f"champion is {age} days old (>= max_days_without_retrain {limit})")


def _check_shift(shift, found: _Findings) -> None:
    """The ``shift_labels`` signal (``shift_follow_up`` after a retrain without gain): the
    labels of a recorded covariate shift have matured."""
    if shift is None:
        return
    found.signal(shift.signal, shift.due, shift.matured_days, shift.wait_days, {"shift_day": shift.shift_day})
    if shift.due:
        found.reasons.append(shift.explain())


# -----------------------------------------------------------------------------------------
# Throttles: the reasons of a held retrain, or None when it may run
# -----------------------------------------------------------------------------------------


def _backoff_throttle(backoff, found: _Findings) -> list[str] | None:
    if backoff is None or not backoff.blocked:
        return None
    found.signal(
        "backoff",
        True,
        backoff.not_deployed,
        backoff.wait_days,
        {"last_attempt": backoff.last_attempt, "attempts": backoff.attempts},
    )
    return [*found.reasons, *found.notes, f"throttled: {backoff.explain()}"]


def _interval_throttle(cfg: ModelConfig, age: int | None, trained: str | None, found: _Findings) -> list[str] | None:
    gap = cfg.schedule.min_retrain_interval_days
    if age is None or age >= gap:
        return None
    found.signal("min_retrain_interval", True, age, gap, {"trained_as_of": trained})
    return [
        *found.reasons,
        *found.notes,
        f"throttled: last retrain {age} day(s) ago (< min_retrain_interval_days {gap})",
    ]


def _max_retrains_throttle(cfg: ModelConfig, recent_retrains: list[str] | None, found: _Findings) -> list[str] | None:
    most = cfg.schedule.max_retrains
    if most is None or recent_retrains is None:
        return None
    over = len(recent_retrains) >= most.count
    found.signal(
        "max_retrains",
        over,
        len(recent_retrains),
        most.count,
        {"days": most.days, "requests": list(recent_retrains)},
    )
    if not over:
        return None
    return [
        *found.reasons,
        *found.notes,
        f"throttled: {len(recent_retrains)} retrain request(s) in the last {most.days} days "
        f"({', '.join(recent_retrains)}) (max_retrains {most.count} per {most.days} days)",
    ]
