"""Registering a candidate that passed its gates (:func:`register_candidate`): the model
version with its lineage tags, and its model card (written at registration, an approval added
later by :func:`add_approval_to_card`)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from retrain_lib.core.errors import RegistryError
from retrain_lib.core.metrics import evaluate
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import finite, json_safe
from retrain_lib.learn.training_data import split_frame, xy
from retrain_lib.pipeline.adaptation_steps import day_spread_tags, regime_tags
from retrain_lib.pipeline.records import Evaluation, GateReport, Registered, Snapshot, TrainedRun
from retrain_lib.pipeline.snapshot import training_rows
from retrain_lib.quality import registry_record as rr
from retrain_lib.quality.approval import FEATURES_TAG, feature_signature
from retrain_lib.quality.card_review import review_info
from retrain_lib.quality.model_card import build_model_card
from retrain_lib.store import registry
from retrain_lib.store.model_context import ModelContext, load_model

log = logging.getLogger(__name__)


def register_candidate(
    model: str,
    snap: Snapshot,
    trained: TrainedRun,
    evaluation: Evaluation,
    gates: GateReport,
    *,
    settings: Settings | None = None,
) -> Registered:
    """Register the candidate (idempotent per MLflow run) with its lineage tags, its registry
    record (:mod:`retrain_lib.quality.registry_record`: semantic version, intended use,
    ``registered_by``, compliance status) and its model card.

    Raises:
        RegistryError: the gates failed, or the model card could not be written (fail closed:
            the version exists without a card and this step fails; a retry finds the same
            version, registered for this run, and writes its card).
    """
    if not gates.passed:
        raise RegistryError(f"refusing to register a candidate of {model} that failed its gates")
    ctx = ModelContext(model, settings)
    run = ctx.client.get_run(trained.run_id)
    results = gates.results
    tags = {
        "data.start": snap.start,
        "data.end": snap.end,
        "data.fingerprint": snap.fingerprint,
        "trained_as_of": snap.as_of,
        "config.hash": run.data.tags.get("config.hash", ""),
        "git.commit": run.data.tags.get("git.commit", ""),
        "gates.passed": "true",
        "gates.summary": "; ".join(r.reason for r in results)[:4000],
    }

    tags.update(
        {
            "lock.hash": run.data.tags.get("lock.hash", ""),
            FEATURES_TAG: feature_signature(ctx.cfg),
            "gates.count": str(len(results)),
            "gates.skipped": str(sum(bool(r.skipped) for r in results)),
            "approval": "required" if ctx.cfg.approval is not None else "not required",
        }
    )
    for key in ("dvc.path", "dvc.rev", "dvc.md5", "training.warm_start_from"):
        if run.data.tags.get(key):
            tags[key] = run.data.tags[key]
    tags.update({f"metric.{k}": repr(v) for k, v in evaluation.candidate.items()})
    tags.update({f"metric_se.{k}": repr(v) for k, v in (evaluation.candidate_se or {}).items() if v is not None})
    tags.update(day_spread_tags(evaluation.candidate_day_sd, evaluation.compared_days))
    tags.update(regime_tags(trained.selection))
    if "rows.train" in run.data.params:
        tags["rows.train"] = run.data.params["rows.train"]
    tags.update({k: repr(v) for k, v in run.data.metrics.items() if k.startswith("importance.")})
    tags.update(_record_tags(ctx, tags, trained.run_id))
    version = registry.register_version(
        ctx.client,
        ctx.name,
        run_id=trained.run_id,
        source=trained.model_uri,
        tags=tags,
        description=f"Trained on {snap.start}..{snap.end}",
    )
    number = str(version.version)
    try:
        info = _card_info(ctx, snap, trained, evaluation, gates, run, number)
        write_model_card(ctx, number, {**info, "record": rr.card_record({**tags, **dict(version.tags or {})})})
    except Exception as exc:  # noqa: BLE001 - any failure: a version without its card is not deployed
        log.exception("model card of %s version %s could not be written", model, version.version)
        raise RegistryError(
            f"the model card of {model} version {version.version} could not be written "
            f"({type(exc).__name__}: {exc}); the version is registered without a card and is not deployed. "
            "Fix the cause and clear the register_candidate task: the retry finds the same version "
            "(registered for this MLflow run) and writes its card"
        ) from exc
    return Registered(version=number, run_id=trained.run_id)


def _record_tags(ctx: ModelContext, tags: dict[str, str], run_id: str) -> dict[str, str]:
    """The registry record's lifecycle tags of a new version with lineage ``tags``: its
    semantic version against the previous registered version, target, intended use, who
    registers it and its compliance status before any approval step."""
    cfg = ctx.cfg
    current = {**tags, rr.TARGET_TAG: cfg.features.target}
    previous = rr.previous_semantic(ctx.client.search_model_versions(f"name='{ctx.name}'"), run_id=run_id)
    bump = rr.next_semantic_version(
        dict(previous.tags) if previous is not None else None,
        current,
        previous_version=str(previous.version) if previous is not None else None,
    )
    use, _source = rr.intended_use(cfg.intended_use, cfg.description)
    return {
        rr.TARGET_TAG: cfg.features.target,
        rr.SEMVER_TAG: str(bump.version),
        rr.SEMVER_REASON_TAG: bump.reason[: rr.MAX_TAG_CHARS],
        rr.INTENDED_USE_TAG: use[: rr.MAX_TAG_CHARS],
        rr.REGISTERED_BY_TAG: rr.registered_by(),
        rr.COMPLIANCE_TAG: rr.PENDING if cfg.approval is not None else rr.NOT_REQUIRED,
    }


def _card_info(
    ctx: ModelContext,
    snap: Snapshot,
    trained: TrainedRun,
    evaluation: Evaluation,
    gates: GateReport,
    run,
    version: str,
) -> dict[str, Any]:
    """What the model card of a version shows (see :mod:`retrain_lib.quality.model_card`)."""
    cfg = ctx.cfg
    split = split_frame(cfg, training_rows(ctx, snap))
    model = load_model(ctx, trained.model_uri)
    segments: dict[str, dict] = {}
    for column in cfg.features.segments:
        for value, rows in split.holdout.groupby(column, observed=True):
            X, y = xy(cfg, rows)
            if cfg.task == "classification" and len(set(y)) < 2:
                continue
            segments.setdefault(column, {})[str(value)] = {
                **finite(evaluate(model, X, y, cfg.task)),
                "rows": int(len(rows)),
            }
    params = run.data.params
    return json_safe(
        {
            "model": cfg.name,
            "version": version,
            "description": cfg.description,
            "owner": cfg.owner,
            "task": cfg.task,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "data": {
                "start": snap.start,
                "end": snap.end,
                "as_of": snap.as_of,
                "rows": snap.rows,
                "labelled_rows": snap.labelled_rows,
                "train_rows": len(split.train),
                "holdout_rows": len(split.holdout),
                "fingerprint": snap.fingerprint,
                "dvc": dict(snap.dvc or {}),
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
            "metrics": dict(evaluation.candidate),
            "segment_metrics": segments,
            "gates": [r.to_dict() for r in gates.results],
            "approvals": [],
            "lineage": {
                "mlflow_run_id": trained.run_id,
                "model_uri": trained.model_uri,
                "git_commit": run.data.tags.get("git.commit"),
                "config_hash": run.data.tags.get("config.hash"),
                "lock_hash": run.data.tags.get("lock.hash"),
            },
            "limitations": [f"champion at evaluation: version {evaluation.champion_version or 'none'}"],
            **review_info(cfg, gates.results),
        }
    )


def write_model_card(ctx: ModelContext, version: str, info: dict[str, Any]) -> None:
    """Render the card and log it (markdown, HTML and its input) to the version's MLflow run."""
    markdown, html = build_model_card(info)
    run_id = info["lineage"]["mlflow_run_id"]
    ctx.mlflow()
    ctx.client.log_text(run_id, markdown, "model_card/model_card.md")
    ctx.client.log_text(run_id, html, "model_card/model_card.html")
    ctx.client.log_dict(run_id, info, "model_card/info.json")
    ctx.client.set_model_version_tag(ctx.name, version, "model_card", f"runs:/{run_id}/model_card/model_card.html")
    experiment = ctx.client.get_run(run_id).info.experiment_id
    ctx.client.set_model_version_tag(ctx.name, version, rr.MODEL_CARD_PAGE_TAG, rr.model_card_page(experiment, run_id))


def add_approval_to_card(ctx: ModelContext, version: str, approval: dict) -> None:
    """Append a human answer to the version's model card (logged again); a failure is logged,
    never raised (the answer is in the ledger and the version tags already)."""
    try:
        mv = ctx.client.get_model_version(ctx.name, version)
        ctx.mlflow()
        info = ctx.mlflow().artifacts.load_dict(f"runs:/{mv.run_id}/model_card/info.json")
        info.setdefault("approvals", []).append(approval)
        info["record"] = rr.card_record(dict(mv.tags or {}))  # the answer's compliance status
        write_model_card(ctx, version, info)
    except Exception:  # noqa: BLE001 - the approval is in the ledger and the tags already
        log.exception("could not add the approval to the model card of %s version %s", ctx.name, version)
