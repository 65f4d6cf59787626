"""The steps of a model's lifecycle, as the DAGs (and the CLI, and tests) run them.

Every step takes the model name, the day it acts for (``as_of``, never "now") and small
inputs, and returns a small JSON-able dict: ids, URIs and metrics, never data. Data and
models live in the data root and MLflow. Steps are idempotent: running one again for the
same inputs does not create a second MLflow run, model version or promotion.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from retrain_lib import audit, registry
from retrain_lib.config import ModelConfig, load_model_config
from retrain_lib.data import Window, available_days, day_range, load_window
from retrain_lib.errors import DataError, RegistryError
from retrain_lib.settings import PACKAGE_ROOT, Settings, load_settings

log = logging.getLogger(__name__)

RETRAIN = "retrain"
HEALTHY = "healthy"
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

    def experiment_id(self) -> str:
        name = self.settings.experiment_name(self.name)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.settings.tracking_uri.startswith("sqlite:"):
            location = (self.settings.state_dir / "mlflow" / "artifacts" / self.name).as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location,
                                                 tags={"retrain.model": self.name, "owner": self.cfg.owner})
        except Exception:  # noqa: BLE001 - created concurrently: read it back
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def champion(self):
        return registry.get_alias_version(self.client, self.name, registry.CHAMPION)

    def record(self, event: str, as_of: str | None, actor: str, details: dict) -> dict:
        return audit.record_decision(self.settings.ledger_path, model=self.name, event=event, as_of=as_of,
                                     actor=actor, details=details)


def _day(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
        sha = out.stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(PACKAGE_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=False).stdout.strip()
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


def reference_window(ctx: ModelContext, champion) -> Window:
    """The most recent ``reference_days`` of the champion's training window (the inputs it
    was built for); before any champion, the oldest ``reference_days`` of data."""
    cfg = ctx.cfg
    if champion is not None and champion.tags.get("data.start") and champion.tags.get("data.end"):
        start, end = _day(champion.tags["data.start"]), _day(champion.tags["data.end"])
        start = max(start, end - dt.timedelta(days=cfg.windows.reference_days - 1))
        return load_window(cfg, ctx.settings, start, end, as_of=end)
    days = available_days(cfg, ctx.settings)
    if not days:
        raise DataError(f"no data for model {cfg.name!r} in its {cfg.data.source} source "
                        f"({cfg.data.path or cfg.data.table}); check data in its config")
    start = days[0]
    return load_window(cfg, ctx.settings, start, start + dt.timedelta(days=cfg.windows.reference_days - 1))


def champion_performance(ctx: ModelContext, champion, as_of: dt.date) -> dict[str, Any] | None:
    """The champion's metric on labels that have matured by ``as_of``, vs its baseline."""
    cfg = ctx.cfg
    perf = cfg.performance
    if champion is None or perf is None or not perf.enabled:
        return None
    from retrain_lib.metrics import evaluate, greater_is_better
    from retrain_lib.training import xy

    end = as_of - dt.timedelta(days=cfg.data.label_delay_days)
    start, end = day_range(end, cfg.windows.monitor_days)
    trained_end = _day(champion.tags.get("data.end", "1970-01-01"))
    start = max(start, trained_end + dt.timedelta(days=1))
    result: dict[str, Any] = {"metric": perf.metric, "window": [start.isoformat(), end.isoformat()],
                              "labels": 0, "triggered": False}
    if start > end:
        result["reason"] = "no matured labels since the champion was trained"
        return result
    window = load_window(cfg, ctx.settings, start, end, as_of=as_of, require_rows=False)
    if window.frame.empty:
        result["reason"] = "no data in the matured window"
        return result
    labelled = window.labelled
    result["labels"] = int(len(labelled))
    if len(labelled) < perf.min_labels:
        result["reason"] = f"only {len(labelled)} matured labels (< min_labels {perf.min_labels})"
        return result
    model = load_model(ctx, f"models:/{ctx.name}/{champion.version}")
    X, y = xy(cfg, labelled)
    live = evaluate(model, X, y, cfg.task)[perf.metric]
    baseline = float(champion.tags.get(f"metric.{perf.metric}", "nan"))
    drop = (baseline - live) if greater_is_better(perf.metric) else (live - baseline)
    result.update(live=live, baseline=baseline, drop=drop, max_drop=perf.max_drop,
                  triggered=bool(not math.isnan(drop) and drop > perf.max_drop))
    return result


