"""The fleet page's content (the Airflow plugin app, outside Airflow): gated metrics, the
per-day chart of the live metric with its markers, "last check" by date, throttled checks,
drift bars relative to the threshold on one axis per method kind, rejected and no-gain
retrains, the content-security policy and the state kept between requests.

The page is rendered from a real (small) MLflow registry and decision ledger; the expected
values are written out here from the records the fixture wrote, not computed by the code
under test."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from retrain_lib.store import registry
from retrain_lib.store.audit import record_decision

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"  # gates on roc_auc, brier and ece (configs/models/credit_default.yaml)
# eight metrics; alphabetically roc_auc is the 8th, so a "first six" page would hide it
METRICS = {
    "accuracy": 0.81,
    "average_precision": 0.42,
    "brier": 0.14,
    "ece": 0.02,
    "f1": 0.55,
    "log_loss": 0.44,
    "precision": 0.61,
    "roc_auc": 0.83,
}
FEATURES = [  # monitor.json of the last day: two distance methods and one p-value method
    {
        "name": "age",
        "method": "psi",
        "kind": "numeric",
        "score": 0.1,
        "p_value": None,
        "threshold": 0.2,
        "drifted": False,
    },
    {
        "name": "region",
        "method": "psi",
        "kind": "categorical",
        "score": 0.3,
        "p_value": None,
        "threshold": 0.2,
        "drifted": True,
    },
    {
        "name": "debt_to_income",
        "method": "psi",
        "kind": "numeric",
        "score": 0.2,
        "p_value": None,
        "threshold": 0.2,
        "drifted": True,
    },
    {
        "name": "income",
        "method": "ks",
        "kind": "numeric",
        "score": 0.09,
        "p_value": 1e-6,
        "threshold": 0.001,
        "drifted": True,
    },
    {
        "name": "loan_amount",
        "method": "ks",
        "kind": "numeric",
        "score": 0.01,
        "p_value": 0.5,
        "threshold": 0.001,
        "drifted": False,
    },
]
# day -> (action, drifted share, live roc_auc or None, throttled)
DAYS = {
    "2026-02-01": ("healthy", 0.0, 0.84, False),
    "2026-02-02": ("healthy", 0.0, 0.83, False),
    # 2026-02-03: no check at all
    "2026-02-04": ("retrain", 0.5, 0.78, False),
    "2026-02-05": ("healthy", 0.5, None, True),  # labels not matured for the new champion; retrain held back
    "2026-02-06": ("healthy", 0.6, 0.82, True),
}


def _signals(live):
    if live is None:
        return []
    return [
        {
            "signal": "performance",
            "triggered": live < 0.8,
            "value": live,
            "threshold": 0.79,
            "detail": {"baseline": 0.84, "level": "critical" if live < 0.79 else "ok"},
        }
    ]


@pytest.fixture(scope="module")
def page_state(tmp_path_factory):
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.model_context import ModelContext

    root = tmp_path_factory.mktemp("fleet_page")
    shutil.copytree(REPO / "configs", root / "configs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        mp.delenv("RETRAIN_MLFLOW_UI_URL", raising=False)
        settings = load_settings(root / "configs")
    ctx = ModelContext(MODEL, settings)
    client = ctx.client
    run_id = client.create_run(ctx.experiment_id()).info.run_id
    registry.register_version(
        client,
        MODEL,
        run_id=run_id,
        source=f"runs:/{run_id}/model",
        tags={
            **{f"metric.{k}": repr(v) for k, v in METRICS.items()},
            "trained_as_of": "2026-01-31",
            "gates.passed": "true",
        },
    )
    registry.promote_champion(client, MODEL, "1", expected_champion=None)
    client.log_text(
        run_id,
        json.dumps(
            {
                "results": [
                    {
                        "gate": "bootstrap",
                        "metric": "roc_auc",
                        "slice": "all",
                        "threshold": -0.0,
                        "observed": -0.00001,
                        "champion": None,
                        "passed": True,
                        "skipped": False,
                        "reason": "paired bootstrap of the roc_auc improvement: mean -0.0000 (not worse beyond noise)",
                    }
                ]
            }
        ),
        "gates/results.json",
    )

    report_dir = settings.reports_dir / MODEL / "2026-02-06"
    report_dir.mkdir(parents=True)
    (report_dir / "monitor.json").write_text(
        json.dumps(
            {"throttled": True, "drift": {"features": FEATURES, "drifted_share": 0.6, "drift_share_threshold": 0.25}}
        )
    )

    def monitor(day):
        action, share, live, throttled = DAYS[day]
        reasons = [f"data drift: {share:.0%}"] if share else ["no trigger fired"]
        if throttled:
            reasons.append("throttled: last retrain 1 day(s) ago (< min_retrain_interval_days 2)")
        details = {
            "action": action,
            "reasons": reasons,
            "drifted_share": share,
            "signals": _signals(live),
            "top": [
                {k: f[k] for k in ("name", "method", "score", "p_value", "threshold", "drifted")} for f in FEATURES[:1]
            ],
        }
        if day == "2026-02-06":
            details["report"] = str(report_dir / "monitor.json")
        record_decision(
            settings, model=MODEL, event="monitor", as_of=day, actor="credit_default__monitor/x", details=details
        )

    for day in ("2026-02-01", "2026-02-02", "2026-02-04", "2026-02-06"):
        monitor(day)
    record_decision(
        settings,
        model=MODEL,
        event="gates",
        as_of="2026-02-04",
        actor="credit_default__retrain/r1",
        details={"run_id": run_id, "passed": False, "failed": ["roc_auc 0.69 < 0.7"]},
    )
    record_decision(
        settings,
        model=MODEL,
        event="reject",
        as_of="2026-02-04",
        actor="credit_default__retrain/r1",
        details={"run_id": run_id, "failed": ["roc_auc 0.69 < 0.7"], "reason": "failed its gates"},
    )
    record_decision(
        settings,
        model=MODEL,
        event="promote",
        as_of="2026-02-02",
        before=None,
        after="1",
        reason="first <b>champion</b>",
        details={"version": "1", "mode": "direct"},
    )
    record_decision(
        settings,
        model=MODEL,
        event="gates",
        as_of="2026-02-06",
        actor="credit_default__retrain/r2",
        details={"run_id": run_id, "passed": True, "failed": []},
    )
    record_decision(
        settings,
        model=MODEL,
        event="no_gain",
        as_of="2026-02-06",
        actor="credit_default__retrain/r2",
        reason="the candidate is not better than the champion beyond noise",
        details={"outcome": "no_gain", "run_id": run_id},
    )
    record_decision(
        settings,
        model=MODEL,
        event="rollback",
        as_of="2026-02-01",
        before="2",
        after="1",
        reason="hand rollback",
        details={"version": "1"},
    )
    record_decision(
        settings,
        model=MODEL,
        event="guard_start",
        as_of="2026-02-01",
        reason="guarding v1 for 120 minutes against previous-champion v2",
        details={"version": "1", "previous": "2", "minutes": 120},
    )
    monitor("2026-02-05")  # written last, but not the latest day
    return SimpleNamespace(settings=settings, client=client, run_id=run_id, root=root)


@pytest.fixture(scope="module")
def app(page_state):
    from fastapi.testclient import TestClient
    from retrain_airflow.ui import create_app

    return TestClient(create_app(lambda: page_state.settings, require_auth=False), root_path="/retrain")


class _Page(HTMLParser):
    """Elements with their attributes, and the text of each ``data-field`` of the fleet table."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.row_fields: dict[str, dict[str, str]] = {}
        self._row: str | None = None
        self._field: str | None = None
        self._depth = 0
        self._text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a))
        if tag == "tr" and "data-model" in a:
            self._row = a["data-model"]
        if self._row and "data-field" in a and self._field is None:
            self._field, self._depth, self._text = a["data-field"], 0, []
        if self._field is not None and tag not in ("br", "path", "rect", "line", "circle", "polyline"):
            self._depth += 1

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if self._field is not None and tag not in ("br", "path", "rect", "line", "circle", "polyline"):
            self._depth -= 1
            if self._depth == 0:
                self.row_fields.setdefault(self._row, {})[self._field] = " ".join("".join(self._text).split())
                self._field = None

    def handle_data(self, data):
        if self._field is not None:
            self._text.append(data)

    def find(self, tag: str, **attrs) -> list[dict]:
        want = {k.rstrip("_").replace("_", "-"): v for k, v in attrs.items()}
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in want.items())]


