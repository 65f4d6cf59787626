"""The evaluation steps of a retrain: the candidate and the champion scored on the same rows
(:func:`evaluate_candidate`), what the gates look at (:func:`gate_inputs`) and the gates'
verdict with the promotion outcome (:func:`check_gates`)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

from retrain_lib.core.metrics import evaluate, metrics_from_scores, predict_scores
from retrain_lib.core.settings import Settings
from retrain_lib.core.values import finite, str_or_none
from retrain_lib.learn.candidates import CrossFit, crossfit_gain, selection_rows, unseen_out_of_fold
from retrain_lib.learn.training_data import xy
from retrain_lib.pipeline.adaptation_steps import (
    REJECTED,
    is_follow_up,
    metric_day_spreads,
    metric_ses,
    promotion_outcome,
)
from retrain_lib.pipeline.records import Evaluation, GateReport, Snapshot, TrainedRun
from retrain_lib.pipeline.reference_inputs import golden_scores, importance_pair
from retrain_lib.pipeline.rollout import PROMOTE
from retrain_lib.pipeline.servability import served_candidate
from retrain_lib.pipeline.snapshot import training_rows
from retrain_lib.pipeline.training_run import CROSSFIT_ARTIFACT, CROSSFIT_TAG
from retrain_lib.quality.gate_types import GateInputs, GateResult, ServedProbe, skipped_result
from retrain_lib.quality.gates import all_passed, evaluate_gates, run_gates
from retrain_lib.stats.gate_measures import measure_latency_ms
from retrain_lib.store.model_context import ModelContext, ModelContextLike, load_model

log = logging.getLogger(__name__)

HELD_OUT = "held_out"
CROSS_FIT = "cross_fit"


@dataclass(frozen=True)
class Compared:
    """The rows a candidate and its champion are compared on and the candidate's scores there.
    ``basis`` ``held_out``: the newest matured labels (or the configured holdout) scored by
    the chosen recipe's model from before its refit; ``cross_fit``: the rows the champion never
    saw, scored out of fold (:func:`retrain_lib.learn.candidates.unseen_out_of_fold`), when the
    champion learnt from days since the change. ``train`` is every other row of the window."""

    train: Any
    holdout: Any
    candidate_scores: Any
    basis: str


def compared_rows(cfg, labelled, trained: TrainedRun, scored_by, crossfit=None, champion_data_end=None) -> Compared:
    """The :class:`Compared` of a retrain: ``labelled`` its window's labelled rows, ``scored_by``
    the model its selection scored, ``crossfit`` its :class:`~retrain_lib.learn.candidates.CrossFit`
    (or ``None``) and ``champion_data_end`` the ``data.end`` of the champion's training run."""
    unseen = unseen_out_of_fold(cfg, crossfit, labelled, champion_data_end)
    if unseen is not None:
        rows, scores = unseen
        key = cfg.data.id_column
        rest = labelled[~labelled[key].isin(set(rows[key].tolist())).to_numpy()]
        return Compared(rest, rows, scores, CROSS_FIT)
    train, holdout = selection_rows(cfg, labelled, trained.selection)
    X, _ = xy(cfg, holdout)
    return Compared(train, holdout, predict_scores(scored_by, X, cfg.task), HELD_OUT)


def logged_crossfit(ctx: ModelContext, trained: TrainedRun):
    """The :class:`~retrain_lib.learn.candidates.CrossFit` the training run logged, or ``None``."""
    if not trained.run_id or not ctx.client.get_run(trained.run_id).data.tags.get(CROSSFIT_TAG):
        return None

    return CrossFit.from_dict(ctx.mlflow().artifacts.load_dict(f"runs:/{trained.run_id}/{CROSSFIT_ARTIFACT}"))


def champion_data_end(ctx: ModelContext, version: str | None) -> str | None:
    """``data.end`` of the training run of the champion ``version`` (a registry tag)."""
    if not version:
        return None
    return ctx.client.get_model_version(ctx.name, str(version)).tags.get("data.end")


