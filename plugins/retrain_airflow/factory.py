"""Builds each model's DAGs from its YAML config.

``build_all()`` validates every file in ``configs/models/``. A broken file is logged with
all its problems and skipped, so every other model's DAGs still load; with
``RETRAIN_STRICT=1`` (CI) it is an import error instead.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, TriggerRule, task

from retrain_airflow import alerting
from retrain_lib.config import ConfigSet, ModelConfig, load_model_configs
from retrain_lib.config_platform import load_platform_config
from retrain_lib.errors import ConfigError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def config_dir() -> Path:
    """``RETRAIN_CONFIG_DIR`` or this repository's ``configs/``."""
    return Path(os.environ.get("RETRAIN_CONFIG_DIR") or REPO_ROOT / "configs").resolve()


def strict() -> bool:
    return os.environ.get("RETRAIN_STRICT", "").lower() in ("1", "true", "yes")


def _as_of(context: dict[str, Any]) -> str:
    """The day a run acts for: ``params.as_of``; else the latest ``as_of`` that the data
    pipeline put in the extra of the Asset events that triggered the run; else the run's
    logical date; else its run_after."""
    as_of = (context.get("params") or {}).get("as_of")
    if as_of:
        return str(as_of)[:10]
    days = [
        str(event.extra["as_of"])[:10]
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if (event.extra or {}).get("as_of")
    ]
    if days:
        return max(days)
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date().isoformat()