@pytest.fixture(scope="module")
def fleet_page(app):
    response = app.get("/")
    assert response.status_code == 200
    return response


@pytest.fixture(scope="module")
def model_page(app):
    response = app.get(f"/models/{MODEL}")
    assert response.status_code == 200
    return _Page(response.text)


def test_gated_metrics_are_shown_even_with_more_than_six_metrics(model_page):
    shown = [a["data-metric"] for a in model_page.find("th") if "data-metric" in a]
    assert shown[:3] == ["roc_auc", "brier", "ece"]  # the gates' metrics first, in config order
    assert shown == ["roc_auc", "brier", "ece", "accuracy", "average_precision", "f1"]
    assert all(
        "gated" in a.get("class", "")
        for a in model_page.find("th")
        if a.get("data-metric") in ("roc_auc", "brier", "ece")
    )
    assert not model_page.find("th", data_metric="precision")  # the rest stops at six


def test_a_guard_under_way_is_shown_with_its_version_on_both_pages(fleet_page, model_page):
    row = _Page(fleet_page.text).row_fields[MODEL]
    assert row["guard"].startswith("watching v1 since 20"), row["guard"]
    assert 'title="guarding v1 for 120 minutes against previous-champion v2"' in fleet_page.text
    assert any(a.get("data-field") == "guard" for _, a in model_page.elements)


