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

The result is plain JSON-serialisable dicts, assembled here from :mod:`retrain_lib.tools.status_registry`,
:mod:`retrain_lib.tools.status_monitor`, :mod:`retrain_lib.tools.status_timeline` and
:mod:`retrain_lib.tools.status_decisions`. An SQLite registry is read from its file
(:mod:`retrain_lib.store.registry_reader`); MLflow (about 6 s cold) is imported only for any other
registry. The rest is the standard library, PyYAML, pydantic and SQLAlchemy.

Example::

    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.status import fleet_status

    fleet = fleet_status(load_settings())
    for m in fleet["models"]:
        print(m["model"], m["aliases"].get("champion"), (m["last_monitor"] or {}).get("action"))
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain_lib.core.config import load_model_configs
from retrain_lib.core.errors import RetrainError
from retrain_lib.core.settings import load_settings
from retrain_lib.store import registry
from retrain_lib.store.audit import Ledger
from retrain_lib.store.registry_reader import reader_for
from retrain_lib.tools.status_decisions import (
    GATES_EVENT,
    MONITOR_EVENT,
    decision_entry,
    gates_summary,
    retrain_outcome,
)
from retrain_lib.tools.status_lifecycle import lifecycle_summary
from retrain_lib.tools.status_monitor import drift_trend, latest_record, monitor_summary
from retrain_lib.tools.status_registry import registry_state, registry_states
from retrain_lib.tools.status_timeline import timeline

DEFAULT_HISTORY = 14  # monitor checks in the drift trend
DEFAULT_DECISIONS = 10  # ledger decisions per model
DEFAULT_TIMELINE_DAYS = 60  # calendar days in the per-day timeline (live metric, drift share, markers)
METRIC_COLUMNS = 6  # version metrics shown: the gated ones always, then others up to this many


class UnknownModelError(RetrainError, LookupError):
    """The model named has no config, no ledger record and no registered model."""


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


# -----------------------------------------------------------------------------------------
# The fleet
# -----------------------------------------------------------------------------------------


def model_names(settings, ledger=None) -> tuple[dict[str, Any], list[dict], list[str]]:
    """``(valid configs by name, config problems as dicts, every known model name)``: names
    from the config files (valid or not) and from the ledger. Validates every config: the
    fleet status validates only those of the page it shows (:func:`fleet_names`)."""
    configs = load_model_configs([settings.models_dir], settings.platform) if settings.models_dir.is_dir() else None
    valid = dict(configs.models) if configs else {}
    problems = [p.to_dict() for p in configs.problems] if configs else []
    files = {p.stem for p in settings.models_dir.glob("*.yaml")} if settings.models_dir.is_dir() else set()
    ledger = ledger or Ledger.from_settings(settings)
    return valid, problems, sorted(set(valid) | files | set(ledger.models()))


def config_paths(settings) -> dict[str, list[Path]]:
    """Model name -> its config files (``.yaml``/``.yml``), without reading them."""
    found: dict[str, list[Path]] = {}
    if settings.models_dir.is_dir():
        for p in sorted(settings.models_dir.iterdir()):
            if p.suffix in (".yaml", ".yml") and p.is_file():
                found.setdefault(p.stem, []).append(p)
    return found


def fleet_names(settings, ledger) -> list[str]:
    """Every known model name, sorted: config file names and ledger models (no file is read)."""
    return sorted(set(config_paths(settings)) | set(ledger.models()))


