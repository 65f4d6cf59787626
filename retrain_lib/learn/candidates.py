"""Candidates trained on several windows, the best chosen on the newest matured labels.

The retrain of a model with an ``adaptation`` section runs this instead of one fit on the
configured window with a fixed holdout:

1. :func:`estimate_change`: the day the champion's matured daily metric shifted down inside
   the training window (after the champion's own training window), if it did;
2. :func:`train_candidates`: the rows are split in time into a pool and the newest matured
   labels (after the change when there is one: :func:`retrain_lib.learn.window_choice.selection_split`);
   one candidate per recipe of ``adaptation.windows`` is fitted on the pool and scored on the
   newest labels; the best recipe is chosen and refit on every row it may use, so the shipped
   model has learnt from the newest rows too;
3. the chosen recipe's model *before* the refit (it never saw the newest rows) is what the
   evaluation, the gates and :func:`gain` compare with the champion on those rows, so the
   comparison is fair; the refit model is the one registered and served;
4. after a change, :func:`cross_fit` also scores every row since the change by the recipe
   fitted without that row's block of days. When the champion itself learnt from days since
   the change (a follow-up, or a retrain after one), the held-out comparison is unfair both
   ways: the champion is scored on its own training rows and the held-out candidate knows
   fewer days than the champion does. Then the out-of-fold scores on the rows the champion
   never saw are compared instead (:func:`unseen_out_of_fold`).

The backtest (``retrain_lib.tools.backtest``) and the retrain DAG (``retrain_lib.pipeline.training_run``) both
call these functions.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import RetrainError
from retrain_lib.core.metrics import compute_metric, predict_scores
from retrain_lib.learn import training  # training.fit looked up at call time: tests replace it
from retrain_lib.learn.training_data import last_labelled_day, split_frame, xy
from retrain_lib.learn.window_choice import Candidate, Recipe, Selection, choose, recipes, rows_for, selection_split
from retrain_lib.stats.champion_gain import Gain, gain_test
from retrain_lib.stats.change_detection import change_day
from retrain_lib.stats.performance import daily_metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CandidateSet:
    """What :func:`train_candidates` produced: the choice and both models of the winner."""

    selection: Selection
    recipe: Recipe
    eval_model: Any  # the chosen recipe fitted on the pool (never saw the selection rows)
    model: Any  # the chosen recipe refit on every row it may use: registered and served
    info: Any  # TrainingInfo of the refit
    pool_rows: int
    final_rows: int
    fits: tuple[tuple[str, Any], ...]  # (recipe name, TrainingInfo) of every candidate fit
    crossfit: CrossFit | None = None  # after a change: out-of-fold scores since the change


@dataclass(frozen=True)
class CrossFit:
    """Out-of-fold scores of the chosen recipe on every matured row since a change: the days
    since the change are cut into ``folds`` blocks and each block is scored by the recipe
    fitted on every other row of the window. After a covariate shift, compared with the
    champion on the same rows (:func:`crossfit_gain`), it measures a gain on all those rows
    instead of the newest half, by models that learnt most of the shifted days (the held-out
    comparison is weak at a few hundred rows a day: its candidate saw few shifted days and is
    judged on few rows). When the champion learnt from days since the change, its rows the
    champion never saw are the comparison (:func:`unseen_out_of_fold`)."""

    ids: tuple
    scores: tuple[float, ...]
    folds: int
    since: str

    def to_dict(self) -> dict[str, Any]:
        return {"ids": list(self.ids), "scores": list(self.scores), "folds": self.folds, "since": self.since}

    @classmethod
    def from_dict(cls, data: dict) -> CrossFit:
        return cls(tuple(data["ids"]), tuple(float(v) for v in data["scores"]), int(data["folds"]), data["since"])


def estimate_change(cfg: ModelConfig, labelled, champion_model, champion_data_end: str | None) -> str | None:
    """The change day of the champion's daily metric on the labelled rows it never saw (after
    :func:`retrain_lib.learn.training_data.last_labelled_day` of its run's ``data.end``)
    (:func:`retrain_lib.stats.change_detection.change_day`), or ``None``."""
    if champion_model is None or labelled is None or not len(labelled):
        return None

    ts = cfg.data.timestamp_column
    rows = labelled
    if champion_data_end:
        rows = labelled[(labelled[ts].dt.date > last_labelled_day(cfg, champion_data_end)).to_numpy()]
    if len(rows) < 40:
        return None
    X, y = xy(cfg, rows)
    metric = cfg.primary_metric
    scores = predict_scores(champion_model, X, cfg.task)
    daily = daily_metrics(rows[ts], y, scores, metric=metric, task=cfg.task, min_rows=20)
    counts = {d.isoformat(): int(n) for d, n in rows[ts].dt.date.value_counts().items()}
    return change_day(daily, counts, metric)


def train_candidates(
    cfg: ModelConfig,
    labelled,
    *,
    as_of: dt.date,
    change: str | None,
    allowed_prefixes=("sklearn.",),
    init_model=None,
    init_model_ref: str | None = None,
    timeout_s: float | None = None,
    change_source: str | None = None,
) -> CandidateSet:
    """Fit every recipe on the pool, choose on the newest matured labels, refit the winner."""
    import pandas as pd

    pool, newest = selection_split(cfg, labelled, change)
    if len(newest) < 10 or len(pool) < 20:
        raise RetrainError(
            f"{cfg.name}: {len(pool)} training and {len(newest)} selection rows are too few to train "
            "and compare candidates; widen windows.training_days"
        )
    X_new, y_new = xy(cfg, newest)
    fit_options = {"as_of": as_of, "init_model": init_model, "init_model_ref": init_model_ref, "timeout_s": timeout_s}
    scored: list[Candidate] = []
    fitted: dict[str, tuple[Any, Recipe]] = {}
    fits: list[tuple[str, Any]] = []
    for recipe in recipes(cfg, pool, as_of, change):
        candidate, trained = _fit_and_score(cfg, recipe, pool, X_new, y_new, allowed_prefixes, fit_options)
        scored.append(candidate)
        if trained is not None:
            fitted[recipe.name] = (trained[0], recipe)
            fits.append((recipe.name, trained[1]))
    ts = cfg.data.timestamp_column
    window = (newest[ts].min().date().isoformat(), newest[ts].max().date().isoformat())
    try:
        selection = choose(
            cfg.primary_metric,
            scored,
            change=change,
            selection_rows=len(newest),
            window=window,
            change_source=change_source,
        )
    except ValueError as exc:
        raise RetrainError(f"{cfg.name}: {exc}") from exc
    eval_model, recipe = fitted[selection.chosen]
    everything = rows_for(cfg, recipe, pd.concat([pool, newest]))
    model, info = training.fit(recipe.cfg, everything, allowed_prefixes, **fit_options)
    log.info("%s: chose %s (%s); refit on %d rows", cfg.name, selection.chosen, selection.reason, len(everything))
    crossfit = None
    assert cfg.adaptation is not None  # candidates are trained for an adaptation section only
    if change is not None and cfg.adaptation.crossfit_folds:
        crossfit = cross_fit(cfg, recipe, everything, change, allowed_prefixes, fit_options)
    return CandidateSet(
        selection,
        recipe,
        eval_model,
        model,
        info,
        len(rows_for(cfg, recipe, pool)),
        len(everything),
        tuple(fits),
        crossfit,
    )


def cross_fit(
    cfg: ModelConfig, recipe: Recipe, rows, since: str, allowed_prefixes, fit_options: dict
) -> CrossFit | None:
    """The :class:`CrossFit` of ``recipe`` on ``rows`` (its rows of the window, in time order)
    for the days from ``since``: ``adaptation.crossfit_folds`` contiguous blocks of days (fewer
    when there are fewer days), each scored by the recipe fitted on every row outside it.
    ``None`` when fewer than two days or 40 rows are there, or a fold cannot be trained."""
    import numpy as np

    assert cfg.adaptation is not None  # candidates are trained for an adaptation section only
    ts, key = cfg.data.timestamp_column, cfg.data.id_column
    days = rows[ts].dt.date
    after = days >= dt.date.fromisoformat(since)
    shifted_days = sorted(set(days[after]))
    folds = min(cfg.adaptation.crossfit_folds, len(shifted_days))
    if folds < 2 or int(after.sum()) < 40:
        return None
    ids: list = []
    scores: list[float] = []
    for block in np.array_split(np.array(shifted_days, dtype=object), folds):
        held = days.isin(set(block)).to_numpy()
        try:
            model, _ = training.fit(recipe.cfg, rows[~held], allowed_prefixes, **fit_options)
        except (RetrainError, ValueError) as exc:
            log.warning("%s: cross-fit of %s failed: %s", cfg.name, recipe.name, exc)
            return None
        X, _ = xy(cfg, rows[held])
        ids.extend(rows[key].to_numpy()[held].tolist())
        scores.extend(float(v) for v in predict_scores(model, X, cfg.task))
    return CrossFit(tuple(ids), tuple(scores), folds, since)


def crossfit_gain(cfg: ModelConfig, crossfit: CrossFit, labelled, champion_model) -> Gain | None:
    """The gain test (:func:`retrain_lib.stats.champion_gain.gain_test`) of the cross-fitted
    scores against the champion on the same rows of ``labelled`` (matched by id); ``None``
    when the rows are no longer there."""
    import numpy as np

    key = cfg.data.id_column
    position = {v: i for i, v in enumerate(crossfit.ids)}
    rows = labelled[labelled[key].isin(position).to_numpy()]
    if len(rows) < 0.9 * len(crossfit.ids):
        return None
    order = np.array([position[v] for v in rows[key].tolist()])
    X, y = xy(cfg, rows)
    candidate = np.asarray(crossfit.scores, dtype=float)[order]
    return gain(cfg, y, candidate, predict_scores(champion_model, X, cfg.task), required=True)


# Fewest rows the champion never saw for the out-of-fold comparison; with fewer the held-out
# comparison stays (a verdict on a few dozen rows is noise).
MIN_UNSEEN_ROWS = 40


def unseen_out_of_fold(
    cfg: ModelConfig, crossfit: CrossFit | None, labelled, champion_data_end: str | None
) -> tuple[Any, Any] | None:
    """``(rows, out-of-fold scores)`` of ``crossfit`` on the rows of ``labelled`` the champion
    never saw, when it learnt from days since the change: its last labelled day (``data.end``
    of its training run, minus the label delay) on or after ``crossfit.since``, and at least
    :data:`MIN_UNSEEN_ROWS` rows after that day are there. Else ``None``: the held-out
    comparison is fair (the champion never saw the newest rows)."""
    if crossfit is None or not champion_data_end:
        return None
    last_seen = last_labelled_day(cfg, champion_data_end)
    if last_seen < dt.date.fromisoformat(crossfit.since):
        return None
    import numpy as np

    ts, key = cfg.data.timestamp_column, cfg.data.id_column
    position = {v: i for i, v in enumerate(crossfit.ids)}
    unseen = (labelled[ts].dt.date > last_seen).to_numpy()
    rows = labelled[unseen & labelled[key].isin(position).to_numpy()]
    if len(rows) < MIN_UNSEEN_ROWS:
        return None
    order = np.array([position[v] for v in rows[key].tolist()])
    return rows, np.asarray(crossfit.scores, dtype=float)[order]


def _fit_and_score(
    cfg: ModelConfig, recipe: Recipe, pool, X_new, y_new, allowed_prefixes, fit_options: dict
) -> tuple[Candidate, tuple[Any, Any] | None]:
    """One recipe fitted on its rows of the pool and scored on the selection rows: its
    :class:`Candidate` and ``(model, TrainingInfo)`` (``None`` when it could not be trained)."""
    metric = cfg.primary_metric
    rows = rows_for(cfg, recipe, pool)
    recency = recipe.cfg.training.recency.model_dump(exclude_none=True) if recipe.cfg.training.recency else None
    try:
        model, info = training.fit(recipe.cfg, rows, allowed_prefixes, **fit_options)
    except (RetrainError, ValueError) as exc:
        log.warning("%s: candidate %s could not be trained: %s", cfg.name, recipe.name, exc)
        failed = Candidate(recipe.name, len(rows), None, problem=str(exc), recency=recency, since=recipe.since)
        return failed, None
    value = float(compute_metric(cfg.task, metric, y_new, predict_scores(model, X_new, cfg.task)))
    candidate = Candidate(
        recipe.name,
        len(rows),
        value if math.isfinite(value) else None,
        None if math.isfinite(value) else f"{metric} undefined on the selection rows",
        recency=recency,
        since=recipe.since,
    )
    return candidate, (model, info)


def selection_rows(cfg: ModelConfig, labelled, selection: dict | None):
    """``(training pool, rows the candidate and champion are compared on)`` of a retrain:
    the newest matured labels of its selection, or the configured holdout without one."""
    if selection is None:
        split = split_frame(cfg, labelled)
        return split.train, split.holdout
    return selection_split(cfg, labelled, selection.get("change_day"))


def gain(cfg: ModelConfig, y, candidate_scores, champion_scores, *, required: bool | None = None) -> Gain | None:
    """The candidate's gain over the champion on the same rows (``adaptation.require_gain``,
    or ``required``), or ``None`` when it is not required or there is no champion."""
    spec = cfg.adaptation
    if spec is None or not (spec.require_gain if required is None else required) or champion_scores is None:
        return None
    return gain_test(
        cfg.task,
        cfg.primary_metric,
        y,
        candidate_scores,
        champion_scores,
        confidence=spec.gain_confidence,
        n_resamples=spec.gain_resamples,
        seed=cfg.training.seed,
    )
