"""The steps of a rollout, as the ``<model>__rollout`` DAG runs them.

A challenger (alias ``challenger``) goes live through the serving gateway: shadow first
(scored on every request, never answered), then, for ``deploy.mode: canary``, each share of
``deploy.canary_steps``. The gateway follows the registry (aliases and ``rollout.*`` tags,
see :mod:`retrain_lib.serving.routing`) and logs every prediction; these steps read that log
(:mod:`retrain_lib.serving.predlog`) and decide with :mod:`retrain_lib.pipeline.rollout`. Every
decision goes to the ledger. The rollout ends with :func:`finish_rollout`: promote the
challenger (compare-and-swap on the champion it was compared with) or roll it back.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from typing import Any

from retrain_lib.core.errors import ConfigError, RegistryError, StaleChampionError
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import json_safe, str_or_none
from retrain_lib.pipeline.rollout import ShadowArm, ShadowLimits, canary_decision, canary_proxy_decision, compare_shadow
from retrain_lib.serving.predlog_read import read_predictions
from retrain_lib.serving.predlog_store import resolve_url
from retrain_lib.serving.routing import set_rollout_state
from retrain_lib.stats.rollout_stats import (
    NOT_WORSE,
    TOO_FEW,
    UNDECIDED,
    WORSE,
    PairedLossTest,
    loss_per_request,
    paired_loss_test,
)
from retrain_lib.store import registry
from retrain_lib.store.model_context import ModelContext

log = logging.getLogger(__name__)

PROMOTE, ROLLBACK, CONTINUE, WAIT = "promote", "rollback", "continue", "wait"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _log_url(ctx: ModelContext, log_url: str | None) -> str:
    return resolve_url(ctx.settings, log_url)


def start_rollout(
    model: str,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    mode: str | None = None,
    min_predictions: int | None = None,
    margin: float | None = None,
) -> dict[str, Any]:
    """Put the challenger in shadow mode; returns what the later steps compare against.

    ``mode`` (``shadow`` or ``canary``), ``min_predictions`` and ``margin`` override the
    config's ``deploy`` for this rollout (a rollout started by hand, or a retrain run with
    ``deploy_mode``); a config with ``mode: direct`` rolls out as ``canary``."""
    ctx = ModelContext(model, settings)
    d = ctx.cfg.deploy
    mode = mode or (d.mode if d.mode != "direct" else "canary")
    if mode not in ("shadow", "canary"):
        raise ConfigError(f"rollout mode {mode!r} of {model} is not shadow or canary")
    if margin is not None and float(margin) < 0:
        raise ConfigError(f"rollout margin of {model} must not be negative, got {margin}")
    if min_predictions is not None and int(min_predictions) < 10:
        raise ConfigError(f"rollout min_predictions of {model} must be at least 10, got {min_predictions}")
    now = registry.aliases(ctx.client, ctx.name)
    challenger, champion = now.get(registry.CHALLENGER), now.get(registry.CHAMPION)
    if challenger is None:
        raise RegistryError(
            f"{model} has no challenger to roll out; a retrain with deploy.mode {ctx.cfg.deploy.mode} sets one"
        )
    if champion is None:
        raise RegistryError(f"{model} has no champion to compare the challenger with")
    set_rollout_state(ctx.client, ctx.name, "shadow", 0.0, ctx.cfg.deploy.sticky_key or "")
    started = {
        "model": model,
        "challenger": challenger,
        "champion": champion,
        "since": _now(),
        "mode": mode,
        "as_of": as_of,
        "min_predictions": int(min_predictions) if min_predictions is not None else d.min_predictions,
        "margin": float(margin) if margin is not None else d.margin,
    }
    ctx.record(
        "rollout_start",
        as_of,
        actor,
        {
            "version": challenger,
            "champion": champion,
            "mode": started["mode"],
            "reason": f"shadow of version {challenger} against {champion}",
        },
    )
    return started


def prediction_counts(
    model: str, since: str, *, settings: Settings | None = None, log_url: str | None = None
) -> dict[str, int]:
    """Predictions (and labelled ones) per arm since ``since``: what the wait sensors poll."""
    ctx = ModelContext(model, settings)
    frame = read_predictions(_log_url(ctx, log_url), ctx.name, since)
    out: dict[str, int] = {}
    for arm, part in frame.groupby("arm"):
        out[str(arm)] = int(len(part))
        out[f"{arm}_labelled"] = int(part["label"].notna().sum())
    return out


def _min_predictions(deploy, started: dict) -> int:
    return int(started.get("min_predictions") or deploy.min_predictions)


def _own_rows(frame, arm: str, version: str):
    """``frame`` without the ``arm`` rows another version answered: after a newer challenger
    was registered, its rows are not this rollout's."""
    return frame[(frame["arm"] != arm) | (frame["version"].astype(str) == str(version))]


