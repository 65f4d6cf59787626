"""DagBag integrity: the factory turns every valid model config into its DAGs, skips a bad
one without hiding the others, fails in strict mode, and keeps parsing light."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MODELS = ["credit_default", "daily_demand"]
HEAVY = ["mlflow", "evidently", "great_expectations", "sklearn", "pandas", "numpy", "scipy", "dvc", "boto3"]


def _bag(monkeypatch, config_dir: Path | None = None, strict: bool = False):
    from airflow.dag_processing.dagbag import DagBag

    if config_dir is not None:
        monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("RETRAIN_STRICT", "1" if strict else "0")
    return DagBag(dag_folder=str(REPO / "dags"))


@pytest.fixture
def config_copy(tmp_path) -> Path:
    dst = tmp_path / "configs"
    shutil.copytree(REPO / "configs", dst)
    return dst


def test_every_model_gets_its_dags(monkeypatch):
    bag = _bag(monkeypatch, strict=True)
    assert bag.import_errors == {}
    # both shipped models have rollback, so their guard is on
    kinds = ("monitor", "retrain", "rollout", "guard", "health_report")
    expected = {f"{m}__{kind}" for m in MODELS for kind in kinds}
    assert set(bag.dag_ids) == expected


def test_dag_shape_follows_the_config(monkeypatch):
    bag = _bag(monkeypatch, strict=True)
    for model in MODELS:
        cfg = yaml.safe_load((REPO / "configs" / "models" / f"{model}.yaml").read_text())
        monitor = bag.dags[f"{model}__monitor"]
        retrain = bag.dags[f"{model}__retrain"]
        for dag in (monitor, retrain):
            assert {"retrain", model} <= set(dag.tags)
            assert dag.catchup is False
            assert dag.max_active_runs == 1
            assert dag.start_date.tzinfo is not None
        from airflow.sdk import AssetOrTimeSchedule

        assert isinstance(monitor.timetable, AssetOrTimeSchedule)  # cron OR new data
        presets = {"@daily": "0 0 * * *", "@weekly": "0 0 * * 0", "@hourly": "0 * * * *"}
        cron = cfg["schedule"]["monitor"]
        assert monitor.timetable.timetable.expression == presets.get(cron, cron)
        assert [a.name for a in monitor.timetable.asset_condition.objects] == [f"{model}.new_data"]
        assert retrain.schedule == cfg["schedule"]["retrain_floor"]
        assert set(monitor.task_ids) == {
            "check_model",
            "decide_action",
            "request_retrain",
            "healthy",
            "rollback_champion",
            "guard_needed",
            "guard_champion",
        }
        assert set(retrain.task_ids) == {
            "snapshot_data",
            "train_candidate",
            "evaluate_candidate",
            "check_gates",
            "decide_promotion",
            "register_candidate",
            "deploy_candidate",
            "reject_candidate",
            "rollout_needed",
            "start_rollout",
            "retrain_rejected",
            "retrain_no_gain",
            "guard_needed",
            "guard_champion",
        }
        # how a run without a new champion ended shows as a leaf of its own
        for leaf in ("retrain_rejected", "retrain_no_gain"):
            assert retrain.get_task(leaf).upstream_task_ids == {"reject_candidate"}
            assert not retrain.get_task(leaf).downstream_task_ids
        # direct by default; a run may still ask for a rollout (param deploy_mode)
        assert retrain.params["deploy_mode"] == cfg.get("deploy", {}).get("mode", "direct")
        assert retrain.get_task("start_rollout").upstream_task_ids == {"rollout_needed"}
        assert monitor.get_task("request_retrain").trigger_dag_id == f"{model}__retrain"
        assert set(monitor.get_task("decide_action").downstream_task_ids) == {
            "request_retrain",
            "healthy",
            "rollback_champion",
        }
        assert set(retrain.get_task("decide_promotion").downstream_task_ids) == {
            "register_candidate",
            "reject_candidate",
        }
        # every promotion path starts the guard: direct deploy, rollout promotion, rollback
        guard = bag.dags[f"{model}__guard"]
        assert guard.schedule is None and guard.max_active_runs == 1
        assert set(guard.task_ids) == {
            "start_guard",
            "watch_champion",
            "finish_guard",
            "guard_needed",
            "guard_champion",
        }
        assert type(guard.get_task("watch_champion")).__name__ == "GuardSensor"
        rollout = bag.dags[f"{model}__rollout"]
        for dag, after in (
            (retrain, "deploy_candidate"),
            (rollout, "promote_challenger"),
            (monitor, "rollback_champion"),
            (guard, "finish_guard"),
        ):
            assert dag.get_task("guard_needed").upstream_task_ids == {after}, dag.dag_id
            assert dag.get_task("guard_champion").trigger_dag_id == f"{model}__guard"


def test_the_health_report_dag_runs_monthly_for_the_month_before(monkeypatch):
    import datetime as dt
    from types import SimpleNamespace

    from retrain_airflow.report_dag import report_month

    bag = _bag(monkeypatch, strict=True)
    for model in MODELS:
        dag = bag.dags[f"{model}__health_report"]
        assert {"retrain", model, "health_report"} <= set(dag.tags)
        assert dag.catchup is False and dag.max_active_runs == 1 and dag.start_date.tzinfo is not None
        assert dag.timetable.expression == "0 7 1 * *"  # the 1st of every month, 07:00 UTC
        assert set(dag.task_ids) == {"publish_report"}
        assert dag.params["month"] is None
    first = dt.datetime(2026, 3, 1, 7, tzinfo=dt.UTC)
    assert report_month({"logical_date": first, "params": {}}) == "2026-02"
    assert report_month({"logical_date": dt.datetime(2026, 1, 1, 7, tzinfo=dt.UTC)}) == "2025-12"
    # a run without a logical date (triggered by hand) reports the month before its run_after
    manual = {"logical_date": None, "dag_run": SimpleNamespace(run_after=dt.datetime(2026, 5, 17, tzinfo=dt.UTC))}
    assert report_month(manual) == "2026-04"
    assert report_month({**manual, "params": {"month": "2025-11"}}) == "2025-11"


def test_the_outcome_leaves_name_a_rejection_or_a_missing_gain(monkeypatch):
    """``reject_candidate``'s result decides which leaf runs; the one that runs returns the note."""
    from airflow.sdk.exceptions import AirflowSkipException

    retrain = _bag(monkeypatch, strict=True).dags["credit_default__retrain"]
    rejected = retrain.get_task("retrain_rejected").python_callable
    no_gain = retrain.get_task("retrain_no_gain").python_callable
    gates = {
        "rejected": True,
        "outcome": "rejected",
        "run_id": "r",
        "failed": [
            "roc_auc 0.712 < max_regression bound 0.724",
            "latency p95 31 ms > max 20 ms",
            "ece 0.09 > max 0.05",
        ],
    }
    assert rejected(gates) == (
        "rejected: roc_auc 0.712 < max_regression bound 0.724; latency p95 31 ms > max 20 ms (+1 more)"
    )
    assert rejected({"rejected": True, "failed": ["r2 0.41 < min 0.999"]}) == "rejected: r2 0.41 < min 0.999"
    flat = {
        "rejected": True,
        "outcome": "no_gain",
        "failed": [],
        "run_id": "r",
        "reason": "roc_auc +0.0004 over the champion, below min_gain 0.002",
    }
    assert no_gain(flat) == "no gain: roc_auc +0.0004 over the champion, below min_gain 0.002"
    with pytest.raises(AirflowSkipException, match="ended 'no_gain', not 'rejected'"):
        rejected(flat)
    with pytest.raises(AirflowSkipException, match="ended 'rejected', not 'no_gain'"):
        no_gain(gates)


