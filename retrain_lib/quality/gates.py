"""Evaluation gates: only a candidate that passes all of them may be promoted.

Two entry points:

* :func:`run_gates` evaluates every kind of gate (see :class:`retrain_lib.core.config_gates.Gate`) from
  a :class:`GateInputs`: holdout labels and scores of the candidate (and champion), the holdout
  and training frames, the metric dicts and a latency measurement. Callers build it like::

      from retrain_lib.stats.gate_measures import measure_latency_ms
      from retrain_lib.quality.gate_types import GateInputs
      from retrain_lib.quality.gates import all_passed, run_gates
      from retrain_lib.core.metrics import evaluate, predict_scores

      X = holdout[cfg.features.all]
      inputs = GateInputs(
          task=cfg.task, y_true=holdout[cfg.features.target],
          candidate_scores=predict_scores(candidate, X, cfg.task),
          champion_scores=predict_scores(champion, X, cfg.task) if champion else None,
          holdout=holdout, train=train,
          candidate_metrics=evaluate(candidate, X, y, cfg.task),
          champion_metrics=evaluate(champion, X, y, cfg.task) if champion else None,
          latency_ms=measure_latency_ms(candidate, X, task=cfg.task, seed=cfg.training.seed),
          target=cfg.features.target, features=cfg.features.all, seed=cfg.training.seed,
      )
      results = run_gates(cfg.gates, inputs)   # never raises
      passed = all_passed(results)

  Only what the configured gates need must be filled in: a gate whose input is missing fails
  closed with the reason.
* :func:`evaluate_gates` checks plain metric gates against metric dicts only (no scores); any
  other gate kind fails closed there.

Gates fail closed: a metric that is missing or not a number fails its gate, and an exception
inside a gate becomes a failed result ``gate could not be evaluated: <exc>``. With no champion
(the first model ever) the gates relative to the champion (relative metric bounds, stability,
bootstrap) are skipped (passed, with the reason) and only absolute thresholds apply.

The kinds themselves are in :mod:`retrain_lib.quality.gate_kinds`, their inputs and results in
:mod:`retrain_lib.quality.gate_types`, the measurements they judge in :mod:`retrain_lib.stats.gate_measures`.
"""

from __future__ import annotations

import logging

from retrain_lib.core.config_gates import Gate
from retrain_lib.quality.gate_kinds import RUNNERS, metric_checks
from retrain_lib.quality.gate_types import GateInputs, GateResult, failed_result, gate_name

log = logging.getLogger(__name__)


def evaluate_gate(gate: Gate, candidate: dict, champion: dict | None) -> list[GateResult]:
    """All checks of one metric gate entry (an entry may hold several bounds) from metric dicts."""
    if gate.type != "metric" or gate.segment is not None:
        what = gate.type if gate.type != "metric" else "segment"
        raise ValueError(f"a {what} gate needs scores and data: evaluate it with run_gates")
    return metric_checks(gate, candidate, champion)


def evaluate_gates(gates: list[Gate], candidate: dict, champion: dict | None) -> list[GateResult]:
    """Metric gates against metric dicts only. Other kinds fail closed: use :func:`run_gates`."""
    results: list[GateResult] = []
    for gate in gates:
        try:
            results += evaluate_gate(gate, candidate, champion)
        except Exception as exc:  # noqa: BLE001 - a gate that cannot be computed fails closed
            results.append(failed_result(gate, exc))
    return results


def all_passed(results: list[GateResult]) -> bool:
    return all(r.passed for r in results)


# -----------------------------------------------------------------------------------------
# run_gates: every kind
# -----------------------------------------------------------------------------------------


def run_gates(gates: list[Gate], inputs: GateInputs) -> list[GateResult]:
    """Evaluate every gate on ``inputs``; never raises (a gate that fails to compute fails).

    Example:
        >>> from retrain_lib.core.config_gates import Gate
        >>> res = run_gates([Gate(metric="roc_auc", min=0.7)],
        ...                 GateInputs(task="classification", candidate_metrics={"roc_auc": 0.75}))
        >>> [(r.gate, r.passed) for r in res]
        [('roc_auc_min', True)]
    """
    results: list[GateResult] = []
    for gate in gates:
        try:
            out = RUNNERS[gate.type](gate, inputs)
            if inputs.champion_relative_floor and _absolute(gate) and any(not r.passed for r in out):
                out = _floor_at_champion(gate, inputs, out)
            results += out
        except Exception as exc:  # noqa: BLE001 - a gate that cannot be computed fails closed
            log.warning("gate %s could not be evaluated: %s", gate_name(gate), exc)
            results.append(failed_result(gate, exc))
    return results


def _absolute(gate: Gate) -> bool:
    if gate.type in ("fairness", "calibration"):
        return True
    return gate.type == "metric" and gate.max_regression is None and gate.min_improvement is None


def _floor_at_champion(gate: Gate, inputs: GateInputs, out: list[GateResult]) -> list[GateResult]:
    """Failed checks of an absolute gate pass when the champion fails the same check on the
    same rows and the candidate is not worse (see ``GateInputs.champion_relative_floor``)."""
    import dataclasses

    if inputs.champion_scores is None:
        return out
    as_champion = dataclasses.replace(
        inputs,
        candidate_scores=inputs.champion_scores,
        candidate_metrics=dict(inputs.champion_metrics or {}),
        champion_scores=None,
        champion_metrics=None,
        champion_relative_floor=False,
    )
    theirs = RUNNERS[gate.type](gate, as_champion)
    by_check = {(h.gate, h.slice if gate.type != "fairness" else ""): h for h in theirs}
    higher_better = gate.type == "metric"
    fixed = []
    for r in out:
        h = by_check.get((r.gate, r.slice if gate.type != "fairness" else ""))
        up = higher_better and r.gate.endswith("_min")
        if (
            not r.passed
            and h is not None
            and not h.passed
            and not h.skipped
            and r.observed is not None
            and h.observed is not None
            and (r.observed >= h.observed if up else r.observed <= h.observed)
        ):
            r = dataclasses.replace(
                r,
                passed=True,
                champion=h.observed,
                delta=r.observed - h.observed,
                reason=f"{r.reason}; the champion fails it too on the same rows "
                f"({h.observed:.4f}): not worse than the model serving now",
                details={**r.details, "champion_fails_too": h.observed},
            )
        fixed.append(r)
    return fixed
