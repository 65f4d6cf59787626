"""The decisions of the fleet status: ledger records other than monitor checks (gate verdicts,
promotions, rollbacks, rejections) as entries with their outcome, and the last gate verdict
with every gate's result."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from retrain_lib.pipeline.adaptation_steps import NO_GAIN, REJECTED
from retrain_lib.tools.status_links import mlflow_run_url

log = logging.getLogger(__name__)

# Ledger events listed as "decisions" (monitor checks have their own section; gates too, but
# a gate verdict is a decision an operator looks for next to promotions and rejections).
MONITOR_EVENT = "monitor"
GATES_EVENT = "gates"
# Outcomes of a retrain that did not deploy its candidate: a ``reject`` record (failed gates,
# an approver's no), a ``no_gain`` record, or any record whose details carry ``outcome``.
NOT_DEPLOYED = (REJECTED, NO_GAIN)


def retrain_outcome(rec: dict) -> str | None:
    """``"rejected"`` or ``"no_gain"`` when the record is a retrain that deployed nothing: an
    outcome in its details, a ``reject`` or ``no_gain`` event; else ``None``."""
    outcome = (rec.get("details") or {}).get("outcome")
    if outcome in NOT_DEPLOYED:
        return outcome
    return {"reject": REJECTED, "no_gain": NO_GAIN}.get(rec["event"])


def gates_summary(client, rec: dict | None, ui_url: str, *, cache: dict | None = None) -> dict[str, Any] | None:
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


def decision_reason(rec: dict) -> str:
    """Why a decision was taken: its reason, else what its details say (a gate verdict's failures)."""
    d = rec.get("details") or {}
    if rec.get("reason"):
        return str(rec["reason"])
    if rec["event"] == GATES_EVENT:
        return "all gates passed" if d.get("passed") else "failed: " + "; ".join(d.get("failed") or [])
    if d.get("failed"):
        return "; ".join(str(x) for x in d["failed"])
    return str(d.get("reason") or "")


def decision_entry(rec: dict, ui_url: str) -> dict[str, Any]:
    """A ledger record as a decision: event, alias move, reason, MLflow run and retrain outcome."""
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
        "reason": decision_reason(rec),
        "run_id": run_id,
        "run_url": mlflow_run_url(ui_url, run_id),
        "outcome": retrain_outcome(rec),
        "passed": d.get("passed") if rec["event"] == GATES_EVENT else None,
        "hash": rec.get("hash"),
    }
