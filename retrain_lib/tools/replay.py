"""One policy replayed day by day (:func:`run_policy`), through the code the DAGs run.

Each day: the floor schedule's retrain (or the oracle's daily one), then the monitor's facts
and decision (as ``monitor_model`` gathers them, without MLflow, reports or the ledger), the
retrain path (cached training, evaluation of candidate and champion on the same holdout,
gates, promotion) or the rollback. The champion, previous champion and the ledger-shaped
monitor history stay in memory; :class:`PolicyRun` is what the policy did."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.core.metrics import evaluate, metrics_from_scores
from retrain_lib.core.values import json_safe
from retrain_lib.learn.candidates import CrossFit, estimate_change
from retrain_lib.learn.training_data import xy
from retrain_lib.pipeline.adaptation_steps import (
    NO_GAIN,
    REJECTED,
    Change,
    adaptation_state,
    day_spread_tags,
    is_follow_up,
    promotion_outcome,
    record_adaptation,
    record_no_gain_acceptance,
    regime_tags,
    shift_facts,
    training_change,
)
from retrain_lib.pipeline.decision import RETRAIN, ROLLBACK, decide
from retrain_lib.pipeline.evaluation import HELD_OUT, compared_rows, gate_inputs, shift_gain
from retrain_lib.pipeline.live_facts import rollback_facts
from retrain_lib.pipeline.monitor_facts import (
    drift_current,
    drift_facts,
    importance_weights,
    new_labels_since_training,
    reference_window,
    retrain_requests_within,
)
from retrain_lib.pipeline.monitor_records import MonitorDecision
from retrain_lib.pipeline.performance_facts import champion_performance
from retrain_lib.pipeline.records import Evaluation, Snapshot, TrainedRun
from retrain_lib.pipeline.rollout import PROMOTE
from retrain_lib.pipeline.snapshot import training_rows, training_window
from retrain_lib.quality.gates import all_passed, run_gates
from retrain_lib.store.data import day_range, load_window
from retrain_lib.tools.artifact_store import Artifact, ArtifactStore
from retrain_lib.tools.backtest_policies import Policy, floor_fires
from retrain_lib.tools.replay_context import ReplayContext, ReplaySettings, Version


@dataclass
class PolicyRun:
    """What a policy did: per day the serving model (artifact key) before the day's actions,
    the monitor's decision and the retrain or rollback it caused."""

    name: str
    source: str
    monitor: bool = True
    days: list[dict] = field(default_factory=list)
    retrains: list[dict] = field(default_factory=list)
    rollbacks: list[dict] = field(default_factory=list)
    serving: dict[str, str | None] = field(default_factory=dict)  # day -> artifact key serving that day
    compute_s: float = 0.0
    wall_s: float = 0.0


def _uri(cfg: ModelConfig, version: Version) -> str:
    return f"models:/{cfg.name}/{version.version}"


def _decision_record(decision: MonitorDecision) -> dict:
    """The day record's ``decision``: the decision without the signals' details."""
    return {
        "action": decision.action,
        "throttled": decision.throttled,
        "reasons": list(decision.reasons),
        "signals": [
            {"signal": s.signal, "triggered": s.triggered, "value": s.value, "threshold": s.threshold}
            for s in decision.signals
        ],
    }


def decision_trigger(decision: dict) -> str:
    """What made the monitor act, from a day record's ``decision``: the triggered signals
    joined with ``+`` (throttling signals left out), or the action itself."""
    fired = [
        s["signal"]
        for s in decision.get("signals") or []
        if s.get("triggered") and s["signal"] not in ("min_retrain_interval", "max_retrains")
    ]
    return "+".join(fired) or decision["action"]


