"""Model cards: one Markdown and one HTML page describing a model version.

:func:`build_model_card` takes a plain dict (:class:`ModelCardInfo`, every key optional)
and renders both formats from the same sections, so they never disagree. A section or
field that is missing renders as "not recorded" instead of failing: a card of an old
version with little lineage still builds.

Text from configs and people (description, reasons, comments) is escaped: HTML-escaped in
the HTML card, and ``\\ ` * [ ] < |`` backslash-escaped in the Markdown card, so neither
can inject markup (``<script>`` stays text). Numbers keep up to 6 significant digits
(``0.8123`` stays ``0.8123``; ``0.123456789`` becomes ``0.123457``).

Example::

    markdown, html = build_model_card({
        "model": "credit_default", "version": "7", "owner": "risk-ml@example.com",
        "metrics": {"roc_auc": 0.81, "brier": 0.12},
        "gates": [{"gate": "roc_auc >= 0.7", "metric": "roc_auc", "threshold": 0.7, "observed": 0.81,
                   "passed": True, "reason": "0.81 >= 0.7"}],
    })
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from retrain_lib.quality.card_layout import NOT_RECORDED, CardSection, format_value
from retrain_lib.quality.card_review import (
    DataRequirementsInfo,
    FairnessInfo,
    IntendedUseInfo,
    RetrainingInfo,
    review_sections,
)
from retrain_lib.quality.gate_types import GateResult

MIN_HOLDOUT_ROWS = 500
"""Holdouts smaller than this get an automatic limitation (metrics are noisy)."""
MIN_SEGMENT_ROWS = 50
"""Segments with fewer holdout rows than this get an automatic limitation."""


class DvcInfo(TypedDict, total=False):
    path: str  # the .dvc-tracked path of the training set
    rev: str  # git revision of the data registry
    md5: str  # DVC content hash


class DataInfo(TypedDict, total=False):
    start: str  # first day of the training window (ISO date)
    end: str  # last day of the training window
    as_of: str  # day the labels were read as of
    rows: int  # rows of the window
    labelled_rows: int
    train_rows: int
    holdout_rows: int
    fingerprint: str  # content hash of the window (retrain_lib.store.data)
    dvc: DvcInfo


class FeaturesInfo(TypedDict, total=False):
    target: str
    numeric: list[str]
    categorical: list[str]
    segments: list[str]


class TrainingCardInfo(TypedDict, total=False):
    estimator: str  # import path
    params: dict[str, Any]
    seed: int
    split: dict[str, Any]  # {method, holdout_fraction}
    recency: dict[str, Any] | None  # {days, weight, half_life_days}; None = unweighted
    weighted_rows_share: float  # TrainingInfo.weighted_rows_share
    warm_started_from: str | None  # parent version / URI; None = trained from scratch
    duration_s: float
    timeout_s: float | None
    notes: list[str]  # TrainingInfo.notes


GateRow = Mapping[str, Any]
"""One checked gate as the card's ``info.json`` keeps it: the ``to_dict()`` of a
:class:`~retrain_lib.quality.gate_types.GateResult`, optionally with ``blocking`` (False: a
failure is recorded but does not stop a promotion; default True)."""


class ApprovalRow(TypedDict, total=False):
    who: str  # alias: by
    when: str  # alias: at
    answer: str  # e.g. Approve / Reject
    comment: str
    timed_out: bool


class LineageInfo(TypedDict, total=False):
    mlflow_run_id: str
    model_uri: str
    git_commit: str
    config_hash: str
    lock_hash: str


class RecordInfo(TypedDict, total=False):
    """The registry record's fields (:func:`retrain_lib.quality.registry_record.card_record`)."""

    semantic_version: str
    semantic_version_reason: str
    registered_by: str  # <dag_id>/<run_id> or user:<login>
    compliance_status: str  # approved, rejected, approval timed out, pending approval, not required


class ModelCardInfo(TypedDict, total=False):
    """Everything a model card shows; every key is optional.

    ``metrics`` maps metric -> holdout value. ``segment_metrics`` maps segment column ->
    segment value -> {metric: value, ..., "rows": holdout rows}. ``limitations`` is free
    text; automatic limitations (small holdout, small segments, failed non-blocking gates,
    warm start, training notes) are added to it.
    """

    model: str
    version: str
    description: str  # the config's description: the model's purpose
    owner: str
    task: str
    created_at: str
    data: DataInfo
    features: FeaturesInfo
    training: TrainingCardInfo
    metrics: dict[str, float]
    segment_metrics: dict[str, dict[str, dict[str, float]]]
    gates: list[GateResult | GateRow]
    approvals: list[ApprovalRow]
    lineage: LineageInfo
    limitations: list[str]
    record: RecordInfo
    intended_use: IntendedUseInfo  # the reviewer's sections: retrain_lib.quality.card_review
    retraining: RetrainingInfo
    fairness: FairnessInfo
    data_requirements: DataRequirementsInfo


