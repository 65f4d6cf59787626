"""What starts a monitor run when data lands (``schedule.new_data`` of a model config): the
``AssetWatcher``s of the model's ``<model>.new_data`` Asset, and the day an Asset event names.

- ``partitions``: :class:`retrain_airflow.partition_triggers.NewPartitionTrigger` watches the
  data source and fires ``{"day": "YYYY-MM-DD", "days": [...], "source": ...}``;
- ``queue``: Airflow's ``MessageQueueTrigger`` (common-messaging provider) on the Redis
  provider's ``redis+pubsub`` scheme listens on a channel (default
  ``retrain.<model>.new_data``) for messages ``{"day": "YYYY-MM-DD"}``.

Each event becomes an Asset event with extra ``{"from_trigger": true, "payload": ...}``;
:func:`event_day` reads the day back for the monitor's ``as_of``.

Parse-time cost: nothing is imported unless the model turns a watcher on.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from retrain_lib.core.config import ModelConfig

DAY_KEYS = ("day", "as_of")


def queue_channel(cfg: ModelConfig) -> str | None:
    """The channel the model's queue watcher listens on (None: no queue watcher)."""
    queue = cfg.schedule.new_data.queue
    if queue is None:
        return None
    return queue.channel or f"retrain.{cfg.name}.new_data"


def monitor_watchers(cfg: ModelConfig, cfg_dir: Path | str) -> list:
    """The ``AssetWatcher``s ``cfg.schedule.new_data`` asks for (none by default)."""
    watch = cfg.schedule.new_data
    if watch.partitions is None and watch.queue is None:
        return []
    from airflow.sdk import AssetWatcher

    watchers = []
    if watch.partitions is not None:
        from retrain_airflow.partition_triggers import NewPartitionTrigger
        from retrain_lib.store.partition_watch import WatchedSource

        trigger = NewPartitionTrigger(
            cfg.name, WatchedSource.of(cfg.data).to_dict(), str(cfg_dir), watch.partitions.poll_seconds
        )
        watchers.append(AssetWatcher(name=f"{cfg.name}__new_partition", trigger=trigger))
    if watch.queue is not None:
        from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger

        trigger = MessageQueueTrigger(
            scheme=watch.queue.scheme,
            channels=[queue_channel(cfg)],
            redis_conn_id=watch.queue.conn_id,
            poll_interval=watch.queue.poll_seconds,
        )
        watchers.append(AssetWatcher(name=f"{cfg.name}__queue", trigger=trigger))
    return watchers


def _as_day(value: Any, where: str) -> str:
    try:
        return dt.date.fromisoformat(str(value).strip()[:10]).isoformat()
    except ValueError:
        raise ValueError(
            f'{where}: {value!r} is not a day; publish/emit YYYY-MM-DD, e.g. {{"day": "2026-01-29"}}'
        ) from None


def _message_day(data: Any) -> Any:
    """The day in a queue message's body: ``{"day": ...}`` (or ``as_of``) as JSON, or a bare day."""
    if isinstance(data, (bytes, bytearray)):
        data = data.decode("utf-8", "replace")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            return data  # a bare "2026-01-29"
    if isinstance(data, Mapping):
        return next((data[k] for k in DAY_KEYS if data.get(k)), None)
    return data if isinstance(data, str) else None


def event_day(extra: Mapping[str, Any] | None) -> str | None:
    """The day an Asset event asks the monitor to check, or None when it names none.

    ``{"as_of": day}`` (a producing DAG's or the REST API's extra); ``{"payload": {"day": day}}``
    (:class:`~retrain_airflow.partition_triggers.NewPartitionTrigger`); ``{"payload": {"data":
    "{\\"day\\": ...}"}}`` (a queue message). An event from a watcher whose payload has no
    readable day raises ``ValueError`` naming what was received: a run for a guessed day would
    hide a publisher's mistake."""
    extra = extra or {}
    if extra.get("as_of"):
        return _as_day(extra["as_of"], "asset event extra as_of")
    payload = extra.get("payload")
    if payload is None:
        return None
    if isinstance(payload, Mapping):
        if any(payload.get(k) for k in DAY_KEYS):
            return _as_day(next(payload[k] for k in DAY_KEYS if payload.get(k)), "asset event payload")
        if "data" in payload:
            channel = payload.get("channel") or "the queue"
            day = _message_day(payload["data"])
            if day is None:
                raise ValueError(
                    f"message on {channel} names no day: {str(payload['data'])[:200]!r}; "
                    'publish {"day": "YYYY-MM-DD"}'
                )
            return _as_day(day, f"message on {channel}")
    if extra.get("from_trigger"):
        raise ValueError(f"asset event from a watcher names no day: {str(payload)[:200]!r}")
    return None
