"""The rows a model trains on: the deterministic train/holdout split (:func:`split_frame`),
features and target (:func:`feature_frame`, :func:`xy`) and the recency weights of
``training.recency`` (:func:`sample_weights`, :func:`recent_share`)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError


def last_labelled_day(cfg: ModelConfig, data_end: str | dt.date) -> dt.date:
    """The last event day whose labels a model trained on a window ending ``data_end`` (its
    run's ``data.end``, the day it was trained) could learn: labels arrive
    ``data.label_delay_days`` late, so the days after it were in the window without labels.
    Rows after this day are ones the model never saw."""
    end = data_end if isinstance(data_end, dt.date) else dt.date.fromisoformat(str(data_end)[:10])
    return end - dt.timedelta(days=cfg.data.label_delay_days)


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


def split_frame(cfg: ModelConfig, frame: pd.DataFrame) -> Split:
    """Deterministic train/holdout split of labelled rows.

    ``time``: the most recent ``holdout_fraction`` of rows (by timestamp) is held out, as in
    production where a model predicts the future. ``random``/``stratified``: seeded shuffles,
    stratified keeps the class balance in both parts.
    """
    target = cfg.features.target
    labelled = frame[frame[target].notna()]
    if len(labelled) < 20:
        raise DataError(f"only {len(labelled)} labelled rows for model {cfg.name!r}; need at least 20 to train")
    sp = cfg.training.split
    ts = cfg.data.timestamp_column
    if sp.method == "time":
        ordered = labelled.sort_values([ts, cfg.data.id_column], kind="mergesort")
        cut = int(round(len(ordered) * (1 - sp.holdout_fraction)))
        return Split(ordered.iloc[:cut], ordered.iloc[cut:])
    from sklearn.model_selection import train_test_split

    ordered = labelled.sort_values(cfg.data.id_column, kind="mergesort")
    strat = ordered[target] if sp.method == "stratified" else None
    train, hold = train_test_split(
        ordered, test_size=sp.holdout_fraction, random_state=cfg.training.seed, stratify=strat
    )
    return Split(train, hold)


def feature_frame(cfg: ModelConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """The feature columns of ``frame``; a missing categorical value (None, as parquet and JSON
    give it, or NaN) is NaN, so that the imputer turns it into ``__missing__``."""
    import numpy as np

    X = frame.reindex(columns=cfg.features.all)
    cats = [c for c in cfg.features.categorical if X[c].dtype == object and X[c].isna().any()]
    if cats:
        X = X.copy()
        for c in cats:
            X[c] = X[c].where(X[c].notna(), np.nan)
    return X


def xy(cfg: ModelConfig, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    X = feature_frame(cfg, frame)
    y = frame[cfg.features.target].to_numpy()
    if cfg.task == "classification":
        y = y.astype(int)
    return X, y


def _ages_days(cfg: ModelConfig, frame: pd.DataFrame, as_of) -> np.ndarray:
    """Age of each row in days before the anchor: the end of the ``as_of`` day (a date), the
    ``as_of`` instant (a datetime) or, when None, the latest timestamp of ``frame``."""
    col = cfg.data.timestamp_column
    ts = pd.to_datetime(frame[col])
    if ts.isna().any():
        raise DataError(
            f"{int(ts.isna().sum())} training rows of {cfg.name!r} have no {col!r}; recency weighting "
            "(training.recency) needs every timestamp"
        )
    if as_of is None:
        anchor = ts.max()
    elif isinstance(as_of, dt.datetime):
        anchor = pd.Timestamp(as_of)
    elif isinstance(as_of, dt.date):
        anchor = pd.Timestamp(as_of) + pd.Timedelta(days=1)  # the end of the as_of day
    else:
        anchor = pd.Timestamp(as_of)
    tz = getattr(ts.dt, "tz", None)
    if tz is not None and anchor.tzinfo is None:
        anchor = anchor.tz_localize(tz)
    elif tz is None and anchor.tzinfo is not None:
        anchor = anchor.tz_convert("UTC").tz_localize(None)
    ages = (anchor - ts).dt.total_seconds().to_numpy(dtype=float) / 86400.0
    return np.clip(ages, 0.0, None)


def sample_weights(cfg: ModelConfig, frame: pd.DataFrame, as_of=None) -> np.ndarray | None:
    """Recency weights of ``frame``'s rows from ``training.recency``; None when it is not set.

    A row's age is measured back from the end of the ``as_of`` day (default: the latest
    timestamp in ``frame``). With ``{days, weight}`` rows at most ``days`` old weigh
    ``weight``, older rows 1; with ``half_life_days`` every row is multiplied by
    ``0.5 ** (age / half_life_days)``. The result is rescaled to average 1 (total weight =
    number of rows), so regularisation keeps the scale of unweighted training and only the
    relative weights matter.

    >>> # rows 0.5, 1.5, 10 and 20 days old with {days: 2, weight: 3}: raw 3, 3, 1, 1
    >>> # -> rescaled to average 1: 1.5, 1.5, 0.5, 0.5
    """
    rec = cfg.training.recency
    if rec is None:
        return None
    if len(frame) == 0:
        return np.ones(0)
    ages = _ages_days(cfg, frame, as_of)
    weights = np.ones(len(frame))
    if rec.days is not None:
        assert rec.weight is not None  # days and weight come together (Recency checks)
        weights = np.where(ages <= rec.days, float(rec.weight), 1.0)
    if rec.half_life_days is not None:
        # relative to the youngest row (the rescaling below removes the common factor), so the
        # weights cannot all underflow to zero when as_of lies far after the data
        weights = weights * np.power(0.5, (ages - ages.min()) / rec.half_life_days)
    mean = float(weights.mean())
    if not mean > 0 or not math.isfinite(mean):
        raise DataError(
            f"recency weights of {cfg.name!r} underflow to zero (half_life_days "
            f"{rec.half_life_days} against rows up to {ages.max():.0f} days old); raise half_life_days"
        )
    return weights / mean


def recent_share(cfg: ModelConfig, frame: pd.DataFrame, as_of, weights: np.ndarray | None):
    """(share of rows in the recent window, share of the total weight they carry)."""
    rec = cfg.training.recency
    if rec is None or weights is None or not len(weights):
        return None, None
    horizon = rec.days if rec.days is not None else rec.half_life_days
    recent = _ages_days(cfg, frame, as_of) <= horizon
    return float(recent.mean()), float(weights[recent].sum() / weights.sum())
