"""Model and platform configuration: schema, loading and error reporting.

A model is described by one YAML file in ``configs/models/``; platform-wide settings live in
``configs/platform.yaml``. Both are read with a ``yaml.SafeLoader`` only and validated by
pydantic models that forbid unknown keys. Validation reports *every* problem of *every*
file at once, each with file, line, dotted field path, reason and a fix::

    configs/models/credit.yaml:14:3: drift.treshold: unknown field; did you mean 'threshold'?

This module is imported by the DAG factory at parse time: it must stay light (pydantic and
PyYAML only).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from retrain_lib.errors import ConfigError

MAX_CONFIG_BYTES = 1_000_000
MAX_CONFIG_NODES = 100_000  # YAML values once aliases are expanded: stops "billion laughs" files
DRIFT_METHODS = ("psi", "ks", "js", "chi2", "wasserstein")
CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier", "ece")
REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")
_NAME_RE = r"^[a-z][a-z0-9_]{0,62}$"
_CRON_PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_cron(value: str | None) -> str | None:
    if value is None:
        return value
    value = value.strip()
    if value in _CRON_PRESETS:
        return value
    fields = value.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,\-A-Za-z?]+", f) for f in fields):
        raise ValueError(
            f"{value!r} is not a cron expression; use five fields such as '0 6 * * *' "
            f"or one of {', '.join(_CRON_PRESETS[1:])}"
        )
    return value


_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"


class DataSource(_Strict):
    """Where a model's data lives.

    ``local``: files named ``YYYY-MM-DD.<format>`` in ``path`` under the platform's data_root.
    ``s3``: the same files under ``s3://<bucket>/<path>/`` (endpoint and region from
    platform.yaml, credentials from the environment). ``sql``: rows of ``table`` selected by
    the timestamp column, labels from ``labels_table`` by their arrival column (connection URL
    from the environment variable named in platform.yaml).
    """

    source: Literal["local", "s3", "sql"] = "local"
    path: str | None = Field(
        default=None,
        description="local: directory under data_root; s3: key prefix in the bucket.",
    )
    bucket: str | None = Field(default=None, description="s3 only; default: platform.yaml s3.bucket.")
    format: Literal["parquet", "csv"] = "parquet"
    labels_path: str | None = Field(
        default=None,
        description=(
            "Directory (or S3 prefix) of daily label partitions (id column + target), dated by the day "
            "the labels arrived. When omitted the target is read from the feature partitions."
        ),
    )
    table: str | None = Field(default=None, pattern=_IDENT, description="sql only: table of events.")
    labels_table: str | None = Field(default=None, pattern=_IDENT, description="sql only: table of labels.")
    labels_arrival_column: str = Field(default="arrived_at", description="sql only: when a label arrived.")
    id_column: str = Field(description="Unique id of an event; joins late labels to features.")
    timestamp_column: str
    label_delay_days: int = Field(default=0, ge=0, le=365)

    @field_validator("path", "labels_path")
    @classmethod
    def _relative_path(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts or "://" in value:
            raise ValueError(f"{value!r} must be a path relative to the platform's data_root (or bucket), without '..'")
        return value

    @model_validator(mode="after")
    def _source_fields(self) -> DataSource:
        if self.source in ("local", "s3") and not self.path:
            raise ValueError(f"source {self.source!r} needs 'path' (the directory or prefix of daily files)")
        if self.source == "sql" and not self.table:
            raise ValueError("source 'sql' needs 'table'")
        if self.source != "sql" and (self.table or self.labels_table):
            raise ValueError("'table' and 'labels_table' only apply to source 'sql'")
        if self.source != "s3" and self.bucket:
            raise ValueError("'bucket' only applies to source 's3'")
        return self


class Features(_Strict):
    target: str
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list, description="Columns to report metrics by.")

    @model_validator(mode="after")
    def _consistent(self) -> Features:
        if not self.numeric and not self.categorical:
            raise ValueError("declare at least one feature under 'numeric' or 'categorical'")
        seen: dict[str, str] = {}
        for kind in ("numeric", "categorical"):
            for name in getattr(self, kind):
                if name in seen:
                    raise ValueError(f"feature {name!r} is listed under both {seen[name]!r} and {kind!r}")
                seen[name] = kind
        if self.target in seen:
            raise ValueError(f"the target {self.target!r} is also listed as a feature; remove it")
        return self

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


class Windows(_Strict):
    training_days: int = Field(default=60, ge=1, le=3660)
    monitor_days: int = Field(default=7, ge=1, le=366, description="Current window for drift checks.")
    reference_days: int = Field(
        default=30,
        ge=1,
        le=3660,
        description=(
            "Reference window for drift: the last days of the champion's training window "
            "(before any champion: the oldest days of data)."
        ),
    )


class MaxRetrains(_Strict):
    """``{count: 3, days: 7}``: at most ``count`` retrain requests in any ``days`` days."""

    count: int = Field(ge=1, le=1000)
    days: int = Field(ge=1, le=3660)


class Schedule(_Strict):
    monitor: str = Field(default="@daily", description="Cron of the monitor DAG.")
    retrain_floor: str | None = Field(
        default="@weekly",
        description="Cron of the retrain DAG: a retrain at least this often. null = never.",
    )
    min_retrain_interval_days: int = Field(default=1, ge=0, le=365)
    max_days_without_retrain: int | None = Field(
        default=None,
        ge=1,
        le=3660,
        description="The monitor requests a retrain when the champion is older than this.",
    )
    new_labels_share: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description=(
            "The monitor requests a retrain when the labelled rows that matured since the champion's "
            "training window are at least this share of its training rows (e.g. 0.15). null = off."
        ),
    )
    max_retrains: MaxRetrains | None = Field(
        default=None,
        description="At most this many retrain requests by the monitor within a rolling period; more are throttled.",
    )

    @field_validator("monitor", "retrain_floor")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return _check_cron(value)


def _check_threshold(value):
    """A drift threshold: a positive number, ``auto`` (calibrated, see retrain_lib.calibration) or null."""
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"threshold must be a positive number or 'auto'. Got {value!r} instead.")
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            hint = _did_you_mean(value.strip().lower(), ["auto"]) or "."
            raise ValueError(f"threshold must be a positive number or 'auto'. Got {value!r} instead{hint}") from None
    else:
        number = float(value)
    if not number > 0:
        raise ValueError(f"threshold must be a positive number or 'auto'. Got {value!r} instead.")
    return value


_Threshold = Annotated[float, Field(gt=0)] | Literal["auto"] | None


class FeatureDrift(_Strict):
    method: Literal["psi", "ks", "js", "chi2", "wasserstein", "linf", "missing_share", "unseen"] | None = None
    threshold: _Threshold = Field(
        default=None,
        description="Threshold of this feature's method; 'auto' = calibrated to drift.false_alarm_rate.",
    )

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value):
        return _check_threshold(value)


class DriftPersistence(_Strict):
    """Alarm only when at least ``k`` of the last ``n`` monitor checks drifted."""

    k: int = Field(ge=1, le=100)
    n: int = Field(ge=1, le=100)

    @model_validator(mode="after")
    def _k_le_n(self) -> DriftPersistence:
        if self.k > self.n:
            raise ValueError(f"persistence k ({self.k}) must not exceed n ({self.n})")
        return self


class DriftTrigger(_Strict):
    method: Literal["psi", "ks", "js", "chi2", "wasserstein", "missing_share"] = "psi"
    categorical_method: Literal["psi", "js", "chi2", "linf", "missing_share", "unseen"] = "psi"
    threshold: _Threshold = Field(
        default=None,
        description=(
            "Threshold of the default method; null = the method's default; 'auto' = every feature "
            "without its own threshold is calibrated to false_alarm_rate at the actual sample sizes."
        ),
    )
    false_alarm_rate: float = Field(
        default=0.01,
        gt=0,
        le=0.5,
        description="Target false-alarm rate of 'auto' thresholds (with bh: of the whole set of auto features).",
    )
    multiple_testing: Literal["bh", "none"] | None = Field(
        default=None,
        description="Correction across the 'auto' features: bh (Benjamini-Hochberg) or none; null = bh.",
    )
    persistence: DriftPersistence | None = Field(
        default=None,
        description="Alarm only when at least k of the last n checks drifted: {k: 2, n: 3}.",
    )
    bins: int = Field(default=10, ge=2, le=1000)
    features: dict[str, FeatureDrift] = Field(default_factory=dict)
    exclude: list[str] = Field(
        default_factory=list,
        description="Features left out of drift checks (e.g. calendar features).",
    )
    drift_share: float = Field(
        default=0.3,
        gt=0,
        le=1,
        description="Share of drifted features that makes the dataset drifted.",
    )
    weight_by_importance: bool = Field(
        default=False,
        description="Weight the drifted share by the champion's permutation importance (logged at training).",
    )
    prediction: bool = Field(default=True, description="Also check the champion's output distribution.")
    prediction_threshold: float | None = Field(default=None, gt=0, description="PSI threshold of prediction drift.")
    enabled: bool = True

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value):
        return _check_threshold(value)

    @property
    def uses_auto(self) -> bool:
        """Whether any feature's threshold is calibrated (``threshold: auto``)."""
        return self.threshold == "auto" or any(f.threshold == "auto" for f in self.features.values())

    @model_validator(mode="after")
    def _auto_options(self) -> DriftTrigger:
        if self.multiple_testing is not None and not self.uses_auto:
            raise ValueError(
                "multiple_testing only applies to calibrated thresholds; set threshold: auto "
                "(for drift or for a feature) or remove multiple_testing"
            )
        return self


