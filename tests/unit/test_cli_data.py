"""`retrain simulate` and `retrain drift` as a user runs them (subprocess, real files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "models" / "credit_default.yaml"


def retrain(*args, cwd=None):
    env = {**os.environ, "RETRAIN_CONFIG_DIR": str(REPO / "configs")}
    return subprocess.run(
        [sys.executable, "-m", "retrain_lib", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


@pytest.fixture(scope="module")
def simulated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    proc = retrain(
        "simulate",
        "--config",
        str(CONFIG),
        "--out",
        str(out),
        "--days",
        "12",
        "--drift-day",
        "8",
        "--drift-kind",
        "covariate",
        "--rows-per-day",
        "600",
        "--seed",
        "5",
        "--format",
        "json",
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["days"] == 12 and summary["drift_start"] == "2026-01-08"
    return out / "credit_default"


def drift_json(ref: Path, cur: Path, *extra):
    proc = retrain(
        "drift", "--reference", str(ref), "--current", str(cur), "--config", str(CONFIG), "--format", "json", *extra
    )
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else None, proc.stderr


def test_simulate_writes_one_partition_per_day_and_late_labels(simulated):
    days = sorted(p.name for p in simulated.glob("2026-*.parquet"))
    assert days == [f"2026-01-{d:02d}.parquet" for d in range(1, 13)]
    labels = sorted(p.name for p in (simulated / "labels").glob("*.parquet"))
    assert labels[0] == "2026-01-08.parquet"  # label_delay_days: 7
    first = pd.read_parquet(simulated / "2026-01-01.parquet")
    assert "defaulted" not in first.columns  # labels are not in the feature partitions


def test_drift_json_contract_and_values_match_scipy(simulated):
    ref, cur = simulated / "2026-01-02.parquet", simulated / "2026-01-10.parquet"
    code, out, err = drift_json(ref, cur)
    assert code == 1, err  # a dataset drift is a failed check
    assert out["dataset_drift"] is True
    names = [f["name"] for f in out["features"]]
    assert set(names) == {
        "income",
        "debt_to_income",
        "credit_utilization",
        "age",
        "num_late_payments",
        "loan_amount",
        "region",
        "employment_type",
    }
    for f in out["features"]:
        assert set(f) >= {"name", "method", "score", "p_value", "threshold", "drifted"}
    income = next(f for f in out["features"] if f["name"] == "income")
    a = pd.read_parquet(ref)["income"].dropna()
    b = pd.read_parquet(cur)["income"].dropna()
    expected = stats.ks_2samp(a, b)
    assert income["method"] == "ks"
    assert income["p_value"] == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)
    assert income["score"] == pytest.approx(expected.statistic, rel=1e-12)
    assert out["drifted_share"] == pytest.approx(sum(f["drifted"] for f in out["features"]) / len(names))


def test_no_drift_between_two_days_of_the_same_regime(simulated):
    code, out, err = drift_json(simulated / "2026-01-02.parquet", simulated / "2026-01-03.parquet")
    assert code == 0, err
    assert out["dataset_drift"] is False


def test_drift_without_config_infers_feature_types(simulated, tmp_path):
    ref = pd.read_parquet(simulated / "2026-01-02.parquet")[["income", "region"]]
    cur = ref.copy()
    cur["income"] = cur["income"] * 1.5
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_csv(tmp_path / "cur.csv", index=False)
    proc = retrain(
        "drift", "--reference", str(tmp_path / "ref.csv"), "--current", str(tmp_path / "cur.csv"), "--format", "json"
    )
    out = json.loads(proc.stdout)
    kinds = {f["name"]: (f["kind"], f["drifted"]) for f in out["features"]}
    assert kinds == {"income": ("numeric", True), "region": ("categorical", False)}
    assert np.isclose(out["drifted_share"], 0.5)


def test_drift_without_config_leaves_out_ids_and_timestamps(simulated, tmp_path):
    """The simulated partitions carry application_id (unique text) and event_time (datetime):
    scored as features they drift by construction (PSI above 3) and fake a dataset drift."""
    ref = pd.read_parquet(simulated / "2026-01-02.parquet")
    assert {"application_id", "event_time"} <= set(ref.columns)
    ref = ref.assign(
        row=np.arange(len(ref)),
        ticket=[f"t-{i:05d}" for i in range(len(ref))],
        stamp=ref["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    cur = ref.copy()
    cur["row"] += len(ref)
    cur["ticket"] = [f"u-{i:05d}" for i in range(len(cur))]
    cur["event_time"] += pd.Timedelta(days=30)
    cur["stamp"] = cur["event_time"].dt.strftime("%Y-%m-%dT%H:%M:%S")
    ref.to_csv(tmp_path / "ref.csv", index=False)
    cur.to_csv(tmp_path / "cur.csv", index=False)
    proc = retrain(
        "drift", "--reference", str(tmp_path / "ref.csv"), "--current", str(tmp_path / "cur.csv"), "--format", "json"
    )
    assert proc.returncode == 0, proc.stderr  # the same rows with new ids and times: no drift
    out = json.loads(proc.stdout)
    assert [f["name"] for f in out["features"]] == [
        "income",
        "debt_to_income",
        "credit_utilization",
        "age",
        "num_late_payments",
        "loan_amount",
        "region",
        "employment_type",
    ]
    assert out["left_out"] == {
        "application_id": "id: named like one",
        "event_time": "timestamp: ISO date/time text",
        "row": "id: an increasing integer in every row",
        "ticket": "id: a different value in every row",
        "stamp": "timestamp: ISO date/time text",
    }
    assert proc.stderr.startswith("note: left out 5 shared column(s) that are ids or timestamps")
    assert out["dataset_drift"] is False and out["drifted_share"] == 0

    # --keep scores one anyway (and it drifts: every id is new)
    proc = retrain(
        "drift",
        "--reference",
        str(tmp_path / "ref.csv"),
        "--current",
        str(tmp_path / "cur.csv"),
        "--format",
        "json",
        "--keep",
        "ticket",
    )
    out = json.loads(proc.stdout)
    assert "ticket" in [f["name"] for f in out["features"] if f["drifted"]] and "ticket" not in out["left_out"]


def test_drift_refuses_files_without_shared_features(simulated, tmp_path):
    credit = simulated / "2026-01-02.parquet"
    other = tmp_path / "demand.csv"
    frame = pd.read_parquet(credit)
    pd.DataFrame(
        {
            "event_time": frame["event_time"],
            "store_id": range(len(frame)),
            "income": frame["income"],
            "price": 1.0,
            "promo": "yes",
        }
    ).to_csv(other, index=False)
    proc = retrain("drift", "--reference", str(credit), "--current", str(other))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"error: {credit} and {other} share fewer than half of their columns")
    assert "shared: event_time, income" in proc.stderr and "--config" in proc.stderr

    ids_only = tmp_path / "ids.parquet"
    frame[["application_id", "event_time"]].to_parquet(ids_only)
    proc = retrain("drift", "--reference", str(ids_only), "--current", str(ids_only))
    assert proc.returncode == 2
    assert f"error: {ids_only} and {ids_only} share no feature column" in proc.stderr
    assert "application_id: id: named like one" in proc.stderr and "--keep" in proc.stderr
    assert "event_time: timestamp: datetime column" in proc.stderr


def test_bad_paths_exit_2_with_the_file_named(tmp_path):
    proc = retrain("drift", "--reference", str(tmp_path / "missing.parquet"), "--current", str(tmp_path / "x.csv"))
    assert proc.returncode == 2
    assert "missing.parquet" in proc.stderr and "no such file" in proc.stderr
    (tmp_path / "data.txt").write_text("a,b\n1,2\n")
    proc = retrain("drift", "--reference", str(tmp_path / "data.txt"), "--current", str(tmp_path / "data.txt"))
    assert proc.returncode == 2 and "unknown file type" in proc.stderr


def test_every_command_has_help():
    for args in (
        ["--help"],
        ["simulate", "--help"],
        ["drift", "--help"],
        ["monitor", "--help"],
        ["retrain", "--help"],
        ["config", "validate", "--help"],
        ["config", "schema", "--help"],
    ):
        proc = retrain(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "usage:" in proc.stdout
