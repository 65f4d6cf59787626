"""Builds each model's DAGs from its YAML config.

Two entry points, with the same DAG ids and the same rules:

* :func:`build_model_dags_for` - one model, called by its generated file
  ``dags/models/<model>.py`` (``retrain dags sync``, :mod:`retrain_airflow.dag_files`): reads
  ``platform.yaml`` (once per process) and that model's config only, so each file parses in
  tens of milliseconds, the DAG processor's parallel processes share the fleet, and a broken
  config touches only its own file.
* :func:`build_all` - every model in ``configs/models/`` (``dags/retrain_dags.py``), except
  those that already have a generated file (:func:`build_unsynced`): a config added after the
  last sync still gets its DAGs, and no DAG id is defined twice.

A broken config is logged with all its problems and skipped, so every other model's DAGs
still load; with ``RETRAIN_STRICT=1`` (CI) it is an import error of its file instead. The DAGs themselves are built by
:mod:`retrain_airflow.monitor_dag`, :mod:`retrain_airflow.retrain_dag`,
:mod:`retrain_airflow.rollout_dag`, :mod:`retrain_airflow.guard_dag` and
:mod:`retrain_airflow.report_dag` (the monthly health report).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from airflow.sdk import DAG

from retrain_airflow.dag_files import CONFIG_SUFFIXES, stubbed_models
from retrain_airflow.guard_dag import build_guard_dag
from retrain_airflow.monitor_dag import build_monitor_dag
from retrain_airflow.report_dag import build_report_dag
from retrain_airflow.retrain_dag import build_retrain_dag
from retrain_airflow.rollout_dag import build_rollout_dag
from retrain_lib.core.config import ConfigSet, ModelConfig, load_model_configs
from retrain_lib.core.config_platform import PlatformConfig, load_platform_config
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


def platform_config(cfg_dir: Path) -> PlatformConfig:
    """``platform.yaml`` of ``cfg_dir``, read once per process and content (a DAG processor
    process that parses many model files validates it once)."""
    path = cfg_dir / "platform.yaml"
    try:
        stamp = path.stat()
    except OSError:
        return _platform(path, 0, 0)
    return _platform(path, stamp.st_mtime_ns, stamp.st_size)


@lru_cache(maxsize=8)
def _platform(path: Path, mtime_ns: int, size: int) -> PlatformConfig:
    return load_platform_config(path)


def load_configs(cfg_dir: Path | None = None, skip: Iterable[str] = ()) -> ConfigSet:
    """Every model config of ``cfg_dir`` (default :func:`config_dir`) except the models named in
    ``skip``, validated."""
    cfg_dir = cfg_dir or config_dir()
    platform = platform_config(cfg_dir)
    models = cfg_dir / "models"
    skip = set(skip)
    if not skip:
        return load_model_configs([models], platform)
    files = [p for p in sorted(models.iterdir()) if p.suffix in CONFIG_SUFFIXES and p.is_file() and p.stem not in skip]
    return load_model_configs(files, platform) if files else ConfigSet({}, [], platform)


def _report(problems, what: str) -> None:
    message = "\n".join(str(p) for p in problems)
    if strict():
        raise ConfigError(f"invalid model config(s) (RETRAIN_STRICT=1):\n{message}", problems)
    log.error("skipping invalid model config(s); %s:\n%s", what, message)


def build_model_dags_for(model: str, cfg_dir: Path | None = None) -> dict[str, DAG]:
    """The DAGs of ``model`` alone, keyed by dag id, from ``<cfg_dir>/models/<model>.yaml`` (or
    ``.yml``): what the generated file ``dags/models/<model>.py`` defines.

    Reads that one config (and ``platform.yaml``, cached per process). A broken config is
    logged and yields no DAGs; with ``RETRAIN_STRICT=1`` it raises, which the DAG processor
    reports as an import error of this model's file only. A config that no longer exists (a
    stub not yet removed by ``retrain dags sync``) yields no DAGs and a warning."""
    cfg_dir = cfg_dir or config_dir()
    models = cfg_dir / "models"
    paths = [models / f"{model}{suffix}" for suffix in CONFIG_SUFFIXES if (models / f"{model}{suffix}").is_file()]
    if not paths:
        log.warning("no config for model %s in %s (a stale generated DAG file: run `retrain dags sync`)", model, models)
        return {}
    configs = load_model_configs(paths, platform_config(cfg_dir))
    if configs.problems:
        _report(configs.problems, f"the DAGs of {model} are not loaded")
    loaded = configs.models.get(model)
    if loaded is None:
        return {}
    try:
        return build_model_dags(loaded.config, loaded.path, cfg_dir)
    except Exception:
        if strict():
            raise
        log.exception("could not build the DAGs of model %s from %s; skipped", model, loaded.path)
        return {}


def build_unsynced(stub_dir: Path, cfg_dir: Path | None = None) -> dict[str, DAG]:
    """:func:`build_all` for the models without a generated file in ``stub_dir``."""
    return build_all(cfg_dir, skip=stubbed_models(stub_dir))


def build_all(cfg_dir: Path | None = None, skip: Iterable[str] = ()) -> dict[str, DAG]:
    """Every valid model's DAGs (but those of the models in ``skip``), keyed by dag id. Bad
    configs are logged and skipped."""
    cfg_dir = cfg_dir or config_dir()
    configs = load_configs(cfg_dir, skip)
    if configs.problems:
        _report(configs.problems, "their DAGs are not loaded")
    dags: dict[str, DAG] = {}
    for name, loaded in configs.models.items():
        try:
            dags.update(build_model_dags(loaded.config, loaded.path, cfg_dir))
        except Exception:
            if strict():
                raise
            log.exception("could not build the DAGs of model %s from %s; skipped", name, loaded.path)
    return dags
