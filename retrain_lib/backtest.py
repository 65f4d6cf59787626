"""Backtest a retraining policy on dated partitions before merging it.

:func:`backtest` replays the days ``start..end`` one by one, for several policies, through
the code the DAGs run: the monitor's facts (:func:`~retrain_lib.monitor_facts.drift_facts`,
:func:`~retrain_lib.performance_facts.champion_performance`,
:func:`~retrain_lib.live_facts.rollback_facts`,
:func:`~retrain_lib.monitor_facts.new_labels_since_training`), its decision
(:func:`~retrain_lib.decision.decide`), the retrain path (training window and
:func:`~retrain_lib.snapshot.validate_training_data`, Great Expectations validation,
:func:`~retrain_lib.training.fit`, :func:`~retrain_lib.metrics.evaluate` of candidate and
champion on the same holdout, :func:`~retrain_lib.gates.run_gates` on
:func:`~retrain_lib.evaluation.gate_inputs`) and the rollback rule. Nothing is written to
MLflow, the registry or the ledger: the replay keeps its champion, previous champion and
monitor history in memory, and its context object refuses any registry access.

No leakage: every decision of day *d* reads data through
:func:`~retrain_lib.data.load_window` ``as_of=d`` (no partition after *d*, no label that had
not arrived by *d*). The true labels of every event are read only after all decisions are
fixed, to score the models each policy served (the prequential metric: the model serving
on day *d* is the champion after the actions of day *d - 1*, scored on the events of day
*d*).

Policies (see :func:`default_policies`):

* ``config``: the config as written: the monitor's triggers every day plus the
  ``schedule.retrain_floor`` cron, gates and rollback;
* ``schedule``: the floor schedule only (``retrain_floor``, ``@weekly`` when null);
* ``drift``: the drift trigger only (performance, rollback, age, new-label triggers and
  the floor schedule off);
* ``never``: the first model, never retrained;
* ``oracle``: a retrain every day, always deployed (no gates): the reference.

Every policy starts without a champion on the first day and trains its first model then
(the same cached model for all policies with the same training settings). Trained models
are cached per (training window, training settings) on disk, so policies and repeated runs
share them; independent days train in a process pool.

Simplifications (listed in the summary's ``notes``): approvals are granted, shadow/canary
deployments are promoted, ``training.timeout_minutes`` is not applied, the gateway's live
serving facts are absent, and the monitor's data validation (reported, never decisive) is
skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrain_lib.adaptation_steps import (
    NO_CHANGE,
    NO_GAIN,
    REJECTED,
    Change,
    adaptation_state,
    is_follow_up,
    metric_ses,
    promotion_outcome,
    record_adaptation,
    record_no_gain_acceptance,
    regime_tags,
    shift_facts,
    training_change,
)
from retrain_lib.config import ModelConfig
from retrain_lib.errors import ConfigError, DataError
from retrain_lib.rollout import PROMOTE

log = logging.getLogger(__name__)

POLICIES = ("config", "schedule", "drift", "never", "oracle")
NOTES = [
    "approvals are assumed granted and shadow/canary deployments promoted",
    "training.timeout_minutes is not applied (fits run in-process)",
    "no live serving facts (prediction log): rollback decides on matured labels only",
    "the monitor's data validation is skipped (it is reported, never decisive); the retrain's validation runs",
    "oracle: a retrain every day, deployed without gates",
    "the CBPE performance estimate is computed only with performance.use_estimate (otherwise it is a note)",
    "the latency gate uses one measurement per trained model (taken when it was trained), so policies agree",
]


# -----------------------------------------------------------------------------------------
# Replay context: what the lifecycle functions need, without MLflow or the ledger
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplaySettings:
    """Where the data is (what :func:`~retrain_lib.data.load_window` reads from a Settings)."""

    data_root: Path
    platform: Any = None


class ReplayContext:
    """Duck-typed :class:`~retrain_lib.model_context.ModelContext`: config, settings and loaded
    models by URI. The registry is out of reach on purpose."""

    def __init__(self, cfg: ModelConfig, settings: ReplaySettings, models: dict[str, Any]):
        self.cfg = cfg
        self.settings = settings
        self.models = models

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def client(self):
        raise RuntimeError("the backtest never touches the model registry")

    def mlflow(self):
        raise RuntimeError("the backtest never touches MLflow")


@dataclass
class Version:
    """A model version of the replay: its artifact key and the tags the monitor reads."""

    version: str
    key: str
    tags: dict[str, str]
    run_id: str | None = None


# -----------------------------------------------------------------------------------------
# Policies
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """How a policy retrains: ``cfg`` (its config), ``monitor`` (the monitor decides every
    day), ``floor`` (cron of scheduled retrains, or None), ``daily`` (retrain every day),
    ``gates`` (gates decide the promotion)."""

    name: str
    cfg: ModelConfig
    monitor: bool = True
    floor: str | None = None
    daily: bool = False
    gates: bool = True
    source: str = ""


def _copy(model, **update):
    return model.model_copy(update=update)


def default_policies(cfg: ModelConfig, names=POLICIES) -> list[Policy]:
    """The policies compared by default (see the module docstring)."""
    out = []
    for name in names:
        if name == "config":
            out.append(Policy("config", cfg, floor=cfg.schedule.retrain_floor, source="config as written"))
        elif name == "schedule":
            out.append(
                Policy(
                    "schedule",
                    cfg,
                    monitor=False,
                    floor=cfg.schedule.retrain_floor or "@weekly",
                    source=f"floor schedule only ({cfg.schedule.retrain_floor or '@weekly'})",
                )
            )
        elif name == "drift":
            sched = _copy(cfg.schedule, max_days_without_retrain=None, new_labels_share=None)
            drift = _copy(cfg.drift, enabled=True)
            out.append(
                Policy(
                    "drift",
                    _copy(cfg, performance=None, rollback=None, schedule=sched, drift=drift),
                    source="drift trigger only",
                )
            )
        elif name == "never":
            out.append(Policy("never", cfg, monitor=False, source="first model only"))
        elif name == "oracle":
            out.append(
                Policy(
                    "oracle",
                    cfg,
                    monitor=False,
                    daily=True,
                    gates=False,
                    source="retrain every day, deployed without gates",
                )
            )
        else:
            raise ConfigError(f"unknown policy {name!r}; use some of {', '.join(POLICIES)}")
    return out


def policy_from_file(path, platform=None, name: str | None = None) -> Policy:
    """An alternative config file as a policy (the monitor, its floor schedule, gates)."""
    from retrain_lib.config import load_model_config

    cfg = load_model_config(path, platform)
    path = Path(path)
    # The file is named after its model, so an edited copy usually lives in another directory.
    default = f"{path.parent.name}/{path.stem}" if path.stem == cfg.name and path.parent.name else path.stem
    return Policy(name or default, cfg, floor=cfg.schedule.retrain_floor, source=str(path))


def floor_fires(cron: str | None, day: dt.date) -> bool:
    """Whether ``cron`` has a run on ``day`` (any time of that day). ``@once`` runs when the
    DAG is first deployed, not on a day of the data: never in a replay."""
    if not cron or cron == "@once":
        return False
    from croniter import croniter

    start = dt.datetime.combine(day, dt.time()) - dt.timedelta(seconds=1)
    return croniter(cron, start).get_next(dt.datetime) < dt.datetime.combine(day + dt.timedelta(days=1), dt.time())


# -----------------------------------------------------------------------------------------
# Trained models, cached per (training window, training settings)
# -----------------------------------------------------------------------------------------


def training_hash(cfg: ModelConfig) -> str:
    """Hash of what a trained model depends on (data, features, training window length,
    training and validation settings), not of the triggers: policies share models."""
    dump = cfg.model_dump(mode="json")
    part = {k: dump.get(k) for k in ("name", "task", "data", "features", "training", "validation", "adaptation")}
    part["training_days"] = dump["windows"]["training_days"]
    part["training"] = {**(part["training"] or {}), "timeout_minutes": None}
    return hashlib.sha256(json.dumps(part, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Artifact:
    """A model trained for a day (or why it could not be): what the retrain path produced."""

    key: str
    as_of: str
    start: str
    end: str
    fingerprint: str | None = None
    problems: list[str] = field(default_factory=list)
    rows: int = 0
    labelled_rows: int = 0
    train_rows: int = 0
    fit_s: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    importances: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float] | None = None
    pipeline: Any = None
    selection: dict | None = None  # adaptation: the candidates and the choice
    eval_pipeline: Any = None  # adaptation: the chosen recipe before its refit (scored on the newest labels)
    metric_se: dict[str, float] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.problems and self.pipeline is not None


def artifact_key(
    cfg: ModelConfig, settings: ReplaySettings, as_of: dt.date, parent: str | None = None, change: Change | None = None
) -> str:
    """Cache key of the model trained for ``as_of``: training settings, the content of the
    training window as of that day (so edited data never reuses a stale model) and, with
    ``warm_start``, the parent."""
    from retrain_lib.data import load_window, window_fingerprint
    from retrain_lib.snapshot import training_window

    start, end = training_window(cfg, as_of)
    try:
        if cfg.data.source == "sql":
            content = load_window(cfg, settings, start, end, as_of=as_of).fingerprint
        else:  # the same hash, from the file listing and bytes, without building the frame
            content = window_fingerprint(cfg, settings, start, end, as_of=as_of) or "no-data"
    except DataError:
        content = "no-data"
    raw = f"{training_hash(cfg)}|{as_of.isoformat()}|{content}|{parent if cfg.training.warm_start else ''}"
    if cfg.adaptation is not None:
        # No change day trains exactly what ``change=None`` trains: one key for both.
        raw += f"|adaptation:{'|'.join(c or '' for c in change) if change and change.day else ''}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def _no_timeout(cfg: ModelConfig) -> ModelConfig:
    if cfg.training.timeout_minutes is None:
        return cfg
    return _copy(cfg, training=_copy(cfg.training, timeout_minutes=None))


def train_artifact(
    cfg: ModelConfig,
    settings: ReplaySettings,
    as_of: dt.date,
    *,
    parent: Artifact | None = None,
    key: str | None = None,
    change: Change | None = None,
) -> Artifact:
    """The retrain path's data and training steps for ``as_of``: the training window read as
    of that day, its validation (the same checks as ``snapshot_data``), then the fit on the
    training part and the candidate's holdout metrics. Pure: nothing is logged."""
    from retrain_lib.data import load_window
    from retrain_lib.metrics import evaluate
    from retrain_lib.snapshot import training_window, validate_training_data
    from retrain_lib.training import fit, split_frame, xy
    from retrain_lib.training_run import permutation_importances

    start, end = training_window(cfg, as_of)
    art = Artifact(
        key or artifact_key(cfg, settings, as_of, parent.key if parent else None, change),
        as_of.isoformat(),
        start.isoformat(),
        end.isoformat(),
    )
    try:
        window = load_window(cfg, settings, start, end, as_of=as_of)
    except DataError as exc:
        art.problems = [str(exc)]
        return art
    art.fingerprint = window.fingerprint
    art.rows, art.labelled_rows = int(len(window.frame)), int(len(window.labelled))
    problems = validate_training_data(cfg, window)
    if cfg.validation is not None and cfg.validation.enabled:
        from retrain_lib.validation import validate_window

        problems += validate_window(cfg, window).explain()
    if problems:
        art.problems = problems
        return art
    prefixes = getattr(settings.platform, "allowed_estimator_prefixes", None) or ("sklearn.",)
    init = parent.pipeline if parent is not None else None
    try:
        if cfg.adaptation is not None:
            from retrain_lib.candidates import selection_rows, train_candidates
            from retrain_lib.metrics import predict_scores

            change = change or NO_CHANGE
            chosen = train_candidates(
                _no_timeout(cfg),
                window.labelled,
                as_of=as_of,
                change=change.day,
                change_source=change.source,
                allowed_prefixes=prefixes,
                init_model=init,
            )
            pipeline, info, scored_by = chosen.model, chosen.info, chosen.eval_model
            art.selection = chosen.selection.to_dict()
            art.eval_pipeline = scored_by
            train, holdout = selection_rows(cfg, window.labelled, art.selection)
            art.fit_s = float(info.duration_s + sum(i.duration_s for _, i in chosen.fits))
        else:
            split = split_frame(cfg, window.labelled)
            train, holdout = split.train, split.holdout
            pipeline, info = fit(_no_timeout(cfg), train, prefixes, as_of=as_of, init_model=init)
            scored_by = pipeline
            art.fit_s = float(info.duration_s)
    except (DataError, ValueError, RuntimeError) as exc:
        art.problems = [f"training failed: {exc}"]
        return art
    X, y = xy(cfg, holdout)
    art.pipeline = pipeline
    art.train_rows = int(len(train))
    art.metrics = {
        k: float(v)
        for k, v in evaluate(scored_by, X, y, cfg.task).items()
        if v is not None and not math.isnan(float(v))
    }
    if cfg.adaptation is not None:
        art.metric_se = metric_ses(cfg, y, predict_scores(scored_by, X, cfg.task))
    if cfg.drift.weight_by_importance:
        art.importances = permutation_importances(cfg, pipeline, X, y)
    if any(g.type == "latency" for g in cfg.gates):
        # Measured once per model and kept with it: a wall-clock measurement taken again for
        # every policy would make identical decisions differ on a busy machine.
        from retrain_lib.gate_measures import measure_latency_ms

        art.latency_ms = measure_latency_ms(pipeline, X, task=cfg.task, n=100, seed=cfg.training.seed)
    return art


