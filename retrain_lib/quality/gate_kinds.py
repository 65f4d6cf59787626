"""The gate kinds: how each kind of :class:`retrain_lib.core.config.Gate` (metric and segment,
fairness, calibration, latency, stability, bootstrap, leakage; importance_shift and golden in
:mod:`retrain_lib.quality.reference_gates`) turns a
:class:`~retrain_lib.quality.gate_types.GateInputs` into :class:`~retrain_lib.quality.gate_types.GateResult`
checks; :data:`RUNNERS` maps a gate's ``type`` to its runner.

Metric gates follow MLflow's ``MetricThreshold`` / ``mlflow.validate_evaluation_results``
exactly (same float arithmetic, bounds included): ``min``/``max`` = ``threshold``;
``min_improvement`` = ``min_absolute_change`` (candidate vs ``champion ± change``) or, with
``relative``, ``min_relative_change`` (``improvement / |champion| >= change``; a champion of 0
falls back to "better by at least 1e-10"). ``max_regression`` has no MLflow counterpart
(MLflow accepts only positive changes); it is the MLflow ``threshold`` ``champion - X``
(``champion - X * |champion|`` when relative; ``+`` for lower-is-better metrics).
"""

from __future__ import annotations

import dataclasses

from retrain_lib.core.config_gates import Gate
from retrain_lib.core.metrics import compute_metric, greater_is_better
from retrain_lib.quality.gate_types import (
    ON_SKIP_HINT,
    GateInputs,
    GateResult,
    gate_name,
    holdout_column,
    labels_and_scores,
    number_or_none,
    skipped_result,
    unchecked_result,
)
from retrain_lib.quality.reference_gates import run_golden, run_importance_shift
from retrain_lib.stats.gate_measures import (
    bootstrap_improvement,
    calibrated_baseline,
    leakage_scores,
    prediction_change,
)

_MLFLOW_ZERO_BASELINE_STEP = 1e-10  # mlflow.models.evaluation.validation: relative change vs a 0 baseline


# -----------------------------------------------------------------------------------------
# Metric gates
# -----------------------------------------------------------------------------------------


def metric_checks(gate: Gate, candidate: dict, champion: dict | None, slice_: str = "all") -> list[GateResult]:
    m = gate.metric
    assert m is not None  # required of this gate type (Gate._REQUIRED)
    better_up = greater_is_better(m)
    obs = number_or_none(candidate.get(m))
    champ = number_or_none(champion.get(m)) if champion else None
    delta = None if obs is None or champ is None else obs - champ
    out: list[GateResult] = []

    def result(name, threshold, passed, reason, skipped=False):
        out.append(GateResult(name, m, threshold, obs, champ, delta, passed, reason, slice_, "metric", skipped))

    where = "" if slice_ == "all" else f" on {slice_}"
    if obs is None:
        result(f"{m}", None, False, f"metric {m} is missing or not a number for the candidate{where}")
        return out
    if gate.min is not None:
        ok = obs >= gate.min
        result(f"{m}_min", gate.min, ok, f"{m} {obs:.4f} {'>=' if ok else '<'} min {gate.min:g}{where}")
    if gate.max is not None:
        ok = obs <= gate.max
        result(f"{m}_max", gate.max, ok, f"{m} {obs:.4f} {'<=' if ok else '>'} max {gate.max:g}{where}")
    for kind, bound in (("max_regression", gate.max_regression), ("min_improvement", gate.min_improvement)):
        if bound is None:
            continue
        name = f"{m}_{kind}"
        if champion is None:
            result(name, None, True, f"no champion yet: relative gate skipped{where}", skipped=True)
            continue
        if champ is None:
            result(name, None, False, f"champion has no value for {m}{where}; cannot compare")
            continue
        threshold, ok = _relative_decision(kind, bound, gate.relative, better_up, obs, champ)
        unit = f"{bound:.1%} of the champion" if gate.relative else f"{bound:g}"
        words = f"may be at most {unit} worse" if kind == "max_regression" else f"must be at least {unit} better"
        result(
            name,
            threshold,
            ok,
            f"{m} {obs:.4f} vs champion {champ:.4f} ({delta:+.4f}){where}: {words}; {'ok' if ok else 'failed'}",
        )
    return out


