"""The inputs of the gates that judge a candidate against a fixed reference
(:mod:`retrain_lib.quality.reference_gates`): the permutation importances of candidate and
champion on the compared rows (``importance_shift``) and every golden set scored by the
candidate, versioned in the DVC data registry first (``golden``). Only configured gates cost
anything."""

from __future__ import annotations

import logging
from pathlib import Path

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.metrics import predict_scores
from retrain_lib.core.settings import Settings
from retrain_lib.learn.training_data import xy
from retrain_lib.pipeline.training_run import permutation_importances
from retrain_lib.quality.gate_types import GoldenScores
from retrain_lib.store.lineage import snapshot_golden_set
from retrain_lib.store.parquet_io import read_parquet

log = logging.getLogger(__name__)


def importance_pair(
    cfg: ModelConfig, candidate, champion, X, y
) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """Permutation importances of ``candidate`` and ``champion`` on the same rows ``X``/``y``
    (``(None, None)`` without an ``importance_shift`` gate or a champion)."""
    if champion is None or not any(g.type == "importance_shift" for g in cfg.gates):
        return None, None
    return permutation_importances(cfg, candidate, X, y), permutation_importances(cfg, champion, X, y)


def golden_path(settings: Settings, dataset: str) -> Path:
    """Where a golden gate's ``dataset`` is: relative paths are under the config directory
    (the one holding ``platform.yaml`` and ``models/``)."""
    path = Path(dataset).expanduser()
    return path if path.is_absolute() else settings.config_dir / path


def golden_scores(cfg: ModelConfig, settings: Settings, candidate) -> dict[str, GoldenScores]:
    """Every golden gate's set, versioned in the data registry and scored by ``candidate``;
    a set that cannot be read, versioned or scored carries its ``error`` (its gate fails
    closed, the other gates are judged as usual)."""
    out: dict[str, GoldenScores] = {}
    for gate in cfg.gates:
        if gate.type != "golden" or gate.dataset is None or gate.dataset in out:
            continue
        try:
            out[gate.dataset] = _score_golden(cfg, settings, candidate, gate.dataset, gate.must_pass)
        except Exception as exc:  # noqa: BLE001 - reported by the gate, which fails closed
            log.warning("golden set %s of %s could not be scored: %s", gate.dataset, cfg.name, exc)
            out[gate.dataset] = GoldenScores(gate.dataset, error=f"{type(exc).__name__}: {exc}")
    return out


def _score_golden(cfg: ModelConfig, settings: Settings, candidate, dataset: str, must_pass: str | None):
    import pandas as pd

    path = golden_path(settings, dataset)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist (the golden gate's dataset, relative to the config directory "
            f"{settings.config_dir}); create it with the features, {cfg.features.target}"
            + (f" and {must_pass}" if must_pass else "")
        )
    frame = read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    need = [*cfg.features.all, cfg.features.target, *([must_pass] if must_pass else [])]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {', '.join(missing)}")
    if frame[cfg.features.target].isna().any():
        raise ValueError(f"{path} has rows without {cfg.features.target}: a golden row needs its label")
    mask = None
    if must_pass:
        mask = _as_bool(frame[must_pass], f"{path} column {must_pass}")
    source = {"file": str(path), **snapshot_golden_set(settings, cfg.name, path)}
    X, y = xy(cfg, frame)
    return GoldenScores(dataset, y, predict_scores(candidate, X, cfg.task), mask, source)


def _as_bool(column, what: str):
    import numpy as np

    values = column.astype(str).str.strip().str.lower()
    known = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False, "": False}
    bad = sorted(set(values) - set(known))
    if bad:
        raise ValueError(f"{what} must be true/false (or 1/0), found {bad[:5]}")
    return np.array([known[v] for v in values], dtype=bool)
