"""The champion's performance on the matured labels of a day, for the monitor's decision: its
live metric overall and per segment against a holdout or rolling baseline, the CBPE estimate
on rows whose labels have not arrived, and (with ``performance.false_alarm_rate``) the drop as
a statistical test."""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.core.metrics import predict_scores
from retrain_lib.core.values import as_day
from retrain_lib.learn.training_data import feature_frame, last_labelled_day, split_frame, xy
from retrain_lib.pipeline.adaptation_steps import EstablishedLevel, test_drop
from retrain_lib.stats.performance import (
    assess_drop,
    daily_metrics,
    estimate_performance,
    metric_value,
    segment_metrics,
)
from retrain_lib.store.data import Window, day_range, load_window
from retrain_lib.store.model_context import ModelContextLike, load_model

log = logging.getLogger(__name__)


def champion_performance(
    ctx: ModelContextLike, champion, as_of: dt.date, current: Window | None = None, healthy=None
) -> dict[str, Any] | None:
    """Facts about the champion's performance on ``as_of``, for :func:`retrain_lib.pipeline.decision.decide`.

    * ``live``: its metric on the last ``monitor_days`` days of events whose labels have
      matured by ``as_of`` (never before its training window ends), overall and per segment
      (``features.segments``);
    * ``baseline``: its holdout metric at registration (tag ``metric.<m>``) until at least
      ``performance.baseline_min_days`` matured days precede that window; from then on the
      mean of its daily live metric over the last ``performance.baseline_days`` of them
      (``baseline_source`` says which). Segment baselines come from the same source: the
      champion's holdout rows (recomputed from its training window) or the rolling days;
    * ``estimate``: for classifiers, the CBPE estimate of the metric on the rows of the
      ``current`` window whose labels have not arrived yet;
    * ``test`` (with ``performance.false_alarm_rate``): the drop as a statistical test
      (:func:`retrain_lib.pipeline.adaptation.drop_test`) against the better of the baseline and the
      model's armed ``healthy`` level (:func:`retrain_lib.pipeline.adaptation.healthy_level`), so a
      degraded champion never becomes its own baseline; when it is significant, the
      estimated ``change_day``.

    Drops and levels are annotated for the report; :func:`retrain_lib.pipeline.decision.decide` judges
    them again from the numbers, so the decision stays a pure function of these facts.
    """
    cfg = ctx.cfg
    perf = cfg.performance
    if champion is None or perf is None or not perf.enabled:
        return None

    start, end, trained_end = _matured_range(cfg, champion, as_of)
    result = _blank_result(perf, champion, start, end)

    def model():
        return load_model(ctx, f"models:/{ctx.name}/{champion.version}")

    if cfg.task == "classification" and current is not None and not current.frame.empty:
        result["estimate"] = _estimated_performance(ctx, current, model)
    if start > end:
        result["reason"] = "no matured labels since the champion was trained"
        return result
    rows = _matured_rows(ctx, as_of, start, end, trained_end)
    if rows is None:
        result["reason"] = "no data in the matured window"
        return result
    now, before = rows
    result["labels"] = int(len(now))
    if len(now) < perf.min_labels:
        result["reason"] = f"only {len(now)} matured labels (< min_labels {perf.min_labels})"
        return result
    X, y = xy(cfg, now)
    scores = predict_scores(model(), X, cfg.task)
    live = metric_value(y, scores, perf.metric, cfg.task)
    daily, seg_baseline = _baselines(ctx, champion, model, before, result)
    result["segments"].extend(_live_segments(cfg, now, y, scores, seg_baseline))
    if perf.false_alarm_rate is not None:
        established = _established_level(ctx, model, as_of, start, trained_end, daily)
        test_drop(cfg, result, y, scores, now, before, daily, healthy, champion.tags, established=established)
    _assess_drops(perf, result, live)
    return result


def _matured_range(cfg: ModelConfig, champion, as_of: dt.date) -> tuple[dt.date, dt.date, dt.date]:
    """``(start, end, trained_end)``: the last ``monitor_days`` days whose labels matured by
    ``as_of``, starting after the last day whose labels the champion learnt (``trained_end``:
    :func:`retrain_lib.learn.training_data.last_labelled_day`; the days after it were in its
    training window without labels, so a new champion is measured as soon as their labels come)."""
    end = as_of - dt.timedelta(days=cfg.data.label_delay_days)
    start, end = day_range(end, cfg.windows.monitor_days)
    trained_end = last_labelled_day(cfg, champion.tags.get("data.end", "1970-01-01"))
    return max(start, trained_end + dt.timedelta(days=1)), end, trained_end


