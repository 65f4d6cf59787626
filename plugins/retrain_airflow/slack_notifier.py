"""The platform's Slack alerts as an Airflow notifier: :class:`SlackAlertNotifier`, a
``BaseNotifier`` (built like the Slack provider's own ``SlackWebhookNotifier``) that posts an
:class:`~retrain_lib.pipeline.alert_payload.Alert` (Block Kit ``blocks`` and ``text``) through
``apache-airflow-providers-slack``'s hooks, with the platform's de-duplication store and
retries (:func:`retrain_lib.pipeline.alert_delivery.deliver`).

Every alert of the model DAGs goes out through it (:func:`retrain_airflow.alerting.send`), and it
is an ``on_failure_callback`` of its own for any DAG or task::

    from retrain_airflow.slack_notifier import SlackAlertNotifier

    @task(on_failure_callback=SlackAlertNotifier(slack_conn_id="slack_alerts", model="churn"))
    def score(): ...

The connection decides how it posts: a ``slackwebhook`` connection with ``SlackWebhookHook``, a
``slack`` token connection with ``SlackHook`` to ``channel``. A connection that does not exist
is logged once per process and the alert skipped. It never raises: alerting never changes a
task's outcome. Nothing heavy is imported at module level (the DAG factory imports this module
at parse time; the provider's hooks and the platform's payload builders load when an alert is sent).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from airflow.sdk.bases.notifier import BaseNotifier

log = logging.getLogger(__name__)

HTTP_TIMEOUT_S = 10
_missing_logged: set[str] = set()
_lock = threading.Lock()


def _log_once(conn_id: str, message: str, *args) -> None:
    with _lock:
        if conn_id in _missing_logged:
            return
        _missing_logged.add(conn_id)
    log.warning(message, *args)


def slack_post(conn_id: str, channel: str | None = None) -> Callable[[dict[str, Any]], Any] | None:
    """A ``post(payload)`` for the Airflow connection ``conn_id``, or ``None`` when the
    connection does not exist (logged once per process). Each call of ``post`` is one HTTP
    request; retries are :func:`retrain_lib.pipeline.alert_delivery.deliver`'s."""
    from airflow.sdk import BaseHook

    try:
        conn = BaseHook.get_connection(conn_id)
    except Exception as exc:  # noqa: BLE001 - AirflowNotFoundException or an unreachable secrets backend
        _log_once(
            conn_id,
            "Slack connection %r is not available (%s: %s); alerts are logged, not sent",
            conn_id,
            type(exc).__name__,
            exc,
        )
        return None
    if conn.conn_type == "slack":
        if not channel:
            _log_once(
                conn_id,
                "Slack connection %r is a token connection but alerts.channel is not set; alerts are logged, not sent",
                conn_id,
            )
            return None
        from airflow.providers.slack.hooks.slack import SlackHook

        hook = SlackHook(slack_conn_id=conn_id, timeout=HTTP_TIMEOUT_S, retry_handlers=[])

        def post_api(payload: dict[str, Any]) -> Any:
            return hook.client.chat_postMessage(channel=channel, **payload)  # raises SlackApiError unless ok

        return post_api
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=HTTP_TIMEOUT_S, retry_handlers=[])

    def post_webhook(payload: dict[str, Any]) -> Any:
        return hook.send_dict(payload)  # raises unless Slack answers 200

    return post_webhook


def task_ids(context: dict | None) -> tuple[str | None, str | None, str | None]:
    """``(dag_id, run_id, task_id)`` of the task instance an Airflow context is about."""
    if not context:
        return None, None, None
    ti = context.get("ti") or context.get("task_instance")
    dag = context.get("dag")
    dag_id = getattr(ti, "dag_id", None) or getattr(dag, "dag_id", None)
    run_id = context.get("run_id") or getattr(ti, "run_id", None)
    return dag_id, run_id, getattr(ti, "task_id", None)


def _failure_runbook() -> str | None:
    """The runbook of a task failure on the platform's Airflow UI (``None`` when unknown)."""
    try:
        from retrain_lib.core.settings import load_settings
        from retrain_lib.pipeline.alert_links import runbook_url

        return runbook_url(load_settings().platform.airflow_base_url, "failure")
    except Exception:  # noqa: BLE001 - a link is not worth a failure
        log.debug("no runbook link for the failure alert", exc_info=True)
        return None