class ArtifactStore:
    """Trained artifacts by key, in memory and (with ``directory``) pickled on disk so that
    worker processes and later runs share them."""

    def __init__(self, directory: Path | None):
        self.directory = Path(directory) if directory else None
        self.memory: dict[str, Artifact] = {}

    def get(self, key: str) -> Artifact | None:
        if key in self.memory:
            return self.memory[key]
        if self.directory is not None:
            path = self.directory / f"{key}.pkl"
            if path.exists():
                with open(path, "rb") as fh:
                    art = pickle.load(fh)  # noqa: S301 - our own cache, written by this module
                self.memory[key] = art
                return art
        return None

    def put(self, art: Artifact) -> None:
        self.memory[art.key] = art
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            tmp = self.directory / f"{art.key}.pkl.tmp"
            with open(tmp, "wb") as fh:
                pickle.dump(art, fh)
            tmp.replace(self.directory / f"{art.key}.pkl")

    def trained(
        self,
        cfg: ModelConfig,
        settings: ReplaySettings,
        as_of: dt.date,
        parent: Artifact | None = None,
        change: Change | None = None,
    ) -> tuple[Artifact, bool]:
        """``(artifact, cached)``."""
        key = artifact_key(cfg, settings, as_of, parent.key if parent else None, change)
        art = self.get(key)
        if art is not None:
            return art, True
        art = train_artifact(
            cfg, settings, as_of, parent=parent if cfg.training.warm_start else None, key=key, change=change
        )
        self.put(art)
        return art, False