class PerformanceTrigger(_Strict):
    """The champion's live metric on matured labels against its baseline.

    Levels (at least one): ``max_drop`` is an absolute drop (in the metric's units) and
    ``critical_drop``/``warn_drop`` are relative drops (fractions of the baseline). Passing
    ``max_drop`` or ``critical_drop`` requests a retrain; passing ``warn_drop`` is recorded
    (reasons and ledger) but does not retrain by itself. Worse follows the metric's direction.

    The baseline is the champion's holdout metric at registration (version tag
    ``metric.<metric>``) until at least ``baseline_min_days`` days of matured labels since
    its training window precede the current window; from then on it is the mean of the
    champion's daily live metric over the last ``baseline_days`` of those days.
    """

    metric: str
    max_drop: float | None = Field(
        default=None,
        gt=0,
        description="Retrain when the champion's live metric is worse than its baseline by more than this.",
    )
    warn_drop: float | None = Field(
        default=None,
        gt=0,
        lt=10,
        description="Relative drop (fraction of the baseline, e.g. 0.05) recorded as a warning.",
    )
    critical_drop: float | None = Field(
        default=None,
        gt=0,
        lt=10,
        description="Relative drop (fraction of the baseline, e.g. 0.10) that requests a retrain.",
    )
    min_labels: int = Field(default=100, ge=1)
    min_segment_labels: int = Field(
        default=50,
        ge=1,
        description="Segments with fewer matured labels are reported but not flagged.",
    )
    baseline_days: int = Field(
        default=14,
        ge=1,
        le=3660,
        description="Days of matured labels in the champion's rolling live baseline.",
    )
    baseline_min_days: int = Field(
        default=7,
        ge=1,
        le=3660,
        description="Matured days needed before the rolling live baseline replaces the holdout metric.",
    )
    use_estimate: bool = Field(
        default=False,
        description=(
            "Classification: an estimated (CBPE) drop beyond critical_drop on rows still without labels "
            "requests a retrain too."
        ),
    )
    estimate_draws: int = Field(default=50, ge=2, le=10_000)
    false_alarm_rate: float | None = Field(
        default=None,
        gt=0,
        lt=0.5,
        description=(
            "Make the drop a statistical test: retrain when the drop is significant at this false-alarm rate per "
            "check for the number of matured labels (bootstrap standard errors of the live metric and of the "
            "baseline) and at least min_effect. max_drop/critical_drop then only label reports."
        ),
    )
    min_effect: float = Field(
        default=0.0,
        ge=0,
        description="With false_alarm_rate: the smallest drop (metric units) worth a retrain, however significant.",
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _levels(self) -> PerformanceTrigger:
        if (
            self.max_drop is None
            and self.warn_drop is None
            and self.critical_drop is None
            and self.false_alarm_rate is None
        ):
            raise ValueError(
                "performance needs at least one of max_drop, warn_drop, critical_drop (or false_alarm_rate)"
            )
        if self.warn_drop is not None and self.critical_drop is not None and self.warn_drop >= self.critical_drop:
            raise ValueError(f"warn_drop ({self.warn_drop}) must be smaller than critical_drop ({self.critical_drop})")
        if self.use_estimate and self.critical_drop is None:
            raise ValueError("use_estimate needs critical_drop (an estimated drop is compared with it)")
        if self.baseline_min_days > self.baseline_days:
            raise ValueError(
                f"baseline_min_days ({self.baseline_min_days}) is greater than baseline_days ({self.baseline_days})"
            )
        return self


class Recency(_Strict):
    """Weight recent training rows more (``retrain_lib.training.sample_weights``).

    The window is anchored at the end of the training window (``as_of``): ``{days: 90,
    weight: 2.0}`` makes rows of the last 90 days count ``weight`` times as much as older
    rows; ``{half_life_days: 30}`` halves a row's weight every 30 days of age. Both together
    multiply. The weights are rescaled to average 1, so the total weight equals the number
    of rows, as in unweighted training. The estimator's ``fit`` must accept ``sample_weight``.
    """

    days: int | None = Field(
        default=None,
        gt=0,
        le=3660,
        description="Rows of the last `days` days count `weight` times (with weight).",
    )
    weight: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Relative weight of rows within the last `days` days.",
    )
    half_life_days: float | None = Field(
        default=None,
        gt=0,
        le=3660,
        description="Exponential decay: a row's weight halves every this many days.",
    )

    @model_validator(mode="after")
    def _complete(self) -> Recency:
        if (self.days is None) != (self.weight is None):
            given, missing = ("days", "weight") if self.weight is None else ("weight", "days")
            raise ValueError(f"recency {given} needs {missing} too, e.g. {{days: 90, weight: 2.0}}")
        if self.days is None and self.half_life_days is None:
            raise ValueError(
                "recency needs days and weight, half_life_days, or both; "
                "e.g. {days: 90, weight: 2.0} or {half_life_days: 30}"
            )
        if self.weight == 1:
            raise ValueError(
                "recency weight 1 gives recent and older rows the same weight; use a weight other "
                "than 1 (e.g. 2.0) or remove days and weight"
            )
        return self


