"""The whole retrain path in one call (:func:`retrain_model`), step by step as the retrain DAG
runs it: snapshot, training, evaluation, gates, registration, approval and deployment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from retrain_lib.core.settings import Settings
from retrain_lib.core.values import as_day
from retrain_lib.pipeline.approval_steps import approval_request
from retrain_lib.pipeline.evaluation import check_gates, evaluate_candidate
from retrain_lib.pipeline.promotion import deploy_candidate, reject_candidate
from retrain_lib.pipeline.records import (
    DeployOutcome,
    Evaluation,
    GateReport,
    Registered,
    Rejection,
    Snapshot,
    TrainedRun,
)
from retrain_lib.pipeline.registration import register_candidate
from retrain_lib.pipeline.snapshot import snapshot_data
from retrain_lib.pipeline.training_run import train_candidate


@dataclass(frozen=True)
class RetrainOutcome:
    """How a retrain ended (``deployed``, ``rejected``, ``no_gain``, ``invalid_data``,
    ``approval_required``) and the records of the steps that tell why: the snapshot of invalid
    data, the rejection of a candidate that failed its gates, every step's record of a deployed
    or waiting candidate, the deployment that rejected it against a champion that moved."""

    outcome: str
    snapshot: Snapshot | None = None
    trained: TrainedRun | None = None
    evaluation: Evaluation | None = None
    gates: GateReport | None = None
    registered: Registered | None = None
    deployed: DeployOutcome | None = None
    rejection: Rejection | None = None
    reasons: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[str, ...]:
        """Why the candidate was rejected (its failed gates), if it was."""
        if self.rejection is not None:
            return self.rejection.failed
        return self.deployed.failed if self.deployed is not None else ()

    def to_dict(self) -> dict[str, Any]:
        """What ``retrain retrain --format json`` prints: the outcome with each record's
        ``to_xcom()``; a rejection by the gates is :class:`Rejection`'s own dict, one on
        re-evaluation names the failed gates, the training run and the deployment."""
        if self.rejection is not None:
            return self.rejection.to_xcom()
        if self.deployed is not None and self.deployed.rejected:
            return {
                "outcome": self.outcome,
                "failed": list(self.failed),
                "run_id": self.trained.run_id if self.trained else None,
                "deployed": self.deployed.to_xcom(),
            }
        out: dict[str, Any] = {"outcome": self.outcome}
        if self.reasons:
            out["reasons"] = list(self.reasons)
        for name in ("snapshot", "trained", "evaluation", "gates", "registered", "deployed"):
            record = getattr(self, name)
            if record is not None:
                out[name] = record.to_xcom()
        return out


def retrain_model(
    model: str, as_of, *, settings: Settings | None = None, actor: str = "cli", reason: str = "manual"
) -> RetrainOutcome:
    """The whole retrain path in one call (what the retrain DAG does task by task)."""
    as_of = as_day(as_of).isoformat()
    snap = snapshot_data(model, as_of, settings=settings, actor=actor)
    if not snap.valid:
        return RetrainOutcome("invalid_data", snapshot=snap)
    trained = train_candidate(model, snap, settings=settings, run_key=actor, actor=actor)
    evaluation = evaluate_candidate(model, snap, trained, settings=settings)
    gates = check_gates(model, evaluation, trained, settings=settings, as_of=as_of, actor=actor, snap=snap)
    if not gates.passed:
        rejection = reject_candidate(model, trained, gates, settings=settings, as_of=as_of, actor=actor)
        return RetrainOutcome(rejection.outcome, rejection=rejection)
    registered = register_candidate(model, snap, trained, evaluation, gates, settings=settings)
    request = approval_request(
        model, snap, trained, evaluation, gates, registered, settings=settings, as_of=as_of, actor=actor
    )
    steps: dict[str, Any] = {
        "snapshot": snap,
        "trained": trained,
        "evaluation": evaluation,
        "gates": gates,
        "registered": registered,
    }
    if request["required"]:
        # Outside Airflow nobody can be asked: the version stays registered, not deployed.
        return RetrainOutcome("approval_required", reasons=tuple(request["reasons"]), **steps)
    deployed = deploy_candidate(
        model,
        registered,
        evaluation,
        settings=settings,
        as_of=as_of,
        actor=actor,
        reason=reason,
        snap=snap,
        trained=trained,
    )
    if deployed.rejected:
        return RetrainOutcome("rejected", trained=trained, deployed=deployed)
    return RetrainOutcome("deployed", deployed=deployed, **steps)
