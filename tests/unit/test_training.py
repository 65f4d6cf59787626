"""Unit tests of retrain_lib.training on small simulated data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score, roc_auc_score

from retrain_lib.config import Split, load_model_config
from retrain_lib.data import load_window
from retrain_lib.errors import ConfigError, DataError
from retrain_lib.simulate import simulate
from retrain_lib.training import build_pipeline, load_estimator_class, split_frame, train_model, xy

MODELS = Path(__file__).resolve().parents[2] / "configs" / "models"
START = dt.date(2026, 1, 1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """OpenMP spin-waiting makes HistGradientBoosting very slow on a busy machine: use one thread."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def credit_cfg():
    return load_model_config(MODELS / "credit_default.yaml")


@pytest.fixture(scope="module")
def demand_cfg():
    return load_model_config(MODELS / "daily_demand.yaml")


def _with_split(cfg, method: str, fraction: float = 0.25):
    training = cfg.training.model_copy(update={"split": Split(method=method, holdout_fraction=fraction)})
    return cfg.model_copy(update={"training": training})


@pytest.fixture(scope="module")
def credit_frame(tmp_path_factory, credit_cfg) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("credit")
    simulate(credit_cfg, root, days=12, rows_per_day=200, seed=11, start=START)
    # as_of 2 days after the end: the last 5 days have no labels yet
    return load_window(credit_cfg, root, START, START + dt.timedelta(days=11),
                       as_of=START + dt.timedelta(days=13)).frame


@pytest.fixture(scope="module")
def demand_frame(tmp_path_factory, demand_cfg) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("demand")
    simulate(demand_cfg, root, days=10, rows_per_day=150, seed=4, start=START)
    return load_window(demand_cfg, root, START, START + dt.timedelta(days=9), as_of=START + dt.timedelta(days=10)).frame


# -----------------------------------------------------------------------------------------
# Estimator import path
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["os.system", "builtins.eval", "subprocess.Popen", "collections.OrderedDict",
                                  "sklearnx.linear_model.LogisticRegression", "numpy.linalg.LinAlgError",
                                  "xsklearn.ensemble.RandomForestClassifier"])
def test_paths_outside_prefixes_are_rejected(path):
    with pytest.raises(ConfigError, match="outside the allowed modules"):
        load_estimator_class(path)


@pytest.mark.parametrize("path", ["sklearn.metrics.roc_auc_score", "sklearn.base.clone", "sklearn.linear_model",
                                  "sklearn.utils.Bunch", "sklearn.base.BaseEstimator", "sklearn.__version__"])
def test_non_estimator_classes_and_callables_are_rejected(path):
    with pytest.raises(ConfigError, match="not a scikit-learn estimator class"):
        load_estimator_class(path)


@pytest.mark.parametrize("path", ["sklearn.linear_model.NoSuchModel", "sklearn.nosuchmodule.Model",
                                  "sklearn.ensemble.RandomForestClassifier.fit", "sklearn.base.os.system"])
def test_unimportable_paths_are_rejected(path):
    with pytest.raises(ConfigError, match="cannot be imported"):
        load_estimator_class(path)


def test_classes_outside_custom_prefixes_are_rejected():
    with pytest.raises(ConfigError, match="outside the allowed modules"):
        load_estimator_class("sklearn.linear_model.LogisticRegression", allowed_prefixes=("mycompany.",))
    # an allowed prefix still needs an estimator class
    with pytest.raises(ConfigError, match="not a scikit-learn estimator class"):
        load_estimator_class("collections.OrderedDict", allowed_prefixes=("collections.",))


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError):
        load_estimator_class("os.system")


def test_allowed_estimators_load():
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor

    assert load_estimator_class("sklearn.ensemble.HistGradientBoostingClassifier") is HistGradientBoostingClassifier
    assert load_estimator_class("sklearn.ensemble.RandomForestRegressor") is RandomForestRegressor


# -----------------------------------------------------------------------------------------
# Pipeline
# -----------------------------------------------------------------------------------------


def test_build_pipeline_structure_and_seed(credit_cfg):
    pipe = build_pipeline(credit_cfg)
    assert [name for name, _ in pipe.steps] == ["preprocess", "model"]
    params = pipe.named_steps["model"].get_params()
    assert params["max_iter"] == 150 and params["learning_rate"] == 0.08 and params["max_leaf_nodes"] == 15
    assert params["random_state"] == credit_cfg.training.seed == 42
    cols = {name: list(c) for name, _, c in pipe.named_steps["preprocess"].transformers}
    assert cols == {"numeric": credit_cfg.features.numeric, "categorical": credit_cfg.features.categorical}


def test_build_pipeline_keeps_an_explicit_random_state(credit_cfg):
    training = credit_cfg.training.model_copy(update={"params": {"random_state": 5}})
    pipe = build_pipeline(credit_cfg.model_copy(update={"training": training}))
    assert pipe.named_steps["model"].get_params()["random_state"] == 5


def test_build_pipeline_rejects_unknown_params(credit_cfg):
    training = credit_cfg.training.model_copy(update={"params": {"n_trees": 5}})
    with pytest.raises(ConfigError, match="training.params do not fit"):
        build_pipeline(credit_cfg.model_copy(update={"training": training}))


