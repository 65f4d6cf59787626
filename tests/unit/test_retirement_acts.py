"""Deprecating, retiring and unretiring (:mod:`retrain_lib.pipeline.retirement`) and the
monitor's lifecycle step (:mod:`retrain_lib.pipeline.retirement_step`) on a real MLflow registry
(SQLite) and a real decision ledger: aliases, tags, ledger records, the notice sent once, the
DAGs asked to pause, and what ``retrain status`` reads back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from retrain_lib.pipeline import lifecycle_alerts
from retrain_lib.pipeline.promotion import promote_version
from retrain_lib.pipeline.retirement import deprecate_model, retire_model, unretire_model
from retrain_lib.pipeline.retirement_step import lifecycle_step, model_plan
from retrain_lib.serving.routing import set_rollout_state, state_from_tags
from retrain_lib.store import registry
from retrain_lib.store.audit import Ledger
from retrain_lib.store.lifecycle_tags import ModelRetiredError
from retrain_lib.tools.status import model_status

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"


def _platform(tmp_path, lifecycle: dict | None = None):
    """credit_default with versions 1..3: champion 2, previous-champion 1, challenger 3 in a canary."""
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.model_context import ModelContext

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    if lifecycle is not None:
        path = tmp_path / "configs" / "models" / f"{MODEL}.yaml"
        raw = yaml.safe_load(path.read_text())
        raw["lifecycle"] = lifecycle
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(tmp_path / "state"))
        settings = load_settings(tmp_path / "configs")
    ctx = ModelContext(MODEL, settings)
    client = ctx.client
    run_id = client.create_run(ctx.experiment_id()).info.run_id
    client.create_registered_model(MODEL)
    for _ in range(3):
        client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id)
    registry.promote_champion(client, MODEL, "1", expected_champion=None)
    registry.promote_champion(client, MODEL, "2", expected_champion="1")
    registry.set_challenger(client, MODEL, "3")
    set_rollout_state(client, MODEL, "canary", 20.0, "application_id")
    return settings, client


class Pauses:
    """The ``pause`` hook: what it was asked, answering as the REST API does for a model without a guard."""

    def __init__(self):
        self.asked: list[list[str]] = []

    def __call__(self, ids):
        self.asked.append(list(ids))
        return {d: "not found" if d.endswith("__guard") else "paused" for d in ids}


def _lifecycle_records(settings) -> list[dict]:
    return [
        r
        for r in Ledger.from_settings(settings).records(MODEL)
        if r["event"] in ("deprecate", "deprecation_notice", "retire", "unretire")
    ]


def _tags(client, version: str | None = None) -> dict[str, str]:
    tags = client.get_registered_model(MODEL).tags if version is None else client.get_model_version(MODEL, version).tags
    return {k: v for k, v in tags.items() if k.startswith(("lifecycle.", "deprecation."))}


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_retire_now_removes_the_aliases_tags_every_version_pauses_and_records_it(tmp_path):
    settings, client = _platform(tmp_path)
    pauses = Pauses()
    change = retire_model(
        MODEL, as_of="2026-03-01", reason="superseded", replacement="credit_v2", settings=settings, pause=pauses
    )
    assert change.action == "retired" and change.status == "retired"
    assert dict(change.aliases_removed) == {"champion": "2", "previous-champion": "1", "challenger": "3"}
    assert registry.aliases(client, MODEL) == {}
    assert state_from_tags(client.get_registered_model(MODEL).tags).mode == "none"  # the canary is over
    assert _tags(client) == {
        "lifecycle.status": "retired",
        "lifecycle.reason": "superseded",
        "lifecycle.replacement": "credit_v2",
        "lifecycle.retired_on": "2026-03-01",
    }
    for v in ("1", "2", "3"):
        assert _tags(client, v)["lifecycle.status"] == "retired" and _tags(client, v)["lifecycle.retired_by"] == "model"
    assert pauses.asked == [
        [f"{MODEL}__monitor", f"{MODEL}__retrain", f"{MODEL}__rollout", f"{MODEL}__guard", f"{MODEL}__health_report"]
    ]
    [rec] = _lifecycle_records(settings)
    assert (rec["event"], rec["as_of"], rec["actor"], rec["before"], rec["after"]) == (
        "retire",
        "2026-03-01",
        "cli",
        "2",
        None,
    )
    assert rec["details"]["dags"][f"{MODEL}__monitor"] == "paused" and rec["details"]["versions"] == ["1", "2", "3"]

    again = retire_model(MODEL, as_of="2026-03-02", reason="twice", settings=settings, pause=pauses)
    assert again.action == "unchanged" and len(_lifecycle_records(settings)) == 1 and len(pauses.asked) == 1
    with pytest.raises(ModelRetiredError, match="retrain unretire credit_default"):
        promote_version(MODEL, "2", settings=settings, reason="bring it back", check_serving=False)

    status = model_status(settings, MODEL)["lifecycle"]
    assert (status["status"], status["retired_on"], status["replacement"]) == ("retired", "2026-03-01", "credit_v2")
    _fleet_page_says(settings, "retired 2026-03-01 → credit_v2")


def _fleet_page_says(settings, text: str) -> None:
    """The lifecycle cell of the model's row on the fleet page (tags stripped)."""
    import re

    from fastapi.testclient import TestClient
    from retrain_airflow.ui import create_app

    page = TestClient(create_app(lambda: settings, require_auth=False), root_path="/retrain").get("/")
    assert page.status_code == 200
    row = re.search(rf'<tr data-model="{MODEL}">.*?</tr>', page.text, re.S).group(0)
    cell = re.search(r'<td data-field="lifecycle">(.*?)</td>', row, re.S).group(1)
    assert " ".join(re.sub(r"<[^>]+>", " ", cell).replace("&rarr;", "→").split()) == text


