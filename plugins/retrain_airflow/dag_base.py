"""What the monitor, retrain and rollout DAGs of a model share: their common settings (one run
at a time, no catch-up, tags, owner, retries, the failure alert), their documentation, the
``as_of`` run parameter, and the operator that starts another DAG for the same day.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

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


_IMMUTABLE = (type(None), bool, int, float, str)


def _copy_value(value: Any, memo: dict[int, Any] | None) -> Any:
    """A list of scalars (``type``, ``enum``) by slicing; anything else by ``copy.deepcopy``."""
    if isinstance(value, list) and all(isinstance(v, _IMMUTABLE) for v in value):
        return value[:]
    return copy.deepcopy(value, memo)


class CheapCopyParams(ParamsDict):
    """A DAG's ``params`` whose deep copy copies each :class:`Param` field by field.

    Airflow deep-copies the DAG's params into every operator it builds
    (``BaseOperator.__init__`` -> ``get_merged_defaults``); the generic ``copy.deepcopy`` of a
    ``Param`` (through ``__reduce_ex__``) was 40% of the time to build a model's DAGs (about 50
    operators). This copy makes the same independent objects (a new ``Param``, a new schema
    dict, a deep copy of a mutable default) without the generic machinery. The result is a
    plain :class:`ParamsDict`, so tasks and the serialized DAG are unchanged."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict[int, Any] | None) -> ParamsDict:
        out = {}
        for key in self:
            p = self.get_param(key)
            value = p.value if isinstance(p.value, _IMMUTABLE) else copy.deepcopy(p.value, memo)
            schema = {k: v if isinstance(v, _IMMUTABLE) else _copy_value(v, memo) for k, v in p.schema.items()}
            q = Param.__new__(Param)  # not Param(): its JSON check of the value ran when the DAG was built
            q.__dict__.update(p.__dict__, value=value, schema=schema)
            out[key] = q
        return ParamsDict(out, self.suppress_exception)


def model_dag(cfg: ModelConfig, path: Path, kind: str, schedule, params: dict[str, Param], cfg_dir: Path) -> DAG:
    """The settings every model DAG shares: one run at a time, no catch-up, tagged by model, a
    Slack alert when a task fails after its retries. Its params copy cheaply into each task
    (:class:`CheapCopyParams`)."""
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
    # DAG's attrs converter makes every ``params`` a plain ParamsDict: set ours after it ran
    object.__setattr__(dag, "params", CheapCopyParams({k: dag.params.get_param(k) for k in dag.params}))
    return dag


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
