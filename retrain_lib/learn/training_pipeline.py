"""The scikit-learn pipeline a model config trains (:func:`build_pipeline`): preprocessing
by declared feature type followed by the configured estimator."""

from __future__ import annotations

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import ConfigError
from retrain_lib.learn.estimator_import import load_estimator_class


def _estimator(cfg: ModelConfig, cls):
    params = dict(cfg.training.params)
    if "random_state" in cls().get_params() and "random_state" not in params:
        params["random_state"] = cfg.training.seed
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"training.params do not fit {cfg.training.estimator}: {exc}") from exc


def feature_columns(cfg: ModelConfig) -> dict[str, list[str]]:
    """The configured feature columns by type (``numeric``, ``categorical``), empty types left out."""
    cols = {"numeric": list(cfg.features.numeric), "categorical": list(cfg.features.categorical)}
    return {k: v for k, v in cols.items() if v}


def build_pipeline(cfg: ModelConfig, allowed_prefixes=("sklearn.",)):
    """Preprocessing by feature type followed by the configured estimator.

    Numeric features: median imputation and standard scaling; categorical: constant
    imputation and one-hot encoding (unknown categories ignored). The seed becomes the
    estimator's ``random_state`` unless ``training.params`` sets one.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    estimator = _estimator(cfg, load_estimator_class(cfg.training.estimator, allowed_prefixes))
    transformers = []
    if cfg.features.numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median")),
                        ("scale", StandardScaler()),
                    ]
                ),
                list(cfg.features.numeric),
            )
        )
    if cfg.features.categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                list(cfg.features.categorical),
            )
        )
    pre = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", pre), ("model", estimator)])