def evaluate_candidate(
    model: str, snap: Snapshot, trained: TrainedRun, *, settings: Settings | None = None
) -> Evaluation:
    """Score the candidate and the current champion on the same rows (:func:`compared_rows`):
    the configured holdout, or with ``adaptation`` the newest matured labels the candidate was
    chosen on (scored by the chosen recipe's model from before its refit, which never saw
    them), or the rows the champion never saw, scored out of fold."""
    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    champion = ctx.champion()
    compared = compared_rows(
        cfg,
        training_rows(ctx, snap),
        trained,
        load_model(ctx, trained.scored_by_uri),
        logged_crossfit(ctx, trained) if champion is not None else None,
        champion.tags.get("data.end") if champion is not None else None,
    )
    X, y = xy(cfg, compared.holdout)
    candidate = metrics_from_scores(y, compared.candidate_scores, cfg.task)
    candidate_se = metric_ses(cfg, y, compared.candidate_scores) if cfg.adaptation is not None else None
    day_sd, compared_days = (
        metric_day_spreads(cfg, compared.holdout[cfg.data.timestamp_column], y, compared.candidate_scores)
        if cfg.adaptation is not None
        else (None, None)
    )
    champion_metrics = None
    if champion is not None:
        champion_metrics = evaluate(load_model(ctx, f"models:/{cfg.name}/{champion.version}"), X, y, cfg.task)
        for k, v in finite(champion_metrics).items():
            ctx.client.log_metric(trained.run_id, f"champion.{k}", v)
    if compared.basis != HELD_OUT:
        ctx.client.set_tag(trained.run_id, "retrain.compared_on", compared.basis)
    return Evaluation(
        candidate=finite(candidate),
        champion=finite(champion_metrics) if champion_metrics else None,
        champion_version=str_or_none(champion.version) if champion else None,
        holdout_rows=int(len(compared.holdout)),
        candidate_se=candidate_se,
        candidate_day_sd=day_sd,
        compared_days=compared_days,
        compared_on=compared.basis,
    )


def gate_inputs(
    ctx: ModelContextLike,
    snap: Snapshot,
    trained: TrainedRun,
    evaluation: Evaluation,
    *,
    crossfit=None,
    champion_data_end: str | None = None,
    in_process_latency: bool = False,
):
    """What the gates look at: the rows the evaluation compared on (:func:`compared_rows`,
    from the retrain's ``crossfit`` and ``champion_data_end``) scored by the candidate and by
    the champion the evaluation used and the other rows of the window (leakage). The served
    gates' inputs come later (:func:`check_gates` serves the candidate only when it would be
    promoted); ``in_process_latency`` (backtests, which serve nothing) times the candidate in
    this process for the ``latency`` gate instead."""
    cfg = ctx.cfg
    champion_version = evaluation.champion_version
    compared = compared_rows(
        cfg,
        training_rows(ctx, snap),
        trained,
        load_model(ctx, trained.scored_by_uri),
        crossfit if champion_version else None,
        champion_data_end,
    )
    X, y = xy(cfg, compared.holdout)
    champion = load_model(ctx, f"models:/{cfg.name}/{champion_version}") if champion_version else None
    latency = None
    kinds = {g.type for g in cfg.gates}
    candidate = load_model(ctx, trained.model_uri) if kinds & {"latency", "importance_shift", "golden"} else None
    if in_process_latency and "latency" in kinds:
        latency = {
            **measure_latency_ms(candidate, X, task=cfg.task, n=100, seed=cfg.training.seed),
            "path": "in_process",
        }
    cand_importances, champ_importances = importance_pair(cfg, candidate, champion, X, y)
    return GateInputs(
        task=cfg.task,
        y_true=y,
        candidate_scores=compared.candidate_scores,
        champion_scores=predict_scores(champion, X, cfg.task) if champion is not None else None,
        holdout=compared.holdout,
        train=compared.train,
        candidate_metrics=evaluation.candidate,
        champion_metrics=evaluation.champion,
        latency_ms=latency,
        target=cfg.features.target,
        features=list(cfg.features.all),
        seed=cfg.training.seed,
        champion_relative_floor=cfg.adaptation is not None,
        compared_on=compared.basis,
        candidate_importances=cand_importances,
        champion_importances=champ_importances,
        golden=golden_scores(cfg, ctx.settings, candidate) if "golden" in kinds else {},
    )


def shift_gain(cfg, inputs, crossfit, champion, selection: dict | None):
    """The cross-fitted gain of a candidate trained after a covariate shift over ``champion``
    (the model the evaluation used), on every matured row since the shift
    (:func:`retrain_lib.learn.candidates.crossfit_gain`); ``None`` without a ``crossfit``, a
    champion, when the candidate's ``selection`` did not train after a shift, or when the
    gates already compared out-of-fold scores (``inputs.compared_on``: the champion learnt
    from days since the shift, so only the rows it never saw count). The rows are the gates'
    ``inputs`` (no second read)."""
    shift = (selection or {}).get("change_source") == "shift"
    if not shift or crossfit is None or champion is None or inputs.compared_on != HELD_OUT:
        return None

    return crossfit_gain(cfg, crossfit, inputs.window_rows, champion)


PROBE_GATES = ("servable", "latency")  # judged on the candidate served by a fresh gateway process