@dataclass(frozen=True)
class Page:
    """One page of the fleet: ``number`` (from 1) of ``pages``, ``per_page`` models each, of
    ``total`` models; ``first``/``last`` are the 1-based positions of the models shown."""

    number: int
    per_page: int
    pages: int
    total: int

    @classmethod
    def of(cls, total: int, page: int = 1, per_page: int | None = None) -> Page:
        """Page ``page`` (clamped into range) of ``total`` models; ``per_page=None``: all on one."""
        size = max(total, 1) if per_page is None else max(int(per_page), 1)
        pages = max((total + size - 1) // size, 1)
        return cls(min(max(int(page), 1), pages), size, pages, total)

    @property
    def start(self) -> int:
        return (self.number - 1) * self.per_page

    @property
    def stop(self) -> int:
        return min(self.start + self.per_page, self.total)

    def to_dict(self) -> dict[str, Any]:
        return {
            "page": self.number,
            "per_page": self.per_page,
            "pages": self.pages,
            "total": self.total,
            "first": self.start + 1 if self.total else 0,
            "last": self.stop,
            "prev": self.number - 1 if self.number > 1 else None,
            "next": self.number + 1 if self.number < self.pages else None,
        }


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
    page: int = 1,
    per_page: int | None = None,
    gate_details: bool = True,
) -> dict[str, Any]:
    """The state of every model (or of ``model`` only, or of one page of models), as
    JSON-serialisable dicts.

    Reads the sources once per call, for the models shown only: their configs (no other file
    is validated), their ledger records (one query), and the registry in two queries per 100
    models (:func:`~retrain_lib.tools.status_registry.registry_states`), so a page of a
    1,000-model fleet costs what a page of a small one does.

    Args:
        settings: :class:`~retrain_lib.core.settings.Settings` (default: :func:`load_settings`).
        model: only this model; :class:`UnknownModelError` when it has no config, no ledger
            record and no registered model.
        history: monitor checks in each model's drift trend (the latest, one per day).
        decisions: ledger decisions per model (newest first; monitor checks excluded).
        timeline_days: calendar days of each model's ``timeline`` (up to its latest record).
        client: an ``MlflowClient`` (default: for an SQLite registry a
            :class:`~retrain_lib.store.registry_reader.SqliteRegistryReader`, which does not import
            MLflow; else an ``MlflowClient`` on the settings' tracking URI).
        gate_results: a dict kept between calls (the fleet page's) in which the gate results
            of an MLflow run are kept once read (a run's ``gates/results.json`` never changes).
        progress: called with a short message before each slow step (the CLI shows them).
        page: the page to show (from 1; clamped into range) when ``per_page`` is set.
        per_page: models per page, in name order (default: every model).
        gate_details: read each last gate's per-gate results (a small artifact per run, kept
            in ``gate_results``); ``False`` keeps the ledger's verdict only (the CLI's table).

    Returns:
        ``{"generated_at", "state_dir", "tracking_uri", "mlflow_ui_url", "ledger", "page",
        "config_problems", "models": [{"model", "config", "aliases", "versions", "champion",
        "challenger", "previous_champion", "rollout", "lifecycle", "gated_metrics", "metric_columns",
        "last_monitor", "drift_trend", "timeline", "last_gates", "last_retrain", "decisions",
        ...}]}``. ``page`` is :meth:`Page.to_dict`; ``config_problems`` are those of the models
        shown. ``last_monitor`` is the check of the latest day (``state`` is its action, or
        ``"throttled"`` for a retrain request held back); each decision has an ``outcome``
        (``"rejected"``, ``"no_gain"`` or ``None``).
    """
    settings = settings or load_settings()
    say = progress or (lambda _msg: None)
    ui_url = settings.platform.mlflow_ui_url
    say("reading the decision ledger")
    ledger = Ledger.from_settings(settings)
    names = fleet_names(settings, ledger)
    say("opening the MLflow registry")
    client = client or _registry_client(settings)
    if model is not None:
        _check_known(settings, client, model, names, ui_url)
        names = [model]
    shown = Page.of(len(names), page, None if model is not None else per_page)
    names = names[shown.start : shown.stop]
    paths = config_paths(settings)
    say("reading configs")
    configs = load_model_configs([p for n in names for p in paths.get(n, [])], settings.platform)
    valid = dict(configs.models)
    problems = [p.to_dict() for p in configs.problems]
    records = ledger.records(model) if model is not None else ledger.records(models=names)
    by_model: dict[str, list[dict]] = {}
    for rec in records:
        by_model.setdefault(rec["model"], []).append(rec)
    say(f"reading the registry ({len(names)} models)")
    states = registry_states(client, names, ui_url)
    out_models = []
    for i, name in enumerate(names, 1):
        say(f"[{i}/{len(names)}] {name}: ledger, reports")
        out_models.append(
            _model_status(
                settings,
                name,
                valid.get(name),
                by_model.get(name, []),
                [p for p in problems if Path(p.get("file", "")).stem == name],
                reg=states[name],
                ui_url=ui_url,
                history=history,
                decisions=decisions,
                timeline_days=timeline_days,
                gate_results=gate_results,
                gate_client=client if gate_details else None,
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
        "page": shown.to_dict(),
        "config_problems": problems,
        "models": out_models,
    }


def model_status(settings=None, model: str = "", **kwargs) -> dict[str, Any]:
    """The state of one model (see :func:`fleet_status`); :class:`UnknownModelError` if unknown."""
    if not model:
        raise ValueError(f"The 'model' parameter of model_status must be a model name. Got {model!r} instead.")
    return fleet_status(settings, model=model, **kwargs)["models"][0]


def _registry_client(settings):
    """The registry client of ``settings``: an SQLite registry is read straight from its file
    (milliseconds; MLflow's import takes 6 s), any other through an ``MlflowClient``."""
    return reader_for(settings.tracking_uri, settings.registry_uri) or registry.get_client(
        settings.tracking_uri, settings.registry_uri
    )


def _check_known(settings, client, model: str, names: list[str], ui_url: str) -> None:
    """:class:`UnknownModelError` when ``model`` has no config, no ledger record (not in
    ``names``) and no registered model."""
    if model not in names:
        if not registry_state(client, model, ui_url)["registered"]:
            known = ", ".join(names) or "none"
            raise UnknownModelError(
                f"unknown model {model!r}: no config {settings.models_dir / (model + '.yaml')}, no ledger records "
                f"and no registered model in {settings.tracking_uri}; known models: {known}"
            )


def _model_status(
    settings,
    name: str,
    loaded,
    records: list[dict],
    problems: list[dict],
    *,
    ui_url: str,
    history: int,
    decisions: int,
    timeline_days: int = DEFAULT_TIMELINE_DAYS,
    reg: dict[str, Any],
    gate_results: dict | None = None,
    gate_client=None,
) -> dict[str, Any]:
    cfg = loaded.config if loaded is not None else None
    versions = reg["versions"]
    aliases = reg["aliases"]
    monitors = [r for r in records if r["event"] == MONITOR_EVENT]
    last_monitor = _last_monitor(monitors, cfg, settings.reports_dir, ui_url)
    gates = [r for r in records if r["event"] == GATES_EVENT]
    others = [r for r in records if r["event"] != MONITOR_EVENT]
    last_change = _last_change(others)
    last_retrain = _last_retrain(others)
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
        "lifecycle": lifecycle_summary(name, records, cfg, reg.get("lifecycle"), dt.datetime.now(dt.UTC).date()),
        "last_monitor": last_monitor,
        "monitor_checks": len(monitors),
        "drift_trend": drift_trend(monitors, settings.reports_dir, ui_url, history),
        "timeline": timeline(monitors, others, timeline_days),
        "last_gates": gates_summary(gate_client, gates[-1] if gates else None, ui_url, cache=gate_results),
        "last_retrain": decision_entry(last_retrain, ui_url) if last_retrain else None,
        "guard": last_guard(others),
        "last_decision": decision_entry(last_change, ui_url) if last_change else None,
        "decisions": [decision_entry(r, ui_url) for r in reversed(others)][: max(decisions, 0)],
        "ledger_records": len(records),
    }


