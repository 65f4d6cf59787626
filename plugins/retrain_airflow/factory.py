"""Builds each model's DAGs from its YAML config.

``build_all()`` validates every file in ``configs/models/``. A broken file is logged with
all its problems and skipped, so every other model's DAGs still load; with
``RETRAIN_STRICT=1`` (CI) it is an import error instead. The DAGs themselves are built by
:mod:`retrain_airflow.monitor_dag`, :mod:`retrain_airflow.retrain_dag`,
:mod:`retrain_airflow.rollout_dag`, :mod:`retrain_airflow.guard_dag` and
:mod:`retrain_airflow.report_dag` (the monthly health report).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from airflow.sdk import DAG

from retrain_airflow.guard_dag import build_guard_dag
from retrain_airflow.monitor_dag import build_monitor_dag
from retrain_airflow.report_dag import build_report_dag
from retrain_airflow.retrain_dag import build_retrain_dag
from retrain_airflow.rollout_dag import build_rollout_dag
from retrain_lib.core.config import ConfigSet, ModelConfig, load_model_configs
from retrain_lib.core.config_platform import load_platform_config
from retrain_lib.core.errors import ConfigError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def config_dir() -> Path:
    """``RETRAIN_CONFIG_DIR`` or this repository's ``configs/``."""
    return Path(os.environ.get("RETRAIN_CONFIG_DIR") or REPO_ROOT / "configs").resolve()


def strict() -> bool:
    return os.environ.get("RETRAIN_STRICT", "").lower() in ("1", "true", "yes")


def build_model_dags(cfg: ModelConfig, path: Path, cfg_dir: Path) -> dict[str, DAG]:
    """Monitor, retrain, rollout and monthly health report DAGs of one model, and its guard DAG
    when its guard is on.
    The rollout DAG exists for every model: with ``deploy.mode: direct`` it serves rollouts
    asked for by hand (a retrain run with ``deploy_mode`` shadow or canary, or a trigger of the
    rollout DAG itself)."""
    dags = [
        build_monitor_dag(cfg, path, cfg_dir),
        build_retrain_dag(cfg, path, cfg_dir),
        build_rollout_dag(cfg, path, cfg_dir),
        build_report_dag(cfg, path, cfg_dir),
    ]
    if cfg.guard_enabled:
        dags.append(build_guard_dag(cfg, path, cfg_dir))
    return {d.dag_id: d for d in dags}


def load_configs(cfg_dir: Path | None = None) -> ConfigSet:
    cfg_dir = cfg_dir or config_dir()
    platform = load_platform_config(cfg_dir / "platform.yaml")
    return load_model_configs([cfg_dir / "models"], platform)


def build_all(cfg_dir: Path | None = None) -> dict[str, DAG]:
    """Every valid model's DAGs, keyed by dag id. Bad configs are logged and skipped."""
    cfg_dir = cfg_dir or config_dir()
    configs = load_configs(cfg_dir)
    if configs.problems:
        message = "\n".join(str(p) for p in configs.problems)
        if strict():
            raise ConfigError(f"invalid model config(s) (RETRAIN_STRICT=1):\n{message}", configs.problems)
        log.error("skipping invalid model config(s); their DAGs are not loaded:\n%s", message)
    dags: dict[str, DAG] = {}
    for name, loaded in configs.models.items():
        try:
            dags.update(build_model_dags(loaded.config, loaded.path, cfg_dir))
        except Exception:
            if strict():
                raise
            log.exception("could not build the DAGs of model %s from %s; skipped", name, loaded.path)
    return dags