def test_last_check_is_the_latest_day_and_throttled_is_not_healthy(fleet_page):
    row = _Page(fleet_page.text).row_fields[MODEL]
    assert row["last-check"] == "2026-02-06"  # 2026-02-05 was written after it
    assert row["action"] == "throttled"
    assert row["drifted-share"] == "60%"
    assert row["live"].startswith("roc_auc 0.8200 on 2026-02-06"), row["live"]  # the live metric says its day


def test_chart_has_a_point_per_day_with_a_live_metric_and_a_bar_per_checked_day(model_page):
    (timeline,) = model_page.find("svg", class_="chart timeline")
    assert timeline["data-days"] == "6"  # 2026-02-01 .. 2026-02-06, the day without a check included
    live = {a["data-day"]: float(a["data-value"]) for a in model_page.find("circle", class_="live")}
    assert live == {day: v[2] for day, v in DAYS.items() if v[2] is not None}
    shares = {a["data-day"]: float(a["data-value"]) for a in model_page.find("rect", class_="share")}
    assert shares == {day: v[1] for day, v in DAYS.items()}
    # the line is broken where a day has no value: 02-01 to 02-02 only (02-04 and 02-06 stand alone)
    (segment,) = model_page.find("polyline", data_series="live")
    assert len(segment["points"].split()) == 2


def test_chart_marks_retrains_promotions_rollbacks_and_what_was_not_deployed(model_page):
    markers = {(a["data-day"], a["data-marker"]) for a in model_page.find("g", class_="marker")}
    assert markers == {
        ("2026-02-01", "rollback"),
        ("2026-02-02", "promote"),
        ("2026-02-04", "retrain"),
        ("2026-02-04", "rejected"),  # failed gates + reject: one marker
        ("2026-02-05", "throttled"),
        ("2026-02-06", "retrain"),
        ("2026-02-06", "no_gain"),
        ("2026-02-06", "throttled"),
    }