class Split(_Strict):
    method: Literal["time", "random", "stratified"] = "time"
    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.9)


class Training(_Strict):
    """How a candidate is trained (``retrain_lib.training.fit``).

    ``recency`` weights recent rows more; ``timeout_minutes`` fits in a child process that is
    stopped after that long; ``warm_start`` continues from the champion's fitted model instead
    of training from scratch (the champion's preprocessing is reused when the feature lists
    are unchanged, and ``warm_start_extra`` trees/iterations are added). A warm-started model
    depends on its parent version: the same data and config reproduce it only from the same
    parent, which is recorded in its lineage.
    """

    estimator: str = Field(description="Import path of a scikit-learn estimator class.")
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 42
    split: Split = Field(default_factory=Split)
    recency: Recency | None = Field(
        default=None,
        description="Weight recent rows more: {days: 90, weight: 2.0} and/or {half_life_days: 30}.",
    )
    timeout_minutes: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 60,
        description="Stop a fit that takes longer (it then runs in a child process). null = no limit, in-process.",
    )
    warm_start: bool = Field(
        default=False,
        description=(
            "Continue from the champion's fitted model (estimators with a warm_start parameter); "
            "the new model then depends on its parent version."
        ),
    )
    warm_start_extra: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description=(
            "With warm_start: trees/boosting iterations added to the champion's (n_estimators, "
            "max_iter); for solvers such as LogisticRegression the max_iter of the continued fit. "
            "Default 50."
        ),
    )

    @field_validator("estimator")
    @classmethod
    def _import_path(cls, value: str) -> str:
        # dotted names, none private or dunder: ``sklearn.__class__.__init__`` is not an estimator
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+", value):
            raise ValueError(
                f"{value!r} is not an import path such as 'sklearn.linear_model.LogisticRegression' "
                "(dotted names, none starting with '_')"
            )
        return value

    @model_validator(mode="after")
    def _warm_start_options(self) -> Training:
        if self.warm_start_extra is not None and not self.warm_start:
            raise ValueError(
                "warm_start_extra only applies with warm_start: true; set warm_start: true or remove warm_start_extra"
            )
        return self

    @property
    def extra_iterations(self) -> int:
        """``warm_start_extra`` or its default (50)."""
        return 50 if self.warm_start_extra is None else self.warm_start_extra


class Adaptation(_Strict):
    """Change-aware retraining (``retrain_lib.adaptation``).

    A retrain estimates the day the champion's matured performance changed (if it did).
    Candidates trained on several ``windows`` compete on the newest matured labels (after the
    change when there is one): ``after_change`` (only the rows since the change, once there are
    ``min_rows_after_change`` of them), ``recency_weighted`` (the whole window, rows since the
    change, or the last quarter of the window, carrying ``recent_weight_share`` of the weight)
    and ``configured`` (the training section as written). The winner is compared with the
    champion on those same rows, then refit on every row it may use. With ``require_gain`` a
    candidate that is not better than the champion beyond noise (paired bootstrap at
    ``gain_confidence``) is a "no gain" outcome, not a promotion. With a performance trigger,
    data drift alone rebases the drift reference and leaves the decision to the labels
    (``rebase_on_drift``), and a champion below its healthy level stays armed with backoff.
    """

    windows: list[Literal["after_change", "recency_weighted", "configured"]] = Field(
        default_factory=lambda: ["after_change", "recency_weighted", "configured"],
        min_length=1,
        description="Training windows whose candidates compete on the newest matured labels.",
    )
    min_rows_after_change: int = Field(
        default=200,
        ge=20,
        description="after_change: labelled rows since the change needed to train on them alone.",
    )
    recent_weight_share: float = Field(
        default=0.75,
        gt=0,
        lt=1,
        description="recency_weighted: share of the total weight of the recent rows.",
    )
    require_gain: bool = Field(
        default=True,
        description="A candidate not better than the champion beyond noise is not registered.",
    )
    gain_confidence: float = Field(default=0.95, gt=0.5, lt=1, description="One-sided confidence of the gain.")
    gain_resamples: int = Field(default=1000, ge=100, le=100_000, description="Resamples of the gain bootstrap.")
    rebase_on_drift: bool = Field(
        default=True,
        description="With performance: drift alone rebases the drift reference; matured labels decide a retrain.",
    )
    backoff: bool = Field(
        default=True,
        description="Double the wait after each retrain that was not deployed (no gain, rejected).",
    )
    shift_label_days: int | None = Field(
        default=7,
        ge=1,
        le=365,
        description=(
            "After a covariate shift the champion survived: once this many days of labels since the shift "
            "have matured, one retrain asks whether they allow a better model. null = never."
        ),
    )
    follow_up: bool = Field(
        default=True,
        description=(
            "After a retrain that learnt a change from a few days of labels: retrain again each time the "
            "matured days since the change double, until they fill the training window or a retrain "
            "brings no gain."
        ),
    )


