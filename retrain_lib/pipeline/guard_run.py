"""The steps of a post-deploy guard, as the ``<model>__guard`` DAG runs them.

:func:`start_guard` fixes what is watched (the champion now, its ``previous-champion``, the
time of the promotion from the ledger) and records ``guard_start``; :func:`check_guard` reads
the prediction log since then (:func:`guard_facts`) and decides with
:func:`retrain_lib.pipeline.guard.decide_guard` (the DAG's deferrable check calls it every
``guard.interval_s`` on the triggerer; nothing recorded); :func:`finish_guard` acts on a
final decision: a rollback through :func:`retrain_lib.pipeline.promotion.rollback_model`
(compare-and-swap on the watched version, atomic with its ledger entry), and a
``guard_end`` ledger entry for every outcome (``clean``, ``rollback``, ``alarm``,
``superseded``).

The comparisons are paired without any change to the gateway: ``previous-champion`` scores
the logged features of the champion's labelled requests and of its newest answered ones here,
in the check, so both versions are judged on the same requests and labels, outputs before any
label arrives (what a shadow of the previous champion in the gateway would give, minus its
latency).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain_lib.core.errors import RegistryError
from retrain_lib.core.metrics import predict_scores
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import str_or_none
from retrain_lib.learn.training_data import feature_frame
from retrain_lib.pipeline.guard import ROLLBACK, GuardFacts, GuardLimits, GuardStart, decide_guard
from retrain_lib.pipeline.promotion import rollback_model
from retrain_lib.serving.predlog_read import read_predictions
from retrain_lib.serving.predlog_store import resolve_url
from retrain_lib.stats.rollout_stats import loss_per_request, output_psi
from retrain_lib.store import registry
from retrain_lib.store.model_context import ModelContext, load_model

log = logging.getLogger(__name__)

PROMOTION_EVENTS = ("promote", "rollback")
FLOAT_NOISE = 1e-9  # per-request loss differences below this are rounding, not a difference


def _utc(value: str | dt.datetime) -> dt.datetime:
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _promoted_at(ctx: ModelContext, version: str) -> tuple[dt.datetime | None, str]:
    """Time and event of the last ledger entry that made ``version`` champion."""
    for rec in reversed(ctx.ledger().records(ctx.name)):
        if rec["event"] in PROMOTION_EVENTS and str_or_none(rec.get("after")) == version:
            return _utc(rec["time"]), rec["event"]
    return None, "promote"


def start_guard(
    model: str,
    *,
    settings: Settings | None = None,
    version: str | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    now: dt.datetime | None = None,
    minutes: float | None = None,
) -> GuardStart:
    """What the guard of the champion watches; recorded as ``guard_start``.

    ``version``: the champion the caller promoted (default: the champion now). When the champion
    is no longer that version, the guard still starts and its first check ends it as
    ``superseded``. The guard lasts ``minutes`` (default: the config's ``guard.minutes``); the
    log is read from the promotion on, at most that long back."""
    ctx = ModelContext(model, settings)
    minutes = float(minutes) if minutes else ctx.cfg.guard.minutes
    now = now or dt.datetime.now(dt.UTC)
    aliases = registry.aliases(ctx.client, ctx.name)
    champion = str_or_none(aliases.get(registry.CHAMPION))
    if champion is None:
        raise RegistryError(f"{model} has no champion to guard")
    version = str(version) if version else champion
    promoted, event = _promoted_at(ctx, version)
    earliest = now - dt.timedelta(minutes=minutes)
    since = max(promoted, earliest) if promoted is not None else now
    start = GuardStart(
        model=model,
        version=version,
        previous=str_or_none(aliases.get(registry.PREVIOUS)) if version == champion else None,
        since=since.isoformat(),
        started=now.isoformat(),
        as_of=as_of,
        promotion=event,
        minutes=minutes,
    )
    ctx.record(
        "guard_start",
        as_of,
        actor,
        {
            **start.to_xcom(),
            "reason": f"guarding v{version} for {minutes:g} minutes"
            + (f" against previous-champion v{start.previous}" if start.previous else " (no previous-champion)"),
        },
    )
    return start


SHIFT_SAMPLE = 2000  # newest answered requests previous-champion scores for the output-shift check


@dataclass
class GuardCache:
    """What a guard keeps between its looks (its trigger holds one): the models it loaded and
    previous-champion's score of each labelled request by request id, so that a look loads no
    model twice and rescores only the requests labelled since the last look."""

    models: dict[str, Any] = field(default_factory=dict)
    scores: dict[str, Any] = field(default_factory=dict)


def _previous_scores(ctx: ModelContext, rows, previous: str, cache: GuardCache):
    """``previous``'s score of each of ``rows`` (logged requests), from its logged features;
    each request is scored once per guard (``cache``)."""
    import numpy as np
    import pandas as pd

    cfg = ctx.cfg
    ids = rows["request_id"].astype(str)
    new = rows[~ids.isin(cache.scores.keys())]
    if len(new):
        X = feature_frame(cfg, pd.DataFrame(new["features"].tolist(), index=new.index))
        scores = predict_scores(load_model(ctx, f"models:/{cfg.name}/{previous}"), X, cfg.task)
        cache.scores.update(zip(new["request_id"].astype(str), scores))
    return np.asarray([cache.scores[i] for i in ids], dtype=float)


def _paired_losses(ctx: ModelContext, labelled, previous: str, cache: GuardCache) -> tuple[Any, Any]:
    """Per-request losses of the champion's logged outputs and of ``previous`` scoring the
    same logged features, against the labels that came back."""
    y = labelled["label"].to_numpy(float)
    return (
        loss_per_request(ctx.cfg.task, y, labelled["output"].to_numpy(float)),
        loss_per_request(ctx.cfg.task, y, _previous_scores(ctx, labelled, previous, cache)),
    )


def guard_facts(
    model: str,
    start: GuardStart,
    *,
    settings: Settings | None = None,
    now: dt.datetime | None = None,
    log_url: str | None = None,
    cache: GuardCache | None = None,
) -> GuardFacts:
    """The watched champion's requests since ``start.since`` in the prediction log: count,
    failures, p95 latency of the answered ones, and the paired loss differences of its
    labelled requests (previous-champion scored on the same logged features, once there are
    ``guard.min_labels``). ``cache`` keeps models and scores across looks (the trigger's)."""
    ctx = ModelContext(model, settings)
    cache = cache if cache is not None else GuardCache()
    ctx.models = cache.models
    now = now or dt.datetime.now(dt.UTC)
    elapsed = (now - _utc(start.started or start.since)).total_seconds()
    champion_now = str_or_none(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION))
    url = resolve_url(ctx.settings, log_url)
    if url.startswith("sqlite:///") and not Path(url.split("///", 1)[1]).exists():
        return GuardFacts(champion_now=champion_now, elapsed_s=elapsed)  # no gateway has logged here
    frame = read_predictions(url, ctx.name, start.since, arm="champion")
    rows = frame[frame["version"] == start.version]
    failed = rows["error"].notna() | rows["output"].isna()
    ok = rows[~failed]
    facts: dict[str, Any] = {
        "champion_now": champion_now,
        "elapsed_s": elapsed,
        "requests": int(len(rows)),
        "errors": int(failed.sum()),
        "p95_ms": float(ok["latency_ms"].quantile(0.95)) if len(ok) else None,
    }
    labelled = ok[ok["label"].notna()]
    facts["labelled"] = int(len(labelled))
    if start.previous is not None and len(labelled) >= ctx.cfg.guard.min_labels:
        champ, prev = _paired_losses(ctx, labelled, start.previous, cache)
        diff = champ - prev
        # the gateway's fast path and the library's predict may differ in the last bits: a
        # difference that small is the same answer, not evidence either way
        diff[abs(diff) < FLOAT_NOISE] = 0.0
        facts.update(
            loss_diff_mean=float(diff.mean()),
            loss_diff_var=float(diff.var(ddof=1)),
            champion_loss=float(champ.mean()),
            previous_loss=float(prev.mean()),
        )
    guard = ctx.cfg.guard
    if start.previous is not None and guard.max_output_psi is not None and len(ok) >= guard.min_requests:
        newest = ok.tail(SHIFT_SAMPLE)
        previous_scores = _previous_scores(ctx, newest, start.previous, cache)
        facts.update(
            output_psi=float(output_psi(previous_scores, newest["output"].to_numpy(float))),
            output_pairs=int(len(newest)),
        )
    return GuardFacts(**facts)


def check_guard(
    model: str,
    start: GuardStart,
    *,
    settings: Settings | None = None,
    now: dt.datetime | None = None,
    log_url: str | None = None,
    cache: GuardCache | None = None,
) -> dict[str, Any]:
    """One look of the guard (nothing recorded; safe at every poll): ``{"decision": ...,
    "facts": ...}`` as JSON-able dicts."""
    ctx = ModelContext(model, settings)
    facts = guard_facts(model, start, settings=ctx.settings, now=now, log_url=log_url, cache=cache)
    decision = decide_guard(
        start, facts, GuardLimits.from_config(ctx.cfg.guard), minutes=start.minutes or ctx.cfg.guard.minutes
    )
    return {"decision": decision.to_dict(), "facts": facts.to_dict()}


def finish_guard(
    model: str,
    start: GuardStart,
    status: dict[str, Any],
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
) -> dict[str, Any]:
    """Act on a final look (:func:`check_guard`'s result): roll back when it says so
    (compare-and-swap on the watched version; ``rolled_back`` False when the champion moved
    meanwhile), then record ``guard_end``. Returns the outcome (``action``, ``reason``, and the
    rollback's ``from``/``to`` when one happened)."""
    ctx = ModelContext(model, settings)
    decision = status["decision"]
    action, reason = decision["action"], "; ".join(decision["reasons"])
    outcome: dict[str, Any] = {"action": action, "version": start.version, "reason": reason}
    if action == ROLLBACK:
        res = rollback_model(
            model,
            settings=ctx.settings,
            as_of=as_of,
            actor=actor,
            reason=f"post-deploy guard: {reason}",
            expected_champion=start.version,
        )
        outcome.update(res)
        outcome["reason"] = reason
    ctx.record(
        "guard_end",
        as_of,
        actor,
        {
            "version": start.version,
            "previous": start.previous,
            "action": action,
            "rolled_back": bool(outcome.get("rolled_back")),
            "reason": reason,
            "checks": decision.get("checks", []),
            "facts": status.get("facts", {}),
        },
    )
    log.warning("guard of %s v%s ended: %s (%s)", model, start.version, action, reason)
    return outcome
