"""New daily partitions of a model's data source, for the trigger that starts the monitor when a
day lands (``schedule.new_data.partitions``; the Airflow side is
``retrain_airflow.partition_triggers``).

One question per source, cheap enough to ask every minute for every model:

- ``local``: the names ``YYYY-MM-DD.<format>`` in the partition directory (one ``scandir``);
- ``s3``: the keys after the last day seen under the prefix (``list_objects_v2`` with
  ``StartAfter``: only new keys travel, however long the history);
- ``sql``: the day of ``max(timestamp_column)`` (one aggregate query).

Nothing here imports pandas, boto3 or SQLAlchemy until a source of that kind is listed.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from retrain_lib.core.config_sections import DataSource
from retrain_lib.core.errors import DataError

_DAY_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")


@dataclass(frozen=True)
class WatchedSource:
    """The facts of ``data:`` a watch needs (JSON-safe: a trigger's serialized arguments)."""

    source: Literal["local", "s3", "sql"]
    format: str
    timestamp_column: str
    path: str | None = None
    bucket: str | None = None
    table: str | None = None

    @classmethod
    def of(cls, data: DataSource) -> WatchedSource:
        return cls(data.source, data.format, data.timestamp_column, data.path, data.bucket, data.table)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> WatchedSource:
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _day(name: str, fmt: str) -> dt.date | None:
    m = _DAY_FILE.match(name)
    if not m or m.group(2) != fmt:
        return None
    try:
        return dt.date.fromisoformat(m.group(1))
    except ValueError:  # 2026-02-30.parquet
        return None


def local_days(directory: Path, fmt: str, after: dt.date | None = None) -> list[dt.date]:
    """Days with a partition file in ``directory``, later than ``after``, oldest first.
    A missing directory has none (the pipeline has not written its first day yet)."""
    days = set()
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                day = _day(entry.name, fmt)
                if day is not None and (after is None or day > after) and entry.is_file():
                    days.add(day)
    except FileNotFoundError:
        return []
    return sorted(days)


def s3_days(client: Any, bucket: str, prefix: str, fmt: str, after: dt.date | None = None) -> list[dt.date]:
    """Days with an object ``<prefix>/YYYY-MM-DD.<fmt>`` later than ``after``, oldest first.
    ``StartAfter`` skips the keys already seen; ``Delimiter`` skips sub-prefixes (labels/)."""
    prefix = prefix.strip("/") + "/"
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
    if after is not None:
        kwargs["StartAfter"] = f"{prefix}{after.isoformat()}.~"  # '~' sorts after any format suffix
    days = set()
    for page in client.get_paginator("list_objects_v2").paginate(**kwargs):
        for obj in page.get("Contents", []):
            day = _day(obj["Key"][len(prefix) :], fmt)
            if day is not None and (after is None or day > after):
                days.add(day)
    return sorted(days)


def sql_last_day(engine: Any, table: str, timestamp_column: str) -> dt.date | None:
    """The day of the newest row of ``table`` (None when it is empty)."""
    import sqlalchemy as sa

    schema, _, name = table.rpartition(".")
    t = sa.table(name, sa.column(timestamp_column), schema=schema or None)
    with engine.connect() as conn:
        last = conn.execute(sa.select(sa.func.max(t.c[timestamp_column]))).scalar()
    if last is None:
        return None
    if isinstance(last, str):
        last = dt.datetime.fromisoformat(last)
    return last.date() if isinstance(last, dt.datetime) else last


class PartitionLister:
    """Lists the new days of one model's source; clients (S3, SQL engine) are made once.

    ``settings`` is a :class:`retrain_lib.core.settings.Settings` (data root, S3 endpoint and
    default bucket, the SQL URL's environment variable)."""

    def __init__(self, source: WatchedSource, settings: Any):
        self.source, self.settings = source, settings
        self._client: Any = None

    def where(self) -> str:
        src = self.source
        if src.source == "sql":
            return f"sql:{src.table}.{src.timestamp_column}"
        if src.source == "s3":
            return f"s3://{self._bucket()}/{(src.path or '').strip('/')}/"
        return str(self._directory())

    def _directory(self) -> Path:
        """``data_root / path``, refused when it escapes the root (as
        :func:`retrain_lib.store.data.resolve_dir`, without importing pandas into the triggerer)."""
        assert self.source.path is not None  # DataSource: a local source has a path
        root = Path(self.settings.data_root).resolve()
        path = (root / self.source.path).resolve()
        if path != root and root not in path.parents:
            raise DataError(f"data path {self.source.path!r} resolves to {path}, outside the data root {root}")
        return path

    def _bucket(self) -> str:
        bucket = self.source.bucket or self.settings.platform.s3.bucket
        if not bucket:
            raise DataError("an s3 source names no bucket; set data.bucket or s3.bucket in platform.yaml")
        return str(bucket)

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            s3 = self.settings.platform.s3
            self._client = boto3.client("s3", endpoint_url=s3.endpoint_url or None, region_name=s3.region or None)
        return self._client

    def _engine(self) -> Any:
        if self._client is None:
            from retrain_lib.store.data import sql_engine

            self._client = sql_engine(self.settings.platform)
        return self._client

    def days_after(self, after: dt.date | None) -> list[dt.date]:
        """The source's days later than ``after`` (every day when None), oldest first. For a SQL
        table only its newest day: the rows of a table are not partitioned into files."""
        src = self.source
        if src.source == "local":
            return local_days(self._directory(), src.format, after)
        if src.source == "s3":
            return s3_days(self._s3(), self._bucket(), src.path or "", src.format, after)
        assert src.table is not None  # DataSource: a sql source has a table
        last = sql_last_day(self._engine(), src.table, src.timestamp_column)
        return [last] if last is not None and (after is None or last > after) else []
