"""What the monitor, retrain and rollout DAGs of a model share: their common settings (one run
at a time, no catch-up, tags, owner, retries, the failure alert), their documentation, the
``as_of`` run parameter, and the operator that starts another DAG for the same day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param
from airflow.sdk.definitions.param import ParamsDict

from retrain_airflow import alerting
from retrain_lib.core.config import ModelConfig

START_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def model_doc(cfg: ModelConfig, path: Path, kind: str) -> str:
    """The ``doc_md`` of a model's ``kind`` DAG: its description, owner, config and setup."""
    return (
        f"### {cfg.name} - {kind}\n\n{cfg.description}\n\n"
        f"* owner: {cfg.owner}\n* task: {cfg.task}\n* config: `{path}` (hash `{cfg.config_hash()}`)\n"
        f"* features: {', '.join(cfg.features.all)}; target `{cfg.features.target}`\n"
        f"* drift: {cfg.drift.method} (share {cfg.drift.drift_share:.0%}); deploy: {cfg.deploy.mode}\n"
    )


@contextmanager
def model_dag(
    cfg: ModelConfig, path: Path, kind: str, schedule, params: dict[str, Param], cfg_dir: Path
) -> Iterator[DAG]:
    """``with model_dag(...) as dag:`` - a model's ``kind`` DAG with the settings every model DAG
    shares: one run at a time, no catch-up, tagged by model, a Slack alert when a task fails
    after its retries.

    The tasks built inside the block carry no copy of the DAG's ``params``: Airflow deep-copies
    a DAG's params into every operator it builds (``BaseOperator`` -> ``get_merged_defaults``)
    and serializes each copy with the task, yet a task's run reads the DAG's params and then
    its own (``process_params``). With ~50 tasks per model those copies were half of a model's
    serialized DAGs (the rollout DAG: 41 of 65 kB) and of the time to build and serialize
    them, i.e. of each model file's parse. The params are set (and validated, by the DAG) when
    the DAG is made and are back on it when the block ends."""
    dag = DAG(
        dag_id=cfg.dag_id(kind),
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["retrain", cfg.name, kind],
        doc_md=model_doc(cfg, path, kind),
        default_args={
            "owner": cfg.owner,
            "retries": 2,
            "retry_delay": dt.timedelta(seconds=30),
            "retry_exponential_backoff": True,
            "on_failure_callback": alerting.TaskFailureAlert(cfg.name, str(cfg_dir), cfg.alerts),
        },
        params=params,
    )
    full = dag.params
    # DAG is an attrs class whose params converter makes any mapping a ParamsDict: bypass it
    object.__setattr__(dag, "params", ParamsDict())
    try:
        with dag:
            yield dag
    finally:
        object.__setattr__(dag, "params", full)


def as_of_param(description: str) -> Param:
    """The ``as_of`` parameter of a model DAG: an optional day (YYYY-MM-DD)."""
    return Param(None, type=["null", "string"], format="date", description=description)


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