def _gate_results(ctx: ModelContext, evaluation: Evaluation, trained: TrainedRun, snap: Snapshot | None):
    """``(results, inputs, crossfit)`` of the configured gates but the served ones
    (:data:`PROBE_GATES`, see :func:`_served_results`): on the rows themselves with ``snap``
    (inputs that cannot be built fail every gate, closed), else metric gates only."""
    if snap is None:
        return evaluate_gates(ctx.cfg.gates, evaluation.candidate, evaluation.champion), None, None
    crossfit = None
    try:
        crossfit = logged_crossfit(ctx, trained) if evaluation.champion_version else None
        inputs = gate_inputs(
            ctx,
            snap,
            trained,
            evaluation,
            crossfit=crossfit,
            champion_data_end=champion_data_end(ctx, evaluation.champion_version),
        )
        return run_gates([g for g in ctx.cfg.gates if g.type not in PROBE_GATES], inputs), inputs, crossfit
    except Exception as exc:  # noqa: BLE001 - inputs that cannot be built fail every gate, closed
        log.exception("gate inputs of %s could not be built", ctx.name)
        failed = GateResult("inputs", "", None, None, None, None, False, f"gate inputs could not be built: {exc}")
        return [failed], None, crossfit


def _served_results(ctx: ModelContext, trained: TrainedRun, inputs, promotes: bool) -> list[GateResult]:
    """The ``servable`` and ``latency`` gates: the candidate served by a fresh gateway process
    (:func:`~retrain_lib.pipeline.servability.served_candidate`, about 10 s) when it would be
    promoted; otherwise not served, each such gate recorded as not run (the candidate is not
    deployed whatever they say)."""
    gates = [g for g in ctx.cfg.gates if g.type in PROBE_GATES]
    if not gates:
        return []
    if not promotes:
        why = "not served: the candidate is not promoted (its other gates, or no gain over the champion)"
        return [skipped_result(g, why) for g in gates]
    try:
        X, _ = xy(ctx.cfg, inputs.holdout)
        served = served_candidate(ctx, trained, X, gates)
    except Exception as exc:  # noqa: BLE001 - a probe that cannot run fails its gates, closed
        log.exception("the servability probe of %s could not run", ctx.name)
        served = ServedProbe(trained.model_uri, False, error=f"the probe could not run: {type(exc).__name__}: {exc}")
    latency = None
    if served.p95_ms is not None:
        latency = {"p50": served.p50_ms, "p95": served.p95_ms, "n": served.answered, "path": "served"}
    return run_gates(gates, dataclasses.replace(inputs, served=served, latency_ms=latency))


def check_gates(
    model: str,
    evaluation: Evaluation,
    trained: TrainedRun,
    *,
    settings: Settings | None = None,
    as_of: str | None = None,
    actor: str = "cli",
    snap: Snapshot | None = None,
    require_gain: bool | None = None,
) -> GateReport:
    """Every configured gate on the candidate (see :mod:`retrain_lib.quality.gates`); fails closed.
    ``require_gain`` overrides ``adaptation.require_gain`` for this retrain (a person's run).

    With ``snap`` the gates see the holdout rows themselves (segments, fairness, calibration,
    latency, stability, bootstrap, leakage); without it only metric gates can be decided."""
    ctx = ModelContext(model, settings)
    results, inputs, crossfit = _gate_results(ctx, evaluation, trained, snap)
    passed = all_passed(results) and bool(results or not [g for g in ctx.cfg.gates if g.type not in PROBE_GATES])
    champion = ctx.champion() if evaluation.champion_version else None
    follow = is_follow_up(
        ctx.cfg,
        champion.tags if champion is not None and str(champion.version) == str(evaluation.champion_version) else None,
        trained.selection,
    )
    measured = None
    if passed and inputs is not None and crossfit is not None:
        champion_model = load_model(ctx, f"models:/{ctx.cfg.name}/{evaluation.champion_version}")
        measured = shift_gain(ctx.cfg, inputs, crossfit, champion_model, trained.selection)
    outcome, gain = promotion_outcome(
        ctx.cfg,
        passed,
        inputs,
        follow_up=follow,
        require_gain=require_gain,
        measured_gain=measured,
        selection=trained.selection,
    )
    if inputs is not None:
        served = _served_results(ctx, trained, inputs, outcome == PROMOTE)
        results = [*results, *served]
        if not all_passed(served):
            passed, outcome = False, REJECTED
    report = GateReport(
        passed=outcome == PROMOTE,
        outcome=outcome,
        gates_passed=passed,
        follow_up=follow,
        gain=gain.to_dict() if gain is not None else None,
        results=tuple(results),
        champion_version=evaluation.champion_version,
    )
    payload = report.to_xcom()
    ctx.client.set_tag(trained.run_id, "gates.passed", str(passed).lower())
    ctx.client.set_tag(trained.run_id, "retrain.outcome", outcome)
    ctx.mlflow()
    ctx.client.log_dict(trained.run_id, payload, "gates/results.json")
    ctx.record(
        "gates",
        as_of,
        actor,
        {
            "run_id": trained.run_id,
            "passed": passed,
            "outcome": outcome,
            "follow_up": follow,
            "gain": gain.explain() if gain is not None else None,
            "compared_on": inputs.compared_on if inputs is not None else None,
            "failed": [r.reason for r in results if not r.passed],
            "champion_version": evaluation.champion_version,
        },
    )
    # What the next task reads back from XCom (NaN values as None), in-process too.
    return GateReport.from_xcom(payload)
