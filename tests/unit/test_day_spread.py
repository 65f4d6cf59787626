"""The performance drop test counts how much a daily metric moves from day to day: a live
window of one weekend day, after a holdout of a week of weekdays and weekends, is not a drop by
itself (the false alarm the demo showed the day after its first model), while a week that is
worse every day still is."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from retrain_lib.core.config import ModelConfig
from retrain_lib.pipeline.adaptation_steps import (
    DAY_SD_TAG,
    HOLDOUT_DAYS_TAG,
    day_spread,
    metric_day_spreads,
    tagged_day_spread,
)
from retrain_lib.pipeline.adaptation_steps import test_drop as run_drop_test
from retrain_lib.pipeline.records import Evaluation

WEEKDAY_ERR, WEEKEND_ERR = 6.8, 9.3  # the residual scale of a weekday and of a weekend day


def _cfg() -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "name": "demand",
            "owner": "ml@example.com",
            "task": "regression",
            "data": {"path": "demand", "id_column": "id", "timestamp_column": "ts", "label_delay_days": 1},
            "features": {"target": "y", "numeric": ["a"]},
            "performance": {"metric": "rmse", "false_alarm_rate": 0.001, "min_effect": 1.5, "min_labels": 200},
            "training": {"estimator": "sklearn.linear_model.LinearRegression"},
        }
    )


def _days(first: str, n_days: int, per_day: int, rng, extra: float = 0.0):
    """Rows of ``n_days`` days from ``first``: labels and predictions whose error scale is
    larger on Saturdays and Sundays (``extra`` added to every day's scale)."""
    ts, y, scores = [], [], []
    for i in range(n_days):
        day = pd.Timestamp(first) + pd.Timedelta(days=i)
        scale = (WEEKEND_ERR if day.dayofweek >= 5 else WEEKDAY_ERR) + extra
        truth = rng.poisson(35, per_day).astype(float)
        ts += [day] * per_day
        y.append(truth)
        scores.append(truth + rng.normal(0, scale, per_day))
    return pd.DataFrame({"ts": ts}), np.concatenate(y), np.concatenate(scores)


def _rmse(y, s) -> float:
    return float(np.sqrt(np.mean((np.asarray(y) - np.asarray(s)) ** 2)))


def _holdout_tags(rng) -> dict:
    """A champion's tags as registration writes them from its holdout (2026-11-14..20)."""
    frame, y, scores = _days("2026-11-14", 7, 800, rng)
    spreads, days = metric_day_spreads(_cfg(), frame["ts"], y, scores)
    return {
        "metric.rmse": repr(_rmse(y, scores)),
        "metric_se.rmse": "0.2",
        **{f"{DAY_SD_TAG}{k}": repr(v) for k, v in spreads.items()},
        HOLDOUT_DAYS_TAG: str(days),
    }


def _test(tags: dict, live_first: str, live_days: int, rng, extra: float = 0.0) -> dict:
    now, y, scores = _days(live_first, live_days, 800, rng, extra)
    result = {"baseline": float(tags["metric.rmse"]), "baseline_source": "holdout", "segments": []}
    run_drop_test(_cfg(), result, y, scores, now, now.iloc[:0], {}, None, tags)
    return result


def test_the_day_spread_is_the_standard_deviation_of_the_daily_metric():
    rng = np.random.default_rng(1)
    frame, y, scores = _days("2026-11-14", 7, 800, rng)
    daily = [_rmse(y[frame["ts"] == d], scores[frame["ts"] == d]) for d in sorted(frame["ts"].unique())]
    spreads, days = metric_day_spreads(_cfg(), frame["ts"], y, scores)
    assert days == 7
    assert math.isclose(spreads["rmse"], float(np.std(daily, ddof=1)), rel_tol=1e-9)
    assert spreads["rmse"] > 0.8  # two weekend days of 7: the daily rmse moves by about 1.2


def test_one_weekend_day_after_the_holdout_is_no_drop_but_a_worse_week_is():
    rng = np.random.default_rng(2)
    tags = _holdout_tags(rng)
    saturday = _test(tags, "2026-11-21", 1, rng)  # the day after training: a Saturday
    assert saturday["test"]["live"] > float(tags["metric.rmse"]) + 1.5  # larger than min_effect
    assert not saturday["test"]["significant"], saturday["test"]
    assert saturday["day_spread"]["live_days"] == 1

    # without the day spread (a version registered before it was measured): the same window
    # is judged on its rows alone, and the weekend is taken for a drop
    old_tags = {k: v for k, v in tags.items() if not k.startswith((DAY_SD_TAG, HOLDOUT_DAYS_TAG))}
    judged_on_rows = _test(old_tags, "2026-11-21", 1, np.random.default_rng(2))
    assert judged_on_rows["test"]["significant"], judged_on_rows["test"]

    worse_week = _test(tags, "2026-11-23", 7, rng, extra=2.5)  # every day 2.5 worse
    assert worse_week["test"]["significant"], worse_week["test"]


def test_the_rolling_days_give_the_spread_once_there_are_enough():
    assert day_spread({"a": 1.0, "b": 2.0, "c": 3.0}, (9.0, 7)) == (1.0, 3)
    assert day_spread({"a": 1.0, "b": 2.0}, (9.0, 7)) == (9.0, 7)
    assert day_spread({}, None) == (None, 0)


def test_tagged_day_spread_reads_only_complete_tags():
    assert tagged_day_spread({f"{DAY_SD_TAG}rmse": "1.25", HOLDOUT_DAYS_TAG: "7"}, "rmse") == (1.25, 7)
    assert tagged_day_spread({f"{DAY_SD_TAG}rmse": "1.25"}, "rmse") is None
    assert tagged_day_spread({f"{DAY_SD_TAG}rmse": "x", HOLDOUT_DAYS_TAG: "7"}, "rmse") is None
    assert tagged_day_spread({f"{DAY_SD_TAG}rmse": "1.25", HOLDOUT_DAYS_TAG: "2"}, "rmse") is None
    assert tagged_day_spread({f"{DAY_SD_TAG}rmse": "nan", HOLDOUT_DAYS_TAG: "7"}, "rmse") is None


def test_the_evaluation_record_carries_the_spread_through_xcom():
    ev = Evaluation(
        candidate={"rmse": 7.5}, candidate_se={"rmse": 0.2}, candidate_day_sd={"rmse": 1.1}, compared_days=7
    )
    again = Evaluation.from_xcom(ev.to_xcom())
    assert again == ev
    assert Evaluation.from_xcom(Evaluation(candidate={"rmse": 7.5}).to_xcom()).candidate_day_sd is None
