"""Which rows a candidate and its champion are compared on: the held-out newest rows, or,
when the champion itself learnt from days since the change, the rows it never saw scored
out of fold (a champion scored on its own training rows wins an unfair comparison)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain_lib.core.config import load_model_config
from retrain_lib.learn.candidates import MIN_UNSEEN_ROWS, CrossFit
from retrain_lib.pipeline.evaluation import CROSS_FIT, HELD_OUT, compared_rows
from retrain_lib.pipeline.records import TrainedRun

REPO = Path(__file__).resolve().parents[2]
PER_DAY = 30


@pytest.fixture(scope="module")
def cfg():
    return load_model_config(REPO / "configs" / "models" / "credit_default.yaml")


@pytest.fixture(scope="module")
def frame(cfg):
    """12 days from 2026-03-01, 30 labelled rows a day."""
    rng = np.random.default_rng(0)
    n = 12 * PER_DAY
    out = pd.DataFrame(
        {
            cfg.data.timestamp_column: [
                pd.Timestamp("2026-03-01") + pd.Timedelta(days=d, minutes=i) for d in range(12) for i in range(PER_DAY)
            ],
            cfg.data.id_column: [f"a{i}" for i in range(n)],
        }
    )
    for c in cfg.features.numeric:
        out[c] = rng.uniform(0, 1, n)
    for c in cfg.features.categorical:
        out[c] = rng.choice(["north", "south"], n)
    out[cfg.features.target] = rng.integers(0, 2, n)
    return out


class Constant:
    """The held-out model: scores every row 0.3."""

    def predict_proba(self, X):
        return np.column_stack([np.full(len(X), 0.7), np.full(len(X), 0.3)])


def _crossfit(cfg, frame, since: str) -> CrossFit:
    after = frame[frame[cfg.data.timestamp_column] >= pd.Timestamp(since)]
    # each row's out-of-fold score encodes its id, so a wrong pairing shows
    return CrossFit(
        tuple(after[cfg.data.id_column]), tuple(int(i[1:]) / 1e4 for i in after[cfg.data.id_column]), 5, since
    )


def test_a_champion_trained_after_the_change_is_compared_on_the_rows_it_never_saw(cfg, frame):
    assert cfg.data.label_delay_days == 7
    crossfit = _crossfit(cfg, frame, "2026-03-06")
    trained = TrainedRun(run_id="", model_uri="m", metrics={})
    # the champion's run ended on 03-15: with labels 7 days late it learnt days up to 03-08,
    # three of them after the change
    got = compared_rows(cfg, frame.sample(frac=1, random_state=1), trained, Constant(), crossfit, "2026-03-15")
    ts, key = cfg.data.timestamp_column, cfg.data.id_column
    assert got.basis == CROSS_FIT
    assert got.holdout[ts].min() >= pd.Timestamp("2026-03-09")  # none the champion trained on
    assert len(got.holdout) == 4 * PER_DAY  # every row after 03-08, all since the change
    assert np.allclose(got.candidate_scores, [int(i[1:]) / 1e4 for i in got.holdout[key]])  # paired by id
    assert len(got.train) + len(got.holdout) == len(frame)
    assert not set(got.train[key]) & set(got.holdout[key])


def test_a_champion_from_before_the_change_keeps_the_held_out_comparison(cfg, frame):
    crossfit = _crossfit(cfg, frame, "2026-03-06")
    trained = TrainedRun(run_id="", model_uri="m", metrics={})
    # learnt days up to 03-05: it never saw a day since the change
    got = compared_rows(cfg, frame, trained, Constant(), crossfit, "2026-03-12")
    assert got.basis == HELD_OUT and np.allclose(got.candidate_scores, 0.3)
    # no cross-fit, or no champion: held out as well
    assert compared_rows(cfg, frame, trained, Constant(), None, "2026-03-15").basis == HELD_OUT
    assert compared_rows(cfg, frame, trained, Constant(), crossfit, None).basis == HELD_OUT


def test_too_few_rows_the_champion_never_saw_keep_the_held_out_comparison(cfg, frame):
    crossfit = _crossfit(cfg, frame, "2026-03-06")
    trained = TrainedRun(run_id="", model_uri="m", metrics={})
    assert PER_DAY < MIN_UNSEEN_ROWS <= 2 * PER_DAY
    # learnt up to 03-11: one day (30 rows) left unseen
    assert compared_rows(cfg, frame, trained, Constant(), crossfit, "2026-03-18").basis == HELD_OUT
    # up to 03-10: two days
    assert compared_rows(cfg, frame, trained, Constant(), crossfit, "2026-03-17").basis == CROSS_FIT