def _arm(frame, arm: str):
    rows = frame[frame["arm"] == arm]
    failed = rows["error"].notna() if "error" in rows else rows["output"].isna()
    part = rows[~failed]
    return ShadowArm(
        outputs=part["output"].to_numpy(float),
        latencies_ms=part["latency_ms"].to_numpy(float),
        errors=int(failed.sum()),
        n=int(len(rows)),
        request_ids=(
            part["parent_id"].fillna(part["request_id"]).to_numpy()
            if arm == "shadow"
            else part["request_id"].to_numpy()
        ),
    )


def _shadow_pairs(task: str, frame):
    """Per-request losses of the champion and of the shadow challenger on the same labelled
    requests (a shadow row carries its parent's label), in the same order."""
    import numpy as np

    scored = frame["label"].notna() & frame["output"].notna()
    champ = frame[(frame["arm"] == "champion") & scored].drop_duplicates("request_id").set_index("request_id")
    shadow = frame[(frame["arm"] == "shadow") & scored].drop_duplicates("parent_id").set_index("parent_id")
    both = champ.index.intersection(shadow.index)
    if both.empty:
        return np.array([]), np.array([])
    labels = champ.loc[both, "label"].to_numpy(float)
    return (
        loss_per_request(task, labels, champ.loc[both, "output"].to_numpy(float)),
        loss_per_request(task, labels, shadow.loc[both, "output"].to_numpy(float)),
    )


def _not_worse_at_all(test: PairedLossTest) -> bool:
    """The labels show the challenger no worse than the champion, margin or not: the upper
    bound of the always-valid interval of its loss difference is at most 0."""
    return test.ci is not None and test.ci[1] <= 0


def _labelled_reason(test: PairedLossTest, challenger: str) -> str:
    if test.verdict == TOO_FEW:
        return f"labels: {test.n} labelled requests scored by both, too few to judge"
    lo, hi = test.ci or (float("nan"), float("nan"))
    if _not_worse_at_all(test):
        verdict = "not worse than the champion"
    else:
        verdict = {
            WORSE: "worse by more than the margin",
            NOT_WORSE: "within the margin",
            UNDECIDED: "undecided",
        }[test.verdict]
    return (
        f"labels: per-request loss of challenger v{challenger} minus champion on the same {test.n} labelled "
        f"requests {test.mean_diff:+.4g} (mean loss {test.loss_b:.4g} vs {test.loss_a:.4g}), "
        f"{1 - test.alpha:.0%} always-valid CI [{lo:.4g}, {hi:.4g}] vs margin {test.margin:g}: {verdict}"
    )