# -----------------------------------------------------------------------------------------
# Values
# -----------------------------------------------------------------------------------------


def _get(mapping: Any, key: str, *aliases: str) -> Any:
    if not isinstance(mapping, Mapping):
        return None
    for k in (key, *aliases):
        if mapping.get(k) is not None:
            return mapping[k]
    return None


# -----------------------------------------------------------------------------------------
# Sections: one structure, two renderers
# -----------------------------------------------------------------------------------------


def _purpose(info: Mapping) -> CardSection:
    s = CardSection("Purpose")
    record = info.get("record")
    if not isinstance(record, Mapping):
        record = {}
    s.text(str(info.get("description") or NOT_RECORDED))
    return s.fields(
        [
            ("owner", info.get("owner")),
            ("task", info.get("task")),
            ("version", info.get("version")),
            ("semantic version", record.get("semantic_version")),
            ("version rule", record.get("semantic_version_reason")),
            ("registered by", record.get("registered_by")),
            ("compliance", record.get("compliance_status")),
            ("created", info.get("created_at")),
        ]
    )


def _data(info: Mapping) -> CardSection:
    s = CardSection("Data")
    d = info.get("data")
    if not isinstance(d, Mapping) or not d:
        return s.text(NOT_RECORDED)
    dvc = d.get("dvc")
    if not isinstance(dvc, Mapping):
        dvc = {}
    window = f"{d['start']} .. {d['end']}" if d.get("start") and d.get("end") else None
    return s.fields(
        [
            ("window", window),
            ("as of", d.get("as_of")),
            ("rows", d.get("rows")),
            ("labelled rows", d.get("labelled_rows")),
            ("training rows", d.get("train_rows")),
            ("holdout rows", d.get("holdout_rows")),
            ("fingerprint", d.get("fingerprint")),
            ("DVC path", dvc.get("path")),
            ("DVC rev", dvc.get("rev")),
            ("DVC md5", dvc.get("md5")),
        ]
    )


def _features(info: Mapping) -> CardSection:
    s = CardSection("Features")
    f = info.get("features")
    if not isinstance(f, Mapping) or not f:
        return s.text(NOT_RECORDED)
    return s.fields(
        [
            ("target", f.get("target")),
            ("numeric", f.get("numeric")),
            ("categorical", f.get("categorical")),
            ("segments", f.get("segments")),
        ]
    )


def _training(info: Mapping) -> CardSection:
    s = CardSection("Training")
    t = info.get("training")
    if not isinstance(t, Mapping) or not t:
        return s.text(NOT_RECORDED)
    recency = t.get("recency")
    warm = t.get("warm_started_from")
    s.fields(
        [
            ("estimator", t.get("estimator")),
            ("seed", t.get("seed")),
            ("split", t.get("split")),
            ("recency weighting", recency if recency else ("none" if "recency" in t else None)),
            ("recent rows share", t.get("weighted_rows_share")),
            (
                "warm start",
                f"continued from {warm}"
                if warm
                else ("no (trained from scratch)" if "warm_started_from" in t else None),
            ),
            ("duration (s)", t.get("duration_s")),
            ("timeout (s)", t.get("timeout_s")),
        ]
    )
    params = t.get("params")
    if isinstance(params, Mapping) and params:
        s.table(["parameter", "value"], [[k, v] for k, v in sorted(params.items())])
    return s


def _metrics(info: Mapping) -> CardSection:
    s = CardSection("Metrics")
    overall = info.get("metrics")
    if isinstance(overall, Mapping) and overall:
        s.text("Holdout, all rows:")
        s.table(["metric", "value"], [[k, v] for k, v in overall.items()])
    else:
        s.text(f"Overall metrics: {NOT_RECORDED}")
    segments = info.get("segment_metrics")
    if isinstance(segments, Mapping) and segments:
        for column, by_value in segments.items():
            if not isinstance(by_value, Mapping) or not by_value:
                continue
            names: list[str] = []
            for values in by_value.values():
                names += [m for m in (values or {}) if m != "rows" and m not in names]
            s.text(f"By {column}:")
            s.table(
                [column, "rows", *names],
                [[value, (m or {}).get("rows"), *[(m or {}).get(n) for n in names]] for value, m in by_value.items()],
            )
    else:
        s.text(f"Per-segment metrics: {NOT_RECORDED}")
    return s


