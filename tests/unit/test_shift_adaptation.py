"""After a covariate shift: the cross-fitted gain over every matured row since the shift, the
'not worse' promotion rule, and the follow-up of a shift retrain that was not deployed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain_lib.core.config import load_model_config
from retrain_lib.learn import training
from retrain_lib.learn.candidates import CrossFit, cross_fit, crossfit_gain
from retrain_lib.learn.window_choice import Recipe
from retrain_lib.pipeline.adaptation import shift_check
from retrain_lib.pipeline.adaptation_steps import promotion_outcome
from retrain_lib.pipeline.rollout import PROMOTE
from retrain_lib.stats.champion_gain import Gain

REPO = Path(__file__).resolve().parents[2]
NO_GAIN = "no_gain"
SHIFT = {"change_source": "shift", "change_day": "2026-02-07"}  # a candidate trained after a covariate shift


@pytest.fixture(scope="module")
def cfg():
    return load_model_config(REPO / "configs" / "models" / "credit_default.yaml")


def _frame(cfg, days: int, per_day: int, seed: int = 0) -> pd.DataFrame:
    """Rows of the config's columns over ``days`` days from 2026-03-01; the target follows
    credit_utilization."""
    rng = np.random.default_rng(seed)
    n = days * per_day
    out = pd.DataFrame(
        {
            cfg.data.timestamp_column: [
                pd.Timestamp("2026-03-01") + pd.Timedelta(days=d, minutes=i)
                for d in range(days)
                for i in range(per_day)
            ],
            cfg.data.id_column: [f"a{i}" for i in range(n)],
        }
    )
    for c in cfg.features.numeric:
        out[c] = rng.uniform(0, 1, n)
    for c in cfg.features.categorical:
        out[c] = rng.choice(["north", "south"], n)
    out[cfg.features.target] = (out["credit_utilization"] + rng.normal(0, 0.2, n) > 0.5).astype(int)
    return out


def _rec(event, day, **details):
    return {"event": event, "as_of": day, "details": details}


def test_a_shift_retrain_not_deployed_is_asked_again_when_its_matured_days_double():
    rebase = _rec("drift_rebased", "2026-03-06", window=["2026-03-04", "2026-03-06"], champion_version="2")
    tried = [rebase, _rec("gates", "2026-03-13", outcome=NO_GAIN)]  # 7 matured days then
    kw = {"label_delay_days": 3, "wait_days": 7, "follow_up_until_days": 14}
    before = shift_check(tried, "2", dt.date(2026, 3, 19), **kw)
    assert (before.matured_days, before.wait_days, before.due, before.follow_up) == (13, 14, False, True)
    due = shift_check(tried, "2", dt.date(2026, 3, 20), **kw)
    assert due.due and due.signal == "shift_follow_up" and "twice the days" in due.explain()
    # the follow-up with a full window of matured days settles the shift
    full = [*tried, _rec("gates", "2026-03-20", outcome=NO_GAIN)]
    assert shift_check(full, "2", dt.date(2026, 3, 30), **kw) is None
    # without follow-ups the first retrain settles it
    assert shift_check(tried, "2", dt.date(2026, 3, 20), label_delay_days=3, wait_days=7) is None
    first = shift_check([rebase], "2", dt.date(2026, 3, 13), **kw)
    assert first.due and first.signal == "shift_labels" and not first.follow_up


def _gain(mean: float, lower: float) -> Gain:
    return Gain("roc_auc", 0.85, 0.85 - mean, mean, lower, 0.95, 2100, lower > 0)


def test_after_a_shift_a_candidate_not_worse_is_promoted_and_a_worse_one_is_not(cfg):
    small = _gain(0.0025, -0.0053)  # real but unproven: what 300 rows a day show after a shift
    outcome, gain = promotion_outcome(cfg, True, object(), measured_gain=small, selection=SHIFT)
    assert outcome == PROMOTE and gain.basis == "not_worse" and "not worse" in gain.explain()
    worse = _gain(-0.001, -0.009)
    outcome, gain = promotion_outcome(cfg, True, object(), measured_gain=worse, selection=SHIFT)
    assert outcome == NO_GAIN and "worse after a covariate shift" in gain.explain()
    # a concept change (no shift) still needs a gain beyond noise
    assert promotion_outcome(cfg, True, object(), measured_gain=small)[0] == NO_GAIN
    strict = cfg.model_copy(update={"adaptation": cfg.adaptation.model_copy(update={"shift_requires_gain": True})})
    assert promotion_outcome(strict, True, object(), measured_gain=small, selection=SHIFT)[0] == NO_GAIN
    assert promotion_outcome(strict, True, object(), measured_gain=_gain(0.02, 0.01), selection=SHIFT)[0] == PROMOTE
    assert promotion_outcome(cfg, False, object(), measured_gain=small, selection=SHIFT)[0] == "rejected"


def test_cross_fit_scores_every_row_since_the_shift_by_a_model_that_never_saw_it(cfg, monkeypatch):
    frame = _frame(cfg, days=12, per_day=30)
    seen: list[set] = []
    real_fit = training.fit

    def recording_fit(recipe_cfg, rows, *args, **kwargs):
        seen.append(set(rows[cfg.data.id_column]))
        return real_fit(recipe_cfg, rows, *args, **kwargs)

    monkeypatch.setattr(training, "fit", recording_fit)
    since = "2026-03-06"
    fitted = cross_fit(cfg, Recipe("configured", cfg), frame, since, ("sklearn.",), {"as_of": dt.date(2026, 3, 15)})
    after = frame[frame[cfg.data.timestamp_column].dt.date >= dt.date.fromisoformat(since)]
    assert fitted.folds == cfg.adaptation.crossfit_folds == len(seen) == 5
    assert sorted(fitted.ids) == sorted(after[cfg.data.id_column])  # every row since the shift, once
    for trained_on in seen:
        scored_here = set(after[cfg.data.id_column]) - trained_on
        assert scored_here, "each fold holds out some rows since the shift"
        assert len(trained_on) + len(scored_here) == len(frame)  # everything else trains it
    assert all(0.0 <= s <= 1.0 for s in fitted.scores)
    assert CrossFit.from_dict(fitted.to_dict()) == fitted


def test_crossfit_gain_pairs_the_scores_with_the_champion_by_id(cfg):
    frame = _frame(cfg, days=6, per_day=100, seed=1)
    y = frame[cfg.features.target].to_numpy()
    rng = np.random.default_rng(2)

    class Champion:  # a weak model: noise around 0.5
        def predict_proba(self, X):
            p = np.clip(0.5 + rng.normal(0, 0.05, len(X)), 0, 1)
            return np.column_stack([1 - p, p])

    good = np.clip(y * 0.6 + 0.2 + rng.normal(0, 0.1, len(y)), 0, 1)
    crossfit = CrossFit(tuple(frame[cfg.data.id_column]), tuple(good), 5, "2026-03-01")
    shuffled = frame.sample(frac=1, random_state=3)  # rows come back in another order
    gain = crossfit_gain(cfg, crossfit, shuffled, Champion())
    assert gain.rows == len(frame) and gain.significant and gain.candidate > 0.9
    # scores paired with the wrong rows would be no better than the champion
    wrong = CrossFit(tuple(frame[cfg.data.id_column]), tuple(good[::-1]), 5, "2026-03-01")
    assert not crossfit_gain(cfg, wrong, shuffled, Champion()).significant
    # the rows are gone: no measurement
    assert crossfit_gain(cfg, crossfit, frame.iloc[: len(frame) // 2], Champion()) is None
