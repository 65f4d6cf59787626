"""The state `make demo` produces, made once per test session for every end-to-end test
that needs it (`test_demo.py`: its story, its live part and its fleet page)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
from own_group import run_in_own_group

DEMO_DAYS = 46


class DemoRun(NamedTuple):
    proc: subprocess.CompletedProcess  # the demo driver's run: returncode, stdout (the story), stderr
    state_dir: Path  # its RETRAIN_HOME: MLflow store, ledger, reports, Airflow home
    started: dt.datetime  # wall clock (UTC) just before the demo started: its calendar ends that day


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> DemoRun:
    """`make demo`'s driver in a fresh state directory (46 days, 800 rows a day), run once."""
    root = tmp_path_factory.mktemp("demo")
    state_dir = root / "state"
    started = dt.datetime.now(dt.UTC)
    cmd = [
        sys.executable,
        "-m",
        "retrain_demo.demo",
        "--state-dir",
        str(state_dir),
        "--days",
        str(DEMO_DAYS),
        "--rows-per-day",
        "800",
    ]
    return DemoRun(run_in_own_group(cmd, timeout=840, cwd=root), state_dir, started)