def _last_monitor(monitors: list[dict], cfg, reports_dir: Path, ui_url: str) -> dict[str, Any] | None:
    """The full summary of the latest day's monitor check (the config's dataset drift share
    when its report has none)."""
    latest = latest_record(monitors)
    last_monitor = monitor_summary(latest, reports_dir, ui_url, full=True) if latest else None
    if last_monitor is not None and cfg is not None and last_monitor.get("drift_share_threshold") is None:
        last_monitor["drift_share_threshold"] = cfg.drift.drift_share
    return last_monitor


def last_guard(records: list[dict]) -> dict[str, Any] | None:
    """The model's latest post-deploy guard from its ``guard_start``/``guard_end`` records:
    ``{"state": "watching"|"clean"|"rollback"|"alarm"|"superseded", "version", "previous",
    "since", "ended", "reason", "minutes"}``; ``None`` before any guard."""
    start = next((r for r in reversed(records) if r["event"] == "guard_start"), None)
    if start is None:
        return None
    d = start.get("details") or {}
    version = str(d.get("version")) if d.get("version") is not None else None
    end = next(
        (
            r
            for r in records
            if r["event"] == "guard_end"
            and r["seq"] > start["seq"]
            and str((r.get("details") or {}).get("version")) == version
        ),
        None,
    )
    e = (end or {}).get("details") or {}
    return {
        "state": e.get("action", "watching") if end else "watching",
        "version": version,
        "previous": d.get("previous"),
        "since": start.get("time"),
        "ended": end.get("time") if end else None,
        "minutes": d.get("minutes"),
        "reason": (end or start).get("reason") or e.get("reason"),
    }


def _last_change(others: list[dict]) -> dict | None:
    """The last record that changed (or refused to change) what is deployed (a retirement too)."""
    return next(
        (
            r
            for r in reversed(others)
            if r["event"] in ("promote", "rollback", "challenger", "reject", "retire", "unretire") or retrain_outcome(r)
        ),
        None,
    )


def _last_retrain(others: list[dict]) -> dict | None:
    """The last record of a retrain's outcome (a promotion by hand is not one)."""
    return next(
        (
            r
            for r in reversed(others)
            if retrain_outcome(r)
            or (r["event"] in ("promote", "challenger") and (r.get("details") or {}).get("mode") != "by_hand")
        ),
        None,
    )
