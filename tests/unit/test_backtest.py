"""The policy backtester (retrain_lib.tools.backtest): no leakage, the comparison of policies,
dry-run and calibrate, on small simulated data with a cheap estimator."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retrain_lib.core.config import load_model_config
from retrain_lib.tools import backtest as bt
from retrain_lib.tools.artifact_store import ArtifactStore
from retrain_lib.tools.backtest_policies import Policy, default_policies, floor_fires
from retrain_lib.tools.backtest_scoring import Scorer
from retrain_lib.tools.dry_run import dry_run
from retrain_lib.tools.replay_context import ReplayContext, ReplaySettings
from retrain_lib.tools.replay_pool import run_policies
from retrain_lib.tools.simulate import simulate
from retrain_lib.tools.threshold_calibration import apply_patch, calibrate, patch_yaml, stable_checks

PROJECT_ROOT = Path(__file__).resolve().parents[2]
START = dt.date(2026, 1, 1)
ROWS = 300


def small_config(tmp: Path, *, label_delay: int = 2, training_days: int = 7, **drift) -> Path:
    """credit_default with a cheap estimator, short windows, no latency gate (wall-clock
    timing would make two identical replays differ) and without Great Expectations (slow to
    import; validate_training_data still runs)."""
    raw = yaml.safe_load((PROJECT_ROOT / "configs/models/credit_default.yaml").read_text())
    raw["training"] = {
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 300},
        "seed": 1,
        "split": {"method": "time", "holdout_fraction": 0.25},
    }
    raw["gates"] = [{"metric": "roc_auc", "max_regression": 0.01}, {"type": "leakage", "max_score": 0.98}]
    raw["windows"]["training_days"] = training_days
    raw["data"]["label_delay_days"] = label_delay
    raw.pop("validation", None)
    # The replay's mechanics are checked on the fixed-threshold policy (drift retrains, a fixed
    # max_drop, a weekly floor); the adaptation policy has its own tests (test_adaptation*.py).
    raw.pop("adaptation", None)
    raw["schedule"].update(retrain_floor="0 3 * * 0", min_retrain_interval_days=2)
    raw["performance"] = {"metric": "roc_auc", "max_drop": 0.05, "min_labels": 300}
    raw["drift"].update(threshold=0.2, features={"income": {"method": "ks", "threshold": 0.001}})
    raw["drift"].update(drift)
    path = tmp / "configs" / "credit_default.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def covariate(tmp_path_factory):
    """30 days, a covariate drift from day 20."""
    tmp = tmp_path_factory.mktemp("covariate")
    cfg = load_model_config(small_config(tmp))
    simulate(cfg, tmp / "data", days=30, rows_per_day=ROWS, drift_day=20, drift_kind="covariate", seed=5)
    return cfg, tmp / "data"


@pytest.fixture(scope="module")
def concept(tmp_path_factory):
    """30 days, a concept drift from day 19, a Monday (only the labels reveal it)."""
    tmp = tmp_path_factory.mktemp("concept")
    cfg = load_model_config(small_config(tmp))
    simulate(cfg, tmp / "data", days=30, rows_per_day=ROWS, drift_day=19, drift_kind="concept", seed=3)
    return cfg, tmp / "data"


def replay(cfg, data: Path, days: list[dt.date], cache: Path) -> list[dict]:
    """What the config policy decided each day: the monitor's action, reasons and signals,
    the retrains (trigger, outcome, failed gates, candidate and champion metrics), the models
    served; without the timing of the fits (wall clock, and whether the model came from the
    cache), which is no decision."""
    runs = run_policies(default_policies(cfg, ["config"]), ReplaySettings(data), days, cache_dir=cache)
    return without_timing(runs["config"].days)


def without_timing(days: list[dict]) -> list[dict]:
    out = []
    for record in days:
        record = dict(record)
        for k in ("retrain", "scheduled"):
            if k in record:
                record[k] = {x: v for x, v in record[k].items() if x not in ("fit_s", "cached")}
        out.append(record)
    return out


# -----------------------------------------------------------------------------------------
# (a) no label or future leakage
# -----------------------------------------------------------------------------------------


def _copy_data(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _corrupt_labels_after(cfg, data: Path, last_clean_event_day: dt.date) -> int:
    """Flip every label of the events after ``last_clean_event_day`` (in whatever label
    partition they arrive). Returns how many labels changed."""
    changed = 0
    label_dir = data / cfg.data.labels_path
    for path in sorted(label_dir.glob("*.parquet")):
        frame = pd.read_parquet(path)
        event_day = pd.to_datetime(frame[cfg.data.id_column].str[:8], format="%Y%m%d").dt.date
        late = (event_day > last_clean_event_day).to_numpy()
        if late.any():
            frame.loc[late, cfg.features.target] = 1 - frame.loc[late, cfg.features.target]
            frame.to_parquet(path, index=False)
            changed += int(late.sum())
    return changed


def _corrupt_features_after(cfg, data: Path, last_clean_day: dt.date) -> int:
    """Scramble the feature partitions of the days after ``last_clean_day``."""
    rng = np.random.default_rng(0)
    changed = 0
    for path in sorted((data / cfg.data.path).glob("*.parquet")):
        if dt.date.fromisoformat(path.stem) <= last_clean_day:
            continue
        frame = pd.read_parquet(path)
        for col in cfg.features.numeric:
            frame[col] = frame[col] * 3 + 1
        for col in cfg.features.categorical:
            frame[col] = rng.permutation(frame[col].to_numpy())[::-1]
        frame.to_parquet(path, index=False)
        changed += 1
    return changed


def test_labels_corrupted_after_T_change_no_decision_before_T_plus_label_delay(covariate, tmp_path):
    cfg, data = covariate
    days = [START + dt.timedelta(days=i) for i in range(9, 24)]  # decisions on days 10..24
    T = dt.date(2026, 1, 16)
    delay = cfg.data.label_delay_days
    clean = replay(cfg, data, days, tmp_path / "cache")
    dirty_data = _copy_data(data, tmp_path / "dirty")
    assert _corrupt_labels_after(cfg, dirty_data, T) > 1000
    dirty = replay(cfg, dirty_data, days, tmp_path / "cache")  # the same cache: keys must follow the data

    limit = (T + dt.timedelta(days=delay)).isoformat()
    before = [(c, d) for c, d in zip(clean, dirty, strict=True) if c["day"] <= limit]
    assert len(before) >= 8
    for c, d in before:
        assert c == d, f"decision of {c['day']} changed although only labels of events after {T} were corrupted"
    # The corruption is visible to the replay once those labels arrive: some later decision differs.
    after = [(c, d) for c, d in zip(clean, dirty, strict=True) if c["day"] > limit]
    assert any(c != d for c, d in after)


def test_features_corrupted_after_T_change_no_decision_up_to_T(covariate, tmp_path):
    cfg, data = covariate
    days = [START + dt.timedelta(days=i) for i in range(9, 20)]
    T = dt.date(2026, 1, 15)
    clean = replay(cfg, data, days, tmp_path / "cache")
    dirty_data = _copy_data(data, tmp_path / "dirty")
    assert _corrupt_features_after(cfg, dirty_data, T) > 0
    dirty = replay(cfg, dirty_data, days, tmp_path / "cache")
    for c, d in zip(clean, dirty, strict=True):
        if c["day"] <= T.isoformat():
            assert c == d, f"decision of {c['day']} changed although only partitions after {T} were corrupted"
    assert any(c != d for c, d in zip(clean, dirty, strict=True) if c["day"] > T.isoformat())


def test_the_replay_never_reaches_the_registry(covariate):
    cfg, data = covariate
    ctx = ReplayContext(cfg, ReplaySettings(data), {})
    with pytest.raises(RuntimeError, match="registry"):
        _ = ctx.client
    with pytest.raises(RuntimeError, match="MLflow"):
        ctx.mlflow()


# -----------------------------------------------------------------------------------------
# (b) the config policy against the others
# -----------------------------------------------------------------------------------------


def test_config_policy_catches_the_drift_retrains_less_than_the_oracle_and_beats_never(concept):
    cfg, data = concept
    drift_day = dt.date(2026, 1, 19)
    summary = bt.backtest(cfg, data, start=dt.date(2026, 1, 10), drift_days=[drift_day], reveal_drifts=False)
    pol = summary["policies"]
    assert set(pol) == {"config", "schedule", "drift", "never", "oracle"}
    detection = pol["config"]["detection"][0]
    # A concept drift shows in the labels only: the first drifted events' labels arrive after
    # label_delay_days, and the monitor's matured window is monitor_days long.
    expected = cfg.data.label_delay_days + cfg.windows.monitor_days
    assert detection["drift"] == drift_day.isoformat()
    assert detection["delay_days"] is not None and 0 <= detection["delay_days"] <= expected, detection
    assert "performance" in detection["trigger"]
    assert pol["config"]["retrains"] < pol["oracle"]["retrains"]
    assert pol["never"]["retrains"] == 0
    assert pol["config"]["metric_mean"] > pol["never"]["metric_mean"]
    assert pol["oracle"]["metric_lost_vs_oracle"] == 0
    # The prequential metric is the served model's metric on each day's events.
    days = [d for d, v in pol["config"]["metric_by_day"].items() if v is not None]
    assert len(days) == summary["days"] - 1  # no model serves the first day: it trains the first one
    # Every retrain day is a day the config policy decided to retrain (monitor or schedule).
    acted = {d["day"] for d in summary["decisions"]["config"] if "retrain" in d or "scheduled" in d}
    assert set(pol["config"]["retrain_days"]) <= acted


def test_prequential_metric_is_the_served_models_metric(covariate, tmp_path):
    """Recompute one day's value independently with scikit-learn."""
    from sklearn.metrics import roc_auc_score

    from retrain_lib.learn.training_data import xy
    from retrain_lib.store.data import load_window

    cfg, data = covariate
    settings = ReplaySettings(data)
    days = [START + dt.timedelta(days=i) for i in range(9, 14)]
    runs = run_policies(default_policies(cfg, ["never"]), settings, days, cache_dir=tmp_path)
    store = ArtifactStore(tmp_path)
    scorer = Scorer(cfg, settings, store, days[0], days[-1])
    day = days[-1].isoformat()
    key = runs["never"].serving[day]
    frame = load_window(cfg, data, days[-1], days[-1], as_of=dt.date(2100, 1, 1)).labelled
    X, y = xy(cfg, frame)
    expected = roc_auc_score(y, store.get(key).pipeline.predict_proba(X)[:, 1])
    assert scorer.value(key, [day]) == pytest.approx(expected)


