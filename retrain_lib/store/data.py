"""Data access: daily partitions of features and late-arriving labels.

Three sources, one contract (``load_window``): local files under the platform's
``data_root``, the same files in S3 (``s3://<bucket>/<path>/``), or SQL tables queried by
timestamp. Layout of the file sources::

    <data.path>/<YYYY-MM-DD>.<parquet|csv>         events of that day (features, id, timestamp)
    <data.labels_path>/<YYYY-MM-DD>.<parquet|csv>  labels that *arrived* that day (id, target)

A window read "as of" a day only sees the labels that had arrived by that day, so neither
the monitor nor training can peek at the future. Without ``labels_path`` the target is read
from the feature partitions and masked for events younger than ``label_delay_days``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.store.parquet_io import read_parquet

log = logging.getLogger(__name__)
_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")


def resolve_dir(data_root: Path, relative: str) -> Path:
    """Join ``relative`` to ``data_root``, refusing anything that escapes the root."""
    root = Path(data_root).resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise DataError(
            f"data path {relative!r} resolves to {path}, outside the data root {root}; "
            "use a path relative to data_root without '..' or symlinks out of it"
        )
    return path


def partition_path(directory: Path, day: dt.date, fmt: str) -> Path:
    return Path(directory) / f"{day.isoformat()}.{fmt}"


def list_partitions(directory: Path, fmt: str) -> dict[dt.date, Path]:
    """Daily partition files of a directory, by date."""
    out: dict[dt.date, Path] = {}
    directory = Path(directory)
    if not directory.is_dir():
        return out
    for entry in directory.iterdir():
        m = _DATE_RE.match(entry.name)
        if m and m.group(2) == fmt and entry.is_file():
            out[dt.date.fromisoformat(m.group(1))] = entry
    return dict(sorted(out.items()))


class PartitionCache:
    """Frames of local partition files, keyed by path, modification time and size (an edited
    file is read again), least recently used out first, bounded by their memory size.

    For processes that read the same days over and over (a backtest replays a day range with
    overlapping windows); a task of the DAGs reads each day once and runs without it. Frames
    handed out are shared: callers concatenate them (which copies) and never modify them."""

    def __init__(self, max_bytes: int):
        from collections import OrderedDict

        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._frames: OrderedDict[tuple, tuple[pd.DataFrame, int]] = OrderedDict()

    def read(self, path: Path, fmt: str) -> pd.DataFrame:
        try:
            st = os.stat(path)
        except OSError:
            return _read_file(path, fmt)  # says which file and why
        key = (str(path), fmt, st.st_mtime_ns, st.st_size)
        if key in self._frames:
            self._frames.move_to_end(key)
            self.hits += 1
            return self._frames[key][0]
        self.misses += 1
        frame = _read_file(path, fmt)
        size = int(frame.memory_usage(index=True, deep=True).sum())
        if size <= self.max_bytes:
            self._frames[key] = (frame, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._frames.popitem(last=False)
                self.bytes -= dropped
        return frame


_partition_cache: PartitionCache | None = None


def cache_partitions(max_bytes: int | None = 512 << 20) -> PartitionCache | None:
    """Keep local partition frames in memory for the rest of the process (``None``: stop)."""
    global _partition_cache
    _partition_cache = PartitionCache(max_bytes) if max_bytes else None
    return _partition_cache


@contextlib.contextmanager
def partition_cache(max_bytes: int = 512 << 20):
    """Within the block, keep local partition frames in memory (then back to before)."""
    global _partition_cache
    before = _partition_cache
    _partition_cache = before or PartitionCache(max_bytes)
    try:
        yield _partition_cache
    finally:
        _partition_cache = before


def read_partition(path: Path, fmt: str) -> pd.DataFrame:
    if _partition_cache is not None:
        return _partition_cache.read(path, fmt)
    return _read_file(path, fmt)


def _read_file(path: Path, fmt: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any reader error means an unreadable partition
        raise DataError(f"cannot read partition {path}: {exc}; fix or remove the file") from exc


def write_partition(df: pd.DataFrame, path: Path, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "parquet":
        df.to_parquet(tmp, index=False)
    else:
        df.to_csv(tmp, index=False)
    tmp.replace(path)


@dataclass(frozen=True)
class Window:
    """A slice of a model's data, with what is needed to reproduce it."""

    frame: pd.DataFrame
    start: dt.date
    end: dt.date
    as_of: dt.date
    files: tuple = ()
    digest: str | None = None

    @property
    def fingerprint(self) -> str:
        """Content hash of the data behind the window (files, objects or rows)."""
        if self.digest is not None:
            return self.digest
        return fingerprint_files(self.files)

    @property
    def labelled(self) -> pd.DataFrame:
        return self.frame[self.frame["__label_known"]]


