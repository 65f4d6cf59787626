"""The shipped configs' adaptation policy on generated streams, through ``retrain backtest``'s
replay (the monitor's facts, ``decide``, the retrain path with its candidates, gates and gain
test, as the DAGs run them; see ``retrain_lib/tools/backtest.py``): a stable stream at 100 rows a day
retrains nothing after the first model, and a covariate shift is flagged the day it starts and
retrains at most once (not every day it persists). The concept change and its recovery run
through real ``dag.test()`` runs in tests/e2e/test_demo.py; all scenarios and sizes are in
``benchmarks/adaptation_bench.py``."""

from __future__ import annotations

import datetime as dt

import pytest
from platforms import REPO

from retrain_lib.tools.backtest import backtest
from retrain_lib.tools.backtest_policies import default_policies
from retrain_lib.tools.scenarios import shipped_config, write_scenario

pytestmark = pytest.mark.timeout(900)
DAYS, CHANGE, DELAY, TRAINING_DAYS = 40, 22, 3, 14


def _replay(tmp_path, scenario: str, rows: int, days: int = DAYS, change: int = CHANGE):
    data = write_scenario(
        scenario,
        "classification",
        tmp_path / "data",
        rows_per_day=rows,
        base=shipped_config("classification", REPO / "configs"),
        days=days,
        change=change,
        label_delay_days=DELAY,
        training_days=TRAINING_DAYS,
    )
    summary = backtest(
        data.config,
        tmp_path / "data",
        policies=default_policies(data.config, ["config"]),
        drift_days=list(data.change_dates),
        reveal_drifts=False,
        cache_dir=tmp_path / "cache",
        workers=1,
    )
    return data, summary["policies"]["config"], summary["decisions"]["config"]


def test_a_stable_stream_at_100_rows_a_day_is_never_retrained(tmp_path):
    _, policy, decisions = _replay(tmp_path, "stable", 100, days=60)
    first = policy["first_model"]
    assert first is not None
    after = [d for d in decisions if d["day"] > first]
    assert len(after) >= 20, (first, len(after))  # three weeks of daily checks at least
    requests = [d for d in after if d["action"] != "healthy" or d.get("throttled")]
    assert not requests, requests
    assert not [d for d in policy["retrain_days"] if d > first], policy["retrain_days"]


def test_a_covariate_shift_is_flagged_at_once_and_retrained_at_most_once(tmp_path):
    data, policy, decisions = _replay(tmp_path, "covariate", 300)
    shift = data.change_dates[0].isoformat()
    since = [d for d in decisions if d["day"] >= shift]
    flagged = [d["day"] for d in since if any("drift" in r for r in d.get("reasons") or [])]
    assert flagged and dt.date.fromisoformat(flagged[0]) - data.change_dates[0] <= dt.timedelta(days=1), since[:3]
    retrains = [d for d in since if "retrain" in d]
    assert len(retrains) <= 1, [(d["day"], d["reasons"]) for d in retrains]
    # the shift stays in the data every day after it: recorded once, then compared with a
    # reference of shifted days only (not the drifted window, which held pre-shift days that the
    # next checks' windows lose one by one), so it is not re-reported as new drift
    assert len(flagged) == 1, flagged
    assert len(since) >= 14, len(since)


def test_a_gradual_concept_change_at_100_rows_a_day_is_detected_and_a_better_model_deployed(tmp_path):
    # at 100 rows a day each day's loss against the last 14 days stays within noise while the
    # concept turns over ten days; against the level the champion established it does not
    data, policy, decisions = _replay(tmp_path, "gradual_concept", 100, days=70, change=40)
    first = data.change_dates[0].isoformat()
    requests = [d for d in decisions if d["day"] >= first and d["action"] == "retrain"]
    assert requests, [(d["day"], d["action"]) for d in decisions if d["day"] >= first]
    assert "performance" in requests[0]["reasons"][0], requests[0]["reasons"]
    deployed = [
        d["day"] for d in decisions if d["day"] >= first and (d.get("retrain") or {}).get("outcome") == "deployed"
    ]
    assert deployed, [(d["day"], d.get("retrain")) for d in requests]