def test_unretire_makes_it_active_without_restoring_aliases_and_says_how(tmp_path):
    settings, client = _platform(tmp_path)
    retire_model(MODEL, as_of="2026-03-01", reason="superseded", settings=settings)
    change = unretire_model(MODEL, as_of="2026-03-03", reason="still needed", settings=settings, actor="cli/ana")
    assert (change.action, change.status) == ("unretired", "active")
    assert registry.aliases(client, MODEL) == {}  # not restored
    assert any("retrain promote credit_default 2" in h for h in change.hints)
    assert any("airflow dags unpause credit_default__monitor" in h for h in change.hints)
    assert _tags(client) == {"lifecycle.status": "active"}
    assert all(_tags(client, v) == {"lifecycle.status": "active"} for v in ("1", "2", "3"))
    rec = _lifecycle_records(settings)[-1]
    assert (rec["event"], rec["actor"], rec["reason"]) == ("unretire", "cli/ana", "still needed")
    assert model_plan(MODEL, "2026-03-04", settings=settings).status == "active"
    assert promote_version(MODEL, "2", settings=settings, reason="back", check_serving=False)["promoted"]
    assert unretire_model(MODEL, as_of="2026-03-04", reason="again", settings=settings).action == "unchanged"


def test_the_champion_version_is_retired_only_with_force(tmp_path):
    settings, client = _platform(tmp_path)
    refused = retire_model(MODEL, as_of="2026-03-01", reason="leak", version="2", settings=settings)
    assert refused.action == "refused" and "promote another version first" in refused.message
    assert registry.aliases(client, MODEL)["champion"] == "2" and _lifecycle_records(settings) == []

    challenger = retire_model(MODEL, as_of="2026-03-01", reason="bad canary", version="3", settings=settings)
    assert challenger.action == "retired" and dict(challenger.aliases_removed) == {"challenger": "3"}
    assert registry.aliases(client, MODEL) == {"champion": "2", "previous-champion": "1"}
    assert state_from_tags(client.get_registered_model(MODEL).tags).mode == "none"
    assert _tags(client, "3")["lifecycle.retired_by"] == "version" and _tags(client) == {}  # the model stays active

    forced = retire_model(MODEL, as_of="2026-03-02", reason="leak", version="2", force=True, settings=settings)
    assert forced.action == "retired" and registry.aliases(client, MODEL) == {"previous-champion": "1"}
    assert any("has no champion now" in h for h in forced.hints)
    assert [r["details"]["version"] for r in _lifecycle_records(settings)] == ["3", "2"]
    with pytest.raises(ModelRetiredError, match="version 3 of 'credit_default' was retired"):
        promote_version(MODEL, "3", settings=settings, reason="x", check_serving=False)
    # the whole model retired later leaves the versions retired on their own as they are
    retire_model(MODEL, as_of="2026-03-05", reason="end", settings=settings)
    assert _tags(client, "3")["lifecycle.reason"] == "bad canary" and _tags(client, "1")["lifecycle.reason"] == "end"


def test_a_deprecation_by_hand_is_noticed_once_then_retired_by_the_monitor_on_its_day(tmp_path):
    settings, client = _platform(tmp_path)
    change = deprecate_model(
        MODEL, as_of="2026-03-01", reason="replaced by v2", notice_days=3, settings=settings, replacement="credit_v2"
    )
    assert (change.action, change.retire_on) == ("deprecated", "2026-03-04")
    assert _tags(client) == {
        "lifecycle.status": "deprecated",
        "deprecation.target": "2026-03-04",
        "lifecycle.reason": "replaced by v2",
        "lifecycle.replacement": "credit_v2",
    }
    assert _tags(client, "1")["deprecation.target"] == "2026-03-04"

    pauses = Pauses()
    first = lifecycle_step(MODEL, "2026-03-01", settings=settings, actor="credit_default__monitor/r1", pause=pauses)
    assert first.notice and not first.skip and first.plan.status == "deprecated" and first.plan.days_left == 3
    second = lifecycle_step(MODEL, "2026-03-02", settings=settings, actor="credit_default__monitor/r2", pause=pauses)
    assert not second.notice and not second.skip  # the ledger says the notice went out
    assert registry.aliases(client, MODEL)["champion"] == "2" and pauses.asked == []

    due = lifecycle_step(MODEL, "2026-03-04", settings=settings, actor="credit_default__monitor/r4", pause=pauses)
    assert due.skip and due.retired is not None and due.retired.action == "retired"
    assert registry.aliases(client, MODEL) == {} and _tags(client)["lifecycle.status"] == "retired"
    assert len(pauses.asked) == 1
    after = lifecycle_step(MODEL, "2026-03-05", settings=settings, pause=pauses)
    assert after.skip and after.retired is None and "nothing to monitor" in after.explain()
    events = [(r["event"], r["as_of"], r["actor"]) for r in _lifecycle_records(settings)]
    assert events == [
        ("deprecate", "2026-03-01", "cli"),
        ("deprecation_notice", "2026-03-01", "credit_default__monitor/r1"),
        ("retire", "2026-03-04", "credit_default__monitor/r4"),
    ]


