"""The drift scenarios of the adaptation benchmark: their truth is what their data shows.

Each check measures the data with an independent, simple model (scikit-learn fitted here,
not the platform's training code): a concept change makes a model trained before the change
much worse after it while a model trained after is good; a covariate shift moves the inputs
while a model trained before stays as good as one trained after; a prior shift moves the
label rate while the inputs of each class stay put.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import r2_score, roc_auc_score

from retrain_lib.store.data import load_window
from retrain_lib.tools.scenarios import (
    DayState,
    config_dict,
    generate_day,
    scenario,
    shipped_config,
    write_scenario,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAY = dt.date(2026, 3, 1)
N = 3000


@pytest.fixture(autouse=True)
def _one_thread():
    # HistGradientBoosting's OpenMP threads crawl on a busy shared machine; one is plenty here.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def _encode(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.get_dummies(frame, dtype=float)


def _draw(task: str, state: DayState, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    return generate_day(task, np.random.default_rng(seed), N, state, DAY)


def _fit_score(task: str, train: DayState, test: DayState, seed: int = 1) -> float:
    """Metric (AUC or R2) on ``test`` data of a model fitted on ``train`` data."""
    x, y = _draw(task, train, seed)
    xt, yt = _draw(task, test, seed + 100)
    cols = _encode(pd.concat([x, xt])).columns
    X, Xt = _encode(x).reindex(columns=cols, fill_value=0), _encode(xt).reindex(columns=cols, fill_value=0)
    if task == "classification":
        model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X, y)
        return roc_auc_score(yt, model.predict_proba(Xt)[:, 1])
    model = HistGradientBoostingRegressor(max_iter=40, random_state=0).fit(X, y)
    return r2_score(yt, model.predict(Xt))


A, B, SHIFTED, PRIOR = DayState(), DayState(concept_b=1.0), DayState(covariate=True), DayState(prior=True)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_concept_change_breaks_a_model_trained_before(task):
    before_on_a = _fit_score(task, A, A)
    before_on_b = _fit_score(task, A, B)
    after_on_b = _fit_score(task, B, B)
    assert before_on_a - before_on_b > 0.15
    assert after_on_b - before_on_b > 0.1


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_concept_change_keeps_the_inputs(task):
    a, _ = _draw(task, A, 3)
    b, _ = _draw(task, B, 3)
    pd.testing.assert_frame_equal(a, b)  # the same random numbers give the same inputs


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_covariate_shift_moves_inputs_but_a_model_trained_before_stays_accurate(task):
    a, _ = _draw(task, A, 4)
    s, _ = _draw(task, SHIFTED, 4)
    column = "credit_utilization" if task == "classification" else "temperature"
    assert abs(s[column].mean() - a[column].mean()) > 0.5 * a[column].std()
    before_on_shifted = _fit_score(task, A, SHIFTED)
    after_on_shifted = _fit_score(task, SHIFTED, SHIFTED)
    assert before_on_shifted > after_on_shifted - 0.02


def test_prior_shift_moves_the_label_rate_not_the_inputs_of_a_class():
    x, y = _draw("classification", A, 5)
    xs, ys = _draw("classification", PRIOR, 5)
    assert len(xs) == N
    assert ys.mean() > y.mean() + 0.12
    for cls in (0, 1):
        before, after = x.loc[y == cls, "credit_utilization"], xs.loc[ys == cls, "credit_utilization"]
        assert abs(after.mean() - before.mean()) < 0.02
    # the ranking is unchanged: a model trained before keeps its ROC AUC
    assert _fit_score("classification", A, PRIOR) > _fit_score("classification", A, A) - 0.02


def test_regression_prior_shift_raises_demand():
    _, y = _draw("regression", A, 6)
    _, ys = _draw("regression", PRIOR, 6)
    assert ys.mean() > 1.15 * y.mean()


def test_scenario_truth():
    assert scenario("stable").changes == ()
    assert scenario("abrupt_concept").changes == ((40, 40),)
    gradual = scenario("gradual_concept")
    assert gradual.changes == ((40, 49),)
    assert [gradual.state(d).concept_b for d in (39, 40, 44, 49, 60)] == [0.0, 0.1, 0.5, 1.0, 1.0]
    recurring = scenario("recurring_concept")
    assert recurring.changes == ((40, 40), (65, 65))
    assert [recurring.state(d).concept_b for d in (39, 40, 64, 65)] == [0.0, 1.0, 1.0, 0.0]
    assert not scenario("covariate").state(39).covariate and scenario("covariate").state(40).covariate


def test_config_is_the_shipped_one_with_the_benchmark_data():
    base = shipped_config("classification", PROJECT_ROOT / "configs")
    raw = config_dict("classification", base, label_delay_days=3, training_days=14)
    assert raw["data"]["label_delay_days"] == 3 and raw["windows"]["training_days"] == 14
    assert raw["performance"] == base["performance"] and raw["drift"] == base["drift"]
    assert raw["training"]["estimator"] == base["training"]["estimator"]


def test_written_scenario_shows_its_change_through_load_window(tmp_path):
    base = shipped_config("classification", PROJECT_ROOT / "configs")
    data = write_scenario("abrupt_concept", "classification", tmp_path, rows_per_day=400, base=base, days=30, change=16)
    cfg, start = data.config, data.start
    assert data.change_dates == (start + dt.timedelta(days=15),)
    assert len(list((tmp_path / cfg.data.path).glob("*.parquet"))) == 30
    # labels arrive label_delay_days late: on day 10 the events of days 8-10 have none yet
    window = load_window(cfg, tmp_path, start, start + dt.timedelta(days=9), as_of=start + dt.timedelta(days=9))
    days = window.frame[cfg.data.timestamp_column].dt.date
    known_last = window.frame["__label_known"].groupby(days).mean()
    assert known_last.iloc[:7].eq(1.0).all() and known_last.iloc[7:].eq(0.0).all()
    full = load_window(cfg, tmp_path, start, start + dt.timedelta(days=29), as_of=dt.date.max).labelled
    day_no = (full[cfg.data.timestamp_column].dt.date - start).map(lambda d: d.days)
    target = cfg.features.target
    before, after = full[day_no < 15], full[day_no >= 15]
    cols = _encode(full[cfg.features.all]).columns

    def X(frame):
        return _encode(frame[cfg.features.all]).reindex(columns=cols, fill_value=0)

    model = HistGradientBoostingClassifier(max_iter=40, random_state=0).fit(X(before[:-800]), before[target][:-800])
    auc_before = roc_auc_score(before[target][-800:], model.predict_proba(X(before[-800:]))[:, 1])
    auc_after = roc_auc_score(after[target], model.predict_proba(X(after))[:, 1])
    assert auc_before - auc_after > 0.12
    assert set(data.target_variance) == {(start + dt.timedelta(days=i)).isoformat() for i in range(30)}
