"""The links of an Airflow task of a model's DAGs (the plugin's operator extra links): the MLflow
run and the report of the ledger record the task wrote."""

from __future__ import annotations

from retrain_lib.store.audit import Ledger
from retrain_lib.tools.status_decisions import GATES_EVENT, MONITOR_EVENT
from retrain_lib.tools.status_links import mlflow_run_url, report_relpath

# task id -> ledger event whose record the task wrote
TASK_EVENTS = {"check_model": MONITOR_EVENT, "check_gates": GATES_EVENT}


def task_links(settings, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
    """Where the record a gate or drift task wrote points: ``{"mlflow_run": url, "report":
    path relative to the reports directory}`` (``None`` where there is nothing).

    The task is found through the ledger: its record's ``actor`` is ``<dag_id>/<run_id>``."""
    event = TASK_EVENTS.get(task_id)
    model, _, kind = dag_id.rpartition("__")
    if event is None or not model or kind not in ("monitor", "retrain"):
        return {"mlflow_run": None, "report": None}
    actor = f"{dag_id}/{run_id}"
    rec = next(
        (
            r
            for r in reversed(Ledger.from_settings(settings).records(model))
            if r["event"] == event and r.get("actor") == actor
        ),
        None,
    )
    if rec is None:
        return {"mlflow_run": None, "report": None}
    d = rec.get("details") or {}
    ui_url = settings.platform.mlflow_ui_url
    run_id_ = d.get("mlflow_run_id") or d.get("run_id")
    report = report_relpath(settings.reports_dir, d.get("drift_report") or d.get("report"))
    return {"mlflow_run": mlflow_run_url(ui_url, run_id_), "report": report}
