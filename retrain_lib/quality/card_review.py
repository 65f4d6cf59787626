"""The model card sections a reviewer asks for: intended use, retraining triggers and
frequency, fairness considerations and data requirements.

:func:`review_info` reads them from a model's config and its gate results (the keys
``intended_use``, ``retraining``, ``fairness`` and ``data_requirements`` of the card's
``info.json``); :func:`review_sections` turns those keys into card sections. A key that is
missing (a card written before these sections) renders as "not recorded"; a model without a
fairness gate says so plainly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

from retrain_lib.core.config import ModelConfig
from retrain_lib.quality.card_layout import NOT_RECORDED, CardSection, format_value
from retrain_lib.quality.gate_types import GateResult
from retrain_lib.quality.registry_record import intended_use

NO_FAIRNESS_GATE = (
    "No fairness gate is configured for this model: no metric gap between groups was checked before it was registered."
)


class IntendedUseInfo(TypedDict, total=False):
    text: str  # what the model is for and how its output may be used
    source: str  # intended_use (the config's field), description (its fallback) or none


class RetrainingInfo(TypedDict, total=False):
    triggers: list[str]  # what requests a retrain, one sentence each
    frequency: dict[str, Any]  # monitor cron, retrain floor, minimum interval, cap
    adaptation: list[str]  # how a retrain adapts after a change; empty: adaptation off


class FairnessInfo(TypedDict, total=False):
    gates: list[dict[str, Any]]  # configured fairness gates: metric, by, max_gap, min_rows
    results: list[dict[str, Any]]  # their GateResult.to_dict() at registration
    segment_gates: list[dict[str, Any]]  # per-segment metric floors: metric, segment, min, max
    segments: list[str]  # columns the metrics are reported by


class ColumnRequirement(TypedDict, total=False):
    column: str
    role: str  # id, timestamp, feature, segment feature, target
    type: str  # numeric, categorical, datetime, label, any
    rules: list[str]  # the validation rules of the column


class DataRequirementsInfo(TypedDict, total=False):
    validation: str  # when the rules are checked, or that they are not
    columns: list[ColumnRequirement]
    dataset: list[str]  # rules of the whole window: rows per day, columns, freshness, labels


# -----------------------------------------------------------------------------------------
# From the config
# -----------------------------------------------------------------------------------------


def review_info(cfg: ModelConfig, gate_results: Iterable[GateResult | Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The reviewer's keys of a card's info (see the module) for ``cfg`` and its gate results."""
    text, source = intended_use(cfg.intended_use, cfg.description)
    results = [r.to_dict() if isinstance(r, GateResult) else dict(r) for r in gate_results]
    return {
        "intended_use": IntendedUseInfo(text=text, source=source),
        "retraining": RetrainingInfo(
            triggers=retraining_triggers(cfg),
            frequency=retraining_frequency(cfg),
            adaptation=adaptation_notes(cfg),
        ),
        "fairness": FairnessInfo(
            gates=[
                {"metric": g.metric, "by": g.by, "max_gap": g.max_gap, "min_rows": g.min_rows}
                for g in cfg.gates
                if g.type == "fairness"
            ],
            results=[r for r in results if r.get("kind") == "fairness"],
            segment_gates=[
                {"metric": g.metric, "segment": g.segment, "min": g.min, "max": g.max, "min_rows": g.min_rows}
                for g in cfg.gates
                if g.type == "metric" and g.segment
            ],
            segments=list(cfg.features.segments),
        ),
        "data_requirements": data_requirements(cfg),
    }


def _drift_trigger(cfg: ModelConfig) -> str:
    d = cfg.drift
    if not d.enabled:
        return "Data drift: not checked (drift.enabled is false)."
    own = ", ".join(f"{name}: {spec.method or d.method}" for name, spec in d.features.items())
    if d.threshold == "auto":
        testing = "Benjamini-Hochberg across features" if d.multiple_testing != "none" else "per feature"
        threshold = f"thresholds calibrated to a false-alarm rate of {d.false_alarm_rate:g} per check ({testing})"
    elif d.threshold is None:
        threshold = "each method's default threshold"
    else:
        threshold = f"threshold {d.threshold:g}"
    text = (
        f"Data drift: {d.method} on numeric features, {d.categorical_method} on categorical ones"
        f"{f' ({own})' if own else ''}, {threshold}, on the last {cfg.windows.monitor_days} days against "
        f"{cfg.windows.reference_days} reference days; a retrain when at least {d.drift_share:.0%} of the "
        f"features drift{' (weighted by importance)' if d.weight_by_importance else ''}"
    )
    if d.persistence is not None:
        text += f" in at least {d.persistence.k} of the last {d.persistence.n} checks"
    if d.exclude:
        text += f"; not checked: {', '.join(d.exclude)}"
    return text + (". The champion's output distribution is checked too." if d.prediction else ".")