def fingerprint_files(files) -> str:
    """Content hash of a set of files (names and bytes), stable across machines."""
    digest = hashlib.sha256()
    for f in sorted(Path(p) for p in files):
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


class _LocalStore:
    """Daily files in a directory under the data root."""

    def __init__(self, data_root: Path, relative: str):
        self.dir = resolve_dir(data_root, relative)

    def where(self) -> str:
        return str(self.dir)

    def list(self, fmt: str) -> dict:
        return list_partitions(self.dir, fmt)

    def read(self, ref, fmt: str) -> pd.DataFrame:
        return read_partition(ref, fmt)

    def fingerprint(self, refs) -> str:
        return fingerprint_files(refs)


class _S3Store:
    """Daily objects ``<prefix>/YYYY-MM-DD.<format>`` in an S3 (or S3-compatible) bucket."""

    def __init__(self, bucket: str, prefix: str, platform=None):
        import boto3

        s3 = getattr(platform, "s3", None)
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/"
        self.client = boto3.client(
            "s3",
            endpoint_url=getattr(s3, "endpoint_url", None) or None,
            region_name=getattr(s3, "region", None) or None,
        )
        self._digests: dict[str, tuple[str, bytes]] = {}

    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _call(self, what: str, fn, **kwargs):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchKey"):
                raise DataError(
                    f"cannot {what} {self.where()}: {code}; check the bucket, prefix and credentials "
                    "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
                ) from exc
            raise
        # Network errors are transient: let them propagate so that task retries run.
        except BotoCoreError:
            raise

    def list(self, fmt: str) -> dict:
        out: dict[dt.date, str] = {}
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(
            "list", lambda **kw: list(paginator.paginate(**kw)), Bucket=self.bucket, Prefix=self.prefix, Delimiter="/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                m = _DATE_RE.match(obj["Key"][len(self.prefix) :])
                if m and m.group(2) == fmt:
                    out[dt.date.fromisoformat(m.group(1))] = f"s3://{self.bucket}/{obj['Key']}"
        return dict(sorted(out.items()))

    def read(self, ref: str, fmt: str) -> pd.DataFrame:
        import io

        key = ref[len(f"s3://{self.bucket}/") :]
        body = self._call("read", self.client.get_object, Bucket=self.bucket, Key=key)["Body"].read()
        self._digests[ref] = (key.rsplit("/", 1)[-1], body)
        try:
            return read_parquet(body) if fmt == "parquet" else pd.read_csv(io.BytesIO(body))
        except Exception as exc:  # noqa: BLE001 - any reader error means an unreadable partition
            raise DataError(f"cannot read partition {ref}: {exc}; fix or remove the object") from exc

    def fingerprint(self, refs) -> str:
        digest = hashlib.sha256()
        for ref in sorted(refs):
            name, body = self._digests[ref]
            digest.update(name.encode())
            digest.update(body)
        return digest.hexdigest()[:16]


def _store(cfg: ModelConfig, data_root: Path, relative: str | None, platform=None):
    assert relative is not None  # a local or s3 source has data.path (DataSource checks)
    if cfg.data.source == "s3":
        bucket = cfg.data.bucket or getattr(getattr(platform, "s3", None), "bucket", None)
        if not bucket:
            raise DataError(
                f"model {cfg.name!r} reads from S3 but names no bucket; set data.bucket in its "
                "config or s3.bucket in platform.yaml"
            )
        return _S3Store(bucket, relative, platform)
    return _LocalStore(data_root, relative)


def _root_and_platform(data_root, platform):
    """Accept a data root (with an optional platform config) or a Settings object."""
    if hasattr(data_root, "data_root"):
        return data_root.data_root, platform or data_root.platform
    return data_root, platform


def available_days(cfg: ModelConfig, data_root, platform=None) -> list[dt.date]:
    """Days that have data. ``data_root``: the data root path, or a Settings object."""
    data_root, platform = _root_and_platform(data_root, platform)
    if cfg.data.source == "sql":
        return _sql_days(cfg, platform)
    return list(_store(cfg, data_root, cfg.data.path, platform).list(cfg.data.format))


def partition_refs(cfg: ModelConfig, data_root, days, platform=None) -> list[str]:
    """Where the feature partitions of ``days`` of a file source are (local paths or
    ``s3://`` URIs), for the days that have one, in day order."""
    data_root, platform = _root_and_platform(data_root, platform)
    listed = _store(cfg, data_root, cfg.data.path, platform).list(cfg.data.format)
    return [str(listed[d]) for d in sorted(days) if d in listed]


def load_window(
    cfg: ModelConfig,
    data_root,
    start: dt.date,
    end: dt.date,
    *,
    as_of: dt.date | None = None,
    require_rows: bool = True,
    platform=None,
) -> Window:
    """Events of days ``start..end`` (inclusive), with the labels known on ``as_of``.

    ``data_root`` is the data root path, or a Settings object (data root and platform config).

    The returned frame has the features, id, timestamp and target columns plus a boolean
    column ``__label_known``. Target values not yet known on ``as_of`` are NaN. ``platform``
    (a :class:`~retrain_lib.core.config_platform.PlatformConfig`) supplies S3 and SQL settings.
    """
    data_root, platform = _root_and_platform(data_root, platform)
    as_of = as_of or end
    if start > end:
        raise DataError(f"window start {start} is after its end {end}")
    src = cfg.data
    if src.source == "sql":
        return _load_sql_window(cfg, start, end, as_of, platform, require_rows)
    store = _store(cfg, data_root, src.path, platform)
    parts = _feature_parts(store, src.format, start, end, as_of)
    if not parts:
        if require_rows:
            raise DataError(
                f"no {src.format} partitions for model {cfg.name!r} between {start} and {end} in {store.where()}; "
                f"expected one file per day named YYYY-MM-DD.{src.format}: has the data pipeline written them, "
                "and is data.path right?"
            )
        return Window(pd.DataFrame(), start, end, as_of, ())
    frames = []
    for p in parts.values():
        part = store.read(p, src.format)
        # Check every partition: after concat a column missing from one file would be NaN-filled silently.
        _check_columns(cfg, part, f"feature partition {p}", require_target=src.labels_path is None)
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True)
    files = list(parts.values())
    fingerprint_parts = [(store, list(parts.values()))]
    frame[src.timestamp_column] = pd.to_datetime(frame[src.timestamp_column])
    target = cfg.features.target

    if src.labels_path:
        label_store = _store(cfg, data_root, src.labels_path, platform)
        label_parts = _label_parts(label_store, src.format, start, as_of)
        if target in frame.columns:
            frame = frame.drop(columns=[target])
        if label_parts:
            label_frames = []
            for p in label_parts.values():
                part = label_store.read(p, src.format)
                missing = [c for c in (src.id_column, target) if c not in part.columns]
                if missing:
                    raise DataError(
                        f"label partition {p} lacks column(s) {missing}; "
                        f"each must have {src.id_column!r} and {target!r}"
                    )
                label_frames.append(part)
            labels = pd.concat(label_frames, ignore_index=True)
            frame = _join_labels(cfg, frame, labels)
            files += list(label_parts.values())
            fingerprint_parts.append((label_store, list(label_parts.values())))
        else:
            frame[target] = np.nan
        known = frame[target].notna()
    else:
        known = _mask_young_labels(cfg, frame, as_of)
    frame["__label_known"] = known.to_numpy()
    digest = _remote_digest(fingerprint_parts) if src.source != "local" else None
    return Window(frame, start, end, as_of, tuple(files), digest)


