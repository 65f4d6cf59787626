"""Unit tests of retrain_lib.quality.model_card: content, escaping, missing sections."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest

from retrain_lib.quality.card_layout import NOT_RECORDED, format_value
from retrain_lib.quality.gate_types import GateResult
from retrain_lib.quality.model_card import automatic_limitations, build_model_card

SECTIONS = [
    "Purpose",
    "Intended use",
    "Data",
    "Features",
    "Data requirements",
    "Training",
    "Retraining triggers and frequency",
    "Metrics",
    "Gates",
    "Fairness considerations",
    "Approvals",
    "Lineage",
    "Known limitations",
]


def full_info() -> dict:
    return {
        "model": "credit_default",
        "version": "7",
        "owner": "risk-ml@example.com",
        "task": "classification",
        "description": "Probability of default of new credit applications.",
        "created_at": "2026-02-01T03:00:00Z",
        "data": {
            "start": "2026-01-04",
            "end": "2026-01-31",
            "as_of": "2026-02-01",
            "rows": 5600,
            "labelled_rows": 4200,
            "train_rows": 3150,
            "holdout_rows": 1050,
            "fingerprint": "ab12cd34ef56",
            "dvc": {"path": "data/credit_default/2026-02-01", "rev": "9f8e7d6", "md5": "0123456789abcdef"},
        },
        "features": {
            "target": "defaulted",
            "numeric": ["income", "age"],
            "categorical": ["region"],
            "segments": ["region"],
        },
        "training": {
            "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
            "params": {"max_iter": 150, "learning_rate": 0.08},
            "seed": 42,
            "split": {"method": "time", "holdout_fraction": 0.25},
            "recency": {"days": 90, "weight": 2.5},
            "weighted_rows_share": 0.3125,
            "warm_started_from": "models:/credit_default/6",
            "duration_s": 12.75,
            "timeout_s": 600.0,
            "notes": ["warm-started HistGradientBoostingClassifier from the champion"],
        },
        "metrics": {"roc_auc": 0.8123, "brier": 0.1377},
        "segment_metrics": {
            "region": {
                "north": {"roc_auc": 0.8311, "brier": 0.1298, "rows": 420},
                "south": {"roc_auc": 0.7012, "brier": 0.1544, "rows": 31},
            }
        },
        "gates": [
            {
                "gate": "roc_auc >= 0.7",
                "metric": "roc_auc",
                "slice": "all",
                "threshold": 0.7,
                "observed": 0.8123,
                "champion": 0.8051,
                "delta": 0.0072,
                "passed": True,
                "reason": "0.8123 >= 0.7",
            },
            {
                "gate": "segment roc_auc",
                "metric": "roc_auc",
                "slice": "region=south",
                "threshold": 0.72,
                "observed": 0.7012,
                "champion": 0.7208,
                "delta": -0.0196,
                "passed": False,
                "blocking": False,
                "reason": "0.7012 < 0.72",
            },
        ],
        "approvals": [
            {
                "by": "alice@example.com",
                "at": "2026-02-01T09:12:00Z",
                "answer": "Approve",
                "comment": "segment south watched",
            }
        ],
        "lineage": {
            "mlflow_run_id": "3f2a9c0d1e",
            "git_commit": "c0ffee1234",
            "config_hash": "a1b2c3d4e5f60718",
            "lock_hash": "deadbeef00112233",
            "model_uri": "runs:/3f2a9c0d1e/model",
        },
        "limitations": ["Trained before the 2026 rate change."],
    }


class _Text(HTMLParser):
    """Text of an HTML page and its tags (an independent parser of the output)."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_cell = tag in ("td", "th")
        if self._in_cell:
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        self.text.append(data)
        if self._in_cell:
            self.cells[-1] += data


def _parse(page: str) -> _Text:
    parser = _Text()
    parser.feed(page)
    return parser


def _md_rows(markdown: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split(" | ")] for line in markdown.splitlines() if line.startswith("| ")
    ]


