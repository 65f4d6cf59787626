"""Models the backtest trains, cached per (training window, training settings).

:func:`train_artifact` runs the retrain path's data and training steps for a day (the
training window read as of that day, its validation, the fit and the candidate's holdout
metrics) into an :class:`Artifact`; :func:`artifact_key` names it by what it depends on,
so policies and repeated runs share models; :class:`ArtifactStore` keeps them in memory
and pickled on disk (shared with the worker processes)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.core.metrics import evaluate, predict_scores
from retrain_lib.learn.candidates import selection_rows, train_candidates
from retrain_lib.learn.training import fit
from retrain_lib.learn.training_data import split_frame, xy
from retrain_lib.pipeline.adaptation_steps import NO_CHANGE, Change, metric_day_spreads, metric_ses
from retrain_lib.pipeline.snapshot import training_window, validate_training_data
from retrain_lib.pipeline.training_run import permutation_importances
from retrain_lib.quality.validation import validate_window
from retrain_lib.stats.gate_measures import measure_latency_ms
from retrain_lib.store.data import load_window, window_fingerprint
from retrain_lib.tools.replay_context import ReplaySettings


def training_hash(cfg: ModelConfig) -> str:
    """Hash of what a trained model depends on (data, features, training window length,
    training and validation settings), not of the triggers: policies share models."""
    dump = cfg.model_dump(mode="json")
    part = {k: dump.get(k) for k in ("name", "task", "data", "features", "training", "validation", "adaptation")}
    part["training_days"] = dump["windows"]["training_days"]
    part["training"] = {**(part["training"] or {}), "timeout_minutes": None}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Artifact:
    """A model trained for a day (or why it could not be): what the retrain path produced."""

    key: str
    as_of: str
    start: str
    end: str
    fingerprint: str | None = None
    problems: list[str] = field(default_factory=list)
    rows: int = 0
    labelled_rows: int = 0
    train_rows: int = 0
    fit_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    importances: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] | None = None
    pipeline: Any = None
    selection: dict | None = None  # adaptation: the candidates and the choice
    eval_pipeline: Any = None  # adaptation: the chosen recipe before its refit (scored on the newest labels)
    metric_se: dict[str, float] = field(default_factory=dict)
    metric_day_sd: dict[str, float] = field(default_factory=dict)  # adaptation: DAY_SD_TAG
    holdout_days: int = 0
    crossfit: dict | None = None  # adaptation, after a covariate shift: CrossFit.to_dict()

    @property
    def valid(self) -> bool:
        return not self.problems and self.pipeline is not None


def artifact_key(
    cfg: ModelConfig, settings: ReplaySettings, as_of: dt.date, parent: str | None = None, change: Change | None = None
) -> str:
    """Cache key of the model trained for ``as_of``: training settings, the content of the
    training window as of that day (so edited data never reuses a stale model) and, with
    ``warm_start``, the parent."""
    start, end = training_window(cfg, as_of)
    try:
        if cfg.data.source == "sql":
            content = load_window(cfg, settings, start, end, as_of=as_of).fingerprint
        else:  # the same hash, from the file listing and bytes, without building the frame
            content = window_fingerprint(cfg, settings, start, end, as_of=as_of) or "no-data"
    except DataError:
        content = "no-data"
    raw = f"{training_hash(cfg)}|{as_of.isoformat()}|{content}|{parent if cfg.training.warm_start else ''}"
    if cfg.adaptation is not None:
        # No change day trains exactly what ``change=None`` trains: one key for both.
        raw += f"|adaptation:{'|'.join(c or '' for c in change) if change and change.day else ''}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _no_timeout(cfg: ModelConfig) -> ModelConfig:
    if cfg.training.timeout_minutes is None:
        return cfg
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"timeout_minutes": None})})


def train_artifact(
    cfg: ModelConfig,
    settings: ReplaySettings,
    as_of: dt.date,
    *,
    parent: Artifact | None = None,
    key: str | None = None,
    change: Change | None = None,
) -> Artifact:
    """The retrain path's data and training steps for ``as_of``: the training window read as
    of that day, its validation (the same checks as ``snapshot_data``), then the fit on the
    training part and the candidate's holdout metrics. Pure: nothing is logged."""
    start, end = training_window(cfg, as_of)
    art = Artifact(
        key or artifact_key(cfg, settings, as_of, parent.key if parent else None, change),
        as_of.isoformat(),
        start.isoformat(),
        end.isoformat(),
    )
    try:
        window = load_window(cfg, settings, start, end, as_of=as_of)
    except DataError as exc:
        art.problems = [str(exc)]
        return art
    art.fingerprint = window.fingerprint
    art.rows, art.labelled_rows = int(len(window.frame)), int(len(window.labelled))
    problems = validate_training_data(cfg, window)
    if cfg.validation is not None and cfg.validation.enabled:
        problems += validate_window(cfg, window).explain()
    if problems:
        art.problems = problems
        return art
    try:
        pipeline, scored_by, train, holdout = _fit_window(cfg, settings, art, window.labelled, as_of, parent, change)
    except (DataError, ValueError, RuntimeError) as exc:
        art.problems = [f"training failed: {exc}"]
        return art
    X, y = xy(cfg, holdout)
    art.pipeline = pipeline
    art.train_rows = int(len(train))
    art.metrics = {
        k: float(v)
        for k, v in evaluate(scored_by, X, y, cfg.task).items()
        if v is not None and not math.isnan(float(v))
    }
    if cfg.adaptation is not None:
        holdout_scores = predict_scores(scored_by, X, cfg.task)
        art.metric_se = metric_ses(cfg, y, holdout_scores)
        art.metric_day_sd, art.holdout_days = metric_day_spreads(
            cfg, holdout[cfg.data.timestamp_column], y, holdout_scores
        )
    if cfg.drift.weight_by_importance:
        art.importances = permutation_importances(cfg, pipeline, X, y)
    if any(g.type == "latency" for g in cfg.gates):
        # Measured once per model and kept with it: a wall-clock measurement taken again for
        # every policy would make identical decisions differ on a busy machine.
        art.latency_ms = measure_latency_ms(pipeline, X, task=cfg.task, n=100, seed=cfg.training.seed)
    return art


