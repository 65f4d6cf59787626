"""`retrain status` and the fleet page's data: a real (small) MLflow registry and decision
ledger in a temporary state directory, read back by :mod:`retrain_lib.tools.status`, the CLI and
the fleet app (outside Airflow)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from retrain_lib.cli.app import main
from retrain_lib.serving.routing import set_rollout_state
from retrain_lib.store import registry
from retrain_lib.store.audit import record_decision
from retrain_lib.tools.status import UnknownModelError, fleet_status
from retrain_lib.tools.status_links import resolve_report
from retrain_lib.tools.status_tasks import task_links

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
FEATURES = [  # what the monitor writes to monitor.json for every checked feature
    {
        "name": "income",
        "method": "ks",
        "kind": "numeric",
        "score": 0.21,
        "p_value": 1e-9,
        "threshold": 0.001,
        "drifted": True,
    },
    {
        "name": "age",
        "method": "psi",
        "kind": "numeric",
        "score": 0.01,
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
]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """credit_default with versions 1..3 (champion 2, previous-champion 1, challenger 3 in a
    20% canary), three monitor checks (two on the last day), a gate verdict with its
    results.json, promotions and a rejection; daily_demand with nothing at all."""
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.model_context import ModelContext

    root = tmp_path_factory.mktemp("status")
    shutil.copytree(REPO / "configs", root / "configs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        mp.delenv("RETRAIN_MLFLOW_UI_URL", raising=False)  # links to the default http://localhost:5000
        settings = load_settings(root / "configs")
    ctx = ModelContext(MODEL, settings)
    client = ctx.client
    exp = ctx.experiment_id()
    runs = [client.create_run(exp).info.run_id for _ in range(4)]
    for i, run_id in enumerate(runs[:3], 1):
        registry.register_version(
            client,
            MODEL,
            run_id=run_id,
            source=f"runs:/{run_id}/model",
            tags={
                "metric.roc_auc": repr(0.7 + i / 100),
                "trained_as_of": f"2026-02-0{i}",
                "gates.passed": "true",
                "data.start": "2026-01-01",
                "data.end": f"2026-02-0{i}",
            },
        )
    registry.promote_champion(client, MODEL, "1", expected_champion=None)
    registry.promote_champion(client, MODEL, "2", expected_champion="1")
    registry.set_challenger(client, MODEL, "3")
    set_rollout_state(client, MODEL, "canary", 20, "application_id")
    gates = {
        "passed": True,
        "results": [
            {
                "gate": "roc_auc_min",
                "metric": "roc_auc",
                "slice": "all",
                "threshold": 0.7,
                "observed": 0.73,
                "champion": 0.72,
                "delta": 0.01,
                "passed": True,
                "skipped": False,
                "reason": "roc_auc 0.73 >= 0.7",
            }
        ],
    }
    client.log_dict(runs[2], gates, "gates/results.json")

    report_dir = settings.reports_dir / MODEL / "2026-02-05"
    report_dir.mkdir(parents=True)
    (report_dir / "monitor.json").write_text(
        json.dumps({"drift": {"features": FEATURES, "drifted_share": 2 / 3, "drift_share_threshold": 0.25}})
    )
    (report_dir / "drift_report.html").write_text("<html><body>report</body></html>")
    (settings.state_dir / "secret.txt").write_text("not a report")

    def monitor(day, share, action, actor="cli", **extra):
        record_decision(
            settings,
            model=MODEL,
            event="monitor",
            as_of=day,
            actor=actor,
            details={
                "action": action,
                "reasons": [f"drift {share:.0%}"],
                "drifted_share": share,
                "top": [
                    {k: f[k] for k in ("name", "method", "score", "p_value", "threshold", "drifted")}
                    for f in FEATURES[:1]
                ],
                "mlflow_run_id": runs[3],
                **extra,
            },
        )

    monitor("2026-02-03", 0.0, "healthy")
    record_decision(
        settings,
        model=MODEL,
        event="gates",
        as_of="2026-02-03",
        actor="credit_default__retrain/r1",
        details={"run_id": runs[2], "passed": True, "failed": [], "champion_version": "2"},
    )
    record_decision(
        settings,
        model=MODEL,
        event="challenger",
        as_of="2026-02-03",
        after="3",
        reason="drift",
        details={"version": "3", "run_id": runs[2], "moves": [{"alias": "challenger", "from": None, "to": "3"}]},
    )
    monitor("2026-02-05", 0.5, "healthy")
    monitor(
        "2026-02-05",
        2 / 3,
        "retrain",
        actor="credit_default__monitor/scheduled__x",
        report=str(report_dir / "monitor.json"),
        drift_report=str(report_dir / "drift_report.html"),
    )
    record_decision(
        settings,
        model=MODEL,
        event="reject",
        as_of="2026-02-05",
        reason="",
        details={"run_id": runs[3], "failed": ["roc_auc 0.6 < 0.7"]},
    )
    return SimpleNamespace(settings=settings, client=client, runs=runs, root=root)


@pytest.fixture
def cli_env(fleet, monkeypatch):
    monkeypatch.setenv("RETRAIN_HOME", str(fleet.settings.state_dir))
    monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(fleet.settings.config_dir))
    monkeypatch.delenv("RETRAIN_MLFLOW_UI_URL", raising=False)
    return fleet


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_fleet_status_reads_registry_ledger_and_reports(fleet):
    status = fleet_status(fleet.settings, client=fleet.client)
    json.dumps(status, allow_nan=False)  # plain JSON
    by_name = {m["model"]: m for m in status["models"]}
    assert sorted(by_name) == ["credit_default", "daily_demand"]  # every config, registered or not
    m = by_name[MODEL]
    assert m["aliases"] == {"champion": "2", "challenger": "3", "previous-champion": "1"}
    assert m["aliases"] == {k: str(v) for k, v in fleet.client.get_registered_model(MODEL).aliases.items()}
    assert m["champion"]["version"] == "2" and m["champion"]["metrics"] == {"roc_auc": pytest.approx(0.72)}
    assert m["champion"]["run_id"] == fleet.runs[1] and m["champion"]["data_window"] == ["2026-01-01", "2026-02-02"]
    assert m["champion"]["promoted_as_of"] is None and m["champion"]["gates_passed"] is True
    assert m["champion"]["run_url"] == f"http://localhost:5000/#/runs/{fleet.runs[1]}"
    assert m["champion"]["mlflow_url"] == "http://localhost:5000/#/models/credit_default/versions/2"
    assert m["champion"]["card_url"] is None  # registered by hand, without a card
    fleet.client.set_model_version_tag(MODEL, "2", "model_card.page", "#/experiments/7/runs/r2/artifactPath/c.html")
    again = {x["model"]: x for x in fleet_status(fleet.settings, client=fleet.client)["models"]}[MODEL]
    assert again["champion"]["card_url"] == "http://localhost:5000/#/experiments/7/runs/r2/artifactPath/c.html"
    assert m["challenger"]["version"] == "3" and m["previous_champion"]["version"] == "1"
    assert m["latest_version"] == "3"
    assert m["rollout"] == {"mode": "canary", "canary_percent": 20.0, "sticky_key": "application_id"}

    last = m["last_monitor"]
    assert (last["as_of"], last["action"], last["drifted_share"]) == ("2026-02-05", "retrain", pytest.approx(2 / 3))
    assert last["features_source"] == "report" and [f["name"] for f in last["features"]] == ["income", "age", "region"]
    assert last["features"][2]["score"] == 0.3 and last["drift_share_threshold"] == 0.25
    assert last["drift_report"] == "credit_default/2026-02-05/drift_report.html"
    assert last["report"] == "credit_default/2026-02-05/monitor.json"
    # one point per day (the day's last check), oldest first; scores from monitor.json where it exists
    trend = m["drift_trend"]
    assert [(t["as_of"], t["drifted_share"]) for t in trend] == [
        ("2026-02-03", 0.0),
        ("2026-02-05", pytest.approx(2 / 3)),
    ]
    assert trend[0]["scores"] == {"income": 0.21} and trend[0]["features_source"] == "ledger"
    assert trend[1]["scores"] == {"income": 0.21, "age": 0.01, "region": 0.3}
    assert trend[1]["drifted"] == ["income", "region"]
    assert m["monitor_checks"] == 3

    gates = m["last_gates"]
    assert gates["passed"] is True and gates["run_id"] == fleet.runs[2]
    assert [(r["gate"], r["observed"], r["passed"]) for r in gates["results"]] == [("roc_auc_min", 0.73, True)]
    assert [(d["event"], d["reason"]) for d in m["decisions"]] == [
        ("reject", "roc_auc 0.6 < 0.7"),
        ("challenger", "drift"),
        ("gates", "all gates passed"),
    ]
    assert m["last_decision"]["event"] == "reject"

    empty = by_name["daily_demand"]
    assert empty["registered"] is False and empty["aliases"] == {} and empty["champion"] is None
    assert empty["last_monitor"] is None and empty["decisions"] == [] and empty["drift_trend"] == []


def test_history_and_decisions_limits(fleet):
    m = fleet_status(fleet.settings, client=fleet.client, model=MODEL, history=1, decisions=2)["models"]
    assert len(m) == 1 and [t["as_of"] for t in m[0]["drift_trend"]] == ["2026-02-05"]
    assert [d["event"] for d in m[0]["decisions"]] == ["reject", "challenger"]


def test_unknown_model_is_named(fleet):
    with pytest.raises(UnknownModelError, match="unknown model 'nope'.*known models: credit_default, daily_demand"):
        fleet_status(fleet.settings, client=fleet.client, model="nope")


def test_reports_are_served_only_from_the_reports_directory(fleet):
    reports = fleet.settings.reports_dir
    assert (
        resolve_report(reports, "credit_default/2026-02-05/drift_report.html")
        == (reports / MODEL / "2026-02-05" / "drift_report.html").resolve()
    )
    (reports / "link").symlink_to(fleet.settings.state_dir / "secret.txt")
    for bad in (
        "../secret.txt",
        "credit_default/../../secret.txt",
        str(fleet.settings.state_dir / "secret.txt"),
        "link",
        "credit_default",
        "",
        "a\x00b",
    ):
        assert resolve_report(reports, bad) is None, bad


def test_task_links_find_the_record_of_the_task_run(fleet):
    links = task_links(fleet.settings, "credit_default__monitor", "scheduled__x", "check_model")
    assert links == {
        "mlflow_run": f"http://localhost:5000/#/runs/{fleet.runs[3]}",
        "report": "credit_default/2026-02-05/drift_report.html",
    }
    gates = task_links(fleet.settings, "credit_default__retrain", "r1", "check_gates")
    assert gates["mlflow_run"] == f"http://localhost:5000/#/runs/{fleet.runs[2]}"
    assert task_links(fleet.settings, "credit_default__monitor", "other", "check_model") == {
        "mlflow_run": None,
        "report": None,
    }
    assert task_links(fleet.settings, "credit_default__monitor", "scheduled__x", "decide_action")["mlflow_run"] is None


def test_cli_fleet_table(capsys, cli_env):
    code, out, err = run(capsys, "status")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["model", "champion", "challenger", "previous", "rollout"]
    row = next(line for line in lines if line.startswith(MODEL)).split()
    assert " ".join(row[:10]) == f"{MODEL} v2 v3 v1 canary 20% by application_id - 2026-02-05"  # no guard yet
    assert "67%" in row and "passed" in row and row[-2:] == ["2026-02-05", "reject"]
    assert next(line for line in lines if line.startswith("daily_demand")).split()[1:4] == ["-", "-", "-"]


def test_cli_model_detail_and_json(capsys, cli_env):
    code, out, err = run(capsys, "status", MODEL)
    assert code == 0, err
    assert "rollout: canary 20% by application_id" in out
    assert "last drift check 2026-02-05: RETRAIN, drifted share 67%" in out
    assert any(line.split()[:3] == ["region", "psi", "0.3000"] and line.endswith("YES") for line in out.splitlines())
    assert "last gates 2026-02-03: PASSED" in out and "roc_auc_min" in out
    code, out, _ = run(capsys, "status", MODEL, "--format", "json")
    data = json.loads(out)
    assert code == 0 and [m["model"] for m in data["models"]] == [MODEL]
    assert data["models"][0]["aliases"] == {"champion": "2", "challenger": "3", "previous-champion": "1"}


def test_cli_unknown_model_exits_2(capsys, cli_env):
    code, out, err = run(capsys, "status", "nope")
    assert code == 2 and out == ""
    assert "unknown model 'nope'" in err and "nope.yaml" in err and "known models: credit_default, daily_demand" in err
    code, _, err = run(capsys, "status", "--history", "-1")
    assert code == 2 and "--history" in err


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_fleet_app_pages_json_and_reports(cli_env):
    from fastapi.testclient import TestClient
    from retrain_airflow.ui import create_app

    app = TestClient(create_app(lambda: cli_env.settings, require_auth=False), root_path="/retrain")
    page = app.get("/")
    assert page.status_code == 200
    text = page.text
    assert f'<tr data-model="{MODEL}">' in text and '<td data-field="champion">v2</td>' in text
    assert '<td data-field="challenger">v3</td>' in text and "canary 20% by application_id" in text
    assert 'href="/retrain/reports/credit_default/2026-02-05/drift_report.html"' in text
    assert f'href="http://localhost:5000/#/runs/{cli_env.runs[3]}"' in text
    assert text.count("<svg") >= 3  # sparkline + drift share + per-feature scores
    detail = app.get(f"/models/{MODEL}")
    assert detail.status_code == 200 and 'data-event="reject"' in detail.text
    assert app.get("/models/nope").status_code == 404
    assert app.get("/api/status").json()["models"][0]["aliases"]["champion"] == "2"
    assert app.get("/api/status/nope").status_code == 404
    report = app.get("/reports/credit_default/2026-02-05/drift_report.html")
    assert report.status_code == 200 and report.text.startswith("<html>")
    assert "sandbox" in report.headers["content-security-policy"]
    for bad in (
        "/reports/../secret.txt",
        "/reports/%2e%2e/secret.txt",
        "/reports/..%2fsecret.txt",
        f"/reports/{os.fspath(cli_env.settings.state_dir / 'secret.txt')}",
    ):
        assert app.get(bad).status_code == 404, bad


# -----------------------------------------------------------------------------------------
# Reading the SQLite registry without MLflow (retrain status under 2 s)
# -----------------------------------------------------------------------------------------


def test_the_sqlite_reader_answers_as_mlflow_does(fleet):
    """Every call status makes, on the same store: MLflow's client is the golden value."""
    from retrain_lib.store.registry_reader import RegistryReadError, reader_for

    reader = reader_for(fleet.settings.tracking_uri, fleet.settings.registry_uri)
    assert reader is not None
    fleet.client.create_model_version(MODEL, f"runs:/{fleet.runs[0]}/model", fleet.runs[0])  # version 4 ...
    fleet.client.delete_model_version(MODEL, "4")  # ... deleted: hidden from both
    try:
        want, got = fleet.client.get_registered_model(MODEL), reader.get_registered_model(MODEL)
        assert (got.name, got.aliases, got.tags) == (want.name, {k: str(v) for k, v in want.aliases.items()}, want.tags)
        for version in ("1", "2", "3"):
            want, got = fleet.client.get_model_version(MODEL, version), reader.get_model_version(MODEL, version)
            assert (got.version, got.run_id, got.creation_timestamp, got.description, got.tags) == (
                str(want.version),
                want.run_id,
                want.creation_timestamp,
                want.description,
                want.tags,
            )
        assert sorted(v.version for v in reader.search_model_versions(f"name='{MODEL}'")) == sorted(
            str(v.version) for v in fleet.client.search_model_versions(f"name='{MODEL}'")
        )
        for missing in (lambda c: c.get_registered_model("nope"), lambda c: c.get_model_version(MODEL, "4")):
            with pytest.raises(RegistryReadError) as info:
                missing(reader)
            assert registry.is_not_found(info.value)
            with pytest.raises(Exception) as mlflow_info:
                missing(fleet.client)
            assert registry.is_not_found(mlflow_info.value)
        dest = fleet.root / "download"
        copied = Path(reader.download_artifacts(fleet.runs[2], "gates/results.json", str(dest)))
        assert copied.is_relative_to(dest)
        assert json.loads(copied.read_text()) == json.loads(
            Path(fleet.client.download_artifacts(fleet.runs[2], "gates/results.json", str(fleet.root))).read_text()
        )
        with pytest.raises(RegistryReadError):
            reader.download_artifacts(fleet.runs[2], "../../../secret.txt", str(dest))
    finally:
        reader.close()


