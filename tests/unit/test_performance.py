"""retrain_lib.stats.performance: per-segment and daily metrics (against sklearn, computed here
independently), relative-drop levels, and confidence-based performance estimation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score

from retrain_lib.stats.performance import (
    CRITICAL,
    OK,
    WARN,
    assess_drop,
    critical_limit,
    daily_metrics,
    estimate_performance,
    relative_drop,
    segment_metrics,
)


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    n = 3000
    plan = rng.choice(["basic", "pro", "gold"], n, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south"], n)
    p = rng.beta(2, 5, n)
    y = (rng.random(n) < p).astype(int)
    days = pd.Timestamp("2026-02-01") + pd.to_timedelta(rng.integers(0, 5, n), unit="D")
    return pd.DataFrame({"plan": plan, "region": region}), y, p, days


def test_segment_metrics_match_sklearn(scored):
    segments, y, p, _ = scored
    out = segment_metrics(segments, y, p, metric="roc_auc", task="classification")
    assert set(out) == {"plan", "region"} and set(out["plan"]) == {"basic", "pro", "gold"}
    for column in ("plan", "region"):
        for value, got in out[column].items():
            mask = segments[column].to_numpy() == value
            assert got["rows"] == int(mask.sum())
            assert got["value"] == pytest.approx(roc_auc_score(y[mask], p[mask]), abs=1e-12)


def test_segment_metrics_regression_match_sklearn(scored):
    segments, _, p, _ = scored
    rng = np.random.default_rng(1)
    y = rng.normal(10, 3, len(p))
    pred = y + rng.normal(0, 1 + (segments["plan"] == "gold").to_numpy(), len(p))
    out = segment_metrics(segments[["plan"]], y, pred, metric="rmse", task="regression")
    for value, got in out["plan"].items():
        mask = segments["plan"].to_numpy() == value
        assert got["value"] == pytest.approx(math.sqrt(mean_squared_error(y[mask], pred[mask])), rel=1e-12)
    assert out["plan"]["gold"]["value"] > out["plan"]["basic"]["value"]


def test_daily_metrics_match_sklearn(scored):
    _, y, p, days = scored
    out = daily_metrics(days, y, p, metric="accuracy", task="classification", min_rows=1)
    assert list(out) == [f"2026-02-0{d}" for d in range(1, 6)]
    day_of = pd.Series(days).dt.strftime("%Y-%m-%d").to_numpy()
    for day, value in out.items():
        mask = day_of == day
        assert value == pytest.approx(accuracy_score(y[mask], (p[mask] >= 0.5).astype(int)))
    assert daily_metrics(days, y, p, metric="accuracy", task="classification", min_rows=10_000) == {}


@pytest.mark.parametrize(
    ("live", "level", "passed"),
    [
        (0.80, OK, ""),
        (0.77, OK, ""),
        (0.75, WARN, "warn_drop 5%"),
        (0.71, CRITICAL, "critical_drop 10%"),
        (0.90, OK, ""),
    ],
)
def test_relative_levels_higher_is_better(live, level, passed):
    a = assess_drop(live, 0.80, "roc_auc", warn_drop=0.05, critical_drop=0.10)
    assert (a.level, a.threshold) == (level, passed)
    assert a.relative_drop == pytest.approx((0.80 - live) / 0.80)


@pytest.mark.parametrize(("live", "level"), [(10.0, OK), (10.6, WARN), (11.2, CRITICAL), (9.0, OK)])
def test_relative_levels_lower_is_better(live, level):
    a = assess_drop(live, 10.0, "rmse", warn_drop=0.05, critical_drop=0.10)
    assert a.level == level and a.drop == pytest.approx(live - 10.0)


def test_absolute_max_drop_and_limits():
    a = assess_drop(0.74, 0.80, "roc_auc", max_drop=0.05)
    assert a.critical and a.threshold == "max_drop 0.05" and a.drop == pytest.approx(0.06)
    assert "roc_auc 0.7400 vs baseline 0.8000 (drop 0.0600, 7.5% of baseline > max_drop 0.05)" == a.explain()
    assert critical_limit(0.80, "roc_auc", max_drop=0.05, critical_drop=0.10) == pytest.approx(0.75)
    assert critical_limit(10.0, "rmse", max_drop=3.0, critical_drop=0.10) == pytest.approx(11.0)
    assert critical_limit(math.nan, "rmse", max_drop=3.0) is None
    assert assess_drop(math.nan, 0.8, "roc_auc", max_drop=0.01).level == OK
    assert assess_drop(0.5, None, "roc_auc", max_drop=0.01).level == OK
    assert math.isnan(relative_drop(1.0, 0.0, "rmse"))


def _calibrated(seed: int, n: int = 1500):
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-1.0, 1.5, n)))
    y = (rng.random(n) < p).astype(int)
    return p, y


@pytest.mark.parametrize("metric", ["accuracy", "roc_auc"])
def test_cbpe_interval_covers_the_realised_metric_for_most_seeds(metric):
    covered = 0
    seeds = range(40)
    for seed in seeds:
        p, y = _calibrated(seed)
        est = estimate_performance(p, metric, draws=50, seed=seed + 1000)
        realised = accuracy_score(y, (p >= 0.5).astype(int)) if metric == "accuracy" else roc_auc_score(y, p)
        covered += est.contains(realised)
        assert est.low < est.value < est.high and est.rows == len(p)
    assert covered >= 0.8 * len(seeds), f"{metric}: the 95% interval covered {covered}/{len(seeds)}"


def test_cbpe_accuracy_closed_form_and_determinism():
    p = np.array([0.9, 0.8, 0.1, 0.3, 0.5])
    est = estimate_performance(p, "accuracy", draws=10, seed=3)
    assert est.value == pytest.approx(np.mean(np.maximum(p, 1 - p)))
    assert est == estimate_performance(p, "accuracy", draws=10, seed=3)
    auc = estimate_performance(_calibrated(1)[0], "roc_auc", draws=20, seed=3)
    assert auc == estimate_performance(_calibrated(1)[0], "roc_auc", draws=20, seed=3)
    assert auc.to_dict()["draws"] == 20 and "interval" in auc.explain()


def test_cbpe_sees_a_less_confident_model():
    sharp = 1 / (1 + np.exp(-np.random.default_rng(0).normal(0, 3, 2000)))
    blunt = 0.5 + (sharp - 0.5) * 0.2
    assert (
        estimate_performance(blunt, "roc_auc", seed=0).value
        < estimate_performance(sharp, "roc_auc", seed=0).value - 0.1
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"proba": [0.2, 0.4], "metric": "rmse"}, "'metric' parameter"),
        ({"proba": [0.2, 0.4], "metric": "roc_auc", "draws": 1}, "'draws' parameter"),
        ({"proba": [], "metric": "roc_auc"}, "'proba' parameter"),
        ({"proba": [0.2, 1.4], "metric": "roc_auc"}, "probabilities in 0..1"),
    ],
)
def test_cbpe_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        estimate_performance(kwargs.pop("proba"), kwargs.pop("metric"), **kwargs)
