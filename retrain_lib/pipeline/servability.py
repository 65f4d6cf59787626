"""Servability before promotion: the candidate of a retrain (:func:`served_candidate`, for the
``servable`` and ``latency`` gates) and a version promoted by hand (:func:`served_version`)
are loaded by a fresh gateway process and answer probe requests over HTTP
(:mod:`retrain_lib.serving.probe`), each answer compared with the model's own score of the
same row in this process."""

from __future__ import annotations

import logging

from retrain_lib.core.metrics import predict_scores
from retrain_lib.pipeline.records import TrainedRun
from retrain_lib.quality.gate_types import ServedProbe
from retrain_lib.serving.probe import json_record, probe_served
from retrain_lib.serving.schema import FeatureSchema, warm_row
from retrain_lib.store.model_context import ModelContextLike, load_model

log = logging.getLogger(__name__)

PROBE_REQUESTS = 50  # requests of a probe by hand (a gate sets its own)


def served_candidate(ctx: ModelContextLike, trained: TrainedRun, X, gates) -> ServedProbe:
    """The candidate's artifact (``trained.model_uri``, the one its registered version will
    point to) served by a fresh gateway process and probed with rows of ``X`` (the rows the
    gates compare on), as many requests as the largest ``requests`` of ``gates``."""
    cfg = ctx.cfg
    n = max(g.requests for g in gates)
    rows = X.head(n)
    expected = predict_scores(load_model(ctx, trained.model_uri), rows, cfg.task)
    probe = probe_served(
        ctx.settings,
        cfg.name,
        trained.model_uri,
        rows.to_dict(orient="records"),
        [float(v) for v in expected],
        requests=n,
        timeout_s=max(g.timeout_s for g in gates),
    )
    log.info("servability probe of %s: %s", cfg.name, probe.to_dict())
    return probe


def example_records(ctx: ModelContextLike, uri: str) -> list[dict]:
    """Probe records of the model at ``uri``: the input example logged with it (rows of its
    training holdout) and a record built from the config's schema alone."""
    schema = FeatureSchema.from_config(ctx.cfg)
    records = [warm_row(schema)]
    try:
        mlflow = ctx.mlflow()
        from mlflow.models import Model

        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
        example = Model.load(local).load_input_example(local)
        if example is not None and hasattr(example, "to_dict"):
            records = [json_record(r) for r in example.to_dict(orient="records")] + records  # for frame() too
    except Exception as exc:  # noqa: BLE001 - the schema's record still probes it
        log.warning("no input example for %s (%s); probing with a schema record only", uri, exc)
    return records


def served_version(ctx: ModelContextLike, version: str, *, requests: int = PROBE_REQUESTS) -> ServedProbe:
    """Registered ``version`` loaded from the registry by a fresh gateway process and probed
    with :func:`example_records`, before a person makes it the champion."""
    cfg = ctx.cfg
    uri = f"models:/{cfg.name}/{version}"
    records = example_records(ctx, uri)
    expected = predict_scores(load_model(ctx, uri), FeatureSchema.from_config(cfg).frame(records), cfg.task)
    probe = probe_served(ctx.settings, cfg.name, str(version), records, [float(v) for v in expected], requests=requests)
    log.info("servability probe of %s version %s: %s", cfg.name, version, probe.to_dict())
    return probe