def _gates(info: Mapping) -> CardSection:
    s = CardSection("Gates")
    gates = info.get("gates")
    if not isinstance(gates, Sequence) or not gates:
        return s.text(NOT_RECORDED)
    rows = []
    for g in gates:
        g = g.to_dict() if isinstance(g, GateResult) else g
        passed = g.get("passed")
        rows.append(
            [
                g.get("gate"),
                g.get("metric"),
                g.get("slice") or "all",
                g.get("threshold"),
                g.get("observed"),
                g.get("champion"),
                g.get("delta"),
                passed,
                g.get("reason"),
            ]
        )
    return s.table(["gate", "metric", "slice", "threshold", "observed", "champion", "delta", "passed", "reason"], rows)


def _approvals(info: Mapping) -> CardSection:
    s = CardSection("Approvals")
    approvals = info.get("approvals")
    if not isinstance(approvals, Sequence) or not approvals:
        return s.text(NOT_RECORDED)
    rows = []
    for a in approvals:
        answer = _get(a, "answer")
        if answer is None and _get(a, "timed_out"):
            answer = "timed out"
        rows.append([_get(a, "who", "by"), _get(a, "when", "at"), answer, _get(a, "comment")])
    return s.table(["who", "when", "answer", "comment"], rows)


def _lineage(info: Mapping) -> CardSection:
    s = CardSection("Lineage")
    lin = info.get("lineage")
    if not isinstance(lin, Mapping) or not lin:
        return s.text(NOT_RECORDED)
    warm = (info.get("training") or {}).get("warm_started_from") if isinstance(info.get("training"), Mapping) else None
    pairs = [
        ("MLflow run id", lin.get("mlflow_run_id")),
        ("model URI", lin.get("model_uri")),
        ("git commit", lin.get("git_commit")),
        ("config hash", lin.get("config_hash")),
        ("lock hash", lin.get("lock_hash")),
    ]
    if warm:
        pairs.append(("parent (warm start)", warm))
    return s.fields(pairs)


def automatic_limitations(
    info: Mapping, *, min_holdout_rows: int = MIN_HOLDOUT_ROWS, min_segment_rows: int = MIN_SEGMENT_ROWS
) -> list[str]:
    """Limitations the card derives from ``info``: a small holdout, segments with few rows,
    gates that failed without blocking, a warm start, notes of the training."""
    out: list[str] = []
    data = info.get("data")
    if not isinstance(data, Mapping):
        data = {}
    hold = data.get("holdout_rows")
    if isinstance(hold, (int, float)) and not isinstance(hold, bool) and hold < min_holdout_rows:
        out.append(f"Small holdout: {format_value(hold)} rows (fewer than {min_holdout_rows}); its metrics are noisy.")
    segments = info.get("segment_metrics")
    if isinstance(segments, Mapping):
        for column, by_value in segments.items():
            for value, m in (by_value or {}).items():
                rows = (m or {}).get("rows")
                if isinstance(rows, (int, float)) and not isinstance(rows, bool) and rows < min_segment_rows:
                    out.append(
                        f"Segment {column}={value} has only {format_value(rows)} holdout rows (fewer than "
                        f"{min_segment_rows}); its metrics are unreliable."
                    )
    for g in info.get("gates") or []:
        g = g.to_dict() if isinstance(g, GateResult) else g
        if isinstance(g, Mapping) and g.get("passed") is False and g.get("blocking") is False:
            out.append(
                f"Gate {g.get('gate') or g.get('metric')} ({g.get('slice') or 'all'}) failed but does not "
                f"block promotion: {g.get('reason') or NOT_RECORDED}."
            )
    training = info.get("training")
    if not isinstance(training, Mapping):
        training = {}
    if training.get("warm_started_from"):
        out.append(
            f"Warm-started from {training['warm_started_from']}: the model depends on that parent version "
            "and is reproducible only from it."
        )
    out += [f"Training note: {n}" for n in training.get("notes") or []]
    return out


