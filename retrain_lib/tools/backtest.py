"""Backtest a retraining policy on dated partitions before merging it.

:func:`backtest` replays the days ``start..end`` one by one, for several policies, through
the code the DAGs run: the monitor's facts (:func:`~retrain_lib.pipeline.monitor_facts.drift_facts`,
:func:`~retrain_lib.pipeline.performance_facts.champion_performance`,
:func:`~retrain_lib.pipeline.live_facts.rollback_facts`,
:func:`~retrain_lib.pipeline.monitor_facts.new_labels_since_training`), its decision
(:func:`~retrain_lib.pipeline.decision.decide`), the retrain path (training window and
:func:`~retrain_lib.pipeline.snapshot.validate_training_data`, Great Expectations validation,
:func:`~retrain_lib.learn.training.fit`, :func:`~retrain_lib.core.metrics.evaluate` of candidate and
champion on the same holdout, :func:`~retrain_lib.quality.gates.run_gates` on
:func:`~retrain_lib.pipeline.evaluation.gate_inputs`) and the rollback rule. Nothing is written to
MLflow, the registry or the ledger: the replay keeps its champion, previous champion and
monitor history in memory, and its context object refuses any registry access.

No leakage: every decision of day *d* reads data through
:func:`~retrain_lib.store.data.load_window` ``as_of=d`` (no partition after *d*, no label that had
not arrived by *d*). The true labels of every event are read only after all decisions are
fixed, to score the models each policy served (the prequential metric: the model serving
on day *d* is the champion after the actions of day *d - 1*, scored on the events of day
*d*).

Policies (see :func:`~retrain_lib.tools.backtest_policies.default_policies`):

* ``config``: the config as written: the monitor's triggers every day plus the
  ``schedule.retrain_floor`` cron, gates and rollback;
* ``schedule``: the floor schedule only (``retrain_floor``, ``@weekly`` when null);
* ``drift``: the drift trigger only (performance, rollback, age, new-label triggers and
  the floor schedule off);
* ``never``: the first model, never retrained;
* ``oracle``: a retrain every day, always deployed (no gates): the reference.

Every policy starts without a champion on the first day and trains its first model then
(the same cached model for all policies with the same training settings). Trained models
are cached per (training window, training settings) on disk
(:mod:`retrain_lib.tools.artifact_store`), so policies and repeated runs share them; independent
days train in a process pool (:mod:`retrain_lib.tools.replay_pool`). One policy's replay is
:mod:`retrain_lib.tools.replay`; scoring and the summary are :mod:`retrain_lib.tools.backtest_scoring`
and :mod:`retrain_lib.tools.backtest_report`. :mod:`retrain_lib.tools.dry_run` and
:mod:`retrain_lib.tools.threshold_calibration` reuse the replay.

Simplifications (listed in the summary's ``notes``): approvals are granted, shadow/canary
deployments are promoted, ``training.timeout_minutes`` is not applied, the gateway's live
serving facts are absent, and the monitor's data validation (reported, never decisive) is
skipped.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.core.metrics import greater_is_better
from retrain_lib.store.data import partition_cache
from retrain_lib.tools.artifact_store import ArtifactStore, training_hash
from retrain_lib.tools.backtest_policies import Policy, default_policies
from retrain_lib.tools.backtest_report import attach_after, compact_day, summarize
from retrain_lib.tools.backtest_scoring import Scorer, revealed_drifts
from retrain_lib.tools.replay_context import ReplaySettings, data_days, day_list
from retrain_lib.tools.replay_pool import run_policies

NOTES = [
    "approvals are assumed granted and shadow/canary deployments promoted",
    "training.timeout_minutes is not applied (fits run in-process)",
    "no live serving facts (prediction log): rollback decides on matured labels only",
    "the monitor's data validation is skipped (it is reported, never decisive); the retrain's validation runs",
    "oracle: a retrain every day, deployed without gates",
    "the CBPE performance estimate is computed only with performance.use_estimate (otherwise it is a note)",
    "the latency gate uses one measurement per trained model (taken when it was trained), so policies agree",
]


def backtest(
    cfg: ModelConfig,
    data_root,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    policies: list[Policy] | None = None,
    drift_days: Sequence[dt.date] = (),
    platform=None,
    cache_dir: Path | None = None,
    workers: int = 1,
    reveal_drifts: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Replay ``start..end`` for every policy and summarise (see the module docstring).

    ``start`` defaults to the first day with a full training window behind it
    (first data day + ``training_days``), ``end`` to the last data day. ``drift_days``
    are declared drifts; with ``reveal_drifts`` the onsets the features reveal are added.
    """
    with partition_cache():
        return _backtest(
            cfg,
            data_root,
            start=start,
            end=end,
            policies=policies,
            drift_days=drift_days,
            platform=platform,
            cache_dir=cache_dir,
            workers=workers,
            reveal_drifts=reveal_drifts,
            progress=progress,
        )