# -----------------------------------------------------------------------------------------
# One policy, day by day
# -----------------------------------------------------------------------------------------


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


def _decision_record(decision: dict) -> dict:
    return {
        "action": decision["action"],
        "throttled": decision.get("throttled", False),
        "reasons": list(decision.get("reasons") or []),
        "signals": [
            {k: s.get(k) for k in ("signal", "triggered", "value", "threshold")} for s in decision.get("signals") or []
        ],
    }


def _trigger(decision: dict) -> str:
    fired = [
        s["signal"]
        for s in decision.get("signals") or []
        if s.get("triggered") and s["signal"] not in ("min_retrain_interval", "max_retrains")
    ]
    return "+".join(fired) or decision["action"]


class _Replay:
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
        tags.update({f"importance.{k}": repr(v) for k, v in art.importances.items()})
        tags.update(regime_tags(art.selection))
        version = Version(str(self.counter), art.key, tags)
        self.models[_uri(self.cfg, version)] = art.pipeline
        return version

    # The monitor, as monitor_model() gathers its facts, minus MLflow, reports and ledger.
    def monitor(self, day: dt.date) -> dict:
        from retrain_lib.data import day_range, load_window
        from retrain_lib.decision import decide
        from retrain_lib.live_facts import rollback_facts
        from retrain_lib.monitor_facts import (
            drift_facts,
            importance_weights,
            new_labels_since_training,
            reference_window,
            retrain_requests_within,
        )
        from retrain_lib.performance_facts import champion_performance
        from retrain_lib.values import json_safe

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
            drift = drift_facts(cfg, reference, current, weights=weights, history=list(self.drift_raw))
            self.drift_raw.append(bool(drift.get("dataset_drift_raw", drift["dataset_drift"])))
        # The CBPE estimate only decides with performance.use_estimate; otherwise it is a note
        # of the report, and costs estimate_draws metric computations a day: skipped then.
        use_estimate = cfg.performance is not None and cfg.performance.use_estimate
        performance = json_safe(
            champion_performance(ctx, champion, day, current if use_estimate else None, healthy=state.healthy)
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
            state.healthy,
            champion.version,
            champion.tags,
        )
        self.records.append({"event": "monitor", "as_of": day.isoformat(), "details": {"action": decision["action"]}})
        return decision

    def _record(self, event: str, as_of: str | None, actor: str, details: dict) -> dict:
        """Ledger-shaped record of the replay (what ``ModelContext.record`` writes to the ledger)."""
        rec = {"event": event, "as_of": as_of, "actor": actor, "details": details}
        self.records.append(rec)
        return rec

    # The retrain path: snapshot + validation + training (cached), evaluation, gates, promotion.
    def retrain(self, day: dt.date, trigger: str, reasons: list[str]) -> dict:
        from retrain_lib.evaluation import gate_inputs
        from retrain_lib.gates import all_passed, run_gates
        from retrain_lib.metrics import evaluate
        from retrain_lib.snapshot import training_rows
        from retrain_lib.training import xy
        from retrain_lib.values import json_safe

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
        candidate = Version(f"candidate-{day.isoformat()}", art.key, {})
        self.models[_uri(cfg, candidate)] = art.pipeline
        snap = {
            "model": cfg.name,
            "as_of": art.as_of,
            "start": art.start,
            "end": art.end,
            "fingerprint": art.fingerprint,
        }
        trained = {"model_uri": _uri(cfg, candidate), "metrics": art.metrics}
        if art.selection is not None:
            scored_by = Version(f"selection-{day.isoformat()}", art.key, {})
            self.models[_uri(cfg, scored_by)] = art.eval_pipeline
            trained.update(selection=art.selection, selection_model_uri=_uri(cfg, scored_by))
            event["selection"] = {
                "chosen": art.selection["chosen"],
                "change_day": art.selection["change_day"],
                "reason": art.selection["reason"],
            }
        champion_metrics = None
        if self.champion is not None:
            from retrain_lib.candidates import selection_rows

            holdout = selection_rows(cfg, training_rows(self.ctx, snap), art.selection)[1]
            X, y = xy(cfg, holdout)
            champion_metrics = json_safe(evaluate(self.models[_uri(cfg, self.champion)], X, y, cfg.task))
        evaluation = {
            "candidate": art.metrics,
            "champion": champion_metrics,
            "champion_version": self.champion.version if self.champion else None,
        }
        event["candidate"] = art.metrics.get(cfg.primary_metric)
        event["champion"] = (champion_metrics or {}).get(cfg.primary_metric)
        outcome = PROMOTE
        if self.policy.gates:
            inputs = gate_inputs(self.ctx, snap, trained, evaluation)
            if art.latency_ms is not None:
                inputs = dataclasses.replace(inputs, latency_ms=art.latency_ms)
            results = run_gates(cfg.gates, inputs)
            passed = all_passed(results) and bool(results or not cfg.gates)
            event["failed_gates"] = [r.reason for r in results if not r.passed]
            follow = is_follow_up(cfg, self.champion.tags if self.champion else None, art.selection)
            outcome, gain = promotion_outcome(cfg, passed, inputs, follow_up=follow)
            event["follow_up"] = follow
            if gain is not None:
                event["gain"] = gain.explain()
        for key in ("model_uri", "selection_model_uri"):
            self.models.pop(trained.get(key), None)
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

    def _change_day(self, day: dt.date) -> Change | None:
        """The change a retrain on ``day`` trains after (see
        :func:`retrain_lib.adaptation_steps.training_change`)."""
        if self.champion is None:
            return None
        from retrain_lib.candidates import estimate_change
        from retrain_lib.data import load_window
        from retrain_lib.snapshot import training_window

        start, end = training_window(self.cfg, day)

        def estimate() -> str | None:
            try:
                window = load_window(self.cfg, self.settings, start, end, as_of=day)
            except DataError:
                return None
            return estimate_change(
                self.cfg,
                window.labelled,
                self.models[_uri(self.cfg, self.champion)],
                self.champion.tags.get("data.end"),
            )

        # As the retrain DAG does (lifecycle.train_candidate).
        return training_change(
            self.champion.tags,
            start,
            estimate,
            lambda: self.records,
            self.champion.version,
            training_days=self.cfg.windows.training_days,
        )

    def rollback(self, day: dt.date, decision: dict) -> dict:
        event = {
            "day": day.isoformat(),
            "from": self._key(self.champion),
            "to": self._key(self.previous),
            "reasons": decision["reasons"],
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
        from retrain_lib.decision import RETRAIN, ROLLBACK

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
            if decision["action"] == RETRAIN:
                record["retrain"] = self.retrain(day, _trigger(decision), decision["reasons"])
            elif decision["action"] == ROLLBACK:
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


# -----------------------------------------------------------------------------------------
# Workers (process pool)
# -----------------------------------------------------------------------------------------


def _worker_init() -> None:
    from retrain_lib.data import cache_partitions

    cache_partitions()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # noqa: BLE001 - only a performance hint
        pass
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def _train_job(cfg_json: dict, data_root: str, platform_json: dict | None, as_of: str, cache: str) -> str:
    from retrain_lib.config_platform import PlatformConfig

    cfg = ModelConfig.model_validate(cfg_json)
    platform = PlatformConfig.model_validate(platform_json) if platform_json is not None else None
    store = ArtifactStore(Path(cache))
    art, _ = store.trained(cfg, ReplaySettings(Path(data_root), platform), dt.date.fromisoformat(as_of))
    return art.key


def _policy_job(
    policy: Policy,
    cfg_json: dict,
    data_root: str,
    platform_json: dict | None,
    days: list[str],
    cache: str,
    initial: tuple[dict, str] | None,
) -> PolicyRun:
    from retrain_lib.config_platform import PlatformConfig

    policy = Policy(
        policy.name,
        ModelConfig.model_validate(cfg_json),
        policy.monitor,
        policy.floor,
        policy.daily,
        policy.gates,
        policy.source,
    )
    platform = PlatformConfig.model_validate(platform_json) if platform_json is not None else None
    init = (ModelConfig.model_validate(initial[0]), dt.date.fromisoformat(initial[1])) if initial else None
    return run_policy(
        policy,
        ReplaySettings(Path(data_root), platform),
        ArtifactStore(Path(cache)),
        [dt.date.fromisoformat(d) for d in days],
        initial=init,
    )


def _pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )


