"""The monitor DAG of a model (``<model>__monitor``): on its cron and whenever new data lands,
check drift and live performance, then ask for a retrain, roll the champion back, or do nothing.

    [plan_partitions ─► profile_partitions (mapped, drift.engine: profile)] ─►
    check_model ─► decide_action ─┬─► request_retrain (starts <model>__retrain)
                                  ├─► rollback_champion ─► guard_needed ─► guard_champion
                                  └─► healthy
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, Param, task

from retrain_airflow.dag_base import TriggerForThisRun, as_of_param, model_dag
from retrain_airflow.data_watchers import monitor_watchers
from retrain_airflow.guard_dag import add_guard_trigger
from retrain_airflow.lifecycle_tasks import check_lifecycle
from retrain_airflow.task_adapter import ModelTasks, model_alert, run_as_of
from retrain_lib.core.config import ModelConfig

if TYPE_CHECKING:
    from retrain_lib.pipeline.monitor_records import MonitorResult, MonitorSummary

log = logging.getLogger(__name__)


# At most this many mapped profile tasks per monitor run (consecutive days are grouped).
MAX_PARTITION_TASKS = 16


def data_asset(cfg: ModelConfig, cfg_dir: Path | str | None = None) -> Asset:
    """The Asset a data pipeline updates when new data for this model has landed.

    Emitting an event on it (from a producing DAG's ``outlets`` or ``POST
    /api/v2/assets/events``) runs the monitor right away, besides its cron. With ``cfg_dir``
    it carries the watchers ``schedule.new_data`` turns on (a new partition in the data
    source, a message on a queue: :mod:`retrain_airflow.data_watchers`)."""
    watchers = monitor_watchers(cfg, cfg_dir) if cfg_dir is not None else []
    return Asset(name=f"{cfg.name}.new_data", uri=f"retrain://{cfg.name}/new_data", group="retrain", watchers=watchers)


def monitor_schedule(cfg: ModelConfig, cfg_dir: Path | str | None = None):
    """The monitor runs on its cron AND whenever new data lands."""
    return AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(cfg.schedule.monitor, timezone="UTC"), assets=[data_asset(cfg, cfg_dir)]
    )


def monitor_params() -> dict[str, Param]:
    """The run parameters of the monitor DAG."""
    return {"as_of": as_of_param("Day to check (YYYY-MM-DD); default: the run's logical date")}


def _monitor_validation_alert(name: str, res: dict, *, links, severity):
    """The validation failure alert of the monitor's current window (facts read when built)."""
    from retrain_lib.pipeline import alerts

    return alerts.validation_failure(
        name,
        stage="monitor",
        as_of=res.get("as_of"),
        links=links,
        severity=severity,
        **alerts.monitor_validation_facts(res),
    )


def monitor_alerts(cfg: ModelConfig, cfg_dir: str, result: MonitorResult, context) -> None:
    """Drift that made the monitor act, and a failed validation of the current window. The
    alerts read the result's dict (:meth:`MonitorResult.to_xcom`), as they read a ledger record."""
    from retrain_lib.pipeline import alerts

    drifted = any(s.signal == "drift" and s.triggered for s in result.signals)
    res = result.to_xcom()
    if drifted and result.action in ("retrain", "rollback"):
        model_alert(
            cfg,
            cfg_dir,
            "drift",
            alerts.drift,
            res,
            context=context,
            link_args={"mlflow_run_id": result.mlflow_run_id, "monitor": res},
        )
    if (result.validation or {}).get("success") is False:
        model_alert(
            cfg,
            cfg_dir,
            "validation_failure",
            _monitor_validation_alert,
            res,
            context=context,
            link_args={"mlflow_run_id": result.mlflow_run_id, "monitor": res},
        )


def run_plan_partitions(env: ModelTasks, context) -> list[dict]:
    """Task ``plan_partitions`` (``drift.engine: profile``): the current window's days in
    groups, each with the champion's reference buckets; empty without a stored reference
    profile (the check then profiles the window itself)."""
    from retrain_lib.pipeline.monitor_profile import monitor_chunks, monitor_spec

    as_of = run_as_of(context)
    spec = env.run(monitor_spec)
    if spec is None:
        log.info("%s: no stored reference profile yet; check_model profiles the window", env.name)
        return []
    chunks = env.run(monitor_chunks, as_of, chunks=MAX_PARTITION_TASKS)
    return [{"days": c.to_xcom(), "spec": spec.to_dict(), "as_of": as_of} for c in chunks]


