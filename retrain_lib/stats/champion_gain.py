"""The gain test of adaptation: is the candidate better than the champion beyond noise on the
same rows (paired bootstrap), or is there "no gain"."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from retrain_lib.core.metrics import compute_metric
from retrain_lib.stats.gate_measures import bootstrap_improvement


@dataclass(frozen=True)
class Gain:
    """The candidate's improvement over the champion on the same rows (positive = better)."""

    metric: str
    candidate: float
    champion: float
    mean: float
    lower: float
    confidence: float
    rows: int
    significant: bool
    # "gain": promoted only when better beyond noise; "not_worse": after a covariate shift the
    # concept held, so a candidate not worse on the rows since the shift is promoted
    basis: str = "gain"

    @property
    def promotes(self) -> bool:
        """Whether this test lets the candidate be promoted (on its ``basis``)."""
        if self.basis == "not_worse":
            return math.isfinite(self.mean) and self.mean >= 0
        return self.significant

    def explain(self) -> str:
        if self.basis == "not_worse":
            verdict = (
                "not worse after a covariate shift: promoted without proof of a gain"
                if self.promotes
                else "worse after a covariate shift: no gain"
            )
        else:
            verdict = "better beyond noise" if self.significant else "not better beyond noise: no gain"
        return (
            f"{self.metric} {self.candidate:.4f} vs champion {self.champion:.4f} on the same {self.rows} rows: "
            f"improvement {self.mean:+.4f}, {self.confidence:.0%} lower bound {self.lower:+.4f} ({verdict})"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gain_test(
    task: str,
    metric: str,
    y,
    candidate_scores,
    champion_scores,
    *,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Gain:
    """Paired bootstrap of the improvement; significant when its ``confidence`` lower bound is
    above zero."""
    diffs = bootstrap_improvement(
        task, metric, y, candidate_scores, champion_scores, n_resamples=n_resamples, seed=seed
    )
    valid = diffs[np.isfinite(diffs)]
    cand = float(compute_metric(task, metric, y, candidate_scores))
    champ = float(compute_metric(task, metric, y, champion_scores))
    if len(valid) < 0.9 * len(diffs):
        return Gain(metric, cand, champ, math.nan, math.nan, confidence, len(y), False)
    lower = float(np.quantile(valid, 1 - confidence))
    return Gain(metric, cand, champ, float(valid.mean()), lower, confidence, int(len(y)), bool(lower > 0))
