"""Slack alerts from the model DAGs, through ``apache-airflow-providers-slack``.

The messages are built by :mod:`retrain_lib.pipeline.alerts` (Block Kit payloads by
:mod:`retrain_lib.pipeline.alert_payload`, de-duplication and retries by
:mod:`retrain_lib.pipeline.alert_delivery`) and posted by the notifier
:class:`retrain_airflow.slack_notifier.SlackAlertNotifier` on the Slack connection of the model
config (``alerts.slack_conn_id``, else the platform's). This module adds what only the model
DAGs know: the model's ``alerts`` config (which kinds, severities), the links of the task the
alert comes from (task log, MLflow run, drift report) and :class:`TaskFailureAlert`, the
notifier every task of a model's DAGs has as ``on_failure_callback``.

Alerting never changes a task's outcome: :func:`send` and the callback catch everything and
log it. A connection that does not exist is logged once per process and the alert skipped.
Nothing heavy is imported at module level (the DAG factory imports this module at parse time).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

from retrain_airflow.slack_notifier import SlackAlertNotifier, task_ids

log = logging.getLogger(__name__)

_reported: set[tuple] = set()  # task tries whose failure already went out as a specific alert
_lock = threading.Lock()


# -----------------------------------------------------------------------------------------
# Links
# -----------------------------------------------------------------------------------------


def _experiment_of(settings, run_id: str | None) -> str | None:
    """The MLflow experiment of a run, when MLflow is loaded already (task bodies that use it);
    a failure callback does not pay MLflow's import for a link."""
    if not run_id or "mlflow" not in sys.modules:
        return None
    try:
        from retrain_lib.store import registry

        return registry.get_client(settings.tracking_uri, settings.registry_uri).get_run(run_id).info.experiment_id
    except Exception:  # noqa: BLE001 - a link is not worth a failure
        log.debug("experiment of MLflow run %s not found", run_id, exc_info=True)
        return None


def _version_run(settings, model: str, version: str | None) -> str | None:
    if not version or "mlflow" not in sys.modules:
        return None
    try:
        from retrain_lib.store import registry

        return (
            registry.get_client(settings.tracking_uri, settings.registry_uri)
            .get_model_version(model, str(version))
            .run_id
        )
    except Exception:  # noqa: BLE001 - a link is not worth a failure
        log.debug("run of %s version %s not found", model, version, exc_info=True)
        return None


def links(
    settings,
    model: str,
    context: dict | None = None,
    *,
    mlflow_run_id: str | None = None,
    version: str | None = None,
    monitor: dict | None = None,
    as_of: str | None = None,
    other_tasks: tuple[tuple[str, str], ...] = (),
    kind: str | None = None,
):
    """Task log of the running task, MLflow run (``mlflow_run_id`` or the run of model
    ``version``) and drift report: the report of ``monitor`` (a monitor result), else of the
    latest monitor check up to ``as_of`` (ledger). ``other_tasks`` are ``(label, task_id)``
    of tasks of the same run shown first (e.g. where an approval is answered); ``kind`` the
    alert's, whose runbook is linked last."""
    from retrain_lib.pipeline.alert_links import (
        latest_monitor_report,
        mlflow_run_url,
        runbook_url,
        task_log_url,
    )
    from retrain_lib.pipeline.alert_payload import Links

    p = settings.platform
    dag_id, run_id, running = task_ids(context)
    mlflow_run_id = mlflow_run_id or _version_run(settings, model, version)
    report_run, report_path = None, None
    if monitor is not None:
        report_run, report_path = monitor.get("mlflow_run_id"), monitor.get("drift_report_path")
    else:
        try:
            from retrain_lib.store.audit import Ledger

            latest = latest_monitor_report(Ledger.from_settings(settings).records(model), as_of)
        except Exception:  # noqa: BLE001
            log.debug("latest drift report of %s not found", model, exc_info=True)
            latest = None
        if latest:
            report_run, report_path = latest["mlflow_run_id"], latest["drift_report"]
    report_url = None
    if report_run and report_path:
        exp = _experiment_of(settings, report_run)
        if exp:
            report_url = mlflow_run_url(p.mlflow_ui_url, report_run, exp, "monitor/drift_report.html")
    extra = tuple(
        (label, url) for label, task in other_tasks if (url := task_log_url(p.airflow_base_url, dag_id, run_id, task))
    )
    return Links(
        task_log=task_log_url(p.airflow_base_url, dag_id, run_id, running),
        mlflow_run=mlflow_run_url(p.mlflow_ui_url, mlflow_run_id, _experiment_of(settings, mlflow_run_id)),
        drift_report=report_url,
        drift_report_path=report_path if not report_url else None,
        extra=extra,
        runbook=runbook_url(p.airflow_base_url, kind) if kind else None,
    )