def _feature_parts(store, fmt: str, start: dt.date, end: dt.date, as_of: dt.date) -> dict:
    return {d: p for d, p in store.list(fmt).items() if start <= d <= end and d <= as_of}


def _label_parts(store, fmt: str, start: dt.date, as_of: dt.date) -> dict:
    # Labels of events from ``start`` on arrive at the earliest on the event day.
    return {d: p for d, p in store.list(fmt).items() if start <= d <= as_of}


def window_fingerprint(
    cfg: ModelConfig, data_root, start: dt.date, end: dt.date, *, as_of: dt.date | None = None, platform=None
) -> str | None:
    """``load_window(...).fingerprint`` without reading the rows (local and S3 sources;
    ``None`` when the window has no partition). A SQL window is fingerprinted by its rows:
    use ``load_window``."""
    data_root, platform = _root_and_platform(data_root, platform)
    as_of = as_of or end
    src = cfg.data
    if src.source == "sql":
        raise ValueError("a sql window's fingerprint is a hash of its rows; use load_window(...).fingerprint")
    store = _store(cfg, data_root, src.path, platform)
    parts = _feature_parts(store, src.format, start, end, as_of)
    if start > end or not parts:
        return None
    fingerprint_parts = [(store, list(parts.values()))]
    files = list(parts.values())
    if src.labels_path:
        label_store = _store(cfg, data_root, src.labels_path, platform)
        label_parts = _label_parts(label_store, src.format, start, as_of)
        if label_parts:
            files += list(label_parts.values())
            fingerprint_parts.append((label_store, list(label_parts.values())))
    return _remote_digest(fingerprint_parts) if src.source != "local" else fingerprint_files(files)


