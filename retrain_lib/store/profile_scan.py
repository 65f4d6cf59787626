"""Profiles of parquet partitions larger than memory, local or on S3, cached by content.

A current window is a list of daily parquet partitions (local paths or ``s3://bucket/key``).
:func:`profile_partition` reads one file in record batches (``pyarrow.parquet.ParquetFile``
``iter_batches``) and feeds each batch to the same accumulators as the in-memory oracle
(:func:`retrain_lib.stats.profile.profile_frame`: ``NumericAccumulator`` for numeric columns,
:func:`~retrain_lib.stats.profile.categorical_profile` spelling for categories), so memory is
bounded by one batch (``batch_rows`` rows of at most ``max_batch_bytes`` of values; wide files
are read in several passes over column groups), never by the file or the window.

:func:`profile_window` profiles each partition once: its profile is cached on disk under
``cache_dir/<spec.key()>/<content digest>.json``, the digest being the file's md5 (local; the
md5 itself is remembered per path, size and mtime so that a cache hit reads nothing) or the
object's ETag and size (S3, from a HEAD request). A daily check over a 30-day window thus reads
only the new day; the window's profile is the merge of the partitions' profiles. ``workers > 1``
profiles uncached partitions in that many processes. :class:`ScanStats` counts what was read.

S3 is addressed like :mod:`retrain_lib.store.data`: endpoint from ``platform.yaml``
``s3.endpoint_url`` or env ``AWS_ENDPOINT_URL``, region from ``s3.region`` or
``AWS_DEFAULT_REGION``, credentials from the environment only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from retrain_lib.stats.profile import (
    CategoricalProfile,
    NumericAccumulator,
    Profile,
    ProfileSpec,
    categorical_profile,
    category_key,
    with_sources,
)

DEFAULT_BATCH_ROWS = 65_536
DEFAULT_MAX_BATCH_BYTES = 64 << 20  # values of one batch (float64) across the columns of one pass
_HASH_CHUNK = 8 << 20
_READ_BUFFER = 4 << 20  # buffered parquet reads (no pre-buffer cache): memory of a batch, not a file


@dataclass(frozen=True)
class S3Options:
    """How to reach S3: ``endpoint_url`` (``None``: AWS), ``region``."""

    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def from_platform(cls, platform: Any = None) -> S3Options:
        """From a platform config's ``s3`` section (or ``None``), env ``AWS_ENDPOINT_URL`` /
        ``AWS_DEFAULT_REGION`` as fallbacks."""
        s3 = getattr(platform, "s3", None)
        endpoint = getattr(s3, "endpoint_url", None) or os.environ.get("AWS_ENDPOINT_URL") or None
        region = getattr(s3, "region", None) or os.environ.get("AWS_DEFAULT_REGION") or None
        return cls(endpoint, region)


@dataclass(frozen=True)
class Partition:
    """One parquet file and its content digest (``md5:<hex>`` or ``etag:<etag>:<size>``)."""

    uri: str
    digest: str
    size: int

    def source(self) -> str:
        return f"{self.uri}#{self.digest}"


@dataclass
class ScanStats:
    """What a scan did: files opened for reading values, cache hits and misses, rows and
    batches read, bytes hashed to compute digests."""

    files_opened: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    rows_read: int = 0
    batches_read: int = 0
    bytes_hashed: int = 0
    peak_rss_mb: dict[int, float] = field(default_factory=dict)  # peak RSS per worker process id (workers > 1)

    def add(self, other: ScanStats) -> None:
        self.files_opened += other.files_opened
        self.cache_hits += other.cache_hits
        self.cache_misses += other.cache_misses
        self.rows_read += other.rows_read
        self.batches_read += other.batches_read
        self.bytes_hashed += other.bytes_hashed
        for pid, mb in other.peak_rss_mb.items():
            self.peak_rss_mb[pid] = max(mb, self.peak_rss_mb.get(pid, 0.0))


# -----------------------------------------------------------------------------------------
# Where files live
# -----------------------------------------------------------------------------------------


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def s3_filesystem(options: S3Options | None = None):
    """A ``pyarrow.fs.S3FileSystem`` for ``options`` with credentials from the environment."""
    from pyarrow import fs

    options = options or S3Options.from_platform()
    kwargs: dict[str, Any] = {}
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        kwargs.update(access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"])
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    if options.region:
        kwargs["region"] = options.region
    if options.endpoint_url:
        scheme, _, host = options.endpoint_url.partition("://")
        if not host:
            scheme, host = "https", options.endpoint_url
        kwargs.update(endpoint_override=host.rstrip("/"), scheme=scheme)
    return fs.S3FileSystem(**kwargs)


def _s3_client(options: S3Options):
    import boto3

    return boto3.client("s3", endpoint_url=options.endpoint_url, region_name=options.region)


def _md5_file(path: Path) -> tuple[str, int, int, str, int]:
    """``(resolved path, size, mtime_ns, md5 hex, bytes read)`` of a local file."""
    st = path.stat()
    h = hashlib.md5(usedforsecurity=False)
    read = 0
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
            read += len(chunk)
    return str(path.resolve()), st.st_size, st.st_mtime_ns, h.hexdigest(), read


def _known_md5(path: Path, index: dict[str, Any] | None) -> str | None:
    st = path.stat()
    known = (index or {}).get(str(path.resolve()))
    if known and known.get("size") == st.st_size and known.get("mtime_ns") == st.st_mtime_ns:
        return str(known["md5"])
    return None


def _local_md5(path: Path, index: dict[str, Any] | None, stats: ScanStats) -> str:
    known = _known_md5(path, index)
    if known is not None:
        return known
    key, size, mtime_ns, md5, read = _md5_file(path)
    stats.bytes_hashed += read
    if index is not None:
        index[key] = {"size": size, "mtime_ns": mtime_ns, "md5": md5}
    return md5


def describe_partitions(
    uris: Sequence[str | Path],
    *,
    s3: S3Options | None = None,
    digest_index: Path | None = None,
    stats: ScanStats | None = None,
) -> list[Partition]:
    """Each file's content digest: md5 of a local file (remembered in ``digest_index`` by path,
    size and mtime, so an unchanged file is not read again), ETag and size of an S3 object."""
    stats = stats if stats is not None else ScanStats()
    index = _load_index(digest_index)
    out = _describe(uris, s3, index, stats)
    if digest_index is not None:
        _write_json(digest_index, index)
    return out


def _load_index(path: Path | None) -> dict[str, Any]:
    return json.loads(path.read_text()) if path is not None and path.exists() else {}


def _describe(
    uris: Sequence[str | Path], s3: S3Options | None, index: dict[str, Any], stats: ScanStats
) -> list[Partition]:
    out: list[Partition] = []
    client = None
    for raw in uris:
        uri = str(raw)
        if is_s3(uri):
            options = s3 or S3Options.from_platform()
            client = client or _s3_client(options)
            bucket, key = _split_s3(uri)
            head = client.head_object(Bucket=bucket, Key=key)
            size = int(head["ContentLength"])
            out.append(Partition(uri, f"etag:{head['ETag'].strip(chr(34))}:{size}", size))
        else:
            path = Path(uri)
            out.append(Partition(str(path), f"md5:{_local_md5(path, index, stats)}", path.stat().st_size))
    return out


# -----------------------------------------------------------------------------------------
# One partition
# -----------------------------------------------------------------------------------------


def _numeric_values(arr) -> np.ndarray:
    """A column of a record batch as float64 with NaN for nulls (``pd.to_numeric(errors="coerce")``
    for non-numeric types, as :func:`profile_frame` does)."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t):
        if pa.types.is_boolean(t) or arr.null_count:
            import pyarrow.compute as pc

            arr = pc.cast(arr, pa.float64())
        return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)
    import pandas as pd

    return pd.to_numeric(arr.to_pandas(), errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _category_counts(arr) -> tuple[dict[str, int], int]:
    """Counts per category key and the missing count of one column of a record batch."""
    import pyarrow as pa

    t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        import pyarrow.compute as pc

        counts: dict[str, int] = {}
        vc = pc.value_counts(arr)
        for value, n in zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist()):
            if value is not None:
                key = category_key(value)
                counts[key] = counts.get(key, 0) + int(n)
        return counts, int(arr.null_count)
    prof = categorical_profile(arr.to_pandas())
    return dict(prof.counts), prof.missing