def test_floor_schedule_fires_on_the_cron_days():
    assert floor_fires("0 3 * * 0", dt.date(2026, 1, 4))  # a Sunday
    assert not floor_fires("0 3 * * 0", dt.date(2026, 1, 5))
    assert floor_fires("@daily", dt.date(2026, 1, 5))
    assert not floor_fires(None, dt.date(2026, 1, 5))
    assert not floor_fires("@once", dt.date(2026, 1, 5))


# -----------------------------------------------------------------------------------------
# (c) dry-run
# -----------------------------------------------------------------------------------------


def test_dry_run_reports_the_days_two_configs_act_differently(covariate, tmp_path):
    cfg, data = covariate
    same = dry_run(cfg, cfg, data, days=8, end=dt.date(2026, 1, 26), cache_dir=tmp_path / "c1")
    assert same["same"] and same["differences"] == []
    blind = load_model_config(small_config(tmp_path, enabled=False))  # drift checks off
    out = dry_run(blind, cfg, data, days=8, end=dt.date(2026, 1, 26), cache_dir=tmp_path / "c2")
    assert out["from"] == "2026-01-19" and out["to"] == "2026-01-26"
    drift_requests = [d for d in out["differences"] if any(r.startswith("data drift") for r in d["current_reasons"])]
    assert drift_requests, out
    assert not any(r.startswith("data drift") for d in out["differences"] for r in d["edited_reasons"])
    assert len(out["current"]["monitor_retrain_requests"]) > len(out["edited"]["monitor_retrain_requests"])