def decide(cfg: ModelConfig, *, as_of: dt.date, champion, drift: dict | None, performance: dict | None) -> dict:
    """Retrain or not, with the reasons. Pure: the same facts give the same decision."""
    reasons: list[str] = []
    if champion is None:
        return {"action": RETRAIN, "reasons": ["no champion yet: train the first model"], "throttled": False}
    if drift and drift.get("dataset_drift"):
        top = ", ".join(f["explain"] for f in drift.get("top", []) if f.get("drifted"))
        reasons.append(f"data drift: {drift['drifted_share']:.0%} of features drifted "
                       f"(>= {drift['drift_share_threshold']:.0%}): {top}")
    if performance and performance.get("triggered"):
        reasons.append(f"performance: {performance['metric']} {performance['live']:.4f} vs baseline "
                       f"{performance['baseline']:.4f} (drop {performance['drop']:.4f} > {performance['max_drop']:g})")
    trained = champion.tags.get("trained_as_of")
    age = (as_of - _day(trained)).days if trained else None
    limit = cfg.schedule.max_days_without_retrain
    if limit and age is not None and age >= limit:
        reasons.append(f"champion is {age} days old (>= max_days_without_retrain {limit})")
    if not reasons:
        return {"action": HEALTHY, "reasons": ["no trigger fired"], "throttled": False}
    gap = cfg.schedule.min_retrain_interval_days
    if age is not None and age < gap:
        return {"action": HEALTHY, "throttled": True,
                "reasons": [*reasons, f"throttled: last retrain {age} day(s) ago (< min_retrain_interval_days {gap})"]}
    return {"action": RETRAIN, "reasons": reasons, "throttled": False}


def monitor_model(model: str, as_of, *, settings: Settings | None = None, actor: str = "cli") -> dict[str, Any]:
    """Check drift and performance for ``as_of`` and decide whether to retrain."""
    from retrain_lib.drift import drift_for_config

    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    as_of = _day(as_of)
    champion = ctx.champion()
    start, end = day_range(as_of, cfg.windows.monitor_days)
    current = load_window(cfg, ctx.settings, start, end, as_of=as_of)
    validation, validation_report = _monitor_validation(ctx, current)
    drift_summary = None
    reference = None
    if cfg.drift.enabled:
        reference = reference_window(ctx, champion)
        report = drift_for_config(cfg, reference.frame, current.frame)
        drift_summary = report.to_dict()
        drift_summary["reference_window"] = [reference.start.isoformat(), reference.end.isoformat()]
        drift_summary["current_window"] = [start.isoformat(), end.isoformat()]
        drift_summary["top"] = [
            {"name": f.name, "method": f.method, "score": f.score, "p_value": f.p_value, "threshold": f.threshold,
             "drifted": f.drifted, "explain": f.explain()}
            for f in report.top(3)
        ]
    performance = champion_performance(ctx, champion, as_of)
    decision = decide(cfg, as_of=as_of, champion=champion, drift=drift_summary, performance=performance)
    report_dir = ctx.settings.reports_dir / cfg.name / as_of.isoformat()
    report_dir.mkdir(parents=True, exist_ok=True)
    html_path, report_error = None, None
    if reference is not None:
        html_path, report_error = _drift_html(ctx, reference, current, report_dir / "drift_report.html")
    validation_path = None
    if validation_report is not None:
        validation_path = report_dir / "validation.json"
        validation_path.write_text(json.dumps(validation_report.to_dict(), indent=2, default=str))
    result = {
        "model": cfg.name, "as_of": as_of.isoformat(), "action": decision["action"], "reasons": decision["reasons"],
        "throttled": decision["throttled"], "champion_version": _str(champion.version) if champion else None,
        "drift": drift_summary, "performance": performance, "validation": validation,
        "drift_report_path": str(html_path) if html_path else None, "report_error": report_error,
        "config_hash": cfg.config_hash(),
    }
    report_path = report_dir / "monitor.json"
    report_path.write_text(json.dumps(result, indent=2, default=str))
    result["report_path"] = str(report_path)
    result["mlflow_run_id"] = _log_monitor_run(ctx, result, report_path, html_path=html_path,
                                               validation_path=validation_path)
    ctx.record("monitor", as_of.isoformat(), actor, {
        "action": result["action"], "reasons": result["reasons"], "champion_version": result["champion_version"],
        "drifted_share": drift_summary["drifted_share"] if drift_summary else None,
        "top": [{k: f[k] for k in ("name", "method", "score", "p_value", "threshold", "drifted")}
                for f in (drift_summary or {}).get("top", [])],
        "validation": None if validation is None else {k: validation.get(k) for k in (
            "success", "expectations", "failed_expectations", "failed", "error") if k in validation},
        "mlflow_run_id": result["mlflow_run_id"], "report": str(report_path),
        "drift_report": result["drift_report_path"], "report_error": report_error,
    })
    return result


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
        log.warning("%s: the current window %s..%s fails %d expectation(s); the monitor carries on: %s", cfg.name,
                    window.start, window.end, len(report.failed), "; ".join(report.explain()))
    return summary, report