def _remote_digest(fingerprint_parts) -> str:
    """The fingerprint of a window in object storage: its stores' own fingerprints (ETags)."""
    return hashlib.sha256("|".join(st.fingerprint(refs) for st, refs in fingerprint_parts).encode()).hexdigest()[:16]


def _join_labels(cfg: ModelConfig, frame: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    src, target = cfg.data, cfg.features.target
    labels = labels[[src.id_column, target]].drop_duplicates(src.id_column, keep="last")
    return frame.merge(labels, on=src.id_column, how="left")


def _mask_young_labels(cfg: ModelConfig, frame: pd.DataFrame, as_of: dt.date) -> pd.Series:
    """Targets in the event rows: hide those younger than the label delay."""
    src, target = cfg.data, cfg.features.target
    cutoff = pd.Timestamp(as_of - dt.timedelta(days=src.label_delay_days)) + pd.Timedelta(days=1)
    known = (frame[src.timestamp_column] < cutoff) & frame[target].notna()
    frame.loc[~known, target] = np.nan
    return known


# -----------------------------------------------------------------------------------------
# SQL
# -----------------------------------------------------------------------------------------


def sql_engine(platform=None):
    """SQLAlchemy engine from the URL in the environment variable platform.yaml names."""
    import os

    import sqlalchemy as sa

    env = getattr(getattr(platform, "sql", None), "url_env", None) or "RETRAIN_SQL_URL"
    url = os.environ.get(env)
    if not url:
        raise DataError(
            f"a sql data source needs a connection URL in the environment variable {env}; "
            "set it (e.g. postgresql+psycopg://user@host/db) in the worker's environment"
        )
    return sa.create_engine(url, pool_pre_ping=True)


def sql_table(name: str | None, *columns: str):
    """A SQLAlchemy table clause for ``name`` (``table`` or ``schema.table``) with ``columns``."""
    import sqlalchemy as sa

    assert name is not None  # a sql source names its tables (DataSource checks)
    schema, _, table = name.rpartition(".")
    return sa.table(table, *(sa.column(c) for c in columns), schema=schema or None)


def _sql_days(cfg: ModelConfig, platform=None) -> list[dt.date]:
    import sqlalchemy as sa

    ts = cfg.data.timestamp_column
    t = sql_table(cfg.data.table, ts)
    with sql_engine(platform).connect() as conn:
        first, last = conn.execute(sa.select(sa.func.min(t.c[ts]), sa.func.max(t.c[ts]))).one()
    if first is None:
        return []
    first, last = pd.Timestamp(first).date(), pd.Timestamp(last).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _load_sql_window(
    cfg: ModelConfig, start: dt.date, end: dt.date, as_of: dt.date, platform, require_rows: bool
) -> Window:
    import sqlalchemy as sa

    src, target = cfg.data, cfg.features.target
    ts = src.timestamp_column
    lo = dt.datetime.combine(start, dt.time())
    hi = dt.datetime.combine(min(end, as_of) + dt.timedelta(days=1), dt.time())
    t = sql_table(src.table, ts)
    query = sa.select(sa.text("*")).select_from(t).where(t.c[ts] >= lo, t.c[ts] < hi)
    engine = sql_engine(platform)
    try:
        with engine.connect() as conn:
            frame = pd.read_sql(query, conn)
            labels = None
            if src.labels_table:
                lt = sql_table(src.labels_table, src.id_column, target, src.labels_arrival_column)
                arrival_hi = dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())
                labels = pd.read_sql(
                    sa.select(lt.c[src.id_column], lt.c[target])
                    .where(lt.c[src.labels_arrival_column] < arrival_hi)
                    .order_by(lt.c[src.labels_arrival_column]),
                    conn,
                )
    except sa.exc.ProgrammingError as exc:
        raise DataError(
            f"query of model {cfg.name!r} on table {src.table!r} failed: {exc.orig}; check the "
            "table and column names in its config"
        ) from exc
    finally:
        engine.dispose()
    where = f"table {src.table} ({start}..{end})"
    if frame.empty:
        if require_rows:
            raise DataError(f"no rows for model {cfg.name!r} in {where}")
        return Window(pd.DataFrame(), start, end, as_of, (), "empty")
    _check_columns(cfg, frame, where, require_target=labels is None)
    frame[ts] = pd.to_datetime(frame[ts])
    frame = frame.sort_values([ts, src.id_column], kind="mergesort").reset_index(drop=True)
    if labels is not None:
        if target in frame.columns:
            frame = frame.drop(columns=[target])
        frame = _join_labels(cfg, frame, labels)
        known = frame[target].notna()
    else:
        known = _mask_young_labels(cfg, frame, as_of)
    frame["__label_known"] = known.to_numpy()
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()[:16]
    return Window(frame, start, end, as_of, (f"sql:{src.table}",), digest)


def _check_columns(cfg: ModelConfig, frame: pd.DataFrame, what: str, *, require_target: bool) -> None:
    needed = [cfg.data.id_column, cfg.data.timestamp_column, *cfg.features.all]
    if require_target:
        needed.append(cfg.features.target)
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(
            f"{what} of model {cfg.name!r} lack column(s) {missing} named in the model config; "
            f"present: {sorted(map(str, frame.columns))}"
        )


def day_range(end: dt.date, days: int) -> tuple[dt.date, dt.date]:
    """The ``days``-day window ending on ``end`` (inclusive)."""
    return end - dt.timedelta(days=days - 1), end