def _backtest(
    cfg: ModelConfig,
    data_root,
    *,
    start,
    end,
    policies,
    drift_days,
    platform,
    cache_dir,
    workers,
    reveal_drifts,
    progress,
) -> dict[str, Any]:
    import tempfile

    started = time.monotonic()
    settings = ReplaySettings(Path(data_root), platform)
    start, end = _replay_range(cfg, settings, start, end)
    days = day_list(start, end)
    policies = policies if policies is not None else default_policies(cfg)
    own_cache = cache_dir is None
    cache = Path(tempfile.mkdtemp(prefix="retrain-backtest-")) if own_cache else Path(cache_dir)
    try:
        runs = run_policies(
            policies,
            settings,
            days,
            cache_dir=cache,
            workers=workers,
            pretrain=_first_models(policies, days),
            progress=progress,
        )
        attach_after(runs)
        (progress or (lambda _m: None))("scoring the served models on the true labels")
        store = ArtifactStore(cache)
        scorer = Scorer(cfg, settings, store, start, end)
        drifts = _drifts(cfg, settings, days, drift_days, reveal_drifts)

        return {
            "model": cfg.name,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "days": len(days),
            "label_delay_days": cfg.data.label_delay_days,
            "metric": scorer.metric,
            "greater_is_better": greater_is_better(scorer.metric),
            "drifts": drifts,
            "policies": summarize(cfg, runs, scorer, days, drifts),
            "decisions": {name: [compact_day(d) for d in run.days] for name, run in runs.items()},
            "elapsed_s": round(time.monotonic() - started, 1),
            "workers": workers,
            "notes": NOTES,
        }
    finally:
        if own_cache:
            import shutil

            shutil.rmtree(cache, ignore_errors=True)


def _replay_range(
    cfg: ModelConfig, settings: ReplaySettings, start: dt.date | None, end: dt.date | None
) -> tuple[dt.date, dt.date]:
    """``start..end`` with the defaults filled in, checked against the data's days."""
    available = data_days(cfg, settings)
    start = start or min(available[0] + dt.timedelta(days=cfg.windows.training_days), available[-1])
    end = end or available[-1]
    if start > end:
        raise DataError(f"backtest range {start}..{end} is empty; --from must not be after --to")
    if end < available[0] or start > available[-1]:
        raise DataError(
            f"no data of {cfg.name!r} in {start}..{end}: partitions cover {available[0]}.."
            f"{available[-1]}; adjust --from/--to"
        )
    return start, end


def _first_models(policies: list[Policy], days: list[dt.date]) -> list[tuple[ModelConfig, dt.date]]:
    """The (config, day) models to train before the replay, once per training settings: the
    first day's (every day's for a daily policy); none for warm-started policies."""
    pretrain: list[tuple[ModelConfig, dt.date]] = []
    seen = set()
    for p in policies:
        wanted = days if p.daily else [days[0]]
        for d in wanted:
            k = (training_hash(p.cfg), d)
            if k not in seen and not p.cfg.training.warm_start:
                seen.add(k)
                pretrain.append((p.cfg, d))
    return pretrain


def _drifts(
    cfg: ModelConfig, settings: ReplaySettings, days: list[dt.date], drift_days, reveal_drifts: bool
) -> list[dict]:
    """The declared drifts and (with ``reveal_drifts``) the onsets the data reveals, by day."""
    drifts = [{"day": d.isoformat(), "source": "declared"} for d in drift_days]
    if reveal_drifts:
        # an onset the data reveals within a monitor window after a declared drift is that drift
        near = {(d + dt.timedelta(days=i)).isoformat() for d in drift_days for i in range(cfg.windows.monitor_days + 1)}
        drifts += [d for d in revealed_drifts(cfg, settings, days) if d["day"] not in near]
    drifts.sort(key=lambda d: d["day"])
    return drifts
