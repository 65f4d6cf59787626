"""The sections of a model config that make the monitor request a retrain: data drift
(``drift:``) and the champion's live performance (``performance:``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from retrain_lib.core.config_problems import did_you_mean
from retrain_lib.core.config_sections import StrictModel

DRIFT_METHODS = ("psi", "ks", "js", "chi2", "wasserstein")


def _check_threshold(value):
    """A drift threshold: a positive number, ``auto`` (calibrated, see retrain_lib.stats.calibration) or null."""
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"threshold must be a positive number or 'auto'. Got {value!r} instead.")
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            hint = did_you_mean(value.strip().lower(), ["auto"]) or "."
            raise ValueError(f"threshold must be a positive number or 'auto'. Got {value!r} instead{hint}") from None
    else:
        number = float(value)
    if not number > 0:
        raise ValueError(f"threshold must be a positive number or 'auto'. Got {value!r} instead.")
    return value


_Threshold = Annotated[float, Field(gt=0)] | Literal["auto"] | None


class FeatureDrift(StrictModel):
    method: Literal["psi", "ks", "js", "chi2", "wasserstein", "linf", "missing_share", "unseen"] | None = None
    threshold: _Threshold = Field(
        default=None,
        description="Threshold of this feature's method; 'auto' = calibrated to drift.false_alarm_rate.",
    )

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value):
        return _check_threshold(value)


class DriftPersistence(StrictModel):
    """Alarm only when at least ``k`` of the last ``n`` monitor checks drifted."""

    k: int = Field(ge=1, le=100)
    n: int = Field(ge=1, le=100)

    @model_validator(mode="after")
    def _k_le_n(self) -> DriftPersistence:
        if self.k > self.n:
            raise ValueError(f"persistence k ({self.k}) must not exceed n ({self.n})")
        return self


class DriftTrigger(StrictModel):
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
    engine: Literal["exact", "profile"] = Field(
        default="exact",
        description=(
            "exact: both windows in memory, every method exact. profile: the reference profile stored "
            "with the champion at training (bucket counts on its quantile edges, KLL sketches) against "
            "the current window's profile, merged from per-partition profiles computed once each "
            "(mapped tasks in the monitor DAG); binned methods equal the exact path, KS and "
            "Wasserstein stay within the sketch's stated rank error. Needs quantile buckets and "
            "numeric thresholds (no 'auto')."
        ),
    )
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
    def _profile_engine(self) -> DriftTrigger:
        if self.engine == "profile" and self.uses_auto:
            raise ValueError(
                "engine: profile compares stored profiles and cannot calibrate 'auto' thresholds "
                "(calibration resamples the raw windows); give numeric thresholds or use engine: exact"
            )
        return self

    @model_validator(mode="after")
    def _auto_options(self) -> DriftTrigger:
        if self.multiple_testing is not None and not self.uses_auto:
            raise ValueError(
                "multiple_testing only applies to calibrated thresholds; set threshold: auto "
                "(for drift or for a feature) or remove multiple_testing"
            )
        return self


class PerformanceTrigger(StrictModel):
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