def _blank_result(perf, champion, start: dt.date, end: dt.date) -> dict[str, Any]:
    """The facts before any label is read: the holdout baseline, the levels, nothing triggered."""
    holdout_baseline = float(champion.tags.get(f"metric.{perf.metric}", "nan"))
    return {
        "metric": perf.metric,
        "window": [start.isoformat(), end.isoformat()],
        "labels": 0,
        "triggered": False,
        "level": "ok",
        "baseline": holdout_baseline,
        "baseline_source": "holdout",
        "baseline_holdout": holdout_baseline,
        "max_drop": perf.max_drop,
        "warn_drop": perf.warn_drop,
        "critical_drop": perf.critical_drop,
        "segments": [],
        "estimate": None,
    }


def _rolling_start(baseline_days: int, start: dt.date, trained_end: dt.date) -> dt.date:
    """The first day of the rolling baseline before a window beginning ``start``: up to
    ``baseline_days`` days back, never into the champion's training window."""
    return max(trained_end + dt.timedelta(days=1), start - dt.timedelta(days=baseline_days))


def _matured_rows(ctx: ModelContextLike, as_of: dt.date, start: dt.date, end: dt.date, trained_end: dt.date):
    """``(now, before)``: the labelled rows of ``start..end`` and of up to
    ``performance.baseline_days`` days before it (after the training window); ``None``
    without data."""
    cfg = ctx.cfg
    assert cfg.performance is not None  # read for a performance trigger only
    base_start = _rolling_start(cfg.performance.baseline_days, start, trained_end)
    window = load_window(cfg, ctx.settings, base_start, end, as_of=as_of, require_rows=False)
    if window.frame.empty:
        return None
    labelled = window.labelled
    event_day = labelled[cfg.data.timestamp_column].dt.date
    return labelled[(event_day >= start).to_numpy()], labelled[(event_day < start).to_numpy()]


def _baselines(ctx: ModelContextLike, champion, model, before, result: dict) -> tuple[dict[str, float], dict]:
    """``(daily, segment baselines)``: the champion's daily metric on the ``before`` rows; with
    at least ``performance.baseline_min_days`` of them their mean becomes the baseline in
    ``result`` (``rolling``) and the segment baselines come from those rows, else from the
    champion's holdout rows."""
    cfg = ctx.cfg
    perf = cfg.performance
    assert perf is not None  # read for a performance trigger only
    seg_baseline: dict[str, dict[str, dict]] = {}
    daily: dict[str, float] = {}
    if len(before):
        Xb, yb = xy(cfg, before)
        scores_b = predict_scores(model(), Xb, cfg.task)
        daily = daily_metrics(
            before[cfg.data.timestamp_column],
            yb,
            scores_b,
            metric=perf.metric,
            task=cfg.task,
            min_rows=perf.min_segment_labels,
        )
    if len(daily) >= perf.baseline_min_days:
        result.update(
            baseline=float(sum(daily.values()) / len(daily)),
            baseline_source="rolling",
            baseline_days=[min(daily), max(daily), len(daily)],
        )
        if cfg.features.segments:
            seg_baseline = segment_metrics(
                before[cfg.features.segments], yb, scores_b, metric=perf.metric, task=cfg.task
            )
    elif cfg.features.segments:
        seg_baseline = _holdout_segment_metrics(ctx, champion, model)
    result["baseline_rolling_days"] = len(daily)
    return daily, seg_baseline


def _established_level(
    ctx: ModelContextLike, model, as_of: dt.date, start: dt.date, trained_end: dt.date, daily: dict[str, float]
) -> EstablishedLevel | None:
    """The level the champion established: the mean of its daily metric over its first
    ``performance.baseline_days`` matured days (from the day after its last labelled day, up
    to the day before the current window), with the standard error of that mean; ``None``
    with fewer than ``baseline_min_days`` (and 2) such days. The rolling baseline follows a
    slow decline down (at 100 rows a day a gradual concept change was never detected: each
    day's drop from the last 14 days stayed within noise); this level stays where the
    champion began. ``daily`` is the rolling baseline's daily metric: when it reaches back to
    the first day, those days are read from it, else they are loaded and scored."""
    cfg = ctx.cfg
    perf = cfg.performance
    assert perf is not None  # read for a performance trigger only
    first = trained_end + dt.timedelta(days=1)
    last = min(trained_end + dt.timedelta(days=perf.baseline_days), start - dt.timedelta(days=1))
    if last < first:
        return None
    if _rolling_start(perf.baseline_days, start, trained_end) == first:  # the rolling days begin there too
        days = {d: v for d, v in daily.items() if d <= last.isoformat()}
    else:
        window = load_window(cfg, ctx.settings, first, last, as_of=as_of, require_rows=False)
        rows = window.labelled if not window.frame.empty else window.frame
        if not len(rows):
            return None
        X, y = xy(cfg, rows)
        days = daily_metrics(
            rows[cfg.data.timestamp_column],
            y,
            predict_scores(model(), X, cfg.task),
            metric=perf.metric,
            task=cfg.task,
            min_rows=perf.min_segment_labels,
        )
    if len(days) < max(2, perf.baseline_min_days):
        return None
    return EstablishedLevel.of(days)