def test_rejected_and_no_gain_retrains_are_shown_as_such(app, fleet_page, model_page):
    outcomes = {a["data-event"]: a.get("data-outcome") for a in model_page.find("tr") if "data-event" in a}
    assert outcomes["reject"] == "rejected" and outcomes["no_gain"] == "no_gain"
    assert outcomes["promote"] is None and outcomes["gates"] is None
    assert _Page(fleet_page.text).row_fields[MODEL]["last-retrain"] == "2026-02-06 no gain"
    m = app.get(f"/api/status/{MODEL}").json()["models"][0]
    assert (m["last_retrain"]["event"], m["last_retrain"]["outcome"]) == ("no_gain", "no_gain")


def test_drift_bars_are_relative_to_each_features_threshold(model_page):
    rows = {a["data-feature"]: a["data-axis"] for a in model_page.find("tr") if "data-feature" in a}
    assert rows == {
        "age": "distance",
        "region": "distance",
        "debt_to_income": "distance",
        "income": "p_value",
        "loan_amount": "p_value",
    }
    widths = [float(a["data-width"]) for a in model_page.find("svg", class_="bar")]
    # bar = 50 px at the threshold, 100 px (full) at twice the way there; the table's order
    assert widths == [
        pytest.approx(25.0),  # age: psi 0.1 / 0.2
        pytest.approx(75.0),  # region: psi 0.3 / 0.2 (the largest score does not set the scale)
        pytest.approx(50.0),  # debt_to_income: psi at its threshold
        pytest.approx(100.0),  # income: ks p 1e-6 vs 1e-3 = twice the decades
        pytest.approx(50 * 0.6931 / 6.9078, abs=0.05),  # loan_amount: ks p 0.5: log(0.5) / log(0.001)
    ]
    groups = [a["data-axis"] for a in model_page.find("tr", class_="group")]
    assert groups == ["distance", "p_value"]


def test_feature_trend_has_one_chart_per_method_kind(model_page):
    titles = [a["aria-label"] for a in model_page.find("svg") if a.get("class") == "chart"]
    assert any(t.startswith("distance scores per feature") for t in titles)
    assert any(t.startswith("p-values per feature") and "log axis" in t for t in titles)


def test_pages_are_escaped_script_free_and_allow_only_their_stylesheet(fleet_page, model_page):
    text = fleet_page.text
    csp = fleet_page.headers["content-security-policy"]
    style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp
    assert "<script" not in text and " style=" not in text
    assert "first &lt;b&gt;champion&lt;/b&gt;" in text and "first <b>champion" not in text


def test_state_is_kept_until_the_ledger_moves(page_state, monkeypatch):
    """(Last of the tests on the fixture: it appends to the ledger.)"""
    from fastapi.testclient import TestClient
    from retrain_airflow.ui import create_app

    from retrain_lib.tools import status

    app = TestClient(create_app(lambda: page_state.settings, require_auth=False, max_age=3600), root_path="/retrain")
    app.get("/")
    calls = []
    real = status.fleet_status
    monkeypatch.setattr(status, "fleet_status", lambda *a, **k: calls.append(1) or real(*a, **k))
    app.get("/")
    app.get("/api/status")
    assert calls == []  # both from the state kept by the first page
    record_decision(
        page_state.settings,
        model=MODEL,
        event="monitor",
        as_of="2026-02-07",
        actor="cli",
        details={"action": "retrain", "reasons": ["drift"], "drifted_share": 0.8, "signals": []},
    )
    row = _Page(app.get("/").text).row_fields[MODEL]
    assert calls == [1] and (row["last-check"], row["action"]) == ("2026-02-07", "retrain")


def test_gate_rows_carry_their_reason_and_show_no_negative_zero(app):
    page = app.get(f"/models/{MODEL}").text
    row = re.search(
        r'<tr title="paired bootstrap of the roc_auc improvement[^"]*"><td>bootstrap</td>.*?</tr>', page, re.S
    )
    assert row, page
    cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(0))
    assert cells[:2] == ["0.0000", "0.0000"], cells  # observed -0.00001 and threshold -0.0


