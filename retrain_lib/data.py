"""Data access: daily partitions of features and late-arriving labels.

Layout under the platform's ``data_root``::

    <data.path>/<YYYY-MM-DD>.<parquet|csv>         events of that day (features, id, timestamp)
    <data.labels_path>/<YYYY-MM-DD>.<parquet|csv>  labels that *arrived* that day (id, target)

A window read "as of" a day only sees the labels that had arrived by that day, so neither
the monitor nor training can peek at the future. Without ``labels_path`` the target is read
from the feature partitions and masked for events younger than ``label_delay_days``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from retrain_lib.config import ModelConfig
from retrain_lib.errors import DataError

log = logging.getLogger(__name__)
_DATE_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})\.(parquet|csv)$")


def resolve_dir(data_root: Path, relative: str) -> Path:
    """Join ``relative`` to ``data_root``, refusing anything that escapes the root."""
    root = Path(data_root).resolve()
    path = (root / relative).resolve()
    if path != root and root not in path.parents:
        raise DataError(f"data path {relative!r} resolves to {path}, outside the data root {root}; "
                        "use a path relative to data_root without '..' or symlinks out of it")
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


def read_partition(path: Path, fmt: str) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
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
    files: tuple[Path, ...]

    @property
    def fingerprint(self) -> str:
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


def available_days(cfg: ModelConfig, data_root: Path) -> list[dt.date]:
    return list(list_partitions(resolve_dir(data_root, cfg.data.path), cfg.data.format))


def load_window(
    cfg: ModelConfig,
    data_root: Path,
    start: dt.date,
    end: dt.date,
    *,
    as_of: dt.date | None = None,
    require_rows: bool = True,
) -> Window:
    """Events of days ``start..end`` (inclusive), with the labels known on ``as_of``.

    The returned frame has the features, id, timestamp and target columns plus a boolean
    column ``__label_known``. Target values not yet known on ``as_of`` are NaN.
    """
    as_of = as_of or end
    if start > end:
        raise DataError(f"window start {start} is after its end {end}")
    src = cfg.data
    feat_dir = resolve_dir(data_root, src.path)
    parts = {d: p for d, p in list_partitions(feat_dir, src.format).items() if start <= d <= end and d <= as_of}
    if not parts:
        if require_rows:
            raise DataError(
                f"no {src.format} partitions for model {cfg.name!r} between {start} and {end} in {feat_dir}; "
                f"expected files named YYYY-MM-DD.{src.format} (run 'retrain simulate' for sample data)"
            )
        return Window(pd.DataFrame(), start, end, as_of, ())
    frames = []
    for p in parts.values():
        part = read_partition(p, src.format)
        # Check every partition: after concat a column missing from one file would be NaN-filled silently.
        _check_columns(cfg, part, f"feature partition {p}", require_target=src.labels_path is None)
        frames.append(part)
    frame = pd.concat(frames, ignore_index=True)
    files = list(parts.values())
    frame[src.timestamp_column] = pd.to_datetime(frame[src.timestamp_column])
    target = cfg.features.target

    if src.labels_path:
        label_dir = resolve_dir(data_root, src.labels_path)
        label_parts = {d: p for d, p in list_partitions(label_dir, src.format).items() if d <= as_of}
        # Labels of these events arrive at the earliest on the event day.
        label_parts = {d: p for d, p in label_parts.items() if d >= start}
        if target in frame.columns:
            frame = frame.drop(columns=[target])
        if label_parts:
            label_frames = []
            for p in label_parts.values():
                part = read_partition(p, src.format)
                missing = [c for c in (src.id_column, target) if c not in part.columns]
                if missing:
                    raise DataError(f"label partition {p} lacks column(s) {missing}; "
                                    f"each must have {src.id_column!r} and {target!r}")
                label_frames.append(part)
            labels = pd.concat(label_frames, ignore_index=True)
            labels = labels[[src.id_column, target]].drop_duplicates(src.id_column, keep="last")
            frame = frame.merge(labels, on=src.id_column, how="left")
            files += list(label_parts.values())
        else:
            frame[target] = np.nan
        known = frame[target].notna()
    else:
        cutoff = pd.Timestamp(as_of - dt.timedelta(days=src.label_delay_days)) + pd.Timedelta(days=1)
        known = (frame[src.timestamp_column] < cutoff) & frame[target].notna()
        frame.loc[~known, target] = np.nan
    frame["__label_known"] = known.to_numpy()
    return Window(frame, start, end, as_of, tuple(files))


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
