"""The pure parts of change-aware retraining (``retrain_lib.pipeline.adaptation``): the drop test's
error rates, the bootstrap standard error against the binomial formula, the change day, the
selection split, the gain test, the healthy level and the backoff."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest

from retrain_lib.learn.window_choice import selection_split
from retrain_lib.pipeline.adaptation import (
    ACCEPTED,
    ARMED,
    LEVEL_EVENT,
    RESTORED,
    acceptance,
    backoff,
    healthy_level,
    level_updates,
    rebased_window,
)
from retrain_lib.stats.champion_gain import gain_test
from retrain_lib.stats.change_detection import bootstrap_se, change_day, drop_test


def _accuracy_scores(rng, n, accuracy):
    """Labels and probabilities whose thresholded accuracy is ``accuracy`` in expectation."""
    y = rng.integers(0, 2, n)
    right = rng.random(n) < accuracy
    p = np.where(right == (y == 1), 0.8, 0.2)
    return y, p


def test_bootstrap_se_of_accuracy_matches_the_binomial_formula():
    rng = np.random.default_rng(1)
    y, p = _accuracy_scores(rng, 1000, 0.85)
    acc = float(((p >= 0.5) == y).mean())
    se = bootstrap_se("classification", "accuracy", y, p, n_resamples=2000, seed=3)
    assert se == pytest.approx(math.sqrt(acc * (1 - acc) / 1000), rel=0.1)


def test_the_drop_test_holds_its_false_alarm_rate_and_finds_real_drops():
    rng = np.random.default_rng(7)
    rate, n, runs = 0.05, 300, 150
    alarms = 0
    for _ in range(runs):
        yb, pb = _accuracy_scores(rng, 3 * n, 0.85)  # the baseline's own rows
        y, p = _accuracy_scores(rng, n, 0.85)  # same level: any alarm is false
        base = float(((pb >= 0.5) == yb).mean())
        live = float(((p >= 0.5) == y).mean())
        t = drop_test(
            live,
            base,
            "accuracy",
            live_se=bootstrap_se("classification", "accuracy", y, p, seed=1),
            baseline_se=bootstrap_se("classification", "accuracy", yb, pb, seed=2),
            rows=n,
            false_alarm_rate=rate,
        )
        alarms += t.significant
    # binomial(150, 0.05): mean 7.5, sd 2.7; a test that ignored the noise would fire far more often
    assert alarms <= 16
    y, p = _accuracy_scores(rng, n, 0.70)
    real = drop_test(
        float(((p >= 0.5) == y).mean()),
        0.85,
        "accuracy",
        rows=n,
        false_alarm_rate=0.001,
        live_se=bootstrap_se("classification", "accuracy", y, p),
        baseline_se=0.01,
    )
    assert real.significant and real.z > real.z_limit


def test_min_effect_and_direction_of_a_lower_is_better_metric():
    # rmse 10.3 vs 10.0 with tiny errors: significant, but below a min_effect of 0.5
    small = drop_test(
        10.3, 10.0, "rmse", live_se=0.01, baseline_se=0.01, rows=10_000, false_alarm_rate=0.001, min_effect=0.5
    )
    assert small.drop == pytest.approx(0.3) and small.z > small.z_limit and not small.significant
    better = drop_test(9.0, 10.0, "rmse", live_se=0.01, baseline_se=0.01, rows=1000, false_alarm_rate=0.001)
    assert better.drop == pytest.approx(-1.0) and not better.significant
    nan = drop_test(math.nan, 10.0, "rmse", live_se=0.1, baseline_se=0.1, rows=0, false_alarm_rate=0.01)
    assert not nan.significant


def test_change_day_finds_a_shift_and_not_noise():
    rng = np.random.default_rng(0)
    days = [(dt.date(2026, 3, 1) + dt.timedelta(days=i)).isoformat() for i in range(20)]
    rows = {d: 1000 for d in days}
    shifted = {d: (0.90 if i < 13 else 0.75) + rng.normal(0, 0.01) for i, d in enumerate(days)}
    assert change_day(shifted, rows, "accuracy") == days[13]
    # for an error metric a rise is the change
    errors = {d: (5.0 if i < 6 else 7.0) + rng.normal(0, 0.05) for i, d in enumerate(days)}
    assert change_day(errors, rows, "rmse") == days[6]
    flat = {d: 0.9 + rng.normal(0, 0.01) for d in days}
    assert change_day(flat, rows, "accuracy") is None
    better = {d: (0.75 if i < 13 else 0.90) for i, d in enumerate(days)}  # an improvement is no change
    assert change_day(better, rows, "accuracy") is None


def _frame(days: int, per_day: int) -> pd.DataFrame:
    ts = [
        pd.Timestamp("2026-03-01") + pd.Timedelta(days=d, seconds=60 * i) for d in range(days) for i in range(per_day)
    ]
    return pd.DataFrame({"event_time": ts, "id": range(len(ts)), "y": 0})


class _Cfg:
    class data:  # noqa: N801 - stands in for the config section
        timestamp_column = "event_time"
        id_column = "id"

    class training:  # noqa: N801
        class split:  # noqa: N801
            holdout_fraction = 0.25


def test_selection_split_takes_the_newest_half_since_the_change():
    frame = _frame(10, 100).sample(frac=1, random_state=0)  # order must not matter
    pool, newest = selection_split(_Cfg, frame, "2026-03-09")  # 200 rows since the change
    assert len(newest) == 100 and len(pool) == 900
    assert newest["event_time"].min() > pool["event_time"].max()
    assert (newest["event_time"].dt.date >= dt.date(2026, 3, 10)).all()
    pool, newest = selection_split(_Cfg, frame, None)  # no change: the configured fraction
    assert len(newest) == 250
    pool, newest = selection_split(_Cfg, frame, "2026-03-01")  # a change long ago: at most the fraction
    assert len(newest) == 250


def test_gain_test_separates_a_better_model_from_an_equal_one():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 800)
    good = np.clip(y * 0.6 + 0.2 + rng.normal(0, 0.2, 800), 0, 1)
    weak = np.clip(y * 0.2 + 0.4 + rng.normal(0, 0.2, 800), 0, 1)
    gain = gain_test("classification", "roc_auc", y, good, weak, n_resamples=500)
    assert gain.significant and gain.lower > 0 and gain.candidate > gain.champion
    same = gain_test("classification", "roc_auc", y, good, good + rng.normal(0, 1e-6, 800), n_resamples=500)
    assert not same.significant


def _rec(event, day, **details):
    return {"event": event, "as_of": day, "details": details}


def test_healthy_level_is_armed_restored_and_accepted_from_records():
    recs = [_rec(LEVEL_EVENT, "2026-03-05", action=ARMED, metric="roc_auc", level=0.83, se=0.004, version="1")]
    level = healthy_level(recs, "roc_auc")
    assert level.level == 0.83 and level.since == "2026-03-05"
    assert healthy_level(recs, "roc_auc", before="2026-03-05") is None  # not yet on that day
    assert healthy_level(recs, "rmse") is None
    assert healthy_level([*recs, _rec(LEVEL_EVENT, "2026-03-09", action=RESTORED, metric="roc_auc")], "roc_auc") is None
    assert healthy_level([*recs, _rec(LEVEL_EVENT, "2026-03-09", action=ACCEPTED, metric="roc_auc")], "roc_auc") is None


def test_level_updates_arm_once_and_restore_within_min_effect():
    test = {
        "metric": "roc_auc",
        "live": 0.70,
        "baseline": 0.83,
        "baseline_se": 0.004,
        "drop": 0.13,
        "live_se": 0.01,
        "significant": True,
    }
    armed = level_updates({"test": test}, None, min_effect=0.02, champion_version="3")
    assert [u["action"] for u in armed] == [ARMED] and armed[0]["level"] == 0.83
    level = healthy_level([_rec(LEVEL_EVENT, "2026-03-05", **armed[0])], "roc_auc")
    assert level_updates({"test": test}, level, min_effect=0.02, champion_version="3") == []  # still down
    back = {**test, "live": 0.82, "drop": 0.01, "significant": False}
    assert [u["action"] for u in level_updates({"test": back}, level, min_effect=0.02, champion_version="4")] == [
        RESTORED
    ]
    assert level_updates({"performance": None}, None, min_effect=0.02, champion_version="4") == []


def test_backoff_doubles_after_each_retrain_that_was_not_deployed():
    day = dt.date(2026, 3, 20)
    assert not backoff([], day, 2).blocked
    recs = [_rec("gates", "2026-03-10", outcome="promote"), _rec("gates", "2026-03-15", outcome="no_gain")]
    one = backoff(recs, day, 2)
    assert (one.not_deployed, one.wait_days, one.blocked) == (1, 2, False)  # 5 days after, wait 2
    recs += [_rec("gates", "2026-03-17", outcome="rejected"), _rec("gates", "2026-03-18", outcome="no_gain")]
    three = backoff(recs, day, 2)
    assert (three.not_deployed, three.wait_days, three.blocked) == (3, 8, True)
    assert not backoff([*recs, _rec("gates", "2026-03-19", outcome="promote")], day, 2).blocked
    # records written before outcomes existed: passed decides
    assert backoff([_rec("gates", "2026-03-19", passed=False)], day, 2).blocked


def test_rebased_window_belongs_to_its_champion_version():
    recs = [_rec("drift_rebased", "2026-03-05", window=["2026-03-03", "2026-03-05"], champion_version="2")]
    assert rebased_window(recs, "2") == ("2026-03-03", "2026-03-05")
    assert rebased_window(recs, "3") is None
    assert rebased_window(recs, "2", before="2026-03-05") is None
    # the reference of a rebase is its drifted window's last day (older records: the window)
    recs.append(
        _rec(
            "drift_rebased",
            "2026-03-09",
            window=["2026-03-07", "2026-03-09"],
            reference=["2026-03-09", "2026-03-09"],
            champion_version="2",
        )
    )
    assert rebased_window(recs, "2") == ("2026-03-09", "2026-03-09")
    assert rebased_window(recs, "2", before="2026-03-09") == ("2026-03-03", "2026-03-05")


def test_acceptance_needs_plenty_of_rows_since_the_change():
    sel = {"change_day": "2026-03-01", "candidates": [{"name": "after_change", "train_rows": 999, "value": 0.8}]}
    assert acceptance(sel, metric="roc_auc", min_rows_after_change=200) is None
    sel["candidates"][0]["train_rows"] = 1000
    assert acceptance(sel, metric="roc_auc", min_rows_after_change=200)["action"] == ACCEPTED
    # a champion flat since its own training (trained after the change) is accepted too
    assert acceptance({**sel, "change_day": None}, metric="roc_auc", min_rows_after_change=200)["action"] == ACCEPTED
    assert acceptance(None, metric="roc_auc", min_rows_after_change=200) is None


# -----------------------------------------------------------------------------------------
# The regime a champion learnt; follow-ups while its days since the change double
# -----------------------------------------------------------------------------------------

from retrain_lib.pipeline.adaptation import (  # noqa: E402 - grouped with the tests that use them
    CHANGE_TAG,
    LABELLED_UNTIL_TAG,
    extends_regime,
    follow_up,
    regime_change,
    regime_learnt,
)


def _tags(change="2026-02-09", until="2026-02-09", start="2026-01-29"):
    return {CHANGE_TAG: change, LABELLED_UNTIL_TAG: until, "data.start": start}


def test_regime_change_lasts_while_the_change_is_inside_the_training_window():
    assert regime_change(_tags(), dt.date(2026, 1, 30)) == "2026-02-09"
    assert regime_change(_tags(), dt.date(2026, 2, 9)) == "2026-02-09"
    assert regime_change(_tags(), dt.date(2026, 2, 10)) is None  # the whole window is after the change
    assert regime_change(_tags(change="none"), dt.date(2026, 1, 30)) is None
    assert regime_change({}, dt.date(2026, 1, 30)) is None


def test_a_regime_learnt_from_a_few_days_is_kept_while_its_follow_ups_fill_the_window():
    """The change on 02-09 left the 14-day window starting 02-10, but the champion learnt 6
    days of it: the retrain that fills the window is its follow-up (same change day), until
    the champion learnt a full window or the change is a window older than the window."""
    six_days = _tags(until="2026-02-14")
    assert regime_change(six_days, dt.date(2026, 2, 10), 14) == "2026-02-09"
    assert regime_change(six_days, dt.date(2026, 2, 10)) is None  # without training_days: as before
    assert regime_change(six_days, dt.date(2026, 2, 23), 14) == "2026-02-09"  # 14 days after it
    assert regime_change(six_days, dt.date(2026, 2, 24), 14) is None  # longer ago than a window
    full = _tags(until="2026-02-22")  # 14 days of the regime learnt
    assert regime_change(full, dt.date(2026, 2, 10), 14) is None


def test_follow_ups_come_when_the_matured_days_since_the_change_double():
    # trained on 1 day of labels since 02-09; labels are 3 days late
    one = _tags(until="2026-02-09")
    assert not follow_up(one, dt.date(2026, 2, 12), label_delay_days=3, training_days=14).due  # 1 matured day
    due = follow_up(one, dt.date(2026, 2, 13), label_delay_days=3, training_days=14)
    assert (due.trained_days, due.matured_days, due.due) == (1, 2, True)
    four = _tags(until="2026-02-12")
    assert not follow_up(four, dt.date(2026, 2, 18), label_delay_days=3, training_days=14).due  # 7 < 8
    assert follow_up(four, dt.date(2026, 2, 19), label_delay_days=3, training_days=14).due  # 8 = 2 x 4
    # a champion that learnt a full window of the new regime needs no follow-up
    assert follow_up(_tags(until="2026-02-22"), dt.date(2026, 3, 30), label_delay_days=3, training_days=14) is None
    # nor one trained without a change
    assert follow_up(_tags(change="none"), dt.date(2026, 3, 30), label_delay_days=3, training_days=14) is None
    assert "2 day(s)" in due.explain() or "1 day(s)" in due.explain()


def test_extends_regime_needs_the_same_change_and_newer_labels():
    tags = _tags(until="2026-02-10")
    newer = {"change_day": "2026-02-09", "selection_window": ["2026-02-11", "2026-02-12"]}
    assert extends_regime(tags, newer)
    assert not extends_regime(tags, {**newer, "change_day": "2026-02-11"})  # another change: a new regime
    assert not extends_regime(tags, {**newer, "selection_window": ["2026-02-09", "2026-02-10"]})  # nothing new
    assert not extends_regime(_tags(change="none"), newer)
    assert not extends_regime(tags, None)


def test_regime_learnt_from_its_own_tags_or_the_armed_change():
    assert regime_learnt(_tags(until="2026-02-22"), 14)  # 14 days since 02-09
    assert not regime_learnt(_tags(until="2026-02-21"), 14)
    # tagged "none" (its window began after the change), but trained only on rows since it
    later = _tags(change="none", until="2026-02-26", start="2026-02-13")
    assert regime_learnt(later, 14, change_day="2026-02-09")
    assert not regime_learnt(later, 14, change_day="2026-02-20")
    assert not regime_learnt(later, 14)


def test_a_covariate_shift_gets_one_retrain_once_its_labels_have_matured():
    from retrain_lib.pipeline.adaptation import shift_check

    rebase = _rec("drift_rebased", "2026-03-06", window=["2026-03-04", "2026-03-06"], champion_version="2")
    early = shift_check([rebase], "2", dt.date(2026, 3, 12), label_delay_days=3, wait_days=7)
    assert (early.shift_day, early.matured_days, early.due) == ("2026-03-04", 6, False)
    due = shift_check([rebase], "2", dt.date(2026, 3, 13), label_delay_days=3, wait_days=7)
    assert due.due and "2026-03-04" in due.explain()
    # another champion's shift is not this one's
    assert shift_check([rebase], "3", dt.date(2026, 3, 13), label_delay_days=3, wait_days=7) is None
    # a retrain since the shift (any outcome) settles it
    settled = [rebase, _rec("gates", "2026-03-13", outcome="no_gain")]
    assert shift_check(settled, "2", dt.date(2026, 3, 14), label_delay_days=3, wait_days=7) is None
    assert shift_check(settled, "2", dt.date(2026, 3, 13), label_delay_days=3, wait_days=7).due  # same day: not yet


def test_a_shift_regime_gets_no_follow_ups_and_the_change_day_comes_in_order():
    from retrain_lib.pipeline.adaptation import CHANGE_SOURCE_TAG
    from retrain_lib.pipeline.adaptation_steps import NO_CHANGE, Change, training_change

    shifted = {**_tags(until="2026-02-09"), CHANGE_SOURCE_TAG: "shift"}
    assert follow_up(shifted, dt.date(2026, 2, 20), label_delay_days=3, training_days=14) is None
    rebase = [_rec("drift_rebased", "2026-02-06", window=["2026-02-04", "2026-02-06"], champion_version="5")]
    called = []

    def estimate():
        called.append(1)
        return "2026-02-11"

    # the champion's regime first, with its source; the estimate is then not computed
    assert training_change(shifted, dt.date(2026, 2, 1), estimate, lambda: rebase, "5") == Change("2026-02-09", "shift")
    assert not called
    assert training_change({}, dt.date(2026, 2, 1), estimate, lambda: rebase, "5") == Change(
        "2026-02-11", "performance"
    )
    assert training_change({}, dt.date(2026, 2, 1), lambda: None, lambda: rebase, "5") == Change("2026-02-04", "shift")
    assert training_change({}, dt.date(2026, 2, 1), lambda: None, lambda: [], "5") is NO_CHANGE
