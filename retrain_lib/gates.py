"""Evaluation gates: only a candidate that passes all of them may be promoted.

Gates fail closed: a metric that is missing or not a number fails its gate, with the reason.
With no champion (the first model ever) the gates relative to the champion are skipped and
only absolute thresholds apply.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from retrain_lib.config import Gate
from retrain_lib.metrics import greater_is_better


@dataclass(frozen=True)
class GateResult:
    gate: str
    metric: str
    threshold: float | None
    observed: float | None
    champion: float | None
    delta: float | None
    passed: bool
    reason: str
    slice: str = "all"

    def to_dict(self) -> dict:
        return asdict(self)


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def evaluate_gate(gate: Gate, candidate: dict, champion: dict | None) -> list[GateResult]:
    """All checks of one gate entry (an entry may hold several bounds)."""
    m = gate.metric
    better_up = greater_is_better(m)
    obs = _num(candidate.get(m))
    champ = _num(champion.get(m)) if champion else None
    delta = None if obs is None or champ is None else obs - champ
    out: list[GateResult] = []

    def result(name, threshold, passed, reason):
        out.append(GateResult(name, m, threshold, obs, champ, delta, passed, reason))

    if obs is None:
        result(f"{m}", None, False, f"metric {m} is missing or not a number for the candidate")
        return out
    if gate.min is not None:
        ok = obs >= gate.min
        result(f"{m}_min", gate.min, ok, f"{m} {obs:.4f} {'>=' if ok else '<'} min {gate.min:g}")
    if gate.max is not None:
        ok = obs <= gate.max
        result(f"{m}_max", gate.max, ok, f"{m} {obs:.4f} {'<=' if ok else '>'} max {gate.max:g}")
    for kind, bound in (("max_regression", gate.max_regression), ("min_improvement", gate.min_improvement)):
        if bound is None:
            continue
        name = f"{m}_{kind}"
        if champion is None:
            result(name, None, True, "no champion yet: relative gate skipped")
            continue
        if champ is None:
            result(name, None, False, f"champion has no value for {m}; cannot compare")
            continue
        improvement = (obs - champ) if better_up else (champ - obs)  # > 0 means the candidate is better
        scale = abs(champ) if gate.relative else 1.0
        if gate.relative and scale == 0:
            result(name, None, False, f"champion {m} is 0; a relative gate cannot be computed")
            continue
        required = -bound * scale if kind == "max_regression" else bound * scale
        threshold = champ + required if better_up else champ - required
        ok = improvement >= required - 1e-12
        unit = f"{bound:.1%} of the champion" if gate.relative else f"{bound:g}"
        if kind == "max_regression":
            words = f"may be at most {unit} worse"
        else:
            words = f"must be at least {unit} better"
        result(name, threshold, ok,
               f"{m} {obs:.4f} vs champion {champ:.4f} ({delta:+.4f}): {words}; {'ok' if ok else 'failed'}")
    return out


def evaluate_gates(gates: list[Gate], candidate: dict, champion: dict | None) -> list[GateResult]:
    results: list[GateResult] = []
    for gate in gates:
        try:
            results += evaluate_gate(gate, candidate, champion)
        except Exception as exc:  # noqa: BLE001 - a gate that cannot be computed fails closed
            results.append(GateResult(gate.metric, gate.metric, None, None, None, None, False,
                                      f"gate could not be evaluated: {exc}"))
    return results


def all_passed(results: list[GateResult]) -> bool:
    return all(r.passed for r in results)
