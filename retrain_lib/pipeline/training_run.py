"""The training step (:func:`train_candidate`): fit the candidate on a snapshot (one recipe, or
with ``adaptation`` the best of several candidate windows), score it on the holdout and log
the run to MLflow: parameters, metrics, permutation importances, the model with its skops
trusted types, and with ``adaptation`` one child run per candidate recipe."""

from __future__ import annotations

import json
import logging
from typing import Any, NamedTuple

from retrain_lib.core import provenance
from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.core.metrics import evaluate
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import as_day, finite, str_or_none
from retrain_lib.learn.candidates import estimate_change, selection_rows, train_candidates
from retrain_lib.learn.training import fit
from retrain_lib.learn.training_data import Split, split_frame, xy
from retrain_lib.pipeline.adaptation_steps import NO_CHANGE, training_change
from retrain_lib.pipeline.profiles import log_reference_profile
from retrain_lib.pipeline.records import Snapshot, TrainedRun
from retrain_lib.pipeline.snapshot import training_rows
from retrain_lib.store import audit
from retrain_lib.store.lineage import lineage_tags
from retrain_lib.store.model_context import ModelContext, load_model, quiet_mlflow_model_notes, quiet_skops_import

log = logging.getLogger(__name__)

SKOPS_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "builtins.")
# After a covariate shift: the chosen recipe's out-of-fold scores since the shift (the gain test
# reads them, see retrain_lib.learn.candidates.CrossFit) and their number of folds.
CROSSFIT_ARTIFACT = "adaptation/crossfit.json"
CROSSFIT_TAG = "retrain.crossfit_folds"


def train_candidate(
    model: str, snap: Snapshot, *, settings: Settings | None = None, run_key: str = "", actor: str = "cli"
) -> TrainedRun:
    """Train on the snapshot's training part, log everything to MLflow, return the run.

    ``run_key`` identifies the attempt (the Airflow run id): a retry with the same key
    reuses the finished MLflow run instead of training a second model.
    """
    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    parent = ctx.champion() if cfg.training.warm_start else None
    parent_uri = f"models:/{cfg.name}/{parent.version}" if parent is not None else None
    # The parent is part of the key: a retry after the champion moved must not reuse a model
    # warm-started from another version.
    key = f"{run_key or 'manual'}|{snap.fingerprint}|{cfg.config_hash()}|{parent_uri or ''}"
    exp = ctx.experiment_id()
    done = ctx.client.search_runs(
        [exp], filter_string=f"tags.`retrain.run_key` = '{key}' and attributes.status = 'FINISHED'", max_results=1
    )
    if done:
        return _reused_run(done[0], key)
    timeout = cfg.training.timeout_minutes * 60 if cfg.training.timeout_minutes else None
    labelled = training_rows(ctx, snap)
    init_model = load_model(ctx, parent_uri) if parent_uri else None
    if cfg.adaptation is not None:
        fitted = _fit_adapted(ctx, snap, labelled, init_model, parent_uri, timeout)
    else:
        fitted = _fit_one(ctx, snap, labelled, init_model, parent_uri, timeout)
    with quiet_mlflow_model_notes():
        out = _log_training_run(ctx, exp, snap, fitted, key=key, timeout=timeout, actor=actor)
    log.info("trained %s on %s..%s: %s", cfg.name, snap.start, snap.end, fitted.metrics)
    return out


class _Fitted(NamedTuple):
    """A fitted candidate: the pipeline to register, its training info, the split it was
    scored on, its holdout metrics and (with ``adaptation``) the candidate selection."""

    pipeline: Any
    info: Any
    split: Any
    X_hold: Any
    y_hold: Any
    metrics: dict
    chosen: Any = None


def _reused_run(run, key: str) -> TrainedRun:
    """What a finished training run of the same key returned (a retry trains nothing)."""
    log.info("reusing finished training run %s for key %s", run.info.run_id, key)
    tags = run.data.tags
    selected = bool(tags.get("retrain.selection_model_uri"))
    return TrainedRun(
        run_id=run.info.run_id,
        model_uri=tags["retrain.model_uri"],
        metrics={k[len("holdout.") :]: v for k, v in run.data.metrics.items() if k.startswith("holdout.")},
        reused=True,
        selection=json.loads(tags["retrain.selection"]) if selected else None,
        selection_model_uri=tags["retrain.selection_model_uri"] if selected else None,
    )