def run_policies(
    policies: list[Policy],
    settings: ReplaySettings,
    days: list[dt.date],
    *,
    cache_dir: Path,
    workers: int = 1,
    pretrain: list[tuple[ModelConfig, dt.date]] = (),
    initial: tuple[ModelConfig, dt.date] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, PolicyRun]:
    """Train ``pretrain`` (config, day) models in parallel, then replay every policy (in
    parallel with ``workers > 1``). Models are shared through ``cache_dir``."""
    import contextlib

    store = ArtifactStore(cache_dir)
    say = progress or (lambda _m: None)
    todo = [(c, d) for c, d in pretrain if store.get(artifact_key(c, settings, d)) is None]
    platform_json = settings.platform.model_dump(mode="json") if settings.platform is not None else None
    parallel = workers > 1 and (len(todo) > 1 or len(policies) > 1)
    runs: dict[str, PolicyRun] = {}
    # One pool for both phases: its workers import scikit-learn and Great Expectations once.
    with _pool(workers) if parallel else contextlib.nullcontext() as pool:
        if todo:
            say(f"training {len(todo)} model(s) (one per training window) with {workers} worker(s)")
            if pool is not None and len(todo) > 1:
                from concurrent.futures import as_completed

                futures = [
                    pool.submit(
                        _train_job,
                        c.model_dump(mode="json"),
                        str(settings.data_root),
                        platform_json,
                        d.isoformat(),
                        str(cache_dir),
                    )
                    for c, d in todo
                ]
                for i, fut in enumerate(as_completed(futures), 1):
                    fut.result()
                    if i % 5 == 0 or i == len(futures):
                        say(f"trained {i}/{len(futures)}")
            else:
                for i, (c, d) in enumerate(todo, 1):
                    store.trained(c, settings, d)
                    if i % 5 == 0 or i == len(todo):
                        say(f"trained {i}/{len(todo)}")
        say(
            f"replaying {len(days)} day(s) for {len(policies)} polic{'y' if len(policies) == 1 else 'ies'}: "
            + ", ".join(p.name for p in policies)
        )
        if pool is not None and len(policies) > 1:
            from concurrent.futures import as_completed

            init = (initial[0].model_dump(mode="json"), initial[1].isoformat()) if initial else None
            futures = {
                pool.submit(
                    _policy_job,
                    p,
                    p.cfg.model_dump(mode="json"),
                    str(settings.data_root),
                    platform_json,
                    [d.isoformat() for d in days],
                    str(cache_dir),
                    init,
                ): p.name
                for p in policies
            }
            for fut in as_completed(futures):
                name = futures[fut]
                runs[name] = fut.result()
                say(f"{name}: done in {runs[name].wall_s:.0f} s")
        else:
            for p in policies:
                runs[p.name] = run_policy(p, settings, store, days, initial=initial, progress=say)
                say(f"{p.name}: done in {runs[p.name].wall_s:.0f} s")
    return {p.name: runs[p.name] for p in policies}


# -----------------------------------------------------------------------------------------
# Scoring (after every decision is fixed) and the summary
# -----------------------------------------------------------------------------------------


