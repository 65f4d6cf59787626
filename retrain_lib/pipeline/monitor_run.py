"""The monitor step (:func:`monitor_model`): gather the facts of a day, decide, write the
reports (``monitor.json``, the drift page, the validation report), log the monitor run to
MLflow and record the decision in the ledger."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import as_day, finite, json_safe, str_or_none
from retrain_lib.pipeline.adaptation_steps import adaptation_state, record_adaptation, shift_facts
from retrain_lib.pipeline.decision import decide
from retrain_lib.pipeline.live_facts import rollback_facts, serving_facts
from retrain_lib.pipeline.monitor_facts import (
    drift_current,
    drift_facts,
    drift_history,
    importance_weights,
    new_labels_since_training,
    prediction_drift_facts,
    recent_retrain_requests,
    reference_window,
)
from retrain_lib.pipeline.monitor_profile import profile_drift_check
from retrain_lib.pipeline.monitor_records import MonitorDecision, MonitorResult, Signal
from retrain_lib.pipeline.performance_facts import champion_performance

# validation and reports as modules: their functions are looked up when called (tests replace them)
from retrain_lib.quality import validation as data_validation
from retrain_lib.stats.profile import Profile
from retrain_lib.store import registry, reports
from retrain_lib.store.data import Window, day_range, load_window
from retrain_lib.store.model_context import ModelContext

log = logging.getLogger(__name__)

_VALIDATION_TAG: dict[bool | None, str] = {True: "passed", False: "failed"}  # the suite's ``success``


def monitor_model(
    model: str,
    as_of,
    *,
    settings: Settings | None = None,
    actor: str = "cli",
    current_profiles: Sequence[Profile] | None = None,
) -> MonitorResult:
    """Check drift and performance for ``as_of`` and decide whether to retrain.

    ``current_profiles``: with ``drift.engine: profile``, the profiles of the current window's
    partitions computed beforehand (the monitor DAG's mapped tasks); without them the window
    is profiled here."""
    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    as_of = as_day(as_of)
    champion = ctx.champion()
    start, end = day_range(as_of, cfg.windows.monitor_days)
    current = load_window(cfg, ctx.settings, start, end, as_of=as_of)
    validation, validation_report = _monitor_validation(ctx, current)
    _check_numeric_features(cfg, current)
    state = adaptation_state(ctx, champion, as_of)
    if cfg.drift.enabled and cfg.drift.engine == "profile":
        reference, compared = None, None
        drift_summary = profile_drift_check(ctx, champion, as_of, current, state.rebased, current_profiles)
    else:
        reference, compared, drift_summary = _drift_check(ctx, champion, as_of, current, state.rebased)
    decision, performance, rollback, serving = _decide(ctx, champion, as_of, drift_summary, current, state, actor)
    decision = _report_prediction_drift(decision, drift_summary)
    report_dir = claim_report_dir(ctx.settings.reports_dir / cfg.name, as_of)
    html_path, report_error = None, None
    if reference is not None and compared is not None:
        html_path, report_error = _drift_html(
            ctx, reference, compared, report_dir / "drift_report.html", (drift_summary or {}).get("features")
        )
    validation_path = None
    if validation_report is not None:
        validation_path = report_dir / "validation.json"
        validation_path.write_text(json.dumps(validation_report.to_dict(), indent=2, default=str))
    result = MonitorResult(
        model=cfg.name,
        as_of=as_of.isoformat(),
        action=decision.action,
        reasons=decision.reasons,
        throttled=decision.throttled,
        signals=decision.signals,
        champion_version=str_or_none(champion.version) if champion else None,
        drift=drift_summary,
        performance=performance,
        validation=validation,
        rollback=rollback,
        serving=serving,
        drift_report_path=str(html_path) if html_path else None,
        report_error=report_error,
        config_hash=cfg.config_hash(),
    )
    report_path = report_dir / "monitor.json"
    report_path.write_text(json.dumps(result.report(), indent=2, default=str))
    result = dataclasses.replace(result, report_path=str(report_path))
    run_id = _log_monitor_run(ctx, result, report_path, html_path=html_path, validation_path=validation_path)
    result = dataclasses.replace(result, mlflow_run_id=run_id)
    ctx.record("monitor", as_of.isoformat(), actor, _ledger_details(result, report_path))
    return result


def _drift_check(ctx: ModelContext, champion, as_of: dt.date, current: Window, rebased):
    """``(reference, compared window, drift summary)`` of the current window (after a rebase
    only its days after the rebased reference), or ``(None, None, None)`` with drift off."""
    cfg = ctx.cfg
    if not cfg.drift.enabled:
        return None, None, None
    reference = reference_window(ctx, champion, rebased)
    current = drift_current(ctx, current, rebased)
    weights = importance_weights(champion) if cfg.drift.weight_by_importance else None
    prediction = None
    if champion is not None and cfg.drift.prediction:
        prediction = prediction_drift_facts(ctx, champion, reference, current)
    summary = drift_facts(
        cfg, reference, current, weights=weights, prediction=prediction, history=(lambda: drift_history(ctx, as_of))
    )
    return reference, current, summary


def _decide(ctx: ModelContext, champion, as_of: dt.date, drift_summary, current: Window, state, actor: str):
    """``(decision, performance, rollback, serving)``: the remaining facts of the day, the
    decision on them, and the adaptation records that decision leaves in the ledger."""
    cfg = ctx.cfg
    performance = json_safe(champion_performance(ctx, champion, as_of, current, healthy=state.tested_against))
    new_labels = new_labels_since_training(ctx, champion, as_of)
    recent = recent_retrain_requests(ctx, as_of)
    # one read of the rollback target, so both checks compare against the same version
    previous = None
    if champion is not None and cfg.rollback is not None and cfg.rollback.enabled:
        previous = registry.get_alias_version(ctx.client, ctx.name, registry.PREVIOUS)
    rollback = json_safe(rollback_facts(ctx, champion, as_of, performance, previous=previous))
    serving = json_safe(serving_facts(ctx, champion, as_of, previous=previous))
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
        state,
        str_or_none(champion.version) if champion else None,
        champion.tags if champion else None,
    )
    return decision, performance, rollback, serving


def _report_prediction_drift(decision: MonitorDecision, drift_summary: dict | None) -> MonitorDecision:
    """The champion's output drift joins the decision's signals (and its reasons when it
    drifted): reported with the decision, not a trigger of its own."""
    pred = (drift_summary or {}).get("prediction")
    if not pred:
        return decision
    return decision.with_signal(
        Signal("prediction_drift", False, pred["score"], pred["threshold"], pred["explain"]),
        f"prediction drift (reported): {pred['explain']}" if pred["drifted"] else None,
    )


def _ledger_details(result: MonitorResult, report_path: Path) -> dict[str, Any]:
    """The monitor's ledger record: the decision, the drift in brief, the validation summary
    and where its reports and MLflow run are."""
    drift_summary = result.drift
    validation = result.validation
    return {
        "action": result.action,
        "reasons": list(result.reasons),
        "signals": [s.to_xcom() for s in result.signals],
        "champion_version": result.champion_version,
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
        "mlflow_run_id": result.mlflow_run_id,
        "report": str(report_path),
        "drift_report": result.drift_report_path,
        "report_error": result.report_error,
    }


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
    try:
        report = data_validation.validate_window(cfg, window)
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
    try:
        return reports.drift_html_report(ctx.cfg, reference.frame, current.frame, path, features=features), None
    except Exception as exc:  # noqa: BLE001 - a report failure must not stop the monitor
        log.exception("the drift report of %s could not be built", ctx.name)
        return None, f"{type(exc).__name__}: {exc}"


def _log_monitor_run(
    ctx: ModelContext,
    result: MonitorResult,
    report_path: Path,
    *,
    html_path: Path | None = None,
    validation_path: Path | None = None,
) -> str:
    mlflow = ctx.mlflow()
    exp = ctx.experiment_id(monitor=True)
    tags = {
        "retrain.kind": "monitor",
        "retrain.as_of": result.as_of,
        "retrain.action": result.action,
        "retrain.model": ctx.name,
    }
    validation = result.validation
    if validation is not None:
        tags["retrain.validation"] = _VALIDATION_TAG.get(validation.get("success"), "error")
    with mlflow.start_run(experiment_id=exp, run_name=f"monitor {result.as_of}", tags=tags) as run:
        metrics: dict[str, float] = {}
        if result.drift:
            metrics["drifted_share"] = result.drift["drifted_share"]
            for f in result.drift["features"]:
                metrics[f"drift.{f['name']}.{f['method']}"] = f["score"]
        perf = result.performance or {}
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
        mlflow.log_metrics(finite(metrics))
        mlflow.log_artifact(str(report_path), artifact_path="monitor")
        if html_path is not None:
            mlflow.log_artifact(str(html_path), artifact_path="monitor")
            reports.link_to_artifact(html_path, run.info.artifact_uri, "monitor")  # stored once, not twice
        if validation_path is not None:
            mlflow.log_artifact(str(validation_path), artifact_path="monitor")
        return run.info.run_id
