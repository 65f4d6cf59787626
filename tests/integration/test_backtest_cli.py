"""`retrain backtest`, `retrain dry-run` and `retrain calibrate` end to end, as a user runs
them (``python -m retrain_lib.cli.backtest_cmds``), on small simulated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration]
REPO = Path(__file__).resolve().parents[2]


def _cli(*args, timeout=600):
    env = {**os.environ, "RETRAIN_CONFIG_DIR": str(REPO / "configs")}
    return subprocess.run(
        [sys.executable, "-W", "ignore::RuntimeWarning", "-m", "retrain_lib.cli.backtest_cmds", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """credit_default with LogisticRegression, 7-day windows, labels 2 days late, no latency
    gate and no Great Expectations; 26 days of 300 rows with a covariate drift from day 19."""
    from retrain_lib.core.config import load_model_config
    from retrain_lib.tools.simulate import simulate

    tmp = tmp_path_factory.mktemp("backtest_cli")
    raw = yaml.safe_load((REPO / "configs/models/credit_default.yaml").read_text())
    raw["training"] = {
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"max_iter": 300},
        "seed": 1,
        "split": {"method": "time", "holdout_fraction": 0.25},
    }
    raw["gates"] = [{"metric": "roc_auc", "max_regression": 0.01}]
    raw["windows"]["training_days"] = 7
    raw["data"]["label_delay_days"] = 2
    raw.pop("validation", None)
    path = tmp / "credit_default.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    strict = dict(raw, drift={**raw["drift"], "threshold": 0.05})
    alt = tmp / "strict" / "credit_default.yaml"  # a config file is named after its model
    alt.parent.mkdir()
    alt.write_text(yaml.safe_dump(strict, sort_keys=False))
    simulate(
        load_model_config(path), tmp / "data", days=26, rows_per_day=300, drift_day=19, drift_kind="covariate", seed=4
    )
    return tmp, path, alt


def test_backtest_prints_one_json_summary_and_writes_the_plot(small):
    tmp, path, alt = small
    png = tmp / "out" / "backtest.png"
    res = _cli(
        "backtest",
        str(path),
        "--data",
        str(tmp / "data"),
        "--from",
        "2026-01-16",
        "--policies",
        "config,never,oracle",
        "--policy",
        str(alt),
        "--drift-day",
        "2026-01-19",
        "--format",
        "json",
        "--plot",
        str(png),
        "--workers",
        "2",
    )
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)  # exactly one JSON object on stdout
    assert summary["model"] == "credit_default"
    assert (summary["from"], summary["to"], summary["days"]) == ("2026-01-16", "2026-01-26", 11)
    assert set(summary["policies"]) == {"config", "never", "oracle", "strict/credit_default"}
    oracle = summary["policies"]["oracle"]
    assert oracle["retrains"] == 10 and oracle["metric_lost_vs_oracle"] == 0
    assert summary["policies"]["never"]["retrains"] == 0
    for pol in summary["policies"].values():
        assert set(pol) >= {
            "retrains",
            "retrain_days",
            "compute_s",
            "metric_mean",
            "metric_lost_vs_oracle",
            "detection",
            "false_alarms",
        }
        assert pol["detection"][0]["drift"] == "2026-01-19"
    assert summary["plot"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "replaying 11 day(s)" in res.stderr  # progress on stderr


def test_dry_run_and_calibrate(small):
    tmp, path, alt = small
    res = _cli(
        "dry-run",
        str(alt),
        "--against",
        str(path),
        "--days",
        "6",
        "--data",
        str(tmp / "data"),
        "--format",
        "json",
        "--workers",
        "1",
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert (out["from"], out["to"]) == ("2026-01-21", "2026-01-26")
    assert set(out) >= {"edited", "current", "differences", "same"}

    res = _cli(
        "calibrate",
        str(path),
        "--stable-from",
        "2026-01-01",
        "--stable-to",
        "2026-01-17",
        "--data",
        str(tmp / "data"),
        "--false-alarm-rate",
        "0.05",
    )
    assert res.returncode == 0, res.stderr
    patch = yaml.safe_load(res.stdout)
    assert set(patch) == {"drift", "performance"}
    assert patch["performance"]["warn_drop"] == pytest.approx(0.1)
    assert all(f["threshold"] > 0 for f in patch["drift"]["features"].values())


@pytest.mark.parametrize(
    "args, says",
    [
        (["backtest", "missing.yaml", "--data", "."], "missing.yaml"),
        (["backtest", "{cfg}", "--data", "{tmp}/nowhere"], "--data"),
        (["backtest", "{cfg}", "--data", "{tmp}/data", "--from", "2026-13-01"], "--from"),
        (["backtest", "{cfg}", "--data", "{tmp}/data", "--from", "2026-01-20", "--to", "2026-01-10"], "--from"),
        (["backtest", "{cfg}", "--data", "{tmp}/data", "--policies", "config,sometimes"], "sometimes"),
        (
            ["calibrate", "{cfg}", "--data", "{tmp}/data", "--stable-from", "2026-01-01", "--stable-to", "2026-01-03"],
            "stable window",
        ),
        (["dry-run", "{cfg}", "--against", "{cfg}", "--days", "40", "--data", "{tmp}/data"], "--days"),
    ],
)
def test_bad_input_exits_2_and_names_the_problem(small, args, says):
    tmp, path, _ = small
    res = _cli(*[a.format(cfg=path, tmp=tmp) for a in args], timeout=120)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert says in res.stderr
