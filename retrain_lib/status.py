"""The fleet's state in one place: what ``retrain status`` prints and the Airflow fleet page shows.

Everything comes from the real sources, read once per call:

* the MLflow registry: the aliases ``champion``, ``challenger`` and ``previous-champion``, each
  version's tags (training window, ``metric.*``, gates, promotion day) and the registered
  model's rollout tags (``rollout.mode``, ``rollout.canary_percent``, ``rollout.sticky_key``);
* the decision ledger: the monitor checks (the latest day's verdict, the drifted share and the
  champion's live metric per day), the last gate results, the last decisions and the outcome
  of each retrain (promoted, challenger, rejected, no gain);
* the monitor's own reports under ``<state_dir>/reports/<model>/<as_of>/`` (``monitor.json``
  holds every feature's score; ``drift_report.html`` is the Evidently report).

The result is plain JSON-serialisable dicts. An SQLite registry is read from its file
(:mod:`retrain_lib.registry_reader`); MLflow (about 6 s cold) is imported only for any other
registry. The rest is the standard library, PyYAML, pydantic and SQLAlchemy.

Example::

    from retrain_lib.settings import load_settings
    from retrain_lib.status import fleet_status

    fleet = fleet_status(load_settings())
    for m in fleet["models"]:
        print(m["model"], m["aliases"].get("champion"), (m["last_monitor"] or {}).get("action"))
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from retrain_lib.adaptation_steps import NO_GAIN, REJECTED
from retrain_lib.errors import RetrainError

log = logging.getLogger(__name__)

ALIASES = ("champion", "challenger", "previous-champion")
DEFAULT_HISTORY = 14  # monitor checks in the drift trend
DEFAULT_DECISIONS = 10  # ledger decisions per model
DEFAULT_TIMELINE_DAYS = 60  # calendar days in the per-day timeline (live metric, drift share, markers)
METRIC_COLUMNS = 6  # version metrics shown: the gated ones always, then others up to this many
# Ledger events listed as "decisions" (monitor checks have their own section; gates too, but
# a gate verdict is a decision an operator looks for next to promotions and rejections).
MONITOR_EVENT = "monitor"
GATES_EVENT = "gates"
# Outcomes of a retrain that did not deploy its candidate: a ``reject`` record (failed gates,
# an approver's no), a ``no_gain`` record, or any record whose details carry ``outcome``.
NOT_DEPLOYED = (REJECTED, NO_GAIN)
# Timeline markers: ledger event -> marker kind (a failed ``gates`` verdict and the outcomes
# above are added by :func:`retrain_outcome`).
MARKER_EVENTS = {GATES_EVENT: "retrain", "promote": "promote", "challenger": "challenger", "rollback": "rollback"}
P_VALUE, DISTANCE = "p_value", "distance"  # the two axes of drift scores


class UnknownModelError(RetrainError, LookupError):
    """The model named has no config, no ledger record and no registered model."""


# -----------------------------------------------------------------------------------------
# Links
# -----------------------------------------------------------------------------------------


def mlflow_run_url(ui_url: str, run_id: str | None) -> str | None:
    """The MLflow UI page of a run (MLflow's experiment-independent ``#/runs/<id>`` route)."""
    return f"{ui_url.rstrip('/')}/#/runs/{quote(run_id)}" if run_id else None


def mlflow_version_url(ui_url: str, model: str, version: str | None) -> str | None:
    """The MLflow UI page of a registered model version."""
    return f"{ui_url.rstrip('/')}/#/models/{quote(model)}/versions/{quote(str(version))}" if version else None


def report_relpath(reports_dir: Path, path: str | None) -> str | None:
    """``path`` relative to ``reports_dir`` (POSIX), or ``None`` when it is missing, not a
    file, or outside the reports directory (never a way out of it)."""
    if not path:
        return None
    try:
        p = Path(path).resolve()
        rel = p.relative_to(Path(reports_dir).resolve())
    except (OSError, ValueError):
        return None
    return rel.as_posix() if p.is_file() else None


def resolve_report(reports_dir: Path, relpath: str) -> Path | None:
    """The file ``relpath`` names inside ``reports_dir``, or ``None`` when it is not a file
    there (``..``, absolute paths and symlinks out of the directory are refused)."""
    root = Path(reports_dir).resolve()
    if not relpath or "\x00" in relpath or Path(relpath).is_absolute():
        return None
    try:
        target = (root / relpath).resolve()
        target.relative_to(root)
    except (OSError, ValueError):
        return None
    return target if target.is_file() else None


# -----------------------------------------------------------------------------------------
# Small readers
# -----------------------------------------------------------------------------------------


def _float(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _ms_to_iso(ms: Any) -> str | None:
    try:
        return dt.datetime.fromtimestamp(int(ms) / 1000, dt.UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _read_json(path: str | None) -> dict | None:
    if not path:
        return None
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def _registry_errors(client) -> tuple[type[Exception], ...]:
    """What ``client``'s calls raise for a missing model or version: the
    :class:`~retrain_lib.registry_reader.SqliteRegistryReader`'s own errors (MLflow is not
    imported), else ``MlflowException``."""
    errors = getattr(client, "errors", None)
    if isinstance(errors, tuple):
        return errors
    from mlflow.exceptions import MlflowException

    return (MlflowException,)


def _version_info(client, model: str, version: str, aliases: list[str], ui_url: str) -> dict[str, Any]:
    """One registered version: lineage and metric tags, as plain values."""
    try:
        mv = client.get_model_version(model, str(version))
    except _registry_errors(client) as exc:
        log.warning("%s version %s: %s", model, version, exc)
        return {"version": str(version), "aliases": aliases, "missing": True}
    tags = dict(mv.tags or {})
    metrics = {k[len("metric.") :]: _float(v) for k, v in tags.items() if k.startswith("metric.")}
    gates = tags.get("gates.passed")
    return {
        "version": str(mv.version),
        "aliases": aliases,
        "run_id": mv.run_id,
        "created": _ms_to_iso(mv.creation_timestamp),
        "trained_as_of": tags.get("trained_as_of"),
        "promoted_as_of": tags.get("promoted_as_of"),
        "data_window": [tags.get("data.start"), tags.get("data.end")] if tags.get("data.start") else None,
        "metrics": {k: v for k, v in sorted(metrics.items()) if v is not None},
        "gates_passed": None if gates is None else gates == "true",
        "gates_summary": tags.get("gates.summary"),
        "rolled_back": tags.get("retrain.rolled_back") == "true",
        "approval": tags.get("approval.answer"),
        "description": mv.description or "",
        "mlflow_url": mlflow_version_url(ui_url, model, mv.version),
        "run_url": mlflow_run_url(ui_url, mv.run_id),
    }


def _registry_state(client, model: str, ui_url: str) -> dict[str, Any]:
    """Aliases, rollout state and the aliased versions of ``model`` (empty when unregistered)."""
    from retrain_lib.registry import is_not_found
    from retrain_lib.serving.routing import state_from_tags

    errors = _registry_errors(client)
    try:
        rm = client.get_registered_model(model)
    except errors as exc:
        if is_not_found(exc):
            return {"registered": False, "aliases": {}, "rollout": state_from_tags({}).to_dict(), "versions": {}}
        raise
    aliases = {k: str(v) for k, v in (rm.aliases or {}).items()}
    by_version: dict[str, list[str]] = {}
    for alias in ALIASES:
        if alias in aliases:
            by_version.setdefault(aliases[alias], []).append(alias)
    versions = {v: _version_info(client, model, v, names, ui_url) for v, names in by_version.items()}
    latest = None
    try:
        found = client.search_model_versions(f"name='{model}'", max_results=1000)
        latest = max((int(v.version) for v in found), default=None)
    except errors as exc:  # the count is informative only
        log.warning("cannot list the versions of %s: %s", model, exc)
    return {
        "registered": True,
        "aliases": {a: aliases[a] for a in ALIASES if a in aliases},
        "rollout": state_from_tags(rm.tags).to_dict(),
        "versions": versions,
        "latest_version": None if latest is None else str(latest),
    }


def _day_of(rec: dict) -> str:
    """The logical day of a ledger record (its ``as_of``; the day it was written if it has none)."""
    return rec.get("as_of") or str(rec.get("time") or "")[:10]


def _latest(records: list[dict]) -> dict | None:
    """The record of the latest day (the last written of that day), not the last written."""
    return max(records, key=lambda r: (_day_of(r), r["seq"]), default=None)


# The axis of each built-in method of :data:`retrain_lib.drift_methods.METHODS` (a test keeps them
# equal): ``retrain status`` reads them without importing drift's numpy and pandas (~1.5 s).
BUILTIN_METHOD_AXES = {
    "psi": DISTANCE,
    "ks": P_VALUE,
    "js": DISTANCE,
    "wasserstein": DISTANCE,
    "chi2": P_VALUE,
    "linf": DISTANCE,
    "missing_share": DISTANCE,
    "unseen": DISTANCE,
}


def uses_p_value(method: str | None, p_value: Any = None) -> bool:
    """Whether drift method ``method`` decides on a p-value (drift when *at or below* the
    threshold) rather than a distance (drift when *at or above* it), from the method registry
    of :mod:`retrain_lib.drift_methods` when it is loaded (else :data:`BUILTIN_METHOD_AXES`); a method
    neither knows is judged by whether it reported a p-value."""
    import sys

    drift = sys.modules.get("retrain_lib.drift_methods")
    known = drift.METHODS.get(str(method)) if drift is not None else None
    if known is not None:
        return known.uses_p_value
    if str(method) in BUILTIN_METHOD_AXES:
        return BUILTIN_METHOD_AXES[str(method)] == P_VALUE
    return p_value is not None


def relative_to_threshold(feature: dict) -> float | None:
    """How far a feature's drift score is along the way to its threshold (1.0 = at the
    threshold, more = drifted), on the axis of its method: ``score / threshold`` for a
    distance, ``log(p) / log(threshold)`` for a p-value (a smaller p-value is more drift)."""
    t = _float(feature.get("threshold"))
    if t is None or t <= 0:
        return None
    if feature.get("axis") == P_VALUE:
        p = _float(feature.get("p_value"))
        if p is None or t >= 1:
            return None
        return 0.0 if p >= 1 else math.log(max(p, 1e-300)) / math.log(t)
    score = _float(feature.get("score"))
    return None if score is None else score / t


def _feature(f: dict) -> dict[str, Any]:
    keys = ("name", "method", "kind", "score", "p_value", "threshold", "drifted")
    out = {k: f.get(k) for k in keys}
    out["axis"] = P_VALUE if uses_p_value(out["method"], out["p_value"]) else DISTANCE
    out["relative"] = relative_to_threshold(out)
    return out


def _features_of(monitor_json: dict | None) -> list[dict] | None:
    drift = (monitor_json or {}).get("drift") or {}
    feats = drift.get("features")
    if not feats:
        return None
    return [_feature(f) for f in feats]


def _throttled(details: dict, monitor_json: dict | None = None) -> bool:
    """A retrain the triggers asked for but ``min_retrain_interval_days`` / ``max_retrains``
    held back (the check's action is then ``healthy``)."""
    if "throttled" in details:
        return bool(details["throttled"])
    if monitor_json is not None and "throttled" in monitor_json:
        return bool(monitor_json["throttled"])
    return any(str(r).startswith("throttled") for r in details.get("reasons") or [])


def _performance_signal(details: dict) -> dict | None:
    """The champion's live metric of a monitor record (its ``performance`` signal)."""
    sig = next((s for s in details.get("signals") or [] if s.get("signal") == "performance"), None)
    if sig is None or _float(sig.get("value")) is None:
        return None
    detail = sig.get("detail") or {}
    return {
        "live": _float(sig.get("value")),
        "limit": _float(sig.get("threshold")),
        "baseline": _float(detail.get("baseline")),
        "level": detail.get("level"),
        "critical": bool(sig.get("triggered")),
    }


def _monitor_summary(rec: dict, reports_dir: Path, ui_url: str, *, full: bool) -> dict[str, Any]:
    d = rec.get("details") or {}
    monitor_json = _read_json(d.get("report"))
    throttled = _throttled(d, monitor_json)
    out = {
        "seq": rec["seq"],
        "as_of": rec.get("as_of"),
        "time": rec.get("time"),
        "actor": rec.get("actor"),
        "action": d.get("action"),
        "throttled": throttled,
        # what the page and the CLI show: a throttled retrain request is not "healthy"
        "state": "throttled" if throttled and d.get("action") == "healthy" else d.get("action"),
        "reasons": list(d.get("reasons") or []),
        "champion_version": d.get("champion_version"),
        "drifted_share": _float(d.get("drifted_share")),
        "dataset_drift": d.get("dataset_drift_raw"),
        "top": list(d.get("top") or []),
        "mlflow_run_id": d.get("mlflow_run_id"),
        "run_url": mlflow_run_url(ui_url, d.get("mlflow_run_id")),
        "report": report_relpath(reports_dir, d.get("report")),
        "drift_report": report_relpath(reports_dir, d.get("drift_report")),
        "report_error": d.get("report_error"),
        "validation": d.get("validation"),
    }
    feats = _features_of(monitor_json)
    out["features_source"] = "report" if feats else "ledger"
    out["features"] = feats if feats is not None else [_feature(t) for t in out["top"]]
    if full:
        drift = (monitor_json or {}).get("drift") or {}
        out["drift_share_threshold"] = _float(drift.get("drift_share_threshold"))
        out["reference_window"] = drift.get("reference_window")
        out["current_window"] = drift.get("current_window")
        perf = (monitor_json or {}).get("performance") or {}
        out["performance"] = {
            k: perf.get(k) for k in ("metric", "live", "baseline", "labelled_rows") if k in perf
        } or None
    return out


def _by_day(monitors: list[dict]) -> dict[str, dict]:
    """The monitor record of each day (the last written that day)."""
    by_day: dict[str, dict] = {}
    for rec in sorted(monitors, key=lambda r: r["seq"]):
        by_day[_day_of(rec)] = rec
    return by_day


def _drift_trend(monitors: list[dict], reports_dir: Path, ui_url: str, history: int) -> list[dict]:
    """The last ``history`` monitor checks, one per day (the latest record of a day), oldest first."""
    by_day = _by_day(monitors)
    days = sorted(by_day)[-history:] if history > 0 else []
    out = []
    for day in days:
        s = _monitor_summary(by_day[day], reports_dir, ui_url, full=False)
        named = [f for f in s["features"] if f.get("name")]
        out.append(
            {
                "as_of": day,
                "seq": s["seq"],
                "action": s["action"],
                "throttled": s["throttled"],
                "state": s["state"],
                "drifted_share": s["drifted_share"],
                "scores": {f["name"]: _float(f.get("score")) for f in named},
                "p_values": {f["name"]: _float(f.get("p_value")) for f in named if f["axis"] == P_VALUE},
                "axes": {f["name"]: f["axis"] for f in named},
                "thresholds": {f["name"]: _float(f.get("threshold")) for f in named},
                "drifted": sorted(f["name"] for f in named if f.get("drifted")),
                "features_source": s["features_source"],
            }
        )
    return out


def retrain_outcome(rec: dict) -> str | None:
    """``"rejected"`` or ``"no_gain"`` when the record is a retrain that deployed nothing: an
    outcome in its details, a ``reject`` or ``no_gain`` event; else ``None``."""
    outcome = (rec.get("details") or {}).get("outcome")
    if outcome in NOT_DEPLOYED:
        return outcome
    return {"reject": REJECTED, "no_gain": NO_GAIN}.get(rec["event"])


def _markers(rec: dict) -> list[str]:
    kinds = []
    kind = MARKER_EVENTS.get(rec["event"])
    if kind:
        kinds.append(kind)
    outcome = retrain_outcome(rec)
    if outcome is None and rec["event"] == GATES_EVENT and (rec.get("details") or {}).get("passed") is False:
        outcome = REJECTED
    if outcome:
        kinds.append(outcome)
    return kinds


def _timeline(monitors: list[dict], others: list[dict], days: int) -> list[dict]:
    """One entry per calendar day of the last ``days`` days up to the latest day with a record:
    the day's monitor check (action, throttled, drifted share, the champion's live metric with
    its baseline and retrain limit) and the markers of that day's retrains, promotions,
    rollbacks and rejections. Days without a record are present with ``None`` values."""
    by_day = _by_day(monitors)
    events: dict[str, list[dict]] = {}
    for rec in others:
        for kind in _markers(rec):
            day = _day_of(rec)
            seen = events.setdefault(day, [])
            if not any(m["kind"] == kind for m in seen):  # a failed gate and its rejection: one marker
                seen.append(
                    {
                        "kind": kind,
                        "seq": rec["seq"],
                        "event": rec["event"],
                        "version": rec.get("after") or (rec.get("details") or {}).get("version"),
                        "reason": _decision_reason(rec),
                    }
                )
    known = sorted(set(by_day) | set(events))
    if not known or days <= 0:
        return []
    try:
        last = dt.date.fromisoformat(known[-1][:10])
        first = max(dt.date.fromisoformat(known[0][:10]), last - dt.timedelta(days=days - 1))
    except ValueError:  # not ISO days: the known days themselves
        span = known[-days:]
    else:
        span = [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    out = []
    for day in span:
        rec = by_day.get(day)
        d = (rec or {}).get("details") or {}
        perf = _performance_signal(d) or {}
        out.append(
            {
                "as_of": day,
                "monitor_seq": rec["seq"] if rec else None,
                "action": d.get("action"),
                "throttled": _throttled(d) if rec else None,
                "drifted_share": _float(d.get("drifted_share")),
                "live": perf.get("live"),
                "baseline": perf.get("baseline"),
                "limit": perf.get("limit"),
                "markers": events.get(day, []),
            }
        )
    return out


def gated_metrics(cfg) -> list[str]:
    """The metrics a model's gates and its performance trigger judge, in config order."""
    if cfg is None:
        return []
    names = [g.metric for g in cfg.gates if g.metric]
    if cfg.performance is not None:
        names.append(cfg.performance.metric)
    return list(dict.fromkeys(names))


def shown_metrics(versions: dict, gated: list[str], limit: int = METRIC_COLUMNS) -> list[str]:
    """The version metrics to show: every gated metric a version has, then the others
    alphabetically while fewer than ``limit`` are shown."""
    have = sorted({k for v in versions.values() for k in v.get("metrics") or {}})
    pinned = [m for m in gated if m in have]
    rest = [m for m in have if m not in pinned]
    return pinned + rest[: max(limit - len(pinned), 0)]


def _gates_summary(client, rec: dict | None, ui_url: str, *, cache: dict | None = None) -> dict[str, Any] | None:
    """The last gate verdict (ledger) with every gate's result from the run's ``gates/results.json``
    (kept in ``cache`` by run id once read)."""
    if rec is None:
        return None
    d = rec.get("details") or {}
    run_id = d.get("run_id")
    out = {
        "seq": rec["seq"],
        "as_of": rec.get("as_of"),
        "time": rec.get("time"),
        "actor": rec.get("actor"),
        "passed": d.get("passed"),
        "failed": list(d.get("failed") or []),
        "champion_version": d.get("champion_version"),
        "run_id": run_id,
        "run_url": mlflow_run_url(ui_url, run_id),
        "results": None,
    }
    if run_id and cache is not None and run_id in cache:
        out["results"] = cache[run_id]
    elif run_id and client is not None:
        import os
        import tempfile

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bar from a library

        try:
            with tempfile.TemporaryDirectory(prefix="retrain-status-") as tmp:
                path = client.download_artifacts(run_id, "gates/results.json", tmp)
                payload = json.loads(Path(path).read_text())
            keys = (
                "gate",
                "metric",
                "slice",
                "threshold",
                "observed",
                "champion",
                "delta",
                "passed",
                "skipped",
                "reason",
            )
            out["results"] = [{k: r.get(k) for k in keys} for r in payload.get("results") or []]
        except Exception as exc:  # noqa: BLE001 - the ledger's verdict stands without the details
            log.warning("gate results of run %s unavailable: %s", run_id, exc)
        else:
            if cache is not None:
                cache[run_id] = out["results"]
    return out


def _decision_reason(rec: dict) -> str:
    d = rec.get("details") or {}
    if rec.get("reason"):
        return str(rec["reason"])
    if rec["event"] == GATES_EVENT:
        return "all gates passed" if d.get("passed") else "failed: " + "; ".join(d.get("failed") or [])
    if d.get("failed"):
        return "; ".join(str(x) for x in d["failed"])
    return str(d.get("reason") or "")


def _decision(rec: dict, ui_url: str) -> dict[str, Any]:
    d = rec.get("details") or {}
    run_id = d.get("run_id") or d.get("mlflow_run_id")
    return {
        "seq": rec["seq"],
        "time": rec.get("time"),
        "as_of": rec.get("as_of"),
        "event": rec["event"],
        "actor": rec.get("actor"),
        "before": rec.get("before"),
        "after": rec.get("after"),
        "version": None if d.get("version") is None else str(d["version"]),
        "reason": _decision_reason(rec),
        "run_id": run_id,
        "run_url": mlflow_run_url(ui_url, run_id),
        "outcome": retrain_outcome(rec),
        "passed": d.get("passed") if rec["event"] == GATES_EVENT else None,
        "hash": rec.get("hash"),
    }


# -----------------------------------------------------------------------------------------
# The fleet
# -----------------------------------------------------------------------------------------


def model_names(settings, ledger=None) -> tuple[dict[str, Any], list[dict], list[str]]:
    """``(valid configs by name, config problems as dicts, every known model name)``: names
    from the config files (valid or not) and from the ledger."""
    from retrain_lib.audit import Ledger
    from retrain_lib.config import load_model_configs

    configs = load_model_configs([settings.models_dir], settings.platform) if settings.models_dir.is_dir() else None
    valid = dict(configs.models) if configs else {}
    problems = [p.to_dict() for p in configs.problems] if configs else []
    files = {p.stem for p in settings.models_dir.glob("*.yaml")} if settings.models_dir.is_dir() else set()
    ledger = ledger or Ledger.from_settings(settings)
    return valid, problems, sorted(set(valid) | files | set(ledger.models()))


def fleet_status(
    settings=None,
    *,
    model: str | None = None,
    history: int = DEFAULT_HISTORY,
    decisions: int = DEFAULT_DECISIONS,
    timeline_days: int = DEFAULT_TIMELINE_DAYS,
    client=None,
    gate_results: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The state of every model (or of ``model`` only), as JSON-serialisable dicts.

    Args:
        settings: :class:`~retrain_lib.settings.Settings` (default: :func:`load_settings`).
        model: only this model; :class:`UnknownModelError` when it has no config, no ledger
            record and no registered model.
        history: monitor checks in each model's drift trend (the latest, one per day).
        decisions: ledger decisions per model (newest first; monitor checks excluded).
        timeline_days: calendar days of each model's ``timeline`` (up to its latest record).
        client: an ``MlflowClient`` (default: for an SQLite registry a
            :class:`~retrain_lib.registry_reader.SqliteRegistryReader`, which does not import
            MLflow; else an ``MlflowClient`` on the settings' tracking URI).
        gate_results: a dict kept between calls (the fleet page's) in which the gate results
            of an MLflow run are kept once read (a run's ``gates/results.json`` never changes).
        progress: called with a short message before each slow step (the CLI shows them).

    Returns:
        ``{"generated_at", "state_dir", "tracking_uri", "mlflow_ui_url", "ledger",
        "config_problems", "models": [{"model", "config", "aliases", "versions", "champion",
        "challenger", "previous_champion", "rollout", "gated_metrics", "metric_columns",
        "last_monitor", "drift_trend", "timeline", "last_gates", "last_retrain", "decisions",
        ...}]}``. ``last_monitor`` is the check of the latest day (``state`` is its action, or
        ``"throttled"`` for a retrain request held back); each decision has an ``outcome``
        (``"rejected"``, ``"no_gain"`` or ``None``).
    """
    from retrain_lib import registry
    from retrain_lib.audit import Ledger
    from retrain_lib.registry_reader import reader_for
    from retrain_lib.settings import load_settings

    settings = settings or load_settings()
    say = progress or (lambda _msg: None)
    ui_url = settings.platform.mlflow_ui_url
    say("reading configs and the decision ledger")
    ledger = Ledger.from_settings(settings)
    valid, problems, names = model_names(settings, ledger)
    say("opening the MLflow registry")
    # an SQLite registry is read straight from its file (milliseconds; MLflow's import takes 6 s)
    client = (
        client
        or reader_for(settings.tracking_uri, settings.registry_uri)
        or registry.get_client(settings.tracking_uri, settings.registry_uri)
    )
    if model is not None:
        if model not in names:
            if not _registry_state(client, model, ui_url)["registered"]:
                known = ", ".join(names) or "none"
                raise UnknownModelError(
                    f"unknown model {model!r}: no config {settings.models_dir / (model + '.yaml')}, no ledger records "
                    f"and no registered model in {settings.tracking_uri}; known models: {known}"
                )
        names = [model]
    records = ledger.records(model) if model is not None else ledger.records()
    by_model: dict[str, list[dict]] = {}
    for rec in records:
        by_model.setdefault(rec["model"], []).append(rec)
    out_models = []
    for i, name in enumerate(names, 1):
        say(f"[{i}/{len(names)}] {name}: registry, ledger, reports")
        out_models.append(
            _model_status(
                settings,
                client,
                name,
                valid.get(name),
                by_model.get(name, []),
                [p for p in problems if Path(p.get("file", "")).stem == name],
                ui_url=ui_url,
                history=history,
                decisions=decisions,
                timeline_days=timeline_days,
                gate_results=gate_results,
            )
        )
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "state_dir": str(settings.state_dir),
        "reports_dir": str(settings.reports_dir),
        "tracking_uri": settings.tracking_uri,
        "mlflow_ui_url": ui_url,
        "ledger": ledger.display_url(),
        "ledger_records": len(records),
        "config_problems": problems
        if model is None
        else [p for p in problems if Path(p.get("file", "")).stem == model],
        "models": out_models,
    }


def model_status(settings=None, model: str = "", **kwargs) -> dict[str, Any]:
    """The state of one model (see :func:`fleet_status`); :class:`UnknownModelError` if unknown."""
    if not model:
        raise ValueError(f"The 'model' parameter of model_status must be a model name. Got {model!r} instead.")
    return fleet_status(settings, model=model, **kwargs)["models"][0]


def _model_status(
    settings,
    client,
    name: str,
    loaded,
    records: list[dict],
    problems: list[dict],
    *,
    ui_url: str,
    history: int,
    decisions: int,
    timeline_days: int = DEFAULT_TIMELINE_DAYS,
    gate_results: dict | None = None,
) -> dict[str, Any]:
    cfg = loaded.config if loaded is not None else None
    reg = _registry_state(client, name, ui_url)
    versions = reg["versions"]
    aliases = reg["aliases"]
    monitors = [r for r in records if r["event"] == MONITOR_EVENT]
    latest = _latest(monitors)
    last_monitor = _monitor_summary(latest, settings.reports_dir, ui_url, full=True) if latest else None
    if last_monitor is not None and cfg is not None and last_monitor.get("drift_share_threshold") is None:
        last_monitor["drift_share_threshold"] = cfg.drift.drift_share
    gates = [r for r in records if r["event"] == GATES_EVENT]
    others = [r for r in records if r["event"] != MONITOR_EVENT]
    last_change = next(
        (
            r
            for r in reversed(others)
            if r["event"] in ("promote", "rollback", "challenger", "reject") or retrain_outcome(r)
        ),
        None,
    )
    last_retrain = next(
        (
            r
            for r in reversed(others)
            if retrain_outcome(r)
            or (r["event"] in ("promote", "challenger") and (r.get("details") or {}).get("mode") != "by_hand")
        ),
        None,
    )
    gated = gated_metrics(cfg)
    return {
        "model": name,
        "config": str(loaded.path) if loaded is not None else None,
        "config_problems": problems,
        "owner": cfg.owner if cfg else None,
        "task": cfg.task if cfg else None,
        "deploy_mode": cfg.deploy.mode if cfg else None,
        "drift_share_threshold": cfg.drift.drift_share if cfg else None,
        "performance_metric": cfg.performance.metric if cfg and cfg.performance else None,
        "gated_metrics": gated,
        "metric_columns": shown_metrics(versions, gated),
        "dag_ids": {k: f"{name}__{k}" for k in ("monitor", "retrain", "rollout")},
        "registered": reg["registered"],
        "latest_version": reg.get("latest_version"),
        "aliases": aliases,
        "champion": versions.get(aliases.get("champion")) if aliases.get("champion") else None,
        "challenger": versions.get(aliases.get("challenger")) if aliases.get("challenger") else None,
        "previous_champion": (
            versions.get(aliases.get("previous-champion")) if aliases.get("previous-champion") else None
        ),
        "versions": versions,
        "rollout": reg["rollout"],
        "last_monitor": last_monitor,
        "monitor_checks": len(monitors),
        "drift_trend": _drift_trend(monitors, settings.reports_dir, ui_url, history),
        "timeline": _timeline(monitors, others, timeline_days),
        "last_gates": _gates_summary(client, gates[-1] if gates else None, ui_url, cache=gate_results),
        "last_retrain": _decision(last_retrain, ui_url) if last_retrain else None,
        "last_decision": _decision(last_change, ui_url) if last_change else None,
        "decisions": [_decision(r, ui_url) for r in reversed(others)][: max(decisions, 0)],
        "ledger_records": len(records),
    }


# -----------------------------------------------------------------------------------------
# Links of Airflow tasks (the plugin's operator extra links)
# -----------------------------------------------------------------------------------------

# task id -> ledger event whose record the task wrote
TASK_EVENTS = {"check_model": MONITOR_EVENT, "check_gates": GATES_EVENT}


def task_links(settings, dag_id: str, run_id: str, task_id: str) -> dict[str, str | None]:
    """Where the record a gate or drift task wrote points: ``{"mlflow_run": url, "report":
    path relative to the reports directory}`` (``None`` where there is nothing).

    The task is found through the ledger: its record's ``actor`` is ``<dag_id>/<run_id>``."""
    from retrain_lib.audit import Ledger

    event = TASK_EVENTS.get(task_id)
    model, _, kind = dag_id.rpartition("__")
    if event is None or not model or kind not in ("monitor", "retrain"):
        return {"mlflow_run": None, "report": None}
    actor = f"{dag_id}/{run_id}"
    rec = next(
        (
            r
            for r in reversed(Ledger.from_settings(settings).records(model))
            if r["event"] == event and r.get("actor") == actor
        ),
        None,
    )
    if rec is None:
        return {"mlflow_run": None, "report": None}
    d = rec.get("details") or {}
    ui_url = settings.platform.mlflow_ui_url
    run_id_ = d.get("mlflow_run_id") or d.get("run_id")
    report = report_relpath(settings.reports_dir, d.get("drift_report") or d.get("report"))
    return {"mlflow_run": mlflow_run_url(ui_url, run_id_), "report": report}