def judge_shadow(
    model: str,
    started: dict,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    log_url: str | None = None,
) -> dict[str, Any]:
    """Challenger (arm ``shadow``) vs champion on the same requests: output distribution,
    latency, errors, and the labels joined to those requests (paired per-request losses).

    Labels decide over outputs: a challenger the labels show worse by more than
    ``deploy.margin`` is rolled back; one they show no worse than the champion at all (the
    interval's upper bound at most 0, whatever the margin) passes even when its outputs moved
    past ``max_psi`` (after a real drift a better model answers differently), the PSI then
    recorded as a warning. Otherwise the output limits decide."""
    ctx = ModelContext(model, settings)
    d = ctx.cfg.deploy
    newer = superseded_by(ctx, started)
    if newer is not None:
        reason = _superseded_reason(started, newer)
        ctx.record(
            "rollout_shadow",
            as_of,
            actor,
            {"version": started["challenger"], "decision": ROLLBACK, "reason": reason, "superseded_by": newer},
        )
        return {"decision": ROLLBACK, "reasons": [reason], "warnings": [], "superseded_by": newer}
    frame = read_predictions(_log_url(ctx, log_url), ctx.name, started["since"])
    frame = _own_rows(frame, "shadow", started["challenger"])
    limits = ShadowLimits(max_psi=d.max_psi, max_latency_ratio=d.max_latency_ratio, min_n=_min_predictions(d, started))
    verdict = compare_shadow(_arm(frame, "champion"), _arm(frame, "shadow"), limits)
    champ_loss, chall_loss = _shadow_pairs(ctx.cfg.task, frame)
    labelled = paired_loss_test(
        champ_loss,
        chall_loss,
        alpha=d.alpha,
        margin=float(started.get("margin", d.margin)),
        min_n=max(10, _min_predictions(d, started) // 2),
    )
    labels_note = _labelled_reason(labelled, started["challenger"])
    reasons, warnings = list(verdict.reasons), []
    if not verdict.ready:
        decision = WAIT
    elif labelled.verdict == WORSE:
        decision = ROLLBACK
        reasons.append(labels_note)
    elif reasons and all(r.startswith("psi:") for r in reasons) and _not_worse_at_all(labelled):
        decision, warnings, reasons = CONTINUE, reasons, []
    else:
        decision = CONTINUE if verdict.ok else ROLLBACK
    out = json_safe(
        {
            "decision": decision,
            "verdict": verdict.to_dict(),
            "labelled": labelled.to_dict(),
            "reasons": reasons,
            "warnings": warnings,
        }
    )
    ctx.record(
        "rollout_shadow",
        as_of,
        actor,
        {
            "version": started["challenger"],
            "decision": decision,
            "reason": "; ".join(reasons)
            or ("shadow ok (warning: " + "; ".join(warnings) + ")" if warnings else "shadow ok"),
            "labels": labels_note,
            "warnings": warnings,
            "verdict": out["verdict"],
            "labelled": out["labelled"],
        },
    )
    return out


def set_canary_step(
    model: str,
    started: dict,
    percent: float,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
) -> dict[str, Any]:
    """Send ``percent`` % of the traffic to the challenger; returns the step's start time."""
    ctx = ModelContext(model, settings)
    _still_same(ctx, started)
    set_rollout_state(ctx.client, ctx.name, "canary", float(percent), ctx.cfg.deploy.sticky_key or "")
    ctx.record(
        "rollout_step",
        as_of,
        actor,
        {"version": started["challenger"], "percent": percent, "reason": f"canary {percent:g}%"},
    )
    return {"percent": percent, "since": _now()}


def canary_status(
    model: str, started: dict, step: dict, *, settings: Settings | None = None, log_url: str | None = None
) -> dict[str, Any]:
    """The sequential test of one canary step as it stands (nothing recorded): the mSPRT on
    per-request losses of the labelled requests of each arm since the step began, or the
    proxy test on outputs while too few labels have arrived. Safe to call at every poll:
    its false-rollback rate is bounded however often it looks."""
    ctx = ModelContext(model, settings)
    cfg, d = ctx.cfg, ctx.cfg.deploy
    newer = superseded_by(ctx, started)
    if newer is not None:
        return {
            "decision": ROLLBACK,
            "percent": step["percent"],
            "test": {},
            "reason": _superseded_reason(started, newer),
            "labelled": {"champion": 0, "challenger": 0},
            "superseded_by": newer,
        }
    frame = read_predictions(_log_url(ctx, log_url), ctx.name, step["since"])
    frame = _own_rows(frame, "challenger", started["challenger"])
    scored = frame["label"].notna() & frame["output"].notna()
    champ = frame[(frame["arm"] == "champion") & scored]
    chall = frame[(frame["arm"] == "challenger") & scored]
    min_n = max(10, _min_predictions(d, started) // 2)
    if len(champ) >= min_n and len(chall) >= min_n:
        res = canary_decision(
            loss_per_request(cfg.task, champ["label"].to_numpy(float), champ["output"].to_numpy()),
            loss_per_request(cfg.task, chall["label"].to_numpy(float), chall["output"].to_numpy()),
            alpha=d.alpha,
            min_n=min_n,
            margin=started.get("margin", d.margin),
            max_n=d.max_step_predictions,
        )
    else:
        res = canary_proxy_decision(
            _arm(frame, "champion"),
            _arm(frame, "challenger"),
            limits=ShadowLimits(
                max_psi=d.max_psi, max_latency_ratio=d.max_latency_ratio, min_n=_min_predictions(d, started)
            ),
            alpha=d.alpha,
            max_n=d.max_step_predictions,
        )
        if res.decision == PROMOTE:  # outputs alone never promote: wait for labels
            res = dataclasses.replace(
                res, decision=CONTINUE, reason=f"outputs look alike; waiting for labels ({res.reason})"
            )
    return json_safe(
        {
            "decision": res.decision,
            "percent": step["percent"],
            "test": res.to_dict(),
            "reason": res.reason,
            "labelled": {"champion": int(len(champ)), "challenger": int(len(chall))},
        }
    )


def judge_canary(
    model: str,
    started: dict,
    step: dict,
    status: dict,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
) -> dict[str, Any]:
    """Record the decision of a canary step (from :func:`canary_status`)."""
    ctx = ModelContext(model, settings)
    ctx.record(
        "rollout_canary",
        as_of,
        actor,
        {
            "version": started["challenger"],
            "percent": step["percent"],
            "decision": status["decision"],
            "reason": status["reason"],
            "test": status["test"],
            "labelled": status["labelled"],
        },
    )
    return status


def superseded_by(ctx: ModelContext, started: dict) -> str | None:
    """The version the ``challenger`` alias points at now when it is no longer the one this
    rollout started with (``"none"`` when the alias was removed), else ``None``."""
    now = str_or_none(registry.aliases(ctx.client, ctx.name).get(registry.CHALLENGER))
    return None if now == str(started["challenger"]) else (now or "none")


def _superseded_reason(started: dict, newer: str) -> str:
    if newer == "none":
        return f"superseded: the challenger alias was removed while v{started['challenger']} was rolled out"
    return (
        f"superseded: v{newer} became the challenger while v{started['challenger']} was rolled out; this "
        f"rollout stops without promoting anything and v{newer} is measured afresh by its own rollout"
    )


def _still_same(ctx: ModelContext, started: dict) -> None:
    now = registry.aliases(ctx.client, ctx.name)
    if now.get(registry.CHALLENGER) != started["challenger"]:
        raise RegistryError(
            f"challenger of {ctx.name} is now {now.get(registry.CHALLENGER)}, not "
            f"{started['challenger']} that this rollout started with; stopping it"
        )


def finish_rollout(
    model: str,
    started: dict,
    decision: str,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    reason: str = "",
) -> dict[str, Any]:
    """``promote``: the challenger becomes champion (compare-and-swap on the champion the rollout
    compared it with, atomic with the ledger entry). ``rollback``: the challenger alias is
    removed and the version tagged. Either way the gateway goes back to champion-only.

    When the ``challenger`` alias no longer points at the rollout's version (a newer
    challenger was registered meanwhile) nothing is promoted or rolled back: the rollout ends
    as ``rollout_superseded`` and leaves the aliases and the gateway's state to the newer
    challenger's rollout."""
    ctx = ModelContext(model, settings)
    version = started["challenger"]
    newer = superseded_by(ctx, started)
    if newer is not None:
        # the newer challenger's rollout owns the aliases and the gateway's rollout state
        reason = _superseded_reason(started, newer)
        ctx.client.set_model_version_tag(ctx.name, version, "retrain.rollout", "superseded")
        ctx.record("rollout_superseded", as_of, actor, {"version": version, "by": newer, "reason": reason})
        return {
            "promoted": False,
            "version": version,
            "reason": reason,
            "superseded_by": newer,
            "champion": str_or_none(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION)),
        }
    try:
        if decision == PROMOTE:
            with ctx.ledger().transaction() as tx:
                before = registry.aliases(ctx.client, ctx.name)
                moves = registry.promote_champion(ctx.client, ctx.name, version, expected_champion=started["champion"])
                ctx.client.set_model_version_tag(ctx.name, version, "promoted_as_of", str(as_of or ""))
                try:
                    tx.append(
                        ctx.name,
                        "promote",
                        as_of=as_of,
                        actor=actor,
                        before=before.get(registry.CHAMPION),
                        after=version,
                        reason=reason or "canary passed",
                        details={
                            "mode": started.get("mode"),
                            "version": version,
                            "moves": [m.to_dict() for m in moves],
                            "reason": reason or "canary passed",
                        },
                    )
                except Exception:
                    registry.restore_aliases(ctx.client, ctx.name, before)
                    raise
            outcome = {"promoted": True, "version": version, "moves": [m.to_dict() for m in moves]}
        else:
            now = registry.aliases(ctx.client, ctx.name)
            if now.get(registry.CHALLENGER) == version:
                ctx.client.delete_registered_model_alias(ctx.name, registry.CHALLENGER)
            ctx.client.set_model_version_tag(ctx.name, version, "retrain.rollout", "rolled_back")
            ctx.record(
                "rollout_rollback",
                as_of,
                actor,
                {"version": version, "reason": reason or "rollout failed", "champion": started["champion"]},
            )
            outcome = {"promoted": False, "version": version, "reason": reason}
    except StaleChampionError as exc:
        ctx.record("rollout_rollback", as_of, actor, {"version": version, "reason": str(exc)})
        outcome = {"promoted": False, "version": version, "reason": str(exc)}
    finally:
        set_rollout_state(ctx.client, ctx.name, "none", 0.0, ctx.cfg.deploy.sticky_key or "")
    outcome["champion"] = str_or_none(registry.aliases(ctx.client, ctx.name).get(registry.CHAMPION))
    return outcome