def _column_groups(columns: list[str], batch_rows: int, max_batch_bytes: int) -> list[list[str]]:
    per_pass = max(1, max_batch_bytes // (8 * max(batch_rows, 1)))
    return [columns[i : i + per_pass] for i in range(0, len(columns), per_pass)] or [[]]


def profile_partition(
    source: str | Path | Partition,
    spec: ProfileSpec,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    s3: S3Options | None = None,
    stats: ScanStats | None = None,
) -> Profile:
    """The profile of one parquet file on ``spec``, read in record batches of ``batch_rows``
    rows; the columns are read in passes of at most ``max_batch_bytes // (8 * rows)``
    columns, ``rows`` the larger of ``batch_rows`` and the file's largest row group (pyarrow
    decodes a row group's columns at once), so memory stays near ``max_batch_bytes``. Equals ``profile_frame(pd.read_parquet(file), spec)`` in counts (KLL sketches are
    randomised once they compact; their rank error is the same)."""
    import pyarrow.parquet as pq

    stats = stats if stats is not None else ScanStats()
    uri = source.uri if isinstance(source, Partition) else str(source)
    wanted = list(spec.numeric) + list(spec.categorical)
    if is_s3(uri):
        fs, path = s3_filesystem(s3), uri[len("s3://") :]
    else:
        from pyarrow import fs as pafs

        fs, path = pafs.LocalFileSystem(), str(Path(uri).resolve())
    numeric = {c: NumericAccumulator(spec.edges[c], spec.kll_k) for c in spec.numeric}
    cat_counts: dict[str, dict[str, int]] = {c: {} for c in spec.categorical}
    cat_missing = dict.fromkeys(spec.categorical, 0)
    rows = 0
    with fs.open_input_file(path) as f:
        stats.files_opened += 1
        # No pre-buffering: pyarrow's read cache would keep every batch's column ranges until the
        # file is done (memory growing with the file); a buffered stream reads pages as needed.
        pf = pq.ParquetFile(f, pre_buffer=False, buffer_size=_READ_BUFFER)
        names = set(pf.schema_arrow.names)
        absent = [c for c in wanted if c not in names]
        if absent:
            raise ValueError(f"partition {uri} has no column(s) {absent}; the spec needs {wanted}")
        rows = int(pf.metadata.num_rows)
        # pyarrow decodes a whole row group of the columns read: size the passes by it too
        largest_group = max((pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)), default=0)
        for group in _column_groups(wanted, max(batch_rows, largest_group), max_batch_bytes):
            for batch in pf.iter_batches(batch_size=batch_rows, columns=group, use_threads=False):
                stats.batches_read += 1
                for name, arr in zip(batch.schema.names, batch.columns):
                    if name in numeric:
                        numeric[name].add(_numeric_values(arr))
                    else:
                        counts, missing = _category_counts(arr)
                        into = cat_counts[name]
                        for k, v in counts.items():
                            into[k] = into.get(k, 0) + v
                        cat_missing[name] += missing
    stats.rows_read += rows
    return Profile(
        spec,
        rows,
        {c: acc.result() for c, acc in numeric.items()},
        {c: CategoricalProfile(cat_counts[c], cat_missing[c], rows) for c in spec.categorical},
        (Partition(uri, source.digest, source.size).source(),) if isinstance(source, Partition) else (uri,),
    )