def test_chart_geometry():
    from retrain_airflow.charts import PALETTE, line_chart, threshold_bar, timeline_chart

    assert threshold_bar(1.0, drifted=True)["width"] == 50.0
    assert threshold_bar(5.0, drifted=True) == {
        "width": 100.0,
        "tick": 50,
        "full": 100,
        "drifted": True,
        "clipped": True,
        "missing": False,
    }
    assert threshold_bar(None, drifted=False)["missing"] is True
    c = line_chart(["d1", "d2"], {"x": [1e-2, 1e-12]}, title="p", thresholds=[1e-3], p_values=True)
    assert [t["label"] for t in c["thresholds"]] == ["threshold 0.001"]
    assert [p["clipped"] for p in c["series"][0]["points"]] == [False, True]  # 5 decades shown: 1e-12 is beyond
    # per-day thresholds (calibrated ones change with the sample): one dashed line per feature in
    # its colour, and one label per distinct latest threshold, close ones merged into a range
    c = line_chart(
        ["d1", "d2", "d3"],
        {"a": [0.01, 0.02, 0.2], "b": [0.0, 0.01, 0.01], "c": [0.0, 0.0, 0.0]},
        title="s",
        threshold_series={"a": [0.05, 0.04, 0.0086], "b": [0.05, 0.04, 0.0042], "c": [None, 0.1, 0.1]},
    )
    assert [(t["name"], t["color"], len(t["segments"])) for t in c["threshold_lines"]] == [
        ("a", PALETTE[0], 1),
        ("b", PALETTE[1], 1),
        ("c", PALETTE[2], 1),
    ]
    assert [t["label"] for t in c["thresholds"]] == ["threshold 0.1", "thresholds 0.0042-0.0086"]
    assert not any(t["line"] for t in c["thresholds"])  # the series lines are drawn, not full-width ones
    labels_y = [t["y"] for t in c["thresholds"]]
    assert all(b - a >= 11 for a, b in zip(labels_y, labels_y[1:]))
    t = timeline_chart(
        [
            {"as_of": "2026-02-01", "live": 0.8, "markers": [{"kind": "promote"}]},
            {"as_of": "2026-02-02", "live": None, "drifted_share": 0.5, "action": "healthy", "throttled": True},
        ],
        metric="roc_auc",
        drift_share_threshold=0.5,
    )
    assert [m["kind"] for m in t["markers"]] == ["promote", "throttled"]
    assert len(t["live_points"]) == 1 and t["bars"][0]["drift"] is True  # at the threshold is drift


def test_every_alert_kind_has_a_runbook_served_by_the_app(app):
    from retrain_lib.core.config_alerts import ALERT_KINDS
    from retrain_lib.pipeline.alert_links import runbook_url

    index = app.get("/runbooks/")
    assert index.status_code == 200
    listed = {a["data-kind"] for t, a in _Page(index.text).elements if t == "a" and "data-kind" in a}
    assert set(ALERT_KINDS) <= listed, set(ALERT_KINDS) - listed
    for kind in ALERT_KINDS:
        # the alert's link and the app's route are the same path
        assert runbook_url("http://af", kind) == f"http://af/retrain/runbooks/{kind}"
        page = app.get(f"/runbooks/{kind}")
        assert page.status_code == 200, kind
        assert "<h1>" in page.text and "<h2>What to do</h2>" in page.text and "<script" not in page.text, kind


def test_an_unknown_or_crafted_runbook_name_is_a_404_listing_the_others(app):
    for name in ("nope", "README", "Gate_Failure", "platform"):
        page = app.get(f"/runbooks/{name}")
        assert page.status_code == 404, name
        assert 'data-kind="gate_failure"' in page.text
    for crafted in ("..%2F..%2Fconfigs%2Fplatform", "..%2Fplatform.yaml", "%2Fetc%2Fpasswd"):
        page = app.get(f"/runbooks/{crafted}")
        assert page.status_code == 404 and "mlflow" not in page.text and "root:" not in page.text, crafted


def test_runbook_markdown_escapes_raw_html():
    from retrain_airflow.runbooks import to_html

    html = to_html("# T\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
    assert "<script>" not in html and "&lt;script&gt;" in html and "<table>" in html
