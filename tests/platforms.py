"""A simulated one-model platform in a temporary folder, for module fixtures (imported by
name: pytest imports from ``tests/``, the folder of the top-level conftest)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MODEL = "credit_default"


def fixed_policy(raw: dict) -> dict:
    """A shipped model config (as a dict, edited in place and returned) on the fixed-threshold
    policy the lifecycle mechanics tests are written for: no ``adaptation`` section, drift
    alone retrains (fixed thresholds), a fixed performance ``max_drop``, a calendar floor. The
    shipped configs adapt (README, "Adapting after a change"); the tests of that policy build
    their own streams (tests/unit/test_adaptation*.py, tests/e2e/test_demo.py)."""
    raw.pop("adaptation", None)
    perf = raw.get("performance") or {}
    for key in ("false_alarm_rate", "min_effect"):
        perf.pop(key, None)
    if raw["name"] == "credit_default":
        raw["schedule"].update(retrain_floor="0 3 * * 0", min_retrain_interval_days=2)
        raw["drift"].update(threshold=0.2, features={"income": {"method": "ks", "threshold": 0.001}})
        perf["max_drop"] = 0.05
        raw["gates"] = [g for g in raw["gates"] if g.get("type") != "stability"] + [
            {"type": "stability", "max_change": 0.15}
        ]
    elif raw["name"] == "daily_demand":
        raw["schedule"].update(retrain_floor="@weekly", min_retrain_interval_days=2)
        raw["drift"]["threshold"] = 0.2
        perf["max_drop"] = 3.0
    return raw


def pin_fixed_policy(cfg_dir: Path) -> None:
    """:func:`fixed_policy` on every model config under ``cfg_dir/models``."""
    for path in sorted((cfg_dir / "models").glob("*.yaml")):
        path.write_text(yaml.safe_dump(fixed_policy(yaml.safe_load(path.read_text())), sort_keys=False))


@contextlib.contextmanager
def credit_platform(
    root: Path, *, days: int, rows_per_day: int, seed: int, edit: Callable[[dict], None] | None = None
) -> Iterator[tuple]:
    """The repo's configs with ``credit_default`` only (its YAML changed by ``edit``), under
    ``root``, with ``days`` of simulated data, and ``RETRAIN_HOME`` / ``RETRAIN_CONFIG_DIR``
    pointing there for the block (restored afterwards). Yields ``(settings, cfg, cfg_dir)``."""
    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.simulate import simulate

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
        simulate(
            cfg, settings.data_root, days=days, drift_day=None, drift_kind="none", rows_per_day=rows_per_day, seed=seed
        )
        yield settings, cfg, cfg_dir