class SlackAlertNotifier(BaseNotifier):
    """Slack alerts of the platform, as an Airflow notifier.

    :param slack_conn_id: Airflow connection: ``slackwebhook`` (the webhook URL in its
        password) or ``slack`` (a bot token; then ``channel`` is needed).
    :param channel: channel of a token connection; a webhook posts to its own channel.
    :param model: the model the alerts are about (as a callback: default the DAG id).
    :param severity: colour of the callback's failure alert (green, yellow, red; default red).
    :param dedupe_minutes: the same alert (kind, model, failing items) is not sent again within
        this many minutes; needs ``database_url``. 0 turns de-duplication off.
    :param retries: extra attempts when Slack does not answer 200, waiting ``retry_seconds``,
        then twice as long each time.
    :param database_url: the platform database whose ``retrain_alerts`` table remembers what was
        sent (shared by every task process); ``None``: no de-duplication.

    :meth:`deliver` sends one alert and returns its outcome (``sent``, ``suppressed``,
    ``failed``, ``disabled``); called as a callback (:meth:`notify`) it sends the failure alert
    of the task in the context (DAG, task, run, try, exception, log link)."""

    template_fields = ("slack_conn_id", "channel", "model")

    def __init__(
        self,
        *,
        slack_conn_id: str,
        channel: str | None = None,
        model: str | None = None,
        severity: str | None = None,
        dedupe_minutes: float = 60,
        retries: int = 3,
        retry_seconds: float = 2.0,
        database_url: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.slack_conn_id = slack_conn_id
        self.channel = channel
        self.model = model
        self.severity = severity
        self.dedupe_minutes = dedupe_minutes
        self.retries = retries
        self.retry_seconds = retry_seconds
        self.database_url = database_url

    @classmethod
    def for_model(cls, alerts_cfg, settings) -> SlackAlertNotifier | None:
        """The notifier of a model's ``alerts`` config (connection and channel, else the
        platform's; de-duplication in the platform database), or ``None`` when no connection is
        configured."""
        conn_id = alerts_cfg.slack_conn_id or settings.platform.alerts.slack_conn_id
        if not conn_id:
            return None
        return cls(
            slack_conn_id=conn_id,
            channel=alerts_cfg.channel or settings.platform.alerts.channel,
            dedupe_minutes=alerts_cfg.dedupe_minutes,
            retries=alerts_cfg.retries,
            retry_seconds=alerts_cfg.retry_seconds,
            database_url=settings.database_url,
        )

    def deliver(self, alert) -> str:
        """Post ``alert`` (a :class:`~retrain_lib.pipeline.alert_payload.Alert`): ``sent``,
        ``suppressed`` (the same alert went out within ``dedupe_minutes``), ``failed`` (every
        attempt failed, each one logged) or ``disabled`` (the connection does not exist).
        Never raises."""
        from retrain_lib.pipeline import alert_delivery

        try:
            post = slack_post(self.slack_conn_id, self.channel)
            if post is None:
                log.info("alert (connection %r missing, not sent): %s", self.slack_conn_id, alert.text)
                return alert_delivery.DISABLED
            store = alert_delivery.DedupeStore(self.database_url) if self.database_url else None
            return alert_delivery.deliver(
                alert,
                post,
                store=store,
                dedupe_minutes=self.dedupe_minutes,
                retries=self.retries,
                retry_seconds=self.retry_seconds,
            )
        except Exception:  # noqa: BLE001 - alerting must never change the task's outcome
            log.exception("the %s alert of %s could not be sent", getattr(alert, "kind", "?"), self.model)
            return alert_delivery.FAILED

    def failure_alert(self, context: dict):
        """The ``failure`` alert of the task instance of ``context``, with its log link."""
        from retrain_lib.pipeline import alerts
        from retrain_lib.pipeline.alert_payload import Links

        dag_id, run_id, task_id = task_ids(context)
        ti = context.get("ti") or context.get("task_instance")
        max_tries = getattr(ti, "max_tries", None)
        try:
            log_url = getattr(ti, "log_url", None)
        except Exception:  # noqa: BLE001 - a link is not worth a failure
            log_url = None
        return alerts.task_failure(
            self.model or dag_id or "?",
            dag_id=dag_id or "?",
            task_id=task_id or "?",
            run_id=run_id or "?",
            try_number=getattr(ti, "try_number", None),
            max_tries=max_tries if isinstance(max_tries, int) else None,
            exception=context.get("exception"),
            links=Links(
                task_log=log_url if isinstance(log_url, str) else None,
                runbook=_failure_runbook(),
            ),
            severity=self.severity,
        )

    def notify(self, context) -> None:
        """As ``on_failure_callback``: the failure alert of the task in ``context``. Never raises."""
        try:
            self.deliver(self.failure_alert(context))
        except Exception:  # noqa: BLE001 - a callback must not raise
            log.exception("the failure alert of %s could not be sent", self.model or task_ids(context)[0])
