"""The whole retrain path in one call (:func:`retrain_model`), step by step as the retrain DAG
runs it: snapshot, training, evaluation, gates, registration, approval and deployment."""

from __future__ import annotations

from typing import Any

from retrain_lib.core.settings import Settings
from retrain_lib.core.values import as_day
from retrain_lib.pipeline.approval_steps import approval_request
from retrain_lib.pipeline.evaluation import check_gates, evaluate_candidate
from retrain_lib.pipeline.promotion import deploy_candidate, reject_candidate
from retrain_lib.pipeline.registration import register_candidate
from retrain_lib.pipeline.snapshot import snapshot_data
from retrain_lib.pipeline.training_run import train_candidate


def retrain_model(
    model: str, as_of, *, settings: Settings | None = None, actor: str = "cli", reason: str = "manual"
) -> dict[str, Any]:
    """The whole retrain path in one call (what the retrain DAG does task by task)."""
    as_of = as_day(as_of).isoformat()
    snap = snapshot_data(model, as_of, settings=settings, actor=actor)
    if not snap["valid"]:
        return {"outcome": "invalid_data", "snapshot": snap}
    trained = train_candidate(model, snap, settings=settings, run_key=actor, actor=actor)
    evaluation = evaluate_candidate(model, snap, trained, settings=settings)
    gates = check_gates(model, evaluation, trained, settings=settings, as_of=as_of, actor=actor, snap=snap)
    if not gates["passed"]:
        return reject_candidate(model, trained, gates, settings=settings, as_of=as_of, actor=actor)
    registered = register_candidate(model, snap, trained, evaluation, gates, settings=settings)
    request = approval_request(
        model, snap, trained, evaluation, gates, registered, settings=settings, as_of=as_of, actor=actor
    )
    if request["required"]:
        # Outside Airflow nobody can be asked: the version stays registered, not deployed.
        return {
            "outcome": "approval_required",
            "reasons": request["reasons"],
            "snapshot": snap,
            "trained": trained,
            "evaluation": evaluation,
            "gates": gates,
            "registered": registered,
        }
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
    if deployed.get("rejected"):
        return {"outcome": "rejected", "failed": deployed["failed"], "run_id": trained["run_id"], "deployed": deployed}
    return {
        "outcome": "deployed",
        "snapshot": snap,
        "trained": trained,
        "evaluation": evaluation,
        "gates": gates,
        "registered": registered,
        "deployed": deployed,
    }
