"""The post-deploy guard DAG of a model (``<model>__guard``), and the tasks that start it
after each promotion (:func:`add_guard_trigger`: the retrain DAG's direct deploy, the end of a
rollout, the monitor's rollback, and the guard's own rollback).

    start_guard ─► watch_champion (deferred: reads the prediction log every guard.interval_s)
      ─► finish_guard (rollback or not; ledger; Slack) ─► guard_needed ─► guard_champion
                                                         (guards the version rolled back to)

The DAG is made for models whose guard is on (``guard.enabled``, by default when the model
has ``rollback``); it has no schedule: promotions trigger it, and it can be triggered by hand
(param ``version``: the champion to watch, default the champion now), e.g. after
``retrain promote``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, XComArg, task

from retrain_airflow.dag_base import as_of_param, model_dag
from retrain_airflow.task_adapter import ModelTasks, run_as_of
from retrain_airflow.triggers import GuardSensor
from retrain_lib.core.config import ModelConfig


def guard_params() -> dict[str, Param]:
    """The run parameters of the guard DAG."""
    return {
        "as_of": as_of_param("Day recorded in the ledger"),
        "version": Param(
            None,
            type=["null", "string"],
            description="The champion version to watch (the one just promoted); default: the champion now",
        ),
        "minutes": Param(
            None,
            type=["null", "number"],
            exclusiveMinimum=0,
            description="How long to watch it; default: the config's guard.minutes",
        ),
    }


def add_guard_trigger(env: ModelTasks, upstream: XComArg, version_of: Callable[[dict], str | None]) -> None:
    """guard_needed ─► guard_champion after ``upstream``: starts ``<model>__guard`` for the
    version ``version_of(upstream's XCom)`` returns (``None``: no new champion, nothing
    started). Nothing is added when the model's guard is off."""
    if not env.cfg.guard_enabled:
        return

    @task.short_circuit(task_id="guard_needed")
    def guard_needed(result: dict | None, **context) -> dict | None:
        """The version that became champion and the run's day (pushed to XCom), or nothing
        to guard (the guard is skipped)."""
        version = version_of(result or {})
        return {"version": str(version), "as_of": run_as_of(context)} if version else None

    needed = guard_needed(upstream)
    # Not this run's logical date: two promotions of one day (a deploy, then a rollback) each
    # get a guard run; the day goes in the conf.
    start = TriggerDagRunOperator(
        task_id="guard_champion",
        trigger_dag_id=env.cfg.dag_id("guard"),
        trigger_run_id="guard__{{ run_id }}",
        conf={
            "version": "{{ ti.xcom_pull(task_ids='guard_needed')['version'] }}",
            "as_of": "{{ ti.xcom_pull(task_ids='guard_needed')['as_of'] }}",
        },
        skip_when_already_exists=True,
    )
    needed >> start


def run_start_guard(env: ModelTasks, context) -> dict:
    """Task ``start_guard``: what the guard watches (recorded as ``guard_start``)."""
    from retrain_lib.pipeline.guard_run import start_guard

    params = context.get("params") or {}
    return env.run(
        start_guard,
        version=params.get("version") or None,
        minutes=params.get("minutes") or None,
        as_of=run_as_of(context),
        actor=env.actor(context),
    ).to_xcom()


def run_finish_guard(env: ModelTasks, started: dict, status: dict, context) -> dict:
    """Task ``finish_guard``: act on the guard's final look (rollback through the rollback
    path, ``guard_end`` in the ledger) and alert: ``rollback`` when it rolled back, ``guard``
    otherwise."""
    from retrain_lib.pipeline import alerts
    from retrain_lib.pipeline.guard import GuardStart
    from retrain_lib.pipeline.guard_run import finish_guard

    as_of = run_as_of(context)
    outcome = env.run(finish_guard, GuardStart.from_xcom(started), status, as_of=as_of, actor=env.actor(context))
    link_args = {"version": started.get("version"), "as_of": as_of}
    if outcome.get("rolled_back"):
        env.alert("rollback", alerts.rollback, outcome, as_of=as_of, context=context, link_args=link_args)
    else:
        env.alert("guard", alerts.guard_end, outcome, as_of=as_of, context=context, link_args=link_args)
    return outcome


def build_guard_dag(cfg: ModelConfig, path: Path, cfg_dir: Path) -> DAG:
    """The guard DAG of ``cfg``'s model (see the module docstring for its shape)."""
    with model_dag(cfg, path, "guard", None, guard_params(), cfg_dir) as dag:
        env = ModelTasks(cfg, str(cfg_dir), dag.dag_id)

        @task(task_id="start_guard")
        def start_guard(**context) -> dict:
            return run_start_guard(env, context)

        @task(task_id="finish_guard")
        def finish_guard(started: dict, status: dict, **context) -> dict:
            return run_finish_guard(env, started, status, context)

        started = start_guard()
        watch = GuardSensor(
            task_id="watch_champion",
            model=cfg.name,
            start=started,
            minutes=cfg.guard.minutes,
            interval_s=cfg.guard.interval_s,
            cfg_dir=str(cfg_dir),
        )
        finished = finish_guard(started, watch.output)
        started >> watch
        add_guard_trigger(env, finished, lambda res: res.get("to") if res.get("rolled_back") else None)
    return dag
