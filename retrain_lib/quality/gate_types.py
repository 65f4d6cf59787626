"""The inputs and results of promotion gates (:class:`GateInputs`, :class:`GateResult`) and the
helpers every gate kind uses to read its inputs and build its results (fail closed, skip)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from retrain_lib.core.config_gates import Gate


@dataclass(frozen=True)
class GateResult:
    """The outcome of one check of a gate, with its own explanation.

    ``observed`` is the candidate's value (metric, gap, ECE, p95 ms, change, mean bootstrap
    improvement or leakage score), ``threshold`` the bound it was compared with, ``champion``
    and ``delta`` the champion's value and ``observed - champion`` where they exist.
    ``skipped`` results were not checked: the check did not apply (no champion: passed) or
    its slice was too small (passed only under the gate's ``on_skip: pass``).
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
class ServedProbe:
    """What a fresh gateway process did with a candidate (the servability probe,
    :func:`retrain_lib.serving.probe.probe_served`): whether it loaded ``source``, how many
    of ``requests`` single-row requests it answered, how many answers differed from the
    evaluated model's scores on the same rows by more than ``tolerance``, and the wall-clock
    p50/p95 in ms of the answered requests (the served path: HTTP, validation, scoring)."""

    source: str
    loaded: bool
    requests: int = 0
    answered: int = 0
    mismatched: int = 0
    max_abs_diff: float | None = None
    tolerance: float = 1e-6
    p50_ms: float | None = None
    p95_ms: float | None = None
    startup_s: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.loaded
            and self.error is None
            and self.requests > 0
            and self.answered == self.requests
            and not self.mismatched
        )

    def explain(self) -> str:
        """What the probe found, in one sentence."""
        if not self.loaded:
            return f"a fresh gateway process could not serve {self.source}: {self.error}"
        if self.error is not None or self.answered < self.requests:
            return f"the served model answered {self.answered} of {self.requests} requests: {self.error}"
        if self.mismatched:
            return (
                f"the served model answered {self.mismatched} of {self.requests} requests differently from the "
                f"evaluated one (largest difference {self.max_abs_diff:.3g}, tolerance {self.tolerance:g}): "
                "serving skew"
            )
        return (
            f"a fresh gateway process loaded it in {self.startup_s or 0:.1f} s and answered {self.answered} of "
            f"{self.requests} requests as evaluated (p95 {self.p95_ms or 0:.2f} ms)"
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class GoldenScores:
    """A golden gate's fixed evaluation set scored by the candidate: labels, scores, the
    must-pass mask (``None`` without a ``must_pass`` column), where the set is versioned
    (``source``: file, DVC path, rev, md5), or the ``error`` that kept it from being scored."""

    dataset: str
    y_true: Any = None
    scores: Any = None
    must_pass: Any = None
    source: dict[str, str] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class GateInputs:
    """Everything :func:`~retrain_lib.quality.gates.run_gates` may need; only the configured gates' inputs are required.

    Attributes:
        task: ``classification`` or ``regression``.
        y_true: holdout labels (binary 0/1 for classification).
        candidate_scores: the candidate's positive-class probabilities / predictions on the
            holdout rows (:func:`retrain_lib.core.metrics.predict_scores`).
        champion_scores: the champion's on the same rows, or None (no champion).
        holdout: holdout frame aligned with ``y_true`` (features and segment/``by`` columns).
        train: training frame (features and target), for the leakage gate.
        candidate_metrics: the candidate's holdout metrics (metric gates without segment).
        champion_metrics: the champion's, or None when there is no champion.
        latency_ms: ``{"p50": ..., "p95": ...}``: from ``served`` when the candidate was served,
            else :func:`~retrain_lib.stats.gate_measures.measure_latency_ms` (backtests).
        served: the servability probe of the candidate (:class:`ServedProbe`), or None.
        target: name of the target column of ``train``.
        features: feature columns checked by the leakage gate.
        seed: seed of the bootstrap resampling.
        candidate_importances, champion_importances: permutation importances of each feature
            (summing to 1) on the compared rows, for the importance_shift gate.
        golden: the golden gates' sets scored by the candidate, by ``dataset``.
    """

    task: str
    y_true: Any = None
    candidate_scores: Any = None
    champion_scores: Any = None
    holdout: Any = None
    train: Any = None
    candidate_metrics: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, Any] | None = None
    latency_ms: dict[str, Any] | None = None
    served: ServedProbe | None = None
    target: str | None = None
    features: list[str] = field(default_factory=list)
    seed: int = 0
    candidate_importances: dict[str, float] | None = None
    champion_importances: dict[str, float] | None = None
    golden: dict[str, GoldenScores] = field(default_factory=dict)
    # An absolute gate (min/max, segment, fairness, calibration) the champion fails too on the
    # same rows passes when the candidate is not worse there (config ``adaptation``): a gate
    # must not keep a degraded model serving because its successor is not yet perfect.
    champion_relative_floor: bool = False
    # How the candidate's scores were obtained: "held_out" (a model that never saw the rows) or
    # "cross_fit" (out of fold, on rows the champion never saw either).
    compared_on: str = "held_out"

    @property
    def window_rows(self):
        """Every labelled row of the retrain's window: ``train`` then ``holdout``."""
        import pandas as pd

        return pd.concat([self.train, self.holdout])

    @property
    def learnt_rows(self):
        """The labelled rows the candidate learnt: ``train`` after a held-out comparison;
        out of fold every row of the window (``train`` then holds only the rows the champion
        saw, which can be none)."""
        return self.train if self.compared_on == "held_out" else self.window_rows

    @property
    def has_champion(self) -> bool:
        return self.champion_metrics is not None or self.champion_scores is not None


