"""The monthly health report (:mod:`retrain_lib.tools.health_report`, ``health_plots``,
``health_publish`` and ``retrain report``): a real decision ledger written through its public
API, a real (SQLite) MLflow registry and tracking store, and a local HTTP server standing in
for the Slack webhook. Every expected number below is counted by hand from the records the
fixture writes, not read back from the code under test."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from fake_slack import WEBHOOK_PATH, FakeSlack

from retrain_lib.cli.app import main
from retrain_lib.store import registry
from retrain_lib.store.audit import record_decision
from retrain_lib.tools.health_publish import (
    env_webhook_post,
    health_alert,
    publish_health_report,
    render_html,
    run_name,
)
from retrain_lib.tools.health_report import (
    DayHealth,
    GateCount,
    HealthCounts,
    build_health_report,
    month_days,
    previous_month,
)

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
MONTH = "2026-02"
# live roc_auc of Feb 3..10 (labels of Feb 1 and 2 not matured yet): falling by 0.01 a day
LIVE = {f"2026-02-{d:02d}": round(0.80 - 0.01 * (d - 1), 2) for d in range(3, 11)}
DRIFT_ALARM_DAYS = ("2026-02-04", "2026-02-08")


class _Elements(HTMLParser):
    """Every start tag of a page with its attributes (what the charts' SVG carries)."""

    def __init__(self, text: str):
        super().__init__()
        self.elements: list[tuple[str, dict]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs) -> list[dict]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def _monitor(settings, day: str, *, live=None, share=0.0, drift=False, perf_alarm=False, action="healthy", **extra):
    """A monitor record shaped as ``monitor_run`` writes it (signals with the live metric)."""
    signals = [{"signal": "drift", "triggered": drift, "value": share, "threshold": 0.25, "detail": {}}]
    if live is not None:
        signals.append(
            {
                "signal": "performance",
                "triggered": perf_alarm,
                "value": live,
                "threshold": 0.72,
                "detail": {"baseline": 0.80, "labels": 900, "window": [day, day]},
            }
        )
    record_decision(
        settings,
        model=MODEL,
        event="monitor",
        as_of=day,
        actor="credit_default__monitor/scheduled",
        details={"action": action, "signals": signals, "drifted_share": share, "champion_version": "1", **extra},
    )


def _write_month(settings, runs: list[str]) -> None:
    """The ledger of January (one promotion), February (the month reported) and March."""

    def rec(event: str, day: str, **kw):
        record_decision(settings, model=MODEL, event=event, as_of=day, actor=kw.pop("actor", "cli"), **kw)

    rec("promote", "2026-01-20", before=None, after="1", details={"mode": "direct", "version": "1"})
    _monitor(settings, "2026-01-31", share=0.5, drift=True, action="retrain")  # January: not counted
    for d in range(1, 11):
        day = f"2026-02-{d:02d}"
        if d == 5:  # two checks on the 5th: the day shows the later one
            _monitor(settings, day, live=0.50, share=0.9)
        extra = {"reasons": ["throttled: last retrain 1 day(s) ago"]} if d == 8 else {}
        _monitor(
            settings,
            day,
            live=LIVE.get(day),
            share=d / 20,
            drift=day in DRIFT_ALARM_DAYS,
            perf_alarm=d == 10,
            action="retrain" if d in (4, 10) else "healthy",
            **extra,
        )
    failed = {"passed": False, "failed": ["roc_auc 0.68 < min 0.7", "roc_auc 0.6 < min 0.65 on region=north"]}
    rec("gates", "2026-02-04", details={"run_id": runs[0], **failed})
    rec("reject", "2026-02-04", reason="the candidate failed its gates", details={"run_id": runs[0], "failed": []})
    rec("gates", "2026-02-06", details={"run_id": runs[1], "passed": True, "failed": []})
    rec("promote", "2026-02-06", before="1", after="2", reason="drift", details={"mode": "direct", "version": "2"})
    rec("rollback", "2026-02-07", before="2", after="1", reason="post-deploy guard: error rate 9% > 5%")
    rec("gates", "2026-02-10", details={"run_id": runs[2], "passed": False, "failed": ["roc_auc 0.69 < min 0.7"]})
    rec("no_gain", "2026-02-11", details={"run_id": runs[3], "outcome": "no_gain", "reason": "no gain"})
    rec("gates", "2026-02-12", details={"passed": False, "failed": ["latency p95 31 ms > max 20 ms"]})  # no run
    rec("data_validation_failed", "2026-02-13", details={"reason": "3 expectations failed"})
    rec("approval_requested", "2026-02-14", details={"version": "3", "reasons": ["first deployment"]})
    rec("approval", "2026-02-15", details={"version": "3", "answer": "Approve", "by": "alice"})
    rec("challenger", "2026-02-15", after="3", details={"version": "3", "mode": "canary"})
    rec("rollout_rollback", "2026-02-18", details={"version": "3", "reason": "canary step 1 worse"})
    rec("approval_requested", "2026-02-20", details={"version": "4", "reasons": ["narrow margin"], "run_id": runs[3]})
    rec(
        "promote", "2026-02-22", before="1", after="2", reason="known good", details={"mode": "by_hand", "version": "2"}
    )
    rec("rollback", "2026-02-25", before="2", after="1", reason="champion degraded", actor="credit_default__monitor/x")
    rec("approval_requested", "2026-02-26", details={"version": "5", "reasons": ["first deployment"]})
    rec("approval_timeout", "2026-02-27", details={"version": "5", "timed_out": True})
    # March: answers v4's request and promotes; none of it belongs to February
    rec("approval", "2026-03-02", details={"version": "4", "answer": "Approve", "by": "bob"})
    rec("promote", "2026-03-02", before="1", after="4", details={"mode": "direct", "version": "4"})
    _monitor(settings, "2026-03-01", live=0.9, share=1.0, drift=True)


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    """credit_default with versions 1..4 (champion 2 in the registry), the ledger of
    :func:`_write_month`, gate results for two of its failed verdicts, and a fake Slack."""
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.model_context import ModelContext

    root = tmp_path_factory.mktemp("health")
    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    path = cfg_dir / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["alerts"] = {"slack_conn_id": "slack_report", "retries": 0, "dedupe_minutes": 0}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    slack = FakeSlack()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        mp.setenv("RETRAIN_MLFLOW_UI_URL", "http://mlflow.test")
        mp.setenv("RETRAIN_AIRFLOW_URL", "http://airflow.test")
        settings = load_settings(cfg_dir)
    ctx = ModelContext(MODEL, settings)
    client = ctx.client
    exp = ctx.experiment_id()
    runs = [client.create_run(exp).info.run_id for _ in range(4)]
    for run_id in runs:
        registry.register_version(client, MODEL, run_id=run_id, source=f"runs:/{run_id}/model", tags={})
    registry.promote_champion(client, MODEL, "1", expected_champion=None)
    registry.promote_champion(client, MODEL, "2", expected_champion="1")

    def result(gate, slice_, passed):
        return {"gate": gate, "metric": "roc_auc", "slice": slice_, "passed": passed, "reason": f"{gate} {slice_}"}

    client.log_dict(
        runs[0],
        {
            "passed": False,
            "results": [
                result("roc_auc_min", "all", False),
                result("roc_auc_min", "region=north", False),
                result("brier_max", "all", True),
            ],
        },
        "gates/results.json",
    )
    client.log_dict(runs[2], {"passed": False, "results": [result("roc_auc_min", "all", False)]}, "gates/results.json")
    _write_month(settings, runs)
    try:
        yield SimpleNamespace(settings=settings, client=client, runs=runs, cfg_dir=cfg_dir, root=root, slack=slack)
    finally:
        slack.close()


@pytest.fixture(scope="module")
def report(platform):
    return build_health_report(
        MODEL, MONTH, settings=platform.settings, client=platform.client, now=dt.datetime(2026, 3, 1, 7, tzinfo=dt.UTC)
    )


def test_months_are_checked_and_a_run_reports_the_month_before():
    assert month_days("2024-02") == (dt.date(2024, 2, 1), dt.date(2024, 2, 29))  # leap year
    assert month_days("2026-12") == (dt.date(2026, 12, 1), dt.date(2026, 12, 31))
    for bad in ("2026-13", "2026-2", "26-02", "2026-02-01", ""):
        with pytest.raises(ValueError, match="must be a month as YYYY-MM"):
            month_days(bad)
    assert previous_month("2026-03-01") == "2026-02"
    assert previous_month(dt.datetime(2026, 1, 1, 7, tzinfo=dt.UTC)) == "2025-12"
    assert previous_month(dt.date(2026, 3, 31)) == "2026-02"


def test_the_counts_of_the_month(report):
    assert report.counts == HealthCounts(
        monitor_checks=11,  # ten days, the 5th twice; January's and March's checks left out
        days_checked=10,
        drift_alarms=2,
        performance_alarms=1,
        retrain_requests=2,
        throttled=1,
        retrains=4,
        gate_failures=3,
        validation_failures=1,
        rejections=1,
        no_gain=1,
        promotions=2,
        promotions_by_hand=1,
        challengers=1,
        rollbacks=2,
        guard_rollbacks=1,
        rollout_rollbacks=1,
        approvals_requested=3,
        approvals_answered=1,
        approval_timeouts=1,
    )


def test_failed_gates_come_from_the_gate_results_else_the_recorded_reasons(report):
    assert report.failed_gates == (
        GateCount("roc_auc_min", 2),  # runs 0 and 2, from their gates/results.json
        GateCount("latency p95 31 ms > max 20 ms", 1),  # no run: the reason the ledger kept
        GateCount("roc_auc_min[region=north]", 1),
    )


def test_the_live_metric_per_day_and_its_trend(report):
    assert len(report.days) == 28 and report.days[0].day == "2026-02-01" and report.days[-1].day == "2026-02-28"
    by_day = {d.day: d for d in report.days}
    assert {d.day: d.live for d in report.days if d.live is not None} == LIVE  # the 5th: the later check
    assert by_day["2026-02-05"].checks == 2 and by_day["2026-02-05"].drifted_share == pytest.approx(0.25)
    assert [d.day for d in report.days if d.drift_alarm] == list(DRIFT_ALARM_DAYS)
    assert by_day["2026-02-08"].throttled is True and by_day["2026-02-09"].throttled is False
    assert by_day["2026-02-04"].events == ("gate_failure", "rejected")
    assert by_day["2026-02-06"].events == ("retrain", "promotion")
    assert by_day["2026-02-07"].events == ("rollback",) and by_day["2026-02-20"].events == ()
    assert (by_day["2026-02-03"].baseline, by_day["2026-02-03"].limit) == (0.80, 0.72)
    assert report.metric == "roc_auc" and report.greater_is_better is True
    assert report.trend_direction == "worse"  # 0.78 on the 3rd, 0.71 on the 10th
    trend = report.to_dict()["trend"]
    assert trend["first"] == 0.78 and trend["last"] == 0.71 and trend["days_measured"] == 8
    assert trend["mean"] == pytest.approx(sum(LIVE.values()) / 8)


def test_open_approvals_and_champions(report, platform):
    # v3 answered, v5 timed out; v4's answer came in March
    assert [(a.version, a.requested_on, a.waiting_days, a.reasons) for a in report.open_approvals] == [
        ("4", "2026-02-20", 8, ("narrow margin",))
    ]
    assert report.open_approvals[0].run_id == platform.runs[3]
    ch = report.champion
    assert (ch.at_start, ch.at_end) == ("1", "1")  # promoted on the 6th and 22nd, rolled back each time
    assert (ch.now, ch.previous_now, ch.challenger_now) == ("2", "1", None)  # the registry's aliases
    assert ch.registered == ()  # the four versions were created today, not in February
    assert [(e.day, e.event, e.version) for e in report.events] == [
        ("2026-02-04", "reject", None),
        ("2026-02-06", "promote", "2"),
        ("2026-02-07", "rollback", "1"),
        ("2026-02-11", "no_gain", None),
        ("2026-02-13", "data_validation_failed", None),
        ("2026-02-15", "challenger", "3"),
        ("2026-02-18", "rollout_rollback", "3"),
        ("2026-02-22", "promote", "2"),
        ("2026-02-25", "rollback", "1"),
    ]
    today = dt.date.today().strftime("%Y-%m")
    now = build_health_report(MODEL, today, settings=platform.settings, client=platform.client)
    assert now.champion.registered == ("1", "2", "3", "4") and now.counts.monitor_checks == 0


def test_the_html_draws_both_charts_from_the_report(report):
    page = _Elements(render_html(report))
    assert len(page.find("svg")) == 2 and not page.find("script")
    points = page.find("circle", **{"class": "live"})
    assert {p["data-day"]: float(p["data-value"]) for p in points} == LIVE
    # higher roc_auc is drawn higher (smaller y): the y order is the reverse of the value order
    ys = [float(p["cy"]) for p in sorted(points, key=lambda p: p["data-day"])]
    assert ys == sorted(ys) and len(set(ys)) == len(ys)
    bars = page.find("rect", **{"class": "share"})
    assert len(bars) == 10 and [b["data-day"] for b in bars if b["data-alarm"] == "true"] == list(DRIFT_ALARM_DAYS)
    heights = {b["data-day"]: float(b["height"]) for b in bars}
    assert heights["2026-02-10"] == pytest.approx(2 * heights["2026-02-05"], rel=0.02)  # 50% vs 25% drifted
    markers = {m["data-day"]: m["data-marker"] for m in page.find("line", **{"class": "marker"})}
    assert markers["2026-02-07"] == "rollback" and markers["2026-02-22"] == "promotion"
    assert markers["2026-02-04"] == "gate_failure" and markers["2026-02-06"] == "promotion"  # the most telling
    assert "2026-02-20" not in markers
    counts = {a["data-count"] for a in page.find("td") if "data-count" in a}
    assert {"drift_alarms", "retrains", "promotions", "rollbacks", "open_approvals"} <= counts
    assert [a["data-version"] for a in page.find("tr") if "data-version" in a] == ["4"]
    assert [a["data-gate"] for a in page.find("tr") if "data-gate" in a] == [
        "roc_auc_min",
        "latency p95 31 ms > max 20 ms",
        "roc_auc_min[region=north]",
    ]


def test_a_month_without_labels_or_checks_renders_empty_charts():
    from retrain_lib.tools.health_report import ChampionState, HealthReport

    empty = HealthReport(
        model="m",
        month="2026-04",
        first_day="2026-04-01",
        last_day="2026-04-30",
        metric=None,
        greater_is_better=None,
        drift_share_threshold=None,
        counts=HealthCounts(),
        failed_gates=(),
        open_approvals=(),
        champion=ChampionState(),
        days=tuple(DayHealth(f"2026-04-{d:02d}") for d in range(1, 31)),
        events=(),
        generated_at="2026-05-01T07:00:00+00:00",
    )
    text = render_html(empty)
    assert "no live metric this month" in text and "no drift check this month" in text
    assert empty.trend_direction is None and empty.to_dict()["trend"]["mean"] is None
    assert "*live metric*: not measured this month" in json.dumps(health_alert(empty).payload)


def test_the_slack_summary_names_counts_gates_trend_and_approvals(report):
    alert = health_alert(report)
    assert (alert.kind, alert.severity, alert.key) == ("health_report", "green", "health_report|credit_default|2026-02")
    assert alert.text == (
        ":large_green_circle: credit_default health 2026-02: 2 drift alarms, 4 retrains, 2 promotions, "
        "2 rollbacks, live roc_auc 0.78 -> 0.71 (worse), 1 open approval"
    )
    body = alert.payload["blocks"][2]["text"]["text"]
    assert "• *monitor*: 11 checks on 10 days; 2 drift alarm(s), 1 performance alarm(s)" in body
    assert "3 gate failure(s) (`roc_auc_min` ×2, `latency p95 31 ms &gt; max 20 ms` ×1" in body  # escaped
    assert "• *rollbacks*: 2 (1 by the post-deploy guard); 1 rollout(s) withdrawn" in body
    assert "• *live roc_auc*: 0.78 → 0.71 (worse; mean 0.745 over 8 day(s))" in body
    assert "• *open approvals*: v4 since 2026-02-20 (8 d)" in body
    assert alert.payload["blocks"][1]["text"]["text"] == "*credit_default* in 2026-02: champion v1 (v2 now)."
    assert health_alert(report, severity="yellow").payload["attachments"][0]["color"] == "#daa038"


def test_published_to_mlflow_once_per_month(platform):
    first = publish_health_report(MODEL, MONTH, settings=platform.settings)
    client = platform.client
    run = client.get_run(first.run_id)
    assert run.info.run_name == run_name(MODEL, MONTH) == "health_report_credit_default_2026-02"
    assert run.info.status == "FINISHED"
    assert run.data.tags["retrain.kind"] == "health_report" and run.data.tags["retrain.month"] == MONTH
    assert run.data.metrics["health.drift_alarms"] == 2 and run.data.metrics["health.rollbacks"] == 2
    assert run.data.metrics["live.roc_auc.last"] == 0.71
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "health_report")}
    assert artifacts == {"health_report/2026-02.html", "health_report/2026-02.json"}
    local = Path(client.download_artifacts(first.run_id, "health_report/2026-02.json", str(platform.root)))
    assert json.loads(local.read_text())["counts"]["retrains"] == 4
    assert Path(first.html_path) == platform.settings.reports_dir / MODEL / "health" / "2026-02.html"
    # again: one report run of the month, the earlier one deleted
    again = publish_health_report(MODEL, MONTH, settings=platform.settings)
    assert again.run_id != first.run_id and again.replaced == (first.run_id,)
    assert client.get_run(first.run_id).info.lifecycle_stage == "deleted"
    found = client.search_runs([first.experiment_id], "tags.`retrain.month` = '2026-02'")
    assert [r.info.run_id for r in found] == [again.run_id]


