"""The monitor's triggers together, through the CLI against a real MLflow store and ledger:
new-labels volume, max_retrains throttling, a concept drift seen as a performance drop with
per-segment detail (against a rolling live baseline), and the CBPE estimate of a classifier."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from platforms import pin_fixed_policy

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def _cli(tmp_path: Path, edit):
    cfg_dir = tmp_path / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    pin_fixed_policy(cfg_dir)  # these tests check the lifecycle's mechanics on the fixed policy
    env = {**os.environ, "RETRAIN_HOME": str(tmp_path / "state"), "RETRAIN_CONFIG_DIR": str(cfg_dir)}
    for name, change in edit.items():
        path = cfg_dir / "models" / f"{name}.yaml"
        cfg = yaml.safe_load(path.read_text())
        change(cfg)
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def retrain(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "retrain_lib", *args], capture_output=True, text=True, env=env, timeout=300
        )
        assert proc.returncode in (0, 1), proc.stderr[-3000:]
        return json.loads(proc.stdout) if "--format" in args and "json" in args else proc

    return retrain, cfg_dir


def _signal(result: dict, name: str) -> dict | None:
    return next((s for s in result["signals"] if s["signal"] == name), None)


def test_new_labels_throttling_and_concept_drift(tmp_path):
    def demand(cfg):
        cfg["schedule"].update(new_labels_share=0.15, min_retrain_interval_days=0, max_retrains={"count": 1, "days": 7})
        del cfg["performance"]["max_drop"]  # relative levels only
        cfg["performance"].update(warn_drop=0.15, critical_drop=0.25, baseline_min_days=3, min_segment_labels=100)

    retrain, cfg_dir = _cli(tmp_path, {"daily_demand": demand})
    sim = retrain(
        "simulate",
        "--config",
        str(cfg_dir / "models/daily_demand.yaml"),
        "--days",
        "41",
        "--drift-day",
        "38",
        "--drift-kind",
        "concept",
        "--rows-per-day",
        "800",
        "--seed",
        "21",
    )
    assert sim.returncode == 0, sim.stderr
    trained = retrain("retrain", "daily_demand", "--as-of", "2026-01-29", "--format", "json")
    assert trained["outcome"] == "deployed"

    # 2 days of matured labels (01-30, 01-31): ~10% of the training rows, below 15%
    early = retrain("monitor", "daily_demand", "--as-of", "2026-02-01", "--format", "json")
    s = _signal(early, "new_labels")
    assert early["action"] == "healthy" and not s["triggered"] and 0.05 < s["value"] < 0.15
    train_rows = s["detail"]["train_rows"]
    assert train_rows > 10_000 and s["detail"]["since"] == "2026-01-30"

    # 4 days (01-30..02-02): ~19% >= 15%: a retrain is requested for the volume of new labels
    volume = retrain("monitor", "daily_demand", "--as-of", "2026-02-03", "--format", "json")
    assert volume["action"] == "retrain", volume["reasons"]
    assert _signal(volume, "new_labels")["triggered"]
    assert any(
        r.startswith("new labels: ") and "training rows >= new_labels_share 15%" in r for r in volume["reasons"]
    ), volume["reasons"]

    # the next day the same trigger fires, but 1 request in 7 days is the maximum
    throttled = retrain("monitor", "daily_demand", "--as-of", "2026-02-04", "--format", "json")
    assert throttled["action"] == "healthy" and throttled["throttled"]
    assert throttled["reasons"][-1].startswith("throttled: 1 retrain request(s) in the last 7 days (2026-02-03)")
    assert _signal(throttled, "max_retrains")["triggered"]

    # concept drift from 02-07: 3 of the 7 matured days (02-03..02-09) follow the new relation
    drifted = retrain("monitor", "daily_demand", "--as-of", "2026-02-10", "--format", "json")
    perf = drifted["performance"]
    assert perf["baseline_source"] == "rolling" and perf["baseline_rolling_days"] >= 3
    assert perf["level"] == "critical" and perf["relative_drop"] > 0.25
    s = _signal(drifted, "performance")
    assert s["triggered"] and s["value"] == pytest.approx(perf["live"]) and s["value"] > s["threshold"]
    assert {seg["value"] for seg in perf["segments"]} == {"small", "medium", "large"}
    assert all(seg["segment"] == "store_type" and seg["rows"] > 100 and seg["baseline"] > 0 for seg in perf["segments"])
    flagged = _signal(drifted, "performance_segments")["detail"]["flagged"]
    assert flagged and any(f["value"] == "small" for f in flagged)  # the concept changed most for small stores
    assert drifted["action"] == "retrain"
    assert any(r.startswith("performance: rmse ") and "> critical_drop 25%" in r for r in drifted["reasons"])
    assert any(
        r.startswith("performance segments past a level: ") and "store_type=small rmse" in r for r in drifted["reasons"]
    )

    # the ledger carries the signals too
    from retrain_lib.store.audit import Ledger

    monitors = [
        r
        for r in Ledger(f"sqlite:///{tmp_path / 'state' / 'platform.db'}").records("daily_demand")
        if r["event"] == "monitor"
    ]
    assert [m["details"]["action"] for m in monitors] == ["healthy", "retrain", "healthy", "retrain"]
    assert {s["signal"] for s in monitors[-1]["details"]["signals"]} >= {
        "performance",
        "performance_segments",
        "new_labels",
        "drift",
    }


def test_classifier_records_an_estimated_performance(tmp_path):
    def credit(cfg):
        cfg["performance"].update(critical_drop=0.10, use_estimate=True)

    retrain, cfg_dir = _cli(tmp_path, {"credit_default": credit})
    sim = retrain(
        "simulate",
        "--config",
        str(cfg_dir / "models/credit_default.yaml"),
        "--days",
        "33",
        "--rows-per-day",
        "700",
        "--seed",
        "9",
    )
    assert sim.returncode == 0, sim.stderr
    assert retrain("retrain", "credit_default", "--as-of", "2026-01-29", "--format", "json")["outcome"] == "deployed"
    res = retrain("monitor", "credit_default", "--as-of", "2026-02-02", "--format", "json")
    est = res["performance"]["estimate"]
    # the labels of 3 current days are 7 days late: all ~2100 rows are still unlabelled
    assert est["metric"] == "roc_auc" and est["rows"] > 1800 and est["draws"] == 50
    assert 0.6 < est["low"] < est["value"] < est["high"] < 1
    s = _signal(res, "performance_estimate")
    assert s["value"] == pytest.approx(est["value"]) and s["detail"]["use_estimate"] is True
    assert res["action"] == "healthy" and not s["triggered"], res["reasons"]  # no drift: no estimated drop