def _live_segments(cfg: ModelConfig, now, y, scores, seg_baseline: dict) -> list[dict]:
    """The live metric of each segment (``features.segments``) with its baseline."""
    if not cfg.features.segments:
        return []
    assert cfg.performance is not None  # read for a performance trigger only

    out = []
    for column, values in segment_metrics(
        now[cfg.features.segments], y, scores, metric=cfg.performance.metric, task=cfg.task
    ).items():
        for value, seg in values.items():
            base = seg_baseline.get(column, {}).get(value, {}).get("value", math.nan)
            out.append({"segment": column, "value": value, "rows": seg["rows"], "live": seg["value"], "baseline": base})
    return out


def _assess_drops(perf, result: dict, live: float) -> None:
    """The drop levels of the live metric and of each segment (a drop test, when there is
    one, decides ``triggered``)."""
    levels = dict(max_drop=perf.max_drop, warn_drop=perf.warn_drop, critical_drop=perf.critical_drop)
    overall = assess_drop(live, result["baseline"], perf.metric, **levels)
    result.update(
        live=live,
        drop=overall.drop,
        relative_drop=overall.relative_drop,
        level=overall.level,
        threshold=overall.threshold,
        triggered=overall.critical,
    )
    if "test" in result:
        result["triggered"] = result["test"]["significant"]
    for seg in result["segments"]:
        a = assess_drop(seg["live"], seg["baseline"], perf.metric, **levels)
        seg.update(
            drop=a.drop,
            relative_drop=a.relative_drop,
            level=a.level if seg["rows"] >= perf.min_segment_labels else "ok",
        )


def _estimated_performance(ctx: ModelContextLike, current: Window, model) -> dict[str, Any] | None:
    """CBPE on the rows of the current window whose labels have not arrived yet."""
    cfg = ctx.cfg
    perf = cfg.performance
    assert perf is not None  # read for a performance trigger only
    frame = current.frame
    unlabelled = frame[~frame["__label_known"].astype(bool)]
    out: dict[str, Any] = {
        "metric": perf.metric,
        "rows": int(len(unlabelled)),
        "window": [current.start.isoformat(), current.end.isoformat()],
    }
    if len(unlabelled) < perf.min_labels:
        out["reason"] = f"only {len(unlabelled)} rows without labels (< min_labels {perf.min_labels})"
        return out
    X = feature_frame(cfg, unlabelled)  # their targets are missing: not cast to labels
    proba = predict_scores(model(), X, cfg.task)
    est = estimate_performance(proba, perf.metric, draws=perf.estimate_draws, seed=cfg.training.seed)
    out.update(est.to_dict())
    return out


def _holdout_segment_metrics(ctx: ModelContextLike, champion, model) -> dict[str, dict[str, dict]]:
    """The champion's metric per segment on its own holdout rows (its training window read
    as of its training day, split as training split it); ``{}`` when that data is gone."""
    cfg = ctx.cfg
    tags = champion.tags
    if not (tags.get("data.start") and tags.get("data.end")):
        return {}
    try:
        window = load_window(
            cfg,
            ctx.settings,
            as_day(tags["data.start"]),
            as_day(tags["data.end"]),
            as_of=as_day(tags.get("trained_as_of") or tags["data.end"]),
        )
        holdout = split_frame(cfg, window.labelled).holdout
    except DataError as exc:
        log.warning("%s: no holdout rows for segment baselines of version %s: %s", cfg.name, champion.version, exc)
        return {}
    X, y = xy(cfg, holdout)
    scores = predict_scores(model(), X, cfg.task)
    assert cfg.performance is not None  # read for a performance trigger only
    return segment_metrics(holdout[cfg.features.segments], y, scores, metric=cfg.performance.metric, task=cfg.task)
