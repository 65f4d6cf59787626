"""A deferrable watch on a model's data source: :class:`NewPartitionTrigger` runs on Airflow's
triggerer (no worker slot) and fires one event when a new daily partition lands, with the
day in its payload. It is the trigger of an ``AssetWatcher`` on the model's ``<model>.new_data``
Asset (:func:`retrain_airflow.data_watchers.monitor_watchers`), so each event becomes an
Asset event whose extra carries ``{"payload": {"day": ...}}`` and the scheduler starts the
monitor, which checks that day (:func:`retrain_airflow.data_watchers.event_day`).

What it has announced survives a restart of the triggerer: the last day seen is kept in the
Asset's state store (Airflow's per-asset key-value store, in the metadata database). On its
very first start the trigger only takes note of the newest day already there, so a backlog of
old partitions starts no runs; when several days land between two looks, one event names the
newest (``days`` lists them all): the monitor's window covers the others. A day older than
the last one seen (a late re-delivery) starts nothing: the next check's window includes it.

:class:`NewPartitionSensor` is the same wait as a task (deferred, for a DAG that must wait for
a day before going on).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

log = logging.getLogger(__name__)

STATE_KEY = "new_partition"


def _lister(source: dict[str, Any], cfg_dir: str):
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.partition_watch import PartitionLister, WatchedSource

    return PartitionLister(WatchedSource.from_dict(source), load_settings(cfg_dir))


def _list_days(lister, after: str | None) -> tuple[str, list[str]]:
    days = lister.days_after(dt.date.fromisoformat(after) if after else None)
    return lister.where(), [d.isoformat() for d in days]


class NewPartitionTrigger(BaseEventTrigger):
    """Fires ``{"day", "days", "source", "model"}`` for every look (each ``poll_s``) that finds
    days later than the last one seen in ``source`` (a
    :class:`retrain_lib.store.partition_watch.WatchedSource` as a dict). ``after`` is the day to
    start from when no state is stored (None: the newest day already there). With ``once`` it
    ends after its first event (a sensor's wait); otherwise it runs for good (a watcher)."""

    def __init__(
        self,
        model: str,
        source: dict[str, Any],
        cfg_dir: str,
        poll_s: float = 60.0,
        after: str | None = None,
        once: bool = False,
    ):
        super().__init__()
        self.model, self.source, self.cfg_dir = model, dict(source), cfg_dir
        self.poll_s, self.after, self.once = float(poll_s), after, once
        self._memory: dict[str, Any] = {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "retrain_airflow.partition_triggers.NewPartitionTrigger",
            {
                "model": self.model,
                "source": self.source,
                "cfg_dir": self.cfg_dir,
                "poll_s": self.poll_s,
                "after": self.after,
                "once": self.once,
            },
        )

    # ------------------------------------------------------------------ state across restarts

    async def _load(self) -> Any:
        store = getattr(self, "asset_state_store", None)
        if store is None or self.once:  # a sensor's wait keeps its start day in its arguments
            return self._memory.get(STATE_KEY)
        return await store.aget(STATE_KEY)

    async def _save(self, value: dict[str, Any]) -> None:
        self._memory[STATE_KEY] = value
        store = getattr(self, "asset_state_store", None)
        if store is not None and not self.once:
            await store.aset(STATE_KEY, value)

    async def _start_day(self, lister) -> str | None:
        """The last day already announced (or taken note of) for this source."""
        where = await asyncio.to_thread(lister.where)
        state = await self._load()
        if isinstance(state, dict) and state.get("where") == where:
            return state.get("last_day")
        if self.after is not None:
            last: str | None = self.after
        else:  # first start on this source: the days already there are history, not news
            _, days = await asyncio.to_thread(_list_days, lister, None)
            last = days[-1] if days else None
            self.log.info("%s: watching %s from %s", self.model, where, last or "its first partition")
        await self._save({"where": where, "last_day": last})
        return last

    async def run(self) -> AsyncIterator[TriggerEvent]:
        lister = await asyncio.to_thread(_lister, self.source, self.cfg_dir)
        last: str | None = None
        started = False
        failures = 0
        while True:
            try:
                if not started:
                    last = await self._start_day(lister)
                    started = True
                where, days = await asyncio.to_thread(_list_days, lister, last)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a source down for a while must not end the watch
                failures += 1
                log_at = self.log.warning if failures == 1 or failures % 60 == 0 else self.log.debug
                log_at("%s: cannot list new partitions (%d look(s) in a row): %s", self.model, failures, exc)
                await asyncio.sleep(self.poll_s)
                continue
            if days:
                yield TriggerEvent({"model": self.model, "day": days[-1], "days": days, "source": where})
                last = days[-1]
                # after the event: a crash in between announces the day again rather than never
                await self._save({"where": where, "last_day": last})
                if self.once:
                    return
            await asyncio.sleep(self.poll_s)


class NewPartitionSensor(BaseOperator):
    """Waits (deferred, on the triggerer) for a partition of ``source`` later than ``after``
    (templated; a day YYYY-MM-DD, or None for "newer than what is there now") and returns the
    trigger's payload (``day``, ``days``, ``source``)."""

    template_fields = ("after",)

    def __init__(
        self,
        *,
        model: str,
        source: dict[str, Any],
        cfg_dir: str,
        after: str | None = None,
        poll_s: float = 60.0,
        timeout_s: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model, self.source, self.cfg_dir, self.after = model, dict(source), cfg_dir, after
        self.poll_s, self.timeout_s = poll_s, timeout_s

    def execute(self, context):
        after = str(self.after)[:10] if self.after else None
        self.defer(
            trigger=NewPartitionTrigger(self.model, self.source, self.cfg_dir, self.poll_s, after=after, once=True),
            method_name="execute_complete",
            timeout=dt.timedelta(seconds=self.timeout_s) if self.timeout_s else None,
        )

    def execute_complete(self, context, event: dict[str, Any]) -> dict[str, Any]:
        return event