def test_approval_and_canary_configs_add_their_tasks_and_the_rollout_dag(monkeypatch, config_copy):
    import datetime as dt

    path = config_copy / "models" / "credit_default.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["approval"] = {
        "required_when": ["first_deployment", "narrow_margin"],
        "timeout_hours": 6,
        "approvers": ["alice"],
    }
    raw["deploy"] = {"mode": "canary", "canary_steps": [5, 20, 100]}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    bag = _bag(monkeypatch, config_copy, strict=True)
    assert bag.import_errors == {}
    retrain = bag.dags["credit_default__retrain"]
    assert {"decide_approval", "approve_promotion", "close_review", "start_rollout"} <= set(retrain.task_ids)
    approve = retrain.get_task("approve_promotion")
    assert type(approve).__name__ == "PromotionApproval"
    assert approve.response_timeout == dt.timedelta(hours=6) and approve.defaults == ["Reject"]
    assert approve.assigned_users == [{"id": "alice", "name": "alice"}]
    assert set(retrain.get_task("decide_approval").downstream_task_ids) == {"approve_promotion", "deploy_candidate"}
    assert retrain.get_task("start_rollout").trigger_dag_id == "credit_default__rollout"
    rollout = bag.dags["credit_default__rollout"]
    # steps below 100 % are tested; reaching 100 % is the promotion itself
    assert {"canary_step_1", "watch_step_1", "judge_step_1", "canary_step_2", "watch_step_2", "judge_step_2"} <= set(
        rollout.task_ids
    ) and "canary_step_3" not in rollout.task_ids
    assert rollout.get_task("watch_step_1").__class__.__name__ == "CanarySensor"
    assert set(rollout.get_task("judge_step_2").downstream_task_ids) == {
        "canary_passed",
        "rollback_after_step_2",
        "withdraw_challenger",
    }
    assert set(rollout.get_task("judge_shadow").downstream_task_ids) == {
        "canary_step_1",
        "shadow_passed",
        "rollback_after_shadow",
        "withdraw_challenger",
    }
    # any failed task of the rollout withdraws its challenger (the guard's trigger tasks aside)
    withdraw = rollout.get_task("withdraw_challenger")
    assert str(withdraw.trigger_rule) in ("one_failed", "TriggerRule.ONE_FAILED")
    assert set(withdraw.upstream_task_ids) == {
        t for t in rollout.task_ids if t != "withdraw_challenger" and not t.startswith("guard_")
    }
    assert set(rollout.get_task("promote_challenger").upstream_task_ids) == {"shadow_passed", "canary_passed"}
    assert set(rollout.get_task("rollback_challenger").upstream_task_ids) == {
        "rollback_after_shadow",
        "rollback_after_step_1",
        "rollback_after_step_2",
    }
    assert rollout.params["mode"] == "canary" and rollout.params["min_predictions"] == 200
    # a direct model's rollout DAG serves rollouts asked for by hand, in canary mode by default
    direct = _bag(monkeypatch, REPO / "configs", strict=True).dags["credit_default__rollout"]
    assert direct.params["mode"] == "canary" and "canary_step_1" in direct.task_ids