def _fit_adapted(ctx: ModelContext, snap: Snapshot, labelled, init_model, parent_uri, timeout) -> _Fitted:
    """With ``adaptation``: the candidate windows around the change the champion's history
    points to, the best one refit on every row; scored by the chosen recipe's model from
    before its refit on the newest labels it was chosen on."""
    cfg = ctx.cfg
    champion = ctx.champion()
    change = NO_CHANGE
    if champion is not None:
        change = training_change(
            champion.tags,
            as_day(snap.start),
            lambda: estimate_change(
                cfg,
                labelled,
                load_model(ctx, f"models:/{cfg.name}/{champion.version}"),
                champion.tags.get("data.end"),
            ),
            lambda: audit.read_ledger(ctx.settings, ctx.name),
            str_or_none(champion.version),
            training_days=cfg.windows.training_days,
        )
    chosen = train_candidates(
        cfg,
        labelled,
        as_of=as_day(snap.as_of),
        change=change.day,
        allowed_prefixes=ctx.settings.platform.allowed_estimator_prefixes,
        init_model=init_model,
        init_model_ref=parent_uri,
        timeout_s=timeout,
        change_source=change.source,
    )
    split = Split(*selection_rows(cfg, labelled, chosen.selection.to_dict()))
    X_hold, y_hold = xy(cfg, split.holdout)
    metrics = evaluate(chosen.eval_model, X_hold, y_hold, cfg.task)
    return _Fitted(chosen.model, chosen.info, split, X_hold, y_hold, metrics, chosen)


def _fit_one(ctx: ModelContext, snap: Snapshot, labelled, init_model, parent_uri, timeout) -> _Fitted:
    """The configured recipe on the configured split, scored on its holdout."""
    cfg = ctx.cfg
    split = split_frame(cfg, labelled)
    pipeline, info = fit(
        cfg,
        split.train,
        ctx.settings.platform.allowed_estimator_prefixes,
        as_of=as_day(snap.as_of),
        init_model=init_model,
        init_model_ref=parent_uri,
        timeout_s=timeout,
    )
    X_hold, y_hold = xy(cfg, split.holdout)
    metrics = evaluate(pipeline, X_hold, y_hold, cfg.task)
    return _Fitted(pipeline, info, split, X_hold, y_hold, metrics)


def _run_tags(ctx: ModelContext, snap: Snapshot, fitted: _Fitted, actor: str) -> dict[str, str]:
    """The training run's tags: the day, the data and its lineage, the config and the code."""
    cfg = ctx.cfg
    tags = {
        "retrain.kind": "train",
        "retrain.model": cfg.name,
        "retrain.actor": actor,
        "retrain.as_of": snap.as_of,
        "data.start": snap.start,
        "data.end": snap.end,
        "data.fingerprint": snap.fingerprint,
        "config.hash": cfg.config_hash(),
        **provenance.code_tags(),  # git.commit, lock.hash: baked into the image, else the checkout
    }
    if snap.validation is not None and snap.validation.mlflow_run_id:
        tags["validation.run_id"] = snap.validation.mlflow_run_id
    if snap.dvc:
        tags.update(lineage_tags(snap.dvc))
    if fitted.info.warm_started_from:
        tags["training.warm_start_from"] = fitted.info.warm_started_from
    return tags


def _run_params(cfg: ModelConfig, snap: Snapshot, fitted: _Fitted, timeout) -> dict[str, Any]:
    """The training run's parameters: the recipe, the split, the window and its rows."""
    split, info = fitted.split, fitted.info
    params = {
        "estimator": cfg.training.estimator,
        "seed": cfg.training.seed,
        "split.method": cfg.training.split.method,
        "split.holdout_fraction": cfg.training.split.holdout_fraction,
        "window.start": snap.start,
        "window.end": snap.end,
        "rows.train": len(split.train),
        "rows.holdout": len(split.holdout),
        "features.numeric": ",".join(cfg.features.numeric),
        "features.categorical": ",".join(cfg.features.categorical),
    }
    params.update({f"model.{k}": v for k, v in cfg.training.params.items()})
    params.update(
        {
            "rows.window": snap.rows,
            "rows.labelled": len(split.train) + len(split.holdout),
            "training.recency": json.dumps(cfg.training.recency.model_dump()) if cfg.training.recency else "none",
            "training.timeout_s": timeout,
            "training.warm_start_from": info.warm_started_from,
            "training.child_process": info.child_process,
        }
    )
    if snap.dvc:
        params.update({"data.dvc_md5": snap.dvc["md5"], "data.dvc_rev": snap.dvc["rev"]})
    return params