def test_card_holds_the_exact_numbers_passed_in():
    markdown, page = build_model_card(full_info())
    parsed = _parse(page)
    text = "".join(parsed.text)
    for value in [
        "0.8123",
        "0.1377",
        "0.8311",
        "0.1298",
        "0.7012",
        "0.1544",
        "420",
        "31",
        "0.8051",
        "0.0072",
        "-0.0196",
        "0.72",
        "5600",
        "4200",
        "3150",
        "1050",
        "0.3125",
        "12.75",
        "600",
        "0.08",
        "150",
        "42",
    ]:
        assert value in markdown and value in text, value
    for value in [
        "ab12cd34ef56",
        "data/credit_default/2026-02-01",
        "9f8e7d6",
        "0123456789abcdef",
        "3f2a9c0d1e",
        "c0ffee1234",
        "a1b2c3d4e5f60718",
        "deadbeef00112233",
        "models:/credit_default/6",
        "alice@example.com",
        "2026-02-01T09:12:00Z",
        "risk-ml@example.com",
        "2026-01-04 .. 2026-01-31",
    ]:
        assert value in markdown and value in text, value
    # the gate table has the columns in order, one row per gate, with the exact values
    rows = _md_rows(markdown)
    header = ["gate", "metric", "slice", "threshold", "observed", "champion", "delta", "passed", "reason"]
    assert header in rows
    assert [
        "segment roc_auc",
        "roc_auc",
        "region=south",
        "0.72",
        "0.7012",
        "0.7208",
        "-0.0196",
        "no",
        "0.7012 \\< 0.72",
    ] in rows
    assert ["roc_auc >= 0.7", "roc_auc", "all", "0.7", "0.8123", "0.8051", "0.0072", "yes", "0.8123 >= 0.7"] in rows
    # per-segment table: value, rows, then the metrics
    assert ["region", "rows", "roc_auc", "brier"] in rows and ["south", "31", "0.7012", "0.1544"] in rows
    cells = parsed.cells
    i = cells.index("region=south")
    assert cells[i - 2 : i + 7] == [
        "segment roc_auc",
        "roc_auc",
        "region=south",
        "0.72",
        "0.7012",
        "0.7208",
        "-0.0196",
        "no",
        "0.7012 < 0.72",
    ]
    assert ["alice@example.com", "2026-02-01T09:12:00Z", "Approve", "segment south watched"] in rows


def test_all_sections_are_present_in_order():
    markdown, page = build_model_card(full_info())
    assert re.findall(r"^## (.+)$", markdown, flags=re.M) == SECTIONS
    assert re.findall(r"<h2>(.+?)</h2>", page) == SECTIONS
    assert markdown.startswith("# Model card: credit_default version 7\n")


def test_automatic_limitations():
    info = full_info()
    markdown, page = build_model_card(info, min_holdout_rows=2000, min_segment_rows=50)
    limits = markdown.split("## Known limitations", 1)[1]
    assert "- Trained before the 2026 rate change." in limits
    assert "Small holdout: 1050 rows (fewer than 2000)" in limits
    assert "Segment region=south has only 31 holdout rows (fewer than 50)" in limits
    assert "region=north" not in limits  # 420 rows
    assert "Gate segment roc_auc (region=south) failed but does not block promotion: 0.7012 \\< 0.72" in limits
    assert "depends on that parent version" in limits
    # a failing blocking gate is not a "limitation" (the version would not exist) and a large holdout is fine
    info["gates"][1]["blocking"] = True
    found = automatic_limitations(info)
    assert not any(f.startswith("Gate ") for f in found) and not any(f.startswith("Small holdout") for f in found)


def test_script_in_the_description_is_escaped():
    info = full_info()
    info["description"] = 'Scores <script>alert("x")</script> & more'
    info["gates"][0]["reason"] = "<img src=x onerror=alert(1)>"
    info["approvals"][0]["comment"] = "ok | <b>bold</b>"
    markdown, page = build_model_card(info)
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in page
    parsed = _parse(page)
    assert "script" not in parsed.tags and "img" not in parsed.tags and "b" not in parsed.tags
    assert 'Scores <script>alert("x")</script> & more' in "".join(parsed.text)  # shown as text
    assert re.search(r"(?<!\\)<", markdown) is None  # every "<" is escaped: no tag can start
    assert '\\<script>alert("x")\\</script>' in markdown
    # a '|' in a cell cannot add a column to the Markdown table
    [approval] = [r for r in _md_rows(markdown) if r[0] == "alice@example.com"]
    assert len(approval) == 4 and approval[3] == "ok \\| \\<b>bold\\</b>"


def test_missing_sections_render_as_not_recorded():
    markdown, page = build_model_card({})
    assert markdown.startswith("# Model card: unnamed model\n")
    for title in [
        "Intended use",
        "Data",
        "Features",
        "Data requirements",
        "Training",
        "Retraining triggers and frequency",
        "Gates",
        "Fairness considerations",
        "Approvals",
        "Lineage",
        "Known limitations",
    ]:
        body = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
        assert body.strip() == NOT_RECORDED, title
    assert "Overall metrics: not recorded" in markdown and "Per-segment metrics: not recorded" in markdown
    assert re.findall(r"<h2>(.+?)</h2>", page) == SECTIONS
    assert page.count(NOT_RECORDED) >= 10


