"""Where settings come from, and that using one platform's MLflow store does not leak into the
next platform's settings in the same process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _configs(tmp_path: Path, name: str) -> Path:
    dst = tmp_path / name / "configs"
    shutil.copytree(REPO / "configs", dst)
    return dst


def test_state_and_store_follow_retrain_home(tmp_path, monkeypatch):
    from retrain_lib.core.settings import load_settings

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RETRAIN_DATA_ROOT", raising=False)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    s = load_settings(_configs(tmp_path, "a"))
    assert s.state_dir == tmp_path / "state"
    assert s.data_root == tmp_path / "state" / "data"
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'state' / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert load_settings(_configs(tmp_path, "b")).tracking_uri == "http://mlflow:5000"


def test_using_one_store_does_not_leak_into_the_next_settings(tmp_path, monkeypatch):
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.model_context import ModelContext

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "one"))
    first = ModelContext("credit_default", load_settings(_configs(tmp_path, "a")))
    mlflow = first.mlflow()
    assert mlflow.get_tracking_uri() == first.settings.tracking_uri
    assert "MLFLOW_TRACKING_URI" not in os.environ

    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "two"))
    second = load_settings(_configs(tmp_path, "b"))
    assert second.tracking_uri == f"sqlite:///{tmp_path / 'two' / 'mlflow' / 'mlflow.db'}"