def run_profile_partitions(env: ModelTasks, chunk: dict) -> dict:
    """Mapped task ``profile_partitions``: the profile of one group of days (any worker)."""
    import socket

    from retrain_lib.pipeline.monitor_profile import profile_chunk
    from retrain_lib.stats.profile import ProfileSpec

    spec = ProfileSpec.from_dict(chunk["spec"])
    profile = env.run(profile_chunk, chunk["days"], spec, chunk["as_of"])
    log.info("%s: profiled %s on %s (%d rows)", env.name, ", ".join(chunk["days"]), socket.gethostname(), profile.rows)
    return profile.to_dict()


def run_check_model(env: ModelTasks, context, profiles: list[dict] | None = None) -> MonitorSummary:
    """Task ``check_model``: the model's lifecycle first (a retired model skips the run:
    :func:`~retrain_airflow.lifecycle_tasks.check_lifecycle`), then monitor it for the run's day,
    alert on drift and on a failed validation, and return the summary the branch and the retrain
    trigger read."""
    from retrain_lib.pipeline.monitor_run import monitor_model

    check_lifecycle(env, context)
    as_of = run_as_of(context)
    current_profiles = None
    if profiles:
        from retrain_lib.stats.profile import Profile

        current_profiles = [Profile.from_dict(p) for p in profiles]
    res = env.run(monitor_model, as_of, actor=env.actor(context), current_profiles=current_profiles)
    for line in res.reasons:
        log.info("%s %s: %s", env.name, res.action, line)
    monitor_alerts(env.cfg, env.cfg_dir, res, context)
    return res.summary()


def run_rollback_champion(env: ModelTasks, result: MonitorSummary, context) -> dict:
    """Task ``rollback_champion``: roll the champion found degraded back; alert when it moved."""
    from retrain_lib.pipeline.promotion import rollback_model

    res = env.run(
        rollback_model,
        as_of=result.as_of,
        actor=env.actor(context),
        reason="; ".join(result.reasons),
        expected_champion=result.champion_version,
    )
    log.warning("%s rollback: %s", env.name, res)
    if res.get("rolled_back"):
        from retrain_lib.pipeline import alerts

        env.alert(
            "rollback",
            alerts.rollback,
            res,
            as_of=result.as_of,
            context=context,
            link_args={"mlflow_run_id": result.mlflow_run_id, "monitor": result.to_xcom()},
        )
    return res


def build_monitor_dag(cfg: ModelConfig, path: Path, cfg_dir: Path) -> DAG:
    """The monitor DAG of ``cfg``'s model (see the module docstring for its shape)."""
    with model_dag(cfg, path, "monitor", monitor_schedule(cfg, cfg_dir), monitor_params(), cfg_dir) as dag:
        env = ModelTasks(cfg, str(cfg_dir), dag.dag_id)

        @task(task_id="check_model")
        def check_model(profiles=None, **context) -> dict:
            """Drift of the current window vs the champion's training data, and the champion's
            live performance on matured labels; returns the decision with its reasons
            (:class:`MonitorSummary`'s ``to_xcom()``)."""
            return run_check_model(env, context, list(profiles) if profiles else None).to_xcom()

        @task.branch(task_id="decide_action")
        def decide_action(result: dict) -> str:
            from retrain_lib.pipeline.monitor_records import MonitorSummary

            action = MonitorSummary.from_xcom(result).action
            return {"retrain": "request_retrain", "rollback": "rollback_champion"}.get(action, "healthy")

        @task(task_id="rollback_champion")
        def rollback_champion(result: dict, **context) -> dict:
            """Move ``champion`` back to ``previous-champion`` (compare-and-swap on the version
            found degraded; atomic with its ledger entry)."""
            from retrain_lib.pipeline.monitor_records import MonitorSummary

            return run_rollback_champion(env, MonitorSummary.from_xcom(result), context)

        if cfg.drift.enabled and cfg.drift.engine == "profile":

            @task(task_id="plan_partitions")
            def plan_partitions(**context) -> list[dict]:
                """The current window's days in groups, one mapped profile task each."""
                return run_plan_partitions(env, context)

            @task(task_id="profile_partitions", map_index_template="{{ task.op_kwargs['chunk']['days'] | join(',') }}")
            def profile_partitions(chunk: dict) -> dict:
                """The profile of one group of days, on the champion's reference buckets."""
                return run_profile_partitions(env, chunk)

            # none_failed: with no stored reference profile yet the mapped task expands to
            # nothing (skipped) and check_model profiles the window itself
            checked = check_model.override(trigger_rule="none_failed")(
                profile_partitions.expand(chunk=plan_partitions())
            )
        else:
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
        rolled_back = rollback_champion(checked)
        decide_action(checked) >> [request, healthy, rolled_back]
        add_guard_trigger(env, rolled_back, lambda res: res.get("to") if res.get("rolled_back") else None)
    return dag
