"""A deferrable wait on live traffic: the rollout DAG's steps wait in the triggerer (no worker
slot held) until the serving gateway's prediction log holds enough predictions per arm and
the step's minimum time has passed."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import AsyncIterator
from typing import Any

from airflow.sdk import BaseOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent


def _counts(model: str, since: str, cfg_dir: str) -> dict[str, int]:
    from retrain_lib.core.settings import load_settings
    from retrain_lib.pipeline.rollout_run import prediction_counts

    return prediction_counts(model, since, settings=load_settings(cfg_dir))


class PredictionsTrigger(BaseTrigger):
    """Fires when every key of ``need`` (e.g. ``{"champion": 200, "shadow": 200}`` or
    ``{"challenger_labelled": 50}``) has at least that count since ``since`` and
    ``min_seconds`` have passed; fires ``timeout`` after ``timeout_s``."""

    def __init__(
        self,
        model: str,
        since: str,
        need: dict[str, int],
        min_seconds: float,
        timeout_s: float,
        cfg_dir: str,
        poll_s: float = 5.0,
    ):
        super().__init__()
        self.model, self.since, self.need = model, since, dict(need)
        self.min_seconds, self.timeout_s, self.cfg_dir, self.poll_s = min_seconds, timeout_s, cfg_dir, poll_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "retrain_airflow.triggers.PredictionsTrigger",
            {
                "model": self.model,
                "since": self.since,
                "need": self.need,
                "min_seconds": self.min_seconds,
                "timeout_s": self.timeout_s,
                "cfg_dir": self.cfg_dir,
                "poll_s": self.poll_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        since = dt.datetime.fromisoformat(self.since)
        while True:
            counts = await asyncio.to_thread(_counts, self.model, self.since, self.cfg_dir)
            waited = (dt.datetime.now(dt.UTC) - since).total_seconds()
            if waited >= self.min_seconds and all(counts.get(k, 0) >= n for k, n in self.need.items()):
                yield TriggerEvent({"status": "ok", "counts": counts, "waited_s": waited})
                return
            if waited >= self.timeout_s:
                yield TriggerEvent({"status": "timeout", "counts": counts, "waited_s": waited})
                return
            await asyncio.sleep(self.poll_s)


class PredictionsSensor(BaseOperator):
    """Defers to :class:`PredictionsTrigger`; ``since`` is templated (an XCom of the step that
    started the wait). A timeout fails the task with the counts reached."""

    template_fields = ("since", "need", "min_seconds", "timeout_s")

    def __init__(
        self,
        *,
        model: str,
        since: str,
        need: dict[str, int | str],
        min_seconds: float | str,
        timeout_s: float | str,
        cfg_dir: str,
        poll_s: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model, self.since, self.need = model, since, need
        self.min_seconds, self.timeout_s, self.cfg_dir = min_seconds, timeout_s, cfg_dir
        self.poll_s = poll_s if poll_s is not None else float(os.environ.get("RETRAIN_ROLLOUT_POLL_S", "5"))

    def execute(self, context):
        # ``need`` and ``min_seconds`` may be templates of the run's params: rendered as text.
        self.need = {k: int(float(v)) for k, v in self.need.items()}
        self.min_seconds, self.timeout_s = float(self.min_seconds), float(self.timeout_s)
        self.defer(
            trigger=PredictionsTrigger(
                self.model, self.since, self.need, self.min_seconds, self.timeout_s, self.cfg_dir, self.poll_s
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict[str, Any]):
        from airflow.sdk.exceptions import AirflowFailException

        if event.get("status") != "ok":
            raise AirflowFailException(
                f"{self.model}: live traffic did not reach {self.need} within "
                f"{float(self.timeout_s):g} s (counts {event.get('counts')}); is the gateway serving?"
            )
        return event["counts"]


def _canary(model: str, started: dict, step: dict, cfg_dir: str) -> dict:
    from retrain_lib.core.settings import load_settings
    from retrain_lib.pipeline.rollout_run import canary_status

    return canary_status(model, started, step, settings=load_settings(cfg_dir))


class CanaryTrigger(BaseTrigger):
    """Re-runs the canary step's sequential test every ``poll_s`` until it decides (promote or
    rollback) and ``min_seconds`` have passed; ``timeout`` after ``timeout_s``."""

    def __init__(
        self,
        model: str,
        started: dict,
        step: dict,
        min_seconds: float,
        timeout_s: float,
        cfg_dir: str,
        poll_s: float = 5.0,
    ):
        super().__init__()
        self.model, self.started, self.step = model, dict(started), dict(step)
        self.min_seconds, self.timeout_s, self.cfg_dir, self.poll_s = min_seconds, timeout_s, cfg_dir, poll_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "retrain_airflow.triggers.CanaryTrigger",
            {
                "model": self.model,
                "started": self.started,
                "step": self.step,
                "min_seconds": self.min_seconds,
                "timeout_s": self.timeout_s,
                "cfg_dir": self.cfg_dir,
                "poll_s": self.poll_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        since = dt.datetime.fromisoformat(self.step["since"])
        while True:
            status = await asyncio.to_thread(_canary, self.model, self.started, self.step, self.cfg_dir)
            waited = (dt.datetime.now(dt.UTC) - since).total_seconds()
            if status["decision"] == "rollback" or (status["decision"] == "promote" and waited >= self.min_seconds):
                yield TriggerEvent({"status": "ok", "canary": status, "waited_s": waited})
                return
            if waited >= self.timeout_s:
                yield TriggerEvent({"status": "timeout", "canary": status, "waited_s": waited})
                return
            await asyncio.sleep(self.poll_s)


class CanarySensor(BaseOperator):
    """Waits (deferred) until the sequential test of a canary step decides; returns its status.
    ``started`` and ``step`` are templated XComs. A timeout returns a rollback decision: a step
    that cannot be judged does not promote."""

    template_fields = ("started", "step", "min_seconds", "timeout_s")

    def __init__(
        self,
        *,
        model: str,
        started,
        step,
        min_seconds: float | str,
        timeout_s: float | str,
        cfg_dir: str,
        poll_s: float | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.model, self.started, self.step = model, started, step
        self.min_seconds, self.timeout_s, self.cfg_dir = min_seconds, timeout_s, cfg_dir
        self.poll_s = poll_s if poll_s is not None else float(os.environ.get("RETRAIN_ROLLOUT_POLL_S", "5"))

    def execute(self, context):
        # may be templates of the run's params
        self.min_seconds, self.timeout_s = float(self.min_seconds), float(self.timeout_s)
        self.defer(
            trigger=CanaryTrigger(
                self.model, self.started, self.step, self.min_seconds, self.timeout_s, self.cfg_dir, self.poll_s
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context, event: dict[str, Any]):
        status = dict(event["canary"])
        if event.get("status") != "ok":
            status.update(
                decision="rollback", reason=f"undecided after {event.get('waited_s', 0):.0f} s: {status.get('reason')}"
            )
        return status


def _guard_cache():
    from retrain_lib.pipeline.guard_run import GuardCache

    return GuardCache()


def _guard_check(model: str, start: dict, cfg_dir: str, cache) -> dict:
    from retrain_lib.core.settings import load_settings
    from retrain_lib.pipeline.guard import GuardStart
    from retrain_lib.pipeline.guard_run import check_guard

    return check_guard(model, GuardStart.from_xcom(start), settings=load_settings(cfg_dir), cache=cache)


class GuardTrigger(BaseTrigger):
    """Looks at a new champion's live traffic every ``poll_s`` (the config's
    ``guard.interval_s``) on the triggerer until the guard's decision is final (rollback,
    alarm, clean at the end of ``guard.minutes``, superseded). The models it loads and the
    scores of requests already rescored are kept for the trigger's life."""

    def __init__(self, model: str, start: dict, cfg_dir: str, poll_s: float = 30.0):
        super().__init__()
        self.model, self.start, self.cfg_dir, self.poll_s = model, dict(start), cfg_dir, poll_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "retrain_airflow.triggers.GuardTrigger",
            {"model": self.model, "start": self.start, "cfg_dir": self.cfg_dir, "poll_s": self.poll_s},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        cache = await asyncio.to_thread(_guard_cache)  # imports off the event loop
        looks = 0
        while True:
            status = await asyncio.to_thread(_guard_check, self.model, self.start, self.cfg_dir, cache)
            looks += 1
            if status["decision"]["action"] != "continue":
                yield TriggerEvent({"status": "ok", "looks": looks, **status})
                return
            await asyncio.sleep(self.poll_s)


class GuardSensor(BaseOperator):
    """The guard's check: defers to :class:`GuardTrigger` (no worker slot held while it
    watches) and returns the final look (``decision``, ``facts``, ``looks``). ``start`` is
    templated (the XCom of ``start_guard``)."""

    template_fields = ("start",)

    def __init__(self, *, model: str, start, minutes: float, interval_s: float, cfg_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.model, self.start, self.minutes, self.interval_s, self.cfg_dir = model, start, minutes, interval_s, cfg_dir

    def execute(self, context):
        import datetime as dt

        self.defer(
            trigger=GuardTrigger(self.model, self.start, self.cfg_dir, self.interval_s),
            method_name="execute_complete",
            # the trigger ends the guard itself at guard.minutes; this only bounds a stuck one
            timeout=dt.timedelta(minutes=float(self.start.get("minutes") or self.minutes) * 2 + 10),
        )

    def execute_complete(self, context, event: dict[str, Any]):
        return {k: event[k] for k in ("decision", "facts", "looks")}
