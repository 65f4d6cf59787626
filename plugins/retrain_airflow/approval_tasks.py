"""The human approval step of a retrain DAG, for models whose config has an ``approval``
section: ask (``decide_approval``, with an ``approval_needed`` alert), wait for the answer in
Airflow (``approve_promotion``), and record a rejection or a timeout (``close_review``).

    register_candidate ─► decide_approval ─┬─► approve_promotion ─► deploy_candidate ─► close_review
                                           └─────────────────────► deploy_candidate (nobody asked)
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import TriggerRule, XComArg, task

from retrain_airflow.task_adapter import ModelTasks

if TYPE_CHECKING:
    from retrain_lib.pipeline.records import Evaluation, GateReport, Registered, Snapshot, TrainedRun


class PromotionApproval(ApprovalOperator):
    """Airflow's ``ApprovalOperator`` that also keeps the answer (option, who, when, timed out)
    in XCom key ``answer``: on "Reject" the operator skips its downstream tasks by raising,
    so its return value never reaches XCom, and the rejection must still be recorded."""

    def execute_complete(self, context, event):
        if "error" not in event:
            who = event.get("responded_by_user") or None
            when = event.get("responded_at")
            context["ti"].xcom_push(
                key="answer",
                value={
                    "answer": (event.get("chosen_options") or [None])[0],
                    "by": (who.get("name") or who.get("id")) if isinstance(who, dict) else who,
                    "at": when.isoformat() if hasattr(when, "isoformat") else when,
                    "timed_out": bool(event.get("timedout")) or who is None,
                },
            )
        return super().execute_complete(context, event)


def approval_answer(context) -> dict | None:
    """The answer of ``approve_promotion`` (``None`` when nobody was asked): option, who, when."""
    return context["ti"].xcom_pull(task_ids="approve_promotion", key="answer") or None


def _approval_alert(name: str, req: dict, registered: Registered, snap: Snapshot, approval, *, links, severity):
    """The ``approval_needed`` alert of an approval request."""
    from retrain_lib.pipeline import alerts

    a = approval
    return alerts.approval_needed(
        name,
        req,
        version=registered.version,
        timeout_hours=a.timeout_hours if a else None,
        approvers=a.approvers if a else (),
        as_of=snap.as_of,
        links=links,
        severity=severity,
    )


def run_decide_approval(
    env: ModelTasks,
    snap: Snapshot,
    trained: TrainedRun,
    evaluation: Evaluation,
    gates: GateReport,
    registered: Registered,
    context,
) -> str:
    """Task ``decide_approval``: whether a human must answer; the subject and body of the
    question go to XCom, and the question to Slack. Returns the branch to follow."""
    from retrain_lib.pipeline.approval_steps import approval_request

    req = env.run(
        approval_request,
        snap,
        trained,
        evaluation,
        gates,
        registered,
        as_of=snap.as_of,
        actor=env.actor(context),
    )
    context["ti"].xcom_push(key="subject", value=req["subject"])
    context["ti"].xcom_push(key="body", value=req["body"])
    if req["required"]:
        env.alert(
            "approval_needed",
            _approval_alert,
            req,
            registered,
            snap,
            env.cfg.approval,
            context=context,
            link_args={
                "mlflow_run_id": trained.run_id,
                "as_of": snap.as_of,
                "other_tasks": (("answer in Airflow", "approve_promotion"),),
            },
        )
    return "approve_promotion" if req["required"] else "deploy_candidate"


def run_close_review(env: ModelTasks, context) -> dict:
    """Task ``close_review``: record the answer of an approval that did not promote."""
    from airflow.sdk.exceptions import AirflowSkipException

    from retrain_lib.pipeline.approval_steps import close_review as close_fn
    from retrain_lib.pipeline.records import Registered, Snapshot

    answer = approval_answer(context)
    if answer is None:
        raise AirflowSkipException("no approval was asked in this run")
    ti = context["ti"]
    snap = Snapshot.from_xcom(ti.xcom_pull(task_ids="snapshot_data"))
    registered = Registered.from_xcom(ti.xcom_pull(task_ids="register_candidate"))
    return env.run(close_fn, registered, answer, as_of=snap.as_of, actor=env.actor(context))


def add_approval_tasks(
    env: ModelTasks,
    snap: XComArg,
    trained: XComArg,
    evaluation: XComArg,
    gates: XComArg,
    registered: XComArg,
    deployed: XComArg,
) -> None:
    """Put the approval step between ``registered`` and ``deployed`` (see the module docstring)."""
    approval = env.cfg.approval

    @task.branch(task_id="decide_approval")
    def decide_approval(snap: dict, trained: dict, evaluation: dict, gates: dict, registered: dict, **context) -> str:
        """Ask a human when the config's ``approval`` section says so (reasons in the ledger)."""
        from retrain_lib.pipeline.records import Evaluation, GateReport, Registered, Snapshot, TrainedRun

        return run_decide_approval(
            env,
            Snapshot.from_xcom(snap),
            TrainedRun.from_xcom(trained),
            Evaluation.from_xcom(evaluation),
            GateReport.from_xcom(gates),
            Registered.from_xcom(registered),
            context,
        )

    @task(task_id="close_review", trigger_rule=TriggerRule.ALL_DONE)
    def close_review(**context) -> dict:
        """Record a rejection or a timeout of the approval (a promotion records itself).
        Runs after ``deploy_candidate`` whatever happened to it; skips when nobody was asked."""
        return run_close_review(env, context)

    ask = decide_approval(snap, trained, evaluation, gates, registered)
    approve = PromotionApproval(
        task_id="approve_promotion",
        subject="{{ ti.xcom_pull(task_ids='decide_approval', key='subject') }}",
        body="{{ ti.xcom_pull(task_ids='decide_approval', key='body') }}",
        # No answer in time: the scheduler answers with the default, a rejection.
        defaults=PromotionApproval.REJECT,
        response_timeout=dt.timedelta(hours=approval.timeout_hours),
        assigned_users=[{"id": u, "name": u} for u in approval.approvers] or None,
    )
    ask >> [approve, deployed]
    approve >> deployed >> close_review()