def test_missing_fields_inside_a_section_render_as_not_recorded():
    info = {
        "model": "m",
        "data": {"start": "2026-01-01", "end": "2026-01-31"},
        "training": {"estimator": "sklearn.linear_model.LogisticRegression"},
        "approvals": [{"who": "bob", "answer": "Reject"}],
        "gates": [
            GateResult(
                gate="rmse <= 3",
                metric="rmse",
                threshold=3.0,
                observed=2.5,
                champion=None,
                delta=None,
                passed=True,
                reason="2.5 <= 3",
            )
        ],
    }
    markdown, _ = build_model_card(info)
    assert "- **fingerprint**: not recorded" in markdown and "- **DVC md5**: not recorded" in markdown
    assert "- **seed**: not recorded" in markdown and "- **estimator**: sklearn.linear\\_model" not in markdown
    assert "- **estimator**: sklearn.linear_model.LogisticRegression" in markdown
    assert ["bob", NOT_RECORDED, "Reject", NOT_RECORDED] in _md_rows(markdown)
    assert ["rmse \\<= 3", "rmse", "all", "3", "2.5", NOT_RECORDED, NOT_RECORDED, "yes", "2.5 \\<= 3"] in _md_rows(
        markdown
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.8123, "0.8123"),
        (0.123456789, "0.123457"),
        (3.0, "3"),
        (12, "12"),
        (np.float64(0.25), "0.25"),
        (np.int64(7), "7"),
        (True, "yes"),
        (np.bool_(False), "no"),
        (None, NOT_RECORDED),
        ([], NOT_RECORDED),
        (float("nan"), "n/a"),
        (["a", "b"], "a, b"),
        (-0.0196, "-0.0196"),
        (1.5e-07, "1.5e-07"),
    ],
)
def test_format_value(value, text):
    assert format_value(value) == text


def test_info_must_be_a_mapping():
    with pytest.raises(TypeError, match="The 'info' parameter of build_model_card must be a dict"):
        build_model_card(["not", "a", "dict"])


# -----------------------------------------------------------------------------------------
# The reviewer's sections, from a config (retrain_lib.quality.card_review)
# -----------------------------------------------------------------------------------------


def _section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _html_section(page: str, title: str) -> str:
    body = page.split(f"<h2>{title}</h2>", 1)[1].split("</section>", 1)[0]
    return "".join(_parse(body).text)


def _config(model_yaml: str, edit=None):
    import yaml

    from retrain_lib.core.config import ModelConfig

    raw = yaml.safe_load(model_yaml)
    if edit is not None:
        edit(raw)
    return ModelConfig.model_validate(raw)


def _reviewed(raw: dict) -> None:
    raw["intended_use"] = "Flag customers for the retention team's outreach; not for pricing."
    raw["schedule"].update(max_days_without_retrain=30, max_retrains={"count": 3, "days": 7})
    raw["gates"] += [
        {"type": "fairness", "metric": "recall", "by": "region", "max_gap": 0.1, "min_rows": 30},
        {"metric": "roc_auc", "min": 0.55, "segment": "plan"},
    ]
    raw["validation"] = {
        "not_null": ["tenure", {"column": "monthly_spend", "mostly": 0.9}],
        "between": {"monthly_spend": {"min": 0, "max": 5000}},
        "in_set": {"plan": ["basic", "pro"]},
        "unique": ["customer_id"],
        "row_count": {"min": 50, "max": 900},
        "freshness_hours": 12,
    }


FAIRNESS_RESULT = GateResult(
    gate="fairness_recall",
    metric="recall",
    threshold=0.1,
    observed=0.07,
    champion=None,
    delta=None,
    passed=True,
    reason="largest recall gap across region: 0.0700 <= max_gap 0.1",
    slice="region=north vs region=south",
    kind="fairness",
    details={"groups": {"north": 0.71, "south": 0.64}, "skipped_groups": {}},
)