def test_cli_writes_the_report_and_sends_the_summary_to_the_webhook(platform, capsys, monkeypatch, tmp_path):
    slack = platform.slack
    slack.requests.clear()
    monkeypatch.setenv("RETRAIN_HOME", str(platform.settings.state_dir))
    monkeypatch.setenv("RETRAIN_MLFLOW_UI_URL", "http://mlflow.test")
    monkeypatch.setenv("RETRAIN_AIRFLOW_URL", "http://airflow.test")
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_REPORT", json.dumps({"conn_type": "slackwebhook", "password": slack.url + WEBHOOK_PATH})
    )
    out = tmp_path / "feb.html"
    argv = ["--config-dir", str(platform.cfg_dir), "-q", "report", MODEL, "--month", MONTH, "--out", str(out)]
    assert main([*argv, "--format", "json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["slack"] == "sent" and res["html_path"] == str(out) and res["run_id"]
    assert res["report"]["counts"]["promotions"] == 2 and out.is_file() and out.with_suffix(".json").is_file()
    [payload] = slack.payloads()
    assert payload["text"].startswith(":large_green_circle: credit_default health 2026-02: 2 drift alarms")
    links = payload["attachments"][0]["blocks"][0]["elements"][1]["text"]
    run_url = f"http://mlflow.test/#/experiments/{res['experiment_id']}/runs/{res['run_id']}"
    assert f"<{run_url}/artifactPath/health_report/feb.html|health report>" in links
    assert "<http://airflow.test/retrain/runbooks/health_report|runbook>" in links

    # --no-log --no-slack: the files only
    slack.requests.clear()
    assert main([*argv, "--no-log", "--no-slack"]) == 0
    text = capsys.readouterr().out
    assert "credit_default 2026-02: 11 monitor checks, 2 drift alarms" in text and "Slack: skipped" in text
    assert "MLflow run" not in text and slack.payloads() == []


def test_cli_refuses_a_bad_month_or_an_unknown_model(platform, capsys):
    with pytest.raises(SystemExit) as info:  # argparse: a usage line and exit 2
        main(["--config-dir", str(platform.cfg_dir), "report", MODEL, "--month", "2026-2"])
    assert info.value.code == 2 and "'2026-2' is not a month; use YYYY-MM" in capsys.readouterr().err
    code = main(["--config-dir", str(platform.cfg_dir), "report", "nope", "--month", MONTH, "--no-log", "--no-slack"])
    assert code == 2 and "nope" in capsys.readouterr().err


def test_a_webhook_post_only_from_a_slackwebhook_connection_in_the_environment():
    hook = {"conn_type": "slackwebhook", "password": "https://hooks.slack.com/services/T/B/X"}
    assert env_webhook_post("slack_a", {"AIRFLOW_CONN_SLACK_A": json.dumps(hook)}) is not None
    split = {"conn_type": "slackwebhook", "host": "https://hooks.slack.com/services", "password": "T/B/X"}
    assert env_webhook_post("slack_a", {"AIRFLOW_CONN_SLACK_A": json.dumps(split)}) is not None
    token = {"conn_type": "slack", "password": "xoxb-1"}
    for env in ({}, {"AIRFLOW_CONN_SLACK_A": json.dumps(token)}, {"AIRFLOW_CONN_SLACK_A": "not json"}):
        assert env_webhook_post("slack_a", env) is None