def _relative_decision(
    kind: str, bound: float, relative: bool, better_up: bool, obs: float, champ: float
) -> tuple[float, bool]:
    """Threshold and decision of a champion-relative bound, in MLflow's float arithmetic."""
    sign = 1.0 if better_up else -1.0
    if kind == "max_regression":  # = MLflow `threshold` at champion - X (in the metric's direction)
        threshold = champ - sign * bound * (abs(champ) if relative else 1.0)
    elif not relative:  # MLflow min_absolute_change: comparator(candidate, baseline +/- change)
        threshold = champ + sign * bound
    elif champ == 0:  # MLflow min_relative_change with a 0 baseline: strictly better by 1e-10
        threshold = champ + sign * _MLFLOW_ZERO_BASELINE_STEP
    else:  # MLflow min_relative_change: (improvement / |baseline|) >= change
        improvement = (obs - champ) if better_up else (champ - obs)
        return champ + sign * bound * abs(champ), improvement / abs(champ) >= bound
    return threshold, (obs >= threshold if better_up else obs <= threshold)


def _run_metric(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    assert gate.metric is not None  # required of this gate type (Gate._REQUIRED)
    if gate.segment is None:
        cand = dict(inputs.candidate_metrics or {})
        champ = dict(inputs.champion_metrics) if inputs.champion_metrics is not None else None
        if champ is None and inputs.champion_scores is not None:
            champ = {}
        if gate.metric not in cand and inputs.candidate_scores is not None:  # e.g. ece: compute it
            y, c, _ = labels_and_scores(inputs, champion=False)
            cand[gate.metric] = compute_metric(inputs.task, gate.metric, y, c)
        if champ is not None and gate.metric not in champ and inputs.champion_scores is not None:
            y, _, h = labels_and_scores(inputs, champion=True)
            champ[gate.metric] = compute_metric(inputs.task, gate.metric, y, h)
        return metric_checks(gate, cand, champ)
    relative = gate.max_regression is not None or gate.min_improvement is not None
    need_champion = relative and inputs.has_champion
    y, cand, champ = labels_and_scores(inputs, champion=need_champion)
    keys = holdout_column(inputs, gate.segment, len(y))
    out: list[GateResult] = []
    for value in sorted(set(keys)):
        mask = keys == value
        slice_ = f"{gate.segment}={value}"
        n = int(mask.sum())
        if n < gate.min_rows:
            out.append(unchecked_result(gate, f"{slice_}: {n} rows < min_rows {gate.min_rows}", slice_))
            continue
        c = {gate.metric: compute_metric(inputs.task, gate.metric, y[mask], cand[mask])}
        h = {gate.metric: compute_metric(inputs.task, gate.metric, y[mask], champ[mask])} if need_champion else None
        out += metric_checks(gate, c, h, slice_)
    if not out:
        raise ValueError(f"column {gate.segment!r} has no values")
    return out


def _run_fairness(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    assert (
        gate.metric is not None and gate.by is not None and gate.max_gap is not None
    )  # required of this gate type (Gate._REQUIRED)
    y, cand, _ = labels_and_scores(inputs, champion=False)
    keys = holdout_column(inputs, gate.by, len(y))
    values: dict[str, float] = {}
    small: dict[str, int] = {}
    for value in sorted(set(keys)):
        mask = keys == value
        if mask.sum() < gate.min_rows:
            small[value] = int(mask.sum())
            continue
        v = number_or_none(compute_metric(inputs.task, gate.metric, y[mask], cand[mask]))
        if v is None:
            raise ValueError(
                f"{gate.metric} is not a number for group {gate.by}={value} (e.g. a single class in the group)"
            )
        values[value] = v
    small_text = ", ".join(f"{gate.by}={k} ({n} rows)" for k, n in small.items())
    details = {"groups": values, "skipped_groups": small}
    if len(values) < 2:
        unchecked = unchecked_result(
            gate,
            f"fewer than two groups of {gate.by} with at least {gate.min_rows} rows"
            + (f" (too small: {small_text})" if small else ""),
            f"{gate.by}",
        )
        return [dataclasses.replace(unchecked, threshold=gate.max_gap, details=details)]
    hi = max(values, key=values.__getitem__)
    lo = min(values, key=values.__getitem__)
    gap = values[hi] - values[lo]
    ok = gap <= gate.max_gap
    pair = f"{gate.by}={hi} vs {gate.by}={lo}"
    reason = (
        f"largest {gate.metric} gap across {gate.by}: {gap:.4f} ({values[hi]:.4f} on {hi} vs {values[lo]:.4f} "
        f"on {lo}) {'<=' if ok else '>'} max_gap {gate.max_gap:g}"
    )
    skipped = False
    if small:
        # a group too small to measure is a group nobody checked: it fails the gate unless on_skip: pass
        skipped = True
        if gate.on_skip == "fail":
            ok = False
            reason += f"; not compared, below min_rows {gate.min_rows}: {small_text} ({ON_SKIP_HINT})"
        else:
            reason += f"; not compared, below min_rows {gate.min_rows}: {small_text} (on_skip: pass)"
    return [
        GateResult(
            gate_name(gate), gate.metric, gate.max_gap, gap, None, None, ok, reason, pair, "fairness", skipped, details
        )
    ]


def _run_calibration(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    if inputs.task != "classification":
        raise ValueError(f"a calibration gate needs a classification model; this one is {inputs.task}")
    assert gate.metric is not None and gate.max is not None  # required of this gate type (Gate._REQUIRED)
    y, cand, _ = labels_and_scores(inputs, champion=False)
    value = number_or_none(compute_metric(inputs.task, gate.metric, y, cand, bins=gate.bins))
    if value is None:
        return [
            GateResult(
                gate_name(gate),
                gate.metric,
                gate.max,
                None,
                None,
                None,
                False,
                f"{gate.metric} is not a number",
                kind="calibration",
            )
        ]
    extra = f" ({gate.bins} equal-width bins)" if gate.metric == "ece" else ""
    shown = f"{gate.metric}{extra} {value:.4f}"
    if gate.debias:
        noise = calibrated_baseline(gate.metric, cand, bins=gate.bins, seed=inputs.seed)
        value = max(0.0, value - noise)
        shown += f" - {noise:.4f} of a calibrated model on these {len(y)} rows = {value:.4f}"
    ok = value <= gate.max
    return [
        GateResult(
            gate_name(gate),
            gate.metric,
            gate.max,
            value,
            None,
            None,
            ok,
            f"{shown} {'<=' if ok else '>'} max {gate.max:g}",
            kind="calibration",
        )
    ]


def _run_latency(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    assert gate.max_ms is not None  # required of this gate type (Gate._REQUIRED)
    p95 = number_or_none((inputs.latency_ms or {}).get("p95"))
    if p95 is None and inputs.served is not None:
        raise ValueError(f"no served latency: {inputs.served.explain()}")
    if p95 is None:
        raise ValueError("no p95 latency in GateInputs.latency_ms; measure it with measure_latency_ms")
    ok = p95 <= gate.max_ms
    what = (
        "p95 of single-row requests to the served candidate"
        if (inputs.latency_ms or {}).get("path") == "served"
        else "p95 single-row predict time"
    )
    return [
        GateResult(
            gate_name(gate),
            None,
            gate.max_ms,
            p95,
            None,
            None,
            ok,
            f"{what} {p95:.2f} ms {'<=' if ok else '>'} max {gate.max_ms:g} ms",
            kind="latency",
            details=dict(inputs.latency_ms or {}),
        )
    ]


def _run_servable(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    probe = inputs.served
    if probe is None:
        raise ValueError(
            "the candidate was not served (GateInputs.served is empty); a servable gate cannot pass unseen"
        )
    reason = probe.explain()
    return [
        GateResult(
            gate_name(gate),
            None,
            float(probe.requests),
            float(probe.answered),
            None,
            None,
            probe.ok,
            reason,
            kind="servable",
            details=probe.to_dict(),
        )
    ]


def _run_stability(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    if not inputs.has_champion:
        return [skipped_result(gate, "no champion yet: stability gate skipped")]
    assert gate.max_change is not None  # required of this gate type (Gate._REQUIRED)
    y, cand, champ = labels_and_scores(inputs, champion=True)
    change = prediction_change(inputs.task, y, cand, champ)
    ok = change <= gate.max_change
    what = (
        "share of decisions flipped at 0.5" if inputs.task == "classification" else "mean |prediction change| / std(y)"
    )
    return [
        GateResult(
            gate_name(gate),
            None,
            gate.max_change,
            change,
            None,
            None,
            ok,
            f"{what} vs the champion: {change:.4f} {'<=' if ok else '>'} max_change {gate.max_change:g}",
            kind="stability",
        )
    ]


# -----------------------------------------------------------------------------------------
# Paired bootstrap
# -----------------------------------------------------------------------------------------


def _run_bootstrap(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    import numpy as np

    if not inputs.has_champion:
        return [skipped_result(gate, "no champion yet: bootstrap comparison skipped")]
    assert gate.metric is not None  # required of this gate type (Gate._REQUIRED)
    y, cand, champ = labels_and_scores(inputs, champion=True)
    diffs = bootstrap_improvement(
        inputs.task, gate.metric, y, cand, champ, n_resamples=gate.n_resamples, seed=inputs.seed
    )
    valid = diffs[np.isfinite(diffs)]
    if len(valid) < 0.9 * len(diffs):
        raise ValueError(f"{gate.metric} is undefined on {len(diffs) - len(valid)} of {len(diffs)} resamples")
    mean = float(valid.mean())
    upper = float(np.quantile(valid, gate.confidence))
    alpha = 1 - gate.confidence
    lo, hi = (float(q) for q in np.quantile(valid, [alpha / 2, 1 - alpha / 2]))
    c_value = compute_metric(inputs.task, gate.metric, y, cand)
    h_value = compute_metric(inputs.task, gate.metric, y, champ)
    ok = upper >= -gate.margin
    reason = (
        f"paired bootstrap of the {gate.metric} improvement over the champion ({len(valid)} resamples, "
        f"seed {inputs.seed}): mean {mean:+.4f}, {gate.confidence:.0%} upper bound {upper:+.4f} "
        f"{'>=' if ok else '<'} -margin {-gate.margin:+g} (two-sided {gate.confidence:.0%} CI "
        f"[{lo:+.4f}, {hi:+.4f}]); {'ok' if ok else 'the candidate is worse'}"
    )
    details = {
        "mean": mean,
        "upper_bound": upper,
        "ci_low": lo,
        "ci_high": hi,
        "n_resamples": int(len(valid)),
        "candidate_value": float(c_value),
        "champion_value": float(h_value),
    }
    return [
        GateResult(
            gate_name(gate),
            gate.metric,
            -gate.margin,
            mean,
            float(h_value),
            float(c_value - h_value),
            ok,
            reason,
            kind="bootstrap",
            details=details,
        )
    ]


# -----------------------------------------------------------------------------------------
# Leakage
# -----------------------------------------------------------------------------------------


def _run_leakage(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    if inputs.train is None or not inputs.target:
        raise ValueError("the leakage gate needs GateInputs.train and GateInputs.target")
    learnt = inputs.learnt_rows
    features = list(inputs.features) or [c for c in learnt.columns if c != inputs.target]
    scores = leakage_scores(learnt, inputs.target, features, inputs.task)
    what = "ROC AUC" if inputs.task == "classification" else "|Spearman| / category R²"
    leaks = {k: v for k, v in scores.items() if v >= gate.max_score}
    if not leaks:
        top = max(scores, key=scores.__getitem__) if scores else "none"
        value = scores.get(top)
        return [
            GateResult(
                "leakage",
                None,
                gate.max_score,
                value,
                None,
                None,
                True,
                f"no feature alone predicts {inputs.target} with {what} >= {gate.max_score:g}"
                + (f" (highest: {top} {value:.4f})" if value is not None else ""),
                top,
                "leakage",
                False,
                {"scores": scores},
            )
        ]
    return [
        GateResult(
            "leakage",
            None,
            gate.max_score,
            v,
            None,
            None,
            False,
            f"feature {k} alone predicts {inputs.target} with {what} {v:.4f} >= {gate.max_score:g}: "
            "likely target leakage",
            k,
            "leakage",
            False,
        )
        for k, v in sorted(leaks.items(), key=lambda kv: -kv[1])
    ]


RUNNERS = {
    "metric": _run_metric,
    "fairness": _run_fairness,
    "calibration": _run_calibration,
    "latency": _run_latency,
    "servable": _run_servable,
    "stability": _run_stability,
    "bootstrap": _run_bootstrap,
    "leakage": _run_leakage,
    "importance_shift": run_importance_shift,
    "golden": run_golden,
}
