"""The drop test against the level a champion established over its first matured days: a slow
decline that drags the rolling baseline down with it is still measured from where it began."""

from __future__ import annotations

import numpy as np
import pandas as pd

from retrain_lib.core.config import ModelConfig
from retrain_lib.pipeline.adaptation_steps import EstablishedLevel
from retrain_lib.pipeline.adaptation_steps import test_drop as run_drop_test


def _cfg() -> ModelConfig:
    return ModelConfig.model_validate(
        {
            "name": "churn_risk",
            "owner": "ml@example.com",
            "task": "classification",
            "data": {"path": "churn_risk", "id_column": "id", "timestamp_column": "ts", "label_delay_days": 3},
            "features": {"target": "y", "numeric": ["a"]},
            "performance": {"metric": "roc_auc", "false_alarm_rate": 0.001, "min_effect": 0.02, "min_labels": 100},
            "training": {"estimator": "sklearn.linear_model.LogisticRegression"},
        }
    )


def _live(auc_gap: float, n: int = 900, seed: int = 3):
    """Labels and scores whose ROC AUC is about 0.5 + ``auc_gap``, over three days."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    scores = rng.normal(0, 1, n) + y * auc_gap * 3.5
    now = pd.DataFrame({"ts": pd.to_datetime("2026-03-01") + pd.to_timedelta(np.arange(n) % 3, unit="D")})
    return y, scores, now


def _auc(y, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


def _result(baseline: float) -> dict:
    return {"baseline": baseline, "baseline_source": "rolling", "segments": []}


def test_a_decline_below_the_established_level_is_significant_though_the_rolling_baseline_followed_it():
    y, scores, now = _live(0.2)
    rolling = round(_auc(y, scores) + 0.01, 4)  # the last 14 days declined with the live metric
    daily = {f"2026-02-{d:02d}": rolling for d in range(14, 28)}
    established = EstablishedLevel(rolling + 0.15, 0.005, "2026-01-20", "2026-02-02", 14)

    rolled = _result(rolling)
    run_drop_test(_cfg(), rolled, y, scores, now, now.iloc[:0], daily, None, {})
    assert not rolled["test"]["significant"], rolled["test"]

    anchored = _result(rolling)
    run_drop_test(_cfg(), anchored, y, scores, now, now.iloc[:0], daily, None, {}, established=established)
    assert anchored["test"]["significant"], anchored["test"]
    assert anchored["baseline"] == rolling + 0.15 and anchored["rolling_baseline"] == rolling
    assert anchored["baseline_source"] == "established level (2026-01-20..2026-02-02, 14 days)"


def test_an_established_level_below_the_rolling_baseline_is_not_used():
    y, scores, now = _live(0.2)
    rolling = round(_auc(y, scores) + 0.01, 4)
    daily = {f"2026-02-{d:02d}": rolling for d in range(14, 28)}
    result = _result(rolling)
    run_drop_test(
        _cfg(),
        result,
        y,
        scores,
        now,
        now.iloc[:0],
        daily,
        None,
        {},
        established=EstablishedLevel(rolling - 0.1, 0.005, "2026-01-20", "2026-02-02", 14),
    )
    assert result["baseline"] == rolling and result["baseline_source"] == "rolling" and "rolling_baseline" not in result
    assert not result["test"]["significant"]