# -----------------------------------------------------------------------------------------
# (d) calibrate
# -----------------------------------------------------------------------------------------


def test_calibrate_patch_parses_and_keeps_the_false_alarm_rate_on_the_stable_window(covariate):
    from retrain_lib.stats.drift import drift_for_config

    cfg, data = covariate
    far = 0.05
    stable = (dt.date(2026, 1, 1), dt.date(2026, 1, 19))
    out = calibrate(cfg, data, stable_from=stable[0], stable_to=stable[1], false_alarm_rate=far)
    text = patch_yaml(out)
    patch = yaml.safe_load(text)
    assert set(patch["drift"]["features"]) == set(cfg.features.all)
    assert patch["performance"]["warn_drop"] == pytest.approx(0.10)
    assert patch["performance"]["critical_drop"] == pytest.approx(0.20)
    patched = apply_patch(cfg, patch)
    checks = list(stable_checks(patched, ReplaySettings(data), *stable))
    assert len(checks) == out["checks"] >= 5
    alarms = [drift_for_config(patched, ref, cur).dataset_drift for _, ref, cur in checks]
    assert sum(alarms) / len(alarms) <= far
    # and the patched thresholds still see the drift after the stable window
    after = list(stable_checks(patched, ReplaySettings(data), dt.date(2026, 1, 13), dt.date(2026, 1, 23)))
    assert any(drift_for_config(patched, ref, cur).dataset_drift for _, ref, cur in after)


def test_identical_policies_decide_identically_even_with_a_latency_gate(covariate, tmp_path):
    """The latency gate is wall-clock: it is measured once per trained model, so two policies
    with the same config take the same decisions (a busy machine cannot split them)."""
    cfg, data = covariate
    timed = cfg.model_copy(
        update={"gates": [*cfg.gates, type(cfg.gates[0]).model_validate({"type": "latency", "max_ms": 1000})]}
    )
    days = [START + dt.timedelta(days=i) for i in range(9, 16)]
    policies = [Policy(name, timed, floor=timed.schedule.retrain_floor) for name in ("a", "b")]
    runs = run_policies(policies, ReplaySettings(data), days, cache_dir=tmp_path)
    assert without_timing(runs["a"].days) == without_timing(runs["b"].days)
    art = ArtifactStore(tmp_path).get(runs["a"].days[-1]["champion"])
    assert art.latency_ms is not None and art.latency_ms["p95"] > 0