class _Replay:
    """One policy replayed day by day: its champion, previous champion and monitor history
    in memory, in the place of the registry and the ledger."""

    def __init__(
        self,
        policy: Policy,
        settings: ReplaySettings,
        store: ArtifactStore,
        initial: tuple[ModelConfig, dt.date] | None = None,
    ):
        self.policy = policy
        self.cfg = policy.cfg
        self.settings = settings
        self.store = store
        self.models: dict[str, Any] = {}
        self.ctx = ReplayContext(self.cfg, settings, self.models)
        self.champion: Version | None = None
        self.previous: Version | None = None
        self.counter = 0
        self.records: list[dict] = []  # ledger-shaped monitor entries (max_retrains)
        self.drift_raw: list[bool] = []  # persistence history
        self.run = PolicyRun(policy.name, policy.source, policy.monitor)
        if initial is not None:
            init_cfg, init_day = initial
            art, _ = store.trained(init_cfg, settings, init_day)
            if not art.valid:
                raise DataError(f"cannot train the starting champion as of {init_day}: {'; '.join(art.problems)}")
            self.champion = self._version(art, promoted=init_day)

    def _version(self, art: Artifact, promoted: dt.date) -> Version:
        self.counter += 1
        tags = {
            "data.start": art.start,
            "data.end": art.end,
            "trained_as_of": art.as_of,
            "promoted_as_of": promoted.isoformat(),
            "rows.train": str(art.train_rows),
        }
        tags.update({f"metric.{k}": repr(v) for k, v in art.metrics.items()})
        tags.update({f"metric_se.{k}": repr(v) for k, v in art.metric_se.items()})
        tags.update(day_spread_tags(art.metric_day_sd, art.holdout_days))
        tags.update({f"importance.{k}": repr(v) for k, v in art.importances.items()})
        tags.update(regime_tags(art.selection))
        version = Version(str(self.counter), art.key, tags)
        self.models[_uri(self.cfg, version)] = art.pipeline
        return version

    # The monitor, as monitor_model() gathers its facts, minus MLflow, reports and ledger.
    def monitor(self, day: dt.date) -> MonitorDecision:
        cfg, ctx, champion = self.cfg, self.ctx, self.champion
        if champion is None:
            return decide(cfg, as_of=day, champion=None, drift=None, performance=None)
        start, end = day_range(day, cfg.windows.monitor_days)
        current = load_window(cfg, self.settings, start, end, as_of=day)
        state = adaptation_state(ctx, champion, day, records=self.records)
        drift = None
        if cfg.drift.enabled:
            reference = reference_window(ctx, champion, state.rebased)
            weights = importance_weights(champion) if cfg.drift.weight_by_importance else None
            compared = drift_current(ctx, current, state.rebased)
            drift = drift_facts(cfg, reference, compared, weights=weights, history=list(self.drift_raw))
            self.drift_raw.append(bool(drift.get("dataset_drift_raw", drift["dataset_drift"])))
        # The CBPE estimate only decides with performance.use_estimate; otherwise it is a note
        # of the report, and costs estimate_draws metric computations a day: skipped then.
        use_estimate = cfg.performance is not None and cfg.performance.use_estimate
        performance = json_safe(
            champion_performance(ctx, champion, day, current if use_estimate else None, healthy=state.tested_against)
        )
        new_labels = new_labels_since_training(ctx, champion, day)
        recent = retrain_requests_within(cfg, day, self.records)
        rollback = json_safe(rollback_facts(ctx, champion, day, performance, previous=self.previous))
        decision = decide(
            cfg,
            as_of=day,
            champion=champion,
            drift=drift,
            performance=performance,
            new_labels=new_labels,
            recent_retrains=recent,
            rollback=rollback,
            serving=None,
            backoff=state.backoff,
            shift=shift_facts(cfg, self.records, champion, day),
        )
        record_adaptation(
            self._record,
            cfg,
            day.isoformat(),
            "backtest",
            decision,
            performance,
            state,
            champion.version,
            champion.tags,
        )
        self.records.append({"event": "monitor", "as_of": day.isoformat(), "details": {"action": decision.action}})
        return decision

    def _record(self, event: str, as_of: str | None, actor: str, details: dict) -> dict:
        """Ledger-shaped record of the replay (what ``ModelContext.record`` writes to the ledger)."""
        rec = {"event": event, "as_of": as_of, "actor": actor, "details": details}
        self.records.append(rec)
        return rec

    # The retrain path: snapshot + validation + training (cached), evaluation, gates, promotion.
    def retrain(self, day: dt.date, trigger: str, reasons: list[str]) -> dict:
        cfg = self.cfg
        parent = self.store.get(self.champion.key) if (self.champion and cfg.training.warm_start) else None
        change = self._change_day(day) if cfg.adaptation is not None else None
        art, cached = self.store.trained(cfg, self.settings, day, parent, change=change)
        event = {
            "day": day.isoformat(),
            "trigger": trigger,
            "reasons": reasons,
            "window": [art.start, art.end],
            "fit_s": round(art.fit_s, 3),
            "cached": cached,
            "champion_before": self._key(self.champion),
        }
        self.run.compute_s += art.fit_s
        if not art.valid:
            event.update(outcome="invalid_data", problems=art.problems[:5])
            self.run.retrains.append(event)
            return event
        trained = self._load_candidate(day, art, event)
        outcome = self._judge(day, art, trained, event)
        for uri in (trained.model_uri, trained.selection_model_uri):
            if uri is not None:
                self.models.pop(uri, None)
        self._record("gates", day.isoformat(), "backtest", {"outcome": outcome, "passed": outcome == PROMOTE})
        if outcome != PROMOTE:
            event["outcome"] = "rejected" if outcome == REJECTED else outcome
            if outcome == NO_GAIN:
                record_no_gain_acceptance(self._record, cfg, day.isoformat(), "backtest", art.selection)
            self.run.retrains.append(event)
            return event
        self.previous, self.champion = self.champion, self._version(art, promoted=day)
        event.update(outcome="deployed", version=self.champion.version)
        self.run.retrains.append(event)
        return event

    def _load_candidate(self, day: dt.date, art: Artifact, event: dict) -> TrainedRun:
        """Load the candidate (and, with adaptation, the model its selection scored) by URI as
        the registry would; returns the retrain's ``trained`` facts for the gates (a backtest
        logs no MLflow run: its ``run_id`` is empty)."""
        cfg = self.cfg
        candidate = Version(f"candidate-{day.isoformat()}", art.key, {})
        self.models[_uri(cfg, candidate)] = art.pipeline
        trained = TrainedRun(run_id="", model_uri=_uri(cfg, candidate), metrics=art.metrics)
        if art.selection is not None:
            scored_by = Version(f"selection-{day.isoformat()}", art.key, {})
            self.models[_uri(cfg, scored_by)] = art.eval_pipeline
            trained = dataclasses.replace(trained, selection=art.selection, selection_model_uri=_uri(cfg, scored_by))
            event["selection"] = {
                "chosen": art.selection["chosen"],
                "change_day": art.selection["change_day"],
                "reason": art.selection["reason"],
            }
        return trained

    def _judge(self, day: dt.date, art: Artifact, trained: TrainedRun, event: dict) -> str:
        """Evaluate the candidate and the champion on the same rows (as the retrain DAG does:
        :func:`retrain_lib.pipeline.evaluation.compared_rows`) and, with the policy's gates, run
        them: the promotion outcome (``PROMOTE`` without gates)."""
        cfg = self.cfg
        assert art.fingerprint is not None  # a valid artifact read its window
        snap = Snapshot(model=cfg.name, as_of=art.as_of, start=art.start, end=art.end, fingerprint=art.fingerprint)
        champion = self.models[_uri(cfg, self.champion)] if self.champion is not None else None
        crossfit = CrossFit.from_dict(art.crossfit) if art.crossfit is not None and champion is not None else None
        champion_end = self.champion.tags.get("data.end") if self.champion is not None else None
        candidate_metrics, champion_metrics, basis = art.metrics, None, HELD_OUT
        if champion is not None:
            scored_by = self.models[trained.scored_by_uri]
            compared = compared_rows(cfg, training_rows(self.ctx, snap), trained, scored_by, crossfit, champion_end)
            X, y = xy(cfg, compared.holdout)
            champion_metrics = json_safe(evaluate(champion, X, y, cfg.task))
            basis = compared.basis
            if basis != HELD_OUT:
                candidate_metrics = json_safe(metrics_from_scores(y, compared.candidate_scores, cfg.task))
        evaluation = Evaluation(
            candidate=candidate_metrics,
            champion=champion_metrics,
            champion_version=self.champion.version if self.champion else None,
            compared_on=basis,
        )
        event["candidate"] = candidate_metrics.get(cfg.primary_metric)
        event["champion"] = (champion_metrics or {}).get(cfg.primary_metric)
        if basis != HELD_OUT:
            event["compared_on"] = basis
        outcome = PROMOTE
        if self.policy.gates:
            inputs = gate_inputs(
                self.ctx,
                snap,
                trained,
                evaluation,
                crossfit=crossfit,
                champion_data_end=champion_end,
                in_process_latency=True,
            )
            if art.latency_ms is not None:
                inputs = dataclasses.replace(inputs, latency_ms=art.latency_ms)
            # A backtest serves nothing: the servable gate is a deployment's check, not the policy's.
            policy_gates = [g for g in cfg.gates if g.type != "servable"]
            results = run_gates(policy_gates, inputs)
            passed = all_passed(results) and bool(results or not policy_gates)
            event["failed_gates"] = [r.reason for r in results if not r.passed]
            follow = is_follow_up(cfg, self.champion.tags if self.champion else None, art.selection)
            measured = shift_gain(cfg, inputs, crossfit, champion, art.selection) if passed else None
            outcome, gain = promotion_outcome(
                cfg,
                passed,
                inputs,
                follow_up=follow,
                measured_gain=measured,
                selection=art.selection,
            )
            event["follow_up"] = follow
            if gain is not None:
                event["gain"] = gain.explain()
        return outcome

    def _change_day(self, day: dt.date) -> Change | None:
        """The change a retrain on ``day`` trains after (see
        :func:`retrain_lib.pipeline.adaptation_steps.training_change`)."""
        champion = self.champion
        if champion is None:
            return None

        start, end = training_window(self.cfg, day)

        def estimate() -> str | None:
            try:
                window = load_window(self.cfg, self.settings, start, end, as_of=day)
            except DataError:
                return None
            return estimate_change(
                self.cfg,
                window.labelled,
                self.models[_uri(self.cfg, champion)],
                champion.tags.get("data.end"),
            )

        # As the retrain DAG does (lifecycle.train_candidate).
        return training_change(
            champion.tags,
            start,
            estimate,
            lambda: self.records,
            champion.version,
            training_days=self.cfg.windows.training_days,
        )

    def rollback(self, day: dt.date, decision: MonitorDecision) -> dict:
        event = {
            "day": day.isoformat(),
            "from": self._key(self.champion),
            "to": self._key(self.previous),
            "reasons": list(decision.reasons),
        }
        if self.previous is not None:
            self.champion, self.previous = self.previous, None
            event["outcome"] = "rolled_back"
        else:
            event["outcome"] = "no_target"
        self.run.rollbacks.append(event)
        return event

    @staticmethod
    def _key(version: Version | None) -> str | None:
        return version.key if version is not None else None

    def day(self, day: dt.date) -> dict:
        record: dict[str, Any] = {"day": day.isoformat(), "serving": self._key(self.champion)}
        self.run.serving[day.isoformat()] = self._key(self.champion)
        p = self.policy
        if p.daily or floor_fires(p.floor, day):
            record["scheduled"] = self.retrain(
                day,
                "daily" if p.daily else "schedule",
                ["oracle: every day" if p.daily else f"floor schedule {p.floor}"],
            )
        if p.monitor or self.champion is None:
            decision = self.monitor(day)
            record["decision"] = _decision_record(decision)
            if decision.action == RETRAIN:
                record["retrain"] = self.retrain(day, decision_trigger(record["decision"]), list(decision.reasons))
            elif decision.action == ROLLBACK:
                record["rollback"] = self.rollback(day, decision)
        record["champion"] = self._key(self.champion)
        self.run.days.append(record)
        return record


def run_policy(
    policy: Policy,
    settings: ReplaySettings,
    store: ArtifactStore,
    days: list[dt.date],
    *,
    initial: tuple[ModelConfig, dt.date] | None = None,
    progress: Callable[[str], None] | None = None,
) -> PolicyRun:
    """Replay ``days`` for one policy (sequential: each day depends on the last)."""
    started = time.monotonic()
    replay = _Replay(policy, settings, store, initial)
    for i, day in enumerate(days):
        replay.day(day)
        if progress and (i + 1) % 10 == 0:
            progress(f"{policy.name}: {i + 1}/{len(days)} days")
    replay.run.wall_s = time.monotonic() - started
    return replay.run
