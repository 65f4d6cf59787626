"""Where an alert points: the Airflow task log and MLflow run pages of the platform's UIs, and
the latest monitor drift report of a model, found in its ledger records.

Only URL building and a scan of records already read: nothing here talks to Airflow or MLflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote


def task_log_url(airflow_base: str | None, dag_id: str | None, run_id: str | None, task_id: str | None) -> str | None:
    """The Airflow 3 UI page of a task instance (its log): ``{base}/dags/{dag}/runs/{run}/tasks/{task}``."""
    if not (airflow_base and dag_id and run_id and task_id):
        return None
    return f"{airflow_base.rstrip('/')}/dags/{_q(dag_id)}/runs/{_q(run_id)}/tasks/{_q(task_id)}"


RUNBOOKS_PATH = "/retrain/runbooks"  # served by the UI plugin on the Airflow api-server


def runbook_url(airflow_base: str | None, kind: str) -> str | None:
    """The runbook of an alert ``kind`` (``docs/runbooks/<kind>.md``) as the UI plugin serves it:
    ``{base}/retrain/runbooks/{kind}``."""
    if not airflow_base:
        return None
    return f"{airflow_base.rstrip('/')}{RUNBOOKS_PATH}/{_q(kind)}"


def _q(value) -> str:
    return quote(str(value), safe="")  # run ids hold ':' and '+'


def mlflow_run_url(
    mlflow_base: str | None, run_id: str | None, experiment_id: str | None = None, artifact: str | None = None
) -> str | None:
    """The MLflow UI page of a run (``{base}/#/experiments/{exp}/runs/{run}``), or of one of its
    artifacts (``.../artifactPath/{path}``); without the experiment, ``{base}/#/runs/{run}``."""
    if not (mlflow_base and run_id):
        return None
    base = mlflow_base.rstrip("/")
    if not experiment_id:
        return f"{base}/#/runs/{_q(run_id)}"
    url = f"{base}/#/experiments/{_q(experiment_id)}/runs/{_q(run_id)}"
    return f"{url}/artifactPath/{quote(artifact)}" if artifact else url


def latest_monitor_report(records: Iterable[Mapping[str, Any]], as_of: str | None = None) -> dict[str, Any] | None:
    """The newest ``monitor`` ledger record (of one model) on or before ``as_of`` that has a
    drift report: ``{"as_of", "mlflow_run_id", "drift_report"}``, or ``None``."""
    best = None
    for rec in records:
        details = rec.get("details") or {}
        if rec.get("event") != "monitor" or not details.get("drift_report"):
            continue
        if as_of and rec.get("as_of") and str(rec["as_of"]) > str(as_of)[:10]:
            continue
        if best is None or (str(rec.get("as_of") or ""), rec.get("seq", 0)) >= (
            str(best.get("as_of") or ""),
            best.get("seq", 0),
        ):
            best = rec
    if best is None:
        return None
    d = best["details"]
    return {"as_of": best.get("as_of"), "mlflow_run_id": d.get("mlflow_run_id"), "drift_report": d["drift_report"]}
