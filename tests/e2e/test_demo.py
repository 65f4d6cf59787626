"""`make demo`'s driver, end to end in a fresh state directory: a healthy period without
retrains, then drifts that lead to retrain, gates and promotion, told as the ledger saw it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900), pytest.mark.xdist_group("demo")]  # one demo run per session
REPO = Path(__file__).resolve().parents[2]
ROW = re.compile(r"^(2026-\d\d-\d\d)\s+(\w+)\s+(retrain|healthy)\s+(\S+)\s+(.*)$")


def test_demo_tells_the_story(demo_run):
    proc = demo_run.proc  # the demo run of tests/e2e/conftest.py (--days 46 --rows-per-day 800)
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
    assert (demo_run.state_dir / "demo.log").stat().st_size > 0


def test_demo_live_part_promotes_a_canary_and_rolls_a_bad_champion_back(demo_run):
    """What the live part did, read from the stores it wrote (not from the story): the Airflow
    runs, the ledger, the registry and the prediction log."""
    import sqlite3

    from retrain_lib import registry
    from retrain_lib.audit import Ledger

    assert demo_run.proc.returncode == 0, demo_run.proc.stdout[-3000:] + demo_run.proc.stderr[-3000:]
    state = demo_run.state_dir
    model = "credit_default"
    airflow = sqlite3.connect(state / "airflow" / "airflow.db")
    runs = dict(airflow.execute("select dag_id || '/' || run_id, state from dag_run where dag_id like ?",
                                (f"{model}__%",)).fetchall())
    rollout_runs = {k: v for k, v in runs.items() if k.startswith(f"{model}__rollout/")}
    assert list(rollout_runs.values()) == ["success"], rollout_runs
    ti = dict(airflow.execute("select task_id, state from task_instance where dag_id = ? and run_id = ?",
                              (f"{model}__rollout", next(iter(rollout_runs)).split("/", 1)[1])).fetchall())
    assert ti["promote_challenger"] == "success" and ti["rollback_challenger"] == "skipped", ti
    assert ti["judge_step_1"] == "success" and ti["canary_passed"] == "success", ti
    rolled = airflow.execute("select count(*) from task_instance where dag_id = ? and task_id = 'rollback_champion' "
                             "and state = 'success'", (f"{model}__monitor",)).fetchone()[0]
    assert rolled == 1

    records = Ledger(f"sqlite:///{state / 'platform.db'}").records(model)
    canary = [r for r in records if r["event"] == "promote" and r["details"].get("mode") == "canary"]
    by_hand = [r for r in records if r["event"] == "promote" and r["details"].get("mode") == "by_hand"]
    rollbacks = [r for r in records if r["event"] == "rollback"]
    assert len(canary) == 1 and len(by_hand) == 1 and len(rollbacks) == 1, [r["event"] for r in records]
    good, bad = canary[0]["after"], by_hand[0]["after"]
    assert by_hand[0]["before"] == good and (rollbacks[0]["before"], rollbacks[0]["after"]) == (bad, good)
    steps = [r["details"] for r in records if r["event"] == "rollout_canary"]
    assert steps and all(s["decision"] == "promote" and s["labelled"]["challenger"] > 0 for s in steps)
    monitor = [r for r in records if r["event"] == "monitor" and r["seq"] > by_hand[0]["seq"]]
    assert monitor and monitor[0]["details"]["action"] == "rollback"
    serving = next(s for s in monitor[0]["details"]["signals"] if s["signal"] == "serving")
    assert serving["triggered"] and serving["detail"]["champion_live"] < serving["detail"]["previous_live"]

    client = registry.get_client(f"sqlite:///{state / 'mlflow' / 'mlflow.db'}")
    assert registry.aliases(client, model)["champion"] == good
    assert client.get_model_version(model, bad).tags.get("promoted_by_hand") == "demo/on-call"

    log = sqlite3.connect(state / "predictions.db")
    served = dict(log.execute("select version, count(*) from predictions where model = ? and arm = 'champion' "
                              "group by version", (model,)).fetchall())
    assert served.get(good, 0) > 0 and served.get(bad, 0) >= 200, served
    assert log.execute("select count(*) from predictions where error is not null").fetchone()[0] == 0
    assert log.execute("select count(*) from feedback").fetchone()[0] > 0
