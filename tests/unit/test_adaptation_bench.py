"""The adaptation benchmark's metric helpers on hand-made series: each returns what its
definition in the benchmark's docstring says."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "adaptation_bench.py"
_spec = importlib.util.spec_from_file_location("adaptation_bench", PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

START = dt.date(2026, 1, 1)


def day(i: int) -> str:
    return (START + dt.timedelta(days=i)).isoformat()


def series(values) -> dict[str, float]:
    return {day(i): v for i, v in enumerate(values)}


def test_false_alarms_count_requests_outside_every_attribution_window():
    change = (START + dt.timedelta(days=10),) * 2
    requests = [day(3), day(10), day(13), day(20), day(21), day(40)]
    # label delay 3 + 7 extra days: the window of the day-10 change runs to day 20 inclusive
    assert bench.false_alarm_days(requests, [change], 3) == [day(3), day(21), day(40)]
    assert bench.false_alarm_days(requests, [], 3) == requests
    gradual = (START + dt.timedelta(days=10), START + dt.timedelta(days=19))
    assert bench.false_alarm_days(requests, [gradual], 3) == [day(3), day(40)]


def test_delay_is_to_the_first_event_on_or_after_the_change():
    assert bench.delay_days([day(2), day(14), day(12)], START + dt.timedelta(days=10)) == 2
    assert bench.delay_days([day(2)], START + dt.timedelta(days=10)) is None


def test_recovery_counts_days_until_the_smoothed_metric_is_back_near_the_target():
    # pre-change level 0.80 (days 3-9), drop to 0.60 on day 10, back to 0.79 from day 15;
    # the oracle settles at 0.85 > pre, so the target is the pre-change level 0.80
    policy = series([0.80] * 10 + [0.60] * 5 + [0.79] * 15)
    oracle = series([0.80] * 10 + [0.70] * 5 + [0.85] * 15)
    got = bench.recovery_days(policy, oracle, day(10), day(29))
    assert got["days"] == 5 and got["pre"] == pytest.approx(0.80) and got["target"] == pytest.approx(0.80)
    # a lower attainable level (the oracle settles at 0.70) is the target instead
    oracle_low = series([0.80] * 10 + [0.60] * 5 + [0.70] * 15)
    policy_low = series([0.80] * 10 + [0.60] * 8 + [0.69] * 12)
    got = bench.recovery_days(policy_low, oracle_low, day(10), day(29))
    assert got["target"] == pytest.approx(0.70) and got["days"] == 8
    # never back within 0.02
    assert bench.recovery_days(series([0.8] * 10 + [0.7] * 20), oracle, day(10), day(29))["days"] is None
    # no drop at all: recovered on the change day
    assert bench.recovery_days(series([0.8] * 30), oracle, day(10), day(29))["days"] == 0


def test_recovery_smooths_over_three_days():
    # one lucky day (day 12) is not a recovery; three good days from day 14 are
    policy = series([0.80] * 10 + [0.60, 0.60, 0.80, 0.60, 0.80, 0.80, 0.80] + [0.80] * 13)
    oracle = series([0.80] * 30)
    assert bench.recovery_days(policy, oracle, day(10), day(29))["days"] == 4


def test_recovery_of_a_lower_is_better_metric():
    policy = series([1.0] * 10 + [2.0] * 3 + [1.01] * 17)
    oracle = series([1.0] * 30)
    assert bench.recovery_days(policy, oracle, day(10), day(29), up=False)["days"] == 3


def test_lost_vs_oracle_is_the_mean_gap_in_the_good_direction():
    policy, oracle = series([0.8, 0.7, None, 0.75]), series([0.8, 0.8, 0.9, 0.8])
    assert bench.lost_vs_oracle(policy, oracle) == pytest.approx((0.0 + 0.1 + 0.05) / 3)
    assert bench.lost_vs_oracle(policy, oracle, up=False) == pytest.approx(-0.05)


def test_regression_rmse_becomes_r2_with_the_days_target_variance():
    got = bench.normalised("rmse", {day(0): 2.0, day(1): None}, {day(0): 16.0, day(1): 4.0})
    assert got == {day(0): pytest.approx(0.75), day(1): None}
    with pytest.raises(ValueError, match="mae"):
        bench.normalised("mae", {}, {})


def test_requests_include_throttled_and_rollback_but_not_the_first_model():
    decisions = [
        {"day": day(0), "action": "retrain", "reasons": ["no champion yet"]},
        {"day": day(1), "action": "healthy", "reasons": ["no trigger fired"]},
        {"day": day(2), "action": "healthy", "throttled": True, "reasons": ["data drift: 50%"]},
        {"day": day(3), "action": "rollback", "reasons": ["rollback: ..."]},
        {"day": day(4), "action": "healthy", "reasons": ["data drift: 40% of features drifted"]},
    ]
    assert bench._requests(decisions, day(0)) == [day(2), day(3)]
    assert bench._flags(decisions, day(0)) == [day(2), day(3), day(4)]
