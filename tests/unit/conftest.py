"""Shared fixtures of the config / CLI unit tests.

Every fixture is prefixed ``retrain_cfg_`` so it cannot collide with fixtures another
conftest (e.g. ``tests/conftest.py``) defines.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# A valid classification model config, independent of the shipped examples (which other
# people edit). Tests derive invalid variants from it with exact text replacements.
MODEL_YAML = """\
# Churn model used by the unit tests.
name: churn_risk
owner: ml-team@example.com
description: Probability that a customer cancels within 30 days.
task: classification

data:
  path: churn_risk              # relative to data_root
  format: parquet
  labels_path: churn_risk/labels
  id_column: customer_id
  timestamp_column: event_time
  label_delay_days: 3

features:
  target: churned
  numeric: [tenure, monthly_spend, support_calls]
  categorical: [plan, region]
  segments: [plan]

schedule:
  monitor: "0 6 * * *"
  retrain_floor: "@weekly"

drift:
  method: psi
  threshold: 0.2
  features:
    tenure: {method: ks, threshold: 0.01}
  drift_share: 0.3

performance:
  metric: roc_auc
  max_drop: 0.05
  min_labels: 200

training:
  estimator: sklearn.linear_model.LogisticRegression
  params: {C: 1.0, max_iter: 200}
  seed: 1
  split: {method: time, holdout_fraction: 0.25}

gates:
  - {metric: roc_auc, min: 0.6}
  - {metric: roc_auc, max_regression: 0.02}

deploy:
  mode: canary
  canary_steps: [10, 50, 100]

tags: {team: growth}
"""


@pytest.fixture
def retrain_cfg_project_root() -> Path:
    return PROJECT_ROOT


@pytest.fixture
def retrain_cfg_shipped_models_dir() -> Path:
    """The example model configs shipped in the repository (read only)."""
    return PROJECT_ROOT / "configs" / "models"


@pytest.fixture
def retrain_cfg_model_yaml() -> str:
    """Text of a valid model config named ``churn_risk`` (write it to ``churn_risk.yaml``)."""
    return MODEL_YAML


@pytest.fixture
def retrain_cfg_config_dir(tmp_path: Path) -> Path:
    """A private copy of ``configs/`` (platform.yaml + models/) under tmp_path."""
    dest = tmp_path / "configs"
    shutil.copytree(PROJECT_ROOT / "configs", dest)
    return dest


@pytest.fixture
def retrain_cfg_isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No RETRAIN_* / MLFLOW_* overrides and a cwd without a ``configs/`` directory, so
    ``load_settings`` only sees what a test passes explicitly."""
    for var in (
        "RETRAIN_CONFIG_DIR",
        "RETRAIN_HOME",
        "RETRAIN_DATA_ROOT",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
    ):
        monkeypatch.delenv(var, raising=False)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd
