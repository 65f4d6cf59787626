"""Persistence of drift alarms reads the raw drift of earlier checks from the ledger."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from retrain_lib.core.settings import load_settings
from retrain_lib.pipeline.monitor_facts import drift_history
from retrain_lib.stats.calibration import persistent_alarm
from retrain_lib.store.audit import record_decision
from retrain_lib.store.model_context import ModelContext

REPO = Path(__file__).resolve().parents[2]


def test_history_is_raw_drift_of_earlier_days_oldest_first(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    ctx = ModelContext("credit_default", load_settings(cfg_dir))
    ledger = ctx.settings.ledger_path
    share = ctx.cfg.drift.drift_share
    record_decision(
        ledger,
        model="credit_default",
        event="monitor",
        as_of="2026-02-02",
        details={"dataset_drift_raw": True, "drifted_share": 0.0},
    )
    record_decision(
        ledger, model="credit_default", event="monitor", as_of="2026-02-01", details={"drifted_share": share}
    )  # an older record: raw value rebuilt from the share
    record_decision(
        ledger, model="daily_demand", event="monitor", as_of="2026-02-01", details={"dataset_drift_raw": True}
    )  # another model
    record_decision(ledger, model="credit_default", event="promote", as_of="2026-02-02", details={})
    record_decision(
        ledger, model="credit_default", event="monitor", as_of="2026-02-03", details={"dataset_drift_raw": False}
    )  # the day being checked: not history
    history = drift_history(ctx, dt.date(2026, 2, 3))
    assert history == [True, True]
    assert persistent_alarm(history, False, k=2, n=3) is True
    assert persistent_alarm(history[:1], False, k=2, n=3) is False
