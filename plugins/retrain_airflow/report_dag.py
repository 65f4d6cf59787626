"""The monthly health report DAG of a model (``<model>__health_report``): on the 1st of every
month at 07:00 UTC, the report of the month before (:mod:`retrain_lib.tools.health_publish`):

    publish_report (HTML with charts + JSON, the month's MLflow run; Slack summary)

A run by hand may name the month (param ``month``, YYYY-MM). The month is fixed by the run's
logical date (its run_after when it has none), so a rerun reports the same month, and it
replaces that month's MLflow run rather than adding one.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import DAG, CronTriggerTimetable, Param, task

from retrain_airflow import alerting
from retrain_airflow.dag_base import model_dag
from retrain_airflow.slack_notifier import task_ids
from retrain_airflow.task_adapter import ModelTasks, task_settings
from retrain_lib.core.config import ModelConfig

KIND = "health_report"
SCHEDULE = "0 7 1 * *"  # the 1st of every month, 07:00 UTC: the month before is complete


def report_params() -> dict[str, Param]:
    """The run parameters of the report DAG."""
    return {
        "month": Param(
            None,
            type=["null", "string"],
            pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
            description="Month to report (YYYY-MM); default: the month before the run's logical date",
        )
    }


def report_month(context) -> str:
    """``params.month``, else the month before the run's logical date (else its run_after)."""
    from retrain_lib.tools.health_report import previous_month

    month = (context.get("params") or {}).get("month")
    if month:
        return str(month)
    return previous_month(context.get("logical_date") or context["dag_run"].run_after)


def run_publish_report(env: ModelTasks, context) -> dict:
    """Task ``publish_report``: the report of the month, its MLflow run, its Slack summary."""
    from retrain_lib.pipeline.alert_links import task_log_url
    from retrain_lib.tools.health_publish import health_alert, publish_health_report, summary_links

    settings = task_settings(env.cfg_dir)
    month = report_month(context)
    published = env.run(publish_health_report, month)
    dag_id, run_id, task_id = task_ids(context)
    links = summary_links(
        settings, published, task_log=task_log_url(settings.platform.airflow_base_url, dag_id, run_id, task_id)
    )
    slack = alerting.send(
        env.cfg.alerts,
        settings,
        KIND,
        lambda severity: health_alert(published.report, links=links, severity=severity),
        context=context,
    )
    return {**published.to_xcom(), "slack": slack}


def build_report_dag(cfg: ModelConfig, path: Path, cfg_dir: Path) -> DAG:
    """The monthly health report DAG of ``cfg``'s model."""
    schedule = CronTriggerTimetable(SCHEDULE, timezone="UTC")
    with model_dag(cfg, path, KIND, schedule, report_params(), cfg_dir) as dag:
        env = ModelTasks(cfg, str(cfg_dir), dag.dag_id)

        @task(task_id="publish_report")
        def publish_report(**context) -> dict:
            return run_publish_report(env, context)

        publish_report()
    return dag
