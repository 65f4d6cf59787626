"""Unit tests of the sample data's calendar (retrain_lib.tools.simulate)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from retrain_lib.core.config import load_model_config
from retrain_lib.tools.simulate import simulate

MODELS = Path(__file__).resolve().parents[2] / "configs" / "models"


def _temperatures(root: Path, cfg) -> list[float]:
    files = sorted((root / cfg.data.path).glob(f"*.{cfg.data.format}"))
    assert files, root
    return [float(pd.read_csv(f)["temperature"].mean()) for f in files]


def test_season_start_keeps_the_weather_of_a_calendar_moved_in_the_year(tmp_path):
    """A demo whose calendar ends today keeps its winter weather: with ``season_start`` a calendar
    moved to the autumn has January's temperatures (about 4.5 degrees; not the same rows: the
    weekdays differ, and so does the random stream after them), without it the autumn's (about 12)."""
    cfg = load_model_config(MODELS / "daily_demand.yaml")
    jan, autumn = dt.date(2026, 1, 1), dt.date(2026, 10, 17)
    kwargs = dict(days=12, rows_per_day=200, seed=3, drift_kind="none")
    simulate(cfg, tmp_path / "jan", start=jan, **kwargs)
    simulate(cfg, tmp_path / "anchored", start=autumn, season_start=jan, **kwargs)
    simulate(cfg, tmp_path / "autumn", start=autumn, **kwargs)
    mean = {
        name: sum(t) / len(t) for name in ("jan", "anchored", "autumn") for t in [_temperatures(tmp_path / name, cfg)]
    }
    assert abs(mean["anchored"] - mean["jan"]) < 0.5, mean
    assert mean["autumn"] - mean["jan"] > 5, mean