def _limitations(info: Mapping, **limits) -> CardSection:
    s = CardSection("Known limitations")
    given = info.get("limitations")
    given = [given] if isinstance(given, str) else list(given or [])
    found = [*map(str, given), *automatic_limitations(info, **limits)]
    return s.items(found) if found else s.text(NOT_RECORDED)


# -----------------------------------------------------------------------------------------
# Renderers
# -----------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\`*\[\]<|])")  # "<" starts HTML; a lone ">" cannot


def _md(text: str) -> str:
    """Markdown-escape text so it shows literally and cannot start HTML, links or tables."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def _md_inline(text: str) -> str:
    return _md(" ".join(str(text).split()))


def _markdown(title: str, sections: list[CardSection]) -> str:
    lines = [f"# {_md_inline(title)}", ""]
    for sec in sections:
        lines += [f"## {sec.title}", ""]
        for kind, content in sec.blocks:
            if kind == "text":
                lines += [_md(line) for line in str(content).splitlines() or [""]]
            elif kind == "fields":
                lines += [f"- **{_md_inline(k)}**: {_md_inline(v)}" for k, v in content]
            elif kind == "list":
                lines += [f"- {_md_inline(v)}" for v in content]
            elif kind == "table":
                header, rows = content
                lines.append("| " + " | ".join(_md_inline(h) for h in header) + " |")
                lines.append("|" + "|".join(" --- " for _ in header) + "|")
                lines += ["| " + " | ".join(_md_inline(c) for c in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}"
    "th{background:#f3f3f3}dt{font-weight:600;float:left;clear:left;width:12em}dd{margin-left:13em}"
)


def _h(text: Any) -> str:
    return _html.escape(str(text), quote=True)


def _html_page(title: str, sections: list[CardSection]) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{_h(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_h(title)}</h1>",
    ]
    for sec in sections:
        out.append(f"<section><h2>{_h(sec.title)}</h2>")
        for kind, content in sec.blocks:
            if kind == "text":
                out.append("<p>" + "<br>".join(_h(line) for line in str(content).splitlines()) + "</p>")
            elif kind == "fields":
                out.append("<dl>" + "".join(f"<dt>{_h(k)}</dt><dd>{_h(v)}</dd>" for k, v in content) + "</dl>")
            elif kind == "list":
                out.append("<ul>" + "".join(f"<li>{_h(v)}</li>" for v in content) + "</ul>")
            elif kind == "table":
                header, rows = content
                out.append(
                    "<table><thead><tr>" + "".join(f"<th>{_h(h)}</th>" for h in header) + "</tr></thead>"
                    "<tbody>"
                    + "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>" for row in rows)
                    + "</tbody></table>"
                )
        out.append("</section>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def build_model_card(
    info: Mapping[str, Any], *, min_holdout_rows: int = MIN_HOLDOUT_ROWS, min_segment_rows: int = MIN_SEGMENT_ROWS
) -> tuple[str, str]:
    """The model card of one model version as ``(markdown, html)``.

    Args:
        info: a :class:`ModelCardInfo` dict; every key is optional and missing sections read
            "not recorded". Gates may also be :class:`~retrain_lib.quality.gate_types.GateResult` objects,
            approvals may use the ledger's ``by``/``at`` keys.
        min_holdout_rows: a holdout smaller than this adds a limitation.
        min_segment_rows: segments with fewer holdout rows add a limitation.

    Sections: Purpose, Intended use, Data, Features, Data requirements, Training, Retraining
    triggers and frequency, Metrics, Gates, Fairness considerations, Approvals, Lineage, Known
    limitations (the reviewer's four from :mod:`retrain_lib.quality.card_review`).

    >>> md, page = build_model_card({"model": "credit_default", "version": "7"})
    >>> md.splitlines()[0]
    '# Model card: credit_default version 7'
    """
    if not isinstance(info, Mapping):
        raise TypeError(f"The 'info' parameter of build_model_card must be a dict. Got {type(info).__name__} instead.")
    model = info.get("model") or "unnamed model"
    title = f"Model card: {model}" + (f" version {info['version']}" if info.get("version") not in (None, "") else "")
    review = review_sections(info)
    sections = [
        _purpose(info),
        review["intended_use"],
        _data(info),
        _features(info),
        review["data_requirements"],
        _training(info),
        review["retraining"],
        _metrics(info),
        _gates(info),
        review["fairness"],
        _approvals(info),
        _lineage(info),
        _limitations(info, min_holdout_rows=min_holdout_rows, min_segment_rows=min_segment_rows),
    ]
    return _markdown(title, sections), _html_page(title, sections)
