"""The adaptation state around the monitor and the retrain (config ``adaptation``): what the
steps of the DAGs and the backtest's replay read from the ledger and write back to it.

:mod:`retrain_lib.stats.change_detection` and :mod:`retrain_lib.pipeline.adaptation` hold the pure statistics
and rules; this module applies them to a model: the drop test on the champion's labelled rows (:func:`test_drop`), the healthy level,
backoff and covariate-shift check from ledger records (:func:`adaptation_state`,
:func:`shift_facts`), the records a monitor check or a no-gain retrain adds
(:func:`record_adaptation`, :func:`record_no_gain_acceptance`), the change day a retrain trains
after (:func:`training_change`), the regime tags of a registered version (:func:`regime_tags`)
and a candidate's outcome (:func:`promotion_outcome`). ``ctx`` is a
:class:`retrain_lib.store.model_context.ModelContext` or the backtest's duck-typed one (``cfg``,
``settings``, ``name``); ``record(event, as_of, actor, details)`` writes one ledger record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from retrain_lib.core.metrics import greater_is_better
from retrain_lib.pipeline.adaptation import (
    ACCEPTED,
    CHANGE_SOURCE_TAG,
    CHANGE_TAG,
    LABELLED_UNTIL_TAG,
    LEVEL_EVENT,
    REBASE_EVENT,
    acceptance,
    backoff,
    extends_regime,
    healthy_level,
    level_updates,
    rebased_window,
    regime_change,
    regime_learnt,
    shift_check,
    shift_day,
)
from retrain_lib.store import audit

if TYPE_CHECKING:
    from retrain_lib.core.config import ModelConfig
    from retrain_lib.pipeline.monitor_records import MonitorDecision

PROMOTE, REJECTED, NO_GAIN = "promote", "rejected", "no_gain"


class Change(NamedTuple):
    """The change a retrain's candidates train after (:func:`training_change`): its first
    day and what showed it (``performance``: the champion's metric; ``shift``: its inputs).
    ``NO_CHANGE`` when there is none."""

    day: str | None
    source: str | None


NO_CHANGE = Change(None, None)


def _mean_sd(values: list[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation of ``values`` (at least two)."""
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def daily_mean_se(daily: dict[str, float]) -> tuple[float, float]:
    """The mean of a daily metric (at least two days) and the standard error of that mean."""
    mean, sd = _mean_sd(list(daily.values()))
    return mean, sd / math.sqrt(len(daily))


MIN_SPREAD_DAYS = 3  # daily values needed to estimate how much a daily metric moves
DAY_SD_TAG = "metric_day_sd."  # + metric: sd of the daily metric over the holdout's days
HOLDOUT_DAYS_TAG = "holdout.days"  # the days those daily values come from


def day_spread(daily: dict[str, float], tagged: tuple[float, int] | None) -> tuple[float | None, int]:
    """``(sd, days)``: the standard deviation of a champion's daily metric, from its rolling
    baseline's days (``daily``) when there are at least :data:`MIN_SPREAD_DAYS`, else the one
    measured on its holdout (``tagged``: :func:`tagged_day_spread`); ``(None, 0)`` without
    either."""
    finite = [v for v in daily.values() if math.isfinite(v)]
    if len(finite) >= MIN_SPREAD_DAYS:
        return _mean_sd(finite)[1], len(finite)
    return tagged if tagged is not None else (None, 0)


def tagged_day_spread(tags: dict, metric: str) -> tuple[float, int] | None:
    """``(sd, days)`` of the ``metric_day_sd.<metric>`` and ``holdout.days`` tags of a version;
    None when it has none (a version registered before, or a holdout of too few days)."""
    try:
        sd, days = float(tags[DAY_SD_TAG + metric]), int(tags[HOLDOUT_DAYS_TAG])
    except (KeyError, TypeError, ValueError):
        return None
    return (sd, days) if math.isfinite(sd) and days >= MIN_SPREAD_DAYS else None


def day_spread_tags(day_sd: Mapping[str, float] | None, days: int | None) -> dict[str, str]:
    """The version tags of :func:`metric_day_spreads`' result (none without a spread)."""
    if not day_sd:
        return {}
    return {**{f"{DAY_SD_TAG}{k}": repr(v) for k, v in day_sd.items()}, HOLDOUT_DAYS_TAG: str(days)}


def metric_day_spreads(cfg: ModelConfig, days, y, scores) -> tuple[dict[str, float], int]:
    """``({metric: sd}, days)``: the day-to-day standard deviation of the primary and the
    performance metric of ``scores`` over the days of ``days`` (one date per row) with at
    least ``performance.min_segment_labels`` rows (the ``metric_day_sd.*`` and ``holdout.days``
    tags); ``({}, n)`` with fewer than :data:`MIN_SPREAD_DAYS` such days."""
    from retrain_lib.stats.performance import daily_metrics

    min_rows = cfg.performance.min_segment_labels if cfg.performance else 1
    out: dict[str, float] = {}
    n_days = 0
    for m in {cfg.primary_metric, *([cfg.performance.metric] if cfg.performance else [])}:
        values = daily_metrics(days, y, scores, metric=m, task=cfg.task, min_rows=min_rows)
        sd, n = day_spread(values, None)
        n_days = max(n_days, len(values))
        if sd is not None and math.isfinite(sd):
            out[m] = float(sd)
    return out, n_days


@dataclass(frozen=True)
class EstablishedLevel:
    """The mean of a champion's daily metric over its first matured days (``first`` to
    ``last``, ``days`` of them) and the standard error of that mean."""

    level: float
    se: float
    first: str
    last: str
    days: int

    @classmethod
    def of(cls, daily: dict[str, float]) -> EstablishedLevel:
        """The level of ``daily`` (ISO day -> metric, at least two days)."""
        return cls(*daily_mean_se(daily), min(daily), max(daily), len(daily))


def test_drop(
    cfg: ModelConfig,
    result: dict,
    y,
    scores,
    now,
    before,
    daily: dict[str, float],
    healthy,
    champion_tags: dict,
    established: EstablishedLevel | None = None,
) -> None:
    """The drop as a test (``result['test']``), against the best of the champion's baseline
    (``result['baseline']``), the level it ``established`` over its first matured days and
    the armed healthy level; with a significant drop, the estimated ``change_day``.

    The noise of a metric over a few days is more than the noise of its rows: days differ
    (weekday and weekend, weather), so the live window's standard error is at least the
    day-to-day spread of the champion's daily metric over the square root of the days it
    covers (the spread of the rolling baseline's days, else the spread over its holdout's days
    measured out of sample at evaluation, tag ``metric_day_sd.<metric>``: :func:`day_spread`);
    the same holds for a holdout baseline. A window of one Saturday after a holdout of a week
    is no longer a drop by itself."""

    # lazy: numpy and pandas; tools.status (the status command, the fleet page) imports this module
    from retrain_lib.stats.change_detection import bootstrap_se, change_day, drop_test
    from retrain_lib.stats.performance import daily_metrics, metric_value

    perf = cfg.performance
    assert perf is not None and perf.false_alarm_rate is not None  # called with a drop test configured
    live = metric_value(y, scores, perf.metric, cfg.task)
    row_se = bootstrap_se(cfg.task, perf.metric, y, scores, seed=cfg.training.seed)
    live_se = row_se
    tagged_spread = tagged_day_spread(champion_tags, perf.metric)
    spread, spread_days = day_spread(daily, tagged_spread)
    live_days = int(now[cfg.data.timestamp_column].dt.date.nunique()) if len(now) else 0
    if spread is not None and live_days:
        result["day_spread"] = {"sd": spread, "from_days": spread_days, "live_days": live_days, "row_se": row_se}
        live_se = max(row_se, spread / math.sqrt(live_days))
    baseline = result["baseline"]
    if result["baseline_source"] == "rolling" and len(daily) > 1:
        baseline_se = daily_mean_se(daily)[1]
    else:
        tagged = champion_tags.get(f"metric_se.{perf.metric}")
        baseline_se = float(tagged) if tagged not in (None, "") else row_se
        if tagged_spread is not None:
            baseline_se = max(baseline_se, tagged_spread[0] / math.sqrt(tagged_spread[1]))
    up = greater_is_better(perf.metric)
    if established is not None and (
        not math.isfinite(baseline) or (established.level > baseline if up else established.level < baseline)
    ):
        result.update(
            rolling_baseline=baseline,
            baseline=established.level,
            baseline_source=f"established level ({established.first}..{established.last}, {established.days} days)",
        )
        baseline, baseline_se = established.level, established.se
    if (
        healthy is not None
        and math.isfinite(healthy.level)
        and (not math.isfinite(baseline) or (healthy.level > baseline if up else healthy.level < baseline))
    ):
        result.update(
            own_baseline=baseline, baseline=healthy.level, baseline_source=f"healthy level (armed {healthy.since})"
        )
        baseline, baseline_se = healthy.level, healthy.se
    test = drop_test(
        live,
        baseline,
        perf.metric,
        live_se=live_se,
        baseline_se=baseline_se,
        rows=len(y),
        false_alarm_rate=perf.false_alarm_rate,
        min_effect=perf.min_effect,
    )
    result["test"] = test.to_dict()
    result["baseline_se"] = baseline_se
    if test.significant:
        ts = cfg.data.timestamp_column
        recent = daily_metrics(now[ts], y, scores, metric=perf.metric, task=cfg.task, min_rows=1)
        counts: dict[str, int] = {}
        for frame in (before, now):
            if len(frame):
                for day, n in frame[ts].dt.date.value_counts().items():
                    counts[day.isoformat()] = counts.get(day.isoformat(), 0) + int(n)
        result["change_day"] = change_day({**daily, **recent}, counts, perf.metric)


@dataclass(frozen=True)
class AdaptationState:
    """What the ledger says about a model before a monitor check: its ``records``, the armed
    ``healthy`` level, the ``backoff`` after retrains that brought no model, and the drift
    reference a covariate shift was ``rebased`` to for the champion (or ``None`` each)."""

    records: list = field(default_factory=list)
    healthy: Any = None
    backoff: Any = None
    rebased: tuple[str, str] | None = None
    # the champion learnt from a full window since the change ``healthy`` was armed for: its
    # own level is the new healthy level (the ``accepted`` record is written by this check)
    regime_learnt: bool = False

    @property
    def tested_against(self):
        """The healthy level the champion's live metric is tested against: the armed one, or
        ``None`` (its own holdout level) once it learnt the regime since the change."""
        return None if self.regime_learnt else self.healthy


def adaptation_state(ctx, champion, as_of: dt.date, records=None) -> AdaptationState:
    """The :class:`AdaptationState` of the model before ``as_of``, from the ledger (or the given
    ledger-shaped ``records``); empty without ``adaptation``."""
    cfg = ctx.cfg
    if cfg.adaptation is None or champion is None:
        return AdaptationState()

    if records is None:
        records = audit.read_ledger(ctx.settings, ctx.name)
    healthy = None
    if cfg.performance is not None and cfg.performance.false_alarm_rate is not None:
        healthy = healthy_level(records, cfg.performance.metric, before=as_of.isoformat())
    wait = backoff(records, as_of, cfg.schedule.min_retrain_interval_days) if cfg.adaptation.backoff else None
    learnt = healthy is not None and regime_learnt(champion.tags, cfg.windows.training_days, healthy.change_day)
    return AdaptationState(
        records, healthy, wait, rebased_window(records, str(champion.version), before=as_of.isoformat()), learnt
    )


def metric_ses(cfg: ModelConfig, y, scores) -> dict[str, float]:
    """Bootstrap standard errors of the primary and the performance metric of ``scores`` (the
    ``metric_se.*`` tags the drop test reads for a champion's holdout baseline); finite only."""
    from retrain_lib.stats.change_detection import bootstrap_se

    out = {}
    for m in {cfg.primary_metric, *([cfg.performance.metric] if cfg.performance else [])}:
        se = bootstrap_se(cfg.task, m, y, scores, seed=cfg.training.seed)
        if math.isfinite(se):
            out[m] = float(se)
    return out


def shift_facts(cfg: ModelConfig, records, champion, as_of: dt.date):
    """The pending covariate-shift check of the champion (``adaptation.shift_label_days``)."""
    spec = cfg.adaptation
    if spec is None or spec.shift_label_days is None or champion is None or not records:
        return None

    return shift_check(
        records,
        str(champion.version),
        as_of,
        label_delay_days=cfg.data.label_delay_days,
        wait_days=spec.shift_label_days,
        follow_up_until_days=cfg.windows.training_days if spec.shift_follow_up else None,
    )


def training_change(
    champion_tags: dict,
    window_start: dt.date,
    estimate: Callable[[], str | None],
    records: Callable[[], Iterable[dict]],
    champion_version: str | None,
    *,
    training_days: int | None = None,
) -> Change:
    """The change day a retrain's candidates train after: the regime the champion learnt
    (while inside the training window, or while its follow-ups fill the window: see
    :func:`retrain_lib.pipeline.adaptation.regime_change`; its own series after training shows no
    change, and a noisy one must not cut the rows since the change), else the change ``estimate()`` finds in
    the champion's metric, else the day its inputs shifted (a rebased drift, from
    ``records()``). A regime keeps its own source; ``NO_CHANGE`` when there is none. The
    callables run only when needed."""
    regime = regime_change(champion_tags, window_start, training_days)
    if regime is not None:
        return Change(regime, champion_tags.get(CHANGE_SOURCE_TAG) or "performance")
    estimated = estimate()
    if estimated is not None:
        return Change(estimated, "performance")
    shifted = shift_day(records(), champion_version)
    return Change(shifted, "shift") if shifted is not None else NO_CHANGE


def regime_tags(selection: dict | None) -> dict[str, str]:
    """The registry tags that carry a version's regime (its change day and last labelled day)
    to its successors (:func:`retrain_lib.pipeline.adaptation.regime_change`, ``follow_up``)."""
    if not selection:
        return {}
    return {
        "adaptation.chosen": selection["chosen"],
        CHANGE_TAG: selection.get("change_day") or "none",
        CHANGE_SOURCE_TAG: selection.get("change_source") or "none",
        LABELLED_UNTIL_TAG: selection["selection_window"][1],
    }


def record_adaptation(
    record,
    cfg: ModelConfig,
    as_of: str,
    actor: str,
    decision: MonitorDecision,
    performance: dict | None,
    state: AdaptationState,
    champion_version: str | None,
    champion_tags: dict | None = None,
) -> list[dict]:
    """Write what a monitor check changed in the adaptation ``state`` through ``record``: the
    healthy level armed, restored, or accepted once the champion learnt from a full window
    since the change (``state.regime_learnt``); the drift reference rebased."""
    if cfg.adaptation is None:
        return []

    out = []
    healthy = state.healthy
    if cfg.performance is not None:
        updates = (
            []
            if state.regime_learnt
            else level_updates(
                performance, healthy, min_effect=cfg.performance.min_effect, champion_version=champion_version
            )
        )
        if state.regime_learnt:
            assert champion_tags is not None  # learnt: there is a champion (adaptation_state)
            change = champion_tags.get(CHANGE_TAG)
            change = change if change and change != "none" else healthy.change_day
            updates = [
                {
                    "action": ACCEPTED,
                    "metric": healthy.metric,
                    "version": champion_version,
                    "reason": f"the champion learnt from a full {cfg.windows.training_days}-day window since "
                    f"the change on {change}: its level is the new healthy level",
                }
            ]
        for details in updates:
            out.append(record(LEVEL_EVENT, as_of, actor, details))
    if decision.rebase:
        out.append(
            record(REBASE_EVENT, as_of, actor, {**decision.rebase, "reason": "covariate shift recorded; labels decide"})
        )
    return out


def record_no_gain_acceptance(
    record, cfg: ModelConfig, as_of: str | None, actor: str, selection: dict | None
) -> dict | None:
    """After a no-gain retrain, write the ``accepted`` healthy-level record through ``record``
    when :func:`retrain_lib.pipeline.adaptation.acceptance` says the champion's level is the new one."""
    if cfg.performance is None or cfg.adaptation is None:
        return None

    accepted = acceptance(
        selection, metric=cfg.performance.metric, min_rows_after_change=cfg.adaptation.min_rows_after_change
    )
    return record(LEVEL_EVENT, as_of, actor, accepted) if accepted else None


def promotion_outcome(
    cfg: ModelConfig,
    gates_passed: bool,
    inputs,
    *,
    follow_up: bool = False,
    require_gain: bool | None = None,
    measured_gain=None,
    selection: dict | None = None,
) -> tuple[str, Any]:
    """``(outcome, gain)``: ``rejected`` when a gate failed; ``no_gain`` when
    ``adaptation.require_gain`` (or ``require_gain`` of this run) and the candidate is not
    better than the champion beyond noise on the gates' rows (or ``measured_gain``, the
    cross-fitted gain since a covariate shift: :func:`retrain_lib.learn.candidates.crossfit_gain`),
    unless it is a ``follow_up`` (it learnt the champion's regime from more days:
    :func:`is_follow_up`); else ``promote``. After a covariate shift (the candidate's
    ``selection`` trained after one; the champion kept its
    level, so the concept held) a candidate not worse than the champion is promoted unless
    ``adaptation.shift_requires_gain``: at a few hundred rows a day the gain of a model that
    learnt the shifted inputs is real but too small to prove before it is lost."""
    if not gates_passed:
        return REJECTED, None
    if inputs is None or cfg.adaptation is None:
        return PROMOTE, None
    from retrain_lib.learn.candidates import gain

    result = measured_gain or gain(cfg, inputs.y_true, inputs.candidate_scores, inputs.champion_scores)
    required = cfg.adaptation.require_gain if require_gain is None else require_gain
    if result is None or follow_up or not required:
        return PROMOTE, result
    shift = (selection or {}).get("change_source") == "shift"
    if shift and not cfg.adaptation.shift_requires_gain:
        result = dataclasses.replace(result, basis="not_worse")
    return (PROMOTE if result.promotes else NO_GAIN), result


def is_follow_up(cfg: ModelConfig, champion_tags: dict | None, selection: dict | None) -> bool:
    """Whether a candidate extends its champion's regime (:func:`retrain_lib.pipeline.adaptation.extends_regime`)."""
    if cfg.adaptation is None or not cfg.adaptation.follow_up or not champion_tags:
        return False

    return extends_regime(champion_tags, selection)