class _Scorer:
    """The true labels of every event of the backtest range, read once after the replay,
    and each model's scores per day (cached)."""

    def __init__(self, cfg: ModelConfig, settings: ReplaySettings, store: ArtifactStore, start: dt.date, end: dt.date):
        from retrain_lib.data import load_window

        window = load_window(cfg, settings, start, end, as_of=dt.date.max, require_rows=False)
        frame = window.labelled if not window.frame.empty else window.frame
        self.cfg = cfg
        self.store = store
        self.by_day = {}
        if not frame.empty:
            days = frame[cfg.data.timestamp_column].dt.date
            self.by_day = {d.isoformat(): rows for d, rows in frame.groupby(days.to_numpy())}
        self.scores: dict[tuple[str, str], Any] = {}
        self.metric = cfg.primary_metric

    def _scores(self, key: str, day: str):
        from retrain_lib.metrics import predict_scores
        from retrain_lib.training import feature_frame

        if (key, day) not in self.scores:
            X = feature_frame(self.cfg, self.by_day[day])
            self.scores[(key, day)] = predict_scores(self.store.get(key).pipeline, X, self.cfg.task)
        return self.scores[(key, day)]

    def value(self, key: str | None, days: list[str]) -> float | None:
        import numpy as np

        from retrain_lib.performance import metric_value
        from retrain_lib.training import xy

        days = [d for d in days if d in self.by_day]
        if key is None or not days:
            return None
        y = np.concatenate([xy(self.cfg, self.by_day[d])[1] for d in days])
        s = np.concatenate([self._scores(key, d) for d in days])
        v = metric_value(y, s, self.metric, self.cfg.task)
        return None if math.isnan(v) else float(v)


def revealed_drifts(cfg: ModelConfig, settings: ReplaySettings, days: list[dt.date]) -> list[dict]:
    """Drift onsets the data reveals: days whose monitor window (``monitor_days``) drifts,
    by the config's drift settings, from the ``reference_days`` just before it, while the
    day before did not. Features only (labels are not read)."""
    from retrain_lib.data import day_range, load_window
    from retrain_lib.drift import drift_for_config

    out, before = [], None
    m, r = cfg.windows.monitor_days, cfg.windows.reference_days
    for day in days:
        cur_start, cur_end = day_range(day, m)
        ref_end = cur_start - dt.timedelta(days=1)
        ref_start = ref_end - dt.timedelta(days=r - 1)
        try:
            ref = load_window(cfg, settings, ref_start, ref_end, as_of=ref_end)
            cur = load_window(cfg, settings, cur_start, cur_end, as_of=day)
        except DataError:
            before = None
            continue
        report = drift_for_config(cfg, ref.frame, cur.frame)
        if report.dataset_drift and before is False:
            out.append(
                {"day": day.isoformat(), "source": "data", "features": [f.name for f in report.features if f.drifted]}
            )
        before = report.dataset_drift
    return out


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(sum(values) / len(values)) if values else None


def summarize(
    cfg: ModelConfig,
    runs: dict[str, PolicyRun],
    scorer: _Scorer,
    days: list[dt.date],
    drifts: list[dict],
    *,
    improvement_days: int = 7,
) -> dict[str, Any]:
    """Per policy: retrains and their days, compute, the prequential metric, the metric lost
    vs the oracle, detection delays and false alarms."""
    from retrain_lib.metrics import greater_is_better

    up = greater_is_better(scorer.metric)
    names = [d.isoformat() for d in days]
    metric_by_policy = {name: {d: scorer.value(run.serving.get(d), [d]) for d in names} for name, run in runs.items()}
    oracle = metric_by_policy.get("oracle")
    out: dict[str, Any] = {}
    for name, run in runs.items():
        daily = metric_by_policy[name]
        first = next((r for r in run.retrains if r.get("outcome") == "deployed"), None)
        later = [r for r in run.retrains if r is not first]
        deployed = [r for r in later if r.get("outcome") == "deployed"]
        lost = None
        if oracle is not None:
            gaps = [
                (oracle[d] - daily[d]) * (1 if up else -1)
                for d in names
                if oracle[d] is not None and daily[d] is not None
            ]
            lost = _mean(gaps)
        change_days = [r["day"] for r in deployed] + [b["day"] for b in run.rollbacks if b["outcome"] == "rolled_back"]
        false_alarms = []
        for r in later:
            if r.get("outcome") != "deployed":
                false_alarms.append(
                    {"day": r["day"], "trigger": r["trigger"], "why": f"not deployed ({r.get('outcome')})"}
                )
                continue
            if r["champion_before"] is None:
                continue
            nxt = min([c for c in change_days if c > r["day"]], default=None)
            after = [d for d in names if d > r["day"] and (nxt is None or d <= nxt)][:improvement_days]
            new, old = scorer.value(r["champion_after"], after), scorer.value(r["champion_before"], after)
            r["improvement"] = None if new is None or old is None else (new - old) * (1 if up else -1)
            if r["improvement"] is not None and r["improvement"] <= 0:
                false_alarms.append(
                    {
                        "day": r["day"],
                        "trigger": r["trigger"],
                        "why": f"{scorer.metric} {new:.4f} vs {old:.4f} for the old model on the next "
                        f"{len(after)} day(s)",
                    }
                )
        detection = []
        # A monitored policy detects a drift with a trigger of its monitor (not its schedule);
        # the others only adapt with their next retrain.
        caught = [r for r in later if not run.monitor or r["trigger"] not in ("schedule", "daily")]
        for drift in drifts:
            hit = next((r for r in caught if r["day"] >= drift["day"]), None)
            back = next((b for b in run.rollbacks if b["day"] >= drift["day"]), None)
            if back is not None and (hit is None or back["day"] < hit["day"]):
                hit = {"day": back["day"], "trigger": "rollback", "outcome": back["outcome"]}
            detection.append(
                {
                    "drift": drift["day"],
                    "source": drift["source"],
                    "detected_on": hit["day"] if hit else None,
                    "delay_days": (dt.date.fromisoformat(hit["day"]) - dt.date.fromisoformat(drift["day"])).days
                    if hit
                    else None,
                    "trigger": hit["trigger"] if hit else None,
                    "outcome": hit.get("outcome") if hit else None,
                }
            )
        out[name] = {
            "source": run.source,
            "first_model": first["day"] if first else None,
            "retrains": len(later),
            "retrain_days": [r["day"] for r in later],
            "deployed": len(deployed),
            "deployed_days": [r["day"] for r in deployed],
            "rejected_days": [r["day"] for r in later if r.get("outcome") == "rejected"],
            "rollbacks": [b["day"] for b in run.rollbacks if b["outcome"] == "rolled_back"],
            "triggers": {t: sum(1 for r in later if r["trigger"] == t) for t in sorted({r["trigger"] for r in later})},
            "compute_s": round(run.compute_s, 2),
            "replay_wall_s": round(run.wall_s, 1),
            "metric_mean": _mean(daily.values()),
            "metric_lost_vs_oracle": lost,
            "detection": detection,
            "false_alarms": len(false_alarms),
            "false_alarm_details": false_alarms,
            "metric_by_day": daily,
        }
    return out


def _attach_after(runs: dict[str, PolicyRun]) -> None:
    """Each retrain knows the champion after it (the serving model of the next day)."""
    for run in runs.values():
        by_day = {d["day"]: d for d in run.days}
        for r in run.retrains:
            r["champion_after"] = by_day.get(r["day"], {}).get("champion")


