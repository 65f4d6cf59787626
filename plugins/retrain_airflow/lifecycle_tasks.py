"""What the model DAGs do about a model's retirement (:mod:`retrain_lib.pipeline.retirement_step`):
the monitor's first step deprecates, sends the deprecation notice once and retires on the planned
day (its DAGs paused through the Airflow REST API when ``RETRAIN_AIRFLOW_API_URL`` is set); a
retired model's monitor and retrain runs short-circuit: the task is skipped with the reason, and
so is everything after it.

Nothing heavy is imported at module level (the DAG factory imports this module at parse time).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from retrain_airflow.task_adapter import ModelTasks, run_as_of

if TYPE_CHECKING:
    from retrain_lib.pipeline.retirement_step import LifecycleCheck

log = logging.getLogger(__name__)


def check_lifecycle(env: ModelTasks, context) -> LifecycleCheck:
    """The monitor's lifecycle step for the run's day, its alerts, and ``AirflowSkipException``
    when the model is retired (nothing to monitor)."""
    from airflow.sdk.exceptions import AirflowSkipException

    from retrain_lib.pipeline import lifecycle_alerts
    from retrain_lib.pipeline.retirement_step import lifecycle_step
    from retrain_lib.tools.airflow_api import AirflowApi, pause_dags

    api = AirflowApi.from_env()
    check = env.run(
        lifecycle_step, run_as_of(context), actor=env.actor(context), pause=lambda ids: pause_dags(api, ids)
    )
    if check.notice:
        env.alert("deprecation", lifecycle_alerts.deprecation_notice, check, context=context)
    if check.retired is not None and check.retired.changed:
        env.alert("retirement", lifecycle_alerts.retirement, check, context=context)
    if check.skip:
        log.warning("%s", check.explain())
        raise AirflowSkipException(check.explain())
    return check


def skip_if_retired(env: ModelTasks, context) -> None:
    """``AirflowSkipException`` (with the reason) when the model is retired on the run's day."""
    from airflow.sdk.exceptions import AirflowSkipException

    from retrain_lib.pipeline.retirement_plan import RETIRED
    from retrain_lib.pipeline.retirement_step import model_plan

    plan = env.run(model_plan, run_as_of(context))
    if plan.status == RETIRED:
        message = f"{plan.explain()}: nothing to do (undo with `retrain unretire {env.name} --reason ...`)"
        log.warning("%s", message)
        raise AirflowSkipException(message)