def test_status_through_the_reader_equals_status_through_mlflow(fleet):
    with_reader = fleet_status(fleet.settings)
    with_mlflow = fleet_status(fleet.settings, client=fleet.client)
    with_reader.pop("generated_at"), with_mlflow.pop("generated_at")
    assert with_reader == with_mlflow
    assert with_reader["models"][0]["last_gates"]["results"]  # read from the run's artifact


def test_reader_only_for_an_sqlite_store_mlflow_created(tmp_path):
    from retrain_lib.store.registry_reader import reader_for

    assert reader_for("http://127.0.0.1:5000") is None
    assert reader_for("postgresql://u@db/mlflow") is None
    assert reader_for(f"sqlite:///{tmp_path / 'missing.db'}") is None
    (tmp_path / "other.db").write_bytes(b"")  # a file, but no MLflow tables
    assert reader_for(f"sqlite:///{tmp_path / 'other.db'}") is None


def test_status_command_imports_neither_mlflow_nor_numpy(cli_env):
    import subprocess
    import sys

    code = (
        "import json, sys\nfrom retrain_lib.cli.app import main\nrc = main(['status', '--format', 'json'])\n"
        "print(json.dumps({'rc': rc, 'heavy': sorted({m.split('.')[0] for m in sys.modules} & "
        "{'mlflow', 'numpy', 'pandas', 'sklearn', 'scipy'})}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=os.environ.copy(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    *status, last = proc.stdout.splitlines()
    assert json.loads(last) == {"rc": 0, "heavy": []}
    assert [m["model"] for m in json.loads("\n".join(status))["models"]] == ["credit_default", "daily_demand"]


def test_builtin_method_axes_match_the_drift_registry():
    from retrain_lib.stats.drift_methods import METHODS
    from retrain_lib.tools.status_monitor import BUILTIN_METHOD_AXES, P_VALUE

    assert {n: m.uses_p_value for n, m in METHODS.items()} == {
        n: axis == P_VALUE for n, axis in BUILTIN_METHOD_AXES.items()
    }


def test_last_guard_says_watching_until_the_guard_of_that_version_ends():
    from retrain_lib.tools.status import last_guard

    def rec(seq, event, version, **details):
        return {
            "seq": seq,
            "event": event,
            "time": f"2026-02-0{seq}T10:00:00+00:00",
            "reason": details.pop("reason", ""),
            "details": {"version": version, **details},
        }

    assert last_guard([rec(1, "promote", "2")]) is None
    started = [rec(1, "guard_start", "2", previous="1", minutes=120, reason="guarding v2 for 120 minutes")]
    g = last_guard(started)
    assert (g["state"], g["version"], g["previous"], g["ended"]) == ("watching", "2", "1", None)
    # an end of another version's guard does not end this one
    assert last_guard([*started, rec(2, "guard_end", "9", action="clean")])["state"] == "watching"
    ended = [*started, rec(3, "guard_end", "2", action="rollback", reason="paired_loss: worse")]
    g = last_guard(ended)
    assert (g["state"], g["reason"], g["ended"]) == ("rollback", "paired_loss: worse", "2026-02-03T10:00:00+00:00")
    # the rolled-back-to version's guard is the latest now
    g = last_guard([*ended, rec(4, "guard_start", "1", previous=None)])
    assert (g["state"], g["version"]) == ("watching", "1")
