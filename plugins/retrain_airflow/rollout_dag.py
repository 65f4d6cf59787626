"""The rollout DAG of a model (``<model>__rollout``): shadow, then each canary step, on the
serving gateway's live traffic; promote the challenger or roll it back.

    start_rollout ─► wait_shadow ─► judge_shadow ─┬─► canary_step_1 ─► watch_step_1 ─► judge_step_1 ─► ... ─► promote_challenger
                                                  └─► rollback_after_shadow ──────────────► rollback_challenger ◄── rollback_after_step_i
    promote_challenger ─► guard_needed ─► guard_champion (starts <model>__guard when it promoted)
    any failed task ─► withdraw_challenger (ends the rollout with a rollback; skipped otherwise)
"""

from __future__ import annotations

from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, TriggerRule, XComArg, task

from retrain_airflow.dag_base import as_of_param, model_dag
from retrain_airflow.guard_dag import add_guard_trigger
from retrain_airflow.task_adapter import ModelTasks, model_alert, run_as_of
from retrain_airflow.triggers import CanarySensor, PredictionsSensor
from retrain_lib.core.config import ModelConfig


def rollout_params(cfg: ModelConfig) -> dict[str, Param]:
    """The run parameters of the rollout DAG (defaults from the config's ``deploy`` section)."""
    d = cfg.deploy
    return {
        "as_of": as_of_param("Day recorded in the ledger"),
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
        "timeout_hours": Param(
            d.rollout_timeout_hours,
            type="number",
            exclusiveMinimum=0,
            description="Longest wait for the traffic of the shadow or of a canary step (deploy.rollout_timeout_hours)",
        ),
    }


def rollout_alert(
    cfg: ModelConfig, cfg_dir: str, decision: str, started: dict, outcome: dict, why: str, context
) -> None:
    """The ``promotion`` or ``rollback`` alert at the end of a rollout."""
    from retrain_lib.pipeline import alerts

    model_alert(
        cfg,
        cfg_dir,
        "promotion" if decision == "promote" else "rollback",
        alerts.rollout_decision,
        decision,
        started,
        outcome,
        reason=why,
        as_of=started.get("as_of"),
        context=context,
        link_args={"version": started.get("challenger"), "as_of": started.get("as_of")},
    )


def run_start_rollout(env: ModelTasks, context) -> dict:
    """Task ``start_rollout``: route traffic to the challenger per the run's parameters."""
    from retrain_lib.pipeline.rollout_run import start_rollout as start_fn

    params = context.get("params") or {}
    return env.run(
        start_fn,
        as_of=run_as_of(context),
        actor=env.actor(context),
        mode=params.get("mode"),
        min_predictions=params.get("min_predictions"),
        margin=params.get("margin"),
    )


def run_judge_shadow(env: ModelTasks, started: dict, steps: list[float], context) -> str:
    """Task ``judge_shadow``: the branch after the shadow (its reasons go to XCom key ``why``)."""
    from retrain_lib.pipeline.rollout_run import judge_shadow as judge_fn

    res = env.run(judge_fn, started, as_of=run_as_of(context), actor=env.actor(context))
    context["ti"].xcom_push(key="why", value="; ".join(res["reasons"]) or "shadow ok")
    if res["decision"] != "continue":
        return "rollback_after_shadow"
    return "canary_step_1" if steps and started["mode"] == "canary" else "shadow_passed"


def run_judge_step(env: ModelTasks, started: dict, step: dict, status: dict, nxt: str, i: int, context) -> str:
    """Task ``judge_step_<i>``: the branch after canary step ``i`` (its reason goes to XCom key ``why``)."""
    from retrain_lib.pipeline.rollout_run import judge_canary

    res = env.run(judge_canary, started, step, status, as_of=run_as_of(context), actor=env.actor(context))
    context["ti"].xcom_push(key="why", value=f"canary {step['percent']:g}%: {res['reason']}")
    return nxt if res["decision"] == "promote" else f"rollback_after_step_{i}"


