"""Moving the model aliases, each move atomic with its ledger entry: deploying a registered
candidate (:func:`deploy_candidate`, compare-and-swap on the champion it was evaluated
against), a promotion by hand (:func:`promote_version`), a rollback to previous-champion
(:func:`rollback_model`), and recording a candidate that is not deployed
(:func:`reject_candidate`)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from retrain_lib.core.errors import ConfigError, RegistryError, StaleChampionError
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import str_or_none
from retrain_lib.pipeline.adaptation_steps import NO_GAIN, REJECTED, record_no_gain_acceptance
from retrain_lib.pipeline.approval_steps import record_approval
from retrain_lib.pipeline.evaluation import check_gates, evaluate_candidate
from retrain_lib.pipeline.records import (
    DeployOutcome,
    Evaluation,
    GateReport,
    Registered,
    Rejection,
    Snapshot,
    TrainedRun,
)
from retrain_lib.pipeline.servability import served_version
from retrain_lib.serving.routing import set_rollout_state
from retrain_lib.stats.champion_gain import Gain
from retrain_lib.store import registry
from retrain_lib.store.lifecycle_tags import check_not_retired
from retrain_lib.store.model_context import ModelContext

log = logging.getLogger(__name__)


def deploy_candidate(
    model: str,
    registered: Registered,
    evaluation: Evaluation,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    reason: str = "",
    snap: Snapshot | None = None,
    trained: TrainedRun | None = None,
    approval: dict | None = None,
    max_reevaluations: int = 3,
    mode: str | None = None,
) -> DeployOutcome:
    """Deploy per config (or per ``mode``, which overrides ``deploy.mode`` for this run):
    ``direct`` promotes to champion, ``shadow``/``canary`` make the version the
    ``challenger`` for the rollout DAG.

    Promotion is compare-and-swap under the ledger's lock: ``champion`` moves only if it
    still is the version the candidate was evaluated against, and the ledger entry is written
    in the same critical section (if it cannot be written, the aliases are put back). When the
    champion moved meanwhile, the candidate is evaluated again against the new champion (with
    ``snap`` and ``trained``) and promoted only if it still passes every gate; otherwise it is
    rejected with that reason.
    """
    ctx = ModelContext(model, settings)
    mode = mode or ctx.cfg.deploy.mode
    if mode not in ("direct", "shadow", "canary"):
        raise ConfigError(f"deploy mode {mode!r} of {model} is not one of direct, shadow, canary")
    if mode != "direct" and evaluation.champion_version is None and ctx.champion() is None:
        mode = "direct"  # the first model has nothing to be compared with live: it is promoted
    version = registered.version
    if approval is not None:
        record_approval(ctx, version, approval, as_of=as_of, actor=actor)
        if approval.get("answer") != "Approve":
            raise RegistryError(f"version {version} of {model} was not approved ({approval}); not deploying it")
    reevaluated: list[dict] = []
    for _attempt in range(max_reevaluations + 1):
        try:
            moves = _move_aliases(
                ctx,
                mode,
                version,
                evaluation,
                as_of=as_of,
                actor=actor,
                reason=reason,
                registered=registered,
                approval=approval,
                reevaluated=reevaluated,
            )
            break
        except StaleChampionError as exc:
            if snap is None or trained is None:
                raise
            log.warning("%s; evaluating version %s again against champion %s", exc, version, exc.current)
            evaluation = evaluate_candidate(model, snap, trained, settings=ctx.settings)
            gates = check_gates(model, evaluation, trained, settings=ctx.settings, as_of=as_of, actor=actor, snap=snap)
            reevaluated.append({"champion_was": exc.expected, "champion_now": exc.current, "passed": gates.passed})
            if not gates.passed:
                return _rejected_after_move(
                    ctx, model, mode, version, trained, gates, exc, reevaluated, as_of=as_of, actor=actor
                )
    else:
        raise RegistryError(
            f"champion of {model} moved {max_reevaluations + 1} times while version {version} was "
            "being promoted; stopping. Re-run the retrain when the registry is quiet"
        )
    return DeployOutcome(
        version=version,
        mode=mode,
        moves=tuple(moves),
        reevaluated=tuple(reevaluated),
        champion=str_or_none(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION)),
    )


def _rejected_after_move(
    ctx: ModelContext,
    model: str,
    mode: str,
    version: str,
    trained: TrainedRun,
    gates: GateReport,
    exc: StaleChampionError,
    reevaluated: list,
    *,
    as_of,
    actor,
) -> DeployOutcome:
    """The candidate failed its gates against the champion that replaced the one it was
    evaluated against: rejected, with that reason."""
    rejected = reject_candidate(
        model,
        trained,
        gates,
        settings=ctx.settings,
        as_of=as_of,
        actor=actor,
        why=f"champion moved from version {exc.expected} to {exc.current} during the evaluation; "
        "against the new champion the candidate fails its gates",
    )
    return DeployOutcome(
        version=version,
        mode=mode,
        moves=(),
        reevaluated=tuple(reevaluated),
        champion=str_or_none(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION)),
        rejected=True,
        failed=rejected.failed,
    )


def _move_aliases(
    ctx: ModelContext,
    mode: str,
    version: str,
    evaluation: Evaluation,
    *,
    as_of,
    actor,
    reason,
    registered: Registered,
    approval,
    reevaluated,
) -> list:
    """One compare-and-swap attempt, atomic with its ledger entry."""
    with ctx.ledger().transaction() as tx:
        before = registry.aliases(ctx.client, ctx.name)
        if mode == "direct":
            moves = registry.promote_champion(
                ctx.client, ctx.name, version, expected_champion=evaluation.champion_version
            )
            event = "promote"
        else:
            # shadow first: a newer challenger never inherits the canary share of a rollout still
            # running for an older one (that rollout sees the alias moved and stops)
            set_rollout_state(ctx.client, ctx.name, "shadow", 0.0, ctx.cfg.deploy.sticky_key or "")
            moves = [registry.set_challenger(ctx.client, ctx.name, version)]
            event = "challenger"
        if not moves:
            return moves
        if mode == "direct" and as_of:
            ctx.client.set_model_version_tag(ctx.name, str(version), "promoted_as_of", str(as_of))
        alias = registry.CHAMPION if mode == "direct" else registry.CHALLENGER
        details = {
            "mode": mode,
            "version": version,
            "moves": [m.to_dict() for m in moves],
            "run_id": registered.run_id,
            "reason": reason,
            "metrics": evaluation.candidate,
            "champion_metrics": evaluation.champion,
            "approval": approval,
            "reevaluated": reevaluated,
        }
        try:
            tx.append(
                ctx.name,
                event,
                as_of=as_of,
                actor=actor,
                before=before.get(alias),
                after=str(version),
                reason=reason,
                details=details,
            )
        except Exception:
            registry.restore_aliases(ctx.client, ctx.name, before)
            raise
    return moves


def rollback_model(
    model: str,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    reason: str = "",
    expected_champion: str | None = None,
) -> dict[str, Any]:
    """Move ``champion`` back to ``previous-champion`` in one step, atomic with its ledger entry.

    ``expected_champion`` is the version found degraded (default: the current champion); if the
    champion moved since, nothing happens and the reason says so (the degraded model is no longer
    serving)."""
    ctx = ModelContext(model, settings)
    expected = (
        expected_champion
        if expected_champion is not None
        else str_or_none(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION))
    )
    with ctx.ledger().transaction() as tx:
        before = registry.aliases(ctx.client, ctx.name)
        try:
            moves = registry.rollback_champion(ctx.client, ctx.name, expected_champion=expected)
        except StaleChampionError as exc:
            log.warning("rollback of %s not needed any more: %s", model, exc)
            return {"rolled_back": False, "reason": str(exc), "champion": exc.current}
        try:
            tx.append(
                ctx.name,
                "rollback",
                as_of=as_of,
                actor=actor,
                before=before.get(registry.CHAMPION),
                after=before.get(registry.PREVIOUS),
                reason=reason or "champion degraded",
                details={"moves": [m.to_dict() for m in moves], "reason": reason or "champion degraded"},
            )
        except Exception:
            registry.restore_aliases(ctx.client, ctx.name, before)
            raise
    log.warning(
        "rolled %s back from version %s to %s: %s",
        model,
        before.get(registry.CHAMPION),
        before.get(registry.PREVIOUS),
        reason,
    )
    return {
        "rolled_back": True,
        "from": before.get(registry.CHAMPION),
        "to": before.get(registry.PREVIOUS),
        "moves": [m.to_dict() for m in moves],
        "reason": reason,
    }


def promote_version(
    model: str,
    version: str,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    reason: str,
    expected_champion: str | None = None,
    check_serving: bool = True,
) -> dict[str, Any]:
    """Make ``version`` the champion by hand, without gates (an emergency fix, a known-good
    version back). Compare-and-swap on ``expected_champion`` (default: the champion now),
    atomic with its ledger entry; the version is tagged ``promoted_by_hand``. Automatic
    rollback watches it like any new champion.

    First (unless ``check_serving`` is off) a fresh gateway process loads the version from
    the registry and answers probe requests as this process scores them
    (:func:`~retrain_lib.pipeline.servability.served_version`); when it cannot, nothing moves,
    the refusal is in the ledger (``promote_refused``) and the result says why."""
    if not reason.strip():
        raise ConfigError("a promotion by hand needs a reason (kept in the ledger); pass --reason")
    ctx = ModelContext(model, settings)
    version = str(version)
    ctx.client.get_model_version(ctx.name, version)  # raises when it does not exist
    check_not_retired(ctx.client, ctx.name, version)
    if check_serving and registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION) != version:
        probe = served_version(ctx, version)
        if not probe.ok:
            why = f"not promoted: {probe.explain()}"
            ctx.record(
                "promote_refused",
                as_of,
                actor,
                {"version": version, "reason": reason, "refused": why, "servable": probe.to_dict()},
            )
            return {"promoted": False, "refused": True, "version": version, "reason": why, "servable": probe.to_dict()}
    with ctx.ledger().transaction() as tx:
        before = registry.aliases(ctx.client, ctx.name)
        expected = expected_champion if expected_champion is not None else before.get(registry.CHAMPION)
        moves = registry.promote_champion(ctx.client, ctx.name, version, expected_champion=expected)
        if not moves:
            return {"promoted": False, "version": version, "reason": f"version {version} already is the champion"}
        for key, value in (("promoted_as_of", str(as_of or dt.date.today())), ("promoted_by_hand", actor)):
            ctx.client.set_model_version_tag(ctx.name, version, key, value)
        try:
            tx.append(
                ctx.name,
                "promote",
                as_of=as_of,
                actor=actor,
                before=before.get(registry.CHAMPION),
                after=version,
                reason=reason,
                details={
                    "mode": "by_hand",
                    "version": version,
                    "reason": reason,
                    "moves": [m.to_dict() for m in moves],
                },
            )
        except Exception:
            registry.restore_aliases(ctx.client, ctx.name, before)
            raise
    if before.get(registry.CHALLENGER) == version:
        # the challenger of a rollout promoted by hand: the rollout is over (its run ends as
        # superseded at its next look); the gateway goes back to champion-only now
        set_rollout_state(ctx.client, ctx.name, "none", 0.0, ctx.cfg.deploy.sticky_key or "")
    return {"promoted": True, "version": version, "moves": [m.to_dict() for m in moves], "reason": reason}


def reject_candidate(
    model: str,
    trained: TrainedRun,
    gates: GateReport,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    why: str = "",
) -> Rejection:
    """Record a candidate that is not registered, on its run's tags and in the ledger:
    ``no_gain`` (it gained nothing on the champion; the champion's level may become the new
    healthy level) or ``rejected`` (it failed its gates). ``why`` overrides the recorded reason."""
    ctx = ModelContext(model, settings)
    failed = [r.reason for r in gates.failed]
    if gates.outcome == NO_GAIN:
        assert gates.gain is not None  # a no_gain outcome carries its gain
        gain = Gain(**gates.gain)
        ctx.client.set_tag(trained.run_id, "retrain.decision", NO_GAIN)
        ctx.record(
            NO_GAIN,
            as_of,
            actor,
            {
                "run_id": trained.run_id,
                "outcome": NO_GAIN,
                "gain": gates.gain,
                "reason": why or f"no gain: {gain.explain()}",
            },
        )
        log.warning("candidate of %s not registered: %s", model, gain.explain())
        record_no_gain_acceptance(ctx.record, ctx.cfg, as_of, actor, trained.selection)
        return Rejection(outcome=NO_GAIN, failed=(), run_id=trained.run_id, gain=gates.gain, reason=gain.explain())
    ctx.client.set_tag(trained.run_id, "retrain.decision", "rejected")
    ctx.record(
        "reject",
        as_of,
        actor,
        {
            "run_id": trained.run_id,
            "failed": failed,
            "outcome": REJECTED,
            "reason": why or "the candidate failed its gates",
        },
    )
    log.warning("candidate of %s rejected: %s", model, "; ".join(failed))
    return Rejection(outcome=REJECTED, failed=tuple(failed), run_id=trained.run_id)
