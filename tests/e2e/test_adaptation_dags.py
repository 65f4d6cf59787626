"""The shipped credit_default config's adaptation policy through real Airflow runs at 150 rows a
day (its validation wants at least 100 rows in a day's partition; the replay at 100 rows a day is
tests/integration/test_adaptation_policy.py): the demo's driver (``retrain_demo.demo``: each simulated day a monitor DAG run, and the
retrain DAG run it requests, both with ``dag.test()``) on a stream without any change retrains
nothing after the first model, and on a covariate shift records the drift at once and does not
retrain every day the shift persists. The same policy over 90 days and every size is in
``benchmarks/adaptation_bench.py``; the concept change and its recovery in ``test_demo.py``."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import pytest
from own_group import run_in_own_group

from retrain_lib.store.audit import Ledger

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
MODEL = "credit_default"
ROWS_PER_DAY = 150
LAST_DAY = dt.date(2026, 3, 31)  # a fixed calendar: the outcome does not depend on the day the test runs
FIRST_DAY = 29  # the demo's first monitored day: 28 days of history before it


def _run(tmp_path: Path, kind: str, *, days: int, drift_day: int) -> list[dict]:
    """The demo's days for ``MODEL`` at ``ROWS_PER_DAY``; its ledger records."""
    state = tmp_path / "state"
    cmd = [
        sys.executable,
        "-m",
        "retrain_demo.demo",
        "--state-dir",
        str(state),
        "--models",
        MODEL,
        "--no-live",
        "--days",
        str(days),
        "--drift-day",
        str(drift_day),
        "--drift-kind",
        kind,
        "--rows-per-day",
        str(ROWS_PER_DAY),
        "--last-day",
        LAST_DAY.isoformat(),
    ]
    proc = run_in_own_group(cmd, timeout=840, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return Ledger(f"sqlite:///{state / 'platform.db'}").records(MODEL)


def _day(days: int, n: int) -> str:
    return (LAST_DAY - dt.timedelta(days=days - n)).isoformat()


def test_a_stable_stream_at_150_rows_a_day_is_never_retrained(tmp_path):
    days = 48
    records = _run(tmp_path, "none", days=days, drift_day=days + 1)
    monitors = [r for r in records if r["event"] == "monitor"]
    assert len(monitors) == days - FIRST_DAY + 1  # every day ran its monitor DAG
    promotions = [r for r in records if r["event"] == "promote"]
    assert len(promotions) == 1 and promotions[0]["as_of"] == _day(days, FIRST_DAY), promotions
    after = [r for r in monitors if r["as_of"] > promotions[0]["as_of"]]
    assert len(after) == days - FIRST_DAY
    requests = [(r["as_of"], r["details"]["reasons"]) for r in after if r["details"]["action"] != "healthy"]
    assert not requests
    assert not [
        r for r in records if r["event"] in ("gates", "reject", "no_gain") and r["as_of"] > _day(days, FIRST_DAY)
    ]


def test_a_covariate_shift_is_recorded_at_once_and_not_retrained_every_day(tmp_path):
    days, drift_day = 50, 33
    records = _run(tmp_path, "covariate", days=days, drift_day=drift_day)
    shift = _day(days, drift_day)
    since = [r for r in records if r["event"] == "monitor" and r["as_of"] >= shift]
    assert len(since) == days - drift_day + 1
    flagged = [r["as_of"] for r in since if r["details"].get("dataset_drift_raw")]
    assert flagged and flagged[0] <= _day(days, drift_day + 1), [r["details"]["reasons"] for r in since[:3]]
    # recorded and the drift reference rebased: the drift alone requests no retrain
    assert [r for r in records if r["event"] == "drift_rebased" and r["as_of"] == flagged[0]]
    requests = [r["as_of"] for r in since if r["details"]["action"] == "retrain"]
    # the labels of the shifted rows decide, once enough have matured (7 days late here), and
    # a shift retrain not deployed is asked again only when its matured days double
    assert len(requests) <= 2, [(r["as_of"], r["details"]["reasons"]) for r in since if r["as_of"] in requests]
    assert all(b > a for a, b in zip(requests, requests[1:], strict=False))
    assert not any(
        dt.date.fromisoformat(b) - dt.date.fromisoformat(a) == dt.timedelta(days=1)
        for a, b in zip(requests, requests[1:], strict=False)
    ), requests
    # the shift stays in the data every day after it; it is not reported as new drift every day
    assert len(flagged) < len(since) / 2, flagged