def _drift_html(ctx: ModelContext, reference: Window, current: Window, path: Path):
    """The Evidently drift report: ``(path, None)``, or ``(None, error)`` when it failed (the
    monitor's decision does not depend on it)."""
    from retrain_lib.reports import drift_html_report

    try:
        return drift_html_report(ctx.cfg, reference.frame, current.frame, path), None
    except Exception as exc:  # noqa: BLE001 - a report failure must not stop the monitor
        log.exception("the drift report of %s could not be built", ctx.name)
        return None, f"{type(exc).__name__}: {exc}"


def _log_monitor_run(ctx: ModelContext, result: dict, report_path: Path, *, html_path: Path | None = None,
                     validation_path: Path | None = None) -> str:
    mlflow = ctx.mlflow()
    exp = ctx.experiment_id()
    tags = {"retrain.kind": "monitor", "retrain.as_of": result["as_of"], "retrain.action": result["action"],
            "retrain.model": ctx.name}
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
        if validation and validation.get("success") is not None:
            metrics["validation.failed_expectations"] = validation["failed_expectations"]
        mlflow.log_metrics(_finite(metrics))
        mlflow.log_artifact(str(report_path), artifact_path="monitor")
        if html_path is not None:
            mlflow.log_artifact(str(html_path), artifact_path="monitor")
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
        problems.append(f"id column {cfg.data.id_column!r} has {int(frame[cfg.data.id_column].duplicated().sum())} "
                        "duplicates")
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
        "model": model, "as_of": as_of.isoformat(), "start": start.isoformat(), "end": end.isoformat(),
        "fingerprint": window.fingerprint, "rows": int(len(window.frame)), "labelled_rows": int(len(window.labelled)),
        "files": len(window.files), "problems": problems, "valid": not problems,
    }
    if report is None and not problems:
        return snap
    quarantine = None
    if problems:
        from retrain_lib.validation import quarantine_batch

        quarantine = quarantine_batch(ctx.cfg, window, data_root=ctx.settings.data_root,
                                      state_dir=ctx.settings.state_dir, report=report, problems=problems,
                                      extra={"actor": actor})
    run_id = _log_validation_run(ctx, snap, report, quarantine)
    snap["validation"] = {
        "expectations": len(report.results) if report else 0,
        "failed_expectations": len(report.failed) if report else 0,
        "mlflow_run_id": run_id, "quarantine": str(quarantine) if quarantine else None,
    }
    if problems:
        ctx.record("data_validation_failed", as_of.isoformat(), actor, {
            "problems": problems, "window": [snap["start"], snap["end"]], "fingerprint": snap["fingerprint"],
            "failed": [{"check": r.check, "column": r.column, "expectation": r.expectation,
                        "observed": r.observed_value, "unexpected_count": r.unexpected_count,
                        "unexpected_percent": r.unexpected_percent,
                        "examples": list(dict.fromkeys(map(repr, r.partial_unexpected_list)))[:5]}
                       for r in (report.failed if report else [])],
            "quarantine": snap["validation"]["quarantine"], "mlflow_run_id": run_id,
        })
    return snap