def test_reviewer_sections_show_the_config_and_the_fairness_results(retrain_cfg_model_yaml):
    from retrain_lib.quality.card_review import review_info

    cfg = _config(retrain_cfg_model_yaml, _reviewed)
    metric_result = GateResult("roc_auc", "roc_auc", 0.6, 0.8, None, None, True, "0.8 >= 0.6")
    info = {"model": "churn_risk", "version": "3", **review_info(cfg, [metric_result, FAIRNESS_RESULT])}
    markdown, page = build_model_card(info)

    use = _section(markdown, "Intended use")
    assert "Flag customers for the retention team's outreach; not for pricing." in use
    assert "description" not in use  # the config's own intended_use: no fallback note

    rows = _md_rows(_section(markdown, "Data requirements"))
    assert ["column", "role", "type", "rules"] in rows
    assert ["customer_id", "id", "any", "unique"] in rows
    assert ["event_time", "timestamp", "datetime", "none"] in rows
    assert ["tenure", "feature", "numeric", "not null"] in rows
    assert ["monthly_spend", "feature", "numeric", "not null (at least 90% of rows); >= 0 and \\<= 5000"] in rows
    assert ["support_calls", "feature", "numeric", "none"] in rows
    assert ["plan", "segment feature", "categorical", "one of basic, pro"] in rows
    assert ["region", "feature", "categorical", "none"] in rows
    assert ["churned", "target", "label (0/1)", "none"] in rows
    window = _html_section(page, "Data requirements")
    for text in (
        "training window: the last 60 days (local, parquet)",
        "labels arrive 3 days after the event",
        "rows per day: 50 to 900",
        "the latest event at most 12 h before the end of the day",
        "checked before every retrain",
    ):
        assert text in window, text

    retraining = _html_section(page, "Retraining triggers and frequency")
    for text in (
        "Data drift: psi on numeric features, psi on categorical ones (tenure: ks), threshold 0.2",
        "at least 30% of the features drift",
        "the champion's live roc_auc on matured labels (at least 200, labels arrive 3 days late)",
        "an absolute drop above 0.05 requests a retrain",
        "Calendar: the retrain DAG runs on '@weekly'",
        "older than 30 days",
        "monitor checks0 6 * * *",  # <dt>/<dd> text runs together
        "retrain requests cap3 in 7 days",
        "Adaptation after a change: off",
    ):
        assert text in retraining, text

    fairness = _section(markdown, "Fairness considerations")
    frows = _md_rows(fairness)
    assert ["metric", "groups of", "max gap", "min rows per group"] in frows
    assert ["recall", "region", "0.1", "30"] in frows
    [result] = [r for r in frows if r[0] == "fairness_recall"]
    assert result[1:6] == ["region=north vs region=south", "0.07", "0.1", "yes", "north=0.71, south=0.64"]
    assert ["roc_auc", "plan", "0.55", "none", "50"] in frows  # the per-segment floor
    assert "roc_auc >= 0.6" not in fairness and "0.8 >= 0.6" not in fairness  # not a fairness result
    assert "No fairness gate" not in fairness


def test_no_fairness_gate_is_said_plainly_and_intended_use_falls_back(retrain_cfg_model_yaml):
    from retrain_lib.quality.card_review import NO_FAIRNESS_GATE, review_info

    cfg = _config(retrain_cfg_model_yaml)
    assert not [g for g in cfg.gates if g.type == "fairness"]
    markdown, page = build_model_card({"model": "churn_risk", **review_info(cfg, [])})
    assert NO_FAIRNESS_GATE in _section(markdown, "Fairness considerations")
    assert NO_FAIRNESS_GATE in _html_section(page, "Fairness considerations")
    use = _html_section(page, "Intended use")
    assert "Probability that a customer cancels within 30 days." in use
    assert "no intended_use; this is its description" in use
    assert "built-in sanity checks only" in _section(markdown, "Data requirements")


def test_reviewer_sections_render_the_same_from_info_json(retrain_cfg_model_yaml):
    """An approval re-renders the card from its info.json: the sections survive the round trip."""
    import json

    from retrain_lib.quality.card_review import review_info

    cfg = _config(retrain_cfg_model_yaml, _reviewed)
    info = {"model": "churn_risk", "version": "3", **review_info(cfg, [FAIRNESS_RESULT])}
    assert build_model_card(json.loads(json.dumps(info))) == build_model_card(info)


def test_registry_record_fields_in_the_purpose_section():
    info = {
        "model": "m",
        "record": {
            "semantic_version": "2.1.0",
            "semantic_version_reason": "minor: retrained on new data vs version 4 (2.0.0)",
            "registered_by": "m__retrain/manual__1",
            "compliance_status": "pending approval",
        },
    }
    purpose = _section(build_model_card(info)[0], "Purpose")
    assert "- **semantic version**: 2.1.0" in purpose
    assert "- **version rule**: minor: retrained on new data vs version 4 (2.0.0)" in purpose
    assert "- **registered by**: m__retrain/manual__1" in purpose
    assert "- **compliance**: pending approval" in purpose
