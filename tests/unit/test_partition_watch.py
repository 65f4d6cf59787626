"""Sensor-triggered monitoring, without a scheduler: new-partition detection in a local
directory and an S3 prefix (moto, in process), the trigger's memory of what it announced across
restarts (a fake of the Asset state store the triggerer injects), the day an Asset event names,
and the ``schedule.new_data`` config."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins"))

D = dt.date.fromisoformat


def _touch(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_bytes(b"x")


# ----------------------------------------------------------------------------- detection


def test_local_days_lists_only_day_files_of_the_format_after_a_day(tmp_path):
    from retrain_lib.store.partition_watch import local_days

    d = tmp_path / "events"
    _touch(d, "2026-01-27.parquet", "2026-01-28.parquet", "2026-01-29.parquet", "2026-01-30.csv")
    _touch(d, "2026-02-30.parquet", "notes.parquet", "2026-01-31.parquet.tmp")
    (d / "2026-02-01.parquet").mkdir()  # a directory named like a day is not a partition
    assert local_days(d, "parquet") == [D("2026-01-27"), D("2026-01-28"), D("2026-01-29")]
    assert local_days(d, "parquet", D("2026-01-28")) == [D("2026-01-29")]
    assert local_days(d, "parquet", D("2026-01-29")) == []
    assert local_days(d, "csv") == [D("2026-01-30")]
    assert local_days(tmp_path / "not-yet", "parquet") == []


@pytest.fixture
def s3(monkeypatch):
    """moto in process: every boto3 client (also in a thread) talks to it."""
    from moto import mock_aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        import boto3

        client = boto3.client("s3")
        client.create_bucket(Bucket="lake")
        yield client


def test_s3_days_lists_new_keys_only_and_skips_sub_prefixes(s3):
    from retrain_lib.store.partition_watch import s3_days

    for key in (
        "events/2026-01-28.parquet",
        "events/2026-01-29.parquet",
        "events/2026-01-29.csv",
        "events/labels/2026-01-30.parquet",  # labels: a sub-prefix, not a feature partition
        "events-old/2026-01-31.parquet",  # a sibling prefix
        "events/readme.txt",
    ):
        s3.put_object(Bucket="lake", Key=key, Body=b"x")
    assert s3_days(s3, "lake", "events", "parquet") == [D("2026-01-28"), D("2026-01-29")]
    assert s3_days(s3, "lake", "/events/", "parquet", D("2026-01-28")) == [D("2026-01-29")]
    assert s3_days(s3, "lake", "events", "parquet", D("2026-01-29")) == []
    # StartAfter really skips the history: a key before the last day seen is not even listed
    calls = []
    real = s3.get_paginator

    def spy(name):
        pager = real(name)
        orig = pager.paginate

        def paginate(**kw):
            calls.append(kw)
            return orig(**kw)

        pager.paginate = paginate
        return pager

    s3.get_paginator = spy
    s3.put_object(Bucket="lake", Key="events/2026-01-30.parquet", Body=b"x")
    assert s3_days(s3, "lake", "events", "parquet", D("2026-01-29")) == [D("2026-01-30")]
    assert calls[-1]["StartAfter"] == "events/2026-01-29.~"


def test_a_sql_table_has_a_new_day_when_its_newest_row_is_on_a_later_day(tmp_path, monkeypatch):
    import sqlalchemy as sa

    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.partition_watch import PartitionLister, WatchedSource

    url = f"sqlite:///{tmp_path / 'events.db'}"
    monkeypatch.setenv("RETRAIN_SQL_URL", url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE events (id INTEGER, event_time TIMESTAMP)"))
    lister = PartitionLister(
        WatchedSource("sql", "parquet", "event_time", table="events"), load_settings(_config_dir(tmp_path, {}))
    )
    assert lister.days_after(None) == [] and lister.where() == "sql:events.event_time"
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO events VALUES (1, :a), (2, :b)"),
            {"a": dt.datetime(2026, 1, 27, 23, 59), "b": dt.datetime(2026, 1, 28, 0, 1)},
        )
    assert lister.days_after(None) == [D("2026-01-28")]
    assert lister.days_after(D("2026-01-27")) == [D("2026-01-28")]
    assert lister.days_after(D("2026-01-28")) == []


# ----------------------------------------------------------------------------- the trigger


class FakeStateStore:
    """The Asset state store's async accessor (the triggerer's, kept in the metadata DB)."""

    def __init__(self):
        self.data: dict = {}

    async def aget(self, key, default=None):
        return self.data.get(key, default)

    async def aset(self, key, value):
        self.data[key] = json.loads(json.dumps(value))  # stored as JSON


def _config_dir(tmp_path: Path, platform: dict) -> str:
    cfg_dir = tmp_path / "configs"
    (cfg_dir / "models").mkdir(parents=True)
    (cfg_dir / "platform.yaml").write_text(yaml.safe_dump(platform))
    return str(cfg_dir)


def _events(trigger, store, *, wait: float, want: int = 99, started: bool = True) -> list[dict]:
    """Run ``trigger`` (a fresh triggerer start) until ``want`` events, or until it has looked
    at its source for ``wait`` s (timed from its first look when ``started``: its imports may
    take a while). Like the triggerer, it goes on iterating after an event, then stops it."""
    trigger.asset_state_store = store

    async def go():
        out: list[dict] = []
        agen = trigger.run()

        async def collect():
            async for event in agen:
                out.append(event.payload)

        task = asyncio.ensure_future(collect())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while started and "new_partition" not in (store.data or trigger._memory) and not task.done():
            assert loop.time() < deadline, "the trigger never looked at its source"
            await asyncio.sleep(0.02)
        end = loop.time() + wait
        while loop.time() < end and len(out) < want and not task.done():
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert not task.done() or task.exception() is None, task.exception()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await agen.aclose()
        return out

    return asyncio.run(go())


@pytest.fixture
def local_watch(tmp_path, monkeypatch):
    from retrain_airflow.partition_triggers import NewPartitionTrigger

    for var in ("RETRAIN_DATA_ROOT", "RETRAIN_HOME"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "data"
    cfg_dir = _config_dir(tmp_path, {"data_root": str(root)})
    source = {"source": "local", "format": "parquet", "timestamp_column": "ts", "path": "credit"}

    def make(**kw):
        return NewPartitionTrigger("credit", source, cfg_dir, poll_s=0.05, **kw)

    return make, root / "credit"


def test_a_backlog_fires_nothing_a_new_day_fires_once_and_a_restart_does_not_refire(local_watch):
    make, directory = local_watch
    store = FakeStateStore()
    _touch(directory, *(f"2026-01-{d:02d}.parquet" for d in range(1, 29)))  # 28 days of history

    assert _events(make(), store, wait=0.6) == []  # first start: history, not news
    assert store.data["new_partition"] == {"where": str(directory), "last_day": "2026-01-28"}

    _touch(directory, "2026-01-29.parquet")
    (event,) = _events(make(), store, wait=10, want=1)  # a restarted triggerer sees the new day
    assert event == {"model": "credit", "day": "2026-01-29", "days": ["2026-01-29"], "source": str(directory)}
    assert _events(make(), store, wait=0.6) == []  # and after another restart, not again

    # two days landed while the triggerer was down: one event for the newest, naming both
    _touch(directory, "2026-01-30.parquet", "2026-01-31.parquet", "2026-01-15.parquet")
    (event,) = _events(make(), store, wait=10, want=1)
    assert event["day"] == "2026-01-31" and event["days"] == ["2026-01-30", "2026-01-31"]
    assert store.data["new_partition"]["last_day"] == "2026-01-31"


def test_a_day_dropped_while_it_runs_fires_and_an_empty_source_waits_for_its_first_day(local_watch):
    make, directory = local_watch
    store = FakeStateStore()
    trigger = make()
    trigger.asset_state_store = store

    async def go():
        agen = trigger.run()
        first = asyncio.ensure_future(agen.__anext__())
        await asyncio.sleep(0.4)
        assert not first.done()  # no directory yet: nothing to announce
        _touch(directory, "2026-02-02.parquet")
        event = await asyncio.wait_for(first, 10)
        await agen.aclose()
        return event.payload

    assert asyncio.run(go())["day"] == "2026-02-02"


def test_the_sensor_wait_starts_after_its_day_and_keeps_no_shared_state(local_watch):
    make, directory = local_watch
    store = FakeStateStore()
    _touch(directory, "2026-01-28.parquet", "2026-01-29.parquet")
    (event,) = _events(make(after="2026-01-28", once=True), store, wait=10)
    assert event["day"] == "2026-01-29" and store.data == {}


def test_s3_partitions_fire_and_a_missing_bucket_does_not_end_the_watch(s3, tmp_path, monkeypatch):
    from retrain_airflow.partition_triggers import NewPartitionTrigger

    cfg_dir = _config_dir(tmp_path, {"s3": {"bucket": "lake"}})
    source = {"source": "s3", "format": "parquet", "timestamp_column": "ts", "path": "models/credit"}
    store = FakeStateStore()
    s3.put_object(Bucket="lake", Key="models/credit/2026-01-28.parquet", Body=b"x")
    assert _events(NewPartitionTrigger("credit", source, cfg_dir, 0.05), store, wait=0.6) == []
    assert store.data["new_partition"] == {"where": "s3://lake/models/credit/", "last_day": "2026-01-28"}
    s3.put_object(Bucket="lake", Key="models/credit/2026-01-29.parquet", Body=b"x")
    (event,) = _events(NewPartitionTrigger("credit", source, cfg_dir, 0.05), store, wait=10, want=1)
    assert event["day"] == "2026-01-29" and event["source"] == "s3://lake/models/credit/"

    gone = {**source, "bucket": "no-such-bucket"}
    assert _events(NewPartitionTrigger("credit", gone, cfg_dir, 0.05), FakeStateStore(), wait=1, started=False) == []


def test_the_trigger_serializes_to_an_importable_event_trigger(tmp_path):
    import importlib

    from airflow.triggers.base import BaseEventTrigger
    from retrain_airflow.partition_triggers import NewPartitionTrigger

    source = {"source": "local", "format": "csv", "timestamp_column": "ts", "path": "x"}
    path, kwargs = NewPartitionTrigger("m", source, str(tmp_path), 30).serialize()
    module, name = path.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert isinstance(again, BaseEventTrigger) and again.serialize() == (path, kwargs)


def test_the_sensor_defers_to_the_trigger_and_returns_its_event(tmp_path):
    from airflow.sdk.exceptions import TaskDeferred
    from retrain_airflow.partition_triggers import NewPartitionSensor, NewPartitionTrigger

    source = {"source": "local", "format": "parquet", "timestamp_column": "ts", "path": "x"}
    sensor = NewPartitionSensor(
        task_id="wait_for_day", model="m", source=source, cfg_dir=str(tmp_path), after="2026-01-28T06:00:00+00:00"
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, NewPartitionTrigger) and deferred.value.method_name == "execute_complete"
    assert trigger.after == "2026-01-28" and trigger.once is True
    assert sensor.execute_complete({}, {"day": "2026-01-29"}) == {"day": "2026-01-29"}


# ----------------------------------------------------------------------------- the day of an event


def test_event_day_reads_as_of_trigger_payloads_and_queue_messages():
    from retrain_airflow.data_watchers import event_day

    assert event_day(None) is None and event_day({}) is None
    assert event_day({"as_of": "2026-01-29T00:00:00"}) == "2026-01-29"
    assert event_day({"from_trigger": True, "payload": {"day": "2026-01-30", "days": ["2026-01-30"]}}) == "2026-01-30"
    message = {"type": "message", "channel": "retrain.credit.new_data", "data": '{"day": "2026-01-31"}'}
    assert event_day({"from_trigger": True, "payload": message}) == "2026-01-31"
    assert event_day({"from_trigger": True, "payload": {**message, "data": "2026-02-01"}}) == "2026-02-01"
    assert event_day({"from_trigger": True, "payload": {**message, "data": '{"as_of": "2026-02-02"}'}}) == "2026-02-02"
    with pytest.raises(ValueError, match=r"retrain.credit.new_data names no day.*publish \{\"day\""):
        event_day({"from_trigger": True, "payload": {**message, "data": '{"date": "2026-02-01"}'}})
    with pytest.raises(ValueError, match="'yesterday' is not a day"):
        event_day({"from_trigger": True, "payload": {**message, "data": '{"day": "yesterday"}'}})


def test_run_as_of_takes_the_newest_day_the_triggering_events_name():
    from airflow.sdk.exceptions import AirflowFailException
    from retrain_airflow.task_adapter import run_as_of

    def ctx(*extras):
        events = [SimpleNamespace(extra=e) for e in extras]
        run = SimpleNamespace(run_after=dt.datetime(2026, 3, 1, 6, tzinfo=dt.UTC))
        return {"params": {}, "triggering_asset_events": {"credit.new_data": events}, "dag_run": run}

    assert run_as_of(ctx()) == "2026-03-01"
    assert run_as_of(ctx({"from_trigger": True, "payload": {"day": "2026-01-29"}}, {"as_of": "2026-01-27"})) == (
        "2026-01-29"
    )
    msg = {"from_trigger": True, "payload": {"type": "message", "channel": "c", "data": '{"day": "2026-02-03"}'}}
    assert run_as_of(ctx(msg)) == "2026-02-03"
    assert run_as_of({**ctx(msg), "params": {"as_of": "2026-01-05"}}) == "2026-01-05"  # a param wins
    with pytest.raises(AirflowFailException, match="names no day"):
        run_as_of(ctx({"from_trigger": True, "payload": {"type": "message", "channel": "c", "data": "{}"}}))


# ----------------------------------------------------------------------------- config and watchers


def _model(tmp_path: Path, yaml_text: str, new_data: object) -> Path:
    model = yaml.safe_load(yaml_text)
    if new_data is not None:
        model["schedule"]["new_data"] = new_data
    path = tmp_path / "churn_risk.yaml"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    return path


def test_new_data_config_defaults_off_and_switches_on(tmp_path, retrain_cfg_model_yaml):
    from retrain_airflow.data_watchers import monitor_watchers, queue_channel

    from retrain_lib.core.config import load_model_config

    off = load_model_config(_model(tmp_path, retrain_cfg_model_yaml, None))
    assert off.schedule.new_data.partitions is None and off.schedule.new_data.queue is None
    assert monitor_watchers(off, tmp_path) == [] and queue_channel(off) is None

    on = load_model_config(_model(tmp_path, retrain_cfg_model_yaml, {"partitions": True, "queue": True}))
    assert on.schedule.new_data.partitions.poll_seconds == 60
    assert on.schedule.new_data.queue.conn_id == "redis_default"
    assert queue_channel(on) == "retrain.churn_risk.new_data"
    watchers = monitor_watchers(on, tmp_path)
    assert [w.name for w in watchers] == ["churn_risk__new_partition", "churn_risk__queue"]
    part, queue = (w.trigger.serialize() for w in watchers)
    assert part[0] == "retrain_airflow.partition_triggers.NewPartitionTrigger"
    assert part[1]["source"]["path"] == "churn_risk" and part[1]["poll_s"] == 60
    assert queue == (
        "airflow.providers.redis.triggers.redis_await_message.AwaitMessageTrigger",
        {"channels": ["retrain.churn_risk.new_data"], "redis_conn_id": "redis_default", "poll_interval": 1},
    )


@pytest.mark.parametrize(
    ("new_data", "where", "says"),
    [
        ({"partitions": {"poll_second": 5}}, "schedule.new_data.partitions.poll_second", "did you mean 'poll_seconds'"),
        (
            {"partitions": {"poll_seconds": 0}},
            "schedule.new_data.partitions.poll_seconds",
            "greater than or equal to 1",
        ),
        ({"queue": {"url": "redis://h:6379/0"}}, "schedule.new_data.queue", "AIRFLOW_CONN_REDIS_DEFAULT"),
        ({"queue": {"channel": "retrain.*"}}, "schedule.new_data.queue.channel", "no wildcards"),
        ({"queue": {"scheme": "kafka"}}, "schedule.new_data.queue.scheme", "redis+pubsub"),
        ({"sensors": True}, "schedule.new_data.sensors", "unknown field"),
    ],
)
def test_new_data_config_errors_name_the_field_and_the_fix(tmp_path, retrain_cfg_model_yaml, new_data, where, says):
    from retrain_lib.core.config import check_model_file

    config, problems = check_model_file(_model(tmp_path, retrain_cfg_model_yaml, new_data))
    assert config is None
    text = "\n".join(str(p) for p in problems)
    assert where in text and says in text, text
