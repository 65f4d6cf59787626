"""The champion against ``previous-champion`` after a promotion, for the rollback decision:
both scored on the same matured labels (:func:`rollback_facts`), and the champion's live
traffic from the gateway's prediction log (:func:`serving_facts`): error rate, latency and
its metric on the requests whose labels came back."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

from retrain_lib.core.metrics import greater_is_better, predict_scores
from retrain_lib.core.values import as_day, str_or_none
from retrain_lib.learn.training_data import feature_frame, xy
from retrain_lib.serving.predlog_read import read_predictions
from retrain_lib.serving.predlog_store import resolve_url
from retrain_lib.stats.performance import metric_value
from retrain_lib.store import registry
from retrain_lib.store.data import load_window
from retrain_lib.store.model_context import ModelContext, ModelContextLike, load_model

_FROM_REGISTRY = object()


def rollback_facts(
    ctx: ModelContextLike, champion, as_of: dt.date, performance: dict | None, *, previous=_FROM_REGISTRY
) -> dict[str, Any] | None:
    """Champion vs ``previous-champion`` on the same matured live labels (the performance
    window), for a champion promoted within ``rollback.within_days``; ``None`` when the
    config has no rollback or nothing can be compared. ``previous`` is the rollback target
    (default: read from the registry; the backtest passes its own, or ``None``)."""
    spec = ctx.cfg.rollback
    if spec is None or not spec.enabled or champion is None or not performance or "window" not in performance:
        return None
    promoted = champion.tags.get("promoted_as_of")
    if not promoted or (as_of - as_day(promoted)).days > spec.within_days:
        return None
    if previous is _FROM_REGISTRY:
        previous = registry.get_alias_version(ctx.client, ctx.name, registry.PREVIOUS)
    if previous is None:
        return None

    cfg = ctx.cfg
    assert cfg.performance is not None  # an enabled rollback requires a performance section (config check)
    start, end = (as_day(d) for d in performance["window"])
    facts: dict[str, Any] = {
        "champion": str_or_none(champion.version),
        "previous": str_or_none(previous.version),
        "promoted_as_of": promoted,
        "window": performance["window"],
        "labels": 0,
        "max_drop": spec.max_drop,
        "metric": cfg.performance.metric,
    }
    if start > end:
        return {**facts, "reason": "no matured labels since the promotion"}
    window = load_window(cfg, ctx.settings, start, end, as_of=as_of, require_rows=False)
    rows = window.labelled if not window.frame.empty else window.frame
    facts["labels"] = int(len(rows))
    if len(rows) < spec.min_labels:
        return {**facts, "reason": f"only {len(rows)} matured labels (< rollback.min_labels {spec.min_labels})"}
    X, y = xy(cfg, rows)
    metric = cfg.performance.metric
    live = {}
    for role, version in (("champion", champion.version), ("previous", previous.version)):
        live[role] = metric_value(
            y, predict_scores(load_model(ctx, f"models:/{cfg.name}/{version}"), X, cfg.task), metric, cfg.task
        )
    relative = _relative_worse(metric, live["champion"], live["previous"])
    return {
        **facts,
        "champion_live": live["champion"],
        "previous_live": live["previous"],
        "relative_worse": relative,
        "worse": bool(relative > spec.max_drop),
    }


def _relative_worse(metric: str, champion: float, previous: float) -> float:
    """How much worse ``champion`` is than ``previous`` on ``metric``, relative to ``previous``
    (in the metric's direction; negative when better)."""
    worse_by = (previous - champion) if greater_is_better(metric) else (champion - previous)
    return worse_by / abs(previous) if previous else math.inf


def serving_facts(
    ctx: ModelContext,
    champion,
    as_of: dt.date,
    *,
    now: dt.datetime | None = None,
    log_url: str | None = None,
    previous=_FROM_REGISTRY,
) -> dict[str, Any] | None:
    """The champion's live traffic from the gateway's prediction log: its requests of the last
    ``rollback.serving_minutes`` (wall clock: the log is live, whatever day ``as_of`` is), their
    error rate and p95 latency, and, on the requests whose labels came back, its metric
    against ``previous-champion`` scoring the same logged features. ``None`` when rollback is
    off, the champion was promoted more than ``within_days`` before ``as_of``, or there is no
    log or no traffic. ``previous`` as in :func:`rollback_facts`."""
    spec = ctx.cfg.rollback
    if spec is None or not spec.enabled or champion is None:
        return None
    promoted = champion.tags.get("promoted_as_of")
    if promoted and (as_of - as_day(promoted)).days > spec.within_days:
        return None

    url = resolve_url(ctx.settings, log_url)
    if url.startswith("sqlite:///") and not Path(url.split("///", 1)[1]).exists():
        return None  # no gateway has logged here
    now = now or dt.datetime.now(dt.UTC)
    since = now - dt.timedelta(minutes=spec.serving_minutes)
    frame = read_predictions(url, ctx.name, since, now, arm="champion")
    rows = frame[frame["version"] == str_or_none(champion.version)]
    if rows.empty:
        return None
    cfg = ctx.cfg
    assert cfg.performance is not None  # an enabled rollback requires a performance section (config check)
    failed = rows["error"].notna()
    ok = rows[~failed]
    facts: dict[str, Any] = {
        "source": "prediction log",
        "window": [since.isoformat(), now.isoformat()],
        "champion": str_or_none(champion.version),
        "requests": int(len(rows)),
        "errors": int(failed.sum()),
        "error_rate": float(failed.mean()),
        "p95_latency_ms": float(ok["latency_ms"].quantile(0.95)) if len(ok) else None,
        "min_requests": spec.min_requests,
        "max_error_rate": spec.max_error_rate,
        "max_p95_latency_ms": spec.max_p95_latency_ms,
        "metric": cfg.performance.metric,
        "max_drop": spec.max_drop,
        "min_labels": spec.min_labels,
    }
    labelled = ok[ok["label"].notna()]
    if previous is _FROM_REGISTRY:
        previous = registry.get_alias_version(ctx.client, ctx.name, registry.PREVIOUS)
    facts.update(labels=int(len(labelled)), previous=str_or_none(previous.version) if previous is not None else None)
    if previous is None or len(labelled) < spec.min_labels:
        return facts
    return {**facts, **_compare_on_requests(ctx, labelled, previous)}


def _compare_on_requests(ctx: ModelContext, labelled, previous) -> dict[str, Any]:
    """The champion's logged outputs and ``previous``'s scores of the same logged features,
    each against the labels that came back: their metric and how much worse the champion is."""
    import pandas as pd

    cfg = ctx.cfg
    X = feature_frame(cfg, pd.DataFrame(labelled["features"].tolist(), index=labelled.index))
    y = labelled["label"].to_numpy(float)
    if cfg.task == "classification":
        y = y.astype(int)
    assert cfg.performance is not None and cfg.rollback is not None  # see serving_facts
    metric = cfg.performance.metric
    live = metric_value(y, labelled["output"].to_numpy(float), metric, cfg.task)
    prev = metric_value(
        y, predict_scores(load_model(ctx, f"models:/{cfg.name}/{previous.version}"), X, cfg.task), metric, cfg.task
    )
    relative = _relative_worse(metric, live, prev)
    return {
        "champion_live": live,
        "previous_live": prev,
        "relative_worse": relative,
        "worse": bool(relative > cfg.rollback.max_drop),
    }
