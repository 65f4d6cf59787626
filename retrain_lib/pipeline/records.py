"""The records the phases of a retrain hand each other: :class:`Snapshot` (``snapshot_data``),
:class:`TrainedRun` (``train_candidate``), :class:`Evaluation` (``evaluate_candidate``),
:class:`GateReport` (``check_gates``), :class:`Registered` (``register_candidate``),
:class:`DeployOutcome` (``deploy_candidate``) and :class:`Rejection` (``reject_candidate``).

Each is a frozen dataclass with one ``to_xcom()``, the JSON-safe dict the retrain DAG's tasks
pass through XCom (the keys the steps returned as plain dicts before these records, so a run's
XCom reads the same), and one ``from_xcom(d)`` that reads it back. ``from_xcom`` needs the keys
without a default and fills the others with their default, so a payload of an older run (or a
test's hand-written one) decodes::

    snap = Snapshot.from_xcom(ti.xcom_pull(task_ids="snapshot_data"))
    snap.as_of, snap.valid, snap.dvc

Nothing heavy is imported here: the DAG tasks import this module when they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from retrain_lib.core.values import json_safe
from retrain_lib.pipeline.adaptation_steps import REJECTED
from retrain_lib.quality.gate_types import GateResult
from retrain_lib.store.registry import CHAMPION, AliasMove


@dataclass(frozen=True)
class SnapshotValidation:
    """Where the evidence of a snapshot's validation is: counts of its expectations, the MLflow
    validation run and the quarantine directory (``None`` when the data passed)."""

    expectations: int
    failed_expectations: int
    mlflow_run_id: str | None
    quarantine: str | None

    def to_xcom(self) -> dict[str, Any]:
        return {
            "expectations": self.expectations,
            "failed_expectations": self.failed_expectations,
            "mlflow_run_id": self.mlflow_run_id,
            "quarantine": self.quarantine,
        }

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            expectations=int(d.get("expectations") or 0),
            failed_expectations=int(d.get("failed_expectations") or 0),
            mlflow_run_id=d.get("mlflow_run_id"),
            quarantine=d.get("quarantine"),
        )


@dataclass(frozen=True)
class Snapshot:
    """The training window of a retrain: its days (ISO dates), content hash, row counts, the
    problems that make it unfit (none: :attr:`valid`), its DVC version
    (``{"path", "md5", "rev", "remote"}`` of :func:`retrain_lib.store.lineage.snapshot_training_set`)
    and, when it was validated with expectations or failed, :class:`SnapshotValidation`."""

    model: str
    as_of: str
    start: str
    end: str
    fingerprint: str
    rows: int | None = None
    labelled_rows: int | None = None
    files: int | None = None
    problems: tuple[str, ...] = ()
    dvc: dict[str, Any] | None = None
    validation: SnapshotValidation | None = None

    @property
    def valid(self) -> bool:
        """No problem makes the window unfit for training."""
        return not self.problems

    def to_xcom(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "as_of": self.as_of,
            "start": self.start,
            "end": self.end,
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "labelled_rows": self.labelled_rows,
            "files": self.files,
            "problems": list(self.problems),
            "valid": self.valid,
        }
        if self.dvc is not None:
            out["dvc"] = dict(self.dvc)
        if self.validation is not None:
            out["validation"] = self.validation.to_xcom()
        return out

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        validation = d.get("validation")
        return cls(
            model=d["model"],
            as_of=d["as_of"],
            start=d["start"],
            end=d["end"],
            fingerprint=d["fingerprint"],
            rows=d.get("rows"),
            labelled_rows=d.get("labelled_rows"),
            files=d.get("files"),
            problems=tuple(d.get("problems") or ()),
            dvc=dict(d["dvc"]) if d.get("dvc") else None,
            validation=SnapshotValidation.from_xcom(validation) if validation is not None else None,
        )


@dataclass(frozen=True)
class TrainedRun:
    """The MLflow training run of a candidate: its id, the logged model, its holdout metrics,
    whether a retry reused a finished run, and with ``adaptation`` the candidate selection
    (``Selection.to_dict()``) and the model from before the refit that scored it."""

    run_id: str
    model_uri: str
    metrics: dict[str, float] = field(default_factory=dict)
    reused: bool = False
    selection: dict[str, Any] | None = None
    selection_model_uri: str | None = None

    @property
    def scored_by_uri(self) -> str:
        """The model the evaluation and the gates score: the selection's model when there is
        one (it never saw the rows it is scored on), else the logged model."""
        return self.selection_model_uri or self.model_uri

    def to_xcom(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "metrics": dict(self.metrics),
            "reused": self.reused,
        }
        if self.selection_model_uri is not None:
            out.update(selection=self.selection, selection_model_uri=self.selection_model_uri)
        return out

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            run_id=d["run_id"],
            model_uri=d["model_uri"],
            metrics=dict(d.get("metrics") or {}),
            reused=bool(d.get("reused", False)),
            selection=d.get("selection"),
            selection_model_uri=d.get("selection_model_uri"),
        )


@dataclass(frozen=True)
class Evaluation:
    """The candidate and the champion scored on the same rows: their metrics (the champion's
    ``None`` when there is none), the champion's version, the rows, and with ``adaptation`` the
    standard errors of the candidate's metrics."""

    candidate: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: str | None = None
    holdout_rows: int | None = None
    candidate_se: Mapping[str, float | None] | None = None
    compared_on: str = "held_out"  # or "cross_fit": see retrain_lib.pipeline.evaluation.Compared
    # with ``adaptation``: how much the candidate's daily metric moves over those rows' days
    candidate_day_sd: Mapping[str, float] | None = None
    compared_days: int | None = None

    def to_xcom(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "candidate": dict(self.candidate),
            "champion": dict(self.champion) if self.champion is not None else None,
            "champion_version": self.champion_version,
            "holdout_rows": self.holdout_rows,
            "compared_on": self.compared_on,
        }
        if self.candidate_se is not None:
            out["candidate_se"] = dict(self.candidate_se)
        if self.candidate_day_sd is not None:
            out["candidate_day_sd"] = dict(self.candidate_day_sd)
            out["compared_days"] = self.compared_days
        return out

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        champion, se = d.get("champion"), d.get("candidate_se")
        return cls(
            candidate=dict(d["candidate"]),
            champion=dict(champion) if champion is not None else None,
            champion_version=d.get("champion_version"),
            holdout_rows=d.get("holdout_rows"),
            candidate_se=dict(se) if se is not None else None,
            compared_on=d.get("compared_on") or "held_out",
            candidate_day_sd=dict(d["candidate_day_sd"]) if d.get("candidate_day_sd") is not None else None,
            compared_days=d.get("compared_days"),
        )


