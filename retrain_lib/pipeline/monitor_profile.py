"""The monitor's drift check with ``drift.engine: profile``: the champion's stored reference
profile against the current window's profile (merged from per-partition profiles), and the
steps the monitor DAG maps over partitions (:func:`monitor_spec`, :func:`profile_chunk`)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from retrain_lib.core.settings import Settings
from retrain_lib.core.values import as_day
from retrain_lib.pipeline.monitor_facts import (
    drift_current,
    drift_history,
    importance_weights,
    reference_window,
    summarise_drift,
)
from retrain_lib.pipeline.profiles import (
    PartitionChunk,
    drift_columns,
    merge_profiles,
    partition_chunks,
    profile_days,
    profile_of_window,
    profile_summary_extra,
    reference_span,
    stored_reference_profile,
)
from retrain_lib.stats.profile import Profile, ProfileSpec
from retrain_lib.stats.profile_drift import profile_drift_for_config
from retrain_lib.store.data import Window
from retrain_lib.store.model_context import ModelContext

log = logging.getLogger(__name__)


def _stored(ctx: ModelContext, champion) -> Profile | None:
    """The champion's stored reference profile, when the drift config still profiles the same
    features on the same number of buckets (else ``None``: the config changed since training)."""
    if champion is None:
        return None
    stored = stored_reference_profile(ctx.client, getattr(champion, "run_id", None))
    numeric, categorical = drift_columns(ctx.cfg)
    if stored is None or (stored.spec.bins, list(stored.spec.numeric), list(stored.spec.categorical)) != (
        ctx.cfg.drift.bins,
        numeric,
        categorical,
    ):
        return None
    return stored


def _reference(ctx: ModelContext, champion, rebased) -> tuple[Profile, tuple[dt.date, dt.date]]:
    """The reference profile and its span: the champion's stored profile, else (no champion,
    a rebased reference, a version trained before profiles or before a drift config change)
    the reference window profiled now."""
    cfg = ctx.cfg
    if champion is not None and rebased is None and champion.tags.get("data.start") and champion.tags.get("data.end"):
        stored = _stored(ctx, champion)
        if stored is not None:
            span = reference_span(cfg, as_day(champion.tags["data.start"]), as_day(champion.tags["data.end"]))
            return stored, span
    window = reference_window(ctx, champion, rebased)
    return profile_of_window(cfg, window), (window.start, window.end)


def profile_drift_check(
    ctx: ModelContext,
    champion,
    as_of: dt.date,
    current: Window,
    rebased,
    current_profiles: Sequence[Profile] | None = None,
) -> dict[str, Any]:
    """The monitor's drift summary from profiles (see :mod:`retrain_lib.pipeline.profiles`).
    Partition profiles computed on other buckets than the reference's (the champion changed
    since they were computed) or a rebased current window are profiled again here."""
    cfg = ctx.cfg
    reference, ref_span = _reference(ctx, champion, rebased)
    compared = drift_current(ctx, current, rebased)
    given = merge_profiles(current_profiles or [])
    if given is not None and given.spec == reference.spec and compared is current:
        cur = given
    else:
        if given is not None:
            log.info("partition profiles of %s were computed on other buckets; profiling the window again", cfg.name)
        cur = profile_of_window(cfg, compared, reference.spec)
    weights = importance_weights(champion) if cfg.drift.weight_by_importance else None
    report = profile_drift_for_config(cfg, reference, cur, weights=weights)
    summary = summarise_drift(
        cfg, report, ref_span, (compared.start, compared.end), history=(lambda: drift_history(ctx, as_of))
    )
    summary["profile"] = profile_summary_extra(reference, cur)
    return summary


def monitor_spec(model: str, *, settings: Settings | None = None) -> ProfileSpec | None:
    """The buckets the current window's partitions are profiled on: those of the champion's
    stored reference profile (``None`` without one: the check profiles the window itself)."""
    ctx = ModelContext(model, settings)
    stored = _stored(ctx, ctx.champion())
    return stored.spec if stored is not None else None


def profile_chunk(
    model: str, days: Sequence[str], spec: ProfileSpec, as_of, *, settings: Settings | None = None
) -> Profile:
    """The profile of some days of the current window (one mapped task of the monitor DAG)."""
    ctx = ModelContext(model, settings)
    return profile_days(ctx.cfg, ctx.settings, spec, days, as_of)


def monitor_chunks(model: str, as_of, *, chunks: int, settings: Settings | None = None) -> list[PartitionChunk]:
    """The current window's days with data for ``as_of``, in at most ``chunks`` groups."""
    ctx = ModelContext(model, settings)
    return partition_chunks(ctx.cfg, ctx.settings, as_of, chunks=chunks)