def _performance_trigger(cfg: ModelConfig) -> str:
    p = cfg.performance
    if p is None or not p.enabled:
        return "Performance: not monitored (no performance section): only drift and the schedule request a retrain."
    delay = cfg.data.label_delay_days
    late = f", labels arrive {delay} day{'' if delay == 1 else 's'} late" if delay else ""
    text = (
        f"Performance: the champion's live {p.metric} on matured labels (at least {p.min_labels}{late}) "
        "against its baseline; "
    )
    if p.false_alarm_rate is not None:
        text += f"a drop significant at a false-alarm rate of {p.false_alarm_rate:g} per check and at least {p.min_effect:g}"
    else:
        levels = ([f"an absolute drop above {p.max_drop:g}"] if p.max_drop is not None else []) + (
            [f"a relative drop above {p.critical_drop:.0%}"] if p.critical_drop is not None else []
        )
        text += " or ".join(levels) or "no drop level"
    text += " requests a retrain"
    if p.warn_drop is not None:
        text += f"; a relative drop above {p.warn_drop:.0%} is recorded as a warning"
    if p.use_estimate:
        text += "; an estimated drop on rows still without labels counts too"
    return text + "."


def retraining_triggers(cfg: ModelConfig) -> list[str]:
    """What makes the platform retrain this model, one sentence each."""
    s = cfg.schedule
    out = [_drift_trigger(cfg), _performance_trigger(cfg)]
    if s.retrain_floor:
        out.append(f"Calendar: the retrain DAG runs on {s.retrain_floor!r} whatever the monitor finds.")
    if s.max_days_without_retrain:
        out.append(f"Age: a retrain when the champion is older than {s.max_days_without_retrain} days.")
    if s.new_labels_share:
        out.append(
            f"New labels: a retrain when the labels matured since the champion's training window reach "
            f"{s.new_labels_share:.0%} of its training rows."
        )
    out.append("By hand: a run of the retrain DAG started in the Airflow UI, or the retrain command.")
    return out


def retraining_frequency(cfg: ModelConfig) -> dict[str, Any]:
    """How often the model is checked and may be retrained."""
    s = cfg.schedule
    return {
        "monitor checks": s.monitor,
        "calendar retrains": s.retrain_floor or "none (only the triggers)",
        "minimum days between retrains": s.min_retrain_interval_days,
        "retrain requests cap": f"{s.max_retrains.count} in {s.max_retrains.days} days" if s.max_retrains else "none",
        "training window (days)": cfg.windows.training_days,
    }


def adaptation_notes(cfg: ModelConfig) -> list[str]:
    """How a retrain adapts after a change (``adaptation:``); empty when it is off."""
    a = cfg.adaptation
    if a is None:
        return []
    out = [f"Candidates trained on the windows {', '.join(a.windows)} compete on the newest matured labels."]
    if a.require_gain:
        out.append(
            f"A candidate not better than the champion beyond noise (confidence {a.gain_confidence:g}) is not "
            "registered."
        )
    if a.rebase_on_drift and cfg.performance is not None:
        out.append("Data drift alone rebases the drift reference; matured labels decide a retrain.")
    if a.backoff:
        out.append("The wait doubles after each retrain that was not deployed.")
    return out


def _column_rules(cfg: ModelConfig) -> dict[str, list[str]]:
    v = cfg.validation
    rules: dict[str, list[str]] = {}
    if v is None or not v.enabled:
        return rules

    def share(mostly: float | None) -> str:
        m = v.mostly if mostly is None else mostly
        return "" if m >= 1 else f" (at least {m:.0%} of rows)"

    for rule in v.not_null:
        rules.setdefault(rule.column, []).append(f"not null{share(rule.mostly)}")
    for name, rng in v.between.items():
        bounds = " and ".join(
            ([f">= {format_value(rng.min)}"] if rng.min is not None else [])
            + ([f"<= {format_value(rng.max)}"] if rng.max is not None else [])
        )
        rules.setdefault(name, []).append(f"{bounds}{share(rng.mostly)}")
    for name, allowed in v.in_set.items():
        rules.setdefault(name, []).append(f"one of {format_value(list(allowed.values))}{share(allowed.mostly)}")
    for name in v.unique:
        rules.setdefault(name, []).append("unique")
    return rules


