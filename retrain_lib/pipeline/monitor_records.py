"""The records of the monitor path, as :mod:`retrain_lib.pipeline.records` holds the retrain
path's: :class:`Signal` (one check of a decision), :class:`MonitorDecision` (what
:func:`retrain_lib.pipeline.decision.decide` returns), :class:`MonitorResult` (what
:func:`retrain_lib.pipeline.monitor_run.monitor_model` returns) and :class:`MonitorSummary`
(what the monitor DAG's ``check_model`` task passes through XCom to the branch, the rollback
task and the retrain trigger).

Each is a frozen dataclass with one ``to_xcom()``, the JSON-safe dict of the keys the code
returned as a plain dict before these records (so ``monitor.json``, the ledger record, the
MLflow run, ``retrain monitor --format json`` and a run's XCom read the same), and one
``from_xcom(d)`` that reads it back; the keys without a default are needed, the others fall
back to their default::

    summary = MonitorSummary.from_xcom(ti.xcom_pull(task_ids="check_model"))
    summary.action, summary.reasons, summary.signal("drift")

Nothing heavy is imported here: the DAG tasks import this module when they run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self


@dataclass(frozen=True)
class Signal:
    """One check of a decision: its name (``drift``, ``performance``, ``age``, ``serving``...),
    whether it fired, the value it measured against its threshold and its details (a dict, or
    the explanation of ``prediction_drift``)."""

    signal: str
    triggered: bool
    value: Any = None
    threshold: Any = None
    detail: Any = None

    def to_xcom(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "triggered": self.triggered,
            "value": self.value,
            "threshold": self.threshold,
            "detail": self.detail,
        }

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            signal=d["signal"],
            triggered=bool(d.get("triggered", False)),
            value=d.get("value"),
            threshold=d.get("threshold"),
            detail=d.get("detail"),
        )


def signals_from_xcom(items: Iterable[Mapping[str, Any]] | None) -> tuple[Signal, ...]:
    """The :class:`Signal` of each ``{signal, triggered, value, threshold, detail}`` dict."""
    return tuple(Signal.from_xcom(s) for s in items or ())


def _find(signals: tuple[Signal, ...], name: str) -> Signal | None:
    return next((s for s in signals if s.signal == name), None)


@dataclass(frozen=True)
class MonitorDecision:
    """The monitor's decision: ``retrain``, ``healthy`` or ``rollback``, its reasons (the
    retrain's, then the notes recorded without retraining; the last one says why a retrain
    was ``throttled``), every :class:`Signal` checked, and when they apply the drift
    ``rebase`` (``{"window", "champion_version"}``: the drifted window becomes the next
    reference), the ``change_day`` the performance facts found and the ``rollback`` target
    (``{"from", "to"}`` versions)."""

    action: str
    reasons: tuple[str, ...] = ()
    throttled: bool = False
    signals: tuple[Signal, ...] = ()
    rebase: dict[str, Any] | None = None
    change_day: str | None = None
    rollback: dict[str, Any] | None = None

    def signal(self, name: str) -> Signal | None:
        """The first signal called ``name`` (``None``: not checked)."""
        return _find(self.signals, name)

    def with_signal(self, signal: Signal, reason: str | None = None) -> Self:
        """This decision with one more signal at the end (and one more reason when given)."""
        reasons = self.reasons if reason is None else (*self.reasons, reason)
        return dataclasses.replace(self, signals=(*self.signals, signal), reasons=reasons)

    def to_xcom(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "reasons": list(self.reasons),
            "throttled": self.throttled,
            "signals": [s.to_xcom() for s in self.signals],
        }
        if self.rebase is not None:
            out["rebase"] = dict(self.rebase)
        if self.change_day is not None:
            out["change_day"] = self.change_day
        if self.rollback is not None:
            out["rollback"] = dict(self.rollback)
        return out

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        rebase, rollback = d.get("rebase"), d.get("rollback")
        return cls(
            action=d["action"],
            reasons=tuple(d.get("reasons") or ()),
            throttled=bool(d.get("throttled", False)),
            signals=signals_from_xcom(d.get("signals")),
            rebase=dict(rebase) if rebase is not None else None,
            change_day=d.get("change_day"),
            rollback=dict(rollback) if rollback is not None else None,
        )


def _optional_dict(value) -> dict[str, Any] | None:
    return dict(value) if value is not None else None


@dataclass(frozen=True)
class MonitorResult:
    """One monitor check: the model and day, the decision's action, reasons, throttling and
    signals, the champion checked, the facts the decision read (``drift`` summary,
    ``performance``, ``validation`` of the current window, ``rollback`` and ``serving``
    comparisons), the drift page (or why it could not be built), the config's hash, and where
    its ``monitor.json`` and MLflow run are."""

    model: str
    as_of: str
    action: str
    reasons: tuple[str, ...] = ()
    throttled: bool = False
    signals: tuple[Signal, ...] = ()
    champion_version: str | None = None
    drift: dict[str, Any] | None = None
    performance: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None
    serving: dict[str, Any] | None = None
    drift_report_path: str | None = None
    report_error: str | None = None
    config_hash: str | None = None
    report_path: str | None = None
    mlflow_run_id: str | None = None

    def signal(self, name: str) -> Signal | None:
        """The first signal called ``name`` (``None``: not checked)."""
        return _find(self.signals, name)

    def report(self) -> dict[str, Any]:
        """What ``monitor.json`` holds: every key but where it is and the MLflow run that
        logged it."""
        return {
            "model": self.model,
            "as_of": self.as_of,
            "action": self.action,
            "reasons": list(self.reasons),
            "throttled": self.throttled,
            "signals": [s.to_xcom() for s in self.signals],
            "champion_version": self.champion_version,
            "drift": self.drift,
            "performance": self.performance,
            "validation": self.validation,
            "rollback": self.rollback,
            "serving": self.serving,
            "drift_report_path": self.drift_report_path,
            "report_error": self.report_error,
            "config_hash": self.config_hash,
        }

    def to_xcom(self) -> dict[str, Any]:
        """The dict ``monitor_model`` returned (what ``retrain monitor --format json`` prints
        and the alerts read): :meth:`report` with ``report_path`` and ``mlflow_run_id``."""
        return {**self.report(), "report_path": self.report_path, "mlflow_run_id": self.mlflow_run_id}

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            model=d["model"],
            as_of=d["as_of"],
            action=d["action"],
            reasons=tuple(d.get("reasons") or ()),
            throttled=bool(d.get("throttled", False)),
            signals=signals_from_xcom(d.get("signals")),
            champion_version=d.get("champion_version"),
            drift=_optional_dict(d.get("drift")),
            performance=_optional_dict(d.get("performance")),
            validation=_optional_dict(d.get("validation")),
            rollback=_optional_dict(d.get("rollback")),
            serving=_optional_dict(d.get("serving")),
            drift_report_path=d.get("drift_report_path"),
            report_error=d.get("report_error"),
            config_hash=d.get("config_hash"),
            report_path=d.get("report_path"),
            mlflow_run_id=d.get("mlflow_run_id"),
        )

    def summary(self) -> MonitorSummary:
        """What the ``check_model`` task passes on: the decision, the drift in brief and where
        the reports and the MLflow run are."""
        drift = self.drift or {}
        return MonitorSummary(
            as_of=self.as_of,
            action=self.action,
            reasons=self.reasons,
            throttled=self.throttled,
            champion_version=self.champion_version,
            drifted_share=drift.get("drifted_share"),
            dataset_drift=drift.get("dataset_drift"),
            top_features=tuple(drift.get("top", [])),
            performance=self.performance,
            signals=self.signals,
            report_path=self.report_path,
            mlflow_run_id=self.mlflow_run_id,
            drift_report_path=self.drift_report_path,
            validation=self.validation,
        )


@dataclass(frozen=True)
class MonitorSummary:
    """The monitor DAG's ``check_model`` XCom (:meth:`MonitorResult.summary`): the day, the
    decision (action, reasons, throttling, signals), the champion checked, the drift in brief
    (drifted share, dataset drift, the top features' scores), the live performance, the
    validation summary, and where ``monitor.json``, the drift page and the MLflow run are."""

    as_of: str
    action: str
    reasons: tuple[str, ...] = ()
    throttled: bool = False
    champion_version: str | None = None
    drifted_share: float | None = None
    dataset_drift: bool | None = None
    top_features: tuple[dict[str, Any], ...] = ()
    performance: dict[str, Any] | None = None
    signals: tuple[Signal, ...] = ()
    report_path: str | None = None
    mlflow_run_id: str | None = None
    drift_report_path: str | None = None
    validation: dict[str, Any] | None = None

    def signal(self, name: str) -> Signal | None:
        """The first signal called ``name`` (``None``: not checked)."""
        return _find(self.signals, name)

    def to_xcom(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of,
            "action": self.action,
            "reasons": list(self.reasons),
            "throttled": self.throttled,
            "champion_version": self.champion_version,
            "drifted_share": self.drifted_share,
            "dataset_drift": self.dataset_drift,
            "top_features": [dict(f) for f in self.top_features],
            "performance": self.performance,
            "signals": [s.to_xcom() for s in self.signals],
            "report_path": self.report_path,
            "mlflow_run_id": self.mlflow_run_id,
            "drift_report_path": self.drift_report_path,
            "validation": self.validation,
        }

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            as_of=d["as_of"],
            action=d["action"],
            reasons=tuple(d.get("reasons") or ()),
            throttled=bool(d.get("throttled", False)),
            champion_version=d.get("champion_version"),
            drifted_share=d.get("drifted_share"),
            dataset_drift=d.get("dataset_drift"),
            top_features=tuple(dict(f) for f in d.get("top_features") or ()),
            performance=_optional_dict(d.get("performance")),
            signals=signals_from_xcom(d.get("signals")),
            report_path=d.get("report_path"),
            mlflow_run_id=d.get("mlflow_run_id"),
            drift_report_path=d.get("drift_report_path"),
            validation=_optional_dict(d.get("validation")),
        )
