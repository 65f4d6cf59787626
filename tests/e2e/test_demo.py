"""`make demo`'s driver, end to end in a fresh state directory: a healthy period without
retrains, then drifts that lead to retrain, gates and promotion, told as the ledger saw it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^(2026-\d\d-\d\d)\s+(\w+)\s+(retrain|healthy)\s+(\S+)\s+(.*)$")


def test_demo_tells_the_story(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "plugins")}
    proc = subprocess.run(
        [sys.executable, "-m", "retrain_airflow.demo", "--state-dir", str(tmp_path / "state"), "--days", "46",
         "--rows-per-day", "800"],
        capture_output=True, text=True, env=env, timeout=840, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [m.groups() for line in proc.stdout.splitlines() if (m := ROW.match(line))]
    assert rows, proc.stdout
    drift_day = "2026-02-09"
    for model in ("credit_default", "daily_demand"):
        mine = [r for r in rows if r[1] == model]
        assert len(mine) == 46 - 29 + 1
        first = mine[0]
        assert first[2] == "retrain" and "v1 promoted" in first[4]
        healthy_period = [r for r in mine[1:] if r[0] < drift_day]
        assert healthy_period and all(r[2] == "healthy" for r in healthy_period), healthy_period
        after = [r for r in mine if r[0] >= drift_day and "promoted" in r[4]]
        assert after, f"{model}: no retrain was promoted after the drift:\n{proc.stdout}"
    credit_retrains = [r for r in rows if r[1] == "credit_default" and r[0] >= drift_day and r[2] == "retrain"]
    assert any(f in credit_retrains[0][4] for f in ("income", "credit_utilization", "region")), credit_retrains[0]
    demand_retrains = [r for r in rows if r[1] == "daily_demand" and r[0] >= drift_day and r[2] == "retrain"]
    assert "performance" in demand_retrains[0][4] or "rmse" in demand_retrains[0][4], demand_retrains[0]
    assert re.search(r"credit_default: champion v[2-9]", proc.stdout)
    assert "chain intact" in proc.stdout
    assert (tmp_path / "state" / "demo.log").stat().st_size > 0
