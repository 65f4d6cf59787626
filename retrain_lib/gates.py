"""Evaluation gates: only a candidate that passes all of them may be promoted.

Two entry points:

* :func:`run_gates` evaluates every kind of gate (see :class:`retrain_lib.config.Gate`) from
  a :class:`GateInputs`: holdout labels and scores of the candidate (and champion), the holdout
  and training frames, the metric dicts and a latency measurement. Callers build it like::

      from retrain_lib.gates import GateInputs, measure_latency_ms, run_gates
      from retrain_lib.metrics import evaluate, predict_scores

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

Metric gates follow MLflow's ``MetricThreshold`` / ``mlflow.validate_evaluation_results``
exactly (same float arithmetic, bounds included): ``min``/``max`` = ``threshold``;
``min_improvement`` = ``min_absolute_change`` (candidate vs ``champion ± change``) or, with
``relative``, ``min_relative_change`` (``improvement / |champion| >= change``; a champion of 0
falls back to "better by at least 1e-10"). ``max_regression`` has no MLflow counterpart
(MLflow accepts only positive changes); it is the MLflow ``threshold`` ``champion - X``
(``champion - X * |champion|`` when relative; ``+`` for lower-is-better metrics).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from retrain_lib.config import Gate
from retrain_lib.metrics import compute_metric, greater_is_better, predict_scores, resampled_metric

log = logging.getLogger(__name__)

_MLFLOW_ZERO_BASELINE_STEP = 1e-10  # mlflow.models.evaluation.validation: relative change vs a 0 baseline


@dataclass(frozen=True)
class GateResult:
    """The outcome of one check of a gate, with its own explanation.

    ``observed`` is the candidate's value (metric, gap, ECE, p95 ms, change, mean bootstrap
    improvement or leakage score), ``threshold`` the bound it was compared with, ``champion``
    and ``delta`` the champion's value and ``observed - champion`` where they exist.
    ``skipped`` results passed because the check did not apply (no champion, small slice).
    """

    gate: str
    metric: str | None
    threshold: float | None
    observed: float | None
    champion: float | None
    delta: float | None
    passed: bool
    reason: str
    slice: str = "all"
    kind: str = "metric"
    skipped: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GateInputs:
    """Everything :func:`run_gates` may need; only the configured gates' inputs are required.

    Attributes:
        task: ``classification`` or ``regression``.
        y_true: holdout labels (binary 0/1 for classification).
        candidate_scores: the candidate's positive-class probabilities / predictions on the
            holdout rows (:func:`retrain_lib.metrics.predict_scores`).
        champion_scores: the champion's on the same rows, or None (no champion).
        holdout: holdout frame aligned with ``y_true`` (features and segment/``by`` columns).
        train: training frame (features and target), for the leakage gate.
        candidate_metrics: the candidate's holdout metrics (metric gates without segment).
        champion_metrics: the champion's, or None when there is no champion.
        latency_ms: ``{"p50": ..., "p95": ...}`` from :func:`measure_latency_ms`.
        target: name of the target column of ``train``.
        features: feature columns checked by the leakage gate.
        seed: seed of the bootstrap resampling.
    """

    task: str
    y_true: Any = None
    candidate_scores: Any = None
    champion_scores: Any = None
    holdout: Any = None
    train: Any = None
    candidate_metrics: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, Any] | None = None
    latency_ms: dict[str, float] | None = None
    target: str | None = None
    features: list[str] = field(default_factory=list)
    seed: int = 0
    # An absolute gate (min/max, segment, fairness, calibration) the champion fails too on the
    # same rows passes when the candidate is not worse there (config ``adaptation``): a gate
    # must not keep a degraded model serving because its successor is not yet perfect.
    champion_relative_floor: bool = False

    @property
    def has_champion(self) -> bool:
        return self.champion_metrics is not None or self.champion_scores is not None


def _num(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


# -----------------------------------------------------------------------------------------
# Metric gates
# -----------------------------------------------------------------------------------------


def _metric_checks(gate: Gate, candidate: dict, champion: dict | None, slice_: str = "all") -> list[GateResult]:
    m = gate.metric
    better_up = greater_is_better(m)
    obs = _num(candidate.get(m))
    champ = _num(champion.get(m)) if champion else None
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


def evaluate_gate(gate: Gate, candidate: dict, champion: dict | None) -> list[GateResult]:
    """All checks of one metric gate entry (an entry may hold several bounds) from metric dicts."""
    if gate.type != "metric" or gate.segment is not None:
        what = gate.type if gate.type != "metric" else "segment"
        raise ValueError(f"a {what} gate needs scores and data: evaluate it with run_gates")
    return _metric_checks(gate, candidate, champion)


def evaluate_gates(gates: list[Gate], candidate: dict, champion: dict | None) -> list[GateResult]:
    """Metric gates against metric dicts only. Other kinds fail closed: use :func:`run_gates`."""
    results: list[GateResult] = []
    for gate in gates:
        try:
            results += evaluate_gate(gate, candidate, champion)
        except Exception as exc:  # noqa: BLE001 - a gate that cannot be computed fails closed
            results.append(_failed(gate, exc))
    return results


def all_passed(results: list[GateResult]) -> bool:
    return all(r.passed for r in results)


# -----------------------------------------------------------------------------------------
# run_gates: every kind
# -----------------------------------------------------------------------------------------


def run_gates(gates: list[Gate], inputs: GateInputs) -> list[GateResult]:
    """Evaluate every gate on ``inputs``; never raises (a gate that fails to compute fails).

    Example:
        >>> from retrain_lib.config import Gate
        >>> res = run_gates([Gate(metric="roc_auc", min=0.7)],
        ...                 GateInputs(task="classification", candidate_metrics={"roc_auc": 0.75}))
        >>> [(r.gate, r.passed) for r in res]
        [('roc_auc_min', True)]
    """
    results: list[GateResult] = []
    for gate in gates:
        try:
            out = _RUNNERS[gate.type](gate, inputs)
            if inputs.champion_relative_floor and _absolute(gate) and any(not r.passed for r in out):
                out = _floor_at_champion(gate, inputs, out)
            results += out
        except Exception as exc:  # noqa: BLE001 - a gate that cannot be computed fails closed
            log.warning("gate %s could not be evaluated: %s", _gate_name(gate), exc)
            results.append(_failed(gate, exc))
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
    theirs = _RUNNERS[gate.type](gate, as_champion)
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


def _gate_name(gate: Gate) -> str:
    m = getattr(gate, "metric", None)
    kind = getattr(gate, "type", "metric")
    if kind == "metric":
        return str(m)
    return {"latency": "latency_p95_ms", "stability": "stability", "leakage": "leakage"}.get(kind, f"{kind}_{m}")


def _failed(gate: Gate, exc: BaseException) -> GateResult:
    return GateResult(
        _gate_name(gate),
        getattr(gate, "metric", None),
        None,
        None,
        None,
        None,
        False,
        f"gate could not be evaluated: {exc}",
        kind=getattr(gate, "type", "metric"),
    )


def _skip(gate: Gate, reason: str, slice_: str = "all") -> GateResult:
    return GateResult(_gate_name(gate), gate.metric, None, None, None, None, True, reason, slice_, gate.type, True)


def _array(values, what: str, n: int | None = None, *, finite: bool = True):
    import numpy as np

    if values is None:
        raise ValueError(f"{what} are required but were not given")
    a = np.asarray(values, dtype=float)
    if a.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {a.shape}")
    if n is not None and len(a) != n:
        raise ValueError(f"{what} have {len(a)} rows, expected {n}")
    if finite and not np.isfinite(a).all():
        raise ValueError(f"{what} contain NaN or infinite values")
    return a


def _labels_and_scores(inputs: GateInputs, *, champion: bool):
    y = _array(inputs.y_true, "holdout labels (y_true)")
    if len(y) == 0:
        raise ValueError("the holdout is empty")
    cand = _array(inputs.candidate_scores, "candidate scores", len(y))
    champ = _array(inputs.champion_scores, "champion scores on the holdout", len(y)) if champion else None
    return y, cand, champ


def _column(inputs: GateInputs, name: str, n: int):
    frame = inputs.holdout
    if frame is None:
        raise ValueError(f"the holdout frame is required for column {name!r} but was not given")
    if name not in frame.columns:
        raise ValueError(f"column {name!r} is not in the holdout (columns: {', '.join(map(str, frame.columns))})")
    if len(frame) != n:
        raise ValueError(f"the holdout frame has {len(frame)} rows but y_true has {n}")
    col = frame[name]
    return col.astype(object).where(col.notna(), "<missing>").astype(str).to_numpy()


def _run_metric(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    if gate.segment is None:
        cand = dict(inputs.candidate_metrics or {})
        champ = dict(inputs.champion_metrics) if inputs.champion_metrics is not None else None
        if champ is None and inputs.champion_scores is not None:
            champ = {}
        if gate.metric not in cand and inputs.candidate_scores is not None:  # e.g. ece: compute it
            y, c, _ = _labels_and_scores(inputs, champion=False)
            cand[gate.metric] = compute_metric(inputs.task, gate.metric, y, c)
        if champ is not None and gate.metric not in champ and inputs.champion_scores is not None:
            y, _, h = _labels_and_scores(inputs, champion=True)
            champ[gate.metric] = compute_metric(inputs.task, gate.metric, y, h)
        return _metric_checks(gate, cand, champ)
    relative = gate.max_regression is not None or gate.min_improvement is not None
    need_champion = relative and inputs.has_champion
    y, cand, champ = _labels_and_scores(inputs, champion=need_champion)
    keys = _column(inputs, gate.segment, len(y))
    out: list[GateResult] = []
    for value in sorted(set(keys)):
        mask = keys == value
        slice_ = f"{gate.segment}={value}"
        n = int(mask.sum())
        if n < gate.min_rows:
            out.append(_skip(gate, f"{slice_}: {n} rows < min_rows {gate.min_rows}; slice skipped", slice_))
            continue
        c = {gate.metric: compute_metric(inputs.task, gate.metric, y[mask], cand[mask])}
        h = {gate.metric: compute_metric(inputs.task, gate.metric, y[mask], champ[mask])} if need_champion else None
        out += _metric_checks(gate, c, h, slice_)
    if not out:
        raise ValueError(f"column {gate.segment!r} has no values")
    return out


def _run_fairness(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    y, cand, _ = _labels_and_scores(inputs, champion=False)
    keys = _column(inputs, gate.by, len(y))
    values: dict[str, float] = {}
    small: dict[str, int] = {}
    for value in sorted(set(keys)):
        mask = keys == value
        if mask.sum() < gate.min_rows:
            small[value] = int(mask.sum())
            continue
        v = _num(compute_metric(inputs.task, gate.metric, y[mask], cand[mask]))
        if v is None:
            raise ValueError(
                f"{gate.metric} is not a number for group {gate.by}={value} (e.g. a single class in the group)"
            )
        values[value] = v
    note = f"; skipped groups below min_rows {gate.min_rows}: {small}" if small else ""
    details = {"groups": values, "skipped_groups": small}
    if len(values) < 2:
        return [
            GateResult(
                _gate_name(gate),
                gate.metric,
                gate.max_gap,
                None,
                None,
                None,
                True,
                f"fewer than two groups of {gate.by} with at least {gate.min_rows} rows; gate skipped{note}",
                f"{gate.by}",
                "fairness",
                True,
                details,
            )
        ]
    hi = max(values, key=values.get)
    lo = min(values, key=values.get)
    gap = values[hi] - values[lo]
    ok = gap <= gate.max_gap
    pair = f"{gate.by}={hi} vs {gate.by}={lo}"
    reason = (
        f"largest {gate.metric} gap across {gate.by}: {gap:.4f} ({values[hi]:.4f} on {hi} vs {values[lo]:.4f} "
        f"on {lo}) {'<=' if ok else '>'} max_gap {gate.max_gap:g}{note}"
    )
    return [
        GateResult(
            _gate_name(gate), gate.metric, gate.max_gap, gap, None, None, ok, reason, pair, "fairness", False, details
        )
    ]


def _run_calibration(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    if inputs.task != "classification":
        raise ValueError(f"a calibration gate needs a classification model; this one is {inputs.task}")
    y, cand, _ = _labels_and_scores(inputs, champion=False)
    value = _num(compute_metric(inputs.task, gate.metric, y, cand, bins=gate.bins))
    if value is None:
        return [
            GateResult(
                _gate_name(gate),
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
    ok = value <= gate.max
    extra = f" ({gate.bins} equal-width bins)" if gate.metric == "ece" else ""
    return [
        GateResult(
            _gate_name(gate),
            gate.metric,
            gate.max,
            value,
            None,
            None,
            ok,
            f"{gate.metric}{extra} {value:.4f} {'<=' if ok else '>'} max {gate.max:g}",
            kind="calibration",
        )
    ]


def _run_latency(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    p95 = _num((inputs.latency_ms or {}).get("p95"))
    if p95 is None:
        raise ValueError("no p95 latency in GateInputs.latency_ms; measure it with measure_latency_ms")
    ok = p95 <= gate.max_ms
    return [
        GateResult(
            _gate_name(gate),
            None,
            gate.max_ms,
            p95,
            None,
            None,
            ok,
            f"p95 single-row predict time {p95:.2f} ms {'<=' if ok else '>'} max {gate.max_ms:g} ms",
            kind="latency",
            details=dict(inputs.latency_ms or {}),
        )
    ]


def prediction_change(task: str, y_true, candidate_scores, champion_scores) -> float:
    """How much the predictions change from the champion to the candidate on the same rows.

    Classification: share of rows whose decision at 0.5 flips. Regression: mean absolute change
    of the prediction divided by the (population) standard deviation of ``y_true``, so 0.1 means
    the predictions move by a tenth of the target's spread on average.
    """
    import numpy as np

    cand = np.asarray(candidate_scores, dtype=float)
    champ = np.asarray(champion_scores, dtype=float)
    if task == "classification":
        return float(np.mean((cand >= 0.5) != (champ >= 0.5)))
    spread = float(np.std(np.asarray(y_true, dtype=float)))
    if spread == 0:
        raise ValueError("the target is constant on the holdout; the relative change is undefined")
    return float(np.mean(np.abs(cand - champ)) / spread)


def _run_stability(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    if not inputs.has_champion:
        return [_skip(gate, "no champion yet: stability gate skipped")]
    y, cand, champ = _labels_and_scores(inputs, champion=True)
    change = prediction_change(inputs.task, y, cand, champ)
    ok = change <= gate.max_change
    what = (
        "share of decisions flipped at 0.5" if inputs.task == "classification" else "mean |prediction change| / std(y)"
    )
    return [
        GateResult(
            _gate_name(gate),
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


def bootstrap_improvement(
    task: str,
    metric: str,
    y_true,
    candidate_scores,
    champion_scores,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    chunk: int = 100,
):
    """Paired bootstrap of the candidate's improvement over the champion in ``metric``.

    Each resample draws ``n`` row indices with replacement (``numpy.random.default_rng(seed)``)
    and scores *both* models on the same rows. The improvement is oriented so that positive
    means the candidate is better (``cand - champ`` for greater-is-better metrics, else
    ``champ - cand``). Returns the ``n_resamples`` improvements (a numpy array; NaN where the
    metric is undefined on a resample, e.g. ROC AUC with a single class).
    """
    import numpy as np

    sign = 1.0 if greater_is_better(metric) else -1.0
    y = np.asarray(y_true, dtype=float)
    n = len(y)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_resamples, chunk):
        b = min(chunk, n_resamples - start)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.bincount((idx + (np.arange(b) * n)[:, None]).ravel(), minlength=b * n).reshape(b, n)
        cand = resampled_metric(task, metric, y, candidate_scores, counts)
        champ = resampled_metric(task, metric, y, champion_scores, counts)
        out.append(sign * (cand - champ))
    return np.concatenate(out)


def _run_bootstrap(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    import numpy as np

    if not inputs.has_champion:
        return [_skip(gate, "no champion yet: bootstrap comparison skipped")]
    y, cand, champ = _labels_and_scores(inputs, champion=True)
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
            _gate_name(gate),
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


def leakage_scores(train, target: str, features: list[str], task: str) -> dict[str, float]:
    """How well each feature alone predicts the target on ``train`` (0..1, 1 = perfectly).

    Classification: ROC AUC of the feature oriented as ``max(auc, 1 - auc)`` (numeric), or of the
    per-category target mean (categorical: in-sample, so an id-like column scores high too).
    Regression: ``|Spearman|`` (numeric) or R² of the per-category target mean (categorical).
    Missing numeric values are left out; a missing category is a category of its own.
    """
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    if target not in train.columns:
        raise ValueError(f"target {target!r} is not in the training frame")
    frame = train[train[target].notna()]
    if task == "classification":
        classes = sorted(pd.unique(frame[target]))
        if len(classes) != 2:
            raise ValueError(f"target {target!r} needs two classes in the training rows, found {len(classes)}")
        y = (frame[target] == classes[1]).to_numpy(dtype=float)
    else:
        y = frame[target].to_numpy(dtype=float)
        if np.std(y) == 0:
            raise ValueError(f"target {target!r} is constant in the training rows")
    out: dict[str, float] = {}
    for name in features:
        if name not in frame.columns:
            raise ValueError(f"feature {name!r} is not in the training frame")
        col = frame[name]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if numeric:
            keep = col.notna().to_numpy()
            x, yy = col.to_numpy(dtype=float)[keep], y[keep]
            if len(x) < 2 or np.unique(x).size < 2 or np.unique(yy).size < 2:
                out[name] = 0.0
            elif task == "classification":
                auc = roc_auc_score(yy, x)
                out[name] = float(max(auc, 1 - auc))
            else:
                rho = pd.Series(x).corr(pd.Series(yy), method="spearman")
                out[name] = 0.0 if pd.isna(rho) else float(abs(rho))
            continue
        keys = col.astype(object).where(col.notna(), "<missing>").astype(str)
        encoded = pd.Series(y, index=keys.index).groupby(keys.to_numpy()).transform("mean").to_numpy()
        if task == "classification":
            auc = roc_auc_score(y, encoded) if np.unique(encoded).size > 1 else 0.5
            out[name] = float(max(auc, 1 - auc))
        else:
            out[name] = float(1 - np.sum((y - encoded) ** 2) / np.sum((y - y.mean()) ** 2))
    return out


def _run_leakage(gate: Gate, inputs: GateInputs) -> list[GateResult]:
    if inputs.train is None or not inputs.target:
        raise ValueError("the leakage gate needs GateInputs.train and GateInputs.target")
    features = list(inputs.features) or [c for c in inputs.train.columns if c != inputs.target]
    scores = leakage_scores(inputs.train, inputs.target, features, inputs.task)
    what = "ROC AUC" if inputs.task == "classification" else "|Spearman| / category R²"
    leaks = {k: v for k, v in scores.items() if v >= gate.max_score}
    if not leaks:
        top = max(scores, key=scores.get) if scores else "none"
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


_RUNNERS = {
    "metric": _run_metric,
    "fairness": _run_fairness,
    "calibration": _run_calibration,
    "latency": _run_latency,
    "stability": _run_stability,
    "bootstrap": _run_bootstrap,
    "leakage": _run_leakage,
}


# -----------------------------------------------------------------------------------------
# Latency measurement (run by the caller, its result goes into GateInputs.latency_ms)
# -----------------------------------------------------------------------------------------


def measure_latency_ms(
    model, X, *, task: str = "classification", n: int = 200, seed: int = 0, warmup: int = 5
) -> dict[str, float]:
    """p50/p95 in ms of single-row predictions on ``n`` rows sampled from ``X``: the CPU time
    of the calling thread (the model runs on it alone, OpenMP capped at one thread), so the
    gate judges the model's own cost and a busy machine (a training job beside it, a loaded CI
    runner) cannot fail it. End-to-end wall latency under load is the gateway's concern
    (``benchmarks/gateway_bench.py``, the monitor's serving checks).

    Rows are drawn with ``numpy.random.default_rng(seed)`` (without replacement when ``X`` has
    enough rows); ``warmup`` untimed calls come first. Returns
    ``{"p50": ..., "p95": ..., "n": ...}``, ready for ``GateInputs.latency_ms``.
    """
    import numpy as np

    rows = len(X)
    if rows == 0:
        raise ValueError("X is empty; cannot measure latency")
    rng = np.random.default_rng(seed)
    idx = rng.choice(rows, size=n, replace=rows < n)
    take = (lambda i: X.iloc[[i]]) if hasattr(X, "iloc") else (lambda i: X[i : i + 1])
    from threadpoolctl import threadpool_limits

    # One thread, as a serving worker answers one request: OpenMP pools spinning for a single
    # row on a busy machine would measure contention, not the model.
    with threadpool_limits(limits=1):
        for i in idx[:warmup]:
            predict_scores(model, take(int(i)), task)
        times = []
        for i in idx:
            row = take(int(i))
            start = time.thread_time()
            predict_scores(model, row, task)
            times.append((time.thread_time() - start) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "n": int(n)}
