"""The retrain DAG of a model (``<model>__retrain``): snapshot the data, train and evaluate a
candidate, check its gates, then register and deploy it (after a human approval when the
config asks for one) or reject it; a shadow or canary deploy starts the rollout DAG.

    snapshot_data ─► train_candidate ─► evaluate_candidate ─► check_gates ─► decide_promotion
      ─┬─► register_candidate ─► [decide_approval ─► approve_promotion] ─► deploy_candidate ─┬─► rollout_needed ─► start_rollout
       │                                                                               └─► guard_needed ─► guard_champion
       └─► reject_candidate ─► retrain_rejected | retrain_no_gain
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, TriggerRule, XComArg, task

from retrain_airflow.approval_tasks import add_approval_tasks, approval_answer
from retrain_airflow.dag_base import TriggerForThisRun, as_of_param, model_dag
from retrain_airflow.guard_dag import add_guard_trigger
from retrain_airflow.lifecycle_tasks import skip_if_retired
from retrain_airflow.task_adapter import ModelTasks, run_as_of
from retrain_lib.core.config import ModelConfig

if TYPE_CHECKING:
    from retrain_lib.pipeline.records import (
        DeployOutcome,
        Evaluation,
        GateReport,
        Registered,
        Rejection,
        Snapshot,
        TrainedRun,
    )

log = logging.getLogger(__name__)


def retrain_params(cfg: ModelConfig) -> dict[str, Param]:
    """The run parameters of the retrain DAG (defaults from the config)."""
    return {
        "as_of": as_of_param("Train on the window ending this day; default: the run's logical date"),
        "reason": Param("manual", type="string", description="Why this retrain runs (kept in the ledger)"),
        "deploy_mode": Param(
            cfg.deploy.mode,
            enum=["direct", "shadow", "canary"],
            description="direct: promote; shadow/canary: make it the challenger and start the "
            "rollout DAG (deploy.mode of the config by default)",
        ),
        "require_gain": Param(
            None,
            type=["null", "boolean"],
            description="null: adaptation.require_gain of the config; false: promote a candidate "
            "that passes the gates without a proven gain (e.g. to let a canary judge "
            "it on live traffic)",
        ),
    }


def outcome_note(res: Rejection) -> str:
    """One line on how a retrain ended without a new champion, from ``reject_candidate``'s
    result: ``"rejected: <failed gate>; <failed gate> (+n more)"`` or ``"no gain: <why>"``.

    Example::

        outcome_note(Rejection(failed=("roc_auc 0.70 < min 0.75",)))
        # 'rejected: roc_auc 0.70 < min 0.75'
    """
    label = str(res.outcome or "rejected").replace("_", " ")
    why = list(res.failed) or ([res.reason] if res.reason else [])
    text = "; ".join(why[:2]) + (f" (+{len(why) - 2} more)" if len(why) > 2 else "")
    return f"{label}: {text}" if text else label


def _retrain_validation_alert(name: str, snap: Snapshot, *, links, severity):
    """The validation failure alert of a snapshot (facts read from its quarantine when built)."""
    from retrain_lib.pipeline import alerts

    return alerts.validation_failure(
        name,
        stage="retrain",
        as_of=snap.as_of,
        links=links,
        severity=severity,
        **alerts.retrain_validation_facts(snap),
    )


def run_snapshot_data(env: ModelTasks, context) -> Snapshot:
    """Task ``snapshot_data``: fix the window; unfit data alerts and fails the task for good. A
    retired model skips the run."""
    from airflow.sdk.exceptions import AirflowFailException

    from retrain_lib.pipeline.snapshot import snapshot_data as snap_fn

    skip_if_retired(env, context)
    snap = env.run(snap_fn, run_as_of(context), actor=env.actor(context))
    if not snap.valid:
        run_id = snap.validation.mlflow_run_id if snap.validation else None
        quarantine = snap.validation.quarantine if snap.validation else None
        env.alert(
            "validation_failure",
            _retrain_validation_alert,
            snap,
            context=context,
            link_args={"mlflow_run_id": run_id, "as_of": snap.as_of},
        )
        raise AirflowFailException(
            f"training data of {env.name} for {snap.start}..{snap.end} failed validation: "
            f"{'; '.join(snap.problems)}. Batch quarantined in {quarantine}; "
            f"MLflow validation run {run_id}"
        )
    return snap


def run_check_gates(
    env: ModelTasks, snap: Snapshot, trained: TrainedRun, evaluation: Evaluation, context
) -> GateReport:
    """Task ``check_gates``: the candidate's gates, each result logged."""
    from retrain_lib.pipeline.evaluation import check_gates as gates_fn

    res = env.run(
        gates_fn,
        evaluation,
        trained,
        as_of=snap.as_of,
        actor=env.actor(context),
        snap=snap,
        require_gain=(context.get("params") or {}).get("require_gain"),
    )
    for r in res.results:
        log.info("%s gate %s: %s", "PASS" if r.passed else "FAIL", r.gate, r.reason)
    return res


