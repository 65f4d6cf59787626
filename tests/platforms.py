"""A simulated one-model platform in a temporary folder, for module fixtures (``tests/`` is
on ``sys.path`` because it holds the top-level conftest)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MODEL = "credit_default"


@contextlib.contextmanager
def credit_platform(root: Path, *, days: int, rows_per_day: int, seed: int,
                    edit: Callable[[dict], None] | None = None) -> Iterator[tuple]:
    """The repo's configs with ``credit_default`` only (its YAML changed by ``edit``), under
    ``root``, with ``days`` of simulated data, and ``RETRAIN_HOME`` / ``RETRAIN_CONFIG_DIR``
    pointing there for the block (restored afterwards). Yields ``(settings, cfg, cfg_dir)``."""
    from retrain_lib.config import load_model_config
    from retrain_lib.settings import load_settings
    from retrain_lib.simulate import simulate

    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    (cfg_dir / "models" / "daily_demand.yaml").unlink()
    path = cfg_dir / "models" / f"{MODEL}.yaml"
    if edit is not None:
        raw = yaml.safe_load(path.read_text())
        edit(raw)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        mp.setenv("RETRAIN_CONFIG_DIR", str(cfg_dir))
        settings = load_settings(cfg_dir)
        cfg = load_model_config(path)
        simulate(cfg, settings.data_root, days=days, drift_day=None, drift_kind="none", rows_per_day=rows_per_day,
                 seed=seed)
        yield settings, cfg, cfg_dir