class Gate(_Strict):
    """One evaluation gate; a candidate is promoted only when every gate passes.

    ``type`` chooses the kind (default ``metric``), and each kind takes its own fields::

        - {metric: roc_auc, min: 0.70}                                  # metric, absolute
        - {metric: rmse, max_regression: 0.05, relative: true}          # metric, vs champion
        - {metric: roc_auc, min: 0.65, segment: region, min_rows: 50}   # metric, per segment
        - {type: fairness, metric: recall, by: region, max_gap: 0.10}
        - {type: calibration, metric: ece, max: 0.05, bins: 10}
        - {type: latency, max_ms: 20}
        - {type: stability, max_change: 0.05}
        - {type: bootstrap, metric: roc_auc, margin: 0.0, confidence: 0.95}
        - {type: leakage, max_score: 0.98}

    ``metric``: absolute ``min``/``max`` (bounds included), and relative to the champion
    ``max_regression`` (the candidate may be at most this much worse) or ``min_improvement``
    (it must be at least this much better); with ``relative: true`` both are fractions of
    ``|champion|``. Better/worse follow the metric's direction. The semantics are those of
    MLflow's ``MetricThreshold``: ``min``/``max`` = ``threshold``, ``min_improvement`` =
    ``min_absolute_change`` (``min_relative_change`` when relative); ``max_regression`` has no
    MLflow counterpart (MLflow only accepts positive changes) and equals an MLflow
    ``threshold`` of ``champion - max_regression`` (in the metric's direction). With
    ``segment`` every value of that holdout column is a slice checked on its own.
    Relative checks are skipped while there is no champion.

    ``fairness``: the largest difference of ``metric`` between groups of ``by`` must not
    exceed ``max_gap``. ``calibration``: Brier score or ECE at most ``max``. ``latency``:
    p95 single-row predict time at most ``max_ms``. ``stability``: prediction change against
    the champion on the holdout at most ``max_change`` (classification: share of flipped
    decisions at 0.5; regression: mean absolute change / std of y). ``bootstrap``: paired
    bootstrap of the improvement over the champion; fails when the challenger is worse than
    ``-margin`` with ``confidence``. ``leakage``: no feature alone may predict the target on
    the training rows with a score of ``max_score`` or more. See ``retrain_lib.gates``.
    """

    type: Literal["metric", "fairness", "calibration", "latency", "stability", "bootstrap", "leakage"] = Field(
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
        description="metric with segment, fairness: smaller slices/groups are skipped.",
    )
    by: str | None = Field(default=None, description="fairness: column whose groups are compared.")
    max_gap: float | None = Field(
        default=None,
        ge=0,
        description="fairness: largest allowed metric difference between two groups.",
    )
    bins: int = Field(default=10, ge=2, le=1000, description="calibration: equal-width bins of the ECE.")
    max_ms: float | None = Field(default=None, gt=0, description="latency: highest allowed p95 single-row predict ms.")
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

    _FIELDS: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "metric": ("metric", "min", "max", "max_regression", "min_improvement", "relative", "segment", "min_rows"),
        "fairness": ("metric", "by", "max_gap", "min_rows"),
        "calibration": ("metric", "max", "bins"),
        "latency": ("max_ms",),
        "stability": ("max_change",),
        "bootstrap": ("metric", "n_resamples", "confidence", "margin"),
        "leakage": ("max_score",),
    }
    _REQUIRED: typing.ClassVar[dict[str, tuple[str, ...]]] = {
        "metric": ("metric",),
        "fairness": ("metric", "by", "max_gap"),
        "calibration": ("metric", "max"),
        "latency": ("max_ms",),
        "stability": ("max_change",),
        "bootstrap": ("metric",),
        "leakage": (),
    }

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str | None) -> str | None:
        from retrain_lib.metrics import GREATER_IS_BETTER  # light: numpy loads inside its functions

        if value is not None and value not in GREATER_IS_BETTER:
            raise ValueError(
                f"unknown metric {value!r}{_did_you_mean(value, GREATER_IS_BETTER)}; "
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
        if self.min_rows != type(self).model_fields["min_rows"].default and self.segment is None:
            raise ValueError("min_rows only applies with segment (or to a fairness gate)")
        return self


class Deploy(_Strict):
    """How a candidate that passed its gates reaches production. ``direct`` promotes it;
    ``shadow`` and ``canary`` make it the ``challenger`` and the ``<model>__rollout`` DAG
    moves it through the serving gateway: shadow first (scored on every request, never
    answered, compared with the champion), then for ``canary`` each share of
    ``canary_steps`` in turn, each step decided by a sequential test on live labels (bounded
    false-rollback rate, early stop when clearly worse); it ends in a promotion
    (compare-and-swap) or a rollback of the challenger."""

    mode: Literal["direct", "shadow", "canary"] = "direct"
    canary_steps: list[int] = Field(default_factory=lambda: [5, 20, 50, 100])
    shadow_hours: float = Field(default=24, gt=0, description="Shadow for at least this long ...")
    min_predictions: int = Field(default=200, ge=10, description="... and at least this many predictions per arm.")
    step_minutes: float = Field(default=60, gt=0, description="Shortest time of a canary step.")
    max_step_predictions: int = Field(
        default=5000,
        ge=20,
        description="A canary step still undecided at this many labels per arm rolls back.",
    )
    rollout_timeout_hours: float = Field(default=72, gt=0, description="A wait longer than this fails the step.")
    sticky_key: str | None = Field(default=None, description="Column that keeps an entity on one arm.")
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="False-rollback rate of the sequential test.")
    margin: float = Field(
        default=0.0,
        ge=0,
        description="Per-request loss the challenger may exceed the champion's by and still pass.",
    )
    max_psi: float = Field(default=0.2, gt=0, description="Shadow: PSI of challenger vs champion outputs.")
    max_latency_ratio: float = Field(default=1.5, gt=0, description="Shadow: challenger p95 latency / champion's.")

    @field_validator("canary_steps")
    @classmethod
    def _increasing(cls, steps: list[int]) -> list[int]:
        if not steps or any(not 0 < s <= 100 for s in steps) or any(a >= b for a, b in zip(steps, steps[1:])):
            raise ValueError(f"canary_steps must increase strictly within 1..100, got {steps}")
        return steps


ALERT_KINDS = ("gate_failure", "validation_failure", "drift", "promotion", "rollback", "approval_needed", "failure")
AlertKind = Literal[
    "gate_failure", "validation_failure", "drift", "promotion", "rollback", "approval_needed", "failure"
]
Severity = Literal["green", "yellow", "red"]
DEFAULT_SEVERITY: dict[str, str] = {
    "gate_failure": "yellow",
    "validation_failure": "red",
    "drift": "yellow",
    "promotion": "green",
    "rollback": "red",
    "approval_needed": "yellow",
    "failure": "red",
}


class Alerts(_Strict):
    """Slack alerts of a model (see :mod:`retrain_lib.alerts`). The Slack webhook or token
    lives in the Airflow connection ``slack_conn_id``, never here."""

    slack_conn_id: str | None = Field(
        default=None,
        description="Airflow connection: type slackwebhook (webhook URL) or slack (bot token).",
    )
    channel: str | None = Field(
        default=None,
        description="Channel of a token (slack) connection; a webhook posts to its own channel.",
    )
    on: list[AlertKind] = Field(
        default_factory=lambda: list(ALERT_KINDS),
        description="Kinds sent (failure = a task failed after its retries); default: all.",
    )
    severity: dict[AlertKind, Severity] = Field(
        default_factory=dict,
        description="Severity (colour) per kind; unlisted kinds keep their default "
        "(promotion green; gate_failure, drift, approval_needed yellow; the others red).",
    )
    dedupe_minutes: float = Field(
        default=60,
        ge=0,
        description="The same alert (kind, model, failing items) is not sent again within this.",
    )
    retries: int = Field(default=3, ge=0, le=10, description="Extra attempts when Slack does not answer 200.")
    retry_seconds: float = Field(default=2.0, ge=0, le=300, description="First backoff; doubles per attempt.")

    def severity_of(self, kind: str) -> str:
        return self.severity.get(kind) or DEFAULT_SEVERITY.get(kind, "red")

    def wants(self, kind: str) -> bool:
        return kind in self.on


DTYPES = ("numeric", "string", "datetime")


def _share(description: str):
    return Field(default=None, gt=0, le=1, description=description)


class NotNull(_Strict):
    column: str
    mostly: float | None = _share("Share of rows that must be non-missing; default: validation.mostly.")


def _check_bounds(lo: float | None, hi: float | None) -> None:
    if lo is None and hi is None:
        raise ValueError("give min, max or both")
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"min ({lo:g}) is greater than max ({hi:g})")


class ValueRange(_Strict):
    min: float | None = None
    max: float | None = None
    mostly: float | None = _share("Share of non-missing values that must be in range; default: validation.mostly.")

    @model_validator(mode="after")
    def _bounds(self) -> ValueRange:
        _check_bounds(self.min, self.max)
        return self


class ValueSet(_Strict):
    values: list[str | int | float | bool] = Field(min_length=1)
    mostly: float | None = _share("Share of non-missing values that must be in the set; default: validation.mostly.")