def run_deploy_candidate(
    env: ModelTasks,
    snap: Snapshot,
    trained: TrainedRun,
    registered: Registered | None,
    evaluation: Evaluation,
    context,
) -> DeployOutcome:
    """Task ``deploy_candidate``: deploy the registered candidate; alert when it became champion."""
    from airflow.sdk.exceptions import AirflowSkipException

    from retrain_lib.pipeline.promotion import deploy_candidate as deploy_fn

    if registered is None:
        raise AirflowSkipException("no candidate was registered (the gates failed)")

    reason = (context.get("params") or {}).get("reason") or "manual"
    approval = approval_answer(context) if env.cfg.approval is not None else None
    deployed = env.run(
        deploy_fn,
        registered,
        evaluation,
        as_of=snap.as_of,
        actor=env.actor(context),
        reason=reason,
        snap=snap,
        trained=trained,
        approval=approval,
        mode=(context.get("params") or {}).get("deploy_mode"),
    )
    if deployed.champion_move is not None:
        from retrain_lib.pipeline import alerts

        env.alert(
            "promotion",
            alerts.promotion,
            deployed,
            evaluation=evaluation,
            reason=reason,
            as_of=snap.as_of,
            context=context,
            link_args={"mlflow_run_id": registered.run_id, "as_of": snap.as_of},
        )
    return deployed


def run_reject_candidate(env: ModelTasks, snap: Snapshot, trained: TrainedRun, gates: GateReport, context) -> Rejection:
    """Task ``reject_candidate``: record the rejection and send the gate failure alert."""
    from retrain_lib.pipeline import alerts
    from retrain_lib.pipeline.promotion import reject_candidate as reject_fn

    res = env.run(reject_fn, trained, gates, as_of=snap.as_of, actor=env.actor(context))
    env.alert(
        "gate_failure",
        alerts.gate_failure,
        gates,
        run_id=trained.run_id,
        as_of=snap.as_of,
        context=context,
        link_args={"mlflow_run_id": trained.run_id, "as_of": snap.as_of},
    )
    return res


def outcome_leaf(env: ModelTasks, outcome: str):
    """A last task that runs only when the retrain ended with ``outcome`` (a result of
    ``reject_candidate``), so the run shows how it ended in Airflow's grid: Airflow 3.3
    offers a task no way to set its run's note. Returns that note."""

    @task(task_id=f"retrain_{outcome}")
    def leaf(res: dict) -> str:
        from airflow.sdk.exceptions import AirflowSkipException

        from retrain_lib.pipeline.records import Rejection

        rejection = Rejection.from_xcom(res)
        if rejection.outcome != outcome:
            raise AirflowSkipException(f"the retrain ended {rejection.outcome!r}, not {outcome!r}")
        note = outcome_note(rejection)
        log.warning("%s: %s", env.name, note)
        return note

    return leaf


def _candidate_tasks(env: ModelTasks) -> tuple[XComArg, XComArg, XComArg, XComArg]:
    """snapshot_data ─► train_candidate ─► evaluate_candidate ─► check_gates.

    Each task reads its inputs from XCom as records (``Record.from_xcom``) and returns its
    record's ``to_xcom()``."""

    @task(task_id="snapshot_data")
    def snapshot_data(**context) -> dict:
        """Fix the training window and its content hash; stop here if the data is unfit."""
        return run_snapshot_data(env, context).to_xcom()

    @task(task_id="train_candidate")
    def train_candidate(snap: dict, **context) -> dict:
        from retrain_lib.pipeline.records import Snapshot
        from retrain_lib.pipeline.training_run import train_candidate as train_fn

        actor = env.actor(context)
        return env.run(train_fn, Snapshot.from_xcom(snap), run_key=actor, actor=actor).to_xcom()

    @task(task_id="evaluate_candidate")
    def evaluate_candidate(snap: dict, trained: dict) -> dict:
        from retrain_lib.pipeline.evaluation import evaluate_candidate as eval_fn
        from retrain_lib.pipeline.records import Snapshot, TrainedRun

        return env.run(eval_fn, Snapshot.from_xcom(snap), TrainedRun.from_xcom(trained)).to_xcom()

    @task(task_id="check_gates")
    def check_gates(snap: dict, trained: dict, evaluation: dict, **context) -> dict:
        from retrain_lib.pipeline.records import Evaluation, Snapshot, TrainedRun

        return run_check_gates(
            env, Snapshot.from_xcom(snap), TrainedRun.from_xcom(trained), Evaluation.from_xcom(evaluation), context
        ).to_xcom()

    snap = snapshot_data()
    trained = train_candidate(snap)
    evaluation = evaluate_candidate(snap, trained)
    return snap, trained, evaluation, check_gates(snap, trained, evaluation)


