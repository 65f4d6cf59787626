"""Training a scikit-learn pipeline from a model config.

The estimator comes from an import path restricted to allowed module prefixes (default
``sklearn.``) and must be a class that follows the estimator API: a YAML file never names
an arbitrary callable. Preprocessing follows the declared feature types.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from retrain_lib.config import ModelConfig
from retrain_lib.errors import ConfigError, DataError, TrainingError

log = logging.getLogger(__name__)


def load_estimator_class(path: str, allowed_prefixes=("sklearn.",)):
    """Import an estimator class by dotted path, refusing modules outside ``allowed_prefixes``."""
    if not path.startswith(tuple(allowed_prefixes)):
        raise ConfigError(f"training.estimator {path!r} is outside the allowed modules {list(allowed_prefixes)}")
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"training.estimator {path!r} cannot be imported: {exc}; "
                          "check the spelling, e.g. 'sklearn.ensemble.RandomForestClassifier'") from exc
    if not inspect.isclass(cls) or not (hasattr(cls, "fit") and hasattr(cls, "get_params")):
        raise ConfigError(f"training.estimator {path!r} is not a scikit-learn estimator class")
    return cls


def build_pipeline(cfg: ModelConfig, allowed_prefixes=("sklearn.",)):
    """Preprocessing by feature type followed by the configured estimator."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cls = load_estimator_class(cfg.training.estimator, allowed_prefixes)
    params = dict(cfg.training.params)
    if "random_state" in cls().get_params() and "random_state" not in params:
        params["random_state"] = cfg.training.seed
    try:
        estimator = cls(**params)
    except TypeError as exc:
        raise ConfigError(f"training.params do not fit {cfg.training.estimator}: {exc}") from exc
    transformers = []
    if cfg.features.numeric:
        transformers.append(("numeric", Pipeline([
            ("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler()),
        ]), list(cfg.features.numeric)))
    if cfg.features.categorical:
        transformers.append(("categorical", Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]), list(cfg.features.categorical)))
    pre = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", pre), ("model", estimator)])


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
    train, hold = train_test_split(ordered, test_size=sp.holdout_fraction, random_state=cfg.training.seed,
                                   stratify=strat)
    return Split(train, hold)


def xy(cfg: ModelConfig, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    X = frame[cfg.features.all]
    y = frame[cfg.features.target].to_numpy()
    if cfg.task == "classification":
        y = y.astype(int)
    return X, y


def train_model(cfg: ModelConfig, train: pd.DataFrame, allowed_prefixes=("sklearn.",)):
    """Fit the configured pipeline on ``train``; returns the fitted pipeline."""
    pipeline = build_pipeline(cfg, allowed_prefixes)
    X, y = xy(cfg, train)
    if cfg.task == "classification" and len(np.unique(y)) < 2:
        raise DataError(f"training data of {cfg.name!r} holds a single class; cannot train a classifier")
    np.random.seed(cfg.training.seed)
    try:
        pipeline.fit(X, y)
    except ValueError as exc:
        raise TrainingError(f"fitting {cfg.training.estimator} failed: {exc}") from exc
    return pipeline