def _fail_fast(fn, *args, **kwargs):
    """Run a lifecycle step; outcomes a retry cannot fix fail the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from retrain_lib.errors import ConfigError, DataError, RegistryError

    try:
        return fn(*args, **kwargs)
    except (ConfigError, DataError, RegistryError) as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def _settings(cfg_dir: str):
    from retrain_lib.settings import load_settings

    return load_settings(cfg_dir)


def _doc(cfg: ModelConfig, path: Path, kind: str) -> str:
    return (
        f"### {cfg.name} - {kind}\n\n{cfg.description}\n\n"
        f"* owner: {cfg.owner}\n* task: {cfg.task}\n* config: `{path}` (hash `{cfg.config_hash()}`)\n"
        f"* features: {', '.join(cfg.features.all)}; target `{cfg.features.target}`\n"
        f"* drift: {cfg.drift.method} (share {cfg.drift.drift_share:.0%}); deploy: {cfg.deploy.mode}\n"
    )


def _model_dag(cfg: ModelConfig, path: Path, kind: str, schedule, params: dict[str, Param], cfg_dir: Path) -> DAG:
    """The settings every model DAG shares: one run at a time, no catch-up, tagged by model, a
    Slack alert when a task fails after its retries."""
    return DAG(
        dag_id=cfg.dag_id(kind),
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["retrain", cfg.name, kind],
        doc_md=_doc(cfg, path, kind),
        default_args={
            "owner": cfg.owner,
            "retries": 2,
            "retry_delay": dt.timedelta(seconds=30),
            "retry_exponential_backoff": True,
            "on_failure_callback": alerting.TaskFailureAlert(cfg.name, str(cfg_dir), cfg.alerts),
        },
        params=params,
    )


class TriggerForThisRun(TriggerDagRunOperator):
    """``TriggerDagRunOperator`` whose triggered run takes this run's logical date, or its
    ``run_after`` when it has none: runs triggered through the REST API or the UI have a null
    logical date by default in Airflow 3, and a template naming ``logical_date`` then fails
    with ``UndefinedError``. Read in Python from the run itself, so scheduled, asset-triggered,
    API and UI runs all work."""

    def execute(self, context):
        run = context["dag_run"]
        self.logical_date = run.logical_date or run.run_after
        return super().execute(context)


def data_asset(cfg: ModelConfig) -> Asset:
    """The Asset a data pipeline updates when new data for this model has landed.

    Emitting an event on it (from a producing DAG's ``outlets`` or ``POST
    /api/v2/assets/events``) runs the monitor right away, besides its cron."""
    return Asset(name=f"{cfg.name}.new_data", uri=f"retrain://{cfg.name}/new_data", group="retrain")


def monitor_schedule(cfg: ModelConfig):
    """The monitor runs on its cron AND whenever new data lands."""
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(cfg.schedule.monitor, timezone="UTC"), assets=[data_asset(cfg)]
    )


def _monitor_alerts(cfg: ModelConfig, cfg_dir: str, res: dict, context) -> None:
    """Drift that made the monitor act, and a failed validation of the current window."""
    from retrain_lib import alerts

    name = cfg.name
    try:
        drifted = any(s.get("signal") == "drift" and s.get("triggered") for s in res.get("signals") or [])
    except AttributeError:  # alerting never fails the monitor
        log.exception("unexpected monitor signals of %s; no drift alert", name)
        drifted = False
    if drifted and res.get("action") in ("retrain", "rollback"):
        alerting.alert(
            name,
            cfg_dir,
            cfg.alerts,
            "drift",
            lambda link, severity: alerts.drift(name, res, links=link, severity=severity),
            context=context,
            mlflow_run_id=res.get("mlflow_run_id"),
            monitor=res,
        )
    if (res.get("validation") or {}).get("success") is False:
        alerting.alert(
            name,
            cfg_dir,
            cfg.alerts,
            "validation_failure",
            lambda link, severity: alerts.validation_failure(
                name,
                stage="monitor",
                as_of=res.get("as_of"),
                links=link,
                severity=severity,
                **alerts.monitor_validation_facts(res),
            ),
            context=context,
            mlflow_run_id=res.get("mlflow_run_id"),
            monitor=res,
        )


def _rollout_alert(
    cfg: ModelConfig, cfg_dir: str, decision: str, started: dict, outcome: dict, why: str, context
) -> None:
    from retrain_lib import alerts

    name = cfg.name
    alerting.alert(
        name,
        cfg_dir,
        cfg.alerts,
        "promotion" if decision == "promote" else "rollback",
        lambda link, severity: alerts.rollout_decision(
            name, decision, started, outcome, reason=why, as_of=started.get("as_of"), links=link, severity=severity
        ),
        context=context,
        version=started.get("challenger"),
        as_of=started.get("as_of"),
    )


def build_monitor_dag(cfg: ModelConfig, path: Path, cfg_dir: Path) -> DAG:
    name = cfg.name
    cfg_dir_s = str(cfg_dir)
    with _model_dag(
        cfg,
        path,
        "monitor",
        monitor_schedule(cfg),
        {
            "as_of": Param(
                None,
                type=["null", "string"],
                format="date",
                description="Day to check (YYYY-MM-DD); default: the run's logical date",
            ),
        },
        cfg_dir,
    ) as dag:

        @task(task_id="check_model")
        def check_model(**context) -> dict:
            """Drift of the current window vs the champion's training data, and the champion's
            live performance on matured labels; returns the decision with its reasons."""
            from retrain_lib.monitor_run import monitor_model

            as_of = _as_of(context)
            res = _fail_fast(
                monitor_model, name, as_of, settings=_settings(cfg_dir_s), actor=f"{dag.dag_id}/{context['run_id']}"
            )
            drift = res.get("drift") or {}
            summary = {
                "as_of": res["as_of"],
                "action": res["action"],
                "reasons": res["reasons"],
                "throttled": res["throttled"],
                "champion_version": res["champion_version"],
                "drifted_share": drift.get("drifted_share"),
                "dataset_drift": drift.get("dataset_drift"),
                "top_features": drift.get("top", []),
                "performance": res.get("performance"),
                "signals": res.get("signals"),
                "report_path": res["report_path"],
                "mlflow_run_id": res["mlflow_run_id"],
                "drift_report_path": res.get("drift_report_path"),
                "validation": res.get("validation"),
            }
            for line in res["reasons"]:
                log.info("%s %s: %s", name, res["action"], line)
            _monitor_alerts(cfg, cfg_dir_s, res, context)
            return summary

        @task.branch(task_id="decide_action")
        def decide_action(result: dict) -> str:
            return {"retrain": "request_retrain", "rollback": "rollback_champion"}.get(result["action"], "healthy")

        @task(task_id="rollback_champion")
        def rollback_champion(result: dict, **context) -> dict:
            """Move ``champion`` back to ``previous-champion`` (compare-and-swap on the version
            found degraded; atomic with its ledger entry)."""
            from retrain_lib.promotion import rollback_model

            res = _fail_fast(
                rollback_model,
                name,
                settings=_settings(cfg_dir_s),
                as_of=result["as_of"],
                actor=f"{dag.dag_id}/{context['run_id']}",
                reason="; ".join(result["reasons"]),
                expected_champion=result["champion_version"],
            )
            log.warning("%s rollback: %s", name, res)
            if res.get("rolled_back"):
                from retrain_lib import alerts

                alerting.alert(
                    name,
                    cfg_dir_s,
                    cfg.alerts,
                    "rollback",
                    lambda link, severity: alerts.rollback(
                        name, res, as_of=result["as_of"], links=link, severity=severity
                    ),
                    context=context,
                    mlflow_run_id=result.get("mlflow_run_id"),
                    monitor=result,
                )
            return res

        checked = check_model()
        request = TriggerForThisRun(
            task_id="request_retrain",
            trigger_dag_id=cfg.dag_id("retrain"),
            trigger_run_id="requested__{{ run_id }}",
            conf={
                "as_of": "{{ ti.xcom_pull(task_ids='check_model')['as_of'] }}",
                "reason": "{{ ti.xcom_pull(task_ids='check_model')['reasons'] | join('; ') }}",
            },
            skip_when_already_exists=True,
        )
        healthy = EmptyOperator(task_id="healthy")
        decide_action(checked) >> [request, healthy, rollback_champion(checked)]
    return dag


def build_retrain_dag(cfg: ModelConfig, path: Path, cfg_dir: Path) -> DAG:
    name = cfg.name
    cfg_dir_s = str(cfg_dir)
    with _model_dag(
        cfg,
        path,
        "retrain",
        cfg.schedule.retrain_floor,
        {
            "as_of": Param(
                None,
                type=["null", "string"],
                format="date",
                description="Train on the window ending this day; default: the run's logical date",
            ),
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
        },
        cfg_dir,
    ) as dag:

        def actor(context) -> str:
            return f"{dag.dag_id}/{context['run_id']}"

        @task(task_id="snapshot_data")
        def snapshot_data(**context) -> dict:
            """Fix the training window and its content hash; stop here if the data is unfit."""
            from airflow.sdk.exceptions import AirflowFailException

            from retrain_lib.snapshot import snapshot_data as snap_fn

            snap = _fail_fast(snap_fn, name, _as_of(context), settings=_settings(cfg_dir_s), actor=actor(context))
            if not snap["valid"]:
                where = snap.get("validation") or {}
                from retrain_lib import alerts

                alerting.alert(
                    name,
                    cfg_dir_s,
                    cfg.alerts,
                    "validation_failure",
                    lambda link, severity: alerts.validation_failure(
                        name,
                        stage="retrain",
                        as_of=snap["as_of"],
                        links=link,
                        severity=severity,
                        **alerts.retrain_validation_facts(snap),
                    ),
                    context=context,
                    mlflow_run_id=where.get("mlflow_run_id"),
                    as_of=snap["as_of"],
                )
                raise AirflowFailException(
                    f"training data of {name} for {snap['start']}..{snap['end']} failed validation: "
                    f"{'; '.join(snap['problems'])}. Batch quarantined in {where.get('quarantine')}; "
                    f"MLflow validation run {where.get('mlflow_run_id')}"
                )
            return snap

        @task(task_id="train_candidate")
        def train_candidate(snap: dict, **context) -> dict:
            from retrain_lib.training_run import train_candidate as train_fn

            return _fail_fast(
                train_fn,
                name,
                snap,
                settings=_settings(cfg_dir_s),
                run_key=f"{dag.dag_id}/{context['run_id']}",
                actor=actor(context),
            )

        @task(task_id="evaluate_candidate")
        def evaluate_candidate(snap: dict, trained: dict) -> dict:
            from retrain_lib.evaluation import evaluate_candidate as eval_fn

            return _fail_fast(eval_fn, name, snap, trained, settings=_settings(cfg_dir_s))

        @task(task_id="check_gates")
        def check_gates(snap: dict, trained: dict, evaluation: dict, **context) -> dict:
            from retrain_lib.evaluation import check_gates as gates_fn

            res = _fail_fast(
                gates_fn,
                name,
                evaluation,
                trained,
                settings=_settings(cfg_dir_s),
                as_of=snap["as_of"],
                actor=actor(context),
                snap=snap,
                require_gain=(context.get("params") or {}).get("require_gain"),
            )
            for r in res["results"]:
                log.info("%s gate %s: %s", "PASS" if r["passed"] else "FAIL", r["gate"], r["reason"])
            return res

        @task.branch(task_id="decide_promotion")
        def decide_promotion(gates: dict) -> str:
            return "register_candidate" if gates["passed"] else "reject_candidate"

        @task(task_id="register_candidate")
        def register_candidate(snap: dict, trained: dict, evaluation: dict, gates: dict) -> dict:
            from retrain_lib.registration import register_candidate as register_fn

            return _fail_fast(register_fn, name, snap, trained, evaluation, gates, settings=_settings(cfg_dir_s))

        @task.branch(task_id="decide_approval")
        def decide_approval(
            snap: dict, trained: dict, evaluation: dict, gates: dict, registered: dict, **context
        ) -> str:
            """Ask a human when the config's ``approval`` section says so (reasons in the ledger)."""
            from retrain_lib.approval_steps import approval_request

            req = _fail_fast(
                approval_request,
                name,
                snap,
                trained,
                evaluation,
                gates,
                registered,
                settings=_settings(cfg_dir_s),
                as_of=snap["as_of"],
                actor=actor(context),
            )
            context["ti"].xcom_push(key="subject", value=req["subject"])
            context["ti"].xcom_push(key="body", value=req["body"])
            if req["required"]:
                from retrain_lib import alerts

                a = cfg.approval
                alerting.alert(
                    name,
                    cfg_dir_s,
                    cfg.alerts,
                    "approval_needed",
                    lambda link, severity: alerts.approval_needed(
                        name,
                        req,
                        version=registered["version"],
                        timeout_hours=a.timeout_hours if a else None,
                        approvers=a.approvers if a else (),
                        as_of=snap["as_of"],
                        links=link,
                        severity=severity,
                    ),
                    context=context,
                    mlflow_run_id=trained["run_id"],
                    as_of=snap["as_of"],
                    other_tasks=(("answer in Airflow", "approve_promotion"),),
                )
            return "approve_promotion" if req["required"] else "deploy_candidate"

        # With an approval step, deploy follows either the approval or (nobody asked) the branch.
        @task(
            task_id="deploy_candidate",
            trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
            if cfg.approval is not None
            else TriggerRule.ALL_SUCCESS,
        )
        def deploy_candidate(snap: dict, trained: dict, registered: dict | None, evaluation: dict, **context) -> dict:
            """``direct``: promote to champion (compare-and-swap); ``shadow``/``canary``: make it
            the challenger. After a human approval, the answer is recorded first."""
            from airflow.sdk.exceptions import AirflowSkipException

            from retrain_lib.promotion import deploy_candidate as deploy_fn

            if not registered:
                raise AirflowSkipException("no candidate was registered (the gates failed)")

            reason = (context.get("params") or {}).get("reason") or "manual"
            approval = _approval_answer(context) if cfg.approval is not None else None
            deployed = _fail_fast(
                deploy_fn,
                name,
                registered,
                evaluation,
                settings=_settings(cfg_dir_s),
                as_of=snap["as_of"],
                actor=actor(context),
                reason=reason,
                snap=snap,
                trained=trained,
                approval=approval,
                mode=(context.get("params") or {}).get("deploy_mode"),
            )
            if any(m.get("alias") == "champion" for m in deployed.get("moves") or []):
                from retrain_lib import alerts

                alerting.alert(
                    name,
                    cfg_dir_s,
                    cfg.alerts,
                    "promotion",
                    lambda link, severity: alerts.promotion(
                        name,
                        deployed,
                        evaluation=evaluation,
                        reason=reason,
                        as_of=snap["as_of"],
                        links=link,
                        severity=severity,
                    ),
                    context=context,
                    mlflow_run_id=registered["run_id"],
                    as_of=snap["as_of"],
                )
            return deployed

        @task(task_id="reject_candidate")
        def reject_candidate(snap: dict, trained: dict, gates: dict, **context) -> dict:
            from retrain_lib import alerts
            from retrain_lib.promotion import reject_candidate as reject_fn

            res = _fail_fast(
                reject_fn,
                name,
                trained,
                gates,
                settings=_settings(cfg_dir_s),
                as_of=snap["as_of"],
                actor=actor(context),
            )
            alerting.alert(
                name,
                cfg_dir_s,
                cfg.alerts,
                "gate_failure",
                lambda link, severity: alerts.gate_failure(
                    name, gates, run_id=trained["run_id"], as_of=snap["as_of"], links=link, severity=severity
                ),
                context=context,
                mlflow_run_id=trained["run_id"],
                as_of=snap["as_of"],
            )
            return res

        def outcome_leaf(outcome: str):
            """A last task that runs only when the retrain ended with ``outcome`` (a result of
            ``reject_candidate``), so the run shows how it ended in Airflow's grid: Airflow 3.3
            offers a task no way to set its run's note. Returns that note."""

            @task(task_id=f"retrain_{outcome}")
            def leaf(res: dict) -> str:
                from airflow.sdk.exceptions import AirflowSkipException

                ended = res.get("outcome") or "rejected"
                if ended != outcome:
                    raise AirflowSkipException(f"the retrain ended {ended!r}, not {outcome!r}")
                note = outcome_note(res)
                log.warning("%s: %s", name, note)
                return note

            return leaf

        snap = snapshot_data()
        trained = train_candidate(snap)
        evaluation = evaluate_candidate(snap, trained)
        gates = check_gates(snap, trained, evaluation)
        branch = decide_promotion(gates)
        registered = register_candidate(snap, trained, evaluation, gates)
        deployed = deploy_candidate(snap, trained, registered, evaluation)
        rejected = reject_candidate(snap, trained, gates)
        branch >> [registered, rejected]
        outcome_leaf("rejected")(rejected)
        outcome_leaf("no_gain")(rejected)

        @task.short_circuit(task_id="rollout_needed")
        def rollout_needed(deployed: dict) -> bool:
            """A challenger was made (not a direct promotion, not rejected on re-evaluation)."""
            return deployed.get("mode") != "direct" and not deployed.get("rejected")

        rollout_needed(deployed) >> TriggerForThisRun(
            task_id="start_rollout",
            trigger_dag_id=cfg.dag_id("rollout"),
            trigger_run_id="rollout__{{ run_id }}",
            conf={
                "as_of": "{{ ti.xcom_pull(task_ids='snapshot_data')['as_of'] }}",
                "mode": "{{ ti.xcom_pull(task_ids='deploy_candidate')['mode'] }}",
            },
            skip_when_already_exists=True,
        )
        if cfg.approval is None:
            registered >> deployed
        else:
            ask = decide_approval(snap, trained, evaluation, gates, registered)
            approve = PromotionApproval(
                task_id="approve_promotion",
                subject="{{ ti.xcom_pull(task_ids='decide_approval', key='subject') }}",
                body="{{ ti.xcom_pull(task_ids='decide_approval', key='body') }}",
                # No answer in time: the scheduler answers with the default, a rejection.
                defaults=PromotionApproval.REJECT,
                response_timeout=dt.timedelta(hours=cfg.approval.timeout_hours),
                assigned_users=[{"id": u, "name": u} for u in cfg.approval.approvers] or None,
            )

            @task(task_id="close_review", trigger_rule=TriggerRule.ALL_DONE)
            def close_review(**context) -> dict:
                """Record a rejection or a timeout of the approval (a promotion records itself).
                Runs after ``deploy_candidate`` whatever happened to it; skips when nobody was asked."""
                from airflow.sdk.exceptions import AirflowSkipException

                from retrain_lib.approval_steps import close_review as close_fn

                answer = _approval_answer(context)
                if answer is None:
                    raise AirflowSkipException("no approval was asked in this run")
                ti = context["ti"]
                snap = ti.xcom_pull(task_ids="snapshot_data")
                registered = ti.xcom_pull(task_ids="register_candidate")
                return _fail_fast(
                    close_fn,
                    name,
                    registered,
                    answer,
                    settings=_settings(cfg_dir_s),
                    as_of=snap["as_of"],
                    actor=actor(context),
                )

            ask >> [approve, deployed]
            approve >> deployed >> close_review()
    return dag


