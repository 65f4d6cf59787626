"""What Slack alerts say: one builder per kind of alert, for what on-call people must know.

Each builder turns what the platform already produces (the :class:`~retrain_lib.pipeline.records.GateReport`
of :func:`retrain_lib.pipeline.evaluation.check_gates`, the validation failures of a snapshot or a
monitor check, the monitor's drift summary, a :class:`~retrain_lib.pipeline.records.DeployOutcome`,
rollback / rollout outcomes, an approval request, a failed task) into an :class:`~retrain_lib.pipeline.alert_payload.Alert`: its kind, model, severity,
de-duplication key and the Slack payload (laid out by :mod:`retrain_lib.pipeline.alert_payload`)::

    gate `recall_min[region=north]` failed: 0.84 < 0.9 (champion 0.91, -0.07); MLflow run
    http://mlflow/#/experiments/3/runs/ab12, drift report ..., task log http://airflow/dags/...

The facts of a validation failure are read from the files the platform wrote
(:func:`retrain_validation_facts`, :func:`monitor_validation_facts`). Sending is
:mod:`retrain_lib.pipeline.alert_delivery`'s. No Airflow here (an import-linter contract) and nothing
heavy at import time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from retrain_lib.core.config_alerts import ALERT_KINDS
from retrain_lib.core.settings import redact
from retrain_lib.pipeline.alert_payload import (
    MAX_LISTED,
    Alert,
    Links,
    bullets,
    context_line,
    cut,
    dedupe_key,
    esc,
    num,
    resolve_severity,
    slack_payload,
)
from retrain_lib.pipeline.records import DeployOutcome, Evaluation, GateReport, Snapshot
from retrain_lib.quality.gate_types import GateResult

KINDS = ALERT_KINDS
MAX_ROWS = 3  # offending rows shown per failed expectation


# -- gate failure -------------------------------------------------------------------------


def gate_label(result: GateResult) -> str:
    """``recall_min[region=north]``: the gate, and its slice when it is not the whole holdout."""
    sl = result.slice
    return f"{result.gate}[{sl}]" if sl and sl != "all" else str(result.gate)


def gate_line(result: GateResult) -> str:
    """``gate `recall_min[region=north]` failed: 0.84 < 0.9 (champion 0.91, -0.07)``."""
    head = f"gate `{esc(gate_label(result))}` failed"
    obs, thr = result.observed, result.threshold
    if obs is None or thr is None or result.kind == "servable":  # a count of answers says less than why
        return f"{head}: {esc(result.reason or 'no value')}"
    op = "<" if float(obs) < float(thr) else ">" if float(obs) > float(thr) else "="
    text = f"{head}: {num(obs)} {op} {num(thr)}"
    if result.champion is not None:
        text += f" (champion {num(result.champion)}, {num(result.delta, signed=True)})"
    return text


def gate_failure(
    model: str,
    gates: GateReport,
    *,
    run_id: str | None = None,
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """The candidate failed its gates. ``gates`` is :func:`retrain_lib.pipeline.evaluation.check_gates`'s
    report (its ``results``: ``gate, slice, observed, threshold, champion, delta, passed, reason``)."""
    sev = resolve_severity(severity, "gate_failure")
    results = gates.results
    failed = gates.failed
    lines = [gate_line(r) for r in failed]
    champ = gates.champion_version
    head = (
        f"*{len(failed)} of {len(results)} gate checks failed*: the candidate"
        + (f" (MLflow run `{esc(run_id)}`)" if run_id else "")
        + (f" is not promoted; champion v{esc(champ)} stays." if champ else " is not registered (no champion yet).")
    )
    fallback = (
        f"{model} candidate rejected: "
        + "; ".join(lines[:3])
        + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
    )
    payload = slack_payload(
        sev,
        f"Gate failure: {model} candidate rejected",
        [head, bullets(lines)],
        fallback,
        links,
        context_line(model, as_of),
    )
    return Alert("gate_failure", model, sev, dedupe_key("gate_failure", model, map(gate_label, failed)), payload)


# -- data validation ------------------------------------------------------------------------


def expectation_line(failure: Mapping[str, Any]) -> str:
    """A failed expectation: its own explanation (column, expectation, arguments, unexpected
    count and share, examples), the observed value when it is not already in it."""
    text = failure.get("explain") or f"{failure.get('column') or 'table'}: {failure.get('expectation')}"
    obs = failure.get("observed_value")
    if obs is not None and "observed" not in text:
        text += f" (observed {obs})"
    return esc(text)


def _rows_block(failures: list[Mapping[str, Any]]) -> str:
    parts = []
    for f in failures[:MAX_LISTED]:
        rows = list(f.get("rows") or [])[:MAX_ROWS]
        if not rows:
            continue
        body = "\n".join(esc(json.dumps(r, default=str)) for r in rows)
        parts.append(f"`{esc(f.get('column') or 'table')}` {esc(f.get('expectation'))}:\n```{body}```")
    return ("*Offending rows*\n" + "\n".join(parts)) if parts else ""


def validation_failure(
    model: str,
    *,
    failures: Sequence[Mapping[str, Any]] = (),
    problems: Sequence[str] = (),
    stage: str = "retrain",
    window: list[str] | tuple[str, str] | None = None,
    rows: int | None = None,
    quarantine: str | None = None,
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """Data failed its expectations. ``failures`` are failed
    :class:`~retrain_lib.quality.validation_report.ExpectationResult` dicts (``explain``, ``observed_value``,
    ``rows``: offending rows); ``problems`` the other reasons the data is unfit (a snapshot's
    ``problems``; lines already explained by ``failures`` are not repeated)."""
    sev = resolve_severity(severity, "validation_failure")
    failures = list(failures)
    explained = {f.get("explain") for f in failures}
    others = [p for p in problems if p not in explained]
    lines = [expectation_line(f) for f in failures] + [esc(p) for p in others]
    where = f" on {window[0]}..{window[1]}" if window else ""
    where += f" ({rows} rows)" if rows is not None else ""
    if stage == "retrain":
        then = "the retrain stopped before training" + (
            f"; batch quarantined in `{esc(quarantine)}`" if quarantine else ""
        )
    else:
        then = "the monitor carried on (drift and performance were still checked)"
    head = f"*{len(lines)} check(s) failed*{where}: {then}."
    fallback = f"{model}: data validation failed ({stage}): " + "; ".join(lines[:3])
    payload = slack_payload(
        sev,
        f"Data validation failed: {model} ({stage})",
        [head, bullets(lines), _rows_block(failures)],
        fallback,
        links,
        context_line(model, as_of),
    )
    items = [f"{f.get('column') or 'table'}:{f.get('expectation')}" for f in failures]
    items += [re.sub(r"[0-9.,%]+", "#", p) for p in others]  # counts change from day to day
    return Alert("validation_failure", model, sev, dedupe_key(f"validation_failure:{stage}", model, items), payload)


# -- drift --------------------------------------------------------------------------------


def feature_line(f: Mapping[str, Any]) -> str:
    """``income` ks p-value 0.0001 <= 0.001`` (tests) or ``region` psi 0.41 >= 0.2`` (distances)."""
    name, method = esc(f.get("name")), esc(f.get("method"))
    if f.get("p_value") is not None:
        op = "<=" if f.get("drifted") else ">"
        return f"`{name}` {method} p-value {num(f['p_value'])} {op} {num(f.get('threshold'))}"
    op = ">=" if f.get("drifted") else "<"
    return f"`{name}` {method} {num(f.get('score'))} {op} {num(f.get('threshold'))}"


def drift(model: str, monitor: Mapping[str, Any], *, links: Links = Links(), severity: str | None = None) -> Alert:
    """The monitor found drift and decided to act. ``monitor`` is the monitor's result (or
    its ledger ``details``): ``action``, ``as_of``, ``reasons`` and ``drift`` (``top``,
    ``drifted_share``, ``drift_share_threshold``) or those keys at its top level."""
    sev = resolve_severity(severity, "drift")
    d = monitor.get("drift") or monitor
    top = [f for f in (d.get("top") or d.get("top_features") or []) if f.get("drifted")]
    if not top:
        top = [f for f in d.get("features") or [] if f.get("drifted")]
    share, limit = d.get("drifted_share"), d.get("drift_share_threshold")
    action = monitor.get("action") or "retrain"
    head = (
        f"*{num(share * 100 if share is not None else None)}% of features drifted*"
        + (f" (>= {num(limit * 100)}%)" if limit is not None else "")
        + f" on the current window vs the champion's training data: *{esc(action)}*"
        + (" (throttled)" if monitor.get("throttled") else "")
        + (f"; champion v{esc(monitor['champion_version'])}" if monitor.get("champion_version") else "")
        + "."
    )
    lines = [feature_line(f) for f in top]
    fallback = f"{model}: drift, {action}: " + "; ".join(lines[:3])
    payload = slack_payload(
        sev,
        f"Drift: {model} → {action}",
        [head, "*Top drifted features*\n" + bullets(lines)],
        fallback,
        links,
        context_line(model, monitor.get("as_of")),
    )
    return Alert("drift", model, sev, dedupe_key("drift", model, [f.get("name") for f in top]), payload)


# -- promotion, rollback, rollout ----------------------------------------------------------------


def _metric_fields(candidate: Mapping[str, Any] | None, champion: Mapping[str, Any] | None) -> str:
    if not candidate:
        return ""
    champion = champion or {}
    lines = []
    for k in sorted(candidate)[:MAX_LISTED]:
        c = champion.get(k)
        extra = f" (was {num(c)}, {num(candidate[k] - c, signed=True)})" if c is not None else ""
        lines.append(f"{esc(k)} {num(candidate[k])}{extra}")
    return "*Holdout metrics*\n" + bullets(lines, len(candidate))


def promotion(
    model: str,
    deployed: DeployOutcome,
    *,
    evaluation: Evaluation | None = None,
    reason: str | None = None,
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """A version became champion. ``deployed`` is
    :func:`retrain_lib.pipeline.promotion.deploy_candidate`'s result (``version``, ``mode``, ``moves``);
    ``evaluation`` its holdout metrics (``candidate``, ``champion``)."""
    sev = resolve_severity(severity, "promotion")
    version = deployed.version
    move = deployed.champion_move
    before = move.from_version if move is not None else None
    head = (
        f"*v{esc(version)} is now champion*"
        + (f", replacing v{esc(before)}" if before else " (first champion)")
        + f" (deploy mode {esc(deployed.mode or 'direct')})."
        + (f"\nWhy: {esc(reason)}" if reason else "")
    )
    if deployed.reevaluated:
        head += f"\nRe-evaluated against a champion that moved: {len(deployed.reevaluated)} time(s)."
    fallback = f"{model}: v{esc(version)} promoted to champion" + (f" (was v{esc(before)})" if before else "")
    payload = slack_payload(
        sev,
        f"Promoted: {model} v{version}",
        [head, _metric_fields(evaluation.candidate, evaluation.champion) if evaluation is not None else ""],
        fallback,
        links,
        context_line(model, as_of),
    )
    return Alert("promotion", model, sev, dedupe_key("promotion", model, [str(version)]), payload)


def rollback(
    model: str,
    result: Mapping[str, Any],
    *,
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """The monitor rolled the champion back. ``result`` is
    :func:`retrain_lib.pipeline.promotion.rollback_model`'s result (``from``, ``to``, ``reason``)."""
    sev = resolve_severity(severity, "rollback")
    src, dst = result.get("from"), result.get("to")
    head = (
        f"*champion moved back from v{esc(src)} to v{esc(dst)}*; v{esc(src)} is tagged "
        "`retrain.rolled_back=true`.\nWhy: " + esc(result.get("reason") or "champion degraded")
    )
    fallback = (
        f"{model}: rolled back from v{esc(src)} to v{esc(dst)}: {esc(result.get('reason') or 'champion degraded')}"
    )
    payload = slack_payload(
        sev, f"Rollback: {model} v{src} → v{dst}", [head], fallback, links, context_line(model, as_of)
    )
    return Alert("rollback", model, sev, dedupe_key("rollback", model, [f"{src}->{dst}"]), payload)