def _decision_tasks(env: ModelTasks, snap, trained, evaluation, gates) -> tuple[XComArg, XComArg]:
    """decide_promotion ─┬─► register_candidate, deploy_candidate (not wired to each other here)
    └─► reject_candidate ─► retrain_rejected, retrain_no_gain."""

    @task.branch(task_id="decide_promotion")
    def decide_promotion(gates: dict) -> str:
        from retrain_lib.pipeline.records import GateReport

        return "register_candidate" if GateReport.from_xcom(gates).passed else "reject_candidate"

    @task(task_id="register_candidate")
    def register_candidate(snap: dict, trained: dict, evaluation: dict, gates: dict) -> dict:
        from retrain_lib.pipeline.records import Evaluation, GateReport, Snapshot, TrainedRun
        from retrain_lib.pipeline.registration import register_candidate as register_fn

        return env.run(
            register_fn,
            Snapshot.from_xcom(snap),
            TrainedRun.from_xcom(trained),
            Evaluation.from_xcom(evaluation),
            GateReport.from_xcom(gates),
        ).to_xcom()

    # With an approval step, deploy follows either the approval or (nobody asked) the branch.
    @task(
        task_id="deploy_candidate",
        trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
        if env.cfg.approval is not None
        else TriggerRule.ALL_SUCCESS,
    )
    def deploy_candidate(snap: dict, trained: dict, registered: dict | None, evaluation: dict, **context) -> dict:
        """``direct``: promote to champion (compare-and-swap); ``shadow``/``canary``: make it
        the challenger. After a human approval, the answer is recorded first."""
        from retrain_lib.pipeline.records import Evaluation, Registered, Snapshot, TrainedRun

        return run_deploy_candidate(
            env,
            Snapshot.from_xcom(snap),
            TrainedRun.from_xcom(trained),
            Registered.from_xcom(registered) if registered else None,
            Evaluation.from_xcom(evaluation),
            context,
        ).to_xcom()

    @task(task_id="reject_candidate")
    def reject_candidate(snap: dict, trained: dict, gates: dict, **context) -> dict:
        from retrain_lib.pipeline.records import GateReport, Snapshot, TrainedRun

        return run_reject_candidate(
            env, Snapshot.from_xcom(snap), TrainedRun.from_xcom(trained), GateReport.from_xcom(gates), context
        ).to_xcom()

    branch = decide_promotion(gates)
    registered = register_candidate(snap, trained, evaluation, gates)
    deployed = deploy_candidate(snap, trained, registered, evaluation)
    rejected = reject_candidate(snap, trained, gates)
    branch >> [registered, rejected]
    outcome_leaf(env, "rejected")(rejected)
    outcome_leaf(env, "no_gain")(rejected)
    return registered, deployed


def _rollout_trigger(env: ModelTasks, deployed: XComArg) -> TriggerDagRunOperator:
    """rollout_needed ─► start_rollout (starts <model>__rollout for a new challenger)."""

    @task.short_circuit(task_id="rollout_needed")
    def rollout_needed(deployed: dict) -> bool:
        """A challenger was made (not a direct promotion, not rejected on re-evaluation)."""
        from retrain_lib.pipeline.records import DeployOutcome

        outcome = DeployOutcome.from_xcom(deployed)
        return outcome.mode != "direct" and not outcome.rejected

    needed = rollout_needed(deployed)
    start = TriggerForThisRun(
        task_id="start_rollout",
        trigger_dag_id=env.cfg.dag_id("rollout"),
        trigger_run_id="rollout__{{ run_id }}",
        conf={
            "as_of": "{{ ti.xcom_pull(task_ids='snapshot_data')['as_of'] }}",
            "mode": "{{ ti.xcom_pull(task_ids='deploy_candidate')['mode'] }}",
        },
        skip_when_already_exists=True,
    )
    needed >> start
    return start


def champion_of_deploy(deployed: dict) -> str | None:
    """The version a deploy made champion (a direct promotion), else ``None``."""
    moves = deployed.get("moves") or []
    return next((m["to"] for m in moves if m.get("alias") == "champion"), None)


def build_retrain_dag(cfg: ModelConfig, path: Path, cfg_dir: Path) -> DAG:
    """The retrain DAG of ``cfg``'s model (see the module docstring for its shape)."""
    with model_dag(cfg, path, "retrain", cfg.schedule.retrain_floor, retrain_params(cfg), cfg_dir) as dag:
        env = ModelTasks(cfg, str(cfg_dir), dag.dag_id)
        snap, trained, evaluation, gates = _candidate_tasks(env)
        registered, deployed = _decision_tasks(env, snap, trained, evaluation, gates)
        _rollout_trigger(env, deployed)
        add_guard_trigger(env, deployed, champion_of_deploy)
        if cfg.approval is None:
            registered >> deployed
        else:
            add_approval_tasks(env, snap, trained, evaluation, gates, registered, deployed)
    return dag
