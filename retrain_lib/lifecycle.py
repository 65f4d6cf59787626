"""The steps of a model's lifecycle, as the DAGs (and the CLI, and tests) run them.

Every step takes the model name, the day it acts for (``as_of``, never "now") and small
inputs, and returns a small JSON-able dict: ids, URIs and metrics, never data. Data and
models live in the data root and MLflow. Steps are idempotent: running one again for the
same inputs does not create a second MLflow run, model version or promotion.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import os
import re
import subprocess
import warnings
from pathlib import Path
from typing import Any

from retrain_lib import audit, registry
from retrain_lib.adaptation_steps import (
    NO_CHANGE,
    NO_GAIN,
    REJECTED,
    adaptation_state,
    is_follow_up,
    metric_ses,
    promotion_outcome,
    record_adaptation,
    record_no_gain_acceptance,
    regime_tags,
    shift_facts,
    test_drop,
    training_change,
)
from retrain_lib.config import ModelConfig, load_model_config
from retrain_lib.data import Window, available_days, day_range, load_window
from retrain_lib.errors import ConfigError, DataError, RegistryError, StaleChampionError
from retrain_lib.rollout import PROMOTE
from retrain_lib.settings import PACKAGE_ROOT, Settings, load_settings

log = logging.getLogger(__name__)

RETRAIN = "retrain"
HEALTHY = "healthy"
ROLLBACK = "rollback"
SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")


# -----------------------------------------------------------------------------------------
# Context
# -----------------------------------------------------------------------------------------


class ModelContext:
    """A model's config with the platform settings and lazy MLflow handles."""

    def __init__(self, model: str, settings: Settings | None = None):
        self.settings = settings or load_settings()
        path = self.settings.models_dir / f"{model}.yaml"
        self.config_path = path
        self.cfg: ModelConfig = load_model_config(path, self.settings.platform)
        self._client = None
        self.models: dict[str, Any] = {}  # loaded models by URI, see load_model()

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def client(self):
        if self._client is None:
            # Some MLflow calls (registering a 'models:/m-...' source) open a default client
            # through the global tracking URI: point it at this platform's store as well.
            self.mlflow()
            self._client = registry.get_client(self.settings.tracking_uri, self.settings.registry_uri)
        return self._client

    def mlflow(self):
        """The ``mlflow`` module pointed at this platform's store, with the model's experiment."""
        import mlflow
        import mlflow.sklearn  # noqa: F401 - the flavour the platform logs and loads

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # set_*_uri also export MLFLOW_*_URI, which load_settings() reads as an override: keep
        # the environment as it was, so the next model's settings are not this model's store.
        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(self.settings.tracking_uri)
        mlflow.set_registry_uri(self.settings.registry_uri)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        return mlflow

    def experiment_id(self, *, monitor: bool = False) -> str:
        """The model's MLflow experiment (training and validation runs); with ``monitor=True``
        its monitor experiment, so the daily monitor runs do not crowd the training runs."""
        name = (self.settings.monitor_experiment_name if monitor else self.settings.experiment_name)(self.name)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.settings.tracking_uri.startswith("sqlite:"):
            location = (
                self.settings.state_dir / "mlflow" / "artifacts" / self.name / ("monitor" if monitor else "")
            ).as_uri()
        try:
            return self.client.create_experiment(
                name, artifact_location=location, tags={"retrain.model": self.name, "owner": self.cfg.owner}
            )
        except Exception:  # noqa: BLE001 - created concurrently: read it back
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def champion(self):
        return registry.get_alias_version(self.client, self.name, registry.CHAMPION)

    def ledger(self) -> audit.Ledger:
        return audit.Ledger.from_settings(self.settings)

    def record(self, event: str, as_of: str | None, actor: str, details: dict) -> dict:
        """Append a decision to the ledger; the champion move in ``details['moves']`` fills the
        ``before``/``after`` columns and ``details['reason']`` the ``reason`` column."""
        details = details or {}
        move = (
            next(
                (m for m in details.get("moves") or [] if isinstance(m, dict) and m.get("alias") == registry.CHAMPION),
                None,
            )
            or {}
        )
        return audit.Ledger.from_settings(self.settings).append(
            self.name,
            event,
            as_of=as_of,
            actor=actor,
            before=move.get("from"),
            after=move.get("to"),
            reason=str(details.get("reason") or ""),
            details=details,
        )


