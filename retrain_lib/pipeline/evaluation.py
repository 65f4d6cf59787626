"""The evaluation steps of a retrain: the candidate and the champion scored on the same rows
(:func:`evaluate_candidate`), what the gates look at (:func:`gate_inputs`) and the gates'
verdict with the promotion outcome (:func:`check_gates`)."""

from __future__ import annotations

import logging

from retrain_lib.core.settings import Settings
from retrain_lib.core.values import finite, str_or_none
from retrain_lib.pipeline.adaptation_steps import is_follow_up, metric_ses, promotion_outcome
from retrain_lib.pipeline.records import Evaluation, GateReport, Snapshot, TrainedRun
from retrain_lib.pipeline.rollout import PROMOTE
from retrain_lib.pipeline.snapshot import training_rows
from retrain_lib.pipeline.training_run import CROSSFIT_ARTIFACT, CROSSFIT_TAG
from retrain_lib.store.model_context import ModelContext, load_model

log = logging.getLogger(__name__)


def evaluate_candidate(
    model: str, snap: Snapshot, trained: TrainedRun, *, settings: Settings | None = None
) -> Evaluation:
    """Score the candidate and the current champion on the same rows: the configured holdout,
    or with ``adaptation`` the newest matured labels the candidate was chosen on (scored by the
    chosen recipe's model from before its refit, which never saw them)."""
    from retrain_lib.core.metrics import evaluate, predict_scores
    from retrain_lib.learn.candidates import selection_rows
    from retrain_lib.learn.training_data import xy

    ctx = ModelContext(model, settings)
    cfg = ctx.cfg
    holdout = selection_rows(cfg, training_rows(ctx, snap), trained.selection)[1]
    X, y = xy(cfg, holdout)
    scored_by = load_model(ctx, trained.scored_by_uri)
    candidate = evaluate(scored_by, X, y, cfg.task)
    candidate_se = metric_ses(cfg, y, predict_scores(scored_by, X, cfg.task)) if cfg.adaptation is not None else None
    champion = ctx.champion()
    champion_metrics = None
    if champion is not None:
        champion_metrics = evaluate(load_model(ctx, f"models:/{cfg.name}/{champion.version}"), X, y, cfg.task)
        for k, v in finite(champion_metrics).items():
            ctx.client.log_metric(trained.run_id, f"champion.{k}", v)
    return Evaluation(
        candidate=finite(candidate),
        champion=finite(champion_metrics) if champion_metrics else None,
        champion_version=str_or_none(champion.version) if champion else None,
        holdout_rows=int(len(holdout)),
        candidate_se=candidate_se,
    )


def gate_inputs(ctx: ModelContext, snap: Snapshot, trained: TrainedRun, evaluation: Evaluation):
    """What the gates look at: the same holdout rows scored by the candidate and by the
    champion the evaluation used, the training rows (leakage) and a latency measurement."""
    from retrain_lib.core.metrics import predict_scores
    from retrain_lib.learn.candidates import selection_rows
    from retrain_lib.learn.training_data import xy
    from retrain_lib.quality.gate_types import GateInputs
    from retrain_lib.stats.gate_measures import measure_latency_ms

    cfg = ctx.cfg
    train, holdout = selection_rows(cfg, training_rows(ctx, snap), trained.selection)
    X, y = xy(cfg, holdout)
    candidate = load_model(ctx, trained.scored_by_uri)
    champion_version = evaluation.champion_version
    champion = load_model(ctx, f"models:/{cfg.name}/{champion_version}") if champion_version else None
    needs_latency = any(g.type == "latency" for g in cfg.gates)
    served = load_model(ctx, trained.model_uri) if needs_latency else None
    return GateInputs(
        task=cfg.task,
        y_true=y,
        candidate_scores=predict_scores(candidate, X, cfg.task),
        champion_scores=predict_scores(champion, X, cfg.task) if champion is not None else None,
        holdout=holdout,
        train=train,
        candidate_metrics=evaluation.candidate,
        champion_metrics=evaluation.champion,
        latency_ms=measure_latency_ms(served, X, task=cfg.task, n=100, seed=cfg.training.seed)
        if needs_latency
        else None,
        target=cfg.features.target,
        features=list(cfg.features.all),
        seed=cfg.training.seed,
        champion_relative_floor=cfg.adaptation is not None,
    )


def shift_gain(ctx: ModelContext, inputs, trained: TrainedRun, evaluation: Evaluation):
    """The cross-fitted gain of a candidate trained after a covariate shift over the champion
    the evaluation used, on every matured row since the shift
    (:func:`retrain_lib.learn.candidates.crossfit_gain`); ``None`` when the training run logged
    no cross-fit or there is no champion. The rows are the gates' ``inputs`` (no second read)."""
    champion_version = evaluation.champion_version
    if not champion_version or not ctx.client.get_run(trained.run_id).data.tags.get(CROSSFIT_TAG):
        return None
    from retrain_lib.learn.candidates import CrossFit, crossfit_gain

    mlflow = ctx.mlflow()
    crossfit = CrossFit.from_dict(mlflow.artifacts.load_dict(f"runs:/{trained.run_id}/{CROSSFIT_ARTIFACT}"))
    champion = load_model(ctx, f"models:/{ctx.cfg.name}/{champion_version}")
    return crossfit_gain(ctx.cfg, crossfit, inputs.window_rows, champion)


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
    from retrain_lib.quality.gate_types import GateResult
    from retrain_lib.quality.gates import all_passed, evaluate_gates, run_gates

    ctx = ModelContext(model, settings)
    inputs = None
    if snap is None:
        results = evaluate_gates(ctx.cfg.gates, evaluation.candidate, evaluation.champion)
    else:
        try:
            inputs = gate_inputs(ctx, snap, trained, evaluation)
            results = run_gates(ctx.cfg.gates, inputs)
        except Exception as exc:  # noqa: BLE001 - inputs that cannot be built fail every gate, closed
            log.exception("gate inputs of %s could not be built", model)
            results = [
                GateResult("inputs", "", None, None, None, None, False, f"gate inputs could not be built: {exc}")
            ]
    passed = all_passed(results) and bool(results or not ctx.cfg.gates)
    champion = ctx.champion() if evaluation.champion_version else None
    follow = is_follow_up(
        ctx.cfg,
        champion.tags if champion is not None and str(champion.version) == str(evaluation.champion_version) else None,
        trained.selection,
    )
    measured = shift_gain(ctx, inputs, trained, evaluation) if passed and inputs is not None else None
    outcome, gain = promotion_outcome(
        ctx.cfg,
        passed,
        inputs,
        follow_up=follow,
        require_gain=require_gain,
        measured_gain=measured,
        selection=trained.selection,
    )
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
            "failed": [r.reason for r in results if not r.passed],
            "champion_version": evaluation.champion_version,
        },
    )
    # What the next task reads back from XCom (NaN values as None), in-process too.
    return GateReport.from_xcom(payload)
