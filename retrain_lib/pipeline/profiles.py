"""Drift from stored profiles (``drift.engine: profile``): the reference profile is computed
once at training and stored with the version (MLflow artifact ``profile/reference.json``);
a monitor run profiles only the current window, partition by partition (each partition's
profile computed once; in the monitor DAG as mapped tasks spread over the workers), and
compares the two (:func:`retrain_lib.stats.profile_drift.profile_drift_for_config`).

The reference profile's buckets are the reference window's quantile edges, so the binned
methods (PSI, JS, chi2, L-infinity, missing share, unseen categories) give the exact path's
numbers; KS and Wasserstein come from KLL sketches, within the rank error the report states.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import as_day
from retrain_lib.stats.profile import Profile, ProfileSpec, profile_frame, spec_from_frame
from retrain_lib.store.data import Window, available_days, load_window, partition_refs
from retrain_lib.store.profile_scan import S3Options, empty_profile, profile_cache_dir, profile_window
from retrain_lib.store.sql_profile import profile_sql

log = logging.getLogger(__name__)

REFERENCE_PROFILE_ARTIFACT = "profile/reference.json"


def drift_columns(cfg: ModelConfig) -> tuple[list[str], list[str]]:
    """The numeric and categorical features the drift check scores (``drift.exclude`` left out)."""
    skip = set(cfg.drift.exclude)
    return (
        [c for c in cfg.features.numeric if c not in skip],
        [c for c in cfg.features.categorical if c not in skip],
    )


def reference_span(cfg: ModelConfig, start: dt.date, end: dt.date) -> tuple[dt.date, dt.date]:
    """The reference window the monitor compares with a model trained on ``start..end``: its
    last ``windows.reference_days`` (as :func:`retrain_lib.pipeline.monitor_facts.reference_window`)."""
    return max(start, end - dt.timedelta(days=cfg.windows.reference_days - 1)), end


def profile_of_window(cfg: ModelConfig, window: Window, spec: ProfileSpec | None = None) -> Profile:
    """The profile of an in-memory window; on its own quantile edges without ``spec``."""
    numeric, categorical = drift_columns(cfg)
    spec = spec or spec_from_frame(window.frame, numeric, categorical, bins=cfg.drift.bins)
    source = f"window:{window.start}..{window.end}:{window.fingerprint}"
    return profile_frame(window.frame, spec, sources=(source,))


def reference_profile(cfg: ModelConfig, settings: Settings, start, end) -> Profile:
    """The reference profile of a model trained on days ``start..end``."""
    lo, hi = reference_span(cfg, as_day(start), as_day(end))
    return profile_of_window(cfg, load_window(cfg, settings, lo, hi, as_of=hi))


def log_reference_profile(mlflow, cfg: ModelConfig, settings: Settings, start, end) -> Profile:
    """Compute and log the reference profile to the active MLflow run."""
    profile = reference_profile(cfg, settings, start, end)
    mlflow.log_dict(profile.to_dict(), REFERENCE_PROFILE_ARTIFACT)
    mlflow.set_tag("profile.reference", REFERENCE_PROFILE_ARTIFACT)
    return profile


def stored_reference_profile(client, run_id: str | None) -> Profile | None:
    """The reference profile stored with a training run, or ``None`` (a version trained
    before profiles were stored, or without its run)."""
    if not run_id:
        return None
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client.download_artifacts(run_id, REFERENCE_PROFILE_ARTIFACT, tmp)
            with open(path) as fh:
                return Profile.from_dict(json.load(fh))
    except Exception as exc:  # noqa: BLE001 - no artifact: the caller profiles the reference window
        log.info("no stored reference profile in run %s (%s); profiling the reference window", run_id, exc)
        return None


@dataclass(frozen=True)
class PartitionChunk:
    """Days of the current window one mapped task profiles."""

    days: tuple[str, ...]

    def to_xcom(self) -> list[str]:
        return list(self.days)


def partition_chunks(cfg: ModelConfig, settings: Settings, as_of, *, chunks: int) -> list[PartitionChunk]:
    """The days of the monitor's current window that have data, in at most ``chunks`` groups
    of consecutive days (one mapped task each)."""
    as_of = as_day(as_of)
    start = as_of - dt.timedelta(days=cfg.windows.monitor_days - 1)
    days = [d for d in available_days(cfg, settings) if start <= d <= as_of]
    if not days:
        return []
    if cfg.data.source == "sql":  # the database profiles the whole window in one scan
        return [PartitionChunk(tuple(d.isoformat() for d in days))]
    n = max(1, min(chunks, len(days)))
    size = -(-len(days) // n)
    return [PartitionChunk(tuple(d.isoformat() for d in days[i : i + size])) for i in range(0, len(days), size)]


def profile_days(cfg: ModelConfig, settings: Settings, spec: ProfileSpec, days: Sequence[str], as_of) -> Profile:
    """The profile of the given days of the model's data, on ``spec``'s buckets: for a SQL
    source computed by the database (only counts and quantiles travel), for parquet files read
    in record batches with each file's profile cached by its content digest, else one day at a time."""
    as_of = as_day(as_of)
    if cfg.data.source == "sql":
        return profile_sql(cfg, spec, as_day(min(days)), as_day(max(days)), platform=settings.platform)
    if cfg.data.format == "parquet":  # read in record batches; each file's profile cached by its digest
        refs = partition_refs(cfg, settings, [as_day(d) for d in days if as_day(d) <= as_of], settings.platform)
        if not refs:
            return empty_profile(spec)
        return profile_window(
            refs, spec, profile_cache_dir(settings, cfg.name), s3=S3Options.from_platform(settings.platform)
        )
    merged: Profile | None = None
    for day in sorted(days):
        d = as_day(day)
        window = load_window(cfg, settings, d, d, as_of=as_of, require_rows=False)
        if window.frame.empty:
            continue
        part = profile_of_window(cfg, window, spec)
        merged = part if merged is None else merged.merge(part)
    return merged if merged is not None else empty_profile(spec)


def merge_profiles(profiles: Sequence[Profile]) -> Profile | None:
    """One profile of several samples (``None`` for none)."""
    out: Profile | None = None
    for p in profiles:
        out = p if out is None else out.merge(p)
    return out


def profile_summary_extra(reference: Profile, current: Profile) -> dict[str, Any]:
    """What the monitor's drift summary records of the profiles it compared."""
    return {
        "engine": "profile",
        "reference_sources": list(reference.sources),
        "current_partitions": len(current.sources),
        "current_rows": current.rows,
    }