class RowCount(_Strict):
    """Rows per day; a window of N days must hold between ``min * N`` and ``max * N`` rows."""

    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> RowCount:
        _check_bounds(self.min, self.max)
        return self


class Validation(_Strict):
    """Data expectations (Great Expectations) checked on the training window before a retrain
    (a failure stops it and quarantines the batch) and on the monitor's current window (a
    failure is recorded, the monitor carries on)."""

    enabled: bool = True
    mostly: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Default share of rows a column-value expectation needs (1.0 = every row).",
    )
    not_null: list[NotNull] = Field(
        default_factory=list,
        description="Columns without missing values: names, or {column, mostly}.",
    )
    between: dict[str, ValueRange] = Field(default_factory=dict, description="Column -> {min, max, mostly}.")
    in_set: dict[str, ValueSet] = Field(
        default_factory=dict,
        description="Column -> allowed values (a list, or {values, mostly}).",
    )
    unique: list[str] = Field(default_factory=list, description="Columns whose values must be unique.")
    row_count: RowCount | None = Field(default=None, description="Rows per day of the window: {min, max}.")
    exact_columns: bool = Field(
        default=False,
        description="The columns must be exactly the id, timestamp, features and target (no extra column).",
    )
    dtypes: dict[str, Literal["numeric", "string", "datetime"]] = Field(
        default_factory=dict,
        description="Column -> numeric, string or datetime.",
    )
    dtypes_from_features: bool = Field(
        default=True,
        description="Also expect numeric features to be numeric and the timestamp a datetime.",
    )
    freshness_hours: float | None = Field(
        default=None,
        gt=0,
        description="The latest timestamp must be within this many hours of the end of the as_of day.",
    )

    @field_validator("not_null", mode="before", json_schema_input_type=list[str | NotNull])
    @classmethod
    def _names_or_rules(cls, value):
        if not isinstance(value, list):
            return value
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append({"column": item})
            elif isinstance(item, dict):
                out.append(item)
            else:
                raise ValueError(
                    f"item {i} ({item!r}) must be a column name or a mapping such as {{column: income, mostly: 0.98}}"
                )
        return out

    @field_validator(
        "in_set", mode="before", json_schema_input_type=dict[str, list[str | int | float | bool] | ValueSet]
    )
    @classmethod
    def _list_or_rule(cls, value):
        if not isinstance(value, dict):
            return value
        return {k: {"values": v} if isinstance(v, list) else v for k, v in value.items()}


class Rollback(_Strict):
    """Automatic rollback of a recently promoted champion that does worse than the version it
    replaced. The monitor scores the champion and ``previous-champion`` on the same matured
    live labels; when the champion is worse by more than ``max_drop`` (relative, in the metric's
    direction) it moves ``champion`` back in one task. Both being bad (concept drift) is a
    retrain, not a rollback."""

    enabled: bool = True
    within_days: int = Field(default=14, ge=1, le=365, description="Only a champion promoted this recently.")
    max_drop: float = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Relative: roll back when the champion's live metric is worse than previous-champion's by more.",
    )
    min_labels: int = Field(default=200, ge=1, description="Matured labels needed to judge.")
    # Live serving, from the gateway's prediction log (the champion's requests of the last
    # ``serving_minutes``): labelled requests are scored again by previous-champion and
    # compared as above; error rate and latency have limits of their own.
    serving_minutes: float = Field(default=60, gt=0, description="Window of live traffic the monitor reads.")
    min_requests: int = Field(default=100, ge=1, description="Requests in that window needed to judge serving.")
    max_error_rate: float | None = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Roll back when more of the champion's requests fail (HTTP 500).",
    )
    max_p95_latency_ms: float | None = Field(
        default=None,
        gt=0,
        description="Roll back when the champion's p95 latency exceeds this (off by default).",
    )


class Approval(_Strict):
    """When a human must approve a promotion (Airflow's human-in-the-loop ``ApprovalOperator``).

    The retrain DAG waits for an answer in the Airflow UI (Required Actions) after the gates
    passed and the candidate was registered. No answer within ``timeout_hours`` counts as a
    rejection. Approver and answer go to the decision ledger and the version's tags."""

    required_when: list[Literal["always", "first_deployment", "new_features", "rows_changed", "narrow_margin"]] = Field(
        default_factory=lambda: ["first_deployment"],
        min_length=1,
        description="always | first_deployment (no champion yet) | new_features (the feature list differs from "
        "the champion's) | rows_changed (training rows changed by more than rows_changed_pct) | "
        "narrow_margin (a gate passed by less than margin).",
    )
    rows_changed_pct: float = Field(default=50.0, gt=0, description="rows_changed: change of training rows, %.")
    margin: float = Field(default=0.005, ge=0, description="narrow_margin: distance of observed to threshold.")
    timeout_hours: float = Field(default=24.0, gt=0, le=24 * 30, description="No answer by then = rejected.")
    approvers: list[str] = Field(
        default_factory=list,
        description="Airflow user ids allowed to answer; empty = anyone with access.",
    )


