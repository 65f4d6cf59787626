"""Human approval of a promotion through Airflow's ``ApprovalOperator``, in real ``dag.test()``
runs against a real MLflow store.

``dag.test()`` never answers a human-in-the-loop task itself: a helper thread answers it the
way the REST endpoint does (``update_hitl_detail``, the function behind
``PATCH /api/v2/hitlDetails/...``), or lets its deadline pass and runs the scheduler's own
timeout sweep. The approver and the answer must reach the ledger and the version's tags; a
rejection or a timeout must leave the champion where it was.
"""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from airflow_runs import task_states
from platforms import pin_fixed_policy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
DAG_ID = f"{MODEL}__retrain"


@pytest.fixture(scope="module")
def platform(airflow_db, tmp_path_factory):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run in session.query(DagRun).all():
            session.delete(run)

    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.simulate import simulate

    root = tmp_path_factory.mktemp("approval")
    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    pin_fixed_policy(cfg_dir)  # these tests check the lifecycle's mechanics on the fixed policy
    (cfg_dir / "models" / "daily_demand.yaml").unlink()
    raw = yaml.safe_load((cfg_dir / "models" / f"{MODEL}.yaml").read_text())
    raw["approval"] = {"required_when": ["always"], "timeout_hours": 2, "approvers": []}
    raw["gates"] = [{"metric": "roc_auc", "min": 0.5}]  # every candidate reaches the approval step
    (cfg_dir / "models" / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        mp.setenv("RETRAIN_CONFIG_DIR", str(cfg_dir))
        mp.setenv("RETRAIN_STRICT", "1")
        settings = load_settings(cfg_dir)
        cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
        simulate(cfg, settings.data_root, days=40, drift_day=None, drift_kind="none", rows_per_day=400, seed=11)
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        yield SimpleNamespace(bag=bag, settings=settings)


def _awaiting(run_id_prefix: str):
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter(
                TaskInstance.dag_id == DAG_ID,
                TaskInstance.task_id == "approve_promotion",
                TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
            )
            .one_or_none()
        )
        return None if ti is None else (ti.run_id, ti.id)


def _answer(run_id: str, option: str, user: str) -> None:
    """What ``PATCH /api/v2/dags/{dag}/dagRuns/{run}/taskInstances/{task}/-1/hitlDetails`` does."""
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.utils.session import create_session

    with create_session() as session:
        update_hitl_detail(
            dag_id=DAG_ID,
            dag_run_id=run_id,
            task_id="approve_promotion",
            update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option]),
            user=SimpleAuthManagerUser(username=user, role="admin"),
            session=session,
        )


def _let_deadline_pass(ti_id) -> None:
    """Move the response deadline into the past and run the scheduler's timeout sweep."""
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.get(TaskInstance, ti_id)
        assert ti.trigger_timeout is not None, "the approval has no response deadline"
        ti.trigger_timeout = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    with create_session() as session:
        SchedulerJobRunner.check_awaiting_input_timeouts(
            SimpleNamespace(log=__import__("logging").getLogger("t")), session=session
        )


def _run_with_responder(platform, as_of: str, respond) -> tuple:
    """Run the retrain DAG; when it waits for the approval, ``respond(run_id, ti_id)``."""
    seen: dict = {}

    def responder():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            found = _awaiting("")
            if found:
                seen["run_id"] = found[0]
                respond(*found)
                return
            time.sleep(0.5)
        seen["error"] = "the approval task never waited for input"

    thread = threading.Thread(target=responder, daemon=True)
    thread.start()
    dag = platform.bag.dags[DAG_ID]
    run = dag.test(
        logical_date=dt.datetime.fromisoformat(as_of).replace(tzinfo=dt.UTC),
        run_conf={"as_of": as_of, "reason": "approval test"},
    )
    thread.join(timeout=30)
    assert "error" not in seen, seen
    return run, task_states(DAG_ID, run.run_id)


def _ledger(platform):
    from retrain_lib.store.audit import Ledger

    return Ledger.from_settings(platform.settings)


def _version_tags(platform, version: str) -> dict:
    from retrain_lib.store import registry

    return dict(registry.get_client(platform.settings.tracking_uri).get_model_version(MODEL, version).tags)


def _aliases(platform) -> dict:
    from retrain_lib.store import registry

    return registry.aliases(registry.get_client(platform.settings.tracking_uri), MODEL)


def test_an_approved_candidate_is_promoted_and_the_approver_is_recorded(platform):
    run, states = _run_with_responder(platform, "2026-01-30", lambda run_id, _ti: _answer(run_id, "Approve", "alice"))
    assert states["approve_promotion"] == "success", states
    assert states["deploy_candidate"] == "success", states
    champion = _aliases(platform).get("champion")
    assert champion is not None
    records = _ledger(platform).records(MODEL)
    approval = [r for r in records if r["event"] == "approval"][-1]
    assert approval["details"]["answer"] == "Approve" and approval["details"]["by"] == "alice"
    promote = [r for r in records if r["event"] == "promote"][-1]
    assert promote["seq"] > approval["seq"]
    assert promote["details"]["approval"]["by"] == "alice"
    from retrain_lib.store import registry

    tags = registry.get_client(platform.settings.tracking_uri).get_model_version(MODEL, champion).tags
    assert tags["approval.answer"] == "Approve" and tags["approval.by"] == "alice"
    assert tags["compliance.status"] == "approved"  # pending approval until alice answered
    assert _ledger(platform).verify() == []


def test_a_rejected_candidate_leaves_the_champion_and_is_recorded(platform):
    before = _aliases(platform)
    assert before.get("champion")
    run, states = _run_with_responder(platform, "2026-02-05", lambda run_id, _ti: _answer(run_id, "Reject", "bob"))
    assert states["approve_promotion"] == "success", states
    assert states["deploy_candidate"] == "skipped", states
    assert states["close_review"] == "success", states
    assert _aliases(platform) == before
    records = _ledger(platform).records(MODEL)
    rejection = [r for r in records if r["event"] == "reject"][-1]
    assert rejection["details"]["reason"] == "rejected by bob"
    answer = [r for r in records if r["event"] == "approval"][-1]
    assert answer["details"]["answer"] == "Reject" and answer["details"]["by"] == "bob"
    assert _version_tags(platform, answer["details"]["version"])["compliance.status"] == "rejected"


def test_no_answer_in_time_counts_as_a_rejection(platform):
    before = _aliases(platform)
    run, states = _run_with_responder(platform, "2026-02-08", lambda _run_id, ti_id: _let_deadline_pass(ti_id))
    assert states["deploy_candidate"] == "skipped", states
    assert states["close_review"] == "success", states
    assert _aliases(platform) == before
    records = _ledger(platform).records(MODEL)
    timeout = [r for r in records if r["event"] == "approval_timeout"][-1]
    assert timeout["details"]["timed_out"] is True and timeout["details"]["answer"] == "Reject"
    assert _version_tags(platform, timeout["details"]["version"])["compliance.status"] == "approval timed out"
    assert [r for r in records if r["event"] == "reject"][-1]["details"][
        "reason"
    ] == "no answer to the approval request in time"
    assert _ledger(platform).verify() == []