def _fit_window(
    cfg: ModelConfig,
    settings: ReplaySettings,
    art: Artifact,
    labelled,
    as_of: dt.date,
    parent: Artifact | None,
    change: Change | None,
):
    """The fit on the labelled rows of the training window (with adaptation: the candidates
    and the choice, kept in ``art``); sets ``art.fit_s``. Returns ``(pipeline, the model
    scored on the holdout, training rows, holdout rows)``."""
    prefixes = getattr(settings.platform, "allowed_estimator_prefixes", None) or ("sklearn.",)
    init = parent.pipeline if parent is not None else None
    if cfg.adaptation is not None:
        change = change or NO_CHANGE
        chosen = train_candidates(
            _no_timeout(cfg),
            labelled,
            as_of=as_of,
            change=change.day,
            change_source=change.source,
            allowed_prefixes=prefixes,
            init_model=init,
        )
        pipeline, info, scored_by = chosen.model, chosen.info, chosen.eval_model
        art.selection = chosen.selection.to_dict()
        art.eval_pipeline = scored_by
        art.crossfit = chosen.crossfit.to_dict() if chosen.crossfit is not None else None
        train, holdout = selection_rows(cfg, labelled, art.selection)
        art.fit_s = float(info.duration_s + sum(i.duration_s for _, i in chosen.fits))
    else:
        split = split_frame(cfg, labelled)
        train, holdout = split.train, split.holdout
        pipeline, info = fit(_no_timeout(cfg), train, prefixes, as_of=as_of, init_model=init)
        scored_by = pipeline
        art.fit_s = float(info.duration_s)
    return pipeline, scored_by, train, holdout


class ArtifactStore:
    """Trained artifacts by key, in memory and (with ``directory``) pickled on disk so that
    worker processes and later runs share them."""

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None
        self.memory: dict[str, Artifact] = {}

    def get(self, key: str) -> Artifact | None:
        if key in self.memory:
            return self.memory[key]
        if self.directory is not None:
            path = self.directory / f"{key}.pkl"
            if path.exists():
                with open(path, "rb") as fh:
                    art = pickle.load(fh)  # noqa: S301 - our own cache, written by this module
                self.memory[key] = art
                return art
        return None

    def put(self, art: Artifact) -> None:
        self.memory[art.key] = art
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f"{art.key}.pkl.tmp"
            with open(tmp, "wb") as fh:
                pickle.dump(art, fh)
            tmp.replace(self.directory / f"{art.key}.pkl")

    def trained(
        self,
        cfg: ModelConfig,
        settings: ReplaySettings,
        as_of: dt.date,
        parent: Artifact | None = None,
        change: Change | None = None,
    ) -> tuple[Artifact, bool]:
        """``(artifact, cached)``."""
        key = artifact_key(cfg, settings, as_of, parent.key if parent else None, change)
        art = self.get(key)
        if art is not None:
            return art, True
        art = train_artifact(
            cfg, settings, as_of, parent=parent if cfg.training.warm_start else None, key=key, change=change
        )
        self.put(art)
        return art, False