class ModelConfig(_Strict):
    """One model, as a data engineer describes it in ``configs/models/<name>.yaml``."""

    name: Annotated[str, Field(pattern=_NAME_RE, description="Lower-case identifier; DAG ids derive from it.")]
    owner: str
    description: str = ""
    task: Literal["classification", "regression"]
    data: DataSource
    features: Features
    windows: Windows = Field(default_factory=Windows)
    schedule: Schedule = Field(default_factory=Schedule)
    drift: DriftTrigger = Field(default_factory=DriftTrigger)
    performance: PerformanceTrigger | None = None
    training: Training
    gates: list[Gate] = Field(default_factory=list)
    deploy: Deploy = Field(default_factory=Deploy)
    alerts: Alerts = Field(default_factory=Alerts)
    approval: Approval | None = Field(
        default=None,
        description="Ask a human before promoting; omitted = gates alone decide.",
    )
    rollback: Rollback | None = Field(
        default=None,
        description="Roll a degraded new champion back to previous-champion; needs performance.",
    )
    validation: Validation | None = Field(
        default=None,
        description="Data expectations; omitted = only the built-in sanity checks.",
    )
    adaptation: Adaptation | None = Field(
        default=None,
        description="Change-aware retraining; omitted = the configured window and holdout only.",
    )
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> ModelConfig:
        if info.context and info.context.get("defer_cross_checks"):
            return self  # check_model_file reports them one by one, with their lines
        problems = self.cross_field_problems()
        if problems:
            raise ValueError("; ".join(f"{_dotted(loc)}: {reason}" for loc, reason, _ in problems))
        return self

    def cross_field_problems(self) -> list[tuple[tuple, str, str]]:
        """Problems that involve several fields: ``(location, reason, fix)`` each."""
        metrics = self.metrics
        listed = ", ".join(metrics)
        problems: list[tuple[tuple, str, str]] = []
        for i, gate in enumerate(self.gates):
            if gate.metric is not None and gate.metric not in metrics:
                problems.append(
                    (
                        ("gates", i, "metric"),
                        f"{gate.metric!r} is not a {self.task} metric{_did_you_mean(gate.metric, metrics)}",
                        f"use one of: {listed}",
                    )
                )
        if self.performance and self.performance.metric not in metrics:
            m = self.performance.metric
            problems.append(
                (
                    ("performance", "metric"),
                    f"{m!r} is not a {self.task} metric{_did_you_mean(m, metrics)}",
                    f"use one of: {listed}",
                )
            )
        features = set(self.features.all)
        declared = ", ".join(self.features.all)
        for name, spec in self.drift.features.items():
            if name not in features:
                problems.append(
                    (
                        ("drift", "features", name),
                        f"{name!r} is not a declared feature{_did_you_mean(name, features)}",
                        f"use one of: {declared}",
                    )
                )
            elif spec.method in ("ks", "wasserstein") and name in self.features.categorical:
                problems.append(
                    (
                        ("drift", "features", name, "method"),
                        f"{spec.method!r} needs a numeric feature and {name!r} is categorical",
                        "use psi, js, chi2, linf, unseen or missing_share for a categorical feature",
                    )
                )
            elif spec.method in ("chi2", "linf", "unseen") and name in self.features.numeric:
                problems.append(
                    (
                        ("drift", "features", name, "method"),
                        f"{spec.method!r} needs a categorical feature and {name!r} is numeric",
                        "use psi, ks, js, wasserstein or missing_share for a numeric feature",
                    )
                )
        for i, name in enumerate(self.drift.exclude):
            if name not in features:
                problems.append(
                    (
                        ("drift", "exclude", i),
                        f"{name!r} is not a declared feature{_did_you_mean(name, features)}",
                        f"use one of: {declared}",
                    )
                )
        for i, name in enumerate(self.features.segments):
            if name not in self.features.categorical:
                problems.append(
                    (
                        ("features", "segments", i),
                        f"segment {name!r} is not a categorical feature",
                        "list it under features.categorical too",
                    )
                )
        if self.task == "regression" and self.training.split.method == "stratified":
            problems.append(
                (("training", "split", "method"), "'stratified' needs a classification task", "use 'time' or 'random'")
            )
        if self.rollback is not None and self.rollback.enabled and self.performance is None:
            problems.append(
                (
                    ("rollback",),
                    "rollback compares live performance and this model has no performance section",
                    "add performance: {metric: ..., max_drop: ...} or remove rollback",
                )
            )
        if self.validation is not None:
            problems += self._validation_problems(self.validation)
        return problems

    @property
    def columns(self) -> list[str]:
        """Every column a model's data has: id, timestamp, features, target."""
        return [self.data.id_column, self.data.timestamp_column, *self.features.all, self.features.target]

    def expected_dtypes(self) -> dict[str, str]:
        """Column -> ``numeric``/``string``/``datetime`` the validation expects: derived from
        the features (when ``dtypes_from_features``), then the explicit ``dtypes``."""
        v = self.validation
        if v is None:
            return {}
        out: dict[str, str] = {}
        if v.dtypes_from_features:
            out[self.data.timestamp_column] = "datetime"
            out.update({name: "numeric" for name in self.features.numeric})
        out.update(v.dtypes)
        return out

    def _validation_problems(self, v: Validation) -> list[tuple[tuple, str, str]]:
        problems: list[tuple[tuple, str, str]] = []
        columns = self.columns
        declared = ", ".join(columns)

        def unknown(loc: tuple, name: str) -> bool:
            if name in columns:
                return False
            problems.append(
                (loc, f"{name!r} is not a declared column{_did_you_mean(name, columns)}", f"use one of: {declared}")
            )
            return True

        target, ts = self.features.target, self.data.timestamp_column
        late_labels = bool(self.data.labels_path or self.data.label_delay_days)
        for i, rule in enumerate(v.not_null):
            loc = ("validation", "not_null", i)
            if not unknown(loc, rule.column) and rule.column == target and late_labels:
                problems.append(
                    (
                        loc,
                        f"the target {target!r} is missing until its label arrives, so not_null on "
                        "it fails for every recent row",
                        "remove it; between or in_set on the target skip missing values",
                    )
                )
        for i, name in enumerate(v.unique):
            unknown(("validation", "unique", i), name)
        for name in v.in_set:
            unknown(("validation", "in_set", name), name)
        for name, kind in v.dtypes.items():
            loc = ("validation", "dtypes", name)
            if unknown(loc, name):
                continue
            if name in self.features.numeric and kind != "numeric":
                problems.append(
                    (
                        loc,
                        f"{name!r} is a numeric feature; dtype {kind!r} contradicts it",
                        "use numeric, or list the feature under features.categorical",
                    )
                )
            elif name == ts and kind != "datetime":
                problems.append(
                    (
                        loc,
                        f"the timestamp column {name!r} is parsed as a datetime when loaded",
                        "use datetime or remove the entry",
                    )
                )
        dtypes = self.expected_dtypes()
        for name in v.between:
            loc = ("validation", "between", name)
            if unknown(loc, name):
                continue
            kind = dtypes.get(name)
            if name == ts or kind == "datetime":
                problems.append(
                    (
                        loc,
                        f"between needs a numeric column and {name!r} holds datetimes",
                        "use freshness_hours to check the latest timestamp",
                    )
                )
            elif name in self.features.numeric:
                continue  # a contradicting dtype is reported above
            elif kind == "string" or (kind is None and name in (*self.features.categorical, self.data.id_column)):
                problems.append(
                    (
                        loc,
                        f"between needs a numeric column and {name!r} is {'a string' if kind else 'categorical'}",
                        "use in_set for a categorical column, or declare it under dtypes as numeric",
                    )
                )
        return problems

    # Convenience -------------------------------------------------------------------------
    @property
    def metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS

    @property
    def primary_metric(self) -> str:
        if self.performance:
            return self.performance.metric
        for gate in self.gates:
            if gate.metric is not None and gate.type in ("metric", "bootstrap"):
                return gate.metric
        return "roc_auc" if self.task == "classification" else "rmse"

    def dag_id(self, kind: str) -> str:
        return f"{self.name}__{kind}"

    def config_hash(self) -> str:
        """A stable hash of the validated config (key order and comments do not matter)."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class MlflowSettings(_Strict):
    tracking_uri: str | None = Field(
        default=None, description="Default: a SQLite file under state_dir. Env MLFLOW_TRACKING_URI overrides."
    )
    registry_uri: str | None = None
    experiment_prefix: str = "retrain/"


class S3Settings(_Strict):
    bucket: str | None = Field(default=None, description="Default bucket of s3 data sources.")
    endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO, ...); env AWS_ENDPOINT_URL also works.",
    )
    region: str | None = None


class SqlSettings(_Strict):
    url_env: str = Field(
        default="RETRAIN_SQL_URL",
        description="Environment variable holding the SQLAlchemy URL of sql data sources (never the URL itself).",
    )


class DvcSettings(_Strict):
    """The data registry (see :mod:`retrain_lib.lineage`): a git repository of ``.dvc`` files
    plus a DVC remote holding every training set a model was trained on."""

    repo: str | None = Field(
        default=None,
        description="Git repository of the registry. null = <state_dir>/data-registry; relative = to the project root.",
    )
    remote: str | None = Field(
        default=None,
        description=(
            "DVC remote: s3://bucket/prefix (endpoint and region from s3:, credentials from the environment "
            "only) or a local directory. null = <state_dir>/dvc-remote. Env RETRAIN_DVC_REMOTE overrides."
        ),
    )

    @field_validator("remote")
    @classmethod
    def _remote_url(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value
        if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,62}(/[^@\s]*)?", value):
            raise ValueError(
                f"{value!r} is not a DVC remote this platform supports: use s3://bucket/prefix "
                "(credentials come from the environment, never from the URL) or a local directory"
            )
        return value


class DatabaseSettings(_Strict):
    url_env: str = Field(
        default="RETRAIN_DB_URL",
        description=(
            "Environment variable holding the SQLAlchemy URL of the platform database (decision ledger), "
            "never the URL itself. Unset variable: an embedded SQLite file <state_dir>/platform.db. "
            "postgresql:// URLs use the psycopg 3 driver."
        ),
    )


class PlatformConfig(_Strict):
    """Platform-wide settings from ``configs/platform.yaml``. Paths are relative to the
    directory holding ``configs/``; environment variables override them."""

    state_dir: str = Field(default=".retrain", description="Env RETRAIN_HOME overrides.")
    data_root: str = Field(default=".retrain/data", description="Env RETRAIN_DATA_ROOT overrides.")
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    allowed_estimator_prefixes: list[str] = Field(default_factory=lambda: ["sklearn."])
    alerts: Alerts = Field(default_factory=Alerts)
    s3: S3Settings = Field(default_factory=S3Settings)
    sql: SqlSettings = Field(default_factory=SqlSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    dvc: DvcSettings = Field(default_factory=DvcSettings)
    airflow_base_url: str = "http://localhost:8080"
    mlflow_ui_url: str = "http://localhost:5000"


# -----------------------------------------------------------------------------------------
# Problems and their messages
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigProblem:
    """One problem of one config file."""

    file: str
    line: int | None
    column: int | None
    field: str
    reason: str
    fix: str = ""

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        text = f"{where}: {self.field or '<file>'}: {self.reason}"
        if self.fix:
            text += f"\n    fix: {self.fix}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "reason": self.reason,
            "fix": self.fix,
        }


def _did_you_mean(word: str, options) -> str:
    match = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class _LineIndex:
    """Maps a path in a YAML document (tuple of keys/indices) to the line of its key."""

    def __init__(self, text: str | None = None, *, root=None):
        self.marks: dict[tuple, tuple[int, int]] = {}
        if root is None and text is not None:
            try:
                root = yaml.compose(text, Loader=yaml.SafeLoader)
            except yaml.YAMLError:
                root = None
        if root is not None:
            self._walk(root, ())

    def _walk(self, node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*path, key.value)
                self.marks[sub] = (key.start_mark.line + 1, key.start_mark.column + 1)
                self._walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                sub = (*path, i)
                self.marks[sub] = (item.start_mark.line + 1, item.start_mark.column + 1)
                self._walk(item, sub)

    def find(self, loc: tuple) -> tuple[int | None, int | None]:
        loc = tuple(loc)
        while loc:
            if loc in self.marks:
                return self.marks[loc]
            loc = loc[:-1]
        return (1, 1) if self.marks else (None, None)


def _unwrap(annotation) -> list:
    """The BaseModel / dict / list types an annotation can hold."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out = []
        for arg in typing.get_args(annotation):
            out += _unwrap(arg)
        return out
    return [annotation]


