"""The retrain's data snapshot (:func:`snapshot_data`): the training window of a day, its
content hash and DVC version, its validation (checks and expectations, a quarantine and a
validation run in MLflow when it fails), and reading its rows back for the later steps
(:func:`training_rows`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import as_day
from retrain_lib.pipeline.records import Snapshot, SnapshotValidation
from retrain_lib.quality.validation import quarantine_batch, validate_window
from retrain_lib.store.data import Window, day_range, load_window
from retrain_lib.store.lineage import LABEL_KNOWN_COLUMN, load_training_set, snapshot_training_set
from retrain_lib.store.model_context import ModelContext, ModelContextLike


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


def snapshot_data(model: str, as_of, *, settings: Settings | None = None, actor: str = "cli") -> Snapshot:
    """Fix the training window and its content hash, and validate it."""
    ctx = ModelContext(model, settings)
    as_of = as_day(as_of)
    start, end = training_window(ctx.cfg, as_of)
    window = load_window(ctx.cfg, ctx.settings, start, end, as_of=as_of)
    problems = validate_training_data(ctx.cfg, window)
    report = None
    if ctx.cfg.validation is not None and ctx.cfg.validation.enabled:
        report = validate_window(ctx.cfg, window)
        problems += report.explain()
    snap = Snapshot(
        model=model,
        as_of=as_of.isoformat(),
        start=start.isoformat(),
        end=end.isoformat(),
        fingerprint=window.fingerprint,
        rows=int(len(window.frame)),
        labelled_rows=int(len(window.labelled)),
        files=len(window.files),
        problems=tuple(problems),
    )
    if not problems:
        snap = replace(
            snap,
            dvc=snapshot_training_set(ctx.settings, model, window.frame, as_of=as_of, fingerprint=window.fingerprint),
        )
    if report is None and not problems:
        return snap
    quarantine = None
    if problems:
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
    snap = replace(
        snap,
        validation=SnapshotValidation(
            expectations=len(report.results) if report else 0,
            failed_expectations=len(report.failed) if report else 0,
            mlflow_run_id=run_id,
            quarantine=str(quarantine) if quarantine else None,
        ),
    )
    if problems:
        ctx.record("data_validation_failed", as_of.isoformat(), actor, _failure_details(snap, report, run_id))
    return snap


def _failure_details(snap: Snapshot, report, run_id: str) -> dict[str, Any]:
    """The ledger record of a snapshot that failed validation: its problems, window, the
    failed expectations (with a few unexpected values) and where the evidence is."""
    return {
        "problems": list(snap.problems),
        "window": [snap.start, snap.end],
        "fingerprint": snap.fingerprint,
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
        "quarantine": snap.validation.quarantine if snap.validation else None,
        "mlflow_run_id": run_id,
    }


def _log_validation_run(ctx: ModelContext, snap: Snapshot, report, quarantine: Path | None) -> str:
    """An MLflow run (``retrain.kind=validation``) with the report as a JSON artifact.
    Idempotent: the same data, config and day reuse the finished run."""
    exp = ctx.experiment_id()
    key = f"{snap.as_of}|{snap.fingerprint}|{ctx.cfg.config_hash()}"
    done = ctx.client.search_runs(
        [exp],
        filter_string=f"tags.`retrain.validation_key` = '{key}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    if done:
        return done[0].info.run_id
    mlflow = ctx.mlflow()
    valid = snap.valid
    tags = {
        "retrain.kind": "validation",
        "retrain.model": ctx.name,
        "retrain.as_of": snap.as_of,
        "data.start": snap.start,
        "data.end": snap.end,
        "data.fingerprint": snap.fingerprint,
        "config.hash": ctx.cfg.config_hash(),
        "validation.success": str(valid).lower(),
    }
    if quarantine is not None:
        tags["validation.quarantine"] = str(quarantine)
    payload = {
        "window": [snap.start, snap.end],
        "valid": valid,
        "problems": list(snap.problems),
        "quarantine": str(quarantine) if quarantine else None,
        **(report.to_dict() if report else {}),
    }
    with mlflow.start_run(experiment_id=exp, run_name=f"validation {snap.as_of}", tags=tags) as run:
        mlflow.log_metrics(
            {
                "failed_expectations": len(report.failed) if report else 0,
                "expectations": len(report.results) if report else 0,
                "problems": len(snap.problems),
                "rows": snap.rows,
                "success": float(valid),
            }
        )
        mlflow.log_dict(payload, "validation/report.json")
        if quarantine is not None and (quarantine / "manifest.json").exists():
            mlflow.log_artifact(str(quarantine / "manifest.json"), artifact_path="validation")
        # Last: a run with this tag counts as finished work that a retry may reuse.
        mlflow.set_tag("retrain.validation_key", key)
        return run.info.run_id


def training_rows(ctx: ModelContextLike, snap: Snapshot):
    """The labelled rows of a snapshot: the exact DVC version when the snapshot has one (what
    ``retrain reproduce`` reads back), else the data source, checked against the fingerprint."""
    if snap.dvc:
        dvc = snap.dvc
        key = f"dvc:{dvc['rev']}:{dvc['md5']}"
        if key not in ctx.models:
            frame = load_training_set(ctx.settings, dvc["path"], dvc["rev"], dvc["md5"])
            ctx.models[key] = frame[frame[LABEL_KNOWN_COLUMN].astype(bool)]
        return ctx.models[key]
    return _load_snapshot(ctx, snap).labelled


def _load_snapshot(ctx: ModelContextLike, snap: Snapshot) -> Window:
    window = load_window(ctx.cfg, ctx.settings, as_day(snap.start), as_day(snap.end), as_of=as_day(snap.as_of))
    if window.fingerprint != snap.fingerprint:
        raise DataError(
            f"data of {ctx.name} for {snap.start}..{snap.end} changed since the snapshot "
            f"({snap.fingerprint} -> {window.fingerprint}); re-run the retrain from the start"
        )
    return window
