"""Choosing the training window after a change: candidates trained on several windows compete
on the newest matured labels (after the change when there is one).

:func:`selection_split` holds out those labels, :func:`recipes` names the candidates the rows
allow (``adaptation.windows``: the configured window, the rows after the change, a
recency-weighted window), :func:`choose` picks the best; the winner is then compared with the
champion on those rows (:mod:`retrain_lib.stats.champion_gain`) and refit on every row it may use.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from retrain_lib.core.config_sections import Recency
from retrain_lib.core.metrics import greater_is_better

if TYPE_CHECKING:
    import pandas as pd

    from retrain_lib.core.config import ModelConfig

AFTER_CHANGE, RECENCY_WEIGHTED, CONFIGURED = "after_change", "recency_weighted", "configured"


# -----------------------------------------------------------------------------------------
# Candidates on several windows
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """How one candidate is trained: which rows (``since``: the first day, ``None`` = the
    whole window) and the recency weighting of its config (``cfg``)."""

    name: str
    cfg: Any
    since: str | None = None


def _days(cfg: ModelConfig, frame: pd.DataFrame):
    return frame[cfg.data.timestamp_column].dt.date


def selection_split(
    cfg: ModelConfig, labelled: pd.DataFrame, change: str | None, *, holdout_fraction: float | None = None
):
    """``(pool, selection)``: the newest matured labels the candidates compete on and the
    rows they train on. After a change the selection is the newest half of the rows since
    the change (so the after-change candidate trains on the older half); without a change,
    the newest ``training.split.holdout_fraction`` of the window. Time-ordered, never shuffled."""
    ts, key = cfg.data.timestamp_column, cfg.data.id_column
    ordered = labelled.sort_values([ts, key], kind="mergesort")
    fraction = holdout_fraction if holdout_fraction is not None else cfg.training.split.holdout_fraction
    n = len(ordered)
    cut = int(round(n * (1 - fraction)))
    if change is not None:
        after = int((_days(cfg, ordered) >= dt.date.fromisoformat(change)).sum())
        if after >= 40:
            cut = max(cut, n - after // 2)
    return ordered.iloc[:cut], ordered.iloc[cut:]


def _with_recency(cfg: ModelConfig, recency: dict | None) -> Any:
    training = cfg.training.model_copy(update={"recency": Recency(**recency) if recency else None})
    return cfg.model_copy(update={"training": training})


def recipes(cfg: ModelConfig, pool: pd.DataFrame, as_of: dt.date, change: str | None) -> list[Recipe]:
    """The candidates ``adaptation.windows`` asks for that the rows allow (see the module
    docstring). ``after_change`` needs ``min_rows_after_change`` rows since the change."""
    spec = cfg.adaptation
    assert spec is not None  # candidates are trained for an adaptation section only
    out: list[Recipe] = []
    days = _days(cfg, pool)
    for name in spec.windows:
        if name == CONFIGURED:
            out.append(Recipe(CONFIGURED, cfg))
        elif name == AFTER_CHANGE and change is not None:
            if int((days >= dt.date.fromisoformat(change)).sum()) >= spec.min_rows_after_change:
                out.append(Recipe(AFTER_CHANGE, cfg, since=change))
        elif name == RECENCY_WEIGHTED:
            first = min(days) if len(pool) else as_of
            start = (
                dt.date.fromisoformat(change)
                if change is not None
                else as_of - dt.timedelta(days=max(1, ((as_of - first).days + 1) // 4) - 1)
            )
            recent = int((days >= start).sum())
            older = len(pool) - recent
            if recent == 0 or older == 0:
                continue
            share = spec.recent_weight_share
            weight = min(1000.0, max(1.01, share / (1 - share) * older / recent))
            out.append(
                Recipe(
                    RECENCY_WEIGHTED,
                    _with_recency(cfg, {"days": (as_of - start).days + 1, "weight": round(weight, 4)}),
                    since=None,
                )
            )
    if not out:
        out.append(Recipe(CONFIGURED, cfg))
    return out


def rows_for(cfg: ModelConfig, recipe: Recipe, frame: pd.DataFrame) -> pd.DataFrame:
    if recipe.since is None:
        return frame
    return frame[(_days(cfg, frame) >= dt.date.fromisoformat(recipe.since)).to_numpy()]


@dataclass(frozen=True)
class Candidate:
    """One recipe's model scored on the selection rows."""

    name: str
    train_rows: int
    value: float | None
    problem: str | None = None
    recency: dict | None = None
    since: str | None = None


@dataclass(frozen=True)
class Selection:
    """Which candidate goes on to the gates, and why."""

    metric: str
    change_day: str | None
    selection_rows: int
    selection_window: tuple[str, str]
    candidates: tuple[Candidate, ...]
    chosen: str
    reason: str
    change_source: str | None = None  # "performance" (the metric's change day) or "shift" (inputs)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["selection_window"] = list(self.selection_window)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Selection:
        return cls(
            data["metric"],
            data.get("change_day"),
            int(data["selection_rows"]),
            tuple(data["selection_window"]),
            tuple(Candidate(**c) for c in data["candidates"]),
            data["chosen"],
            data["reason"],
            data.get("change_source"),
        )


def choose(
    metric: str,
    candidates: list[Candidate],
    *,
    change: str | None,
    selection_rows: int,
    window: tuple[str, str],
    change_source: str | None = None,
) -> Selection:
    """The best candidate on the selection rows (ties: the earlier in ``adaptation.windows``)."""
    up = greater_is_better(metric)
    scored = [c for c in candidates if c.value is not None and math.isfinite(c.value)]
    if not scored:
        raise ValueError(
            "no candidate could be trained and scored: " + "; ".join(f"{c.name}: {c.problem}" for c in candidates)
        )
    best = scored[0]
    for c in scored[1:]:
        assert c.value is not None and best.value is not None  # scored: a finite value each
        if (c.value > best.value) if up else (c.value < best.value):
            best = c
    others = ", ".join(
        f"{c.name} {c.value:.4f}" if c.value is not None else f"{c.name} ({c.problem})"
        for c in candidates
        if c is not best
    )
    where = f"the newest {selection_rows} matured labels ({window[0]}..{window[1]}" + (
        f", since the change on {change})" if change else ")"
    )
    reason = f"{best.name} {metric} {best.value:.4f} on {where}" + (f"; others: {others}" if others else "")
    return Selection(
        metric, change, selection_rows, window, tuple(candidates), best.name, reason, change_source if change else None
    )