def _model_at(model: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``loc``."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            if typing.get_origin(current) in (list, dict):
                current = typing.get_args(current)[-1]
                for candidate in _unwrap(current):
                    current = candidate
                    break
                continue
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        candidates = [c for c in _unwrap(field.annotation) if c is not type(None)]
        current = candidates[0] if candidates else None
        if typing.get_origin(current) in (list, dict):
            continue
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


_FIXES = {
    "missing": "add the field",
    "extra_forbidden": "remove it or fix its spelling",
    "literal_error": "use one of the allowed values",
    "float_parsing": "write a number",
    "int_parsing": "write a whole number",
    "int_from_float": "write a whole number",
    "bool_parsing": "write true or false",
    "string_type": "write a string (quote it)",
    "list_type": "write a YAML list",
    "dict_type": "write a YAML mapping",
    "model_type": "write a YAML mapping",
    "model_attributes_type": "write a YAML mapping",
    "string_pattern_mismatch": "use lower-case letters, digits and '_', starting with a letter",
}


def _problems_from_validation(
    exc: ValidationError, file: str, index: _LineIndex, model: type[BaseModel]
) -> list[ConfigProblem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        line, col = index.find(loc)
        reason = err["msg"]
        fix = _FIXES.get(kind, "")
        if kind == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            options = list(parent.model_fields) if parent else []
            reason = f"unknown field {loc[-1]!r}{_did_you_mean(loc[-1], options)}"
            if options:
                fix = f"remove it or use one of: {', '.join(options)}"
        elif kind == "missing":
            reason = "required field is missing"
            fix = f"add '{loc[-1]}:' here" if loc else fix
            line, col = index.find(loc[:-1])
        elif kind == "literal_error":
            got = err.get("input")
            expected = err.get("ctx", {}).get("expected", "")
            allowed = re.findall(r"'([^']*)'", expected)
            reason = f"{got!r} is not allowed{_did_you_mean(got, allowed)}"
            fix = f"use one of {expected}"
        elif "input" in err and kind not in ("value_error", "assertion_error"):
            got = err["input"]
            if not isinstance(got, (dict, list)):
                reason = f"{reason} (got {got!r})"
        if reason.startswith("Value error, "):
            reason = reason[len("Value error, ") :]
        problems.append(ConfigProblem(file, line, col, _dotted(loc), reason, fix))
    return problems


class _SafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 booleans: only true/false are booleans, so the key
    ``on`` (``alerts.on``) and values such as ``no`` stay strings instead of becoming bools."""


_LOADERS = [_SafeLoader]
if getattr(yaml, "CSafeLoader", None) is not None:  # libyaml: the same documents, ~10x faster to parse

    class _CSafeLoader(yaml.CSafeLoader):
        """:class:`_SafeLoader` on libyaml's parser (same resolvers: YAML 1.2 booleans)."""

    _LOADERS.insert(0, _CSafeLoader)

for _loader in _LOADERS:
    _loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    _loader.add_implicit_resolver(
        "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
    )


def _expanded_size(root) -> int | None:
    """Nodes of a composed YAML document, an aliased node counted at every use (linear time);
    None when an alias refers to a node that contains it."""
    sizes: dict[int, int | None] = {}

    def size(node) -> int | None:
        if id(node) in sizes:
            return sizes[id(node)]  # None while the node is still being counted: a cycle
        sizes[id(node)] = None
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        total = 1
        for child in children:
            sub = size(child)
            if sub is None:
                return None
            total += sub
        sizes[id(node)] = total
        return total

    return 0 if root is None else size(root)


def _compose(text: str):
    """``(loader, root node)`` of a YAML document. A document the fast (libyaml) parser rejects
    is read again by the pure-Python one, so that the problem reported (wording, line, column)
    does not depend on which parser is installed."""
    for i, cls in enumerate(_LOADERS):
        loader = cls(text)
        try:
            return loader, loader.get_single_node()
        except (yaml.YAMLError, RecursionError):
            loader.dispose()
            if i == len(_LOADERS) - 1:
                raise
    raise AssertionError("unreachable")


def _read_yaml(path: Path) -> tuple[Any, _LineIndex | None, list[ConfigProblem]]:
    """Read one YAML file safely; problems instead of exceptions."""
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        return (
            None,
            None,
            [ConfigProblem(name, None, None, "", f"cannot read the file: {exc.strerror}", "check the path")],
        )
    if size > MAX_CONFIG_BYTES:
        return (
            None,
            None,
            [
                ConfigProblem(
                    name,
                    None,
                    None,
                    "",
                    f"file is {size} bytes, more than the {MAX_CONFIG_BYTES} allowed",
                    "a model config is a short YAML file; check you pointed at the right file",
                )
            ],
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            None,
            None,
            [
                ConfigProblem(
                    name, None, None, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})", "save the file as UTF-8"
                )
            ],
        )
    loader = None
    try:
        loader, root = _compose(text)
        nodes = _expanded_size(root)
        if nodes is None or nodes > MAX_CONFIG_NODES:
            reason = (
                "a YAML alias refers to a node that contains it"
                if nodes is None
                else f"has {nodes} YAML values once aliases are expanded, more than the {MAX_CONFIG_NODES} allowed"
            )
            return (
                None,
                None,
                [
                    ConfigProblem(
                        name, None, None, "", reason, "write the values out instead of repeating '*alias' references"
                    )
                ],
            )
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, None, [ConfigProblem(name, line, col, "", f"invalid YAML: {problem}", "fix the YAML syntax")]
    except RecursionError:
        return None, None, [ConfigProblem(name, None, None, "", "YAML nesting is too deep", "flatten the file")]
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        return (
            None,
            None,
            [
                ConfigProblem(
                    name,
                    1,
                    1,
                    "",
                    f"top level must be a mapping, got {type(data).__name__}",
                    "write 'key: value' pairs at the top level",
                )
            ],
        )
    return data, _LineIndex(root=root) if root is not None else _LineIndex(text), []


