"""Scoring a backtest after every decision is fixed: the true labels of the range, read
once, score the models each policy served (:class:`Scorer`), and the drift onsets the
features reveal (:func:`revealed_drifts`)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.core.metrics import predict_scores
from retrain_lib.learn.training_data import feature_frame, xy
from retrain_lib.stats.drift import drift_for_config
from retrain_lib.stats.performance import metric_value
from retrain_lib.store.data import day_range, load_window
from retrain_lib.tools.artifact_store import ArtifactStore
from retrain_lib.tools.replay_context import ReplaySettings


class Scorer:
    """The true labels of every event of the backtest range, read once after the replay,
    and each model's scores per day (cached)."""

    def __init__(self, cfg: ModelConfig, settings: ReplaySettings, store: ArtifactStore, start: dt.date, end: dt.date):
        window = load_window(cfg, settings, start, end, as_of=dt.date.max, require_rows=False)
        frame = window.labelled if not window.frame.empty else window.frame
        self.cfg = cfg
        self.store = store
        self.by_day = {}
        if not frame.empty:
            days = frame[cfg.data.timestamp_column].dt.date
            self.by_day = {d.isoformat(): rows for d, rows in frame.groupby(days.to_numpy())}
        self.scores: dict[tuple[str, str], Any] = {}
        self.metric = cfg.primary_metric

    def _scores(self, key: str, day: str):
        if (key, day) not in self.scores:
            X = feature_frame(self.cfg, self.by_day[day])
            art = self.store.get(key)
            assert art is not None  # a served key was trained into the store
            self.scores[(key, day)] = predict_scores(art.pipeline, X, self.cfg.task)
        return self.scores[(key, day)]

    def value(self, key: str | None, days: list[str]) -> float | None:
        import numpy as np

        days = [d for d in days if d in self.by_day]
        if key is None or not days:
            return None
        y = np.concatenate([xy(self.cfg, self.by_day[d])[1] for d in days])
        s = np.concatenate([self._scores(key, d) for d in days])
        v = metric_value(y, s, self.metric, self.cfg.task)
        return None if math.isnan(v) else float(v)


def revealed_drifts(cfg: ModelConfig, settings: ReplaySettings, days: list[dt.date]) -> list[dict]:
    """Drift onsets the data reveals: days whose monitor window (``monitor_days``) drifts,
    by the config's drift settings, from the ``reference_days`` just before it, while the
    day before did not. Features only (labels are not read)."""
    out, before = [], None
    m, r = cfg.windows.monitor_days, cfg.windows.reference_days
    for day in days:
        cur_start, cur_end = day_range(day, m)
        ref_end = cur_start - dt.timedelta(days=1)
        ref_start = ref_end - dt.timedelta(days=r - 1)
        try:
            ref = load_window(cfg, settings, ref_start, ref_end, as_of=ref_end)
            cur = load_window(cfg, settings, cur_start, cur_end, as_of=day)
        except DataError:
            before = None
            continue
        report = drift_for_config(cfg, ref.frame, cur.frame)
        if report.dataset_drift and before is False:
            out.append(
                {"day": day.isoformat(), "source": "data", "features": [f.name for f in report.features if f.drifted]}
            )
        before = report.dataset_drift
    return out