def plot_backtest(summary: dict, path: Path) -> Path:
    """The metric over time per policy, with markers on deployed (triangle) and rejected
    (cross) retrains and dashed lines at the drifts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    for name, pol in summary["policies"].items():
        days = [dt.date.fromisoformat(d) for d, v in pol["metric_by_day"].items() if v is not None]
        values = [v for v in pol["metric_by_day"].values() if v is not None]
        (line,) = ax.plot(
            days, values, label=f"{name} ({pol['retrains']} retrains)", lw=1.6, zorder=3 if name == "config" else 2
        )
        for marker, key in (("^", "deployed_days"), ("x", "rejected_days")):
            xs = [dt.date.fromisoformat(d) for d in pol[key] if pol["metric_by_day"].get(d) is not None]
            ys = [pol["metric_by_day"][d.isoformat()] for d in xs]
            ax.scatter(xs, ys, marker=marker, color=line.get_color(), s=45, zorder=4)
    for drift in summary["drifts"]:
        ax.axvline(dt.date.fromisoformat(drift["day"]), color="grey", ls="--", lw=1)
        ax.annotate(
            f"drift ({drift['source']})",
            (dt.date.fromisoformat(drift["day"]), 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color="grey",
        )
    ax.set_title(
        f"{summary['model']}: prequential {summary['metric']} per day (^ retrain deployed, x retrain rejected)"
    )
    ax.set_ylabel(summary["metric"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.autofmt_xdate()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _day_list(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def data_days(cfg: ModelConfig, settings: ReplaySettings) -> list[dt.date]:
    from retrain_lib.data import available_days

    days = available_days(cfg, settings.data_root, settings.platform)
    if not days:
        raise DataError(
            f"no {cfg.data.format} partitions for model {cfg.name!r} under "
            f"{Path(settings.data_root) / (cfg.data.path or '')}; expected files named YYYY-MM-DD."
            f"{cfg.data.format} (run 'retrain simulate' for sample data)"
        )
    return days


def backtest(
    cfg: ModelConfig,
    data_root,
    *,
    start: dt.date | None = None,
    end: dt.date | None = None,
    policies: list[Policy] | None = None,
    drift_days: list[dt.date] = (),
    platform=None,
    cache_dir: Path | None = None,
    workers: int = 1,
    reveal_drifts: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Replay ``start..end`` for every policy and summarise (see the module docstring).

    ``start`` defaults to the first day with a full training window behind it
    (first data day + ``training_days``), ``end`` to the last data day. ``drift_days``
    are declared drifts; with ``reveal_drifts`` the onsets the features reveal are added.
    """
    from retrain_lib.data import partition_cache

    with partition_cache():
        return _backtest(
            cfg,
            data_root,
            start=start,
            end=end,
            policies=policies,
            drift_days=drift_days,
            platform=platform,
            cache_dir=cache_dir,
            workers=workers,
            reveal_drifts=reveal_drifts,
            progress=progress,
        )


def _backtest(
    cfg: ModelConfig,
    data_root,
    *,
    start,
    end,
    policies,
    drift_days,
    platform,
    cache_dir,
    workers,
    reveal_drifts,
    progress,
) -> dict[str, Any]:
    import tempfile

    started = time.monotonic()
    settings = ReplaySettings(Path(data_root), platform)
    available = data_days(cfg, settings)
    start = start or min(available[0] + dt.timedelta(days=cfg.windows.training_days), available[-1])
    end = end or available[-1]
    if start > end:
        raise DataError(f"backtest range {start}..{end} is empty; --from must not be after --to")
    if end < available[0] or start > available[-1]:
        raise DataError(
            f"no data of {cfg.name!r} in {start}..{end}: partitions cover {available[0]}.."
            f"{available[-1]}; adjust --from/--to"
        )
    days = _day_list(start, end)
    policies = policies if policies is not None else default_policies(cfg)
    own_cache = cache_dir is None
    cache = Path(tempfile.mkdtemp(prefix="retrain-backtest-")) if own_cache else Path(cache_dir)
    try:
        pretrain: list[tuple[ModelConfig, dt.date]] = []
        seen = set()
        for p in policies:
            wanted = days if p.daily else [days[0]]
            for d in wanted:
                k = (training_hash(p.cfg), d)
                if k not in seen and not p.cfg.training.warm_start:
                    seen.add(k)
                    pretrain.append((p.cfg, d))
        runs = run_policies(
            policies, settings, days, cache_dir=cache, workers=workers, pretrain=pretrain, progress=progress
        )
        _attach_after(runs)
        (progress or (lambda _m: None))("scoring the served models on the true labels")
        store = ArtifactStore(cache)
        scorer = _Scorer(cfg, settings, store, start, end)
        drifts = [{"day": d.isoformat(), "source": "declared"} for d in drift_days]
        if reveal_drifts:
            # an onset the data reveals within a monitor window after a declared drift is that drift
            near = {
                (d + dt.timedelta(days=i)).isoformat() for d in drift_days for i in range(cfg.windows.monitor_days + 1)
            }
            drifts += [d for d in revealed_drifts(cfg, settings, days) if d["day"] not in near]
        drifts.sort(key=lambda d: d["day"])
        from retrain_lib.metrics import greater_is_better

        return {
            "model": cfg.name,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "days": len(days),
            "label_delay_days": cfg.data.label_delay_days,
            "metric": scorer.metric,
            "greater_is_better": greater_is_better(scorer.metric),
            "drifts": drifts,
            "policies": summarize(cfg, runs, scorer, days, drifts),
            "decisions": {name: [_compact(d) for d in run.days] for name, run in runs.items()},
            "elapsed_s": round(time.monotonic() - started, 1),
            "workers": workers,
            "notes": NOTES,
        }
    finally:
        if own_cache:
            import shutil

            shutil.rmtree(cache, ignore_errors=True)


def _compact(day: dict) -> dict:
    out = {"day": day["day"]}
    if "decision" in day:
        out["action"] = day["decision"]["action"]
        out["reasons"] = day["decision"]["reasons"]
        if day["decision"].get("throttled"):
            out["throttled"] = True
    for k in ("scheduled", "retrain"):
        if k in day:
            out[k] = {x: day[k].get(x) for x in ("trigger", "outcome", "failed_gates", "problems") if day[k].get(x)}
    if "rollback" in day:
        out["rollback"] = day["rollback"]["outcome"]
    return out


def headline(summary: dict) -> dict[str, Any]:
    """The short form of a backtest summary: per policy the counts, metrics and the metric per
    day, without the day-by-day decisions (``decisions``) and the false-alarm details."""
    keep = (
        "retrains",
        "retrain_days",
        "deployed",
        "rollbacks",
        "compute_s",
        "metric_mean",
        "metric_lost_vs_oracle",
        "detection",
        "false_alarms",
        "metric_by_day",
    )
    return {
        **{k: v for k, v in summary.items() if k not in ("policies", "decisions")},
        "policies": {n: {k: p[k] for k in keep} for n, p in summary["policies"].items()},
    }