def _log_training_run(
    ctx: ModelContext, exp: str, snap: Snapshot, fitted: _Fitted, *, key: str, timeout, actor: str
) -> TrainedRun:
    """The MLflow training run of ``fitted``, marked reusable by ``key`` once complete; returns
    the step's result."""
    cfg = ctx.cfg
    pipeline, info, X_hold, y_hold = fitted.pipeline, fitted.info, fitted.X_hold, fitted.y_hold
    mlflow = ctx.mlflow()
    from mlflow.models import infer_signature

    tags = _run_tags(ctx, snap, fitted, actor)
    with mlflow.start_run(experiment_id=exp, run_name=f"train {snap.as_of}", tags=tags) as run:
        mlflow.log_params(_run_params(cfg, snap, fitted, timeout))
        mlflow.log_metrics({f"holdout.{k}": v for k, v in finite(fitted.metrics).items()})
        mlflow.log_metric("train.duration_s", info.duration_s)
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
            {f"importance.{k}": v for k, v in finite(permutation_importances(cfg, pipeline, X_hold, y_hold)).items()}
        )
        mlflow.log_dict(cfg.model_dump(mode="json"), "config/model.json")
        if cfg.drift.enabled:  # the monitor's reference, profiled once (drift.engine: profile reads it)
            log_reference_profile(mlflow, cfg, ctx.settings, snap.start, snap.end)
        example = X_hold.head(5)
        signature = infer_signature(
            example,
            pipeline.predict_proba(example)[:, 1] if cfg.task == "classification" else pipeline.predict(example),
        )
        import sklearn

        requirements = [f"scikit-learn=={sklearn.__version__}", f"mlflow=={mlflow.__version__}"]
        logged = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
            skops_trusted_types=_trusted_types(pipeline, ctx.settings.platform.allowed_estimator_prefixes),
        )
        run_id = run.info.run_id
        selection, selection_model_uri = None, None
        if fitted.chosen is not None:
            selection, selection_model_uri = _log_candidates(
                mlflow,
                exp,
                fitted.chosen,
                snap,
                requirements,
                signature,
                ctx.settings.platform.allowed_estimator_prefixes,
            )
        mlflow.set_tag("retrain.model_uri", logged.model_uri)
        # Last: a run with this tag counts as finished work that a retry may reuse.
        mlflow.set_tag("retrain.run_key", key)
    return TrainedRun(
        run_id=run_id,
        model_uri=logged.model_uri,
        metrics=finite(fitted.metrics),
        reused=False,
        selection=selection,
        selection_model_uri=selection_model_uri,
    )


def _log_candidates(
    mlflow, exp: str, chosen, snap: Snapshot, requirements: list[str], signature, allowed_prefixes
) -> tuple[dict[str, Any], str]:
    """Inside the training run: one child run per candidate (window, rows, score on the newest
    labels), the chosen recipe's model before its refit (what the gates compare with the
    champion) and the choice as a tag and an artifact. Returns what the later steps read: the
    selection and the URI of that model."""
    selection = chosen.selection.to_dict()
    for cand in chosen.selection.candidates:
        with mlflow.start_run(
            experiment_id=exp,
            run_name=f"candidate {cand.name} {snap.as_of}",
            nested=True,
            tags={
                "retrain.kind": "candidate",
                "retrain.candidate": cand.name,
                "retrain.chosen": str(cand.name == chosen.selection.chosen).lower(),
                "retrain.as_of": snap.as_of,
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
        skops_trusted_types=_trusted_types(chosen.eval_model, allowed_prefixes),
    )
    mlflow.log_dict(selection, "adaptation/selection.json")
    if chosen.crossfit is not None:
        mlflow.log_dict(chosen.crossfit.to_dict(), CROSSFIT_ARTIFACT)
        mlflow.set_tag(CROSSFIT_TAG, str(chosen.crossfit.folds))
    mlflow.log_params(
        {
            "rows.final": chosen.final_rows,
            "adaptation.chosen": chosen.selection.chosen,
            "adaptation.change_day": chosen.selection.change_day or "none",
        }
    )
    mlflow.set_tag("retrain.selection", json.dumps(selection)[:7500])
    mlflow.set_tag("retrain.selection_model_uri", logged.model_uri)
    return selection, logged.model_uri


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


def _trusted_types(model, allowed_estimator_prefixes=()) -> list[str]:
    """The types skops finds in ``model`` (what loading it must trust); a :class:`DataError`
    when one is outside :data:`SKOPS_TRUSTED_PREFIXES` and the platform's
    ``allowed_estimator_prefixes`` (an estimator the platform lets a config name is one its
    model may hold)."""
    with quiet_skops_import():
        import skops.io as sio

        found = sio.get_untrusted_types(data=sio.dumps(model))
    prefixes = tuple(dict.fromkeys((*SKOPS_TRUSTED_PREFIXES, *allowed_estimator_prefixes)))
    bad = [t for t in found if not t.startswith(prefixes)]
    if bad:
        raise DataError(
            f"model holds types outside {prefixes}: {bad}; add their module to allowed_estimator_prefixes "
            "in platform.yaml if they are yours"
        )
    return found
