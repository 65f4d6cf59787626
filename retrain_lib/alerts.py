"""Slack alerts: Block Kit payloads for what on-call people must know, de-duplication and delivery.

One builder per kind of alert turns the dicts the platform already produces (gate results of
:func:`retrain_lib.evaluation.check_gates`, the validation failures of a snapshot or a monitor
check, the monitor's drift summary, deploy / rollback / rollout outcomes, an approval request,
a failed task) into an :class:`Alert`: its kind, model, severity, de-duplication key and the
Slack payload (``text`` fallback, ``blocks``, and an attachment coloured by severity that
carries the links)::

    gate `recall_min[region=north]` failed: 0.84 < 0.9 (champion 0.91, -0.07); MLflow run
    http://mlflow/#/experiments/3/runs/ab12, drift report ..., task log http://airflow/dags/...

:func:`deliver` sends an alert through any ``post(payload)`` callable (the Airflow plugin
passes one that uses the Slack provider's hooks): the same alert is not sent twice within
``alerts.dedupe_minutes`` (the last-sent times live in the ``retrain_alerts`` table of the
platform database, shared by every task process), a failed send is retried with exponential
backoff and logged, and nothing ever raises out of it: alerting cannot change the outcome of
the step that alerts.

No Airflow here (an import-linter contract) and nothing heavy at import time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from retrain_lib.config_alerts import ALERT_KINDS, DEFAULT_SEVERITY
from retrain_lib.settings import redact

log = logging.getLogger(__name__)

KINDS = ALERT_KINDS
COLORS = {"green": "#2eb886", "yellow": "#daa038", "red": "#a30200"}
EMOJI = {"green": ":large_green_circle:", "yellow": ":large_yellow_circle:", "red": ":red_circle:"}
TABLE = "retrain_alerts"
MAX_LISTED = 8  # failed gates / expectations / features listed in one message
MAX_ROWS = 3  # offending rows shown per failed expectation


# -----------------------------------------------------------------------------------------
# Links
# -----------------------------------------------------------------------------------------


def task_log_url(airflow_base: str | None, dag_id: str | None, run_id: str | None, task_id: str | None) -> str | None:
    """The Airflow 3 UI page of a task instance (its log): ``{base}/dags/{dag}/runs/{run}/tasks/{task}``."""
    if not (airflow_base and dag_id and run_id and task_id):
        return None
    return f"{airflow_base.rstrip('/')}/dags/{_q(dag_id)}/runs/{_q(run_id)}/tasks/{_q(task_id)}"


def _q(value) -> str:
    return quote(str(value), safe="")  # run ids hold ':' and '+'


def mlflow_run_url(
    mlflow_base: str | None, run_id: str | None, experiment_id: str | None = None, artifact: str | None = None
) -> str | None:
    """The MLflow UI page of a run (``{base}/#/experiments/{exp}/runs/{run}``), or of one of its
    artifacts (``.../artifactPath/{path}``); without the experiment, ``{base}/#/runs/{run}``."""
    if not (mlflow_base and run_id):
        return None
    base = mlflow_base.rstrip("/")
    if not experiment_id:
        return f"{base}/#/runs/{_q(run_id)}"
    url = f"{base}/#/experiments/{_q(experiment_id)}/runs/{_q(run_id)}"
    return f"{url}/artifactPath/{quote(artifact)}" if artifact else url


@dataclass(frozen=True)
class Links:
    """Where to look. ``drift_report`` is a URL (the report as an MLflow artifact) and/or
    ``drift_report_path`` the file the monitor wrote; ``extra`` are ``(label, url)`` pairs
    shown first (e.g. where to answer an approval)."""

    task_log: str | None = None
    mlflow_run: str | None = None
    drift_report: str | None = None
    drift_report_path: str | None = None
    extra: tuple[tuple[str, str], ...] = ()

    def _items(self) -> list[tuple[str, str | None, str | None]]:
        """``(label, url, path)`` in the order they are shown."""
        items = [(label, url, None) for label, url in self.extra]
        if self.mlflow_run:
            items.append(("MLflow run", self.mlflow_run, None))
        if self.drift_report or self.drift_report_path:
            items.append(("drift report", self.drift_report, self.drift_report_path))
        if self.task_log:
            items.append(("task log", self.task_log, None))
        return items

    def plain(self) -> str:
        """``MLflow run <url>, drift report <url>, task log <url>`` (the ``text`` fallback)."""
        return ", ".join(f"{label} {_esc(url or path)}" for label, url, path in self._items())

    def mrkdwn(self) -> str:
        """``<url|MLflow run> · <url|drift report> · <url|task log>``."""
        parts = []
        for label, url, path in self._items():
            parts.append(f"<{_esc(url)}|{label}>" if url else f"{label} `{_esc(path)}`")
        return " · ".join(parts) or "no links"


def latest_monitor_report(records: Iterable[Mapping[str, Any]], as_of: str | None = None) -> dict[str, Any] | None:
    """The newest ``monitor`` ledger record (of one model) on or before ``as_of`` that has a
    drift report: ``{"as_of", "mlflow_run_id", "drift_report"}``, or ``None``."""
    best = None
    for rec in records:
        details = rec.get("details") or {}
        if rec.get("event") != "monitor" or not details.get("drift_report"):
            continue
        if as_of and rec.get("as_of") and str(rec["as_of"]) > str(as_of)[:10]:
            continue
        if best is None or (str(rec.get("as_of") or ""), rec.get("seq", 0)) >= (
            str(best.get("as_of") or ""),
            best.get("seq", 0),
        ):
            best = rec
    if best is None:
        return None
    d = best["details"]
    return {"as_of": best.get("as_of"), "mlflow_run_id": d.get("mlflow_run_id"), "drift_report": d["drift_report"]}


# -----------------------------------------------------------------------------------------
# Alerts and their payloads
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alert:
    """One alert: ``payload`` is what Slack receives; ``key`` identifies "the same alert"
    (kind, model and the failing items) for de-duplication."""

    kind: str
    model: str
    severity: str
    key: str
    payload: dict[str, Any] = field(hash=False)

    @property
    def text(self) -> str:
        return self.payload["text"]

    @property
    def key_hash(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]


def dedupe_key(kind: str, model: str, items: Iterable[str] = ()) -> str:
    return f"{kind}|{model}|{','.join(sorted(set(map(str, items))))}"


def _esc(value: Any) -> str:
    """Slack's three control characters, escaped (every dynamic piece of mrkdwn text)."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def num(value: Any, signed: bool = False) -> str:
    """Four significant digits (``0.84``, ``45.31``, ``-0.07`` with ``signed`` as ``-0.07``/``+0.02``)."""
    if value is None:
        return "n/a"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if v != v:
        return "NaN"
    return f"{v:+.4g}" if signed else f"{v:.4g}"


def _severity(severity: str | None, kind: str) -> str:
    sev = severity or DEFAULT_SEVERITY.get(kind, "red")
    if sev not in COLORS:
        raise ValueError(f"severity {sev!r} is not one of {', '.join(COLORS)}")
    return sev


def _payload(sev: str, title: str, sections: list[str], fallback: str, links: Links, context: str) -> dict[str, Any]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(f"{EMOJI[sev]} {title}", 150), "emoji": True}}
    ]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": _cut(s, 3000)}} for s in sections if s]
    plain = links.plain()
    return {
        "text": _cut(f"{EMOJI[sev]} {fallback}" + (f"; {plain}" if plain else ""), 3000),
        "blocks": blocks,
        "attachments": [
            {
                "color": COLORS[sev],
                "blocks": [
                    {
                        "type": "context",
                        "elements": [
                            {"type": "mrkdwn", "text": _cut(f"severity *{sev}* · {context}", 3000)},
                            {"type": "mrkdwn", "text": _cut(links.mrkdwn(), 3000)},
                        ],
                    }
                ],
            }
        ],
    }


def _context(model: str, as_of: str | None = None, *more: str) -> str:
    parts = [f"model `{_esc(model)}`"]
    if as_of:
        parts.append(f"as of {_esc(as_of)}")
    return " · ".join([*parts, *(m for m in more if m)])


def _bullets(lines: list[str], total: int | None = None) -> str:
    total = len(lines) if total is None else total
    shown = lines[:MAX_LISTED]
    more = f"\n… and {total - len(shown)} more" if total > len(shown) else ""
    return "\n".join(f"• {line}" for line in shown) + more


# -- gate failure -------------------------------------------------------------------------


def gate_label(result: Mapping[str, Any]) -> str:
    """``recall_min[region=north]``: the gate, and its slice when it is not the whole holdout."""
    sl = result.get("slice")
    return f"{result.get('gate')}[{sl}]" if sl and sl != "all" else str(result.get("gate"))


def gate_line(result: Mapping[str, Any]) -> str:
    """``gate `recall_min[region=north]` failed: 0.84 < 0.9 (champion 0.91, -0.07)``."""
    head = f"gate `{_esc(gate_label(result))}` failed"
    obs, thr = result.get("observed"), result.get("threshold")
    if obs is None or thr is None:
        return f"{head}: {_esc(result.get('reason') or 'no value')}"
    op = "<" if float(obs) < float(thr) else ">" if float(obs) > float(thr) else "="
    text = f"{head}: {num(obs)} {op} {num(thr)}"
    if result.get("champion") is not None:
        text += f" (champion {num(result['champion'])}, {num(result.get('delta'), signed=True)})"
    return text


def gate_failure(
    model: str,
    gates: Mapping[str, Any],
    *,
    run_id: str | None = None,
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """The candidate failed its gates. ``gates`` is :func:`retrain_lib.evaluation.check_gates`'s
    result (``results`` with ``gate, slice, observed, threshold, champion, delta, passed, reason``)."""
    sev = _severity(severity, "gate_failure")
    results = list(gates.get("results") or [])
    failed = [r for r in results if not r.get("passed")] or list(gates.get("failed") or [])
    lines = [gate_line(r) for r in failed]
    champ = gates.get("champion_version")
    head = (
        f"*{len(failed)} of {len(results)} gate checks failed*: the candidate"
        + (f" (MLflow run `{_esc(run_id)}`)" if run_id else "")
        + (f" is not promoted; champion v{_esc(champ)} stays." if champ else " is not registered (no champion yet).")
    )
    fallback = (
        f"{model} candidate rejected: "
        + "; ".join(lines[:3])
        + (f"; and {len(lines) - 3} more" if len(lines) > 3 else "")
    )
    payload = _payload(
        sev,
        f"Gate failure: {model} candidate rejected",
        [head, _bullets(lines)],
        fallback,
        links,
        _context(model, as_of),
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
    return _esc(text)


def _rows_block(failures: list[Mapping[str, Any]]) -> str:
    parts = []
    for f in failures[:MAX_LISTED]:
        rows = list(f.get("rows") or [])[:MAX_ROWS]
        if not rows:
            continue
        body = "\n".join(_esc(json.dumps(r, default=str)) for r in rows)
        parts.append(f"`{_esc(f.get('column') or 'table')}` {_esc(f.get('expectation'))}:\n```{body}```")
    return ("*Offending rows*\n" + "\n".join(parts)) if parts else ""


def validation_failure(
    model: str,
    *,
    failures: list[Mapping[str, Any]] = (),
    problems: list[str] = (),
    stage: str = "retrain",
    window: list[str] | tuple[str, str] | None = None,
    rows: int | None = None,
    quarantine: str | None = None,
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """Data failed its expectations. ``failures`` are failed
    :class:`~retrain_lib.validation_report.ExpectationResult` dicts (``explain``, ``observed_value``,
    ``rows``: offending rows); ``problems`` the other reasons the data is unfit (a snapshot's
    ``problems``; lines already explained by ``failures`` are not repeated)."""
    sev = _severity(severity, "validation_failure")
    failures = list(failures)
    explained = {f.get("explain") for f in failures}
    others = [p for p in problems if p not in explained]
    lines = [expectation_line(f) for f in failures] + [_esc(p) for p in others]
    where = f" on {window[0]}..{window[1]}" if window else ""
    where += f" ({rows} rows)" if rows is not None else ""
    if stage == "retrain":
        then = "the retrain stopped before training" + (
            f"; batch quarantined in `{_esc(quarantine)}`" if quarantine else ""
        )
    else:
        then = "the monitor carried on (drift and performance were still checked)"
    head = f"*{len(lines)} check(s) failed*{where}: {then}."
    fallback = f"{model}: data validation failed ({stage}): " + "; ".join(lines[:3])
    payload = _payload(
        sev,
        f"Data validation failed: {model} ({stage})",
        [head, _bullets(lines), _rows_block(failures)],
        fallback,
        links,
        _context(model, as_of),
    )
    items = [f"{f.get('column') or 'table'}:{f.get('expectation')}" for f in failures]
    items += [re.sub(r"[0-9.,%]+", "#", p) for p in others]  # counts change from day to day
    return Alert("validation_failure", model, sev, dedupe_key(f"validation_failure:{stage}", model, items), payload)


# -- drift --------------------------------------------------------------------------------


def feature_line(f: Mapping[str, Any]) -> str:
    """``income` ks p-value 0.0001 <= 0.001`` (tests) or ``region` psi 0.41 >= 0.2`` (distances)."""
    name, method = _esc(f.get("name")), _esc(f.get("method"))
    if f.get("p_value") is not None:
        op = "<=" if f.get("drifted") else ">"
        return f"`{name}` {method} p-value {num(f['p_value'])} {op} {num(f.get('threshold'))}"
    op = ">=" if f.get("drifted") else "<"
    return f"`{name}` {method} {num(f.get('score'))} {op} {num(f.get('threshold'))}"


def drift(model: str, monitor: Mapping[str, Any], *, links: Links = Links(), severity: str | None = None) -> Alert:
    """The monitor found drift and decided to act. ``monitor`` is the monitor's result (or
    its ledger ``details``): ``action``, ``as_of``, ``reasons`` and ``drift`` (``top``,
    ``drifted_share``, ``drift_share_threshold``) or those keys at its top level."""
    sev = _severity(severity, "drift")
    d = monitor.get("drift") or monitor
    top = [f for f in (d.get("top") or d.get("top_features") or []) if f.get("drifted")]
    if not top:
        top = [f for f in d.get("features") or [] if f.get("drifted")]
    share, limit = d.get("drifted_share"), d.get("drift_share_threshold")
    action = monitor.get("action") or "retrain"
    head = (
        f"*{num(share * 100 if share is not None else None)}% of features drifted*"
        + (f" (>= {num(limit * 100)}%)" if limit is not None else "")
        + f" on the current window vs the champion's training data: *{_esc(action)}*"
        + (" (throttled)" if monitor.get("throttled") else "")
        + (f"; champion v{_esc(monitor['champion_version'])}" if monitor.get("champion_version") else "")
        + "."
    )
    lines = [feature_line(f) for f in top]
    fallback = f"{model}: drift, {action}: " + "; ".join(lines[:3])
    payload = _payload(
        sev,
        f"Drift: {model} → {action}",
        [head, "*Top drifted features*\n" + _bullets(lines)],
        fallback,
        links,
        _context(model, monitor.get("as_of")),
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
        lines.append(f"{_esc(k)} {num(candidate[k])}{extra}")
    return "*Holdout metrics*\n" + _bullets(lines, len(candidate))


def promotion(
    model: str,
    deployed: Mapping[str, Any],
    *,
    evaluation: Mapping[str, Any] | None = None,
    reason: str | None = None,
    as_of: str | None = None,
    links: Links = Links(),
    severity: str | None = None,
) -> Alert:
    """A version became champion. ``deployed`` is
    :func:`retrain_lib.promotion.deploy_candidate`'s result (``version``, ``mode``, ``moves``);
    ``evaluation`` its holdout metrics (``candidate``, ``champion``)."""
    sev = _severity(severity, "promotion")
    version = deployed.get("version")
    move = next((m for m in deployed.get("moves") or [] if m.get("alias") == "champion"), {})
    before = move.get("from")
    head = (
        f"*v{_esc(version)} is now champion*"
        + (f", replacing v{_esc(before)}" if before else " (first champion)")
        + f" (deploy mode {_esc(deployed.get('mode') or 'direct')})."
        + (f"\nWhy: {_esc(reason)}" if reason else "")
    )
    if deployed.get("reevaluated"):
        head += f"\nRe-evaluated against a champion that moved: {len(deployed['reevaluated'])} time(s)."
    ev = evaluation or {}
    fallback = f"{model}: v{_esc(version)} promoted to champion" + (f" (was v{_esc(before)})" if before else "")
    payload = _payload(
        sev,
        f"Promoted: {model} v{version}",
        [head, _metric_fields(ev.get("candidate"), ev.get("champion"))],
        fallback,
        links,
        _context(model, as_of),
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
    :func:`retrain_lib.promotion.rollback_model`'s result (``from``, ``to``, ``reason``)."""
    sev = _severity(severity, "rollback")
    src, dst = result.get("from"), result.get("to")
    head = (
        f"*champion moved back from v{_esc(src)} to v{_esc(dst)}*; v{_esc(src)} is tagged "
        "`retrain.rolled_back=true`.\nWhy: " + _esc(result.get("reason") or "champion degraded")
    )
    fallback = (
        f"{model}: rolled back from v{_esc(src)} to v{_esc(dst)}: {_esc(result.get('reason') or 'champion degraded')}"
    )
    payload = _payload(sev, f"Rollback: {model} v{src} → v{dst}", [head], fallback, links, _context(model, as_of))
    return Alert("rollback", model, sev, dedupe_key("rollback", model, [f"{src}->{dst}"]), payload)


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
    ``started`` is :func:`retrain_lib.rollout_run.start_rollout`'s result, ``outcome``
    :func:`~retrain_lib.rollout_run.finish_rollout`'s."""
    kind = "promotion" if decision == "promote" else "rollback"
    sev = _severity(severity, kind)
    version, champion, mode = started.get("challenger"), started.get("champion"), started.get("mode") or "canary"
    why = reason or outcome.get("reason") or ""
    if decision == "promote" and outcome.get("promoted"):
        title = f"Rollout promoted: {model} v{version}"
        head = f"*challenger v{_esc(version)} is now champion* after its {_esc(mode)} rollout, replacing v{_esc(champion)}."
        fallback = f"{model}: {_esc(mode)} rollout promoted v{_esc(version)} (was v{_esc(champion)})"
    else:
        title = f"Rollout rolled back: {model} v{version}"
        head = (
            f"*challenger v{_esc(version)} was rolled back* during its {_esc(mode)} rollout; "
            f"champion v{_esc(outcome.get('champion') or champion)} keeps all traffic."
        )
        fallback = f"{model}: {_esc(mode)} rollout of v{_esc(version)} rolled back: {_esc(why)}"
    if why:
        head += f"\nWhy: {_esc(why)}"
    payload = _payload(sev, title, [head], fallback, links, _context(model, as_of, f"mode {_esc(mode)}"))
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
    :func:`retrain_lib.approval_steps.approval_request`'s result (``reasons``, ``subject``);
    put the page where it is answered in ``links.extra``."""
    sev = _severity(severity, "approval_needed")
    reasons = [_esc(r) for r in request.get("reasons") or []]
    who = ", ".join(approvers)
    head = (
        f"*{_esc(request.get('subject') or f'Promote {model} version {version}?')}*\n"
        f"Version v{_esc(version)} passed its gates; answer in Airflow (*Required actions*)"
        + (f" ({_esc(who)})" if who else "")
        + (f" within {num(timeout_hours)} h, or it counts as a rejection." if timeout_hours else ".")
    )
    fallback = f"{model}: approval needed to promote v{_esc(version)}: " + "; ".join(reasons[:3])
    payload = _payload(
        sev,
        f"Approval needed: {model} v{version}",
        [head, "*Why*\n" + _bullets(reasons)],
        fallback,
        links,
        _context(model, as_of),
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
    sev = _severity(severity, "failure")
    if isinstance(exception, BaseException):
        kind, message = type(exception).__name__, redact(exception)
    else:
        kind, message = "", redact(exception or "no exception recorded")
    error = f"{kind}: {message}" if kind else message
    tries = _tries(try_number, max_tries)
    head = (
        f"*{_esc(dag_id)}.{_esc(task_id)} failed*"
        + (f" ({tries})" if tries else "")
        + f" in run `{_esc(run_id)}`.\n```{_esc(_cut(error, 1500))}```"
    )
    fallback = (
        f"{model}: task {_esc(dag_id)}.{_esc(task_id)} failed"
        + (f" ({tries})" if tries else "")
        + f": {_esc(_cut(error, 300))}"
    )
    payload = _payload(sev, f"Task failed: {dag_id}.{task_id}", [head], fallback, links, _context(model, as_of))
    return Alert("failure", model, sev, dedupe_key("failure", model, [dag_id, task_id, kind or "error"]), payload)


# -----------------------------------------------------------------------------------------
# Facts read from what the platform wrote
# -----------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def retrain_validation_facts(snap: Mapping[str, Any]) -> dict[str, Any]:
    """Failures of a snapshot that failed validation, from its quarantine ``manifest.json``
    (failed expectations with offending rows) and its ``problems``."""
    where = snap.get("validation") or {}
    manifest = _read_json(Path(where["quarantine"]) / "manifest.json") if where.get("quarantine") else None
    return {
        "failures": list((manifest or {}).get("failed") or []),
        "problems": list(snap.get("problems") or []),
        "window": [snap.get("start"), snap.get("end")],
        "rows": snap.get("rows"),
        "quarantine": where.get("quarantine"),
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


# -----------------------------------------------------------------------------------------
# De-duplication (shared by every process through the platform database) and delivery
# -----------------------------------------------------------------------------------------


class DedupeStore:
    """Last-sent times of alerts in the ``retrain_alerts`` table of the platform database
    (the ledger's database: SQLite embedded, PostgreSQL in production)::

        key        VARCHAR(32) PRIMARY KEY  -- sha256 of "kind|model|items"
        kind, model, what TEXT              -- what the key stands for
        sent_at    FLOAT                    -- epoch seconds of the last send
        suppressed INTEGER                  -- repeats not sent since
    """

    _lock = threading.Lock()
    _ready: set[tuple[str, int]] = set()

    def __init__(self, url: str):
        from retrain_lib.audit import normalise_url

        self.url = normalise_url(url)

    @classmethod
    def from_settings(cls, settings) -> DedupeStore:
        return cls(settings.database_url)

    @staticmethod
    def _table():
        return _alerts_table()

    def _engine(self):
        import os

        from retrain_lib.audit import Ledger

        engine = Ledger(self.url).engine  # the same engine (WAL, busy timeout) as the ledger
        key = (self.url, os.getpid())
        if key not in self._ready:
            with self._lock:
                _alerts_table().metadata.create_all(engine, checkfirst=True)
                self._ready.add(key)
        return engine

    def claim(self, alert: Alert, window_minutes: float, now: float | None = None) -> float | None:
        """Record that ``alert`` is being sent unless it was sent within the window: returns the
        send time (a token for :meth:`release`) or ``None`` (a repeat: do not send). Atomic:
        of two processes claiming the same alert at once, one wins."""
        engine = self._engine()
        t = _alerts_table()
        now = time.time() if now is None else now
        values = {
            "key": alert.key_hash,
            "kind": alert.kind,
            "model": alert.model,
            "what": alert.key[:1000],
            "sent_at": now,
            "suppressed": 0,
        }
        if engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(t).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.key],
            set_={"sent_at": now, "suppressed": 0, "what": values["what"]},
            where=t.c.sent_at <= now - window_minutes * 60,
        ).returning(t.c.key)
        with engine.begin() as conn:
            won = conn.execute(stmt).first() is not None
            if not won:
                conn.execute(t.update().where(t.c.key == alert.key_hash).values(suppressed=t.c.suppressed + 1))
        return now if won else None

    def release(self, alert: Alert, token: float) -> None:
        """Forget a claim whose send failed, so the next occurrence is sent."""
        t = _alerts_table()
        with self._engine().begin() as conn:
            conn.execute(t.update().where((t.c.key == alert.key_hash) & (t.c.sent_at == token)).values(sent_at=0.0))

    def last_sent(self, alert: Alert) -> dict[str, Any] | None:
        t = _alerts_table()
        with self._engine().connect() as conn:
            row = conn.execute(t.select().where(t.c.key == alert.key_hash)).mappings().first()
        return None if row is None else dict(row)


_ALERTS_TABLE = None


def _alerts_table():
    global _ALERTS_TABLE
    if _ALERTS_TABLE is None:
        import sqlalchemy as sa

        _ALERTS_TABLE = sa.Table(
            TABLE,
            sa.MetaData(),
            sa.Column("key", sa.String(32), primary_key=True),
            sa.Column("kind", sa.Text, nullable=False),
            sa.Column("model", sa.Text, nullable=False),
            sa.Column("what", sa.Text, nullable=False),
            sa.Column("sent_at", sa.Float, nullable=False),
            sa.Column("suppressed", sa.Integer, nullable=False, default=0),
        )
    return _ALERTS_TABLE


SENT, SUPPRESSED, FAILED, DISABLED = "sent", "suppressed", "failed", "disabled"


def deliver(
    alert: Alert,
    post: Callable[[dict[str, Any]], Any],
    *,
    store: DedupeStore | None = None,
    dedupe_minutes: float = 60,
    retries: int = 3,
    retry_seconds: float = 2.0,
    sleep: Callable[[float], Any] = time.sleep,
) -> str:
    """Send ``alert.payload`` with ``post``; returns ``sent``, ``suppressed`` (sent within
    ``dedupe_minutes`` already) or ``failed`` (every attempt failed, each one logged). A
    failed attempt is retried ``retries`` times, waiting ``retry_seconds``, then twice as
    long each time. Never raises: the caller's outcome must not depend on Slack."""
    token = None
    try:
        if store is not None and dedupe_minutes > 0:
            try:
                token = store.claim(alert, dedupe_minutes)
            except Exception:  # noqa: BLE001 - no dedupe state: rather a repeat than a lost alert
                log.exception(
                    "alert de-duplication store %s unavailable; sending %s without it", redact(store.url), alert.kind
                )
                token = -1.0
            if token is None:
                log.info(
                    "alert %s of %s not sent: the same alert went out within %g min (%s)",
                    alert.kind,
                    alert.model,
                    dedupe_minutes,
                    alert.key,
                )
                return SUPPRESSED
        for attempt in range(retries + 1):
            try:
                post(alert.payload)
            except Exception as exc:  # noqa: BLE001 - Slack down, refused, 5xx, bad token: all logged
                # a client error may quote the webhook URL (its path is the secret) or a token
                log.warning(
                    "Slack alert %s of %s: attempt %d of %d failed: %s: %s",
                    alert.kind,
                    alert.model,
                    attempt + 1,
                    retries + 1,
                    type(exc).__name__,
                    redact(exc),
                )
                if attempt < retries:
                    sleep(retry_seconds * 2**attempt)
                continue
            log.info("Slack alert %s of %s sent: %s", alert.kind, alert.model, alert.text[:300])
            return SENT
        log.error(
            "Slack alert %s of %s NOT sent after %d attempts: %s",
            alert.kind,
            alert.model,
            retries + 1,
            alert.text[:1000],
        )
        if store is not None and token not in (None, -1.0):
            try:
                store.release(alert, token)
            except Exception:  # noqa: BLE001
                log.exception("could not release the de-duplication claim of alert %s", alert.key)
        return FAILED
    except Exception:  # noqa: BLE001 - alerting never changes the outcome of the step that alerts
        log.exception("alert %s of %s could not be delivered", alert.kind, alert.model)
        return FAILED