def run_promote_challenger(env: ModelTasks, context) -> dict:
    """Task ``promote_challenger``: end the rollout with the promotion (which can still end in a
    rollback, e.g. when the champion moved) and alert how it ended."""
    from retrain_lib.pipeline.rollout_run import finish_rollout

    started = context["ti"].xcom_pull(task_ids="start_rollout")
    why = "shadow and every canary step passed" if started["mode"] == "canary" else "shadow passed"
    outcome = env.run(
        finish_rollout, started, "promote", as_of=run_as_of(context), actor=env.actor(context), reason=why
    )
    rollout_alert(
        env.cfg,
        env.cfg_dir,
        "promote" if outcome.get("promoted") else "rollback",
        started,
        outcome,
        why if outcome.get("promoted") else outcome.get("reason") or why,
        context,
    )
    return outcome


def run_rollback_challenger(env: ModelTasks, steps: list[float], context) -> dict:
    """Task ``rollback_challenger``: end the rollout with a rollback, for the reason of the last
    judge that gave one, and alert."""
    from retrain_lib.pipeline.rollout_run import finish_rollout

    started = context["ti"].xcom_pull(task_ids="start_rollout")
    judges = ["judge_shadow", *[f"judge_step_{i}" for i in range(1, len(steps) + 1)]]
    whys = [w for w in context["ti"].xcom_pull(task_ids=judges, key="why") or [] if w]
    why = whys[-1] if whys else "rollout failed"
    outcome = env.run(
        finish_rollout, started, "rollback", as_of=run_as_of(context), actor=env.actor(context), reason=why
    )
    rollout_alert(env.cfg, env.cfg_dir, "rollback", started, outcome, why, context)
    return outcome


def _shadow_tasks(env: ModelTasks, steps: list[float]) -> tuple[XComArg, XComArg]:
    """start_rollout ─► wait_shadow ─► judge_shadow; returns the rollout's start and the branch."""

    @task(task_id="start_rollout")
    def start_rollout(**context) -> dict:
        return run_start_rollout(env, context)

    started = start_rollout()
    need = "{{ ti.xcom_pull(task_ids='start_rollout')['min_predictions'] }}"
    wait_shadow = PredictionsSensor(
        task_id="wait_shadow",
        model=env.name,
        since="{{ ti.xcom_pull(task_ids='start_rollout')['since'] }}",
        need={"champion": need, "shadow": need},
        min_seconds="{{ params.shadow_minutes * 60 }}",
        timeout_s="{{ params.timeout_hours * 3600 }}",
        cfg_dir=env.cfg_dir,
    )

    @task.branch(task_id="judge_shadow")
    def judge_shadow(started: dict, **context) -> str:
        return run_judge_shadow(env, started, steps, context)

    shadow_branch = judge_shadow(started)
    started >> wait_shadow >> shadow_branch
    return started, shadow_branch


def _canary_step_tasks(env: ModelTasks, i: int, pct: float, nxt: str, started: XComArg, upstream) -> tuple:
    """canary_step_<i> ─► watch_step_<i> ─► judge_step_<i> ─┬─► ``nxt``; returns the branch
    and ``rollback_after_step_<i>``."""

    @task(task_id=f"canary_step_{i}")
    def canary_step(started: dict, percent: float = pct, **context) -> dict:
        from retrain_lib.pipeline.rollout_run import set_canary_step

        return env.run(set_canary_step, started, percent, as_of=run_as_of(context), actor=env.actor(context))

    @task.branch(task_id=f"judge_step_{i}")
    def judge_step(started: dict, step: dict, status: dict, nxt: str = nxt, i: int = i, **context) -> str:
        return run_judge_step(env, started, step, status, nxt, i, context)

    step = canary_step(started)
    watch = CanarySensor(
        task_id=f"watch_step_{i}",
        model=env.name,
        started=started,
        step=step,
        min_seconds="{{ params.step_minutes * 60 }}",
        timeout_s="{{ params.timeout_hours * 3600 }}",
        cfg_dir=env.cfg_dir,
    )
    branch = judge_step(started, step, watch.output)
    upstream >> step
    step >> watch >> branch
    rollback = EmptyOperator(task_id=f"rollback_after_step_{i}")
    branch >> rollback
    return branch, rollback