def test_a_config_plan_is_recorded_noticed_and_alerted_from_its_notice_day(tmp_path):
    settings, client = _platform(
        tmp_path, {"deprecate_on": "2026-04-10", "notice_days": 10, "replacement": "credit_v2"}
    )
    before = lifecycle_step(MODEL, "2026-03-30", settings=settings)
    assert before.plan.status == "scheduled" and not before.notice and _tags(client) == {}
    check = lifecycle_step(MODEL, "2026-03-31", settings=settings)  # 10 days before
    assert check.notice and check.deprecated is not None and check.plan.recorded
    assert _tags(client)["deprecation.target"] == "2026-04-10"
    [dep, notice] = _lifecycle_records(settings)
    assert dep["details"]["source"] == "config" and notice["details"]["retire_on"] == "2026-04-10"

    alert = lifecycle_alerts.deprecation_notice(MODEL, check)
    assert (alert.kind, alert.severity, alert.key) == ("deprecation", "yellow", "deprecation|credit_default|2026-04-10")
    assert (
        alert.text == ":large_yellow_circle: credit_default is deprecated: retired on 2026-04-10, replaced by credit_v2"
    )
    head = alert.payload["blocks"][1]["text"]["text"]
    assert "will be retired on *2026-04-10* (in 10 days)" in head and "*credit_v2*" in head

    status = model_status(settings, MODEL)["lifecycle"]
    assert status["retire_on"] == "2026-04-10" and status["source"] == "config"
    assert not lifecycle_step(MODEL, "2026-04-01", settings=settings).notice

    done = lifecycle_step(MODEL, "2026-04-10", settings=settings)
    assert done.skip and done.retired is not None
    alert = lifecycle_alerts.retirement(MODEL, done)
    assert (alert.kind, alert.severity) == ("retirement", "red")
    assert "not paused through the Airflow API" in alert.payload["blocks"][1]["text"]["text"]  # no pause hook here
    assert _tags(client)["lifecycle.reason"] == "planned in its config: lifecycle.deprecate_on 2026-04-10"


def test_the_cli_refuses_bad_input_with_exit_2_and_the_champion_version_with_exit_1(tmp_path, capsys, monkeypatch):
    import json

    from retrain_lib.cli.app import main

    settings, client = _platform(tmp_path)
    monkeypatch.setenv("RETRAIN_HOME", str(settings.state_dir))
    monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(settings.config_dir))
    monkeypatch.delenv("RETRAIN_AIRFLOW_API_URL", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["-q", *argv])
        out, err = capsys.readouterr()
        return code, out, err

    code, _, err = run("retire", "nope", "--now", "--reason", "x")
    assert code == 2 and "unknown model 'nope': no config" in err
    code, _, err = run("retire", MODEL, "--now", "--version", "9", "--reason", "x")
    assert code == 2 and err.startswith("error: credit_default version 9:")
    code, _, err = run("retire", MODEL, "--now", "--notice-days", "5", "--reason", "x")
    assert code == 2 and "pass one of them" in err
    code, _, err = run("retire", MODEL, "--force", "--reason", "x")
    assert code == 2 and "--force only applies with --version" in err
    code, _, err = run("retire", MODEL, "--now", "--reason", " ")
    assert code == 2 and "needs a reason" in err
    code, out, _ = run("retire", MODEL, "--now", "--version", "2", "--reason", "leak")
    assert code == 1 and "is the champion: promote another version first" in out
    assert registry.aliases(client, MODEL)["champion"] == "2" and _lifecycle_records(settings) == []

    code, out, err = run(
        "retire", MODEL, "--reason", "old", "--notice-days", "7", "--as-of", "2026-03-01", "--format", "json"
    )
    assert code == 0, err
    assert {k: json.loads(out)[k] for k in ("action", "status", "retire_on")} == {
        "action": "deprecated",
        "status": "deprecated",
        "retire_on": "2026-03-08",
    }
    code, out, _ = run("retire", MODEL, "--now", "--reason", "old", "--as-of", "2026-03-02")
    assert (
        code == 0 and "credit_default is retired: aliases challenger (v3), champion (v2), previous-champion (v1)" in out
    )
    assert "`airflow dags pause credit_default__monitor`" in out  # no API configured: how to pause them
    code, out, _ = run("unretire", MODEL, "--reason", "needed", "--as-of", "2026-03-03")
    assert code == 0 and "next: no alias was restored: promote a version with `retrain promote credit_default 2" in out
