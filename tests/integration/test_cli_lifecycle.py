"""`retrain monitor` and `retrain retrain`: the DAGs' steps from the command line, against a
real MLflow store in a temporary state directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def test_monitor_then_retrain_then_healthy(tmp_path):
    import shutil

    import yaml

    cfg_dir = tmp_path / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    model_file = cfg_dir / "models" / "credit_default.yaml"
    model = yaml.safe_load(model_file.read_text())
    model["drift"]["weight_by_importance"] = True
    model_file.write_text(yaml.safe_dump(model, sort_keys=False))
    env = {**os.environ, "RETRAIN_HOME": str(tmp_path / "state"), "RETRAIN_CONFIG_DIR": str(cfg_dir)}

    def retrain(*args):
        return subprocess.run(
            [sys.executable, "-m", "retrain_lib", *args], capture_output=True, text=True, env=env, timeout=300
        )

    sim = retrain("simulate", "--config", str(model_file), "--days", "33", "--rows-per-day", "700", "--seed", "9")
    assert sim.returncode == 0, sim.stderr
    assert (tmp_path / "state" / "data" / "credit_default" / "2026-01-33.parquet").exists() is False
    assert (tmp_path / "state" / "data" / "credit_default" / "2026-02-02.parquet").exists()

    first = retrain("monitor", "credit_default", "--as-of", "2026-01-29", "--format", "json")
    assert first.returncode == 1, first.stderr  # "should retrain" is a failed check
    assert json.loads(first.stdout)["action"] == "retrain"

    trained = retrain("retrain", "credit_default", "--as-of", "2026-01-29", "--format", "json")
    assert trained.returncode == 0, trained.stderr[-2000:]
    out = json.loads(trained.stdout)
    assert out["outcome"] == "deployed" and out["deployed"]["champion"] == "1"
    assert all(g["passed"] for g in out["gates"]["results"])

    later = retrain("monitor", "credit_default", "--as-of", "2026-02-01", "--format", "json")
    assert later.returncode == 0, later.stderr
    res = json.loads(later.stdout)
    assert res["action"] == "healthy" and res["champion_version"] == "1"
    assert Path(res["report_path"]).is_file()

    # The champion carries its permutation importances; the monitor weights drift by them and
    # reports the drift of the champion's own outputs.
    from retrain_lib.store import registry

    version = registry.get_client(f"sqlite:///{tmp_path / 'state' / 'mlflow' / 'mlflow.db'}").get_model_version(
        "credit_default", "1"
    )
    importance = {k.split(".", 1)[1]: float(v) for k, v in version.tags.items() if k.startswith("importance.")}
    features = set(model["features"]["numeric"]) | set(model["features"]["categorical"])
    assert set(importance) == features and abs(sum(importance.values()) - 1) < 1e-9
    assert importance["credit_utilization"] > importance["age"]  # the simulated risk hangs on utilisation
    weights = res["drift"]["weights"]
    assert set(weights) == features and abs(sum(weights.values()) - 1) < 1e-9
    assert weights["credit_utilization"] == pytest.approx(importance["credit_utilization"])
    prediction = res["drift"]["prediction"]
    assert prediction["method"] == "psi" and prediction["score"] >= 0 and prediction["drifted"] is False
    assert any(s["signal"] == "prediction_drift" for s in res["signals"])

    bad = retrain("monitor", "no_such_model", "--as-of", "2026-02-01")
    assert bad.returncode == 2 and "no_such_model.yaml" in bad.stderr