def run_withdraw_challenger(env: ModelTasks, context) -> dict:
    """Task ``withdraw_challenger``: a task of the rollout failed (its shadow never got the
    traffic it waits for, an error): end the rollout with a rollback so that the challenger
    alias and the gateway's rollout state do not outlive the run, and alert."""
    from retrain_lib.pipeline.rollout_run import finish_rollout

    started = context["ti"].xcom_pull(task_ids="start_rollout")
    if not started:
        return {"withdrawn": False, "reason": "the rollout never started: nothing to withdraw"}
    why = "the rollout failed before a decision (a task of this run failed; see its log): challenger withdrawn"
    outcome = env.run(
        finish_rollout, started, "rollback", as_of=run_as_of(context), actor=env.actor(context), reason=why
    )
    rollout_alert(env.cfg, env.cfg_dir, "rollback", started, outcome, why, context)
    return {"withdrawn": True, **outcome}


def _finish_tasks(env: ModelTasks, steps: list[float], passed: list, rollbacks: list) -> None:
    """promote_challenger after any of ``passed``; rollback_challenger after any of ``rollbacks``."""

    # Only one of the two joins runs (the others are skipped by their branch); the
    # promotion reads the rollout's start from XCom so that no always-successful
    # upstream could satisfy its trigger rule.
    @task(task_id="promote_challenger", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def promote_challenger(**context) -> dict:
        return run_promote_challenger(env, context)

    @task(task_id="rollback_challenger", trigger_rule=TriggerRule.ONE_SUCCESS)
    def rollback_challenger(**context) -> dict:
        """Runs when one judge sent the rollout to its rollback; its upstreams are only those."""
        return run_rollback_challenger(env, steps, context)

    promoted = promote_challenger()
    passed >> promoted
    rollbacks >> rollback_challenger()
    add_guard_trigger(env, promoted, lambda outcome: outcome.get("version") if outcome.get("promoted") else None)


def build_rollout_dag(cfg: ModelConfig, path: Path, cfg_dir: Path) -> DAG:
    """Shadow, then each canary step, on the serving gateway's live traffic; promote or roll back
    (see the module docstring for its shape)."""
    # A step of 100 % is the promotion itself: with no champion traffic left there is nothing to compare.
    steps = [p for p in cfg.deploy.canary_steps if p < 100]
    with model_dag(cfg, path, "rollout", None, rollout_params(cfg), cfg_dir) as dag:
        env = ModelTasks(cfg, str(cfg_dir), dag.dag_id)
        started, shadow_branch = _shadow_tasks(env, steps)
        rollbacks = [EmptyOperator(task_id="rollback_after_shadow")]
        passed = [EmptyOperator(task_id="shadow_passed")]
        shadow_branch >> [rollbacks[0], passed[0]]
        upstream = shadow_branch
        for i, pct in enumerate(steps, 1):
            nxt = f"canary_step_{i + 1}" if i < len(steps) else "canary_passed"
            upstream, rollback = _canary_step_tasks(env, i, pct, nxt, started, upstream)
            rollbacks.append(rollback)
        if steps:
            passed.append(EmptyOperator(task_id="canary_passed"))
            upstream >> passed[-1]
        _finish_tasks(env, steps, passed, rollbacks)
        _withdraw_on_failure(env, dag)
    return dag


def _withdraw_on_failure(env: ModelTasks, dag: DAG) -> None:
    """withdraw_challenger after any failed task of the rollout (skipped otherwise; the run still
    ends failed): the challenger never outlives a rollout that broke."""

    @task(task_id="withdraw_challenger", trigger_rule=TriggerRule.ONE_FAILED)
    def withdraw_challenger(**context) -> dict:
        return run_withdraw_challenger(env, context)

    watched = [t for t in dag.tasks if not t.task_id.startswith("guard_")]
    withdraw = withdraw_challenger()
    for t in watched:
        t >> withdraw
