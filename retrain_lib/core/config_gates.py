"""The ``gates:`` of a model config: :class:`Gate`, one evaluation gate of any kind (metric,
fairness, calibration, latency, servable, stability, bootstrap, leakage, importance_shift,
golden) with its per-kind checks.
"""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import Field, field_validator, model_validator

from retrain_lib.core.config_problems import did_you_mean
from retrain_lib.core.config_sections import StrictModel
from retrain_lib.core.metrics import GREATER_IS_BETTER


class Gate(StrictModel):
    """One evaluation gate; a candidate is promoted only when every gate passes.

    ``type`` chooses the kind (default ``metric``), and each kind takes its own fields::

        - {metric: roc_auc, min: 0.70}                                  # metric, absolute
        - {metric: rmse, max_regression: 0.05, relative: true}          # metric, vs champion
        - {metric: roc_auc, min: 0.65, segment: region, min_rows: 50}   # metric, per segment
        - {type: fairness, metric: recall, by: region, max_gap: 0.10}
        - {type: calibration, metric: ece, max: 0.05, bins: 10}
        - {type: latency, max_ms: 20}
        - {type: servable, requests: 50}
        - {type: stability, max_change: 0.05}
        - {type: bootstrap, metric: roc_auc, margin: 0.0, confidence: 0.95}
        - {type: leakage, max_score: 0.98}
        - {type: importance_shift, max_rank_change: 2, top_k: 5}
        - {type: golden, dataset: golden/credit.csv, metric: roc_auc, min: 0.8, must_pass: must_pass}

    ``metric``: absolute ``min``/``max`` (bounds included), and relative to the champion
    ``max_regression`` (the candidate may be at most this much worse) or ``min_improvement``
    (it must be at least this much better); with ``relative: true`` both are fractions of
    ``|champion|``. Better/worse follow the metric's direction. The semantics are those of
    MLflow's ``MetricThreshold``: ``min``/``max`` = ``threshold``, ``min_improvement`` =
    ``min_absolute_change`` (``min_relative_change`` when relative); ``max_regression`` has no
    MLflow counterpart (MLflow only accepts positive changes) and equals an MLflow
    ``threshold`` of ``champion - max_regression`` (in the metric's direction). With
    ``segment`` every value of that holdout column is a slice checked on its own.
    Relative checks are skipped while there is no champion (the first version has nothing to
    compare with). A slice or fairness group below ``min_rows`` cannot be checked: with
    ``on_skip: fail`` (the default) that fails the gate, with ``on_skip: pass`` it passes
    and the skip is recorded.

    ``fairness``: the largest difference of ``metric`` between groups of ``by`` must not
    exceed ``max_gap``. ``calibration``: Brier score or ECE at most ``max``. ``servable``: a
    fresh gateway process loads the candidate and answers ``requests`` single-row requests
    built from the training rows, each the same as the evaluated model's score (see
    ``retrain_lib.serving.probe``). ``latency``: the p95 of those served requests (wall
    clock, over HTTP) at most ``max_ms``; backtests, which serve nothing, use the p95
    single-row predict time instead. ``stability``: prediction change against
    the champion on the holdout at most ``max_change`` (classification: share of flipped
    decisions at 0.5; regression: mean absolute change / std of y). ``bootstrap``: paired
    bootstrap of the improvement over the champion; fails when the challenger is worse than
    ``-margin`` with ``confidence``. ``leakage``: no feature alone may predict the target on
    the training rows with a score of ``max_score`` or more. ``importance_shift``: none of the
    champion's ``top_k`` features (by permutation importance, candidate and champion measured on
    the same compared rows) moves more than ``max_rank_change`` places in the candidate's ranking
    (skipped, passing, without a champion). ``golden``: the fixed evaluation set ``dataset``
    scored by every candidate: ``metric`` within ``min``/``max`` there, and every row whose
    ``must_pass`` column is true predicted right. See ``retrain_lib.quality.gates``.
    """

    type: Literal[
        "metric",
        "fairness",
        "calibration",
        "latency",
        "servable",
        "stability",
        "bootstrap",
        "leakage",
        "importance_shift",
        "golden",
    ] = Field(
        default="metric",
        description="Kind of gate; each kind takes the fields listed in its description.",
    )
    metric: str | None = Field(
        default=None,
        description="metric, fairness, bootstrap: the metric (e.g. roc_auc, rmse); calibration: brier or ece.",
    )
    min: float | None = Field(default=None, description="metric: lowest allowed value (included).")
    max: float | None = Field(default=None, description="metric, calibration: highest allowed value (included).")
    max_regression: float | None = Field(
        default=None,
        ge=0,
        description="metric: the candidate may be at most this much worse than the champion.",
    )
    min_improvement: float | None = Field(
        default=None,
        ge=0,
        description="metric: the candidate must be at least this much better than the champion.",
    )
    relative: bool = Field(
        default=False,
        description="metric: max_regression/min_improvement are fractions of |champion value|.",
    )
    segment: str | None = Field(
        default=None,
        description="metric: check the metric on each value of this holdout column (one slice each).",
    )
    min_rows: int = Field(
        default=50,
        ge=1,
        description="metric with segment, fairness: smaller slices/groups cannot be checked (see on_skip).",
    )
    on_skip: Literal["fail", "pass"] = Field(
        default="fail",
        description=(
            "metric with segment, fairness: what a slice or group below min_rows (or a fairness gate left "
            "with fewer than two groups to compare) does to the gate: fail (default: nothing passes unchecked) "
            "or pass (the skip is recorded in the result, the model card and the registry tag gates.skipped)."
        ),
    )
    by: str | None = Field(default=None, description="fairness: column whose groups are compared.")
    max_gap: float | None = Field(
        default=None,
        ge=0,
        description="fairness: largest allowed metric difference between two groups.",
    )
    bins: int = Field(default=10, ge=2, le=1000, description="calibration: equal-width bins of the ECE.")
    debias: bool = Field(
        default=False,
        description=(
            "calibration: subtract what a perfectly calibrated model shows on the same scores and rows (the "
            "mean over labels drawn from the scores): on a few hundred rows the raw ECE of a calibrated model "
            "is 0.05 or more."
        ),
    )
    max_ms: float | None = Field(
        default=None,
        gt=0,
        description="latency: highest allowed p95 ms of a single-row request to the served candidate.",
    )
    requests: int = Field(
        default=50, ge=5, le=10_000, description="servable, latency: single-row requests sent to the served candidate."
    )
    timeout_s: float = Field(
        default=180.0, gt=0, le=3600, description="servable, latency: seconds the candidate has to load and be served."
    )
    max_change: float | None = Field(
        default=None,
        ge=0,
        description="stability: highest allowed prediction change against the champion.",
    )
    n_resamples: int = Field(default=1000, ge=100, le=100_000, description="bootstrap: number of resamples.")
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="bootstrap: one-sided confidence level.")
    margin: float = Field(
        default=0.0,
        ge=0,
        description="bootstrap: tolerated worsening (metric units) before the gate fails.",
    )
    max_score: float = Field(
        default=0.98,
        gt=0,
        le=1,
        description="leakage: a feature whose univariate score (AUC, |Spearman| or R2) reaches this fails.",
    )
    max_rank_change: int | None = Field(
        default=None,
        ge=0,
        description=(
            "importance_shift: how many places one of the champion's top_k features may move in the candidate's "
            "permutation-importance ranking (both measured on the same compared rows)."
        ),
    )
    top_k: int = Field(default=5, ge=1, le=1000, description="importance_shift: the champion's features checked.")
    dataset: str | None = Field(
        default=None,
        description=(
            "golden: the fixed evaluation set, a .parquet or .csv file (features, target and the must_pass "
            "column) relative to the config directory; versioned in the platform's DVC data registry at every "
            "evaluation, its revision recorded in the gate result."
        ),
    )
    must_pass: str | None = Field(
        default=None,
        description=(
            "golden: a boolean column of the dataset; every row marked true must be predicted right "
            "(classification: the class at 0.5; regression: within tolerance)."
        ),
    )
    tolerance: float | None = Field(
        default=None, gt=0, description="golden, regression with must_pass: largest allowed |prediction - target|."
    )

    _FIELDS: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "metric": (
            "metric",
            "min",
            "max",
            "max_regression",
            "min_improvement",
            "relative",
            "segment",
            "min_rows",
            "on_skip",
        ),
        "fairness": ("metric", "by", "max_gap", "min_rows", "on_skip"),
        "calibration": ("metric", "max", "bins", "debias"),
        "latency": ("max_ms", "requests", "timeout_s"),
        "servable": ("requests", "timeout_s"),
        "stability": ("max_change",),
        "bootstrap": ("metric", "n_resamples", "confidence", "margin"),
        "leakage": ("max_score",),
        "importance_shift": ("max_rank_change", "top_k"),
        "golden": ("dataset", "metric", "min", "max", "must_pass", "tolerance"),
    }
    _REQUIRED: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "metric": ("metric",),
        "fairness": ("metric", "by", "max_gap"),
        "calibration": ("metric", "max"),
        "latency": ("max_ms",),
        "servable": (),
        "stability": ("max_change",),
        "bootstrap": ("metric",),
        "leakage": (),
        "importance_shift": ("max_rank_change",),
        "golden": ("dataset",),
    }

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        if value is not None and value not in GREATER_IS_BETTER:
            raise ValueError(
                f"unknown metric {value!r}{did_you_mean(value, GREATER_IS_BETTER)}; "
                f"use one of: {', '.join(sorted(GREATER_IS_BETTER))}"
            )
        return value

    @model_validator(mode="after")
    def _has_bound(self) -> Gate:
        kind = self.type
        allowed = self._FIELDS[kind]
        # Fields left at their default do not count (a dumped config lists every field).
        foreign = {
            n
            for n in self.model_fields_set - {"type", *allowed}
            if getattr(self, n) != type(self).model_fields[n].default
        }
        for name in sorted(foreign):
            owners = [k for k, fields in self._FIELDS.items() if name in fields]
            raise ValueError(
                f"'{name}' does not apply to a {kind} gate; it belongs to type "
                f"{' or '.join(owners)} (a {kind} gate takes {', '.join(allowed)})"
            )
        missing = [name for name in self._REQUIRED[kind] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {kind} gate needs {' and '.join(repr(m) for m in missing)}")
        if kind == "calibration" and self.metric not in ("brier", "ece"):
            raise ValueError(f"a calibration gate measures brier or ece, not {self.metric!r}")
        if kind == "golden":
            self._check_golden()
        if kind != "metric":
            return self
        if all(v is None for v in (self.min, self.max, self.max_regression, self.min_improvement)):
            raise ValueError("a gate needs at least one of min, max, max_regression, min_improvement")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.max_regression is not None and self.min_improvement is not None:
            raise ValueError("use either max_regression or min_improvement, not both")
        if self.relative and self.max_regression is None and self.min_improvement is None:
            raise ValueError("relative only applies to max_regression or min_improvement")
        for name in ("min_rows", "on_skip"):
            if getattr(self, name) != type(self).model_fields[name].default and self.segment is None:
                raise ValueError(f"{name} only applies with segment (or to a fairness gate)")
        return self

    def _check_golden(self) -> None:
        if self.min is None and self.max is None and self.must_pass is None:
            raise ValueError("a golden gate needs min or max (with metric), or must_pass, or both")
        if (self.min is not None or self.max is not None) and self.metric is None:
            raise ValueError("a golden gate's min/max need the 'metric' they bound")
        if self.metric is not None and self.min is None and self.max is None:
            raise ValueError(f"a golden gate with metric {self.metric!r} needs min or max")
        if self.tolerance is not None and self.must_pass is None:
            raise ValueError("tolerance only applies with must_pass")
        suffix = self.dataset.rsplit(".", 1)[-1].lower() if self.dataset and "." in self.dataset else ""
        if suffix not in ("parquet", "csv"):
            raise ValueError(f"a golden dataset is a .parquet or .csv file, not {self.dataset!r}")