def outcome_note(res: dict) -> str:
    """One line on how a retrain ended without a new champion, from ``reject_candidate``'s
    result: ``"rejected: <failed gate>; <failed gate> (+n more)"`` or ``"no gain: <why>"``.

    Example::

        outcome_note({"rejected": True, "failed": ["roc_auc 0.70 < min 0.75"]})
        # 'rejected: roc_auc 0.70 < min 0.75'
    """
    label = str(res.get("outcome") or "rejected").replace("_", " ")
    why = res.get("failed") or ([res["reason"]] if res.get("reason") else [])
    why = [why] if isinstance(why, str) else [str(w) for w in why]
    text = "; ".join(why[:2]) + (f" (+{len(why) - 2} more)" if len(why) > 2 else "")
    return f"{label}: {text}" if text else label


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


def _approval_answer(context) -> dict | None:
    """The answer of ``approve_promotion`` (``None`` when nobody was asked): option, who, when."""
    return context["ti"].xcom_pull(task_ids="approve_promotion", key="answer") or None


def build_rollout_dag(cfg: ModelConfig, path: Path, cfg_dir: Path) -> DAG:
    """Shadow, then each canary step, on the serving gateway's live traffic; promote or roll back.

    start_rollout ─► wait_shadow ─► judge_shadow ─┬─► canary_step_1 ─► watch_step_1 ─► judge_step_1 ─► ... ─► promote_challenger
                                                  └─► rollback_after_shadow ──────────────► rollback_challenger ◄── rollback_after_step_i
    """
    from retrain_airflow.triggers import CanarySensor, PredictionsSensor

    name = cfg.name
    cfg_dir_s = str(cfg_dir)
    d = cfg.deploy
    # A step of 100 % is the promotion itself: with no champion traffic left there is nothing to compare.
    steps = [p for p in d.canary_steps if p < 100]
    with _model_dag(
        cfg,
        path,
        "rollout",
        None,
        {
            "as_of": Param(None, type=["null", "string"], format="date", description="Day recorded in the ledger"),
            "mode": Param(
                d.mode if d.mode != "direct" else "canary",
                enum=["shadow", "canary"],
                description="shadow: promote after the shadow; canary: then each canary step",
            ),
            "shadow_minutes": Param(
                d.shadow_hours * 60,
                type="number",
                exclusiveMinimum=0,
                description="Shortest shadow (deploy.shadow_hours)",
            ),
            "min_predictions": Param(
                d.min_predictions,
                type="integer",
                minimum=10,
                description="Predictions per arm before the shadow is judged (deploy.min_predictions)",
            ),
            "step_minutes": Param(
                d.step_minutes,
                type="number",
                exclusiveMinimum=0,
                description="Shortest canary step (deploy.step_minutes)",
            ),
            "margin": Param(
                d.margin,
                type="number",
                minimum=0,
                description="Per-request loss the challenger may exceed the champion's by (deploy.margin)",
            ),
        },
        cfg_dir,
    ) as dag:

        def actor(context) -> str:
            return f"{dag.dag_id}/{context['run_id']}"

        @task(task_id="start_rollout")
        def start_rollout(**context) -> dict:
            from retrain_lib.rollout_run import start_rollout as start_fn

            params = context.get("params") or {}
            return _fail_fast(
                start_fn,
                name,
                settings=_settings(cfg_dir_s),
                as_of=_as_of(context),
                actor=actor(context),
                mode=params.get("mode"),
                min_predictions=params.get("min_predictions"),
                margin=params.get("margin"),
            )

        started = start_rollout()
        need = "{{ ti.xcom_pull(task_ids='start_rollout')['min_predictions'] }}"
        wait_shadow = PredictionsSensor(
            task_id="wait_shadow",
            model=name,
            since="{{ ti.xcom_pull(task_ids='start_rollout')['since'] }}",
            need={"champion": need, "shadow": need},
            min_seconds="{{ params.shadow_minutes * 60 }}",
            timeout_s=d.rollout_timeout_hours * 3600,
            cfg_dir=cfg_dir_s,
        )

        @task.branch(task_id="judge_shadow")
        def judge_shadow(started: dict, **context) -> str:
            from retrain_lib.rollout_run import judge_shadow as judge_fn

            res = _fail_fast(
                judge_fn, name, started, settings=_settings(cfg_dir_s), as_of=_as_of(context), actor=actor(context)
            )
            context["ti"].xcom_push(key="why", value="; ".join(res["reasons"]) or "shadow ok")
            if res["decision"] != "continue":
                return "rollback_after_shadow"
            return "canary_step_1" if steps and started["mode"] == "canary" else "shadow_passed"

        # Only one of the two joins runs (the others are skipped by their branch); the
        # promotion reads the rollout's start from XCom so that no always-successful
        # upstream could satisfy its trigger rule.
        @task(task_id="promote_challenger", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        def promote_challenger(**context) -> dict:
            from retrain_lib.rollout_run import finish_rollout

            started = context["ti"].xcom_pull(task_ids="start_rollout")
            why = "shadow and every canary step passed" if started["mode"] == "canary" else "shadow passed"
            outcome = _fail_fast(
                finish_rollout,
                name,
                started,
                "promote",
                settings=_settings(cfg_dir_s),
                as_of=_as_of(context),
                actor=actor(context),
                reason=why,
            )
            _rollout_alert(
                cfg,
                cfg_dir_s,
                "promote" if outcome.get("promoted") else "rollback",
                started,
                outcome,
                why if outcome.get("promoted") else outcome.get("reason") or why,
                context,
            )
            return outcome

        @task(task_id="rollback_challenger", trigger_rule=TriggerRule.ONE_SUCCESS)
        def rollback_challenger(**context) -> dict:
            """Runs when one judge sent the rollout to its rollback; its upstreams are only those."""
            from retrain_lib.rollout_run import finish_rollout

            started = context["ti"].xcom_pull(task_ids="start_rollout")
            judges = ["judge_shadow", *[f"judge_step_{i}" for i in range(1, len(steps) + 1)]]
            whys = [w for w in context["ti"].xcom_pull(task_ids=judges, key="why") or [] if w]
            why = whys[-1] if whys else "rollout failed"
            outcome = _fail_fast(
                finish_rollout,
                name,
                started,
                "rollback",
                settings=_settings(cfg_dir_s),
                as_of=_as_of(context),
                actor=actor(context),
                reason=why,
            )
            _rollout_alert(cfg, cfg_dir_s, "rollback", started, outcome, why, context)
            return outcome

        shadow_branch = judge_shadow(started)
        started >> wait_shadow >> shadow_branch
        rollbacks = [EmptyOperator(task_id="rollback_after_shadow")]
        passed = [EmptyOperator(task_id="shadow_passed")]
        shadow_branch >> [rollbacks[0], passed[0]]
        upstream = shadow_branch
        for i, pct in enumerate(steps, 1):
            nxt = f"canary_step_{i + 1}" if i < len(steps) else "canary_passed"

            @task(task_id=f"canary_step_{i}")
            def canary_step(started: dict, percent: float = pct, **context) -> dict:
                from retrain_lib.rollout_run import set_canary_step

                return _fail_fast(
                    set_canary_step,
                    name,
                    started,
                    percent,
                    settings=_settings(cfg_dir_s),
                    as_of=_as_of(context),
                    actor=actor(context),
                )

            @task.branch(task_id=f"judge_step_{i}")
            def judge_step(started: dict, step: dict, status: dict, nxt: str = nxt, i: int = i, **context) -> str:
                from retrain_lib.rollout_run import judge_canary

                res = _fail_fast(
                    judge_canary,
                    name,
                    started,
                    step,
                    status,
                    settings=_settings(cfg_dir_s),
                    as_of=_as_of(context),
                    actor=actor(context),
                )
                context["ti"].xcom_push(key="why", value=f"canary {step['percent']:g}%: {res['reason']}")
                return nxt if res["decision"] == "promote" else f"rollback_after_step_{i}"

            step = canary_step(started)
            watch = CanarySensor(
                task_id=f"watch_step_{i}",
                model=name,
                started=started,
                step=step,
                min_seconds="{{ params.step_minutes * 60 }}",
                timeout_s=d.rollout_timeout_hours * 3600,
                cfg_dir=cfg_dir_s,
            )
            branch = judge_step(started, step, watch.output)
            upstream >> step
            step >> watch >> branch
            rollback = EmptyOperator(task_id=f"rollback_after_step_{i}")
            branch >> rollback
            rollbacks.append(rollback)
            upstream = branch
        if steps:
            passed.append(EmptyOperator(task_id="canary_passed"))
            upstream >> passed[-1]
        passed >> promote_challenger()
        rollbacks >> rollback_challenger()
    return dag


def build_model_dags(cfg: ModelConfig, path: Path, cfg_dir: Path) -> dict[str, DAG]:
    """Monitor, retrain and rollout DAGs of one model. The rollout DAG exists for every model:
    with ``deploy.mode: direct`` it serves rollouts asked for by hand (a retrain run with
    ``deploy_mode`` shadow or canary, or a trigger of the rollout DAG itself)."""
    dags = [
        build_monitor_dag(cfg, path, cfg_dir),
        build_retrain_dag(cfg, path, cfg_dir),
        build_rollout_dag(cfg, path, cfg_dir),
    ]
    return {d.dag_id: d for d in dags}


def load_configs(cfg_dir: Path | None = None) -> ConfigSet:
    cfg_dir = cfg_dir or config_dir()
    platform = load_platform_config(cfg_dir / "platform.yaml")
    return load_model_configs([cfg_dir / "models"], platform)


def build_all(cfg_dir: Path | None = None) -> dict[str, DAG]:
    """Every valid model's DAGs, keyed by dag id. Bad configs are logged and skipped."""
    cfg_dir = cfg_dir or config_dir()
    configs = load_configs(cfg_dir)
    if configs.problems:
        message = "\n".join(str(p) for p in configs.problems)
        if strict():
            raise ConfigError(f"invalid model config(s) (RETRAIN_STRICT=1):\n{message}", configs.problems)
        log.error("skipping invalid model config(s); their DAGs are not loaded:\n%s", message)
    dags: dict[str, DAG] = {}
    for name, loaded in configs.models.items():
        try:
            dags.update(build_model_dags(loaded.config, loaded.path, cfg_dir))
        except Exception:
            if strict():
                raise
            log.exception("could not build the DAGs of model %s from %s; skipped", name, loaded.path)
    return dags
