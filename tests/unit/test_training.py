"""Unit tests of retrain_lib.learn.training on small simulated data."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.metrics import r2_score, roc_auc_score

from retrain_lib.core.config import ModelConfig, check_model_file, load_model_config
from retrain_lib.core.config_sections import Recency, Split, Training
from retrain_lib.core.errors import ConfigError, DataError, TrainingError
from retrain_lib.core.estimators import module_allowed
from retrain_lib.learn.estimator_import import check_training_config, load_estimator_class
from retrain_lib.learn.training import fit, train_model
from retrain_lib.learn.training_data import sample_weights, split_frame, xy
from retrain_lib.learn.training_pipeline import build_pipeline
from retrain_lib.store.data import load_window
from retrain_lib.tools.simulate import simulate

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


def _with_training(cfg, **update):
    """``cfg`` with ``training`` fields replaced, the section validated again (as a YAML file would be)."""
    raw = {**cfg.training.model_dump(mode="json", exclude_unset=True), **update}
    return cfg.model_copy(update={"training": Training.model_validate(raw)})


@pytest.fixture(scope="module")
def credit_frame(tmp_path_factory, credit_cfg) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("credit")
    simulate(credit_cfg, root, days=12, rows_per_day=200, seed=11, start=START)
    # as_of 2 days after the end: the last 5 days have no labels yet
    return load_window(
        credit_cfg, root, START, START + dt.timedelta(days=11), as_of=START + dt.timedelta(days=13)
    ).frame


@pytest.fixture(scope="module")
def demand_frame(tmp_path_factory, demand_cfg) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("demand")
    simulate(demand_cfg, root, days=10, rows_per_day=150, seed=4, start=START)
    return load_window(demand_cfg, root, START, START + dt.timedelta(days=9), as_of=START + dt.timedelta(days=10)).frame


# -----------------------------------------------------------------------------------------
# Estimator import path
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "os.system",
        "builtins.eval",
        "subprocess.Popen",
        "collections.OrderedDict",
        "sklearnx.linear_model.LogisticRegression",
        "numpy.linalg.LinAlgError",
        "xsklearn.ensemble.RandomForestClassifier",
        "sklearn_evil.Model",
        "sklearnx.evil",
    ],
)
def test_paths_outside_prefixes_are_rejected(path):
    with pytest.raises(ConfigError, match="outside the allowed modules"):
        load_estimator_class(path)


@pytest.mark.parametrize(
    "path",
    [
        "sklearn.metrics.roc_auc_score",
        "sklearn.base.clone",
        "sklearn.linear_model",
        "sklearn.utils.Bunch",
        "sklearn.base.BaseEstimator",
        "sklearn.utils.all_estimators",
    ],
)
def test_non_estimator_classes_and_callables_are_rejected(path):
    with pytest.raises(ConfigError, match="not a scikit-learn estimator class"):
        load_estimator_class(path)


@pytest.mark.parametrize(
    "path",
    ["sklearn.__version__", "sklearn.ensemble._forest.BaseForest", "sklearn.__class__.__init__", "_sklearn.Model"],
)
def test_private_and_dunder_paths_are_rejected_before_any_import(path):
    with pytest.raises(ConfigError, match="is not an import path"):
        load_estimator_class(path)


@pytest.mark.parametrize(
    "path",
    [
        "sklearn.linear_model.NoSuchModel",
        "sklearn.nosuchmodule.Model",
        "sklearn.ensemble.RandomForestClassifier.fit",
        "sklearn.base.os.system",
    ],
)
def test_unimportable_paths_are_rejected(path):
    with pytest.raises(ConfigError, match="cannot be imported"):
        load_estimator_class(path)


def test_classes_outside_custom_prefixes_are_rejected():
    with pytest.raises(ConfigError, match="outside the allowed modules"):
        load_estimator_class("sklearn.linear_model.LogisticRegression", allowed_prefixes=("mycompany.",))
    # an allowed prefix still needs an estimator class
    with pytest.raises(ConfigError, match="not a scikit-learn estimator class"):
        load_estimator_class("collections.OrderedDict", allowed_prefixes=("collections.",))


@pytest.mark.parametrize(
    ("path", "prefixes"),
    [("os.system", ("os.",)), ("builtins.eval", ("builtins.",)), ("sklearn.utils.all_estimators", ("sklearn.",))],
)
def test_functions_are_rejected_even_inside_allowed_modules(path, prefixes):
    with pytest.raises(ConfigError) as err:
        load_estimator_class(path, allowed_prefixes=prefixes)
    message = str(err.value)
    assert message.startswith(f"training.estimator {path!r} ")
    assert "it is a function" in message and "name an estimator class" in message


def test_prefixes_match_whole_module_components():
    assert module_allowed("sklearn", ["sklearn."]) and module_allowed("sklearn.ensemble", ["sklearn"])
    assert not module_allowed("sklearnx", ["sklearn."]) and not module_allowed("sklearnx.evil", ["sklearn"])
    assert module_allowed("acme.models.trees", ["acme.models."])
    assert not module_allowed("acme.modelsx", ["acme.models."]) and not module_allowed("acme", ["acme.models."])
    assert not module_allowed("anything", ["", "."])


def _package(root: Path, name: str, body: str) -> None:
    pkg = root / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(body)


def test_modules_outside_the_prefixes_are_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    _package(tmp_path, "sklearnx", f"open({str(marker)!r}, 'w').close()\nclass Model:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="outside the allowed modules"):
        load_estimator_class("sklearnx.Model")
    assert not marker.exists() and "sklearnx" not in sys.modules


def test_reexported_classes_are_rejected(tmp_path, monkeypatch):
    _package(
        tmp_path,
        "acme_models",
        "from sklearn.linear_model import LogisticRegression\nclass Own(LogisticRegression):\n    pass\n",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_estimator_class("acme_models.LogisticRegression", allowed_prefixes=("acme_models.",))
    assert "re-exported by acme_models" in str(err.value)
    assert "sklearn.linear_model._logistic.LogisticRegression" in str(err.value)
    # a class defined in the allowed module itself is fine
    assert load_estimator_class("acme_models.Own", allowed_prefixes=("acme_models.",)).__name__ == "Own"
    # a standard-library class re-exported by an sklearn module
    with pytest.raises(ConfigError, match="re-exported by sklearn.base"):
        load_estimator_class("sklearn.base.defaultdict")


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
    # per class, the holdout takes the holdout fraction of that class's rows (to within one row)
    for cls, count in labelled["defaulted"].value_counts().items():
        assert abs((split.holdout["defaulted"] == cls).sum() - fraction * count) <= 1
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


# -----------------------------------------------------------------------------------------
# Training config validation
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"recency": {"days": 90, "weight": 0}}, "greater than 0"),
        ({"recency": {"days": 90, "weight": -2}}, "greater than 0"),
        ({"recency": {"days": 0, "weight": 2}}, "greater than 0"),
        ({"recency": {"half_life_days": 0}}, "greater than 0"),
        ({"recency": {"days": 90}}, "recency days needs weight too"),
        ({"recency": {"weight": 2}}, "recency weight needs days too"),
        ({"recency": {}}, "recency needs days and weight, half_life_days, or both"),
        ({"recency": {"days": 30, "weight": 1}}, "same weight"),
        ({"recency": {"days": 30, "wieght": 2}}, "Extra inputs"),
        ({"timeout_minutes": 0}, "greater than 0"),
        ({"timeout_minutes": -1.5}, "greater than 0"),
        ({"warm_start": True, "warm_start_extra": 0}, "greater than or equal to 1"),
        ({"warm_start_extra": 10}, "warm_start_extra only applies with warm_start: true"),
    ],
)
def test_bad_training_options_are_config_errors(update, message):
    raw = {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier", **update}
    with pytest.raises(ValidationError, match=message):
        Training.model_validate(raw)


def test_training_options_are_reported_with_their_location(tmp_path):
    text = re.sub(r"^  recency:.*\n", "", (MODELS / "credit_default.yaml").read_text(), flags=re.M)
    bad = text.replace("  seed: 42\n", "  seed: 42\n  recency: {days: 14, weight: -1}\n  timeout_minutes: 0\n")
    assert bad != text
    path = tmp_path / "credit_default.yaml"
    path.write_text(bad)
    config, problems = check_model_file(path)
    assert config is None
    fields = {p.field for p in problems}
    assert fields == {"training.recency.weight", "training.timeout_minutes"}
    line = bad.splitlines().index("  recency: {days: 14, weight: -1}") + 1
    assert {p.line for p in problems if p.field == "training.recency.weight"} == {line}


def test_valid_training_options_load():
    t = Training.model_validate(
        {
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "recency": {"days": 90, "weight": 2.0, "half_life_days": 30},
            "timeout_minutes": 2.5,
            "warm_start": True,
            "warm_start_extra": 25,
        }
    )
    assert t.recency == Recency(days=90, weight=2.0, half_life_days=30)
    assert (t.timeout_minutes, t.warm_start, t.extra_iterations) == (2.5, True, 25)
    assert Training(estimator="sklearn.linear_model.LogisticRegression", warm_start=True).extra_iterations == 50


def test_check_training_config_needs_the_estimator(credit_cfg):
    assert check_training_config(credit_cfg) == []
    knn = _with_training(
        credit_cfg,
        estimator="sklearn.neighbors.KNeighborsClassifier",
        params={},
        recency={"days": 3, "weight": 2},
        warm_start=True,
    )
    problems = {loc: (reason, fix) for loc, reason, fix in check_training_config(knn)}
    assert set(problems) == {("training", "recency"), ("training", "warm_start")}
    assert "KNeighborsClassifier.fit does not accept sample_weight" in problems[("training", "recency")][0]
    assert "has no warm_start parameter" in problems[("training", "warm_start")][0]
    typo = _with_training(credit_cfg, params={"max_iters": 3})
    [(loc, reason, _)] = check_training_config(typo)
    assert loc == ("training", "params") and "max_iters is not a parameter of HistGradientBoostingClassifier" in reason
    outside = _with_training(credit_cfg, estimator="os.system")
    [(loc, reason, fix)] = check_training_config(outside)
    assert loc == ("training", "estimator") and "outside the allowed modules" in reason and "platform.yaml" in fix


# -----------------------------------------------------------------------------------------
# Recency weights
# -----------------------------------------------------------------------------------------


def _tiny_cfg(**training) -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "name": "tiny",
            "owner": "me",
            "task": "regression",
            "data": {"path": "tiny", "id_column": "id", "timestamp_column": "ts"},
            "features": {"target": "y", "numeric": ["x"]},
            "training": {"estimator": "sklearn.linear_model.LinearRegression", **training},
        }
    )


TINY = pd.DataFrame(
    {
        "id": [1, 2, 3, 4, 5],
        "ts": pd.to_datetime(
            ["2026-01-10 12:00", "2026-01-09 00:00", "2026-01-08 23:00", "2026-01-01 00:00", "2025-12-22 00:00"]
        ),
        "x": [1.0, 2.0, 3.0, 4.0, 5.0],
        "y": [1.0, 2.0, 3.0, 4.0, 5.0],
    }
)


def test_step_recency_weights_of_a_tiny_frame():
    cfg = _tiny_cfg(recency={"days": 2, "weight": 3.0})
    # as_of 2026-01-10: ages from 2026-01-11 00:00 are 0.5, 2 (the boundary counts), 2.04, 10, 20 days
    raw = np.array([3.0, 3.0, 1.0, 1.0, 1.0])  # mean 1.8
    np.testing.assert_allclose(sample_weights(cfg, TINY, dt.date(2026, 1, 10)), raw / 1.8)
    np.testing.assert_allclose(sample_weights(cfg, TINY, dt.date(2026, 1, 10)), [5 / 3, 5 / 3, 5 / 9, 5 / 9, 5 / 9])
    # default anchor: the latest timestamp (2026-01-10 12:00): the row at 2026-01-08 23:00 is 1.54 days old
    np.testing.assert_allclose(sample_weights(cfg, TINY, None), np.array([3, 3, 3, 1, 1]) / 2.2)
    # a datetime anchors at that instant
    np.testing.assert_allclose(sample_weights(cfg, TINY, dt.datetime(2026, 1, 10, 12)), np.array([3, 3, 3, 1, 1]) / 2.2)
    assert sample_weights(_tiny_cfg(), TINY, None) is None


def test_half_life_recency_weights_of_a_tiny_frame():
    cfg = _tiny_cfg(recency={"half_life_days": 10})
    ages = np.array([0.5, 2.0, 2 + 1 / 24, 10.0, 20.0])
    expected = 2.0 ** (-ages / 10)
    np.testing.assert_allclose(sample_weights(cfg, TINY, dt.date(2026, 1, 10)), expected / expected.mean())
    both = _tiny_cfg(recency={"half_life_days": 10, "days": 2, "weight": 4})
    expected = expected * np.array([4, 4, 1, 1, 1])
    np.testing.assert_allclose(sample_weights(both, TINY, dt.date(2026, 1, 10)), expected / expected.mean())


def test_recency_needs_timestamps():
    frame = TINY.copy()
    frame.loc[2, "ts"] = pd.NaT
    with pytest.raises(DataError, match="1 training rows of 'tiny' have no 'ts'"):
        sample_weights(_tiny_cfg(recency={"days": 2, "weight": 3.0}), frame, None)


def _shifting_frame() -> pd.DataFrame:
    """50 old days where y = x and 10 recent days where y = -x (one row an hour)."""
    rng = np.random.default_rng(0)
    ts = pd.date_range("2026-01-01", periods=60 * 24, freq="h")
    x = rng.normal(size=len(ts))
    recent = ts >= pd.Timestamp("2026-02-20")
    y = np.where(recent, -x, x) + rng.normal(scale=0.1, size=len(ts))
    return pd.DataFrame({"id": np.arange(len(ts)), "ts": ts, "x": x, "y": y})


def test_recency_weighting_changes_the_model():
    frame = _shifting_frame()
    plain, plain_info = fit(_tiny_cfg(), frame)
    cfg = _tiny_cfg(recency={"days": 10, "weight": 20.0})
    weighted, info = fit(cfg, frame, as_of=dt.date(2026, 3, 1))
    probe = pd.DataFrame({"x": [1.0]})
    assert plain.predict(probe)[0] > 0.5  # 5 of 6 rows say y = x
    assert weighted.predict(probe)[0] < -0.5  # 10 days x 20 outweigh 50 days x 1: y = -x
    assert plain_info.weighted_rows_share is None and plain_info.recent_weight_share is None
    assert info.weighted_rows_share == pytest.approx(10 / 60)
    assert info.recent_weight_share == pytest.approx(200 / 250)


def test_recency_with_an_estimator_without_sample_weight_is_refused(credit_cfg, credit_frame):
    cfg = _with_training(
        credit_cfg, estimator="sklearn.neighbors.KNeighborsClassifier", params={}, recency={"days": 3, "weight": 2}
    )
    split = split_frame(cfg, credit_frame)
    with pytest.raises(ConfigError, match="training.recency needs an estimator whose fit accepts sample_weight"):
        train_model(cfg, split.train)


# -----------------------------------------------------------------------------------------
# Timeout: child process
# -----------------------------------------------------------------------------------------


def test_same_predictions_in_process_and_in_a_child_process(credit_cfg, credit_frame):
    cfg = _with_training(credit_cfg, recency={"half_life_days": 3}, timeout_minutes=10)
    split = split_frame(cfg, credit_frame)
    X, _ = xy(cfg, split.holdout)
    child, child_info = fit(cfg, split.train)
    inproc, inproc_info = fit(_with_training(credit_cfg, recency={"half_life_days": 3}), split.train)
    assert child_info.child_process and child_info.timeout_s == 600
    assert not inproc_info.child_process and inproc_info.timeout_s is None
    np.testing.assert_array_equal(child.predict_proba(X), inproc.predict_proba(X))
    assert multiprocessing.active_children() == []


def test_timeout_kills_a_slow_fit(credit_cfg, credit_frame):
    cfg = _with_training(
        credit_cfg, params={"max_iter": 100_000, "early_stopping": False, "max_leaf_nodes": 63}, timeout_minutes=0.01
    )
    split = split_frame(cfg, credit_frame)
    started = time.monotonic()
    with pytest.raises(TrainingError) as err:
        train_model(cfg, split.train)
    elapsed = time.monotonic() - started
    message = str(err.value)
    assert "training of 'credit_default'" in message and "HistGradientBoostingClassifier" in message
    assert "exceeded its timeout of 0.01 minutes" in message and "raise training.timeout_minutes" in message
    assert elapsed < 10  # 0.6 s, then the kill; not the minutes the fit would take
    assert multiprocessing.active_children() == []


def test_errors_in_the_child_process_become_training_errors(credit_cfg, credit_frame):
    cfg = _with_training(
        credit_cfg, estimator="sklearn.linear_model.LogisticRegression", params={"C": -1.0}, timeout_minutes=5
    )
    split = split_frame(cfg, credit_frame)
    with pytest.raises(TrainingError, match="fitting sklearn.linear_model.LogisticRegression failed: .*'C'"):
        train_model(cfg, split.train)


def test_an_explicit_timeout_must_be_positive(credit_cfg, credit_frame):
    with pytest.raises(ValueError, match="The 'timeout_s' parameter of fit must be a positive number or None"):
        fit(credit_cfg, credit_frame, timeout_s=0)


# -----------------------------------------------------------------------------------------
# Warm start
# -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def champion_parts(credit_cfg, credit_frame):
    """A champion trained on the older half of the training rows, and all training rows."""
    cfg = _with_training(credit_cfg, params={"max_iter": 30, "learning_rate": 0.1})
    split = split_frame(cfg, credit_frame)
    older = split.train.iloc[: len(split.train) // 2]
    champion = train_model(cfg, older)
    return cfg, champion, split


def test_warm_start_continues_from_the_champion(champion_parts):
    cfg, champion, split = champion_parts
    parent_iters = champion.named_steps["model"].n_iter_
    parent_mean = champion.named_steps["preprocess"].named_transformers_["numeric"]["scale"].mean_.copy()
    warm_cfg = _with_training(cfg, warm_start=True, warm_start_extra=20)
    warm, info = fit(warm_cfg, split.train, init_model=champion, init_model_ref="models:/credit_default/3")
    scratch = train_model(cfg, split.train)
    assert parent_iters == 30
    assert warm.named_steps["model"].n_iter_ == parent_iters + 20
    assert champion.named_steps["model"].n_iter_ == parent_iters  # the champion is not modified
    assert info.warm_started_from == "models:/credit_default/3"
    assert "warm-started HistGradientBoostingClassifier" in info.notes[0] and "max_iter 30 -> 50" in info.notes[0]
    # the champion's fitted preprocessing is reused, not refitted on the new rows
    warm_mean = warm.named_steps["preprocess"].named_transformers_["numeric"]["scale"].mean_
    scratch_mean = scratch.named_steps["preprocess"].named_transformers_["numeric"]["scale"].mean_
    np.testing.assert_array_equal(warm_mean, parent_mean)
    assert not np.allclose(scratch_mean, parent_mean)
    X, _ = xy(cfg, split.holdout)
    assert not np.allclose(warm.predict_proba(X), scratch.predict_proba(X))
    assert not np.allclose(warm.predict_proba(X), champion.predict_proba(X))


def test_warm_start_with_changed_features_trains_from_scratch(champion_parts, caplog):
    cfg, champion, split = champion_parts
    fewer = cfg.features.model_copy(update={"numeric": [c for c in cfg.features.numeric if c != "age"]})
    warm_cfg = _with_training(cfg, warm_start=True).model_copy(update={"features": fewer})
    with caplog.at_level("INFO", logger="retrain_lib.learn.training"):
        model, info = fit(warm_cfg, split.train, init_model=champion)
    assert info.warm_started_from is None
    assert "the feature lists changed since the champion (numeric -age): trained from scratch" in info.notes[0]
    assert info.notes[0] in caplog.text
    assert model.named_steps["model"].n_iter_ == 30
    X, _ = xy(warm_cfg, split.holdout)
    scratch = train_model(cfg.model_copy(update={"features": fewer}), split.train)
    np.testing.assert_array_equal(model.predict_proba(X), scratch.predict_proba(X))


def test_warm_start_without_warm_start_support_trains_from_scratch(champion_parts):
    cfg, _, split = champion_parts
    knn_cfg = _with_training(
        cfg, estimator="sklearn.neighbors.KNeighborsClassifier", params={}, warm_start=True, recency=None
    )  # KNN's fit takes no sample weights
    knn_champion = train_model(knn_cfg, split.train.iloc[:300])
    _, info = fit(knn_cfg, split.train, init_model=knn_champion)
    assert info.warm_started_from is None and "KNeighborsClassifier has no warm_start parameter" in info.notes[0]
    _, info = fit(_with_training(cfg, warm_start=True), split.train)
    assert info.notes == ("no champion to continue: trained from scratch",)


def test_warm_start_grows_a_forest(demand_cfg, demand_frame):
    cfg = _with_training(demand_cfg, params={"n_estimators": 8, "max_depth": 6, "n_jobs": 1})
    split = split_frame(cfg, demand_frame)
    champion = train_model(cfg, split.train.iloc[: len(split.train) // 2])
    warm, info = fit(
        _with_training(cfg, warm_start=True, warm_start_extra=5), split.train, init_model=champion, timeout_s=300
    )
    assert len(warm.named_steps["model"].estimators_) == 13 and info.child_process
    # the first 8 trees are the champion's
    X, _ = xy(cfg, split.holdout)
    Xt = champion.named_steps["preprocess"].transform(X)
    for old, new in zip(champion.named_steps["model"].estimators_, warm.named_steps["model"].estimators_[:8]):
        np.testing.assert_array_equal(old.predict(Xt), new.predict(Xt))
    assert info.warm_started_from == "init_model"
