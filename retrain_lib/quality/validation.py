"""Data validation with Great Expectations 1.x: running a model's suite on a window, and
quarantining a failed batch.

A model config's ``validation:`` section becomes one expectation suite
(:func:`retrain_lib.quality.validation_suite.build_specs`)::

    validation:
      not_null: [debt_to_income, {column: income, mostly: 0.97}]
      between: {income: {min: 0, max: 10000000}}
      in_set: {region: [north, south, east, west]}
      unique: [application_id]
      row_count: {min: 200, max: 5000}      # per day of the window
      exact_columns: true
      freshness_hours: 6

:func:`validate_frame` runs it on a whole window (an ephemeral GX context, a pandas data
source, one whole-dataframe batch) and returns a
:class:`~retrain_lib.quality.validation_report.ValidationReport` whose failed results name the
expectation, its arguments, what was observed and a few offending rows::

    income: expect_column_values_to_be_between(min=0, max=10000000): 37 rows (0.8%) unexpected, e.g. -5.0, -12.0

:func:`quarantine_batch` keeps a copy of a failed batch. "Quarantine" here means *copy and
record*, never move: the source partitions are shared (the monitor reads them, overlapping
training windows read them, a snapshot's fingerprint is computed from them), so deleting or
rewriting them would change other runs' inputs and destroy the evidence. The retrain that
found the problem stops; fixing the data upstream (a new partition file) changes the
fingerprint, and the next retrain validates it again.

Great Expectations takes about 10 s to import: it is imported inside the functions that
need it, never at module level.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd

from retrain_lib.core.config import ModelConfig
from retrain_lib.quality.validation_report import ExpectationResult, ValidationReport, jsonable
from retrain_lib.quality.validation_suite import ExpectationSpec, build_specs

log = logging.getLogger(__name__)

MAX_ROWS = 5  # offending rows kept per failed expectation
MAX_VALUES = 20  # unexpected values kept per failed expectation


# -----------------------------------------------------------------------------------------
# Running the suite
# -----------------------------------------------------------------------------------------


def _gx_context():
    # Importing GX logs "Skipping registering function ..." at INFO for ~200 functions of its
    # public-API registry (and more registry chatter at each run): task logs keep its warnings only.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        store_backend_defaults=InMemoryStoreBackendDefaults(),
    )
    return gx, gx.get_context(mode="ephemeral", project_config=config)


def run_suite(frame: pd.DataFrame, specs: list[ExpectationSpec], *, name: str = "retrain") -> list[dict]:
    """Run ``specs`` on ``frame`` with Great Expectations; one JSON-able result dict per spec,
    in the order of ``specs``."""
    if not specs:
        return []
    gx, context = _gx_context()
    batch = (
        context.data_sources.add_pandas(f"{name}_source")
        .add_dataframe_asset(f"{name}_frame")
        .add_batch_definition_whole_dataframe("whole_frame")
    )
    # The whole suite at once: adding expectations one by one rewrites the store each time.
    expectations = [
        getattr(gx.expectations, spec.kind)(**spec.kwargs, meta={"retrain_index": i}) for i, spec in enumerate(specs)
    ]
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite", expectations=expectations))
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite)
    )
    outcome = definition.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": MAX_VALUES},
    )
    by_index: dict[int, dict] = {}
    for result in outcome.results:
        data = result.to_json_dict()
        by_index[int(data["expectation_config"]["meta"]["retrain_index"])] = data
    return [by_index[i] for i in range(len(specs))]


def validate_frame(cfg: ModelConfig, frame: pd.DataFrame, *, as_of, days: int = 1) -> ValidationReport:
    """Check ``frame`` against the expectations of ``cfg.validation``.

    ``as_of`` anchors ``freshness_hours`` (the latest timestamp must fall within that many
    hours before the end of the ``as_of`` day); ``days`` is the number of calendar days the
    frame covers (``row_count`` bounds are per day). Internal columns (``__*``) are ignored;
    time-zone aware timestamps are compared in UTC.

    Example::

        report = validate_frame(cfg, window.frame, as_of=window.as_of, days=28)
        if not report.success:
            print("\\n".join(report.explain()))
    """
    as_of = _as_date(as_of)
    frame = frame[[c for c in frame.columns if not str(c).startswith("__")]].reset_index(drop=True)
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
            frame[col] = frame[col].dt.tz_convert("UTC").dt.tz_localize(None)
    specs = build_specs(cfg, as_of=as_of, days=days)
    raw = run_suite(frame, specs, name=cfg.name)
    results = tuple(_result(spec, data, frame) for spec, data in zip(specs, raw))
    report = ValidationReport(cfg.name, as_of.isoformat(), int(len(frame)), results)
    for r in report.failed:
        log.warning(
            "%s data validation failed: %s%s",
            cfg.name,
            r.explain(),
            f"; first offending row: {r.rows[0]}" if r.rows else "",
        )
    return report


def validate_window(cfg: ModelConfig, window) -> ValidationReport:
    """:func:`validate_frame` on a :class:`~retrain_lib.store.data.Window` (its days and as_of), plus
    ``row_count`` for each day that has a partition file (the frame-wide bounds are the
    per-day ones times the days: an empty or truncated day would hide among the others)."""
    days = (window.end - window.start).days + 1
    report = validate_frame(cfg, window.frame, as_of=window.as_of, days=days)
    extra = _partition_row_counts(cfg, window)
    if not extra:
        return report
    return ValidationReport(report.model, report.as_of, report.rows, report.results + tuple(extra))


def _partition_row_counts(cfg: ModelConfig, window) -> list[ExpectationResult]:
    """A failed ``row_count`` result per feature partition (a file or object named
    ``YYYY-MM-DD.<format>``) whose day has fewer or more rows than ``validation.row_count``."""
    v = cfg.validation
    bounds = v.row_count if v is not None else None
    ts = cfg.data.timestamp_column
    if bounds is None or (bounds.min is None and bounds.max is None) or ts not in window.frame.columns:
        return []
    labels = cfg.data.labels_path
    per_day = pd.to_datetime(window.frame[ts]).dt.date.value_counts()
    out = []
    for ref in window.files:
        name = str(ref).rsplit("/", 1)[-1]
        if (labels and f"/{labels.strip('/')}/" in str(ref)) or not re.match(r"\d{4}-\d{2}-\d{2}\.", name):
            continue
        day = _as_date(name[:10])
        count = int(per_day.get(day, 0))
        if (bounds.min is not None and count < bounds.min) or (bounds.max is not None and count > bounds.max):
            kwargs = {"min_value": bounds.min, "max_value": bounds.max}
            out.append(
                ExpectationResult(
                    check="row_count",
                    expectation="expect_table_row_count_to_be_between",
                    column=None,
                    kwargs=kwargs,
                    success=False,
                    observed_value=count,
                    note=f"rows of partition {ref} ({day})",
                )
            )
            log.warning(
                "%s data validation failed: partition %s has %d rows (row_count %s..%s per day)",
                cfg.name,
                ref,
                count,
                bounds.min,
                bounds.max,
            )
    return out


def _result(spec: ExpectationSpec, data: dict, frame: pd.DataFrame) -> ExpectationResult:
    res = data.get("result") or {}
    exc = data.get("exception_info") or {}
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    kwargs = {k: v for k, v in (data.get("expectation_config") or {}).get("kwargs", {}).items() if k != "batch_id"}
    values = list(res.get("partial_unexpected_list") or [])
    details = {}
    if spec.check == "exact_columns":
        mismatched = (res.get("details") or {}).get("mismatched") or {}
        details = {"unexpected": mismatched.get("unexpected") or [], "missing": mismatched.get("missing") or []}
    unexpected = res.get("unexpected_count")
    rows = _offending_rows(frame, spec, res) if unexpected else []
    return ExpectationResult(
        check=spec.check,
        expectation=data["expectation_config"]["type"],
        column=spec.column,
        kwargs=kwargs,
        success=bool(data.get("success")) and error is None,
        observed_value=res.get("observed_value"),
        element_count=res.get("element_count"),
        unexpected_count=unexpected,
        unexpected_percent=res.get("unexpected_percent"),
        partial_unexpected_list=values,
        rows=rows,
        details=details,
        note=spec.note,
        error=error,
    )


def _offending_rows(frame: pd.DataFrame, spec: ExpectationSpec, res: dict) -> list[dict]:
    """Up to five rows of ``frame`` behind the unexpected values (by GX's row index, else
    by matching the unexpected values)."""
    index = [i for i in (res.get("partial_unexpected_index_list") or []) if isinstance(i, int) and i < len(frame)]
    if index:
        rows = frame.iloc[index[:MAX_ROWS]]
    elif spec.column in frame.columns:
        col = frame[spec.column]
        values = [v for v in res.get("partial_unexpected_list") or [] if v is not None]
        mask = col.isna() if spec.check == "not_null" else col.isin(values)
        rows = frame[mask].head(MAX_ROWS)
    else:
        return []
    return json.loads(rows.to_json(orient="records", date_format="iso"))


# -----------------------------------------------------------------------------------------
# Quarantine
# -----------------------------------------------------------------------------------------


def quarantine_dir(state_dir: Path, model: str, as_of) -> Path:
    return Path(state_dir) / "quarantine" / model / _as_date(as_of).isoformat()


def quarantine_batch(
    cfg: ModelConfig,
    window,
    *,
    data_root: Path,
    state_dir: Path,
    report: ValidationReport | None = None,
    problems: list[str] | tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Copy the window's partition files to ``<state_dir>/quarantine/<model>/<as_of>/`` with a
    ``manifest.json`` of the failures; returns that directory.

    The source files are only read, never moved, deleted or modified (see the module
    docstring). Paths under the quarantine mirror those under ``data_root``. A window read
    from S3 or SQL has no local files: its rows are written to ``batch.parquet`` instead and
    the manifest lists the objects or table they came from. Running it
    again for the same data rewrites the same copies; a quarantine of *different* data for
    the same day is kept, renamed ``<as_of>.<its fingerprint>``.
    """
    dest = quarantine_dir(state_dir, cfg.name, window.as_of)
    fingerprint = window.fingerprint
    manifest_path = dest / "manifest.json"
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text()).get("fingerprint")
        except (OSError, ValueError):
            old = None
        if old and old != fingerprint:
            kept = dest.with_name(f"{dest.name}.{old}")
            if not kept.exists():
                dest.rename(kept)
    dest.mkdir(parents=True, exist_ok=True)
    root = Path(data_root).resolve()
    files, remote = [], []
    for ref in window.files:
        if "://" in str(ref) or str(ref).startswith("sql:") or not Path(ref).is_file():
            remote.append(str(ref))
            continue
        src = Path(ref).resolve()
        try:
            rel = src.relative_to(root)
        except ValueError:
            rel = Path(src.name)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, size = _copy(src, target)
        files.append({"source": str(src), "copy": str(target), "bytes": size, "sha256": digest})
    batch = None
    if remote or not files:
        # S3 objects or SQL rows: keep the rows as they were read and validated.
        batch = dest / "batch.parquet"
        tmp = batch.with_name(batch.name + ".tmp")
        window.frame[[c for c in window.frame.columns if not str(c).startswith("__")]].to_parquet(tmp, index=False)
        tmp.replace(batch)
    manifest = {
        "model": cfg.name,
        "as_of": window.as_of.isoformat(),
        "window": [window.start.isoformat(), window.end.isoformat()],
        "fingerprint": fingerprint,
        "rows": int(len(window.frame)),
        "semantics": "copies of the source partitions; the sources are left untouched because the monitor and "
        "other windows read them",
        "problems": list(problems),
        "failed": [r.to_dict() for r in report.failed] if report else [],
        "expectations": len(report.results) if report else 0,
        "files": files,
        "remote_sources": remote,
        "batch": str(batch) if batch else None,
        **(extra or {}),
    }
    tmp = manifest_path.with_name(manifest_path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(manifest), indent=2, default=str))
    tmp.replace(manifest_path)
    log.warning(
        "quarantined the %s batch of %s (%d file(s) copied%s) in %s",
        window.as_of.isoformat(),
        cfg.name,
        len(files),
        ", rows in batch.parquet" if batch else "",
        dest,
    )
    return dest


def _copy(src: Path, target: Path) -> tuple[str, int]:
    """Copy ``src`` to ``target`` (through a temporary file); sha256 and size of the bytes."""
    digest = hashlib.sha256()
    size = 0
    tmp = target.with_name(target.name + ".tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        for chunk in iter(lambda: fin.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
            fout.write(chunk)
    shutil.copystat(src, tmp)
    tmp.replace(target)
    return digest.hexdigest(), size


# -----------------------------------------------------------------------------------------
# Helpers
# -----------------------------------------------------------------------------------------


def _as_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])
