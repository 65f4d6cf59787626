"""The fleet's state in one place: what ``retrain status`` prints and the Airflow fleet page shows.

Everything comes from the real sources, read once per call:

* the MLflow registry: the aliases ``champion``, ``challenger`` and ``previous-champion``, each
  version's tags (training window, ``metric.*``, gates, promotion day) and the registered
  model's rollout tags (``rollout.mode``, ``rollout.canary_percent``, ``rollout.sticky_key``);
* the decision ledger: the last monitor checks (drifted share, top features, report paths),
  the last gate results and the last decisions;
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

from retrain_lib.errors import RetrainError

log = logging.getLogger(__name__)

ALIASES = ("champion", "challenger", "previous-champion")
DEFAULT_HISTORY = 14  # monitor checks in the drift trend
DEFAULT_DECISIONS = 10  # ledger decisions per model
# Ledger events listed as "decisions" (monitor checks have their own section; gates too, but
# a gate verdict is a decision an operator looks for next to promotions and rejections).
MONITOR_EVENT = "monitor"
GATES_EVENT = "gates"


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
    metrics = {k[len("metric."):]: _float(v) for k, v in tags.items() if k.startswith("metric.")}
    gates = tags.get("gates.passed")
    return {
        "version": str(mv.version), "aliases": aliases, "run_id": mv.run_id,
        "created": _ms_to_iso(mv.creation_timestamp), "trained_as_of": tags.get("trained_as_of"),
        "promoted_as_of": tags.get("promoted_as_of"),
        "data_window": [tags.get("data.start"), tags.get("data.end")] if tags.get("data.start") else None,
        "metrics": {k: v for k, v in sorted(metrics.items()) if v is not None},
        "gates_passed": None if gates is None else gates == "true", "gates_summary": tags.get("gates.summary"),
        "rolled_back": tags.get("retrain.rolled_back") == "true", "approval": tags.get("approval.answer"),
        "description": mv.description or "",
        "mlflow_url": mlflow_version_url(ui_url, model, mv.version), "run_url": mlflow_run_url(ui_url, mv.run_id),
    }


def _registry_state(client, model: str, ui_url: str) -> dict[str, Any]:
    """Aliases, rollout state and the aliased versions of ``model`` (empty when unregistered)."""
    from retrain_lib.registry import _not_found
    from retrain_lib.serving.routing import state_from_tags

    errors = _registry_errors(client)
    try:
        rm = client.get_registered_model(model)
    except errors as exc:
        if _not_found(exc):
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
    return {"registered": True, "aliases": {a: aliases[a] for a in ALIASES if a in aliases},
            "rollout": state_from_tags(rm.tags).to_dict(), "versions": versions,
            "latest_version": None if latest is None else str(latest)}


def _features_of(monitor_json: dict | None) -> list[dict] | None:
    drift = (monitor_json or {}).get("drift") or {}
    feats = drift.get("features")
    if not feats:
        return None
    keys = ("name", "method", "kind", "score", "p_value", "threshold", "drifted")
    return [{k: f.get(k) for k in keys} for f in feats]


def _monitor_summary(rec: dict, reports_dir: Path, ui_url: str, *, full: bool) -> dict[str, Any]:
    d = rec.get("details") or {}
    out = {
        "seq": rec["seq"], "as_of": rec.get("as_of"), "time": rec.get("time"), "actor": rec.get("actor"),
        "action": d.get("action"), "reasons": list(d.get("reasons") or []),
        "champion_version": d.get("champion_version"), "drifted_share": _float(d.get("drifted_share")),
        "dataset_drift": d.get("dataset_drift_raw"), "top": list(d.get("top") or []),
        "mlflow_run_id": d.get("mlflow_run_id"), "run_url": mlflow_run_url(ui_url, d.get("mlflow_run_id")),
        "report": report_relpath(reports_dir, d.get("report")),
        "drift_report": report_relpath(reports_dir, d.get("drift_report")),
        "report_error": d.get("report_error"),
        "validation": d.get("validation"),
    }
    monitor_json = _read_json(d.get("report"))
    feats = _features_of(monitor_json)
    out["features_source"] = "report" if feats else "ledger"
    out["features"] = feats if feats is not None else [dict(t) for t in out["top"]]
    if full:
        drift = (monitor_json or {}).get("drift") or {}
        out["drift_share_threshold"] = _float(drift.get("drift_share_threshold"))
        out["reference_window"] = drift.get("reference_window")
        out["current_window"] = drift.get("current_window")
        perf = (monitor_json or {}).get("performance") or {}
        out["performance"] = {k: perf.get(k) for k in ("metric", "live", "baseline", "labelled_rows")
                              if k in perf} or None
    return out


def _drift_trend(monitors: list[dict], reports_dir: Path, ui_url: str, history: int) -> list[dict]:
    """The last ``history`` monitor checks, one per day (the latest record of a day), oldest first."""
    by_day: dict[str, dict] = {}
    for rec in monitors:
        by_day[rec.get("as_of") or rec["time"]] = rec
    days = sorted(by_day)[-history:] if history > 0 else []
    out = []
    for day in days:
        s = _monitor_summary(by_day[day], reports_dir, ui_url, full=False)
        out.append({"as_of": day, "seq": s["seq"], "action": s["action"], "drifted_share": s["drifted_share"],
                    "scores": {f["name"]: _float(f.get("score")) for f in s["features"] if f.get("name")},
                    "drifted": sorted(f["name"] for f in s["features"] if f.get("drifted")),
                    "features_source": s["features_source"]})
    return out


def _gates_summary(client, rec: dict | None, ui_url: str) -> dict[str, Any] | None:
    """The last gate verdict (ledger) with every gate's result from the run's ``gates/results.json``."""
    if rec is None:
        return None
    d = rec.get("details") or {}
    run_id = d.get("run_id")
    out = {"seq": rec["seq"], "as_of": rec.get("as_of"), "time": rec.get("time"), "actor": rec.get("actor"),
           "passed": d.get("passed"), "failed": list(d.get("failed") or []),
           "champion_version": d.get("champion_version"), "run_id": run_id, "run_url": mlflow_run_url(ui_url, run_id),
           "results": None}
    if run_id and client is not None:
        import os
        import tempfile

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bar from a library

        try:
            with tempfile.TemporaryDirectory(prefix="retrain-status-") as tmp:
                path = client.download_artifacts(run_id, "gates/results.json", tmp)
                payload = json.loads(Path(path).read_text())
            keys = ("gate", "metric", "slice", "threshold", "observed", "champion", "delta", "passed", "skipped",
                    "reason")
            out["results"] = [{k: r.get(k) for k in keys} for r in payload.get("results") or []]
        except Exception as exc:  # noqa: BLE001 - the ledger's verdict stands without the details
            log.warning("gate results of run %s unavailable: %s", run_id, exc)
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
    return {"seq": rec["seq"], "time": rec.get("time"), "as_of": rec.get("as_of"), "event": rec["event"],
            "actor": rec.get("actor"), "before": rec.get("before"), "after": rec.get("after"),
            "version": None if d.get("version") is None else str(d["version"]),
            "reason": _decision_reason(rec), "run_id": run_id, "run_url": mlflow_run_url(ui_url, run_id),
            "hash": rec.get("hash")}


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


def fleet_status(settings=None, *, model: str | None = None, history: int = DEFAULT_HISTORY,
                 decisions: int = DEFAULT_DECISIONS, client=None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The state of every model (or of ``model`` only), as JSON-serialisable dicts.

    Args:
        settings: :class:`~retrain_lib.settings.Settings` (default: :func:`load_settings`).
        model: only this model; :class:`UnknownModelError` when it has no config, no ledger
            record and no registered model.
        history: monitor checks in each model's drift trend (the latest, one per day).
        decisions: ledger decisions per model (newest first; monitor checks excluded).
        client: an ``MlflowClient`` (default: for an SQLite registry a
            :class:`~retrain_lib.registry_reader.SqliteRegistryReader`, which does not import
            MLflow; else an ``MlflowClient`` on the settings' tracking URI).
        progress: called with a short message before each slow step (the CLI shows them).

    Returns:
        ``{"generated_at", "state_dir", "tracking_uri", "mlflow_ui_url", "ledger",
        "config_problems", "models": [{"model", "config", "aliases", "versions", "champion",
        "challenger", "previous_champion", "rollout", "last_monitor", "drift_trend",
        "last_gates", "decisions", ...}]}``.
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
    client = client or reader_for(settings.tracking_uri, settings.registry_uri) or registry.get_client(
        settings.tracking_uri, settings.registry_uri)
    if model is not None:
        if model not in names:
            if not _registry_state(client, model, ui_url)["registered"]:
                known = ", ".join(names) or "none"
                raise UnknownModelError(
                    f"unknown model {model!r}: no config {settings.models_dir / (model + '.yaml')}, no ledger records "
                    f"and no registered model in {settings.tracking_uri}; known models: {known}")
        names = [model]
    records = ledger.records(model) if model is not None else ledger.records()
    by_model: dict[str, list[dict]] = {}
    for rec in records:
        by_model.setdefault(rec["model"], []).append(rec)
    out_models = []
    for i, name in enumerate(names, 1):
        say(f"[{i}/{len(names)}] {name}: registry, ledger, reports")
        out_models.append(_model_status(settings, client, name, valid.get(name), by_model.get(name, []),
                                        [p for p in problems if Path(p.get("file", "")).stem == name],
                                        ui_url=ui_url, history=history, decisions=decisions))
    return {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "state_dir": str(settings.state_dir), "reports_dir": str(settings.reports_dir),
        "tracking_uri": settings.tracking_uri, "mlflow_ui_url": ui_url, "ledger": repr(ledger),
        "ledger_records": len(records),
        "config_problems": problems if model is None else [p for p in problems
                                                           if Path(p.get("file", "")).stem == model],
        "models": out_models,
    }


def model_status(settings=None, model: str = "", **kwargs) -> dict[str, Any]:
    """The state of one model (see :func:`fleet_status`); :class:`UnknownModelError` if unknown."""
    if not model:
        raise ValueError(f"The 'model' parameter of model_status must be a model name. Got {model!r} instead.")
    return fleet_status(settings, model=model, **kwargs)["models"][0]


def _model_status(settings, client, name: str, loaded, records: list[dict], problems: list[dict], *,
                  ui_url: str, history: int, decisions: int) -> dict[str, Any]:
    cfg = loaded.config if loaded is not None else None
    reg = _registry_state(client, name, ui_url)
    versions = reg["versions"]
    aliases = reg["aliases"]
    monitors = [r for r in records if r["event"] == MONITOR_EVENT]
    last_monitor = _monitor_summary(monitors[-1], settings.reports_dir, ui_url, full=True) if monitors else None
    if last_monitor is not None and cfg is not None and last_monitor.get("drift_share_threshold") is None:
        last_monitor["drift_share_threshold"] = cfg.drift.drift_share
    gates = [r for r in records if r["event"] == GATES_EVENT]
    others = [r for r in records if r["event"] != MONITOR_EVENT]
    last_change = next((r for r in reversed(others) if r["event"] in ("promote", "rollback", "challenger", "reject")),
                       None)
    return {
        "model": name,
        "config": str(loaded.path) if loaded is not None else None,
        "config_problems": problems,
        "owner": cfg.owner if cfg else None, "task": cfg.task if cfg else None,
        "deploy_mode": cfg.deploy.mode if cfg else None,
        "drift_share_threshold": cfg.drift.drift_share if cfg else None,
        "dag_ids": {k: f"{name}__{k}" for k in ("monitor", "retrain", "rollout")},
        "registered": reg["registered"], "latest_version": reg.get("latest_version"),
        "aliases": aliases,
        "champion": versions.get(aliases.get("champion")) if aliases.get("champion") else None,
        "challenger": versions.get(aliases.get("challenger")) if aliases.get("challenger") else None,
        "previous_champion": (versions.get(aliases.get("previous-champion"))
                              if aliases.get("previous-champion") else None),
        "versions": versions,
        "rollout": reg["rollout"],
        "last_monitor": last_monitor,
        "monitor_checks": len(monitors),
        "drift_trend": _drift_trend(monitors, settings.reports_dir, ui_url, history),
        "last_gates": _gates_summary(client, gates[-1] if gates else None, ui_url),
        "last_decision": _decision(last_change, ui_url) if last_change else None,
        "decisions": [_decision(r, ui_url) for r in reversed(others)][:max(decisions, 0)],
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
    rec = next((r for r in reversed(Ledger.from_settings(settings).records(model))
                if r["event"] == event and r.get("actor") == actor), None)
    if rec is None:
        return {"mlflow_run": None, "report": None}
    d = rec.get("details") or {}
    ui_url = settings.platform.mlflow_ui_url
    run_id_ = d.get("mlflow_run_id") or d.get("run_id")
    report = report_relpath(settings.reports_dir, d.get("drift_report") or d.get("report"))
    return {"mlflow_run": mlflow_run_url(ui_url, run_id_), "report": report}