def data_requirements(cfg: ModelConfig) -> DataRequirementsInfo:
    """The columns the model needs (role, type, validation rules) and the rules of a window."""
    v = cfg.validation
    dtypes = cfg.expected_dtypes()
    rules = _column_rules(cfg)
    segments = set(cfg.features.segments)
    roles = [(cfg.data.id_column, "id", "any"), (cfg.data.timestamp_column, "timestamp", "datetime")]
    roles += [(n, "feature", "numeric") for n in cfg.features.numeric]
    roles += [(n, "segment feature" if n in segments else "feature", "categorical") for n in cfg.features.categorical]
    label = "numeric" if cfg.task == "regression" else "label (0/1)"
    roles.append((cfg.features.target, "target", label))
    columns = [
        ColumnRequirement(column=name, role=role, type=dtypes.get(name, kind), rules=rules.get(name, []))
        for name, role, kind in roles
    ]
    where = f"sql table {cfg.data.table}" if cfg.data.source == "sql" else f"{cfg.data.source}, {cfg.data.format}"
    dataset = [f"training window: the last {cfg.windows.training_days} days ({where})"]
    if cfg.data.labels_path or cfg.data.label_delay_days:
        dataset.append(
            f"labels arrive {cfg.data.label_delay_days} day{'' if cfg.data.label_delay_days == 1 else 's'} after "
            "the event; rows without one are not trained on"
        )
    if v is None or not v.enabled:
        checked = "built-in sanity checks only (no validation section)" if v is None else "disabled"
        return DataRequirementsInfo(validation=checked, columns=columns, dataset=dataset)
    if v.row_count is not None:
        dataset.append(
            f"rows per day: {format_value(v.row_count.min) if v.row_count.min is not None else 'any'} to "
            f"{format_value(v.row_count.max) if v.row_count.max is not None else 'any'}"
        )
    if v.exact_columns:
        dataset.append("exactly these columns, nothing else")
    if v.freshness_hours is not None:
        dataset.append(f"the latest event at most {v.freshness_hours:g} h before the end of the day")
    return DataRequirementsInfo(
        validation="checked before every retrain (a failure stops it and quarantines the batch) and by the monitor",
        columns=columns,
        dataset=dataset,
    )


# -----------------------------------------------------------------------------------------
# Sections
# -----------------------------------------------------------------------------------------


def _intended_use_section(info: Mapping) -> CardSection:
    s = CardSection("Intended use")
    use = info.get("intended_use")
    if not isinstance(use, Mapping) or not use.get("text"):
        return s.text(NOT_RECORDED)
    s.text(str(use["text"]))
    if use.get("source") == "description":
        s.text("(The config has no intended_use; this is its description.)")
    return s


def _retraining_section(info: Mapping) -> CardSection:
    s = CardSection("Retraining triggers and frequency")
    r = info.get("retraining")
    if not isinstance(r, Mapping) or not r:
        return s.text(NOT_RECORDED)
    s.text("A retrain is requested by:")
    s.items(list(r.get("triggers") or [NOT_RECORDED]))
    frequency = r.get("frequency")
    if isinstance(frequency, Mapping) and frequency:
        s.fields(list(frequency.items()))
    adaptation = r.get("adaptation")
    s.text("After a change:" if adaptation else "Adaptation after a change: off (the configured window only).")
    return s.items(list(adaptation)) if adaptation else s


def _fairness_section(info: Mapping) -> CardSection:
    s = CardSection("Fairness considerations")
    f = info.get("fairness")
    if not isinstance(f, Mapping):
        return s.text(NOT_RECORDED)
    gates = f.get("gates") or []
    if not gates:
        s.text(NO_FAIRNESS_GATE)
    else:
        s.text("Fairness gates (the largest metric gap between groups must not exceed max_gap):")
        s.table(
            ["metric", "groups of", "max gap", "min rows per group"],
            [[g.get("metric"), g.get("by"), g.get("max_gap"), g.get("min_rows")] for g in gates],
        )
        results = f.get("results") or []
        if results:
            s.text("Results at registration:")
            s.table(
                ["gate", "compared", "gap", "max gap", "passed", "groups", "reason"],
                [
                    [
                        r.get("gate"),
                        r.get("slice"),
                        r.get("observed"),
                        r.get("threshold"),
                        r.get("passed"),
                        (r.get("details") or {}).get("groups"),
                        r.get("reason"),
                    ]
                    for r in results
                ],
            )
        else:
            s.text(f"Results at registration: {NOT_RECORDED}")
    floors = f.get("segment_gates") or []
    if floors:
        s.text("Per-segment metric gates (each group on its own):")
        s.table(
            ["metric", "segment", "min", "max", "min rows"],
            [
                [g.get("metric"), g.get("segment"), _bound(g.get("min")), _bound(g.get("max")), g.get("min_rows")]
                for g in floors
            ],
        )
    segments = f.get("segments") or []
    if segments:
        s.text(f"Metrics by {', '.join(map(str, segments))} are under Metrics.")
    return s


def _bound(value: Any) -> Any:
    return "none" if value is None else value


def _data_requirements_section(info: Mapping) -> CardSection:
    s = CardSection("Data requirements")
    d = info.get("data_requirements")
    if not isinstance(d, Mapping) or not d:
        return s.text(NOT_RECORDED)
    s.fields([("validation", d.get("validation"))])
    columns = d.get("columns") or []
    if columns:
        s.table(
            ["column", "role", "type", "rules"],
            [
                [c.get("column"), c.get("role"), c.get("type"), "; ".join(c.get("rules") or []) or "none"]
                for c in columns
            ],
        )
    dataset = d.get("dataset") or []
    return s.items(list(dataset)) if dataset else s


def review_sections(info: Mapping[str, Any]) -> dict[str, CardSection]:
    """The reviewer's sections of a card's ``info``, by key: ``intended_use``, ``retraining``,
    ``fairness`` and ``data_requirements`` (the card places each among its own sections)."""
    return {
        "intended_use": _intended_use_section(info),
        "retraining": _retraining_section(info),
        "fairness": _fairness_section(info),
        "data_requirements": _data_requirements_section(info),
    }
