"""What a backtest replay reads instead of the platform: where the data is
(:class:`ReplaySettings`), a model context without MLflow or the ledger
(:class:`ReplayContext`), the replay's model versions (:class:`Version`) and the days it
can replay (:func:`data_days`, :func:`day_list`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.store.data import available_days


@dataclass(frozen=True)
class ReplaySettings:
    """Where the data is (what :func:`~retrain_lib.store.data.load_window` reads from a Settings)."""

    data_root: Path
    platform: Any = None


class ReplayContext:
    """Duck-typed :class:`~retrain_lib.store.model_context.ModelContext`: config, settings and loaded
    models by URI. The registry is out of reach on purpose."""

    def __init__(self, cfg: ModelConfig, settings: ReplaySettings, models: dict[str, Any]):
        self.cfg = cfg
        self.settings = settings
        self.models = models

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def client(self):
        raise RuntimeError("the backtest never touches the model registry")

    def mlflow(self):
        raise RuntimeError("the backtest never touches MLflow")


@dataclass
class Version:
    """A model version of the replay: its artifact key and the tags the monitor reads."""

    version: str
    key: str
    tags: dict[str, str]
    run_id: str | None = None


def day_list(start: dt.date, end: dt.date) -> list[dt.date]:
    """Every day from ``start`` to ``end``, both included."""
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def data_days(cfg: ModelConfig, settings: ReplaySettings) -> list[dt.date]:
    """The days with a data partition of ``cfg``; raises :class:`DataError` when there is none."""
    days = available_days(cfg, settings.data_root, settings.platform)
    if not days:
        raise DataError(
            f"no {cfg.data.format} partitions for model {cfg.name!r} under "
            f"{Path(settings.data_root) / (cfg.data.path or '')}; expected files named YYYY-MM-DD."
            f"{cfg.data.format} (run 'retrain simulate' for sample data)"
        )
    return days