# -----------------------------------------------------------------------------------------
# Dry run: an edited config against the current one over the last N days
# -----------------------------------------------------------------------------------------


def dry_run(
    new: ModelConfig,
    old: ModelConfig,
    data_root,
    *,
    days: int,
    end: dt.date | None = None,
    platform=None,
    cache_dir: Path | None = None,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """What ``new`` would have fired in the last ``days`` days compared with ``old``: both
    replayed from the same champion (trained by ``old`` the day before the range)."""
    import tempfile

    if days < 1:
        raise ConfigError(f"--days must be at least 1, got {days}")
    if new.name != old.name:
        raise ConfigError(
            f"the configs describe different models ({new.name!r} and {old.name!r}); compare two "
            "versions of the same model config"
        )
    settings = ReplaySettings(Path(data_root), platform)
    available = data_days(old, settings)
    end = end or available[-1]
    start = end - dt.timedelta(days=days - 1)
    if start - dt.timedelta(days=1) < available[0]:
        raise DataError(
            f"--days {days}: the range {start}..{end} needs data from {start - dt.timedelta(days=1)} "
            f"(the starting champion's training day); data starts {available[0]}"
        )
    policies = [
        Policy("edited", new, floor=new.schedule.retrain_floor, source="edited config"),
        Policy("current", old, floor=old.schedule.retrain_floor, source="current config"),
    ]
    own = cache_dir is None
    cache = Path(tempfile.mkdtemp(prefix="retrain-dryrun-")) if own else Path(cache_dir)
    try:
        init_day = start - dt.timedelta(days=1)
        runs = run_policies(
            policies,
            settings,
            _day_list(start, end),
            cache_dir=cache,
            workers=workers,
            pretrain=[(old, init_day)],
            initial=(old, init_day),
            progress=progress,
        )
    finally:
        if own:
            import shutil

            shutil.rmtree(cache, ignore_errors=True)

    def fired(run: PolicyRun) -> dict[str, dict]:
        out = {}
        for d in run.days:
            events = []
            if "scheduled" in d:
                events.append(f"scheduled retrain: {d['scheduled']['outcome']}")
            dec = d.get("decision") or {}
            if dec.get("action") in ("retrain", "rollback"):
                outcome = (d.get("retrain") or {}).get("outcome") or (d.get("rollback") or {}).get("outcome")
                events.append(f"{dec['action']} ({_trigger(dec)}): {outcome}")
            elif dec.get("throttled"):
                events.append("trigger fired but throttled")
            out[d["day"]] = {"action": dec.get("action"), "events": events, "reasons": dec.get("reasons", [])}
        return out

    edited, current = fired(runs["edited"]), fired(runs["current"])
    differences = [
        {
            "day": day,
            "edited": edited[day]["events"] or ["healthy"],
            "current": current[day]["events"] or ["healthy"],
            "edited_reasons": edited[day]["reasons"],
            "current_reasons": current[day]["reasons"],
        }
        for day in edited
        if edited[day]["events"] != current[day]["events"] or edited[day]["action"] != current[day]["action"]
    ]

    def counts(run: PolicyRun) -> dict:
        return {
            "retrains": len(run.retrains),
            "retrain_days": [r["day"] for r in run.retrains],
            "deployed": sum(r.get("outcome") == "deployed" for r in run.retrains),
            "rollbacks": [b["day"] for b in run.rollbacks],
            "monitor_retrain_requests": [
                d["day"] for d in run.days if (d.get("decision") or {}).get("action") == "retrain"
            ],
            "throttled": [d["day"] for d in run.days if (d.get("decision") or {}).get("throttled")],
        }

    return {
        "model": new.name,
        "from": start.isoformat(),
        "to": end.isoformat(),
        "days": days,
        "edited": counts(runs["edited"]),
        "current": counts(runs["current"]),
        "differences": differences,
        "same": not differences,
        "config_hash": {"edited": new.config_hash(), "current": old.config_hash()},
    }


# -----------------------------------------------------------------------------------------
# Calibrate: thresholds from a stable window
# -----------------------------------------------------------------------------------------


def stable_checks(cfg: ModelConfig, settings: ReplaySettings, start: dt.date, end: dt.date):
    """The monitor checks a stable window holds: for each day ``d`` with room for both
    windows inside ``start..end``, the ``reference_days`` before the current window as the
    reference and the ``monitor_days`` ending on ``d`` as the current window. Yields
    ``(day, reference frame, current frame)``."""
    from retrain_lib.data import day_range, load_window

    m, r = cfg.windows.monitor_days, cfg.windows.reference_days
    first = start + dt.timedelta(days=m + r - 1)
    for day in _day_list(first, end) if first <= end else []:
        cur_start, cur_end = day_range(day, m)
        ref_end = cur_start - dt.timedelta(days=1)
        ref = load_window(cfg, settings, ref_end - dt.timedelta(days=r - 1), ref_end, as_of=ref_end)
        cur = load_window(cfg, settings, cur_start, cur_end, as_of=day)
        yield day, ref.frame, cur.frame


def _round_up(x: float) -> float:
    if not math.isfinite(x) or x <= 0:
        return x
    e = math.floor(math.log10(x)) - 2
    return float(f"{math.ceil(x / 10**e)}e{e}")  # three significant digits, without float noise


def _round_down(x: float) -> float:
    if not math.isfinite(x) or x <= 0:
        return x
    e = math.floor(math.log10(x)) - 2
    return float(f"{math.floor(x / 10**e)}e{e}")


def calibrate(
    cfg: ModelConfig,
    data_root,
    *,
    stable_from: dt.date,
    stable_to: dt.date,
    false_alarm_rate: float = 0.01,
    warn_ratio: float = 0.90,
    critical_ratio: float = 0.80,
    platform=None,
) -> dict[str, Any]:
    """Drift thresholds for a target false-alarm rate and performance levels from a stable
    window, as a config patch (``patch``) with the evidence (``checks``, per-feature scores).

    Per feature (its configured method), the threshold is the stricter-for-alarms of

    * the null-model threshold at the monitor's sample sizes
      (:func:`retrain_lib.calibration.calibrate_feature`) at level ``far / k`` (``k``
      checked features: Bonferroni, so under no drift the chance that *any* feature
      fires, and so that the dataset drifts, stays below ``far``), and
    * the same quantile of the feature's statistic over the stable window's checks,

    so that it holds on the stable window as observed and in theory. Distance methods:
    the larger of both (rounded up); p-value methods (ks, chi2): the smaller (rounded down).

    Performance: ``warn_drop = 1 - warn_ratio`` and ``critical_drop = 1 - critical_ratio``
    (relative to the champion's baseline, in the metric's direction), reported with the
    baseline a model trained on the stable window reaches on its holdout.
    """
    import numpy as np

    from retrain_lib.calibration import calibrate_feature
    from retrain_lib.drift import drift_for_config
    from retrain_lib.drift_methods import get_method
    from retrain_lib.drift_stats import NUMERIC

    if not 0 < false_alarm_rate < 1:
        raise ConfigError(f"--false-alarm-rate must be in (0, 1), got {false_alarm_rate}")
    if not 0 < critical_ratio < warn_ratio < 1:
        raise ConfigError(f"need 0 < --critical ({critical_ratio}) < --warn ({warn_ratio}) < 1")
    if stable_to < stable_from:
        raise ConfigError(f"--stable-to {stable_to} is before --stable-from {stable_from}")
    settings = ReplaySettings(Path(data_root), platform)
    need = cfg.windows.monitor_days + cfg.windows.reference_days
    if (stable_to - stable_from).days + 1 < need:
        raise ConfigError(
            f"the stable window {stable_from}..{stable_to} has {(stable_to - stable_from).days + 1} "
            f"day(s); one check needs windows.reference_days + windows.monitor_days = {need}"
        )
    scores: dict[str, list[float]] = {}
    meta: dict[str, tuple] = {}
    null_thresholds: dict[str, list[float]] = {}
    checks = 0
    for _day, ref, cur in stable_checks(cfg, settings, stable_from, stable_to):
        checks += 1
        report = drift_for_config(cfg, ref, cur)
        k = len(report.features)
        level = false_alarm_rate / max(k, 1)
        for f in report.features:
            p_scale = get_method(f.method).uses_p_value
            meta[f.name] = (f.method, f.kind, p_scale)
            scores.setdefault(f.name, []).append(f.p_value if p_scale else f.score)
            cal = calibrate_feature(
                f.name,
                f.method,
                f.kind,
                ref[f.name],
                cur[f.name],
                score=f.score,
                p_value=f.p_value,
                n_ref=f.reference_rows,
                n_cur=f.current_rows,
                bins=cfg.drift.bins,
                binning="quantile",
                false_alarm_rate=level,
            )
            null_thresholds.setdefault(f.name, []).append(cal.null.threshold(level))
    if not checks:
        raise DataError(f"no monitor check fits in {stable_from}..{stable_to} with the data of {cfg.name!r}")
    features_patch: dict[str, dict] = {}
    evidence: dict[str, dict] = {}
    k = len(meta)
    level = false_alarm_rate / max(k, 1)
    for name, (method, kind, p_scale) in meta.items():
        values = np.asarray([v for v in scores[name] if v is not None and np.isfinite(v)], dtype=float)
        nulls = [t for t in null_thresholds[name] if t is not None and np.isfinite(t)]
        if p_scale:
            observed = float(np.quantile(values, level, method="lower")) if values.size else 1.0
            null = float(np.min(nulls)) if nulls else level
            threshold = _round_down(min(null, observed * 0.999 if observed > 0 else null))
            threshold = max(threshold, 1e-300)
        else:
            observed = float(np.quantile(values, 1 - level, method="higher")) if values.size else 0.0
            null = float(np.max(nulls)) if nulls else observed
            threshold = _round_up(max(null, observed * 1.001))
        features_patch[name] = {"method": method, "threshold": float(threshold)}
        evidence[name] = {
            "method": method,
            "kind": "numeric" if kind == NUMERIC else "categorical",
            "scale": "p_value (drift when <=)" if p_scale else "score (drift when >=)",
            "stable_min": float(values.min()) if values.size else None,
            "stable_max": float(values.max()) if values.size else None,
            "null_threshold": null,
            "stable_quantile": observed,
            "threshold": float(threshold),
        }
    baseline = _stable_baseline(cfg, settings, stable_to)
    metric = cfg.performance.metric if cfg.performance else cfg.primary_metric
    from retrain_lib.metrics import greater_is_better

    up = greater_is_better(metric)
    warn_drop, critical_drop = round(1 - warn_ratio, 6), round(1 - critical_ratio, 6)
    perf_patch: dict[str, Any] = {"metric": metric, "warn_drop": warn_drop, "critical_drop": critical_drop}
    levels = None
    if baseline is not None:
        sign = -1 if up else 1
        levels = {
            "baseline": baseline,
            "warn_at": baseline + sign * warn_drop * abs(baseline),
            "critical_at": baseline + sign * critical_drop * abs(baseline),
        }
    patch = {"drift": {"features": features_patch}, "performance": perf_patch}
    return {
        "model": cfg.name,
        "stable_from": stable_from.isoformat(),
        "stable_to": stable_to.isoformat(),
        "checks": checks,
        "false_alarm_rate": false_alarm_rate,
        "per_feature_level": level,
        "patch": patch,
        "features": evidence,
        "performance": levels,
    }


def _stable_baseline(cfg: ModelConfig, settings: ReplaySettings, stable_to: dt.date) -> float | None:
    """The holdout metric of a model trained on the stable window (as of its last day)."""
    art = train_artifact(cfg, settings, stable_to)
    metric = cfg.performance.metric if cfg.performance else cfg.primary_metric
    return art.metrics.get(metric) if art.valid else None


def apply_patch(cfg: ModelConfig, patch: dict) -> ModelConfig:
    """``cfg`` with a calibrate patch merged in (validated again)."""
    dump = cfg.model_dump(mode="json", exclude_unset=False)
    features = dict(dump["drift"].get("features") or {})
    features.update(patch.get("drift", {}).get("features", {}))
    dump["drift"]["features"] = features
    if patch.get("performance") and dump.get("performance"):
        dump["performance"].update(patch["performance"])
    return ModelConfig.model_validate(dump)


def patch_yaml(result: dict) -> str:
    """The patch as YAML, with the evidence as comments."""
    import yaml

    lines = [
        f"# retrain calibrate {result['model']}: stable window {result['stable_from']}..{result['stable_to']}, "
        f"{result['checks']} monitor check(s)",
        f"# target false-alarm rate {result['false_alarm_rate']:g} (per feature {result['per_feature_level']:.2g}, "
        "Bonferroni)",
    ]
    for name, ev in result["features"].items():
        lo, hi = ev["stable_min"], ev["stable_max"]
        rng = f"{lo:.4g}..{hi:.4g}" if lo is not None else "no values"
        lines.append(f"#   {name}: {ev['method']} {ev['scale']}; stable {rng}; null {ev['null_threshold']:.4g}")
    if result["performance"]:
        p = result["performance"]
        lines.append(
            f"# performance: baseline {p['baseline']:.4f} (holdout of a model trained on the stable window); "
            f"warning at {p['warn_at']:.4f}, critical at {p['critical_at']:.4f}"
        )
    return "\n".join(lines) + "\n" + yaml.safe_dump(result["patch"], sort_keys=False)