def test_pipeline_trains_on_simulated_classification_data(credit_cfg, credit_frame):
    split = split_frame(credit_cfg, credit_frame)
    model = train_model(credit_cfg, split.train)
    X, y = xy(credit_cfg, split.holdout)
    assert X.isna().any().any()  # a few incomes are missing: the imputer handles them
    proba = model.predict_proba(X)[:, 1]
    assert proba.shape == (len(split.holdout),) and ((proba >= 0) & (proba <= 1)).all()
    assert roc_auc_score(y, proba) > 0.65
    # unseen categories at prediction time are ignored, not an error
    X2 = X.copy()
    X2.loc[X2.index[0], "region"] = "atlantis"
    model.predict_proba(X2)


def test_pipeline_trains_on_simulated_regression_data(demand_cfg, demand_frame):
    split = split_frame(demand_cfg, demand_frame)
    model = train_model(demand_cfg, split.train)
    X, y = xy(demand_cfg, split.holdout)
    assert r2_score(y, model.predict(X)) > 0.5


def test_training_is_deterministic(credit_cfg, credit_frame):
    split = split_frame(credit_cfg, credit_frame)
    X, _ = xy(credit_cfg, split.holdout)
    a = train_model(credit_cfg, split.train).predict_proba(X)
    b = train_model(credit_cfg, split.train).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_single_class_training_data_is_refused(credit_cfg, credit_frame):
    labelled = credit_frame[credit_frame["__label_known"]]
    only_zero = labelled[labelled["defaulted"] == 0]
    with pytest.raises(DataError, match="single class"):
        train_model(credit_cfg, only_zero)


# -----------------------------------------------------------------------------------------
# Splits
# -----------------------------------------------------------------------------------------


def test_time_split_puts_latest_rows_in_holdout(credit_cfg, credit_frame):
    assert credit_cfg.training.split.method == "time"
    labelled = credit_frame[credit_frame["defaulted"].notna()]
    assert len(labelled) < len(credit_frame)  # some labels have not arrived
    split = split_frame(credit_cfg, credit_frame)
    assert split.train["defaulted"].notna().all() and split.holdout["defaulted"].notna().all()
    assert len(split.train) + len(split.holdout) == len(labelled)
    assert len(split.holdout) == round(len(labelled) * 0.25)
    assert split.train["event_time"].max() <= split.holdout["event_time"].min()
    # the holdout is exactly the latest 25 % of labelled rows by time
    latest = labelled.sort_values(["event_time", "application_id"]).tail(len(split.holdout))
    assert set(split.holdout["application_id"]) == set(latest["application_id"])
    assert not set(split.train["application_id"]) & set(split.holdout["application_id"])


def test_time_split_with_tied_timestamps_is_deterministic(credit_cfg, credit_frame):
    labelled = credit_frame[credit_frame["defaulted"].notna()].copy()
    labelled["event_time"] = pd.Timestamp("2026-01-01")  # all tied: order by id
    a = split_frame(credit_cfg, labelled)
    b = split_frame(credit_cfg, labelled.sample(frac=1.0, random_state=3))
    assert list(a.holdout["application_id"]) == list(b.holdout["application_id"])
    assert a.train["application_id"].max() < a.holdout["application_id"].min()


@pytest.mark.parametrize("fraction", [0.2, 0.25, 0.4])
def test_stratified_split_keeps_class_balance(credit_cfg, credit_frame, fraction):
    cfg = _with_split(credit_cfg, "stratified", fraction)
    split = split_frame(cfg, credit_frame)
    labelled = credit_frame[credit_frame["defaulted"].notna()]
    overall = labelled["defaulted"].mean()
    assert 0.1 < overall < 0.5
    assert abs(split.train["defaulted"].mean() - overall) < 0.02
    assert abs(split.holdout["defaulted"].mean() - overall) < 0.02
    assert len(split.train) + len(split.holdout) == len(labelled)
    assert len(split.holdout) == pytest.approx(fraction * len(labelled), abs=1)
    assert not set(split.train["application_id"]) & set(split.holdout["application_id"])


def test_random_splits_are_seeded(credit_cfg, credit_frame):
    cfg = _with_split(credit_cfg, "random", 0.3)
    a = split_frame(cfg, credit_frame)
    b = split_frame(cfg, credit_frame.sample(frac=1.0, random_state=1))  # input order does not matter
    assert set(a.holdout["application_id"]) == set(b.holdout["application_id"])
    other = cfg.model_copy(update={"training": cfg.training.model_copy(update={"seed": 99})})
    c = split_frame(other, credit_frame)
    assert set(a.holdout["application_id"]) != set(c.holdout["application_id"])


def test_too_few_labelled_rows(credit_cfg, credit_frame):
    labelled = credit_frame[credit_frame["defaulted"].notna()]
    with pytest.raises(DataError, match="only 19 labelled rows"):
        split_frame(credit_cfg, labelled.head(19))
    split_frame(credit_cfg, labelled.head(20))
