"""benchmarks/scale_bench.py at a tiny size: it runs, prints one JSON line with the keys the
issue asks for, and its invariants hold (binned scores equal the exact path, KS within the
stated bound, memory measured, generated data deleted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_scale_bench_tiny_run(tmp_path):
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "scale_bench.py"),
        "--rows",
        "6000",
        "--days",
        "3",
        "--num-cols",
        "6",
        "--cat-cols",
        "3",
        "--sample-rows",
        "3000",
        "--wide-rows",
        "2000",
        "--wide-cols",
        "12",
        "--wide-days",
        "2",
        "--workers",
        "1",
        "--tmp",
        str(tmp_path),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in (
        "rows",
        "cols",
        "seconds",
        "rows_per_s",
        "peak_mb",
        "peak_mb_at_1_10th",
        "max_abs_diff_binned",
        "ks_max_error",
        "ks_error_bound",
        "wide_rows",
        "wide_cols",
        "wide_seconds",
        "load_avg",
    ):
        assert key in out, key
    assert (out["rows"], out["cols"], out["wide_rows"], out["wide_cols"]) == (6000, 9, 2000, 12)
    assert out["max_abs_diff_binned"] <= 1e-9
    assert out["ks_within_bound"] and out["ks_max_error"] <= out["ks_error_bound"]
    assert out["wasserstein_within_bound"]
    assert out["peak_mb"] > 50 and out["peak_mb_at_1_10th"] > 50  # a Python process with pandas, measured
    assert out["seconds"] > 0 and out["rows_per_s"] * out["seconds"] == pytest.approx(out["rows"], rel=0.02)
    assert out["drifted_psi"] >= 1  # the generated window drifts in a third of its columns
    assert len(out["load_avg"]) == 3
    assert not any(tmp_path.iterdir())  # generated data deleted