def _validate(path: Path, model: type[BaseModel]):
    data, index, problems = _read_yaml(path)
    if problems:
        return None, None, problems
    try:
        return model.model_validate(data, context={"defer_cross_checks": True}), index, []
    except ValidationError as exc:
        return None, index, _problems_from_validation(exc, str(path), index, model)


# -----------------------------------------------------------------------------------------
# Public API
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedConfig:
    """A validated model config and the file it came from."""

    path: Path
    config: ModelConfig


@dataclass
class ConfigSet:
    """All model configs of a directory: the valid ones and the problems of the others."""

    models: dict[str, LoadedConfig]
    problems: list[ConfigProblem]
    platform: PlatformConfig

    @property
    def ok(self) -> bool:
        return not self.problems


def load_platform_config(path: str | os.PathLike | None) -> PlatformConfig:
    """Load ``platform.yaml``; a missing file means the defaults."""
    if path is None or not Path(path).exists():
        return PlatformConfig()
    config, _, problems = _validate(Path(path), PlatformConfig)
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems), problems)
    return config


def _file_problems(path: Path, data, platform: PlatformConfig) -> list[tuple[tuple, str, str]]:
    """Problems of a model file's raw values (``(location, reason, fix)`` each), found even
    when the schema rejects other fields: ``name`` against the file name, and
    ``training.estimator`` / ``training.params`` looked up in the estimator's source
    (:func:`retrain_lib.estimators.check_estimator`: a misspelt class or param gets a "did you
    mean"; nothing is imported, so scikit-learn stays out of DAG parsing)."""
    from retrain_lib.estimators import check_estimator

    data = data if isinstance(data, dict) else {}
    found: list[tuple[tuple, str, str]] = []
    name, training = data.get("name"), data.get("training")
    if isinstance(name, str) and name != path.stem:
        found.append(
            (
                ("name",),
                f"model name {name!r} does not match the file name {path.name!r}",
                f"rename the file to {name}.yaml or set name: {path.stem}",
            )
        )
    if isinstance(training, dict) and isinstance(training.get("estimator"), str):
        found += check_estimator(
            training["estimator"],
            training.get("params"),
            platform.allowed_estimator_prefixes,
            recency=training.get("recency") is not None,
            warm_start=training.get("warm_start") is True,
        )
    return found


def check_model_file(path: str | os.PathLike, platform: PlatformConfig | None = None):
    """Validate one model file. Returns ``(ModelConfig | None, problems)``.

    Every problem in one pass: when the schema rejects the file, its raw values are still
    checked for the name/file-name match and the estimator (:func:`_file_problems`).
    """
    path = Path(path)
    platform = platform or PlatformConfig()
    config, index, problems = _validate(path, ModelConfig)
    if config is None:
        if index is None:  # not YAML, not a mapping, too big: nothing more to read
            return None, problems
        data, _, _ = _read_yaml(path)
        reported = [p.field for p in problems]
        found = [
            (loc, reason, fix)
            for loc, reason, fix in _file_problems(path, data, platform)
            if not any(_dotted(loc) == f or _dotted(loc).startswith(f + ".") for f in reported)
        ]
    else:
        found = [
            *config.cross_field_problems(),
            *_file_problems(path, config.model_dump(include={"name", "training"}), platform),
        ]
    for loc, reason, fix in found:
        line, col = index.find(loc)
        problems.append(ConfigProblem(str(path), line, col, _dotted(loc), reason, fix))
    return (None if problems else config), problems


def _expand(paths) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            files.append(p)
    return files


def load_model_configs(paths, platform: PlatformConfig | None = None) -> ConfigSet:
    """Validate every model file under ``paths`` (files or directories).

    Never raises for a bad file: its problems are collected and the good files are kept,
    so one broken config cannot hide the others.
    """
    platform = platform or PlatformConfig()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    models: dict[str, LoadedConfig] = {}
    problems: list[ConfigProblem] = []
    for file in _expand(paths):
        if not file.exists():
            problems.append(ConfigProblem(str(file), None, None, "", "no such file or directory", "check the path"))
            continue
        config, file_problems = check_model_file(file, platform)
        problems += file_problems
        if config is None:
            continue
        if config.name in models:
            problems.append(
                ConfigProblem(
                    str(file),
                    None,
                    None,
                    "name",
                    f"model name {config.name!r} is already used by {models[config.name].path}",
                    "give every model a unique name",
                )
            )
            continue
        models[config.name] = LoadedConfig(file, config)
    return ConfigSet(models, problems, platform)


def load_model_config(path: str | os.PathLike, platform: PlatformConfig | None = None) -> ModelConfig:
    """Load one model config or raise :class:`ConfigError` listing all its problems."""
    config, problems = check_model_file(path, platform)
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems), problems)
    return config


def json_schema() -> dict[str, Any]:
    """JSON Schema of a model config file (for editors and CI)."""
    schema = ModelConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Retrain model config"
    return schema


def platform_json_schema() -> dict[str, Any]:
    schema = PlatformConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
