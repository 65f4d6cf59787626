"""Dry run: what an edited model config would have fired over the last N days compared with
the current one (:func:`dry_run`), both replayed from the same champion."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import ConfigError, DataError
from retrain_lib.tools.backtest_policies import Policy
from retrain_lib.tools.replay import PolicyRun, decision_trigger
from retrain_lib.tools.replay_context import ReplaySettings, data_days, day_list
from retrain_lib.tools.replay_pool import run_policies


def dry_run(
    new: ModelConfig,
    old: ModelConfig,
    data_root,
    *,
    days: int,
    end: dt.date | None = None,
    platform=None,
    cache_dir: Path | None = None,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """What ``new`` would have fired in the last ``days`` days compared with ``old``: both
    replayed from the same champion (trained by ``old`` the day before the range)."""
    import tempfile

    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    if new.name != old.name:
        raise ConfigError(
            f"the configs describe different models ({new.name!r} and {old.name!r}); compare two "
            "versions of the same model config"
        )
    settings = ReplaySettings(Path(data_root), platform)
    available = data_days(old, settings)
    end = end or available[-1]
    start = end - dt.timedelta(days=days - 1)
    if start - dt.timedelta(days=1) < available[0]:
        raise DataError(
            f"--days {days}: the range {start}..{end} needs data from {start - dt.timedelta(days=1)} "
            f"(the starting champion's training day); data starts {available[0]}"
        )
    policies = [
        Policy("edited", new, floor=new.schedule.retrain_floor, source="edited config"),
        Policy("current", old, floor=old.schedule.retrain_floor, source="current config"),
    ]
    own = cache_dir is None
    cache = Path(tempfile.mkdtemp(prefix="retrain-dryrun-")) if cache_dir is None else Path(cache_dir)
    try:
        init_day = start - dt.timedelta(days=1)
        runs = run_policies(
            policies,
            settings,
            day_list(start, end),
            cache_dir=cache,
            workers=workers,
            pretrain=[(old, init_day)],
            initial=(old, init_day),
            progress=progress,
        )
    finally:
        if own:
            import shutil

            shutil.rmtree(cache, ignore_errors=True)
    differences = _differences(_fired(runs["edited"]), _fired(runs["current"]))
    return {
        "model": new.name,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "days": days,
        "edited": _counts(runs["edited"]),
        "current": _counts(runs["current"]),
        "differences": differences,
        "same": not differences,
        "config_hash": {"edited": new.config_hash(), "current": old.config_hash()},
    }


def _fired(run: PolicyRun) -> dict[str, dict]:
    """Per day: the monitor's action, what fired (scheduled retrain, retrain or rollback and
    its outcome, throttling) and the reasons."""
    out = {}
    for d in run.days:
        events = []
        if "scheduled" in d:
            events.append(f"scheduled retrain: {d['scheduled']['outcome']}")
        dec = d.get("decision") or {}
        if dec.get("action") in ("retrain", "rollback"):
            outcome = (d.get("retrain") or {}).get("outcome") or (d.get("rollback") or {}).get("outcome")
            events.append(f"{dec['action']} ({decision_trigger(dec)}): {outcome}")
        elif dec.get("throttled"):
            events.append("trigger fired but throttled")
        out[d["day"]] = {"action": dec.get("action"), "events": events, "reasons": dec.get("reasons", [])}
    return out


def _differences(edited: dict[str, dict], current: dict[str, dict]) -> list[dict]:
    """The days on which the two configs act differently, with what each fired and why."""
    return [
        {
            "day": day,
            "edited": edited[day]["events"] or ["healthy"],
            "current": current[day]["events"] or ["healthy"],
            "edited_reasons": edited[day]["reasons"],
            "current_reasons": current[day]["reasons"],
        }
        for day in edited
        if edited[day]["events"] != current[day]["events"] or edited[day]["action"] != current[day]["action"]
    ]


def _counts(run: PolicyRun) -> dict:
    """A run's retrains, deployments, rollbacks, the monitor's retrain requests and the
    throttled days."""
    return {
        "retrains": len(run.retrains),
        "retrain_days": [r["day"] for r in run.retrains],
        "deployed": sum(r.get("outcome") == "deployed" for r in run.retrains),
        "rollbacks": [b["day"] for b in run.rollbacks],
        "monitor_retrain_requests": [
            d["day"] for d in run.days if (d.get("decision") or {}).get("action") == "retrain"
        ],
        "throttled": [d["day"] for d in run.days if (d.get("decision") or {}).get("throttled")],
    }