def gate_result_from_xcom(d: Mapping[str, Any]) -> GateResult:
    """A :class:`GateResult` from its ``to_dict()``; the optional values may be missing."""
    return GateResult(
        gate=d["gate"],
        metric=d.get("metric"),
        threshold=d.get("threshold"),
        observed=d.get("observed"),
        champion=d.get("champion"),
        delta=d.get("delta"),
        passed=bool(d["passed"]),
        reason=d["reason"],
        slice=d.get("slice") or "all",
        kind=d.get("kind") or "metric",
        skipped=bool(d.get("skipped", False)),
        details=dict(d.get("details") or {}),
    )


@dataclass(frozen=True)
class GateReport:
    """The gates' verdict on a candidate: whether it is promoted (:attr:`passed`, the outcome
    is ``promote``), the outcome (``promote``, ``rejected``, ``no_gain``), whether every gate
    passed, whether it follows up an earlier no-gain, the gain over the champion
    (``Gain.to_dict()``), every :class:`GateResult` and the champion it was judged against."""

    passed: bool
    outcome: str | None = None
    gates_passed: bool | None = None
    follow_up: bool = False
    gain: dict[str, Any] | None = None
    results: tuple[GateResult, ...] = ()
    champion_version: str | None = None

    @property
    def failed(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if not r.passed)

    def to_xcom(self) -> dict[str, Any]:
        """Also what ``check_gates`` logs as ``gates/results.json``: NaN values are ``None``."""
        return json_safe(
            {
                "follow_up": self.follow_up,
                "passed": self.passed,
                "gates_passed": self.gates_passed,
                "outcome": self.outcome,
                "gain": dict(self.gain) if self.gain is not None else None,
                "results": [r.to_dict() for r in self.results],
                "failed": [r.to_dict() for r in self.failed],
                "champion_version": self.champion_version,
            }
        )

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        """``failed`` is not read: it is the results that did not pass."""
        return cls(
            passed=bool(d["passed"]),
            outcome=d.get("outcome"),
            gates_passed=d.get("gates_passed"),
            follow_up=bool(d.get("follow_up", False)),
            gain=dict(d["gain"]) if d.get("gain") is not None else None,
            results=tuple(gate_result_from_xcom(r) for r in d.get("results") or ()),
            champion_version=d.get("champion_version"),
        )


