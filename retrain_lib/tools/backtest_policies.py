"""The retraining policies a backtest compares (:class:`Policy`): the defaults
(:func:`default_policies`: ``config``, ``schedule``, ``drift``, ``never``, ``oracle``), an
alternative config file as a policy (:func:`policy_from_file`) and the floor schedule's
days (:func:`floor_fires`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from retrain_lib.core.config import ModelConfig, load_model_config
from retrain_lib.core.errors import ConfigError

POLICIES = ("config", "schedule", "drift", "never", "oracle")


@dataclass(frozen=True)
class Policy:
    """How a policy retrains: ``cfg`` (its config), ``monitor`` (the monitor decides every
    day), ``floor`` (cron of scheduled retrains, or None), ``daily`` (retrain every day),
    ``gates`` (gates decide the promotion)."""

    name: str
    cfg: ModelConfig
    monitor: bool = True
    floor: str | None = None
    daily: bool = False
    gates: bool = True
    source: str = ""


def _copy(model, **update):
    return model.model_copy(update=update)


def default_policies(cfg: ModelConfig, names=POLICIES) -> list[Policy]:
    """The policies compared by default (see the module docstring)."""
    out = []
    for name in names:
        if name == "config":
            out.append(Policy("config", cfg, floor=cfg.schedule.retrain_floor, source="config as written"))
        elif name == "schedule":
            out.append(
                Policy(
                    "schedule",
                    cfg,
                    monitor=False,
                    floor=cfg.schedule.retrain_floor or "@weekly",
                    source=f"floor schedule only ({cfg.schedule.retrain_floor or '@weekly'})",
                )
            )
        elif name == "drift":
            sched = _copy(cfg.schedule, max_days_without_retrain=None, new_labels_share=None)
            drift = _copy(cfg.drift, enabled=True)
            out.append(
                Policy(
                    "drift",
                    _copy(cfg, performance=None, rollback=None, schedule=sched, drift=drift),
                    source="drift trigger only",
                )
            )
        elif name == "never":
            out.append(Policy("never", cfg, monitor=False, source="first model only"))
        elif name == "oracle":
            out.append(
                Policy(
                    "oracle",
                    cfg,
                    monitor=False,
                    daily=True,
                    gates=False,
                    source="retrain every day, deployed without gates",
                )
            )
        else:
            raise ConfigError(f"unknown policy {name!r}; use some of {', '.join(POLICIES)}")
    return out


def policy_from_file(path, platform=None, name: str | None = None) -> Policy:
    """An alternative config file as a policy (the monitor, its floor schedule, gates)."""
    cfg = load_model_config(path, platform)
    path = Path(path)
    # The file is named after its model, so an edited copy usually lives in another directory.
    default = f"{path.parent.name}/{path.stem}" if path.stem == cfg.name and path.parent.name else path.stem
    return Policy(name or default, cfg, floor=cfg.schedule.retrain_floor, source=str(path))


def floor_fires(cron: str | None, day: dt.date) -> bool:
    """Whether ``cron`` has a run on ``day`` (any time of that day). ``@once`` runs when the
    DAG is first deployed, not on a day of the data: never in a replay."""
    if not cron or cron == "@once":
        return False
    from croniter import croniter

    start = dt.datetime.combine(day, dt.time()) - dt.timedelta(seconds=1)
    return croniter(cron, start).get_next(dt.datetime) < dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