def _log_validation_run(ctx: ModelContext, snap: dict, report, quarantine: Path | None) -> str:
    """An MLflow run (``retrain.kind=validation``) with the report as a JSON artifact.
    Idempotent: the same data, config and day reuse the finished run."""
    exp = ctx.experiment_id()
    key = f"{snap['as_of']}|{snap['fingerprint']}|{ctx.cfg.config_hash()}"
    done = ctx.client.search_runs([exp], filter_string=f"tags.`retrain.validation_key` = '{key}' and "
                                                      "attributes.status = 'FINISHED'", max_results=1)
    if done:
        return done[0].info.run_id
    mlflow = ctx.mlflow()
    valid = snap["valid"]
    tags = {"retrain.kind": "validation", "retrain.model": ctx.name, "retrain.as_of": snap["as_of"],
            "data.start": snap["start"], "data.end": snap["end"], "data.fingerprint": snap["fingerprint"],
            "config.hash": ctx.cfg.config_hash(), "validation.success": str(valid).lower()}
    if quarantine is not None:
        tags["validation.quarantine"] = str(quarantine)
    payload = {"window": [snap["start"], snap["end"]], "valid": valid, "problems": snap["problems"],
               "quarantine": str(quarantine) if quarantine else None, **(report.to_dict() if report else {})}
    with mlflow.start_run(experiment_id=exp, run_name=f"validation {snap['as_of']}", tags=tags) as run:
        mlflow.log_metrics({
            "failed_expectations": len(report.failed) if report else 0,
            "expectations": len(report.results) if report else 0,
            "problems": len(snap["problems"]), "rows": snap["rows"], "success": float(valid),
        })
        mlflow.log_dict(payload, "validation/report.json")
        if quarantine is not None and (quarantine / "manifest.json").exists():
            mlflow.log_artifact(str(quarantine / "manifest.json"), artifact_path="validation")
        # Last: a run with this tag counts as finished work that a retry may reuse.
        mlflow.set_tag("retrain.validation_key", key)
        return run.info.run_id


def _load_snapshot(ctx: ModelContext, snap: dict) -> Window:
    window = load_window(ctx.cfg, ctx.settings, _day(snap["start"]), _day(snap["end"]),
                         as_of=_day(snap["as_of"]))
    if window.fingerprint != snap["fingerprint"]:
        raise DataError(f"data of {ctx.name} for {snap['start']}..{snap['end']} changed since the snapshot "
                        f"({snap['fingerprint']} -> {window.fingerprint}); re-run the retrain from the start")
    return window


def load_model(ctx: ModelContext, uri: str):
    return ctx.mlflow().sklearn.load_model(uri)


def _trusted_types(model) -> list[str]:
    import skops.io as sio

    found = sio.get_untrusted_types(data=sio.dumps(model))
    bad = [t for t in found if not t.startswith(SKOPS_TRUSTED_PREFIXES)]
    if bad:
        raise DataError(f"model holds types outside {SKOPS_TRUSTED_PREFIXES}: {bad}")
    return found


