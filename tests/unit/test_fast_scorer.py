"""The gateway's numpy scorer gives the pipeline's answers, and a missing categorical value
(JSON null, parquet null or NaN) is the ``__missing__`` category in training and serving."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.metrics import predict_scores
from retrain_lib.learn.training_data import xy
from retrain_lib.learn.training_pipeline import build_pipeline
from retrain_lib.serving.fast_path import compile_fast
from retrain_lib.serving.schema import FeatureSchema


def _cfg(task: str) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "name": "m",
            "owner": "ml@example.com",
            "task": task,
            "data": {"path": "m", "id_column": "id", "timestamp_column": "ts"},
            "features": {"target": "y", "numeric": ["a", "b"], "categorical": ["plan", "region"]},
            "training": {
                "estimator": "sklearn.linear_model.LogisticRegression"
                if task == "classification"
                else "sklearn.linear_model.Ridge"
            },
        }
    )


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plan = rng.choice(np.array(["basic", "pro", None], dtype=object), n, p=[0.5, 0.3, 0.2])
    region = rng.choice(np.array(["north", "south"], dtype=object), n)
    a = rng.normal(size=n)
    a[rng.random(n) < 0.1] = np.nan
    b = rng.normal(size=n)
    # missing plan carries signal of its own: it must be learned as a category
    y = (np.nan_to_num(a) + (pd.isna(plan) * 2.0) + rng.normal(scale=0.3, size=n) > 1).astype(int)
    return pd.DataFrame({"a": a, "b": b, "plan": plan, "region": region, "y": y})


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_fast_scorer_equals_the_pipeline_with_missing_and_unknown_values(task):
    cfg = _cfg(task)
    X, y = xy(cfg, _frame(600))
    assert X["plan"].isna().sum() > 0 and all(v is not None for v in X["plan"])  # None became NaN
    model = build_pipeline(cfg).fit(X, y)
    onehot = model[0].named_transformers_["categorical"].named_steps["onehot"]
    assert "__missing__" in list(onehot.categories_[0]) and None not in list(onehot.categories_[0])
    schema = FeatureSchema.from_config(cfg)
    fast = compile_fast(model, schema, task)
    assert fast is not None
    records = [
        {"a": 0.5, "b": -1.0, "plan": "pro", "region": "north"},
        {"a": None, "b": 2.0, "plan": None, "region": "south"},  # JSON nulls
        {"a": 1.0, "b": 0.0, "plan": float("nan"), "region": "east"},  # NaN and an unseen region
        {"a": 1.0, "b": 0.0, "plan": "enterprise", "region": None},  # unseen plan
    ]
    want = predict_scores(model, schema.frame(records), task)
    np.testing.assert_allclose(fast(records), want, rtol=1e-9, atol=1e-12)
    # the pipeline on the training representation (NaN for missing) gives the same
    frame = pd.DataFrame(records).astype({"plan": object, "region": object})
    np.testing.assert_allclose(predict_scores(model, xy(cfg, frame.assign(y=0))[0], task), want, rtol=1e-9)


def test_a_null_category_scores_as_missing_not_as_unknown():
    cfg = _cfg("classification")
    X, y = xy(cfg, _frame(2000, seed=1))
    model = build_pipeline(cfg).fit(X, y)
    fast = compile_fast(model, FeatureSchema.from_config(cfg), "classification")
    base = {"a": 0.0, "b": 0.0, "region": "north"}
    null, nan, unknown = (fast([{**base, "plan": v}])[0] for v in (None, math.nan, "never-seen"))
    assert null == nan
    assert null > unknown + 0.1  # missing plan raises the risk in the data; an unknown plan is all zeros
