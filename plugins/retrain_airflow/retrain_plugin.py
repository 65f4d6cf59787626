"""The Airflow plugin of the platform: the fleet page and the extra links of gate and drift tasks.

* ``fastapi_apps``: :mod:`retrain_airflow.ui` mounted on the API server under ``/retrain``
  (``http://localhost:8080/retrain/`` with ``make up``);
* ``fastapi_root_middlewares``: a pass-through middleware that, when the API server starts,
  builds that app and reads the fleet in a background thread (so the first page load does
  not wait for MLflow's import);
* ``external_views``: a "Model fleet" entry in the UI's navigation, showing that page;
* ``global_operator_extra_links``: on ``check_model`` (monitor DAGs) and ``check_gates``
  (retrain DAGs), an "MLflow run" button to the run the task logged and, for the monitor,
  a "Drift report" button to its Evidently report. The links are found through the decision
  ledger (the task's record has ``actor = <dag_id>/<run_id>``); every other task gets none.

The plugin manager imports every file under ``plugins/`` in every Airflow process: this
module imports only the standard library and Airflow's plugin and link base classes. The
page's app is built on its first request (:class:`retrain_airflow.ui.LazyApp`).
"""

from __future__ import annotations

import logging

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

from retrain_airflow import ui

log = logging.getLogger(__name__)


def _api_root() -> str:
    """The path the API server is served under (``[api] base_url``), without a trailing slash."""
    from urllib.parse import urlsplit

    from airflow.configuration import conf

    return urlsplit(conf.get("api", "base_url", fallback="") or "").path.rstrip("/")


def _links(ti_key) -> dict:
    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.status_tasks import TASK_EVENTS, task_links

    if ti_key.task_id not in TASK_EVENTS:
        return {}
    try:
        return task_links(load_settings(), ti_key.dag_id, ti_key.run_id, ti_key.task_id)
    except Exception:  # a link must never break the task page
        log.exception("extra links of %s/%s/%s", ti_key.dag_id, ti_key.run_id, ti_key.task_id)
        return {}


class MlflowRunLink(BaseOperatorLink):
    """The MLflow run a monitor check (``check_model``) or gate check (``check_gates``) logged."""

    name = "MLflow run"

    def get_link(self, operator, *, ti_key) -> str:
        if ti_key.task_id not in ("check_model", "check_gates"):
            return ""
        return _links(ti_key).get("mlflow_run") or ""


class DriftReportLink(BaseOperatorLink):
    """The Evidently drift report of a monitor check (``check_model``), served by the fleet app."""

    name = "Drift report"

    def get_link(self, operator, *, ti_key) -> str:
        if ti_key.task_id != "check_model":
            return ""
        rel = _links(ti_key).get("report")
        if not rel:
            return ""
        from urllib.parse import quote

        return f"{_api_root()}{ui.URL_PREFIX}/reports/{quote(rel)}"


class RetrainPlugin(AirflowPlugin):
    name = "retrain"
    fastapi_apps = [{"app": ui.app, "url_prefix": ui.URL_PREFIX, "name": "Retrain fleet"}]
    fastapi_root_middlewares = [
        {"middleware": ui.WarmUpMiddleware, "args": [], "kwargs": {}, "name": "Retrain fleet warm-up"}
    ]
    external_views = [
        {
            "name": "Model fleet",
            "href": f"{ui.URL_PREFIX}/",
            "url_route": "retrain-fleet",
            "destination": "nav",
            "category": "browse",
        }
    ]
    global_operator_extra_links = [MlflowRunLink(), DriftReportLink()]
