"""What the monitor reads besides performance: the drift reference window, the drift summary
of the current window (with its history for persistence), the champion's prediction drift and
feature weights, the labels matured since training, and the monitor's earlier retrain requests
(for ``schedule.max_retrains``). :mod:`retrain_lib.pipeline.decision` decides on them."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.core.metrics import predict_scores
from retrain_lib.core.values import as_day
from retrain_lib.pipeline.decision import RETRAIN
from retrain_lib.stats.calibration import apply_persistence
from retrain_lib.stats.drift import DriftReport, drift_for_config, prediction_drift
from retrain_lib.store import audit
from retrain_lib.store.data import Window, available_days, load_window
from retrain_lib.store.model_context import ModelContext, ModelContextLike, load_model

log = logging.getLogger(__name__)


def reference_window(ctx: ModelContextLike, champion, rebased: tuple[str, str] | None = None) -> Window:
    """The most recent ``reference_days`` of the champion's training window (the inputs it
    was built for); before any champion, the oldest ``reference_days`` of data. ``rebased``:
    the window a recorded covariate shift moved the reference to
    (:func:`retrain_lib.pipeline.adaptation.rebased_window`)."""
    cfg = ctx.cfg
    if champion is not None and rebased is not None:
        start, end = as_day(rebased[0]), as_day(rebased[1])
        return load_window(cfg, ctx.settings, start, end, as_of=end)
    if champion is not None and champion.tags.get("data.start") and champion.tags.get("data.end"):
        start, end = as_day(champion.tags["data.start"]), as_day(champion.tags["data.end"])
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


def drift_current(ctx: ModelContextLike, current: Window, rebased: tuple[str, str] | None) -> Window:
    """The current window of the drift check: ``current``, or after a rebase only its days
    after the rebased reference (the shifted days are compared with shifted days, never a
    window that still holds days the shift was recorded on). ``current`` when none is left."""
    if rebased is None:
        return current
    first = as_day(rebased[1]) + dt.timedelta(days=1)
    if first <= current.start or first > current.end:
        return current
    return load_window(ctx.cfg, ctx.settings, first, current.end, as_of=current.as_of)


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
    report = drift_for_config(cfg, reference.frame, current.frame, weights=weights)
    return summarise_drift(
        cfg,
        report,
        (reference.start, reference.end),
        (current.start, current.end),
        prediction=prediction,
        history=history,
    )


def summarise_drift(
    cfg: ModelConfig,
    report: DriftReport,
    reference_span: tuple[dt.date, dt.date],
    current_span: tuple[dt.date, dt.date],
    *,
    prediction: dict | None = None,
    history=None,
) -> dict[str, Any]:
    """The monitor's drift summary of a drift report (exact or from profiles): the report,
    its windows, the top features and, with ``drift.persistence``, the persistent alarm."""
    summary = report.to_dict()
    if prediction is not None:
        summary["prediction"] = prediction
    summary["reference_window"] = [reference_span[0].isoformat(), reference_span[1].isoformat()]
    summary["current_window"] = [current_span[0].isoformat(), current_span[1].isoformat()]
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
        past = history() if callable(history) else list(history or [])
        summary = apply_persistence(summary, past, k=cfg.drift.persistence.k, n=cfg.drift.persistence.n)
    return summary


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


def importance_weights(champion) -> dict[str, float] | None:
    """Feature weights from the champion's ``importance.<feature>`` tags (``None`` if absent)."""
    if champion is None:
        return None
    weights = {k[len("importance.") :]: float(v) for k, v in champion.tags.items() if k.startswith("importance.")}
    return weights if weights and sum(weights.values()) > 0 else None


def prediction_drift_facts(ctx: ModelContext, champion, reference: Window, current: Window) -> dict[str, Any]:
    """Drift of the champion's outputs between the reference and current windows (reported)."""
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


def new_labels_since_training(ctx: ModelContextLike, champion, as_of: dt.date) -> dict[str, Any] | None:
    """Labelled rows of events after the champion's training window, known by ``as_of``,
    against its training rows (version tag ``rows.train``, else the run's param)."""
    cfg = ctx.cfg
    if champion is None or cfg.schedule.new_labels_share is None:
        return None
    since = as_day(champion.tags.get("data.end", "1970-01-01")) + dt.timedelta(days=1)
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
        and first <= as_day(r["as_of"]) < as_of
    }
    return sorted(days)