def train_candidate(model: str, snap: dict, *, settings: Settings | None = None, run_key: str = "",
                    actor: str = "cli") -> dict[str, Any]:
    """Train on the snapshot's training part, log everything to MLflow, return the run.

    ``run_key`` identifies the attempt (the Airflow run id): a retry with the same key
    reuses the finished MLflow run instead of training a second model.
    """
    from retrain_lib.metrics import evaluate
    from retrain_lib.training import split_frame, train_model, xy

    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    key = f"{run_key or 'manual'}|{snap['fingerprint']}|{cfg.config_hash()}"
    exp = ctx.experiment_id()
    done = ctx.client.search_runs([exp], filter_string=f"tags.`retrain.run_key` = '{key}' and "
                                                      "attributes.status = 'FINISHED'", max_results=1)
    if done:
        run = done[0]
        log.info("reusing finished training run %s for key %s", run.info.run_id, key)
        return {"run_id": run.info.run_id, "model_uri": run.data.tags["retrain.model_uri"],
                "metrics": {k[len("holdout."):]: v for k, v in run.data.metrics.items() if k.startswith("holdout.")},
                "reused": True}
    window = _load_snapshot(ctx, snap)
    split = split_frame(cfg, window.labelled)
    started = time.monotonic()
    pipeline = train_model(cfg, split.train, ctx.settings.platform.allowed_estimator_prefixes)
    duration = time.monotonic() - started
    X_hold, y_hold = xy(cfg, split.holdout)
    metrics = evaluate(pipeline, X_hold, y_hold, cfg.task)
    mlflow = ctx.mlflow()
    from mlflow.models import infer_signature

    tags = {
        "retrain.kind": "train", "retrain.model": cfg.name, "retrain.actor": actor,
        "retrain.as_of": snap["as_of"], "data.start": snap["start"], "data.end": snap["end"],
        "data.fingerprint": snap["fingerprint"], "config.hash": cfg.config_hash(), "git.commit": git_commit(),
        "lock.hash": lock_hash(),
    }
    if (snap.get("validation") or {}).get("mlflow_run_id"):
        tags["validation.run_id"] = snap["validation"]["mlflow_run_id"]
    with mlflow.start_run(experiment_id=exp, run_name=f"train {snap['as_of']}", tags=tags) as run:
        params = {"estimator": cfg.training.estimator, "seed": cfg.training.seed,
                  "split.method": cfg.training.split.method, "split.holdout_fraction": cfg.training.split.holdout_fraction,
                  "window.start": snap["start"], "window.end": snap["end"], "rows.train": len(split.train),
                  "rows.holdout": len(split.holdout), "features.numeric": ",".join(cfg.features.numeric),
                  "features.categorical": ",".join(cfg.features.categorical)}
        params.update({f"model.{k}": v for k, v in cfg.training.params.items()})
        mlflow.log_params(params)
        mlflow.log_metrics({f"holdout.{k}": v for k, v in _finite(metrics).items()})
        mlflow.log_metric("train.duration_s", duration)
        mlflow.log_dict(cfg.model_dump(mode="json"), "config/model.json")
        example = X_hold.head(5)
        signature = infer_signature(example, pipeline.predict_proba(example)[:, 1] if cfg.task == "classification"
                                    else pipeline.predict(example))
        import sklearn

        info = mlflow.sklearn.log_model(
            pipeline, name="model", signature=signature, input_example=example,
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"mlflow=={mlflow.__version__}"],
            skops_trusted_types=_trusted_types(pipeline),
        )
        run_id = run.info.run_id
        mlflow.set_tag("retrain.model_uri", info.model_uri)
        # Last: a run with this tag counts as finished work that a retry may reuse.
        mlflow.set_tag("retrain.run_key", key)
    log.info("trained %s on %s..%s: %s", cfg.name, snap["start"], snap["end"], metrics)
    return {"run_id": run_id, "model_uri": info.model_uri, "metrics": _finite(metrics), "reused": False}


def evaluate_candidate(model: str, snap: dict, trained: dict, *, settings: Settings | None = None) -> dict[str, Any]:
    """Score the candidate and the current champion on the same holdout rows."""
    from retrain_lib.metrics import evaluate
    from retrain_lib.training import split_frame, xy

    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    window = _load_snapshot(ctx, snap)
    holdout = split_frame(cfg, window.labelled).holdout
    X, y = xy(cfg, holdout)
    candidate = evaluate(load_model(ctx, trained["model_uri"]), X, y, cfg.task)
    champion = ctx.champion()
    champion_metrics = None
    if champion is not None:
        champion_metrics = evaluate(load_model(ctx, f"models:/{cfg.name}/{champion.version}"), X, y, cfg.task)
        for k, v in _finite(champion_metrics).items():
            ctx.client.log_metric(trained["run_id"], f"champion.{k}", v)
    return {"candidate": _finite(candidate), "champion": _finite(champion_metrics) if champion_metrics else None,
            "champion_version": _str(champion.version) if champion else None, "holdout_rows": int(len(holdout))}


def check_gates(model: str, evaluation: dict, trained: dict, *, settings: Settings | None = None,
                as_of: str | None = None, actor: str = "cli") -> dict[str, Any]:
    from retrain_lib.gates import all_passed, evaluate_gates

    ctx = ModelContext(model, settings)
    results = evaluate_gates(ctx.cfg.gates, evaluation["candidate"], evaluation["champion"])
    passed = all_passed(results)
    payload = {"passed": passed, "results": [r.to_dict() for r in results],
               "failed": [r.to_dict() for r in results if not r.passed]}
    ctx.client.set_tag(trained["run_id"], "gates.passed", str(passed).lower())
    ctx.mlflow()
    ctx.client.log_dict(trained["run_id"], payload, "gates/results.json")
    ctx.record("gates", as_of, actor, {"run_id": trained["run_id"], "passed": passed,
                                       "failed": [r.reason for r in results if not r.passed],
                                       "champion_version": evaluation["champion_version"]})
    return payload


