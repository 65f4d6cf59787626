"""Reading the prediction log (monitor, rollout): predictions with their late labels, and
per-arm summaries. Every read first recovers the journals of killed gateways, so it never
misses an acknowledged prediction."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from retrain_lib.serving.predlog_journal import recover_journals
from retrain_lib.serving.predlog_store import feedback, get_engine, predictions, to_utc


def read_predictions(url: str, model: str, since, until=None, arm: str | None = None):
    """Predictions of ``model`` with ``since <= created_at < until`` (UTC; naive = UTC), with
    their label joined (``label``, ``received_at``; NaN/NaT when none yet). Shadow rows get
    the label of the request they mirror. Columns: request_id, model, version, arm, features
    (dict), output, latency_ms, created_at (tz-aware UTC), parent_id, label, received_at.
    """
    import pandas as pd

    recover_journals(url)  # predictions a killed gateway acknowledged but did not commit
    engine = get_engine(url)
    p, f = predictions, feedback
    key = sa.func.coalesce(p.c.parent_id, p.c.request_id)
    query = (
        sa.select(p, f.c.label, f.c.received_at)
        .select_from(p.outerjoin(f, f.c.request_id == key))
        .where(p.c.model == model, p.c.created_at >= to_utc(since))
    )
    if until is not None:
        query = query.where(p.c.created_at < to_utc(until))
    if arm is not None:
        query = query.where(p.c.arm == arm)
    query = query.order_by(p.c.created_at, p.c.request_id)
    with engine.connect() as conn:
        frame = pd.DataFrame(
            conn.execute(query).mappings().all(), columns=[*(c.name for c in p.columns), "label", "received_at"]
        )
    frame["features"] = frame["features"].map(json.loads)
    for col in ("created_at", "received_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    frame["label"] = frame["label"].astype(float)
    return frame


def arm_summary(url: str, model: str, since, until=None) -> dict[str, dict[str, Any]]:
    """Per arm: ``n``, ``versions``, ``mean_output``, ``p50_latency_ms``, ``p95_latency_ms``,
    ``labelled``, ``mean_label`` and, for 0/1 labels with both classes, ``roc_auc``
    of the outputs (None otherwise)."""
    import numpy as np

    frame = read_predictions(url, model, since, until)
    out: dict[str, dict[str, Any]] = {}
    for arm_name, part in frame.groupby("arm", sort=True):
        labelled = part[part["label"].notna()]
        auc = None
        if len(labelled) and set(np.unique(labelled["label"])) == {0.0, 1.0}:
            from sklearn.metrics import roc_auc_score

            auc = float(roc_auc_score(labelled["label"].astype(int), labelled["output"]))
        out[str(arm_name)] = {
            "n": int(len(part)),
            "versions": sorted(part["version"].unique().tolist(), key=lambda v: (len(v), v)),
            "mean_output": float(part["output"].mean()),
            "p50_latency_ms": float(part["latency_ms"].quantile(0.5)),
            "p95_latency_ms": float(part["latency_ms"].quantile(0.95)),
            "labelled": int(len(labelled)),
            "mean_label": float(labelled["label"].mean()) if len(labelled) else None,
            "roc_auc": auc,
        }
    return out