def test_bad_config_is_skipped_and_the_others_still_load(monkeypatch, config_copy, caplog):
    broken = (config_copy / "models" / "credit_default.yaml").read_text().replace("  bins: 10", "  binz: 10")
    (config_copy / "models" / "credit_default.yaml").write_text(broken)
    (config_copy / "models" / "garbage.yaml").write_text("name: [unclosed\n")
    bag = _bag(monkeypatch, config_copy, strict=False)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        "daily_demand__monitor",
        "daily_demand__retrain",
        "daily_demand__rollout",
        "daily_demand__guard",
        "daily_demand__health_report",
    }
    logged = caplog.text
    assert "credit_default.yaml" in logged and "drift.binz" in logged and "did you mean 'bins'" in logged
    assert "garbage.yaml" in logged


def test_strict_mode_turns_a_bad_config_into_an_import_error(monkeypatch, config_copy):
    text = (config_copy / "models" / "daily_demand.yaml").read_text().replace("task: regression", "task: regresion")
    (config_copy / "models" / "daily_demand.yaml").write_text(text)
    bag = _bag(monkeypatch, config_copy, strict=True)
    assert len(bag.import_errors) == 1
    message = next(iter(bag.import_errors.values()))
    assert "daily_demand.yaml" in message and "task" in message and "regression" in message


def test_a_model_whose_guard_is_off_has_no_guard_dag_and_no_guard_trigger(monkeypatch, config_copy):
    path = config_copy / "models" / "daily_demand.yaml"
    path.write_text(path.read_text() + "\nguard: {enabled: false}\n")
    bag = _bag(monkeypatch, config_copy, strict=True)
    assert bag.import_errors == {}
    assert "daily_demand__guard" not in bag.dag_ids and "credit_default__guard" in bag.dag_ids
    assert "guard_needed" not in bag.dags["daily_demand__retrain"].task_ids


def test_parses_with_no_connections_defined(monkeypatch):
    # The example configs name a Slack connection that does not exist here: parsing must not need it.
    monkeypatch.delenv("AIRFLOW_CONN_SLACK_RETRAIN", raising=False)
    bag = _bag(monkeypatch, strict=True)
    assert bag.import_errors == {} and len(bag.dag_ids) == 10


def test_parsing_imports_no_heavy_library():
    code = (
        "import json, runpy, sys\n"
        f"runpy.run_path({str(REPO / 'dags' / 'retrain_dags.py')!r})\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


@pytest.mark.parametrize("folder", ["dags", "plugins"])
def test_no_heavy_import_at_module_level(folder):
    """Module-level imports in DAG and plugin files (ruff TID253 enforces the same in lint)."""
    import ast

    for path in (REPO / folder).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in HEAVY, f"{path}: module-level import of {name}"


def test_deprecated_airflow_apis_are_errors_in_our_code():
    """The session turns Airflow's deprecation warnings into errors for project code."""
    import warnings

    from airflow.utils.deprecation_tools import DeprecatedImportWarning

    with pytest.raises(DeprecatedImportWarning):
        warnings.warn("old import", DeprecatedImportWarning, stacklevel=1)