def guard_end(
    model: str,
    outcome: Mapping[str, Any],
    *,
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """A post-deploy guard ended without a rollback (a rollback sends :func:`rollback`):
    ``clean`` (the champion stays), ``alarm`` (a limit broke with no previous-champion to go
    back to: always red) or ``superseded`` (the champion moved during the guard). ``outcome`` is
    :func:`retrain_lib.pipeline.guard_run.finish_guard`'s result (``action``, ``version``, ``reason``)."""
    action, version = str(outcome.get("action") or ""), outcome.get("version")
    sev = "red" if action == "alarm" else resolve_severity(severity, "guard")
    title = {
        "clean": f"Guard passed: {model} v{version} stays champion",
        "alarm": f"Guard alarm: {model} v{version} breaks its limits, nothing to roll back to",
        "superseded": f"Guard stopped: {model} v{version} is no longer champion",
    }.get(action, f"Guard ended: {model} v{version} ({action})")
    why = esc(outcome.get("reason") or "")
    payload = slack_payload(
        sev, title, [f"*{esc(title)}*\n{why}"], f"{esc(title)}: {why}", links, context_line(model, as_of)
    )
    return Alert("guard", model, sev, dedupe_key("guard", model, [f"{version}:{action}"]), payload)


def rollout_decision(
    model: str,
    decision: str,
    started: Mapping[str, Any],
    outcome: Mapping[str, Any],
    *,
    reason: str = "",
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """The end of a shadow/canary rollout: ``promote`` (the challenger became champion: kind
    ``promotion``) or ``rollback`` (the challenger was withdrawn: kind ``rollback``).
    ``started`` is :func:`retrain_lib.pipeline.rollout_run.start_rollout`'s result, ``outcome``
    :func:`~retrain_lib.pipeline.rollout_run.finish_rollout`'s."""
    kind = "promotion" if decision == "promote" else "rollback"
    sev = resolve_severity(severity, kind)
    version, champion, mode = started.get("challenger"), started.get("champion"), started.get("mode") or "canary"
    why = reason or outcome.get("reason") or ""
    if decision == "promote" and outcome.get("promoted"):
        title = f"Rollout promoted: {model} v{version}"
        head = (
            f"*challenger v{esc(version)} is now champion* after its {esc(mode)} rollout, replacing v{esc(champion)}."
        )
        fallback = f"{model}: {esc(mode)} rollout promoted v{esc(version)} (was v{esc(champion)})"
    else:
        title = f"Rollout rolled back: {model} v{version}"
        head = (
            f"*challenger v{esc(version)} was rolled back* during its {esc(mode)} rollout; "
            f"champion v{esc(outcome.get('champion') or champion)} keeps all traffic."
        )
        fallback = f"{model}: {esc(mode)} rollout of v{esc(version)} rolled back: {esc(why)}"
    if why:
        head += f"\nWhy: {esc(why)}"
    payload = slack_payload(sev, title, [head], fallback, links, context_line(model, as_of, f"mode {esc(mode)}"))
    return Alert(kind, model, sev, dedupe_key(kind, model, [f"rollout:{version}:{decision}"]), payload)


# -- approval, task failure ------------------------------------------------------------------


def approval_needed(
    model: str,
    request: Mapping[str, Any],
    *,
    version: str | None = None,
    timeout_hours: float | None = None,
    approvers: Iterable[str] = (),
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """A promotion waits for a human. ``request`` is
    :func:`retrain_lib.pipeline.approval_steps.approval_request`'s result (``reasons``, ``subject``);
    put the page where it is answered in ``links.extra``."""
    sev = resolve_severity(severity, "approval_needed")
    reasons = [esc(r) for r in request.get("reasons") or []]
    who = ", ".join(approvers)
    head = (
        f"*{esc(request.get('subject') or f'Promote {model} version {version}?')}*\n"
        f"Version v{esc(version)} passed its gates; answer in Airflow (*Required actions*)"
        + (f" ({esc(who)})" if who else "")
        + (f" within {num(timeout_hours)} h, or it counts as a rejection." if timeout_hours else ".")
    )
    fallback = f"{model}: approval needed to promote v{esc(version)}: " + "; ".join(reasons[:3])
    payload = slack_payload(
        sev,
        f"Approval needed: {model} v{version}",
        [head, "*Why*\n" + bullets(reasons)],
        fallback,
        links,
        context_line(model, as_of),
    )
    return Alert("approval_needed", model, sev, dedupe_key("approval_needed", model, [str(version)]), payload)


def _tries(try_number: int | None, max_tries: int | None) -> str:
    """``try 3 of 3; no retries left``, ``try 1; not retried: ...``, or ``""`` when unknown."""
    if not try_number:
        return ""
    if max_tries is None:
        return f"try {try_number}"
    if max_tries == 0:
        return f"try {try_number}; no retries configured"
    if try_number > max_tries:
        return f"try {try_number} of {max_tries + 1}; no retries left"
    return f"try {try_number}; not retried: a retry cannot fix this error"


def task_failure(
    model: str,
    *,
    dag_id: str,
    task_id: str,
    run_id: str,
    try_number: int | None = None,
    max_tries: int | None = None,
    exception: BaseException | str | None = None,
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """A task failed for good: Airflow's failure callback runs only when no retry follows.

    ``try_number`` is the try that failed and ``max_tries`` the retries Airflow allowed (the
    task instance's ``max_tries``); the text says which it was: the last try of all, or an
    earlier one that was not retried because a retry cannot fix the error
    (``AirflowFailException``)."""
    sev = resolve_severity(severity, "failure")
    if isinstance(exception, BaseException):
        kind, message = type(exception).__name__, redact(exception)
    else:
        kind, message = "", redact(exception or "no exception recorded")
    error = f"{kind}: {message}" if kind else message
    tries = _tries(try_number, max_tries)
    head = (
        f"*{esc(dag_id)}.{esc(task_id)} failed*"
        + (f" ({tries})" if tries else "")
        + f" in run `{esc(run_id)}`.\n```{esc(cut(error, 1500))}```"
    )
    fallback = (
        f"{model}: task {esc(dag_id)}.{esc(task_id)} failed"
        + (f" ({tries})" if tries else "")
        + f": {esc(cut(error, 300))}"
    )
    payload = slack_payload(
        sev, f"Task failed: {dag_id}.{task_id}", [head], fallback, links, context_line(model, as_of)
    )
    return Alert("failure", model, sev, dedupe_key("failure", model, [dag_id, task_id, kind or "error"]), payload)


# -----------------------------------------------------------------------------------------
# Facts read from what the platform wrote
# -----------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def retrain_validation_facts(snap: Snapshot) -> dict[str, Any]:
    """Failures of a snapshot that failed validation, from its quarantine ``manifest.json``
    (failed expectations with offending rows) and its ``problems``."""
    quarantine = snap.validation.quarantine if snap.validation is not None else None
    manifest = _read_json(Path(quarantine) / "manifest.json") if quarantine else None
    return {
        "failures": list((manifest or {}).get("failed") or []),
        "problems": list(snap.problems),
        "window": [snap.start, snap.end],
        "rows": snap.rows,
        "quarantine": quarantine,
    }


def monitor_validation_facts(result: Mapping[str, Any]) -> dict[str, Any]:
    """Failures of the monitor's current window, from the ``validation.json`` it wrote next to
    ``monitor.json`` (with offending rows), else its summary lines."""
    validation = result.get("validation") or {}
    report = _read_json(Path(result["report_path"]).parent / "validation.json") if result.get("report_path") else None
    failures = [r for r in (report or {}).get("results") or [] if not r.get("success")]
    return {
        "failures": failures,
        "problems": [] if failures else list(validation.get("failed") or []),
        "window": validation.get("window"),
        "rows": (report or {}).get("rows"),
    }