def register_candidate(model: str, snap: dict, trained: dict, evaluation: dict, gates: dict, *,
                       settings: Settings | None = None) -> dict[str, Any]:
    """Register the candidate (idempotent per MLflow run) with its lineage tags."""
    if not gates["passed"]:
        raise RegistryError(f"refusing to register a candidate of {model} that failed its gates")
    ctx = ModelContext(model, settings)
    run = ctx.client.get_run(trained["run_id"])
    tags = {
        "data.start": snap["start"], "data.end": snap["end"], "data.fingerprint": snap["fingerprint"],
        "trained_as_of": snap["as_of"], "config.hash": run.data.tags.get("config.hash", ""),
        "git.commit": run.data.tags.get("git.commit", ""), "gates.passed": "true",
        "gates.summary": "; ".join(r["reason"] for r in gates["results"])[:4000],
    }
    tags.update({f"metric.{k}": repr(v) for k, v in evaluation["candidate"].items()})
    source = trained["model_uri"]
    version = registry.register_version(ctx.client, ctx.name, run_id=trained["run_id"], source=source, tags=tags,
                                        description=f"Trained on {snap['start']}..{snap['end']}")
    return {"version": str(version.version), "run_id": trained["run_id"]}


def deploy_candidate(model: str, registered: dict, evaluation: dict, *, settings: Settings | None = None,
                     as_of: str | None = None, actor: str = "cli", reason: str = "") -> dict[str, Any]:
    """Deploy per config: ``direct`` promotes to champion (compare-and-swap);
    ``shadow``/``canary`` make the version the ``challenger`` for the rollout DAG."""
    ctx = ModelContext(model, settings)
    mode = ctx.cfg.deploy.mode
    version = registered["version"]
    if mode == "direct":
        moves = registry.promote_champion(ctx.client, ctx.name, version,
                                          expected_champion=evaluation["champion_version"])
        event = "promote"
    else:
        moves = [registry.set_challenger(ctx.client, ctx.name, version)]
        event = "challenger"
    details = {"mode": mode, "version": version, "moves": [m.to_dict() for m in moves],
               "run_id": registered["run_id"], "reason": reason,
               "metrics": evaluation["candidate"], "champion_metrics": evaluation["champion"]}
    if moves:
        ctx.record(event, as_of, actor, details)
    return {"mode": mode, "version": version, "moves": [m.to_dict() for m in moves],
            "champion": _str(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION))}


def reject_candidate(model: str, trained: dict, gates: dict, *, settings: Settings | None = None,
                     as_of: str | None = None, actor: str = "cli") -> dict[str, Any]:
    ctx = ModelContext(model, settings)
    failed = [r["reason"] for r in gates["results"] if not r["passed"]]
    ctx.client.set_tag(trained["run_id"], "retrain.decision", "rejected")
    ctx.record("reject", as_of, actor, {"run_id": trained["run_id"], "failed": failed})
    log.warning("candidate of %s rejected: %s", model, "; ".join(failed))
    return {"rejected": True, "failed": failed, "run_id": trained["run_id"]}


def retrain_model(model: str, as_of, *, settings: Settings | None = None, actor: str = "cli",
                  reason: str = "manual") -> dict[str, Any]:
    """The whole retrain path in one call (what the retrain DAG does task by task)."""
    as_of = _day(as_of).isoformat()
    snap = snapshot_data(model, as_of, settings=settings, actor=actor)
    if not snap["valid"]:
        return {"outcome": "invalid_data", "snapshot": snap}
    trained = train_candidate(model, snap, settings=settings, run_key=actor, actor=actor)
    evaluation = evaluate_candidate(model, snap, trained, settings=settings)
    gates = check_gates(model, evaluation, trained, settings=settings, as_of=as_of, actor=actor)
    if not gates["passed"]:
        return {"outcome": "rejected", **reject_candidate(model, trained, gates, settings=settings, as_of=as_of,
                                                          actor=actor)}
    registered = register_candidate(model, snap, trained, evaluation, gates, settings=settings)
    deployed = deploy_candidate(model, registered, evaluation, settings=settings, as_of=as_of, actor=actor,
                                reason=reason)
    return {"outcome": "deployed", "snapshot": snap, "trained": trained, "evaluation": evaluation, "gates": gates,
            "registered": registered, "deployed": deployed}


def _str(value) -> str | None:
    return None if value is None else str(value)
