"""The monitor checks of the fleet status: each check's summary from its ledger record and its
``monitor.json`` report, every feature's drift score on its axis (p-value or distance), and
the drift trend of the last checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from retrain_lib.tools.status_links import mlflow_run_url, report_relpath
from retrain_lib.tools.status_values import finite_float, read_json

P_VALUE, DISTANCE = "p_value", "distance"  # the two axes of drift scores


def day_of(rec: dict) -> str:
    """The logical day of a ledger record (its ``as_of``; the day it was written if it has none)."""
    return rec.get("as_of") or str(rec.get("time") or "")[:10]


def latest_record(records: list[dict]) -> dict | None:
    """The record of the latest day (the last written of that day), not the last written."""
    return max(records, key=lambda r: (day_of(r), r["seq"]), default=None)


# The axis of each built-in method of :data:`retrain_lib.stats.drift_methods.METHODS` (a test keeps them
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
    of :mod:`retrain_lib.stats.drift_methods` when it is loaded (else :data:`BUILTIN_METHOD_AXES`); a method
    neither knows is judged by whether it reported a p-value."""
    import sys

    drift = sys.modules.get("retrain_lib.stats.drift_methods")
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
    t = finite_float(feature.get("threshold"))
    if t is None or t <= 0:
        return None
    if feature.get("axis") == P_VALUE:
        p = finite_float(feature.get("p_value"))
        if p is None or t >= 1:
            return None
        return 0.0 if p >= 1 else math.log(max(p, 1e-300)) / math.log(t)
    score = finite_float(feature.get("score"))
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


def is_throttled(details: dict, monitor_json: dict | None = None) -> bool:
    """A retrain the triggers asked for but ``min_retrain_interval_days`` / ``max_retrains``
    held back (the check's action is then ``healthy``)."""
    if "throttled" in details:
        return bool(details["throttled"])
    if monitor_json is not None and "throttled" in monitor_json:
        return bool(monitor_json["throttled"])
    return any(str(r).startswith("throttled") for r in details.get("reasons") or [])


def performance_signal(details: dict) -> dict | None:
    """The champion's live metric of a monitor record (its ``performance`` signal)."""
    sig = next((s for s in details.get("signals") or [] if s.get("signal") == "performance"), None)
    if sig is None or finite_float(sig.get("value")) is None:
        return None
    detail = sig.get("detail") or {}
    return {
        "live": finite_float(sig.get("value")),
        "limit": finite_float(sig.get("threshold")),
        "baseline": finite_float(detail.get("baseline")),
        "level": detail.get("level"),
        "critical": bool(sig.get("triggered")),
    }


def monitor_summary(rec: dict, reports_dir: Path, ui_url: str, *, full: bool) -> dict[str, Any]:
    """A monitor check (ledger record ``rec``) with every feature's score from its report (the
    ledger's top features when the report is gone); ``full`` adds the windows, the dataset
    drift share and the live performance of the report."""
    d = rec.get("details") or {}
    monitor_json = read_json(d.get("report"))
    throttled = is_throttled(d, monitor_json)
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
        "drifted_share": finite_float(d.get("drifted_share")),
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
        out["drift_share_threshold"] = finite_float(drift.get("drift_share_threshold"))
        out["reference_window"] = drift.get("reference_window")
        out["current_window"] = drift.get("current_window")
        perf = (monitor_json or {}).get("performance") or {}
        out["performance"] = {
            k: perf.get(k) for k in ("metric", "live", "baseline", "labelled_rows") if k in perf
        } or None
    return out


def monitors_by_day(monitors: list[dict]) -> dict[str, dict]:
    """The monitor record of each day (the last written that day)."""
    by_day: dict[str, dict] = {}
    for rec in sorted(monitors, key=lambda r: r["seq"]):
        by_day[day_of(rec)] = rec
    return by_day


def drift_trend(monitors: list[dict], reports_dir: Path, ui_url: str, history: int) -> list[dict]:
    """The last ``history`` monitor checks, one per day (the latest record of a day), oldest first."""
    by_day = monitors_by_day(monitors)
    days = sorted(by_day)[-history:] if history > 0 else []
    out = []
    for day in days:
        s = monitor_summary(by_day[day], reports_dir, ui_url, full=False)
        named = [f for f in s["features"] if f.get("name")]
        out.append(
            {
                "as_of": day,
                "seq": s["seq"],
                "action": s["action"],
                "throttled": s["throttled"],
                "state": s["state"],
                "drifted_share": s["drifted_share"],
                "scores": {f["name"]: finite_float(f.get("score")) for f in named},
                "p_values": {f["name"]: finite_float(f.get("p_value")) for f in named if f["axis"] == P_VALUE},
                "axes": {f["name"]: f["axis"] for f in named},
                "thresholds": {f["name"]: finite_float(f.get("threshold")) for f in named},
                "drifted": sorted(f["name"] for f in named if f.get("drifted")),
                "features_source": s["features_source"],
            }
        )
    return out
