"""``retrain show MODEL VERSION`` (retrain_lib.tools.version_record) on a real embedded MLflow
store and ledger: the record's fields, the aliases, the deployment history, and the errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from retrain_lib.cli.app import main
from retrain_lib.store import registry
from retrain_lib.store.audit import record_decision

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """credit_default with version 1 (previous-champion, approved) and 2 (champion), and the
    ledger records of both promotions."""
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.model_context import ModelContext

    root = tmp_path_factory.mktemp("show")
    shutil.copytree(REPO / "configs", root / "configs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        settings = load_settings(root / "configs")
    client = ModelContext(MODEL, settings).client
    exp = ModelContext(MODEL, settings).experiment_id()
    runs = [client.create_run(exp).info.run_id for _ in range(2)]
    common = {"features": "age,income|region", "features.target": "defaulted", "gates.passed": "true"}
    registry.register_version(
        client,
        MODEL,
        run_id=runs[0],
        source=f"runs:/{runs[0]}/model",
        tags={
            **common,
            "version.semantic": "1.0.0",
            "version.semantic_reason": "first version with a semantic version",
            "data.fingerprint": "fp1",
            "approval.answer": "Approve",
            "compliance.status": "approved",
        },
    )
    registry.register_version(
        client,
        MODEL,
        run_id=runs[1],
        source=f"runs:/{runs[1]}/model",
        tags={
            **common,
            "version.semantic": "1.1.0",
            "version.semantic_reason": "minor: retrained on new data vs version 1 (1.0.0)",
            "data.start": "2026-01-05",
            "data.end": "2026-02-01",
            "data.fingerprint": "fp2",
            "dvc.path": "models/credit_default/training.parquet",
            "dvc.rev": "abc1234",
            "dvc.md5": "0f0f",
            "git.commit": "c0ffee",
            "lock.hash": "10cc",
            "config.hash": "cfg2",
            "intended_use": "Rank applications for review.",
            "registered_by": "credit_default__retrain/manual__2026-02-01",
            "compliance.status": "not required",
            "metric.roc_auc": "0.81",
            "model_card": f"runs:/{runs[1]}/model_card/model_card.html",
            "deprecation.target": "2027-01-31",
        },
    )
    registry.promote_champion(client, MODEL, "1", expected_champion=None)
    registry.promote_champion(client, MODEL, "2", expected_champion="1")
    for as_of, before, after, moves in (
        ("2026-01-04", None, "1", [{"alias": "champion", "from": None, "to": "1"}]),
        (
            "2026-02-01",
            "1",
            "2",
            [{"alias": "champion", "from": "1", "to": "2"}, {"alias": "previous-champion", "from": None, "to": "1"}],
        ),
    ):
        record_decision(
            settings,
            model=MODEL,
            event="promote",
            as_of=as_of,
            actor=f"credit_default__retrain/{as_of}",
            before=before,
            after=after,
            reason="gates passed",
            details={"version": after, "moves": moves},
        )
    return SimpleNamespace(settings=settings, runs=runs)


def show(capsys, store, *argv: str) -> tuple[int, str, str]:
    code = main(["show", *argv, "--config-dir", str(store.settings.config_dir)])
    out, err = capsys.readouterr()
    return code, out, err


def test_show_json_has_the_full_record(capsys, store, monkeypatch):
    monkeypatch.setenv("RETRAIN_HOME", str(store.settings.state_dir))
    code, out, err = show(capsys, store, MODEL, "2", "--format", "json")
    assert code == 0, err
    rec = json.loads(out)
    assert rec["model"] == MODEL and rec["version"] == "2"
    assert rec["semantic_version"] == "1.1.0"
    assert rec["semantic_version_reason"] == "minor: retrained on new data vs version 1 (1.0.0)"
    assert rec["aliases"] == ["champion"]
    assert rec["intended_use"] == "Rank applications for review."
    assert rec["registered_by"] == "credit_default__retrain/manual__2026-02-01"
    assert rec["compliance_status"] == "not required"
    assert rec["deprecation_target"] == "2027-01-31"
    assert rec["model_card_uri"] == f"runs:/{store.runs[1]}/model_card/model_card.html"
    assert rec["gates"] == {"passed": True, "summary": None}
    assert rec["metrics"] == {"roc_auc": "0.81"}
    assert rec["lineage"] == {
        "run_id": store.runs[1],
        "data": {
            "start": "2026-01-05",
            "end": "2026-02-01",
            "trained_as_of": None,
            "fingerprint": "fp2",
            "dvc": {"path": "models/credit_default/training.parquet", "rev": "abc1234", "md5": "0f0f"},
        },
        "git_commit": "c0ffee",
        "lock_hash": "10cc",
        "config_hash": "cfg2",
        "warm_start_from": None,
    }
    assert [(e["event"], e["summary"]) for e in rec["deployment_history"]] == [("promote", "champion: 1 -> 2")]
    assert rec["deployment_history"][0]["effective"] == "2026-02-01T00:00:00+00:00"
    assert rec["tags"]["dvc.rev"] == "abc1234"

    code, out, err = show(capsys, store, MODEL, "1", "--format", "json")
    assert code == 0, err
    one = json.loads(out)
    assert one["aliases"] == ["previous-champion"] and one["compliance_status"] == "approved"
    assert [e["summary"] for e in one["deployment_history"]] == [
        "champion: - -> 1",
        "champion: 1 -> 2; previous-champion: - -> 1",
    ]


def test_show_text(capsys, store, monkeypatch):
    monkeypatch.setenv("RETRAIN_HOME", str(store.settings.state_dir))
    code, out, err = show(capsys, store, MODEL, "2")
    assert code == 0, err
    assert out.startswith("credit_default version 2\n")
    assert "semantic version:    1.1.0 (minor: retrained on new data vs version 1 (1.0.0))" in out
    assert "compliance:          not required" in out
    assert "data version:        models/credit_default/training.parquet at rev abc1234 (md5 0f0f)" in out
    assert "champion: 1 -> 2" in out.split("deployment history:", 1)[1]


def test_unknown_model_or_version_exits_2_naming_what_exists(capsys, store, monkeypatch):
    monkeypatch.setenv("RETRAIN_HOME", str(store.settings.state_dir))
    code, out, err = show(capsys, store, MODEL, "9")
    assert (code, out) == (2, "")
    assert "credit_default has no version 9; its versions: 1, 2" in err
    code, out, err = show(capsys, store, "credit_defualt", "1")
    assert (code, out) == (2, "")
    assert "no registered model 'credit_defualt'" in err and "credit_default, daily_demand" in err
    code, _, err = show(capsys, store, MODEL, "two")
    assert code == 2 and "must be a version number such as '3'. Got 'two' instead." in err