# -----------------------------------------------------------------------------------------
# Sending
# -----------------------------------------------------------------------------------------


def send(alerts_cfg, settings, kind: str, build: Callable[..., Any], *, context: dict | None = None) -> str:
    """Build (``build(severity=...)`` returns a :class:`retrain_lib.pipeline.alert_payload.Alert`) and send one
    alert of ``kind`` per the model's ``alerts`` config. Returns ``sent``, ``suppressed``,
    ``failed`` or ``disabled``; never raises."""
    try:
        from retrain_lib.pipeline import alert_delivery

        if not alerts_cfg.wants(kind):
            return alert_delivery.DISABLED
        alert = build(severity=alerts_cfg.severity_of(kind))
        notifier = SlackAlertNotifier.for_model(alerts_cfg, settings)
        if notifier is None:
            log.info("alert (no alerts.slack_conn_id, not sent): %s", alert.text)
            return alert_delivery.DISABLED
        outcome = notifier.deliver(alert)
        if outcome != alert_delivery.FAILED and context is not None:
            mark_reported(context)
        return outcome
    except Exception:  # noqa: BLE001 - alerting must never change the task's outcome
        log.exception("the %s alert could not be built or sent", kind)
        return "failed"


def alert(
    model: str,
    cfg_dir: str,
    alerts_cfg,
    kind: str,
    build: Callable[..., Any],
    *,
    context: dict | None = None,
    **link_args,
) -> str:
    """One alert from a task: ``build(links, severity)`` returns the
    :class:`retrain_lib.pipeline.alert_payload.Alert`; ``link_args`` go to :func:`links`. Never raises."""
    try:
        if not alerts_cfg.wants(kind):
            return "disabled"
        from retrain_lib.core.settings import load_settings

        settings = load_settings(cfg_dir)
        link = links(settings, model, context, kind=kind, **link_args)
        return send(alerts_cfg, settings, kind, lambda severity: build(link, severity), context=context)
    except Exception:  # noqa: BLE001 - alerting must never change the task's outcome
        log.exception("the %s alert of %s could not be sent", kind, model)
        return "failed"


def mark_reported(context: dict) -> None:
    """This task try's failure is explained by the alert just sent: the failure callback skips it."""
    dag_id, run_id, task_id = task_ids(context)
    ti = context.get("ti")
    with _lock:
        _reported.add((dag_id, run_id, task_id, getattr(ti, "try_number", None)))


def _was_reported(context: dict) -> bool:
    dag_id, run_id, task_id = task_ids(context)
    ti = context.get("ti")
    with _lock:
        return (dag_id, run_id, task_id, getattr(ti, "try_number", None)) in _reported


class TaskFailureAlert(BaseNotifier):
    """``on_failure_callback`` of every task of a model's DAGs (a notifier): Airflow calls it
    once a task has failed for good (after its retries). Sends a ``failure`` alert with the
    DAG, task, run, try number, exception and log links per the model's ``alerts`` config
    (through :class:`~retrain_airflow.slack_notifier.SlackAlertNotifier`), unless the task
    already sent a specific alert for that failure (e.g. a data validation failure)."""

    def __init__(self, model: str, cfg_dir: str, alerts_cfg, **kwargs):
        super().__init__(**kwargs)
        self.model, self.cfg_dir, self.alerts_cfg = model, cfg_dir, alerts_cfg
        self.__name__ = f"task_failure_alert_{model}"

    def render_template_fields(self, context, jinja_env=None) -> None:
        """No template fields: nothing to render (so no Jinja environment either, which the
        serialized DAG of a DAG-level callback under ``dag.test()`` does not have)."""

    def notify(self, context) -> None:
        try:
            if _was_reported(context):
                log.info("failure already alerted by the task itself; no second alert")
                return
            from retrain_lib.pipeline import alerts

            dag_id, run_id, task_id = task_ids(context)
            ti = context.get("ti")
            params = context.get("params") or {}
            as_of = params.get("as_of") if hasattr(params, "get") else None
            max_tries = getattr(ti, "max_tries", None)
            alert(
                self.model,
                self.cfg_dir,
                self.alerts_cfg,
                "failure",
                lambda link, severity: alerts.task_failure(
                    self.model,
                    dag_id=dag_id,
                    task_id=task_id,
                    run_id=run_id,
                    try_number=getattr(ti, "try_number", None),
                    max_tries=max_tries if isinstance(max_tries, int) else None,
                    exception=context.get("exception"),
                    as_of=as_of,
                    links=link,
                    severity=severity,
                ),
                context=context,
                as_of=as_of,
            )
        except Exception:  # noqa: BLE001 - a callback must not raise
            log.exception("the task failure alert of %s could not be sent", self.model)
