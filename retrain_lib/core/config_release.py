"""The sections of a model config about releasing a candidate that passed its gates: human
approval, the deploy mode (direct, shadow, canary) and automatic rollback.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from retrain_lib.core.config_sections import StrictModel

ApprovalWhen = Literal["always", "first_deployment", "new_features", "rows_changed", "narrow_margin"]


def _first_deployment() -> list[ApprovalWhen]:
    return ["first_deployment"]


class Approval(StrictModel):
    """When a human must approve a promotion (Airflow's human-in-the-loop ``ApprovalOperator``).

    The retrain DAG waits for an answer in the Airflow UI (Required Actions) after the gates
    passed and the candidate was registered. No answer within ``timeout_hours`` counts as a
    rejection. Approver and answer go to the decision ledger and the version's tags."""

    required_when: list[ApprovalWhen] = Field(
        default_factory=_first_deployment,
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


class Deploy(StrictModel):
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


class Rollback(StrictModel):
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


class Guard(StrictModel):
    """The post-deploy guard: every new champion (a direct deploy, the end of a rollout, a
    promotion by hand, a rollback) is watched live for ``minutes`` by the ``<model>__guard``
    DAG, whose deferrable check reads the prediction log every ``interval_s`` on the
    triggerer. It rolls back to ``previous-champion`` when the champion's error rate is shown
    above ``max_error_rate`` (always-valid test), its p95 latency exceeds ``max_p95_ms``, or
    its per-request loss on labelled requests is shown worse than ``previous-champion``'s on
    the same requests (paired, always-valid test at ``alpha``), or its answers moved far from
    what ``previous-champion`` answers to the same requests (``max_output_psi``) while the
    labels do not show it no worse; with no ``previous-champion``
    (after a rollback) it alerts instead. Off by default unless the model has ``rollback``."""

    enabled: bool | None = Field(
        default=None,
        description="Watch every new champion; omitted = on when the model has a rollback section.",
    )
    minutes: float = Field(default=120, gt=0, le=7 * 24 * 60, description="How long a new champion is watched.")
    interval_s: float = Field(default=30, gt=0, le=3600, description="Seconds between two reads of the log.")
    max_error_rate: float | None = Field(
        default=0.05,
        gt=0,
        lt=1,
        description="Roll back when the champion's error rate is shown above this (null: no limit).",
    )
    max_p95_ms: float | None = Field(
        default=None,
        gt=0,
        description="Roll back when the p95 latency of its answered requests exceeds this (null: no limit).",
    )
    min_requests: int = Field(default=50, ge=10, description="Requests before error rate and latency are judged.")
    min_labels: int = Field(
        default=100,
        ge=10,
        description="Labelled requests before the paired loss test may roll back.",
    )
    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="False-rollback rate of each always-valid test, however often it looks.",
    )
    margin: float = Field(
        default=0.0,
        ge=0,
        description="Per-request loss the champion may exceed previous-champion's by (paired test).",
    )
    max_output_psi: float | None = Field(
        default=0.25,
        gt=0,
        description=(
            "PSI of the champion's answers against previous-champion's scores of the same requests above which "
            "the champion is rolled back unless the labels show it no worse (null: no limit)."
        ),
    )

    @model_validator(mode="after")
    def _interval_within_minutes(self) -> Guard:
        if self.interval_s > self.minutes * 60:
            raise ValueError(
                f"interval_s ({self.interval_s:g}) is longer than the guard itself ({self.minutes:g} minutes = "
                f"{self.minutes * 60:g} s); lower interval_s or raise minutes"
            )
        return self
