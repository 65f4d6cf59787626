"""What every task of a model's DAGs shares: running a lifecycle step so that outcomes a retry
cannot fix fail the task at once (:func:`fail_fast`), the day a run acts for
(:func:`run_as_of`), and sending one of the model's Slack alerts (:func:`model_alert`).

:class:`ModelTasks` binds these to one model and DAG, so a task body reads
``env.run(step, ...)`` and ``env.alert(kind, build, ...)``. Nothing heavy is imported at
module level (the DAG factory imports this module at parse time).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from retrain_airflow import alerting
from retrain_airflow.data_watchers import event_day
from retrain_lib.core.config import ModelConfig


def fail_fast(fn, *args, **kwargs):
    """Run a lifecycle step; outcomes a retry cannot fix fail the task without retries."""
    from airflow.sdk.exceptions import AirflowFailException

    from retrain_lib.core.errors import ConfigError, DataError, RegistryError

    try:
        return fn(*args, **kwargs)
    except (ConfigError, DataError, RegistryError) as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def run_as_of(context: Mapping[str, Any]) -> str:
    """The day a run acts for: ``params.as_of``; else the latest day named by the Asset events
    that triggered the run (``as_of`` in the extra a data pipeline emits, or the day a watcher's
    trigger fired for: :func:`retrain_airflow.data_watchers.event_day`); else the run's logical
    date; else its run_after. A watcher's event without a readable day fails the task."""
    as_of = (context.get("params") or {}).get("as_of")
    if as_of:
        return str(as_of)[:10]
    try:
        named = [
            event_day(event.extra)
            for events in (context.get("triggering_asset_events") or {}).values()
            for event in events
        ]
    except ValueError as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(str(exc)) from exc
    days = [day for day in named if day]
    if days:
        return max(days)
    when = context.get("logical_date") or context["dag_run"].run_after
    return when.date().isoformat()


def task_settings(cfg_dir: str):
    """The platform settings of the config directory ``cfg_dir``, loaded when a task runs."""
    from retrain_lib.core.settings import load_settings

    return load_settings(cfg_dir)


def model_alert(
    cfg: ModelConfig,
    cfg_dir: str,
    kind: str,
    build: Callable[..., Any],
    *args,
    context: dict | None = None,
    link_args: Mapping[str, Any] | None = None,
    **kwargs,
) -> str:
    """Send the ``kind`` alert of ``cfg``'s model per its ``alerts`` config. The alert is
    ``build(model, *args, links=..., severity=..., **kwargs)`` (a builder of
    :mod:`retrain_lib.pipeline.alerts`), built only when ``kind`` is wanted; ``link_args`` go to
    :func:`retrain_airflow.alerting.links`. Returns the outcome; never raises."""
    name = cfg.name
    return alerting.alert(
        name,
        cfg_dir,
        cfg.alerts,
        kind,
        lambda link, severity: build(name, *args, links=link, severity=severity, **kwargs),
        context=context,
        **(link_args or {}),
    )


@dataclass(frozen=True)
class ModelTasks:
    """The model, config directory and DAG the tasks of one DAG run for."""

    cfg: ModelConfig
    cfg_dir: str
    dag_id: str

    @property
    def name(self) -> str:
        return self.cfg.name

    def actor(self, context: Mapping[str, Any]) -> str:
        """``<dag_id>/<run_id>``: who acted, as the ledger records it."""
        return f"{self.dag_id}/{context['run_id']}"

    def run(self, fn, *args, **kwargs):
        """``fn(model, *args, settings=..., **kwargs)`` through :func:`fail_fast`; the settings
        are loaded first (a settings error is retried like any other)."""
        settings = task_settings(self.cfg_dir)
        return fail_fast(fn, self.name, *args, settings=settings, **kwargs)

    def alert(self, kind: str, build: Callable[..., Any], *args, **kwargs) -> str:
        """:func:`model_alert` of this model."""
        return model_alert(self.cfg, self.cfg_dir, kind, build, *args, **kwargs)