def _day(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        sha = out.stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def lock_hash() -> str:
    lock = PACKAGE_ROOT / "uv.lock"
    return hashlib.sha256(lock.read_bytes()).hexdigest()[:16] if lock.exists() else "unknown"


def _finite(metrics: dict) -> dict:
    return {k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(float(v))}


# -----------------------------------------------------------------------------------------
# Monitor
# -----------------------------------------------------------------------------------------


def reference_window(ctx: ModelContext, champion, rebased: tuple[str, str] | None = None) -> Window:
    """The most recent ``reference_days`` of the champion's training window (the inputs it
    was built for); before any champion, the oldest ``reference_days`` of data. ``rebased``:
    the window a recorded covariate shift moved the reference to
    (:func:`retrain_lib.adaptation.rebased_window`)."""
    cfg = ctx.cfg
    if champion is not None and rebased is not None:
        start, end = _day(rebased[0]), _day(rebased[1])
        return load_window(cfg, ctx.settings, start, end, as_of=end)
    if champion is not None and champion.tags.get("data.start") and champion.tags.get("data.end"):
        start, end = _day(champion.tags["data.start"]), _day(champion.tags["data.end"])
        start = max(start, end - dt.timedelta(days=cfg.windows.reference_days - 1))
        return load_window(cfg, ctx.settings, start, end, as_of=end)
    days = available_days(cfg, ctx.settings)
    if not days:
        raise DataError(
            f"no data for model {cfg.name!r} in its {cfg.data.source} source "
            f"({cfg.data.path or cfg.data.table}); check data in its config"
        )
    start = days[0]
    return load_window(cfg, ctx.settings, start, start + dt.timedelta(days=cfg.windows.reference_days - 1))


def champion_performance(
    ctx: ModelContext, champion, as_of: dt.date, current: Window | None = None, healthy=None
) -> dict[str, Any] | None:
    """Facts about the champion's performance on ``as_of``, for :func:`decide`.

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
      (:func:`retrain_lib.adaptation.drop_test`) against the better of the baseline and the
      model's armed ``healthy`` level (:func:`retrain_lib.adaptation.healthy_level`), so a
      degraded champion never becomes its own baseline; when it is significant, the
      estimated ``change_day``.

    Drops and levels are annotated for the report; :func:`decide` judges them again from the
    numbers, so the decision stays a pure function of these facts.
    """
    cfg = ctx.cfg
    perf = cfg.performance
    if champion is None or perf is None or not perf.enabled:
        return None
    from retrain_lib.performance import assess_drop, daily_metrics, segment_metrics
    from retrain_lib.training_data import xy

    end = as_of - dt.timedelta(days=cfg.data.label_delay_days)
    start, end = day_range(end, cfg.windows.monitor_days)
    trained_end = _day(champion.tags.get("data.end", "1970-01-01"))
    start = max(start, trained_end + dt.timedelta(days=1))
    holdout_baseline = float(champion.tags.get(f"metric.{perf.metric}", "nan"))
    result: dict[str, Any] = {
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

    def model():
        return load_model(ctx, f"models:/{ctx.name}/{champion.version}")

    if cfg.task == "classification" and current is not None and not current.frame.empty:
        result["estimate"] = _estimated_performance(ctx, current, model)
    if start > end:
        result["reason"] = "no matured labels since the champion was trained"
        return result
    base_start = max(trained_end + dt.timedelta(days=1), start - dt.timedelta(days=perf.baseline_days))
    window = load_window(cfg, ctx.settings, base_start, end, as_of=as_of, require_rows=False)
    if window.frame.empty:
        result["reason"] = "no data in the matured window"
        return result
    labelled = window.labelled
    event_day = labelled[cfg.data.timestamp_column].dt.date
    now = labelled[(event_day >= start).to_numpy()]
    before = labelled[(event_day < start).to_numpy()]
    result["labels"] = int(len(now))
    if len(now) < perf.min_labels:
        result["reason"] = f"only {len(now)} matured labels (< min_labels {perf.min_labels})"
        return result
    from retrain_lib.metrics import predict_scores

    X, y = xy(cfg, now)
    scores = predict_scores(model(), X, cfg.task)
    from retrain_lib.performance import metric_value

    live = metric_value(y, scores, perf.metric, cfg.task)
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
    if cfg.features.segments:
        for column, values in segment_metrics(
            now[cfg.features.segments], y, scores, metric=perf.metric, task=cfg.task
        ).items():
            for value, seg in values.items():
                base = seg_baseline.get(column, {}).get(value, {}).get("value", math.nan)
                result["segments"].append(
                    {"segment": column, "value": value, "rows": seg["rows"], "live": seg["value"], "baseline": base}
                )
    if perf.false_alarm_rate is not None:
        test_drop(cfg, result, y, scores, now, before, daily, healthy, champion.tags)
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
    return result


def _estimated_performance(ctx: ModelContext, current: Window, model) -> dict[str, Any] | None:
    """CBPE on the rows of the current window whose labels have not arrived yet."""
    from retrain_lib.metrics import predict_scores
    from retrain_lib.performance import estimate_performance
    from retrain_lib.training_data import feature_frame

    cfg = ctx.cfg
    perf = cfg.performance
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


def _holdout_segment_metrics(ctx: ModelContext, champion, model) -> dict[str, dict[str, dict]]:
    """The champion's metric per segment on its own holdout rows (its training window read
    as of its training day, split as training split it); ``{}`` when that data is gone."""
    from retrain_lib.metrics import predict_scores
    from retrain_lib.performance import segment_metrics
    from retrain_lib.training_data import split_frame, xy

    cfg = ctx.cfg
    tags = champion.tags
    if not (tags.get("data.start") and tags.get("data.end")):
        return {}
    try:
        window = load_window(
            cfg,
            ctx.settings,
            _day(tags["data.start"]),
            _day(tags["data.end"]),
            as_of=_day(tags.get("trained_as_of") or tags["data.end"]),
        )
        holdout = split_frame(cfg, window.labelled).holdout
    except DataError as exc:
        log.warning("%s: no holdout rows for segment baselines of version %s: %s", cfg.name, champion.version, exc)
        return {}
    X, y = xy(cfg, holdout)
    scores = predict_scores(model(), X, cfg.task)
    return segment_metrics(holdout[cfg.features.segments], y, scores, metric=cfg.performance.metric, task=cfg.task)


_FROM_REGISTRY = object()


def rollback_facts(
    ctx: ModelContext, champion, as_of: dt.date, performance: dict | None, *, previous=_FROM_REGISTRY
) -> dict[str, Any] | None:
    """Champion vs ``previous-champion`` on the same matured live labels (the performance
    window), for a champion promoted within ``rollback.within_days``; ``None`` when the
    config has no rollback or nothing can be compared. ``previous`` is the rollback target
    (default: read from the registry; the backtest passes its own, or ``None``)."""
    spec = ctx.cfg.rollback
    if spec is None or not spec.enabled or champion is None or not performance or "window" not in performance:
        return None
    promoted = champion.tags.get("promoted_as_of")
    if not promoted or (as_of - _day(promoted)).days > spec.within_days:
        return None
    if previous is _FROM_REGISTRY:
        previous = registry.get_alias_version(ctx.client, ctx.name, registry.PREVIOUS)
    if previous is None:
        return None
    from retrain_lib.metrics import predict_scores
    from retrain_lib.performance import metric_value
    from retrain_lib.training_data import xy

    cfg = ctx.cfg
    start, end = (_day(d) for d in performance["window"])
    facts: dict[str, Any] = {
        "champion": _str(champion.version),
        "previous": _str(previous.version),
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
    from retrain_lib.metrics import greater_is_better

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
    if promoted and (as_of - _day(promoted)).days > spec.within_days:
        return None
    from retrain_lib.serving.predlog_read import read_predictions
    from retrain_lib.serving.predlog_store import resolve_url

    url = resolve_url(ctx.settings, log_url)
    if url.startswith("sqlite:///") and not Path(url.split("///", 1)[1]).exists():
        return None  # no gateway has logged here
    now = now or dt.datetime.now(dt.UTC)
    since = now - dt.timedelta(minutes=spec.serving_minutes)
    frame = read_predictions(url, ctx.name, since, now, arm="champion")
    rows = frame[frame["version"] == _str(champion.version)]
    if rows.empty:
        return None
    cfg = ctx.cfg
    failed = rows["error"].notna()
    ok = rows[~failed]
    facts: dict[str, Any] = {
        "source": "prediction log",
        "window": [since.isoformat(), now.isoformat()],
        "champion": _str(champion.version),
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
    facts.update(labels=int(len(labelled)), previous=_str(previous.version) if previous is not None else None)
    if previous is None or len(labelled) < spec.min_labels:
        return facts
    import pandas as pd

    from retrain_lib.metrics import predict_scores
    from retrain_lib.performance import metric_value
    from retrain_lib.training_data import feature_frame

    X = feature_frame(cfg, pd.DataFrame(labelled["features"].tolist(), index=labelled.index))
    y = labelled["label"].to_numpy(float)
    if cfg.task == "classification":
        y = y.astype(int)
    metric = cfg.performance.metric
    live = metric_value(y, labelled["output"].to_numpy(float), metric, cfg.task)
    prev = metric_value(
        y, predict_scores(load_model(ctx, f"models:/{cfg.name}/{previous.version}"), X, cfg.task), metric, cfg.task
    )
    relative = _relative_worse(metric, live, prev)
    return {
        **facts,
        "champion_live": live,
        "previous_live": prev,
        "relative_worse": relative,
        "worse": bool(relative > spec.max_drop),
    }


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


def new_labels_since_training(ctx: ModelContext, champion, as_of: dt.date) -> dict[str, Any] | None:
    """Labelled rows of events after the champion's training window, known by ``as_of``,
    against its training rows (version tag ``rows.train``, else the run's param)."""
    cfg = ctx.cfg
    if champion is None or cfg.schedule.new_labels_share is None:
        return None
    since = _day(champion.tags.get("data.end", "1970-01-01")) + dt.timedelta(days=1)
    rows = 0
    if since <= as_of:
        window = load_window(cfg, ctx.settings, since, as_of, as_of=as_of, require_rows=False)
        rows = 0 if window.frame.empty else int(len(window.labelled))
    train_rows = champion.tags.get("rows.train")
    if not train_rows and getattr(champion, "run_id", None):
        try:
            train_rows = ctx.client.get_run(champion.run_id).data.params.get("rows.train")
        except Exception:  # noqa: BLE001 - a missing run only disables this signal
            log.warning("%s: cannot read rows.train of run %s", cfg.name, champion.run_id)
    return {"labelled_rows": rows, "train_rows": int(train_rows) if train_rows else None, "since": since.isoformat()}


def recent_retrain_requests(ctx: ModelContext, as_of: dt.date) -> list[str] | None:
    """Days before ``as_of`` within ``schedule.max_retrains.days`` on which the monitor
    requested a retrain (from the ledger); ``None`` without ``max_retrains``."""
    if ctx.cfg.schedule.max_retrains is None:
        return None
    return retrain_requests_within(ctx.cfg, as_of, audit.read_ledger(ctx.settings, ctx.name))


def retrain_requests_within(cfg: ModelConfig, as_of: dt.date, records) -> list[str] | None:
    """Pure part of :func:`recent_retrain_requests`: from ledger-shaped ``records``
    (``{event, as_of, details: {action}}``), the days before ``as_of`` within
    ``schedule.max_retrains.days`` on which the monitor requested a retrain."""
    limit = cfg.schedule.max_retrains
    if limit is None:
        return None
    first = as_of - dt.timedelta(days=limit.days - 1)
    days = {
        r["as_of"]
        for r in records
        if r.get("event") == "monitor"
        and (r.get("details") or {}).get("action") == RETRAIN
        and r.get("as_of")
        and first <= _day(r["as_of"]) < as_of
    }
    return sorted(days)


def _json_safe(value):
    """NaN floats become ``None`` (XCom and strict JSON readers reject NaN)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _signal(signal: str, triggered: bool, value, threshold, detail) -> dict[str, Any]:
    return {"signal": signal, "triggered": bool(triggered), "value": value, "threshold": threshold, "detail": detail}


def _segment_text(segments: list[dict], metric: str) -> str:
    return "; ".join(
        f"{s['segment']}={s['value']} {metric} {s['live']:.4f} vs {s['baseline']:.4f} "
        f"(drop {s['relative_drop']:.1%}, {s['level']}, {s['rows']} rows)"
        for s in segments
    )


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
) -> dict:
    """Retrain or not, with the reasons and the signals. Pure: the same facts give the same
    decision.

    Signals (each ``{signal, triggered, value, threshold, detail}``): ``drift`` (dataset
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
    from retrain_lib.metrics import greater_is_better
    from retrain_lib.performance import assess_drop, critical_limit

    reasons: list[str] = []
    notes: list[str] = []
    signals: list[dict] = []
    if champion is None:
        return {
            "action": RETRAIN,
            "reasons": ["no champion yet: train the first model"],
            "throttled": False,
            "signals": [_signal("champion", True, None, None, "no champion yet")],
        }
    serving_why = _serving_rollback(serving)
    if serving:
        signals.append(
            _signal(
                "serving",
                bool(serving_why),
                serving["error_rate"],
                serving["max_error_rate"],
                {
                    k: serving.get(k)
                    for k in (
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
                },
            )
        )
    if serving_why and serving.get("previous"):
        return {
            "action": ROLLBACK,
            "throttled": False,
            "signals": signals,
            "reasons": [
                f"rollback: champion v{serving['champion']} degraded in live serving: " + "; ".join(serving_why)
            ],
            "rollback": {"from": serving["champion"], "to": serving["previous"]},
        }
    if rollback and "worse" in rollback:
        m = rollback["metric"]
        text = (
            f"champion v{rollback['champion']} (promoted {rollback['promoted_as_of']}) {m} "
            f"{rollback['champion_live']:.4f} vs previous-champion v{rollback['previous']} "
            f"{rollback['previous_live']:.4f} on the same {rollback['labels']} matured labels: "
            f"{rollback['relative_worse']:.1%} worse (limit {rollback['max_drop']:.0%})"
        )
        signal = _signal(
            "rollback",
            rollback["worse"],
            rollback["relative_worse"],
            rollback["max_drop"],
            {k: rollback[k] for k in ("champion", "previous", "champion_live", "previous_live", "labels", "window")},
        )
        signals.append(signal)
        if rollback["worse"]:
            return {
                "action": ROLLBACK,
                "reasons": [f"rollback: {text}"],
                "throttled": False,
                "signals": signals,
                "rollback": {"from": rollback["champion"], "to": rollback["previous"]},
            }
    rebase = None
    if drift is not None:
        fired = bool(drift.get("dataset_drift"))
        top = ", ".join(f["explain"] for f in drift.get("top", []) if f.get("drifted"))
        signals.append(
            _signal(
                "drift",
                fired,
                drift.get("drifted_share"),
                drift.get("drift_share_threshold"),
                {"features": [f["name"] for f in drift.get("top", []) if f.get("drifted")]},
            )
        )
        text = (
            (
                f"data drift: {drift['drifted_share']:.0%} of features drifted "
                f"(>= {drift['drift_share_threshold']:.0%}): {top}"
            )
            if fired
            else ""
        )
        labels_decide = (
            cfg.adaptation is not None
            and cfg.adaptation.rebase_on_drift
            and cfg.performance is not None
            and cfg.performance.enabled
        )
        if fired and labels_decide:
            rebase = {"window": drift.get("current_window"), "champion_version": _str(champion.version)}
            ready = (
                (
                    dt.date.fromisoformat(drift["current_window"][0]) + dt.timedelta(days=cfg.data.label_delay_days)
                ).isoformat()
                if drift.get("current_window")
                else "?"
            )
            notes.append(
                f"{text}; recorded, drift reference rebased to {drift.get('current_window')}: the labels "
                f"of the shifted rows (matured from {ready}) decide a retrain, not the drift alone"
            )
        elif fired:
            reasons.append(text)
    pending = None  # the champion's follow-up (it learnt a change from a few days), unless a no-gain ended it
    if cfg.adaptation is not None and cfg.adaptation.follow_up:
        from retrain_lib.adaptation import follow_up

        pending = follow_up(
            champion.tags, as_of, label_delay_days=cfg.data.label_delay_days, training_days=cfg.windows.training_days
        )
        if pending is not None:
            # A retrain since this champion's deployment that brought no model ends its follow-ups.
            stopped = backoff is not None and backoff.not_deployed > 0
            signals.append(
                _signal(
                    "follow_up",
                    pending.due and not stopped,
                    pending.matured_days,
                    2 * pending.trained_days,
                    {
                        "change_day": pending.change_day,
                        "trained_days": pending.trained_days,
                        "stopped_by_no_gain": stopped,
                    },
                )
            )
            pending = None if stopped else pending
    perf_cfg = cfg.performance
    if performance and perf_cfg is not None:
        levels = dict(max_drop=perf_cfg.max_drop, warn_drop=perf_cfg.warn_drop, critical_drop=perf_cfg.critical_drop)
        metric = performance["metric"]
        if "live" in performance:
            a = assess_drop(performance["live"], performance["baseline"], metric, **levels)
            source = performance.get("baseline_source", "holdout")
            text = (
                f"{metric} {a.live:.4f} vs {source} baseline {a.baseline:.4f} "
                f"(drop {a.drop:.4f}, {a.relative_drop:.1%} of baseline"
                + (f" > {a.threshold})" if a.threshold else ")")
            )
            limit = critical_limit(a.baseline, metric, max_drop=perf_cfg.max_drop, critical_drop=perf_cfg.critical_drop)
            critical = a.critical
            test = performance.get("test")
            if test is not None:  # the drop as a test (performance.false_alarm_rate) decides
                from retrain_lib.change_detection import DropTest

                t = DropTest(**test)
                critical = t.significant
                text = f"{t.explain()} (baseline: {source})"
                limit = (
                    t.baseline
                    - t.z_limit * math.sqrt(t.live_se**2 + t.baseline_se**2) * (1 if greater_is_better(metric) else -1)
                    if math.isfinite(t.baseline)
                    else None
                )
            # Below the level it had before the change, but the regime was learnt and more of it
            # is coming: the follow-ups retrain when the days since the change have doubled.
            deferred = critical and pending is not None and source.startswith("healthy level")
            critical = critical and not deferred
            signals.append(
                _signal(
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
            )
            if critical:
                reasons.append(f"performance: {text}")
            elif deferred:
                notes.append(
                    f"performance: {text}"
                    + (
                        ""
                        if pending.due
                        else f"; waiting for the follow-up at "
                        f"{2 * pending.trained_days} matured day(s) since the change"
                    )
                )
            elif a.level == "warn" or (test is not None and a.level != "ok"):
                notes.append(f"performance warning (no retrain by itself): {text}")
            flagged = []
            for seg in performance.get("segments", []):
                if seg["rows"] < perf_cfg.min_segment_labels:
                    continue
                s = assess_drop(seg["live"], seg["baseline"], metric, **levels)
                if s.level != "ok":
                    flagged.append({**seg, "relative_drop": s.relative_drop, "drop": s.drop, "level": s.level})
            if performance.get("segments"):
                signals.append(
                    _signal(
                        "performance_segments",
                        False,
                        len(flagged),
                        None,
                        {
                            "min_segment_labels": perf_cfg.min_segment_labels,
                            "flagged": [
                                {
                                    k: f[k]
                                    for k in ("segment", "value", "rows", "live", "baseline", "relative_drop", "level")
                                }
                                for f in flagged
                            ],
                        },
                    )
                )
            if flagged:
                (reasons if critical else notes).append(
                    f"performance segments past a level: {_segment_text(flagged, metric)}"
                )
        est = performance.get("estimate") or {}
        if est.get("value") is not None and not math.isnan(est["value"]):
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
                f"(drop {e.drop:.4f}, {e.relative_drop:.1%} of baseline"
                + (f" > {e.threshold})" if e.threshold else ")")
            )
            limit = critical_limit(e.baseline, metric, critical_drop=perf_cfg.critical_drop)
            signals.append(
                _signal(
                    "performance_estimate",
                    fired,
                    e.live,
                    limit,
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
            )
            if fired:
                reasons.append(f"performance (estimated, labels not yet arrived): {text}")
            elif e.level != "ok":
                notes.append(
                    f"performance warning (estimated{'' if perf_cfg.use_estimate else ', use_estimate off'}): {text}"
                )
    share = cfg.schedule.new_labels_share
    if share is not None and new_labels and new_labels.get("train_rows"):
        got = new_labels["labelled_rows"] / new_labels["train_rows"]
        fired = got >= share
        signals.append(_signal("new_labels", fired, got, share, dict(new_labels)))
        if fired:
            reasons.append(
                f"new labels: {new_labels['labelled_rows']} labelled rows matured since "
                f"{new_labels['since']} ({got:.0%} of the champion's {new_labels['train_rows']} training "
                f"rows >= new_labels_share {share:.0%})"
            )
    trained = champion.tags.get("trained_as_of")
    age = (as_of - _day(trained)).days if trained else None
    limit = cfg.schedule.max_days_without_retrain
    if limit and age is not None:
        signals.append(_signal("age", age >= limit, age, limit, {"trained_as_of": trained}))
        if age >= limit:
            reasons.append(f"champion is {age} days old (>= max_days_without_retrain {limit})")
    if pending is not None and pending.due:
        reasons.append(pending.explain())
    if shift is not None:
        signals.append(
            _signal("shift_labels", shift.due, shift.matured_days, shift.wait_days, {"shift_day": shift.shift_day})
        )
        if shift.due:
            reasons.append(shift.explain())
    extra = {"rebase": rebase} if rebase else {}
    if performance and performance.get("change_day"):
        extra["change_day"] = performance["change_day"]
    if not reasons:
        return {
            "action": HEALTHY,
            "reasons": [*notes, "no trigger fired"],
            "throttled": False,
            "signals": signals,
            **extra,
        }
    if backoff is not None and backoff.blocked:
        signals.append(
            _signal(
                "backoff",
                True,
                backoff.not_deployed,
                backoff.wait_days,
                {"last_attempt": backoff.last_attempt, "attempts": backoff.attempts},
            )
        )
        return {
            "action": HEALTHY,
            "throttled": True,
            "signals": signals,
            **extra,
            "reasons": [*reasons, *notes, f"throttled: {backoff.explain()}"],
        }
    gap = cfg.schedule.min_retrain_interval_days
    if age is not None and age < gap:
        signals.append(_signal("min_retrain_interval", True, age, gap, {"trained_as_of": trained}))
        return {
            "action": HEALTHY,
            "throttled": True,
            "signals": signals,
            **extra,
            "reasons": [
                *reasons,
                *notes,
                f"throttled: last retrain {age} day(s) ago (< min_retrain_interval_days {gap})",
            ],
        }
    most = cfg.schedule.max_retrains
    if most is not None and recent_retrains is not None:
        over = len(recent_retrains) >= most.count
        signals.append(
            _signal(
                "max_retrains",
                over,
                len(recent_retrains),
                most.count,
                {"days": most.days, "requests": list(recent_retrains)},
            )
        )
        if over:
            return {
                "action": HEALTHY,
                "throttled": True,
                "signals": signals,
                **extra,
                "reasons": [
                    *reasons,
                    *notes,
                    f"throttled: {len(recent_retrains)} retrain request(s) in the last {most.days} days "
                    f"({', '.join(recent_retrains)}) (max_retrains {most.count} per {most.days} days)",
                ],
            }
    return {"action": RETRAIN, "reasons": [*reasons, *notes], "throttled": False, "signals": signals, **extra}


def drift_history(ctx: ModelContext, as_of: dt.date) -> list[bool]:
    """Raw dataset-level drift of the earlier monitor checks (ledger), oldest first, one per day."""
    by_day: dict[str, bool] = {}
    share = ctx.cfg.drift.drift_share
    for rec in audit.read_ledger(ctx.settings, ctx.name):
        day, d = rec.get("as_of"), rec.get("details") or {}
        if rec.get("event") != "monitor" or not day or day >= as_of.isoformat():
            continue
        raw = d.get("dataset_drift_raw")
        if raw is None and d.get("drifted_share") is not None:
            raw = d["drifted_share"] >= share  # records written before the raw value was kept
        if raw is not None:
            by_day[day] = bool(raw)
    return [by_day[k] for k in sorted(by_day)]


def drift_facts(
    cfg: ModelConfig,
    reference: Window,
    current: Window,
    *,
    weights: dict[str, float] | None = None,
    prediction: dict | None = None,
    history=None,
) -> dict[str, Any]:
    """The monitor's drift summary of ``current`` against ``reference`` (what :func:`decide`
    reads): the report, its windows, the top features, and with ``drift.persistence`` the
    persistent alarm over ``history`` (the earlier raw decisions, oldest first, or a callable
    returning them). Pure: no registry, ledger or MLflow."""
    from retrain_lib.drift import drift_for_config

    report = drift_for_config(cfg, reference.frame, current.frame, weights=weights)
    summary = report.to_dict()
    if prediction is not None:
        summary["prediction"] = prediction
    summary["reference_window"] = [reference.start.isoformat(), reference.end.isoformat()]
    summary["current_window"] = [current.start.isoformat(), current.end.isoformat()]
    summary["top"] = [
        {
            "name": f.name,
            "method": f.method,
            "score": f.score,
            "p_value": f.p_value,
            "threshold": f.threshold,
            "drifted": f.drifted,
            "explain": f.explain(),
        }
        for f in report.top(3)
    ]
    if cfg.drift.persistence is not None:
        from retrain_lib.calibration import apply_persistence

        past = history() if callable(history) else list(history or [])
        summary = apply_persistence(summary, past, k=cfg.drift.persistence.k, n=cfg.drift.persistence.n)
    return summary


def claim_report_dir(model_dir: Path, as_of: dt.date) -> Path:
    """A new directory for one monitor run's reports: ``<day>``, or ``<day>.2``, ``<day>.3``...
    when an earlier run of the same day holds it, so that every ledger record keeps pointing
    at its own reports. Claimed with an exclusive ``mkdir``: two runs never share one."""
    model_dir.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = model_dir / (as_of.isoformat() if n == 1 else f"{as_of.isoformat()}.{n}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"{model_dir} holds 10,000 report directories of {as_of}; remove old ones")


def monitor_model(model: str, as_of, *, settings: Settings | None = None, actor: str = "cli") -> dict[str, Any]:
    """Check drift and performance for ``as_of`` and decide whether to retrain."""
    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    as_of = _day(as_of)
    champion = ctx.champion()
    start, end = day_range(as_of, cfg.windows.monitor_days)
    current = load_window(cfg, ctx.settings, start, end, as_of=as_of)
    validation, validation_report = _monitor_validation(ctx, current)
    _check_numeric_features(cfg, current)
    drift_summary = None
    reference = None
    state = adaptation_state(ctx, champion, as_of)
    if cfg.drift.enabled:
        reference = reference_window(ctx, champion, state.rebased)
        weights = importance_weights(champion) if cfg.drift.weight_by_importance else None
        prediction = None
        if champion is not None and cfg.drift.prediction:
            prediction = _prediction_drift(ctx, champion, reference, current)
        drift_summary = drift_facts(
            cfg, reference, current, weights=weights, prediction=prediction, history=(lambda: drift_history(ctx, as_of))
        )
    performance = _json_safe(champion_performance(ctx, champion, as_of, current, healthy=state.healthy))
    new_labels = new_labels_since_training(ctx, champion, as_of)
    recent = recent_retrain_requests(ctx, as_of)
    # one read of the rollback target, so both checks compare against the same version
    previous = None
    if champion is not None and cfg.rollback is not None and cfg.rollback.enabled:
        previous = registry.get_alias_version(ctx.client, ctx.name, registry.PREVIOUS)
    rollback = _json_safe(rollback_facts(ctx, champion, as_of, performance, previous=previous))
    serving = _json_safe(serving_facts(ctx, champion, as_of, previous=previous))
    decision = decide(
        cfg,
        as_of=as_of,
        champion=champion,
        drift=drift_summary,
        performance=performance,
        new_labels=new_labels,
        recent_retrains=recent,
        rollback=rollback,
        serving=serving,
        backoff=state.backoff,
        shift=shift_facts(cfg, state.records, champion, as_of),
    )
    record_adaptation(
        ctx.record,
        cfg,
        as_of.isoformat(),
        actor,
        decision,
        performance,
        state.healthy,
        _str(champion.version) if champion else None,
        champion.tags if champion else None,
    )
    pred = (drift_summary or {}).get("prediction")
    if pred:  # the champion's outputs: reported with the decision, not a trigger of their own
        decision["signals"] = [
            *decision.get("signals", []),
            {
                "signal": "prediction_drift",
                "triggered": False,
                "value": pred["score"],
                "threshold": pred["threshold"],
                "detail": pred["explain"],
            },
        ]
        if pred["drifted"]:
            decision["reasons"] = [*decision["reasons"], f"prediction drift (reported): {pred['explain']}"]
    report_dir = claim_report_dir(ctx.settings.reports_dir / cfg.name, as_of)
    html_path, report_error = None, None
    if reference is not None:
        html_path, report_error = _drift_html(
            ctx, reference, current, report_dir / "drift_report.html", (drift_summary or {}).get("features")
        )
    validation_path = None
    if validation_report is not None:
        validation_path = report_dir / "validation.json"
        validation_path.write_text(json.dumps(validation_report.to_dict(), indent=2, default=str))
    result = {
        "model": cfg.name,
        "as_of": as_of.isoformat(),
        "action": decision["action"],
        "reasons": decision["reasons"],
        "throttled": decision["throttled"],
        "signals": decision["signals"],
        "champion_version": _str(champion.version) if champion else None,
        "drift": drift_summary,
        "performance": performance,
        "validation": validation,
        "rollback": rollback,
        "serving": serving,
        "drift_report_path": str(html_path) if html_path else None,
        "report_error": report_error,
        "config_hash": cfg.config_hash(),
    }
    report_path = report_dir / "monitor.json"
    report_path.write_text(json.dumps(result, indent=2, default=str))
    result["report_path"] = str(report_path)
    result["mlflow_run_id"] = _log_monitor_run(
        ctx, result, report_path, html_path=html_path, validation_path=validation_path
    )
    ctx.record(
        "monitor",
        as_of.isoformat(),
        actor,
        {
            "action": result["action"],
            "reasons": result["reasons"],
            "signals": result["signals"],
            "champion_version": result["champion_version"],
            "drifted_share": drift_summary["drifted_share"] if drift_summary else None,
            "dataset_drift_raw": (
                drift_summary.get("dataset_drift_raw", drift_summary["dataset_drift"]) if drift_summary else None
            ),
            "top": [
                {k: f[k] for k in ("name", "method", "score", "p_value", "threshold", "drifted")}
                for f in (drift_summary or {}).get("top", [])
            ],
            "validation": None
            if validation is None
            else {
                k: validation.get(k)
                for k in ("success", "expectations", "failed_expectations", "failed", "error")
                if k in validation
            },
            "mlflow_run_id": result["mlflow_run_id"],
            "report": str(report_path),
            "drift_report": result["drift_report_path"],
            "report_error": report_error,
        },
    )
    return result


def _check_numeric_features(cfg: ModelConfig, window: Window) -> None:
    """Stop with a :class:`DataError` naming the partitions and an example value when a numeric
    feature holds values that are not numbers (a schema change upstream): neither drift nor the
    champion's predictions can be computed on them, and guessing a conversion would hide it."""
    import pandas as pd

    frame = window.frame
    bad: dict[str, tuple[list[str], Any]] = {}
    for col in cfg.features.numeric:
        if col not in frame.columns or pd.api.types.is_numeric_dtype(frame[col]) or frame[col].isna().all():
            continue
        values = frame[col]
        wrong = values.notna() & pd.to_numeric(values, errors="coerce").isna()
        if not wrong.any():
            continue
        days = sorted({d.date().isoformat() for d in pd.to_datetime(frame.loc[wrong, cfg.data.timestamp_column])})
        labels = cfg.data.labels_path or "\0"
        files = [str(f) for f in window.files if Path(str(f)).stem in days and labels not in str(f)]
        bad[col] = (files or days, values[wrong].iloc[0])
    if bad:
        raise DataError(
            "; ".join(
                f"numeric feature {col!r} of {cfg.name} holds non-numeric values (e.g. {example!r}) in "
                f"{', '.join(where)}"
                for col, (where, example) in bad.items()
            )
            + "; fix the data upstream (the column's type changed) and run the monitor again"
        )


def _monitor_validation(ctx: ModelContext, window: Window):
    """Expectations on the monitor's current window: ``(summary, report)``, or ``(None, None)``
    without a ``validation`` section. A failure (or a crash of the validation itself) is
    recorded, never raised: the monitor still decides on drift and performance."""
    cfg = ctx.cfg
    if cfg.validation is None or not cfg.validation.enabled:
        return None, None
    from retrain_lib.validation import validate_window

    try:
        report = validate_window(cfg, window)
    except Exception as exc:  # noqa: BLE001 - validation must not stop the monitor
        log.exception("data validation of %s for %s could not run", cfg.name, window.as_of)
        return {"success": None, "error": f"{type(exc).__name__}: {exc}"}, None
    summary = {**report.summary(), "window": [window.start.isoformat(), window.end.isoformat()]}
    if not report.success:
        log.warning(
            "%s: the current window %s..%s fails %d expectation(s); the monitor carries on: %s",
            cfg.name,
            window.start,
            window.end,
            len(report.failed),
            "; ".join(report.explain()),
        )
    return summary, report


def _drift_html(ctx: ModelContext, reference: Window, current: Window, path: Path, features=None):
    """The Evidently drift report with the tests the drift check ran (its ``features``): ``(path, None)``,
    or ``(None, error)`` when it failed (the monitor's decision does not depend on it)."""
    from retrain_lib.reports import drift_html_report

    try:
        return drift_html_report(ctx.cfg, reference.frame, current.frame, path, features=features), None
    except Exception as exc:  # noqa: BLE001 - a report failure must not stop the monitor
        log.exception("the drift report of %s could not be built", ctx.name)
        return None, f"{type(exc).__name__}: {exc}"


def _log_monitor_run(
    ctx: ModelContext,
    result: dict,
    report_path: Path,
    *,
    html_path: Path | None = None,
    validation_path: Path | None = None,
) -> str:
    mlflow = ctx.mlflow()
    exp = ctx.experiment_id(monitor=True)
    tags = {
        "retrain.kind": "monitor",
        "retrain.as_of": result["as_of"],
        "retrain.action": result["action"],
        "retrain.model": ctx.name,
    }
    validation = result.get("validation")
    if validation is not None:
        tags["retrain.validation"] = {True: "passed", False: "failed"}.get(validation.get("success"), "error")
    with mlflow.start_run(experiment_id=exp, run_name=f"monitor {result['as_of']}", tags=tags) as run:
        metrics: dict[str, float] = {}
        if result["drift"]:
            metrics["drifted_share"] = result["drift"]["drifted_share"]
            for f in result["drift"]["features"]:
                metrics[f"drift.{f['name']}.{f['method']}"] = f["score"]
        perf = result["performance"] or {}
        if "live" in perf:
            metrics[f"live.{perf['metric']}"] = perf["live"]
            metrics[f"baseline.{perf['metric']}"] = perf["baseline"]
        for seg in perf.get("segments") or []:
            if seg.get("live") is not None:
                name = re.sub(r"[^A-Za-z0-9_.\- ]", "_", f"{seg['segment']}.{seg['value']}")
                metrics[f"live.{perf['metric']}.{name}"] = seg["live"]
        if (perf.get("estimate") or {}).get("value") is not None:
            metrics[f"estimated.{perf['metric']}"] = perf["estimate"]["value"]
        if validation and validation.get("success") is not None:
            metrics["validation.failed_expectations"] = validation["failed_expectations"]
        mlflow.log_metrics(_finite(metrics))
        mlflow.log_artifact(str(report_path), artifact_path="monitor")
        if html_path is not None:
            from retrain_lib.reports import link_to_artifact

            mlflow.log_artifact(str(html_path), artifact_path="monitor")
            link_to_artifact(html_path, run.info.artifact_uri, "monitor")  # stored once, not twice
        if validation_path is not None:
            mlflow.log_artifact(str(validation_path), artifact_path="monitor")
        return run.info.run_id


# -----------------------------------------------------------------------------------------
# Retrain
# -----------------------------------------------------------------------------------------


def training_window(cfg: ModelConfig, as_of: dt.date) -> tuple[dt.date, dt.date]:
    return day_range(as_of, cfg.windows.training_days)


def validate_training_data(cfg: ModelConfig, window: Window) -> list[str]:
    """Problems that make a window unfit for training (empty list when fit)."""
    problems = []
    labelled = window.labelled
    frame = window.frame
    if len(labelled) < 100:
        problems.append(f"only {len(labelled)} labelled rows (need at least 100)")
    for col in cfg.features.all:
        if frame[col].isna().all():
            problems.append(f"feature {col!r} is empty (all values missing)")
        elif frame[col].isna().mean() > 0.5:
            problems.append(f"feature {col!r} is {frame[col].isna().mean():.0%} missing (> 50%)")
    for col in cfg.features.numeric:
        import pandas as pd

        if not pd.api.types.is_numeric_dtype(frame[col]):
            problems.append(f"numeric feature {col!r} has dtype {frame[col].dtype}")
    if cfg.task == "classification" and len(labelled):
        classes = sorted(labelled[cfg.features.target].dropna().unique().tolist())
        if len(classes) != 2:
            problems.append(f"target {cfg.features.target!r} has classes {classes[:5]}, expected two")
    if frame[cfg.data.id_column].duplicated().any():
        problems.append(
            f"id column {cfg.data.id_column!r} has {int(frame[cfg.data.id_column].duplicated().sum())} duplicates"
        )
    return problems


def snapshot_data(model: str, as_of, *, settings: Settings | None = None, actor: str = "cli") -> dict[str, Any]:
    """Fix the training window and its content hash, and validate it."""
    ctx = ModelContext(model, settings)
    as_of = _day(as_of)
    start, end = training_window(ctx.cfg, as_of)
    window = load_window(ctx.cfg, ctx.settings, start, end, as_of=as_of)
    problems = validate_training_data(ctx.cfg, window)
    report = None
    if ctx.cfg.validation is not None and ctx.cfg.validation.enabled:
        from retrain_lib.validation import validate_window

        report = validate_window(ctx.cfg, window)
        problems += report.explain()
    snap = {
        "model": model,
        "as_of": as_of.isoformat(),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "fingerprint": window.fingerprint,
        "rows": int(len(window.frame)),
        "labelled_rows": int(len(window.labelled)),
        "files": len(window.files),
        "problems": problems,
        "valid": not problems,
    }
    if not problems:
        from retrain_lib.lineage import snapshot_training_set

        snap["dvc"] = snapshot_training_set(
            ctx.settings, model, window.frame, as_of=as_of, fingerprint=window.fingerprint
        )
    if report is None and not problems:
        return snap
    quarantine = None
    if problems:
        from retrain_lib.validation import quarantine_batch

        quarantine = quarantine_batch(
            ctx.cfg,
            window,
            data_root=ctx.settings.data_root,
            state_dir=ctx.settings.state_dir,
            report=report,
            problems=problems,
            extra={"actor": actor},
        )
    run_id = _log_validation_run(ctx, snap, report, quarantine)
    snap["validation"] = {
        "expectations": len(report.results) if report else 0,
        "failed_expectations": len(report.failed) if report else 0,
        "mlflow_run_id": run_id,
        "quarantine": str(quarantine) if quarantine else None,
    }
    if problems:
        ctx.record(
            "data_validation_failed",
            as_of.isoformat(),
            actor,
            {
                "problems": problems,
                "window": [snap["start"], snap["end"]],
                "fingerprint": snap["fingerprint"],
                "failed": [
                    {
                        "check": r.check,
                        "column": r.column,
                        "expectation": r.expectation,
                        "observed": r.observed_value,
                        "unexpected_count": r.unexpected_count,
                        "unexpected_percent": r.unexpected_percent,
                        "examples": list(dict.fromkeys(map(repr, r.partial_unexpected_list)))[:5],
                    }
                    for r in (report.failed if report else [])
                ],
                "quarantine": snap["validation"]["quarantine"],
                "mlflow_run_id": run_id,
            },
        )
    return snap


def _log_validation_run(ctx: ModelContext, snap: dict, report, quarantine: Path | None) -> str:
    """An MLflow run (``retrain.kind=validation``) with the report as a JSON artifact.
    Idempotent: the same data, config and day reuse the finished run."""
    exp = ctx.experiment_id()
    key = f"{snap['as_of']}|{snap['fingerprint']}|{ctx.cfg.config_hash()}"
    done = ctx.client.search_runs(
        [exp],
        filter_string=f"tags.`retrain.validation_key` = '{key}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if done:
        return done[0].info.run_id
    mlflow = ctx.mlflow()
    valid = snap["valid"]
    tags = {
        "retrain.kind": "validation",
        "retrain.model": ctx.name,
        "retrain.as_of": snap["as_of"],
        "data.start": snap["start"],
        "data.end": snap["end"],
        "data.fingerprint": snap["fingerprint"],
        "config.hash": ctx.cfg.config_hash(),
        "validation.success": str(valid).lower(),
    }
    if quarantine is not None:
        tags["validation.quarantine"] = str(quarantine)
    payload = {
        "window": [snap["start"], snap["end"]],
        "valid": valid,
        "problems": snap["problems"],
        "quarantine": str(quarantine) if quarantine else None,
        **(report.to_dict() if report else {}),
    }
    with mlflow.start_run(experiment_id=exp, run_name=f"validation {snap['as_of']}", tags=tags) as run:
        mlflow.log_metrics(
            {
                "failed_expectations": len(report.failed) if report else 0,
                "expectations": len(report.results) if report else 0,
                "problems": len(snap["problems"]),
                "rows": snap["rows"],
                "success": float(valid),
            }
        )
        mlflow.log_dict(payload, "validation/report.json")
        if quarantine is not None and (quarantine / "manifest.json").exists():
            mlflow.log_artifact(str(quarantine / "manifest.json"), artifact_path="validation")
        # Last: a run with this tag counts as finished work that a retry may reuse.
        mlflow.set_tag("retrain.validation_key", key)
        return run.info.run_id


def training_rows(ctx: ModelContext, snap: dict):
    """The labelled rows of a snapshot: the exact DVC version when the snapshot has one (what
    ``retrain reproduce`` reads back), else the data source, checked against the fingerprint."""
    if snap.get("dvc"):
        from retrain_lib.lineage import LABEL_KNOWN_COLUMN, load_training_set

        key = f"dvc:{snap['dvc']['rev']}:{snap['dvc']['md5']}"
        if key not in ctx.models:
            frame = load_training_set(ctx.settings, snap["dvc"]["path"], snap["dvc"]["rev"], snap["dvc"]["md5"])
            ctx.models[key] = frame[frame[LABEL_KNOWN_COLUMN].astype(bool)]
        return ctx.models[key]
    return _load_snapshot(ctx, snap).labelled


def _load_snapshot(ctx: ModelContext, snap: dict) -> Window:
    window = load_window(ctx.cfg, ctx.settings, _day(snap["start"]), _day(snap["end"]), as_of=_day(snap["as_of"]))
    if window.fingerprint != snap["fingerprint"]:
        raise DataError(
            f"data of {ctx.name} for {snap['start']}..{snap['end']} changed since the snapshot "
            f"({snap['fingerprint']} -> {window.fingerprint}); re-run the retrain from the start"
        )
    return window


def permutation_importances(cfg: ModelConfig, pipeline, X, y, *, max_rows: int = 2000) -> dict[str, float]:
    """Permutation importance of each feature on (a seeded sample of) the holdout, clipped at 0
    and normalised to sum 1: what the monitor weights drift by (``drift.weight_by_importance``)."""
    import numpy as np
    from sklearn.inspection import permutation_importance

    if len(X) > max_rows:
        rows = np.random.default_rng(cfg.training.seed).choice(len(X), max_rows, replace=False)
        X, y = X.iloc[rows], np.asarray(y)[rows]
    if cfg.task == "classification" and len(np.unique(y)) < 2:
        return {}
    scoring = "roc_auc" if cfg.task == "classification" else "neg_root_mean_squared_error"
    res = permutation_importance(pipeline, X, y, scoring=scoring, n_repeats=3, random_state=cfg.training.seed)
    raw = {f: max(float(v), 0.0) for f, v in zip(X.columns, res.importances_mean)}
    total = sum(raw.values())
    return {f: (v / total if total > 0 else 1.0 / len(raw)) for f, v in raw.items()}


def importance_weights(champion) -> dict[str, float] | None:
    """Feature weights from the champion's ``importance.<feature>`` tags (``None`` if absent)."""
    if champion is None:
        return None
    weights = {k[len("importance.") :]: float(v) for k, v in champion.tags.items() if k.startswith("importance.")}
    return weights if weights and sum(weights.values()) > 0 else None


def _prediction_drift(ctx: ModelContext, champion, reference: Window, current: Window) -> dict[str, Any]:
    """Drift of the champion's outputs between the reference and current windows (reported)."""
    from retrain_lib.drift import prediction_drift
    from retrain_lib.metrics import predict_scores

    cfg = ctx.cfg
    model = load_model(ctx, f"models:/{cfg.name}/{champion.version}")
    ref = predict_scores(model, reference.frame[cfg.features.all], cfg.task)
    cur = predict_scores(model, current.frame[cfg.features.all], cfg.task)
    res = prediction_drift(ref, cur, method="psi", threshold=cfg.drift.prediction_threshold, bins=cfg.drift.bins)
    return {
        "method": res.method,
        "score": res.score,
        "threshold": res.threshold,
        "drifted": res.drifted,
        "explain": res.explain(),
    }


@contextlib.contextmanager
def _quiet_skops_import():
    """Without the ~1,200 warnings Airflow's deprecated-module shims emit when skops is first
    imported in a task (skops looks up each scipy ufunc in every loaded module): only
    ``FutureWarning`` (Airflow's ``DeprecatedImportWarning``) raised from ``skops.io._utils``
    about an ``airflow.`` attribute."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"The `airflow\.", category=FutureWarning, module=r"skops\.io\._utils"
        )
        yield


def load_model(ctx: ModelContext, uri: str):
    """A model by URI, loaded once per context (a monitor run uses the champion several times)."""
    if uri not in ctx.models:
        with _quiet_skops_import():
            ctx.models[uri] = ctx.mlflow().sklearn.load_model(uri)
    return ctx.models[uri]


def _trusted_types(model) -> list[str]:
    with _quiet_skops_import():
        import skops.io as sio

        found = sio.get_untrusted_types(data=sio.dumps(model))
    bad = [t for t in found if not t.startswith(SKOPS_TRUSTED_PREFIXES)]
    if bad:
        raise DataError(f"model holds types outside {SKOPS_TRUSTED_PREFIXES}: {bad}")
    return found


def train_candidate(
    model: str, snap: dict, *, settings: Settings | None = None, run_key: str = "", actor: str = "cli"
) -> dict[str, Any]:
    """Train on the snapshot's training part, log everything to MLflow, return the run.

    ``run_key`` identifies the attempt (the Airflow run id): a retry with the same key
    reuses the finished MLflow run instead of training a second model.
    """
    from retrain_lib.metrics import evaluate
    from retrain_lib.training import fit
    from retrain_lib.training_data import split_frame, xy

    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    parent = ctx.champion() if cfg.training.warm_start else None
    parent_uri = f"models:/{cfg.name}/{parent.version}" if parent is not None else None
    # The parent is part of the key: a retry after the champion moved must not reuse a model
    # warm-started from another version.
    key = f"{run_key or 'manual'}|{snap['fingerprint']}|{cfg.config_hash()}|{parent_uri or ''}"
    exp = ctx.experiment_id()
    done = ctx.client.search_runs(
        [exp], filter_string=f"tags.`retrain.run_key` = '{key}' and attributes.status = 'FINISHED'", max_results=1
    )
    if done:
        run = done[0]
        log.info("reusing finished training run %s for key %s", run.info.run_id, key)
        out = {
            "run_id": run.info.run_id,
            "model_uri": run.data.tags["retrain.model_uri"],
            "metrics": {k[len("holdout.") :]: v for k, v in run.data.metrics.items() if k.startswith("holdout.")},
            "reused": True,
        }
        if run.data.tags.get("retrain.selection_model_uri"):
            out.update(
                selection=json.loads(run.data.tags["retrain.selection"]),
                selection_model_uri=run.data.tags["retrain.selection_model_uri"],
            )
        return out
    timeout = cfg.training.timeout_minutes * 60 if cfg.training.timeout_minutes else None
    labelled = training_rows(ctx, snap)
    init_model = load_model(ctx, parent_uri) if parent_uri else None
    chosen = None
    if cfg.adaptation is not None:
        from retrain_lib.candidates import estimate_change, train_candidates

        champion = ctx.champion()
        change = NO_CHANGE
        if champion is not None:
            change = training_change(
                champion.tags,
                _day(snap["start"]),
                lambda: estimate_change(
                    cfg,
                    labelled,
                    load_model(ctx, f"models:/{cfg.name}/{champion.version}"),
                    champion.tags.get("data.end"),
                ),
                lambda: audit.read_ledger(ctx.settings, ctx.name),
                _str(champion.version),
                training_days=cfg.windows.training_days,
            )
        chosen = train_candidates(
            cfg,
            labelled,
            as_of=_day(snap["as_of"]),
            change=change.day,
            allowed_prefixes=ctx.settings.platform.allowed_estimator_prefixes,
            init_model=init_model,
            init_model_ref=parent_uri,
            timeout_s=timeout,
            change_source=change.source,
        )
        pipeline, info = chosen.model, chosen.info
        from retrain_lib.candidates import selection_rows
        from retrain_lib.training_data import Split

        split = Split(*selection_rows(cfg, labelled, chosen.selection.to_dict()))
        X_hold, y_hold = xy(cfg, split.holdout)
        metrics = evaluate(chosen.eval_model, X_hold, y_hold, cfg.task)
    else:
        split = split_frame(cfg, labelled)
        pipeline, info = fit(
            cfg,
            split.train,
            ctx.settings.platform.allowed_estimator_prefixes,
            as_of=_day(snap["as_of"]),
            init_model=init_model,
            init_model_ref=parent_uri,
            timeout_s=timeout,
        )
        X_hold, y_hold = xy(cfg, split.holdout)
        metrics = evaluate(pipeline, X_hold, y_hold, cfg.task)
    duration = info.duration_s
    mlflow = ctx.mlflow()
    from mlflow.models import infer_signature

    tags = {
        "retrain.kind": "train",
        "retrain.model": cfg.name,
        "retrain.actor": actor,
        "retrain.as_of": snap["as_of"],
        "data.start": snap["start"],
        "data.end": snap["end"],
        "data.fingerprint": snap["fingerprint"],
        "config.hash": cfg.config_hash(),
        "git.commit": git_commit(),
        "lock.hash": lock_hash(),
    }
    if (snap.get("validation") or {}).get("mlflow_run_id"):
        tags["validation.run_id"] = snap["validation"]["mlflow_run_id"]
    if snap.get("dvc"):
        from retrain_lib.lineage import lineage_tags

        tags.update(lineage_tags(snap["dvc"]))
    if info.warm_started_from:
        tags["training.warm_start_from"] = info.warm_started_from
    with mlflow.start_run(experiment_id=exp, run_name=f"train {snap['as_of']}", tags=tags) as run:
        params = {
            "estimator": cfg.training.estimator,
            "seed": cfg.training.seed,
            "split.method": cfg.training.split.method,
            "split.holdout_fraction": cfg.training.split.holdout_fraction,
            "window.start": snap["start"],
            "window.end": snap["end"],
            "rows.train": len(split.train),
            "rows.holdout": len(split.holdout),
            "features.numeric": ",".join(cfg.features.numeric),
            "features.categorical": ",".join(cfg.features.categorical),
        }
        params.update({f"model.{k}": v for k, v in cfg.training.params.items()})
        params.update(
            {
                "rows.window": snap.get("rows"),
                "rows.labelled": len(split.train) + len(split.holdout),
                "training.recency": json.dumps(cfg.training.recency.model_dump()) if cfg.training.recency else "none",
                "training.timeout_s": timeout,
                "training.warm_start_from": info.warm_started_from,
                "training.child_process": info.child_process,
            }
        )
        if snap.get("dvc"):
            params.update({"data.dvc_md5": snap["dvc"]["md5"], "data.dvc_rev": snap["dvc"]["rev"]})
        mlflow.log_params(params)
        mlflow.log_metrics({f"holdout.{k}": v for k, v in _finite(metrics).items()})
        mlflow.log_metric("train.duration_s", duration)
        if info.weighted_rows_share is not None:
            mlflow.log_metrics(
                {
                    "train.recent_rows_share": info.weighted_rows_share,
                    "train.recent_weight_share": info.recent_weight_share or 0.0,
                }
            )
        if info.notes:
            mlflow.set_tag("training.notes", "; ".join(info.notes)[:4000])
        mlflow.log_metrics(
            {f"importance.{k}": v for k, v in _finite(permutation_importances(cfg, pipeline, X_hold, y_hold)).items()}
        )
        mlflow.log_dict(cfg.model_dump(mode="json"), "config/model.json")
        example = X_hold.head(5)
        signature = infer_signature(
            example,
            pipeline.predict_proba(example)[:, 1] if cfg.task == "classification" else pipeline.predict(example),
        )
        import sklearn

        requirements = [f"scikit-learn=={sklearn.__version__}", f"mlflow=={mlflow.__version__}"]
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            skops_trusted_types=_trusted_types(pipeline),
        )
        run_id = run.info.run_id
        extra: dict[str, Any] = {}
        if chosen is not None:
            extra = _log_candidates(mlflow, exp, chosen, snap, requirements, signature)
        mlflow.set_tag("retrain.model_uri", info.model_uri)
        # Last: a run with this tag counts as finished work that a retry may reuse.
        mlflow.set_tag("retrain.run_key", key)
    log.info("trained %s on %s..%s: %s", cfg.name, snap["start"], snap["end"], metrics)
    return {"run_id": run_id, "model_uri": info.model_uri, "metrics": _finite(metrics), "reused": False, **extra}


def _log_candidates(mlflow, exp: str, chosen, snap: dict, requirements: list[str], signature) -> dict[str, Any]:
    """Inside the training run: one child run per candidate (window, rows, score on the newest
    labels), the chosen recipe's model before its refit (what the gates compare with the
    champion) and the choice as a tag and an artifact. Returns what the later steps read."""
    selection = chosen.selection.to_dict()
    for cand in chosen.selection.candidates:
        with mlflow.start_run(
            experiment_id=exp,
            run_name=f"candidate {cand.name} {snap['as_of']}",
            nested=True,
            tags={
                "retrain.kind": "candidate",
                "retrain.candidate": cand.name,
                "retrain.chosen": str(cand.name == chosen.selection.chosen).lower(),
                "retrain.as_of": snap["as_of"],
            },
        ):
            mlflow.log_params(
                {
                    "rows.train": cand.train_rows,
                    "since": cand.since or "window start",
                    "recency": json.dumps(cand.recency) if cand.recency else "none",
                }
            )
            if cand.value is not None:
                mlflow.log_metric(f"selection.{chosen.selection.metric}", cand.value)
            if cand.problem:
                mlflow.set_tag("retrain.problem", cand.problem[:4000])
    logged = mlflow.sklearn.log_model(
        chosen.eval_model,
        name="selection_model",
        signature=signature,
        pip_requirements=requirements,
        skops_trusted_types=_trusted_types(chosen.eval_model),
    )
    mlflow.log_dict(selection, "adaptation/selection.json")
    mlflow.log_params(
        {
            "rows.final": chosen.final_rows,
            "adaptation.chosen": chosen.selection.chosen,
            "adaptation.change_day": chosen.selection.change_day or "none",
        }
    )
    mlflow.set_tag("retrain.selection", json.dumps(selection)[:7500])
    mlflow.set_tag("retrain.selection_model_uri", logged.model_uri)
    return {"selection": selection, "selection_model_uri": logged.model_uri}


def evaluate_candidate(model: str, snap: dict, trained: dict, *, settings: Settings | None = None) -> dict[str, Any]:
    """Score the candidate and the current champion on the same rows: the configured holdout,
    or with ``adaptation`` the newest matured labels the candidate was chosen on (scored by the
    chosen recipe's model from before its refit, which never saw them)."""
    from retrain_lib.candidates import selection_rows
    from retrain_lib.metrics import evaluate, predict_scores
    from retrain_lib.training_data import xy

    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    holdout = selection_rows(cfg, training_rows(ctx, snap), trained.get("selection"))[1]
    X, y = xy(cfg, holdout)
    scored_by = load_model(ctx, trained.get("selection_model_uri") or trained["model_uri"])
    candidate = evaluate(scored_by, X, y, cfg.task)
    out: dict[str, Any] = {}
    if cfg.adaptation is not None:
        out["candidate_se"] = metric_ses(cfg, y, predict_scores(scored_by, X, cfg.task))
    champion = ctx.champion()
    champion_metrics = None
    if champion is not None:
        champion_metrics = evaluate(load_model(ctx, f"models:/{cfg.name}/{champion.version}"), X, y, cfg.task)
        for k, v in _finite(champion_metrics).items():
            ctx.client.log_metric(trained["run_id"], f"champion.{k}", v)
    return {
        "candidate": _finite(candidate),
        "champion": _finite(champion_metrics) if champion_metrics else None,
        "champion_version": _str(champion.version) if champion else None,
        "holdout_rows": int(len(holdout)),
        **out,
    }


def gate_inputs(ctx: ModelContext, snap: dict, trained: dict, evaluation: dict):
    """What the gates look at: the same holdout rows scored by the candidate and by the
    champion the evaluation used, the training rows (leakage) and a latency measurement."""
    from retrain_lib.candidates import selection_rows
    from retrain_lib.gate_measures import measure_latency_ms
    from retrain_lib.gate_types import GateInputs
    from retrain_lib.metrics import predict_scores
    from retrain_lib.training_data import xy

    cfg = ctx.cfg
    train, holdout = selection_rows(cfg, training_rows(ctx, snap), trained.get("selection"))
    X, y = xy(cfg, holdout)
    candidate = load_model(ctx, trained.get("selection_model_uri") or trained["model_uri"])
    champion_version = evaluation.get("champion_version")
    champion = load_model(ctx, f"models:/{cfg.name}/{champion_version}") if champion_version else None
    needs_latency = any(g.type == "latency" for g in cfg.gates)
    served = load_model(ctx, trained["model_uri"]) if needs_latency else None
    return GateInputs(
        task=cfg.task,
        y_true=y,
        candidate_scores=predict_scores(candidate, X, cfg.task),
        champion_scores=predict_scores(champion, X, cfg.task) if champion is not None else None,
        holdout=holdout,
        train=train,
        candidate_metrics=evaluation["candidate"],
        champion_metrics=evaluation["champion"],
        latency_ms=measure_latency_ms(served, X, task=cfg.task, n=100, seed=cfg.training.seed)
        if needs_latency
        else None,
        target=cfg.features.target,
        features=list(cfg.features.all),
        seed=cfg.training.seed,
        champion_relative_floor=cfg.adaptation is not None,
    )


def check_gates(
    model: str,
    evaluation: dict,
    trained: dict,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    snap: dict | None = None,
    require_gain: bool | None = None,
) -> dict[str, Any]:
    """Every configured gate on the candidate (see :mod:`retrain_lib.gates`); fails closed.
    ``require_gain`` overrides ``adaptation.require_gain`` for this retrain (a person's run).

    With ``snap`` the gates see the holdout rows themselves (segments, fairness, calibration,
    latency, stability, bootstrap, leakage); without it only metric gates can be decided."""
    from retrain_lib.gate_types import GateResult
    from retrain_lib.gates import all_passed, evaluate_gates, run_gates

    ctx = ModelContext(model, settings)
    inputs = None
    if snap is None:
        results = evaluate_gates(ctx.cfg.gates, evaluation["candidate"], evaluation["champion"])
    else:
        try:
            inputs = gate_inputs(ctx, snap, trained, evaluation)
            results = run_gates(ctx.cfg.gates, inputs)
        except Exception as exc:  # noqa: BLE001 - inputs that cannot be built fail every gate, closed
            log.exception("gate inputs of %s could not be built", model)
            results = [
                GateResult("inputs", "", None, None, None, None, False, f"gate inputs could not be built: {exc}")
            ]
    passed = all_passed(results) and bool(results or not ctx.cfg.gates)
    champion = ctx.champion() if evaluation.get("champion_version") else None
    follow = is_follow_up(
        ctx.cfg,
        champion.tags
        if champion is not None and str(champion.version) == str(evaluation["champion_version"])
        else None,
        trained.get("selection"),
    )
    outcome, gain = promotion_outcome(ctx.cfg, passed, inputs, follow_up=follow, require_gain=require_gain)
    payload = {
        "follow_up": follow,
        "passed": outcome == PROMOTE,
        "gates_passed": passed,
        "outcome": outcome,
        "gain": gain.to_dict() if gain is not None else None,
        "results": [r.to_dict() for r in results],
        "failed": [r.to_dict() for r in results if not r.passed],
        "champion_version": evaluation["champion_version"],
    }
    ctx.client.set_tag(trained["run_id"], "gates.passed", str(passed).lower())
    ctx.client.set_tag(trained["run_id"], "retrain.outcome", outcome)
    ctx.mlflow()
    ctx.client.log_dict(trained["run_id"], _json_safe(payload), "gates/results.json")
    ctx.record(
        "gates",
        as_of,
        actor,
        {
            "run_id": trained["run_id"],
            "passed": passed,
            "outcome": outcome,
            "follow_up": follow,
            "gain": gain.explain() if gain is not None else None,
            "failed": [r.reason for r in results if not r.passed],
            "champion_version": evaluation["champion_version"],
        },
    )
    return _json_safe(payload)


def register_candidate(
    model: str, snap: dict, trained: dict, evaluation: dict, gates: dict, *, settings: Settings | None = None
) -> dict[str, Any]:
    """Register the candidate (idempotent per MLflow run) with its lineage tags."""
    if not gates["passed"]:
        raise RegistryError(f"refusing to register a candidate of {model} that failed its gates")
    ctx = ModelContext(model, settings)
    run = ctx.client.get_run(trained["run_id"])
    tags = {
        "data.start": snap["start"],
        "data.end": snap["end"],
        "data.fingerprint": snap["fingerprint"],
        "trained_as_of": snap["as_of"],
        "config.hash": run.data.tags.get("config.hash", ""),
        "git.commit": run.data.tags.get("git.commit", ""),
        "gates.passed": "true",
        "gates.summary": "; ".join(r["reason"] for r in gates["results"])[:4000],
    }
    from retrain_lib.approval import FEATURES_TAG, feature_signature

    results = gates["results"]
    tags.update(
        {
            "lock.hash": run.data.tags.get("lock.hash", ""),
            FEATURES_TAG: feature_signature(ctx.cfg),
            "gates.count": str(len(results)),
            "gates.skipped": str(sum(bool(r.get("skipped")) for r in results)),
            "approval": "required" if ctx.cfg.approval is not None else "not required",
        }
    )
    for key in ("dvc.path", "dvc.rev", "dvc.md5", "training.warm_start_from"):
        if run.data.tags.get(key):
            tags[key] = run.data.tags[key]
    tags.update({f"metric.{k}": repr(v) for k, v in evaluation["candidate"].items()})
    tags.update({f"metric_se.{k}": repr(v) for k, v in (evaluation.get("candidate_se") or {}).items() if v is not None})
    tags.update(regime_tags(trained.get("selection")))
    if "rows.train" in run.data.params:
        tags["rows.train"] = run.data.params["rows.train"]
    tags.update({k: repr(v) for k, v in run.data.metrics.items() if k.startswith("importance.")})
    source = trained["model_uri"]
    version = registry.register_version(
        ctx.client,
        ctx.name,
        run_id=trained["run_id"],
        source=source,
        tags=tags,
        description=f"Trained on {snap['start']}..{snap['end']}",
    )
    try:
        write_model_card(
            ctx, str(version.version), _card_info(ctx, snap, trained, evaluation, gates, run, str(version.version))
        )
    except Exception:  # noqa: BLE001 - the card documents the version; it never blocks it
        log.exception("model card of %s version %s could not be written", model, version.version)
    return {"version": str(version.version), "run_id": trained["run_id"]}


def _card_info(
    ctx: ModelContext, snap: dict, trained: dict, evaluation: dict, gates: dict, run, version: str
) -> dict[str, Any]:
    """What the model card of a version shows (see :mod:`retrain_lib.model_card`)."""
    from retrain_lib.metrics import evaluate
    from retrain_lib.training_data import split_frame, xy

    cfg = ctx.cfg
    split = split_frame(cfg, training_rows(ctx, snap))
    model = load_model(ctx, trained["model_uri"])
    segments: dict[str, dict] = {}
    for column in cfg.features.segments:
        for value, rows in split.holdout.groupby(column, observed=True):
            X, y = xy(cfg, rows)
            if cfg.task == "classification" and len(set(y)) < 2:
                continue
            segments.setdefault(column, {})[str(value)] = {
                **_finite(evaluate(model, X, y, cfg.task)),
                "rows": int(len(rows)),
            }
    params = run.data.params
    return _json_safe(
        {
            "model": cfg.name,
            "version": version,
            "description": cfg.description,
            "owner": cfg.owner,
            "task": cfg.task,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": {
                "start": snap["start"],
                "end": snap["end"],
                "as_of": snap["as_of"],
                "rows": snap.get("rows"),
                "labelled_rows": snap.get("labelled_rows"),
                "train_rows": len(split.train),
                "holdout_rows": len(split.holdout),
                "fingerprint": snap["fingerprint"],
                "dvc": snap.get("dvc") or {},
            },
            "features": {
                "target": cfg.features.target,
                "numeric": list(cfg.features.numeric),
                "categorical": list(cfg.features.categorical),
                "segments": list(cfg.features.segments),
            },
            "training": {
                "estimator": cfg.training.estimator,
                "params": dict(cfg.training.params),
                "seed": cfg.training.seed,
                "split": cfg.training.split.model_dump(),
                "recency": cfg.training.recency.model_dump() if cfg.training.recency else None,
                "warm_started_from": run.data.tags.get("training.warm_start_from"),
                "duration_s": run.data.metrics.get("train.duration_s"),
                "timeout_s": float(params["training.timeout_s"])
                if params.get("training.timeout_s") not in (None, "None")
                else None,
            },
            "metrics": evaluation["candidate"],
            "segment_metrics": segments,
            "gates": gates["results"],
            "approvals": [],
            "lineage": {
                "mlflow_run_id": trained["run_id"],
                "model_uri": trained["model_uri"],
                "git_commit": run.data.tags.get("git.commit"),
                "config_hash": run.data.tags.get("config.hash"),
                "lock_hash": run.data.tags.get("lock.hash"),
            },
            "limitations": [f"champion at evaluation: version {evaluation.get('champion_version') or 'none'}"],
        }
    )


def write_model_card(ctx: ModelContext, version: str, info: dict[str, Any]) -> None:
    """Render the card and log it (markdown, HTML and its input) to the version's MLflow run."""
    from retrain_lib.model_card import build_model_card

    markdown, html = build_model_card(info)
    run_id = info["lineage"]["mlflow_run_id"]
    ctx.mlflow()
    ctx.client.log_text(run_id, markdown, "model_card/model_card.md")
    ctx.client.log_text(run_id, html, "model_card/model_card.html")
    ctx.client.log_dict(run_id, info, "model_card/info.json")
    ctx.client.set_model_version_tag(ctx.name, version, "model_card", f"runs:/{run_id}/model_card/model_card.html")


def _add_approval_to_card(ctx: ModelContext, version: str, approval: dict) -> None:
    try:
        mv = ctx.client.get_model_version(ctx.name, version)
        ctx.mlflow()
        info = ctx.mlflow().artifacts.load_dict(f"runs:/{mv.run_id}/model_card/info.json")
        info.setdefault("approvals", []).append(approval)
        write_model_card(ctx, version, info)
    except Exception:  # noqa: BLE001 - the approval is in the ledger and the tags already
        log.exception("could not add the approval to the model card of %s version %s", ctx.name, version)


def deploy_candidate(
    model: str,
    registered: dict,
    evaluation: dict,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    reason: str = "",
    snap: dict | None = None,
    trained: dict | None = None,
    approval: dict | None = None,
    max_reevaluations: int = 3,
    mode: str | None = None,
) -> dict[str, Any]:
    """Deploy per config (or per ``mode``, which overrides ``deploy.mode`` for this run):
    ``direct`` promotes to champion, ``shadow``/``canary`` make the version the
    ``challenger`` for the rollout DAG.

    Promotion is compare-and-swap under the ledger's lock: ``champion`` moves only if it
    still is the version the candidate was evaluated against, and the ledger entry is written
    in the same critical section (if it cannot be written, the aliases are put back). When the
    champion moved meanwhile, the candidate is evaluated again against the new champion (with
    ``snap`` and ``trained``) and promoted only if it still passes every gate; otherwise it is
    rejected with that reason.
    """
    ctx = ModelContext(model, settings)
    mode = mode or ctx.cfg.deploy.mode
    if mode not in ("direct", "shadow", "canary"):
        raise ConfigError(f"deploy mode {mode!r} of {model} is not one of direct, shadow, canary")
    if mode != "direct" and evaluation.get("champion_version") is None and ctx.champion() is None:
        mode = "direct"  # the first model has nothing to be compared with live: it is promoted
    version = registered["version"]
    if approval is not None:
        record_approval(ctx, version, approval, as_of=as_of, actor=actor)
        if approval.get("answer") != "Approve":
            raise RegistryError(f"version {version} of {model} was not approved ({approval}); not deploying it")
    reevaluated: list[dict] = []
    for _attempt in range(max_reevaluations + 1):
        try:
            moves = _move_aliases(
                ctx,
                mode,
                version,
                evaluation,
                as_of=as_of,
                actor=actor,
                reason=reason,
                registered=registered,
                approval=approval,
                reevaluated=reevaluated,
            )
            break
        except StaleChampionError as exc:
            if snap is None or trained is None:
                raise
            log.warning("%s; evaluating version %s again against champion %s", exc, version, exc.current)
            evaluation = evaluate_candidate(model, snap, trained, settings=ctx.settings)
            gates = check_gates(model, evaluation, trained, settings=ctx.settings, as_of=as_of, actor=actor, snap=snap)
            reevaluated.append({"champion_was": exc.expected, "champion_now": exc.current, "passed": gates["passed"]})
            if not gates["passed"]:
                rejected = reject_candidate(
                    model,
                    trained,
                    gates,
                    settings=ctx.settings,
                    as_of=as_of,
                    actor=actor,
                    why=f"champion moved from version {exc.expected} to {exc.current} during the evaluation; "
                    "against the new champion the candidate fails its gates",
                )
                return {
                    "mode": mode,
                    "version": version,
                    "moves": [],
                    "rejected": True,
                    "failed": rejected["failed"],
                    "reevaluated": reevaluated,
                    "champion": _str(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION)),
                }
    else:
        raise RegistryError(
            f"champion of {model} moved {max_reevaluations + 1} times while version {version} was "
            "being promoted; stopping. Re-run the retrain when the registry is quiet"
        )
    return {
        "mode": mode,
        "version": version,
        "moves": [m.to_dict() for m in moves],
        "reevaluated": reevaluated,
        "champion": _str(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION)),
    }


def _move_aliases(
    ctx: ModelContext,
    mode: str,
    version: str,
    evaluation: dict,
    *,
    as_of,
    actor,
    reason,
    registered,
    approval,
    reevaluated,
) -> list:
    """One compare-and-swap attempt, atomic with its ledger entry."""
    with ctx.ledger().transaction() as tx:
        before = registry.aliases(ctx.client, ctx.name)
        if mode == "direct":
            moves = registry.promote_champion(
                ctx.client, ctx.name, version, expected_champion=evaluation["champion_version"]
            )
            event = "promote"
        else:
            moves = [registry.set_challenger(ctx.client, ctx.name, version)]
            event = "challenger"
        if not moves:
            return moves
        if mode == "direct" and as_of:
            ctx.client.set_model_version_tag(ctx.name, str(version), "promoted_as_of", str(as_of))
        alias = registry.CHAMPION if mode == "direct" else registry.CHALLENGER
        details = {
            "mode": mode,
            "version": version,
            "moves": [m.to_dict() for m in moves],
            "run_id": registered["run_id"],
            "reason": reason,
            "metrics": evaluation["candidate"],
            "champion_metrics": evaluation["champion"],
            "approval": approval,
            "reevaluated": reevaluated,
        }
        try:
            tx.append(
                ctx.name,
                event,
                as_of=as_of,
                actor=actor,
                before=before.get(alias),
                after=str(version),
                reason=reason,
                details=details,
            )
        except Exception:
            registry.restore_aliases(ctx.client, ctx.name, before)
            raise
    return moves


def record_approval(ctx: ModelContext, version: str, approval: dict, *, as_of: str | None, actor: str) -> None:
    """The human answer to a promotion request: in the ledger and on the version's tags."""
    for key, value in (
        ("approval.answer", approval.get("answer")),
        ("approval.by", approval.get("by")),
        ("approval.at", approval.get("at")),
        ("approval.timed_out", approval.get("timed_out")),
    ):
        if value is not None:
            ctx.client.set_model_version_tag(
                ctx.name, str(version), key, str(value).lower() if isinstance(value, bool) else str(value)
            )
    _add_approval_to_card(ctx, str(version), approval)
    event = "approval_timeout" if approval.get("timed_out") else "approval"
    ctx.record(
        event,
        as_of,
        actor,
        {
            "version": str(version),
            **approval,
            "reason": f"{approval.get('answer')} by {approval.get('by') or 'nobody (timeout)'}",
        },
    )


def approval_request(
    model: str,
    snap: dict,
    trained: dict,
    evaluation: dict,
    gates: dict,
    registered: dict,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
) -> dict[str, Any]:
    """Whether this promotion needs a human answer, and the text the approver reads."""
    from retrain_lib.approval import approval_reasons

    ctx = ModelContext(model, settings)
    champion = ctx.champion()
    run = ctx.client.get_run(trained["run_id"])
    rows = run.data.params.get("rows.train")
    reasons = approval_reasons(
        ctx.cfg,
        champion_tags=dict(champion.tags) if champion else None,
        gates=gates,
        train_rows=int(rows) if rows else None,
    )
    version = registered["version"]
    subject = f"Promote {model} version {version} to champion?"
    lines = [
        f"**{model}** version {version} passed its gates and waits for an approval.",
        "",
        "Why an approval is needed:",
        *[f"- {r}" for r in reasons],
        "",
        f"Training window {snap['start']}..{snap['end']} ({snap.get('rows')} rows), "
        f"champion: {evaluation.get('champion_version') or 'none'}.",
        "",
        "| metric | candidate | champion |",
        "|---|---|---|",
    ]
    champ = evaluation.get("champion") or {}
    for k, v in sorted(evaluation["candidate"].items()):
        c = champ.get(k)
        lines.append(f"| {k} | {v:.4f} | {'' if c is None else f'{c:.4f}'} |")
    lines += [
        "",
        "Gates:",
        *[f"- {'PASS' if r['passed'] else 'FAIL'} {r['reason']}" for r in gates["results"]],
        "",
        f"MLflow run: {ctx.settings.platform.mlflow_ui_url}/#/experiments/{run.info.experiment_id}/runs/"
        f"{trained['run_id']}",
        f"No answer within {ctx.cfg.approval.timeout_hours:g} h counts as a rejection." if ctx.cfg.approval else "",
    ]
    if reasons:
        ctx.record(
            "approval_requested",
            as_of,
            actor,
            {"version": str(version), "reasons": reasons, "run_id": trained["run_id"]},
        )
    return {"required": bool(reasons), "reasons": reasons, "subject": subject, "body": "\n".join(lines)}


def close_review(
    model: str,
    registered: dict,
    approval: dict,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
) -> dict[str, Any]:
    """After the approval step: a rejection or a timeout is recorded (ledger, version tags) and
    the version is tagged as not deployed; an approval was recorded by the deployment."""
    ctx = ModelContext(model, settings)
    version = registered["version"]
    if approval.get("answer") == "Approve":
        return {"version": version, "approved": True}
    record_approval(ctx, version, approval, as_of=as_of, actor=actor)
    ctx.client.set_model_version_tag(
        ctx.name,
        str(version),
        "retrain.decision",
        "rejected_by_approver" if not approval.get("timed_out") else "approval_timed_out",
    )
    why = (
        "no answer to the approval request in time"
        if approval.get("timed_out")
        else f"rejected by {approval.get('by')}"
    )
    ctx.record(
        "reject",
        as_of,
        actor,
        {"version": str(version), "run_id": registered["run_id"], "failed": [why], "reason": why},
    )
    log.warning("version %s of %s not deployed: %s", version, model, why)
    return {"version": version, "approved": False, "reason": why}


def rollback_model(
    model: str,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    reason: str = "",
    expected_champion: str | None = None,
) -> dict[str, Any]:
    """Move ``champion`` back to ``previous-champion`` in one step, atomic with its ledger entry.

    ``expected_champion`` is the version found degraded (default: the current champion); if the
    champion moved since, nothing happens and the reason says so (the degraded model is no longer
    serving)."""
    ctx = ModelContext(model, settings)
    expected = (
        expected_champion
        if expected_champion is not None
        else _str(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION))
    )
    with ctx.ledger().transaction() as tx:
        before = registry.aliases(ctx.client, ctx.name)
        try:
            moves = registry.rollback_champion(ctx.client, ctx.name, expected_champion=expected)
        except StaleChampionError as exc:
            log.warning("rollback of %s not needed any more: %s", model, exc)
            return {"rolled_back": False, "reason": str(exc), "champion": exc.current}
        try:
            tx.append(
                ctx.name,
                "rollback",
                as_of=as_of,
                actor=actor,
                before=before.get(registry.CHAMPION),
                after=before.get(registry.PREVIOUS),
                reason=reason or "champion degraded",
                details={"moves": [m.to_dict() for m in moves], "reason": reason or "champion degraded"},
            )
        except Exception:
            registry.restore_aliases(ctx.client, ctx.name, before)
            raise
    log.warning(
        "rolled %s back from version %s to %s: %s",
        model,
        before.get(registry.CHAMPION),
        before.get(registry.PREVIOUS),
        reason,
    )
    return {
        "rolled_back": True,
        "from": before.get(registry.CHAMPION),
        "to": before.get(registry.PREVIOUS),
        "moves": [m.to_dict() for m in moves],
        "reason": reason,
    }


def promote_version(
    model: str,
    version: str,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    reason: str,
    expected_champion: str | None = None,
) -> dict[str, Any]:
    """Make ``version`` the champion by hand, without gates (an emergency fix, a known-good
    version back). Compare-and-swap on ``expected_champion`` (default: the champion now),
    atomic with its ledger entry; the version is tagged ``promoted_by_hand``. Automatic
    rollback watches it like any new champion."""
    if not reason.strip():
        raise ConfigError("a promotion by hand needs a reason (kept in the ledger); pass --reason")
    ctx = ModelContext(model, settings)
    version = str(version)
    ctx.client.get_model_version(ctx.name, version)  # raises when it does not exist
    with ctx.ledger().transaction() as tx:
        before = registry.aliases(ctx.client, ctx.name)
        expected = expected_champion if expected_champion is not None else before.get(registry.CHAMPION)
        moves = registry.promote_champion(ctx.client, ctx.name, version, expected_champion=expected)
        if not moves:
            return {"promoted": False, "version": version, "reason": f"version {version} already is the champion"}
        for key, value in (("promoted_as_of", str(as_of or dt.date.today())), ("promoted_by_hand", actor)):
            ctx.client.set_model_version_tag(ctx.name, version, key, value)
        try:
            tx.append(
                ctx.name,
                "promote",
                as_of=as_of,
                actor=actor,
                before=before.get(registry.CHAMPION),
                after=version,
                reason=reason,
                details={
                    "mode": "by_hand",
                    "version": version,
                    "reason": reason,
                    "moves": [m.to_dict() for m in moves],
                },
            )
        except Exception:
            registry.restore_aliases(ctx.client, ctx.name, before)
            raise
    return {"promoted": True, "version": version, "moves": [m.to_dict() for m in moves], "reason": reason}


def reject_candidate(
    model: str,
    trained: dict,
    gates: dict,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    why: str = "",
) -> dict[str, Any]:
    ctx = ModelContext(model, settings)
    failed = [r["reason"] for r in gates["results"] if not r["passed"]]
    if gates.get("outcome") == NO_GAIN:
        from retrain_lib.champion_gain import Gain

        gain = Gain(**gates["gain"])
        ctx.client.set_tag(trained["run_id"], "retrain.decision", NO_GAIN)
        ctx.record(
            NO_GAIN,
            as_of,
            actor,
            {
                "run_id": trained["run_id"],
                "outcome": NO_GAIN,
                "gain": gates["gain"],
                "reason": why or f"no gain: {gain.explain()}",
            },
        )
        log.warning("candidate of %s not registered: %s", model, gain.explain())
        record_no_gain_acceptance(ctx.record, ctx.cfg, as_of, actor, trained.get("selection"))
        return {
            "rejected": True,
            "outcome": NO_GAIN,
            "failed": [],
            "gain": gates["gain"],
            "reason": gain.explain(),
            "run_id": trained["run_id"],
        }
    ctx.client.set_tag(trained["run_id"], "retrain.decision", "rejected")
    ctx.record(
        "reject",
        as_of,
        actor,
        {
            "run_id": trained["run_id"],
            "failed": failed,
            "outcome": REJECTED,
            "reason": why or "the candidate failed its gates",
        },
    )
    log.warning("candidate of %s rejected: %s", model, "; ".join(failed))
    return {"rejected": True, "outcome": REJECTED, "failed": failed, "run_id": trained["run_id"]}


def retrain_model(
    model: str, as_of, *, settings: Settings | None = None, actor: str = "cli", reason: str = "manual"
) -> dict[str, Any]:
    """The whole retrain path in one call (what the retrain DAG does task by task)."""
    as_of = _day(as_of).isoformat()
    snap = snapshot_data(model, as_of, settings=settings, actor=actor)
    if not snap["valid"]:
        return {"outcome": "invalid_data", "snapshot": snap}
    trained = train_candidate(model, snap, settings=settings, run_key=actor, actor=actor)
    evaluation = evaluate_candidate(model, snap, trained, settings=settings)
    gates = check_gates(model, evaluation, trained, settings=settings, as_of=as_of, actor=actor, snap=snap)
    if not gates["passed"]:
        return reject_candidate(model, trained, gates, settings=settings, as_of=as_of, actor=actor)
    registered = register_candidate(model, snap, trained, evaluation, gates, settings=settings)
    request = approval_request(
        model, snap, trained, evaluation, gates, registered, settings=settings, as_of=as_of, actor=actor
    )
    if request["required"]:
        # Outside Airflow nobody can be asked: the version stays registered, not deployed.
        return {
            "outcome": "approval_required",
            "reasons": request["reasons"],
            "snapshot": snap,
            "trained": trained,
            "evaluation": evaluation,
            "gates": gates,
            "registered": registered,
        }
    deployed = deploy_candidate(
        model,
        registered,
        evaluation,
        settings=settings,
        as_of=as_of,
        actor=actor,
        reason=reason,
        snap=snap,
        trained=trained,
    )
    if deployed.get("rejected"):
        return {"outcome": "rejected", "failed": deployed["failed"], "run_id": trained["run_id"], "deployed": deployed}
    return {
        "outcome": "deployed",
        "snapshot": snap,
        "trained": trained,
        "evaluation": evaluation,
        "gates": gates,
        "registered": registered,
        "deployed": deployed,
    }


def _str(value) -> str | None:
    return None if value is None else str(value)