# -----------------------------------------------------------------------------------------
# A window: cached partition profiles, merged
# -----------------------------------------------------------------------------------------


def cache_path(cache_dir: Path, spec: ProfileSpec, partition: Partition) -> Path:
    """Where a partition's profile on ``spec`` is cached."""
    digest = hashlib.sha256(partition.digest.encode()).hexdigest()[:32]
    return Path(cache_dir) / spec.key() / f"{digest}.json"


def profile_cache_dir(settings: Any, model: str) -> Path:
    """The platform's cache of partition profiles of a model: ``<state_dir>/profiles/<model>``."""
    return Path(settings.state_dir) / "profiles" / model


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB (``VmHWM``; ``ru_maxrss`` off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def _profile_job(
    args: tuple[Partition, dict[str, Any], int, int, S3Options | None],
) -> tuple[dict[str, Any], ScanStats]:
    partition, spec_dict, batch_rows, max_batch_bytes, s3 = args
    stats = ScanStats()
    prof = profile_partition(
        partition,
        ProfileSpec.from_dict(spec_dict),
        batch_rows=batch_rows,
        max_batch_bytes=max_batch_bytes,
        s3=s3,
        stats=stats,
    )
    stats.peak_rss_mb[os.getpid()] = peak_rss_mb()
    return prof.to_dict(), stats


def empty_profile(spec: ProfileSpec) -> Profile:
    """The profile of no rows on ``spec``."""
    numeric = {c: NumericAccumulator(spec.edges[c], spec.kll_k).result() for c in spec.numeric}
    categorical = {c: CategoricalProfile({}, 0, 0) for c in spec.categorical}
    return Profile(spec, 0, numeric, categorical)


def profile_window(
    partitions: Sequence[str | Path | Partition],
    spec: ProfileSpec,
    cache_dir: Path | None,
    *,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    workers: int = 1,
    s3: S3Options | None = None,
    stats: ScanStats | None = None,
) -> Profile:
    """The profile of a window of parquet partitions: each partition's profile from the cache
    (``cache_dir``; ``None`` = no cache) or read in batches and cached, then all merged in the
    order given. ``sources`` lists each partition with its digest."""
    stats = stats if stats is not None else ScanStats()
    uris = [str(p) for p in partitions if not isinstance(p, Partition)]
    index_path = (Path(cache_dir) / "digests.json") if cache_dir is not None and uris else None
    index = _load_index(index_path)
    pool = None
    try:
        unknown = [Path(u) for u in uris if not is_s3(u) and _known_md5(Path(u), index) is None]
        if workers > 1 and len(unknown) > 1:  # hash new files in parallel too (a full read each)
            pool = _pool(workers)
            for key, size, mtime_ns, md5, read in pool.map(_md5_file, unknown):
                index[key] = {"size": size, "mtime_ns": mtime_ns, "md5": md5}
                stats.bytes_hashed += read
        described = iter(_describe(uris, s3, index, stats))
        if index_path is not None:
            _write_json(index_path, index)
        return _profile_parts(
            [p if isinstance(p, Partition) else next(described) for p in partitions],
            spec,
            cache_dir,
            batch_rows=batch_rows,
            max_batch_bytes=max_batch_bytes,
            workers=workers,
            s3=s3,
            stats=stats,
            pool=pool,
        )
    finally:
        if pool is not None:
            pool.shutdown()


def _pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _profile_parts(
    parts: list[Partition],
    spec: ProfileSpec,
    cache_dir: Path | None,
    *,
    batch_rows: int,
    max_batch_bytes: int,
    workers: int,
    s3: S3Options | None,
    stats: ScanStats,
    pool: Any,
) -> Profile:
    profiles: dict[int, Profile] = {}
    todo: list[int] = []
    for i, part in enumerate(parts):
        cached = cache_path(Path(cache_dir), spec, part) if cache_dir is not None else None
        if cached is not None and cached.exists():
            prof = Profile.from_dict(json.loads(cached.read_text()))
            if prof.spec == spec:
                profiles[i] = prof
                stats.cache_hits += 1
                continue
        stats.cache_misses += 1
        todo.append(i)
    jobs = [(parts[i], spec.to_dict(), batch_rows, max_batch_bytes, s3) for i in todo]
    if workers > 1 and len(jobs) > 1:
        pool = pool or _pool(min(workers, len(jobs)))
        results = list(pool.map(_profile_job, jobs))
    else:
        results = []
        for job in jobs:
            one = ScanStats()
            prof = profile_partition(
                job[0], spec, batch_rows=batch_rows, max_batch_bytes=max_batch_bytes, s3=s3, stats=one
            )
            results.append((prof.to_dict(), one))
    for i, (data, one) in zip(todo, results):
        stats.add(one)
        if cache_dir is not None:
            _write_json(cache_path(Path(cache_dir), spec, parts[i]), data)
        profiles[i] = Profile.from_dict(data)
    merged: Profile | None = None
    for i in range(len(parts)):
        merged = profiles[i] if merged is None else merged.merge(profiles[i])
    if merged is None:
        return empty_profile(spec)
    return with_sources(merged, tuple(p.source() for p in parts))
