"""The human approval of a promotion: whether one is needed and what the approver reads
(:func:`approval_request`), the answer recorded in the ledger, on the version and its card
(:func:`record_approval`), and a rejection or timeout closing the review (:func:`close_review`)."""

from __future__ import annotations

import logging
from typing import Any

from retrain_lib.core.settings import Settings
from retrain_lib.pipeline.records import Evaluation, GateReport, Registered, Snapshot, TrainedRun
from retrain_lib.pipeline.registration import add_approval_to_card
from retrain_lib.quality import registry_record as rr
from retrain_lib.quality.approval import approval_reasons
from retrain_lib.store.model_context import ModelContext

log = logging.getLogger(__name__)


def record_approval(ctx: ModelContext, version: str, approval: dict, *, as_of: str | None, actor: str) -> None:
    """The human answer to a promotion request: in the ledger and on the version's tags."""
    for key, value in (
        ("approval.answer", approval.get("answer")),
        ("approval.by", approval.get("by")),
        ("approval.at", approval.get("at")),
        ("approval.timed_out", approval.get("timed_out")),
        (rr.COMPLIANCE_TAG, rr.answer_status(approval.get("answer"), timed_out=bool(approval.get("timed_out")))),
    ):
        if value is not None:
            ctx.client.set_model_version_tag(
                ctx.name, str(version), key, str(value).lower() if isinstance(value, bool) else str(value)
            )
    add_approval_to_card(ctx, str(version), approval)
    event = "approval_timeout" if approval.get("timed_out") else "approval"
    ctx.record(
        event,
        as_of,
        actor,
        {
            "version": str(version),
            **approval,
            "reason": f"{approval.get('answer')} by {approval.get('by') or 'nobody (timeout)'}",
        },
    )


def approval_request(
    model: str,
    snap: Snapshot,
    trained: TrainedRun,
    evaluation: Evaluation,
    gates: GateReport,
    registered: Registered,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
) -> dict[str, Any]:
    """Whether this promotion needs a human answer, and the text the approver reads."""
    ctx = ModelContext(model, settings)
    champion = ctx.champion()
    run = ctx.client.get_run(trained.run_id)
    rows = run.data.params.get("rows.train")
    reasons = approval_reasons(
        ctx.cfg,
        champion_tags=dict(champion.tags) if champion else None,
        gate_results=gates.results,
        train_rows=int(rows) if rows else None,
    )
    version = registered.version
    ctx.client.set_model_version_tag(
        ctx.name, str(version), rr.COMPLIANCE_TAG, rr.PENDING if reasons else rr.NOT_REQUIRED
    )
    subject = f"Promote {model} version {version} to champion?"
    lines = [
        f"**{model}** version {version} passed its gates and waits for an approval.",
        "",
        "Why an approval is needed:",
        *[f"- {r}" for r in reasons],
        "",
        f"Training window {snap.start}..{snap.end} ({snap.rows} rows), "
        f"champion: {evaluation.champion_version or 'none'}.",
        "",
        "| metric | candidate | champion |",
        "|---|---|---|",
    ]
    champ = evaluation.champion or {}
    for k, v in sorted(evaluation.candidate.items()):
        c = champ.get(k)
        lines.append(f"| {k} | {v:.4f} | {'' if c is None else f'{c:.4f}'} |")
    lines += [
        "",
        "Gates:",
        *[f"- {'PASS' if r.passed else 'FAIL'} {r.reason}" for r in gates.results],
        "",
        f"MLflow run: {ctx.settings.platform.mlflow_ui_url}/#/experiments/{run.info.experiment_id}/runs/"
        f"{trained.run_id}",
        f"No answer within {ctx.cfg.approval.timeout_hours:g} h counts as a rejection." if ctx.cfg.approval else "",
    ]
    if reasons:
        ctx.record(
            "approval_requested",
            as_of,
            actor,
            {"version": str(version), "reasons": reasons, "run_id": trained.run_id},
        )
    return {"required": bool(reasons), "reasons": reasons, "subject": subject, "body": "\n".join(lines)}


def close_review(
    model: str,
    registered: Registered,
    approval: dict,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
) -> dict[str, Any]:
    """After the approval step: a rejection or a timeout is recorded (ledger, version tags) and
    the version is tagged as not deployed; an approval was recorded by the deployment."""
    ctx = ModelContext(model, settings)
    version = registered.version
    if approval.get("answer") == "Approve":
        return {"version": version, "approved": True}
    record_approval(ctx, version, approval, as_of=as_of, actor=actor)
    ctx.client.set_model_version_tag(
        ctx.name,
        str(version),
        "retrain.decision",
        "rejected_by_approver" if not approval.get("timed_out") else "approval_timed_out",
    )
    why = (
        "no answer to the approval request in time"
        if approval.get("timed_out")
        else f"rejected by {approval.get('by')}"
    )
    ctx.record(
        "reject",
        as_of,
        actor,
        {"version": str(version), "run_id": registered.run_id, "failed": [why], "reason": why},
    )
    log.warning("version %s of %s not deployed: %s", version, model, why)
    return {"version": version, "approved": False, "reason": why}