@dataclass(frozen=True)
class Registered:
    """The model version a candidate was registered as, and its training run."""

    version: str
    run_id: str

    def to_xcom(self) -> dict[str, Any]:
        return {"version": self.version, "run_id": self.run_id}

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        return cls(version=str(d["version"]), run_id=d["run_id"])


def alias_move_from_xcom(d: Mapping[str, Any]) -> AliasMove:
    """An :class:`AliasMove` from its ``to_dict()``."""
    return AliasMove(d["alias"], d.get("from"), d.get("to"))


@dataclass(frozen=True)
class DeployOutcome:
    """What a deployment did: the mode, the version, the alias moves, each re-evaluation against
    a champion that moved meanwhile (``{"champion_was", "champion_now", "passed"}``) and the
    champion after it; when the candidate failed its gates against the new champion,
    :attr:`rejected` with the failed gates' reasons."""

    version: str
    mode: str = "direct"
    moves: tuple[AliasMove, ...] = ()
    reevaluated: tuple[dict[str, Any], ...] = ()
    champion: str | None = None
    rejected: bool = False
    failed: tuple[str, ...] = ()

    @property
    def champion_move(self) -> AliasMove | None:
        """The move of ``champion`` (``None``: the version did not become champion)."""
        return next((m for m in self.moves if m.alias == CHAMPION), None)

    def to_xcom(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "version": self.version,
            "moves": [m.to_dict() for m in self.moves],
            "reevaluated": [dict(r) for r in self.reevaluated],
            "champion": self.champion,
        }
        if self.rejected:
            out.update(rejected=True, failed=list(self.failed))
        return out

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        return cls(
            version=str(d["version"]),
            mode=d.get("mode") or "direct",
            moves=tuple(alias_move_from_xcom(m) for m in d.get("moves") or ()),
            reevaluated=tuple(dict(r) for r in d.get("reevaluated") or ()),
            champion=d.get("champion"),
            rejected=bool(d.get("rejected", False)),
            failed=tuple(d.get("failed") or ()),
        )


@dataclass(frozen=True)
class Rejection:
    """A candidate that is not registered: ``rejected`` (the reasons of its failed gates) or
    ``no_gain`` (the gain over the champion, ``Gain.to_dict()``, and its explanation)."""

    outcome: str = REJECTED
    failed: tuple[str, ...] = ()
    run_id: str | None = None
    gain: dict[str, Any] | None = None
    reason: str | None = None

    def to_xcom(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rejected": True, "outcome": self.outcome, "failed": list(self.failed)}
        if self.gain is not None:
            out["gain"] = dict(self.gain)
        if self.reason is not None:
            out["reason"] = self.reason
        out["run_id"] = self.run_id
        return out

    @classmethod
    def from_xcom(cls, d: Mapping[str, Any]) -> Self:
        failed = d.get("failed") or ()
        return cls(
            outcome=d.get("outcome") or REJECTED,
            failed=(failed,) if isinstance(failed, str) else tuple(str(f) for f in failed),
            run_id=d.get("run_id"),
            gain=dict(d["gain"]) if d.get("gain") is not None else None,
            reason=d.get("reason"),
        )