def number_or_none(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else v


def gate_name(gate: Gate) -> str:
    m = getattr(gate, "metric", None)
    kind = getattr(gate, "type", "metric")
    if kind == "metric":
        return str(m)
    fixed = {
        "latency": "latency_p95_ms",
        "servable": "servable",
        "stability": "stability",
        "leakage": "leakage",
        "importance_shift": "importance_shift",
    }
    if kind == "golden":
        return f"golden_{m}" if m else "golden"
    return fixed.get(kind, f"{kind}_{m}")


def failed_result(gate: Gate, exc: BaseException) -> GateResult:
    return GateResult(
        gate_name(gate),
        getattr(gate, "metric", None),
        None,
        None,
        None,
        None,
        False,
        f"gate could not be evaluated: {exc}",
        kind=getattr(gate, "type", "metric"),
    )


def skipped_result(gate: Gate, reason: str, slice_: str = "all") -> GateResult:
    return GateResult(gate_name(gate), gate.metric, None, None, None, None, True, reason, slice_, gate.type, True)


ON_SKIP_HINT = "on_skip: fail; lower min_rows, or set on_skip: pass to let unchecked slices through"


def unchecked_result(gate: Gate, why: str, slice_: str = "all") -> GateResult:
    """A slice or group the gate could not check (``why``): a failure under ``on_skip: fail``
    (the default: nothing passes unchecked), a recorded skip under ``on_skip: pass``."""
    if gate.on_skip == "pass":
        return skipped_result(gate, f"{why}; not checked (on_skip: pass)", slice_)
    return GateResult(
        gate_name(gate),
        gate.metric,
        None,
        None,
        None,
        None,
        False,
        f"{why}; not checked ({ON_SKIP_HINT})",
        slice_,
        gate.type,
        True,
    )


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


def labels_and_scores(inputs: GateInputs, *, champion: bool):
    y = _array(inputs.y_true, "holdout labels (y_true)")
    if len(y) == 0:
        raise ValueError("the holdout is empty")
    cand = _array(inputs.candidate_scores, "candidate scores", len(y))
    champ = _array(inputs.champion_scores, "champion scores on the holdout", len(y)) if champion else None
    return y, cand, champ


def holdout_column(inputs: GateInputs, name: str, n: int):
    frame = inputs.holdout
    if frame is None:
        raise ValueError(f"the holdout frame is required for column {name!r} but was not given")
    if name not in frame.columns:
        raise ValueError(f"column {name!r} is not in the holdout (columns: {', '.join(map(str, frame.columns))})")
    if len(frame) != n:
        raise ValueError(f"the holdout frame has {len(frame)} rows but y_true has {n}")
    col = frame[name]
    return col.astype(object).where(col.notna(), "<missing>").astype(str).to_numpy()
