"""The retrain path refuses what it must refuse, end to end against a real MLflow store and
ledger: a clearly worse challenger, and any candidate whose gates raise inside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from platforms import credit_platform

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "credit_default"


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with credit_platform(tmp_path_factory.mktemp("safe"), days=45, rows_per_day=400, seed=21) as (settings, _, cfg_dir):
        first = __import__("retrain_lib.pipeline.retrain_run", fromlist=["x"]).retrain_model(
            MODEL, "2026-01-30", settings=settings
        )
        assert first.outcome == "deployed", first
        yield settings, cfg_dir


def _edit(cfg_dir: Path, change) -> None:
    path = cfg_dir / "models" / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def _champion(settings) -> str | None:
    from retrain_lib.store import registry

    return registry.aliases(registry.get_client(settings.tracking_uri), MODEL).get("champion")


def test_a_clearly_worse_challenger_is_rejected_and_the_champion_stays(platform):
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.store.model_context import ModelContext

    settings, cfg_dir = platform
    before = _champion(settings)
    original = (cfg_dir / "models" / f"{MODEL}.yaml").read_text()
    # a much weaker model: two shallow trees instead of 150
    _edit(cfg_dir, lambda raw: raw["training"].update(params={"max_iter": 2, "max_depth": 1}))
    try:
        res = retrain_model(MODEL, "2026-02-03", settings=settings, actor="worse")
    finally:
        (cfg_dir / "models" / f"{MODEL}.yaml").write_text(original)
    assert res.outcome == "rejected", res
    reasons = " ".join(res.failed)
    assert "roc_auc" in reasons
    assert "bootstrap" in reasons or "paired bootstrap" in reasons, res.failed
    assert _champion(settings) == before
    last = ModelContext(MODEL, settings).ledger().records(MODEL)[-1]
    assert last["event"] == "reject" and last["after"] is None


def test_an_exception_inside_a_gate_blocks_the_promotion(platform, monkeypatch):
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.quality import gate_kinds

    settings, _ = platform
    before = _champion(settings)

    def broken(*args, **kwargs):
        raise RuntimeError("calibration bins exploded")

    monkeypatch.setitem(gate_kinds.RUNNERS, "calibration", broken)  # the calibration gate raises inside
    res = retrain_model(MODEL, "2026-02-04", settings=settings, actor="broken-gate")
    assert res.outcome == "rejected", res
    assert any("gate could not be evaluated" in r and "exploded" in r for r in res.failed), res.failed
    assert _champion(settings) == before


def test_rollback_moves_the_champion_back_once_and_is_in_the_history(platform):
    from retrain_lib.core.errors import RegistryError
    from retrain_lib.pipeline.promotion import rollback_model
    from retrain_lib.store import ledger_history, registry
    from retrain_lib.store.model_context import ModelContext

    settings, _ = platform
    client = registry.get_client(settings.tracking_uri)
    old = _champion(settings)
    source = client.get_model_version(MODEL, old)
    new = str(client.create_model_version(MODEL, source.source, run_id=source.run_id).version)
    registry.promote_champion(client, MODEL, new, expected_champion=old)
    assert registry.aliases(client, MODEL)["previous-champion"] == old

    # decided on a champion that is no longer serving: nothing moves
    stale = rollback_model(MODEL, settings=settings, as_of="2026-02-05", expected_champion=old)
    assert stale["rolled_back"] is False and _champion(settings) == new

    res = rollback_model(
        MODEL,
        settings=settings,
        as_of="2026-02-05",
        actor="monitor",
        reason="roc_auc dropped 12% after promotion",
        expected_champion=new,
    )
    assert res["rolled_back"] and (res["from"], res["to"]) == (new, old)
    assert registry.aliases(client, MODEL).get("champion") == old
    assert "previous-champion" not in registry.aliases(client, MODEL)
    assert client.get_model_version(MODEL, new).tags.get("retrain.rolled_back") == "true"
    ledger = ModelContext(MODEL, settings).ledger()
    last = ledger.records(MODEL)[-1]
    assert (last["event"], last["before"], last["after"]) == ("rollback", new, old)
    changes = ledger_history.champion_changes(ledger.records(MODEL))
    assert changes[-1]["to"] == old and changes[-1]["event"] == "rollback"
    with pytest.raises(RegistryError, match="no previous-champion"):
        rollback_model(MODEL, settings=settings, reason="again")
    assert _champion(settings) == old and ledger.verify() == []


def test_the_monitor_rolls_back_a_new_champion_that_does_worse_than_the_one_it_replaced(platform):
    """A deliberately weak model is promoted over a good one; on the matured labels after the
    promotion the monitor finds it worse than previous-champion and moves champion back."""
    from retrain_lib.pipeline.monitor_run import monitor_model
    from retrain_lib.pipeline.promotion import rollback_model
    from retrain_lib.pipeline.snapshot import snapshot_data
    from retrain_lib.pipeline.training_run import train_candidate
    from retrain_lib.store import registry

    settings, cfg_dir = platform
    client = registry.get_client(settings.tracking_uri)
    good = _champion(settings)
    _edit(cfg_dir, lambda raw: raw.update(rollback={"within_days": 14, "max_drop": 0.05, "min_labels": 300}))
    original = (cfg_dir / "models" / f"{MODEL}.yaml").read_text()
    _edit(cfg_dir, lambda raw: raw["training"].update(params={"max_iter": 1, "max_depth": 1}))
    snap = snapshot_data(MODEL, "2026-01-30", settings=settings)
    weak = train_candidate(MODEL, snap, settings=settings, run_key="weak")
    (cfg_dir / "models" / f"{MODEL}.yaml").write_text(original)
    tags = dict(client.get_model_version(MODEL, good).tags)  # same window and baseline as the good one
    bad = str(registry.register_version(client, MODEL, run_id=weak.run_id, source=weak.model_uri, tags=tags).version)
    registry.promote_champion(client, MODEL, bad, expected_champion=good)
    client.set_model_version_tag(MODEL, bad, "promoted_as_of", "2026-01-31")

    res = monitor_model(MODEL, "2026-02-12", settings=settings, actor="monitor")
    assert res.action == "rollback", res.reasons
    facts = res.rollback
    assert (facts["champion"], facts["previous"]) == (bad, good)
    assert facts["champion_live"] < facts["previous_live"] and facts["relative_worse"] > 0.05
    assert facts["labels"] >= 300
    out = rollback_model(
        MODEL,
        settings=settings,
        as_of=res.as_of,
        reason="; ".join(res.reasons),
        expected_champion=res.champion_version,
    )
    assert out["rolled_back"] and _champion(settings) == good
    # back on the good model: no rollback is asked again
    again = monitor_model(MODEL, "2026-02-12", settings=settings, actor="monitor")
    assert again.action != "rollback"
    # the second run of the day wrote its own reports: the first run's still say "rollback"
    assert Path(again.report_path).parent != Path(res.report_path).parent
    assert json.loads(Path(res.report_path).read_text())["action"] == "rollback"
    assert json.loads(Path(again.report_path).read_text())["action"] == again.action


def test_golden_and_importance_gates_judge_a_real_retrain(platform):
    """Golden sets (versioned in the data registry, scored by the candidate) and the
    importance-shift gate run inside a real retrain: a must-pass row the model cannot get right
    rejects the candidate, and every result says which golden-set revision it judged."""
    import datetime as dt
    import subprocess

    import numpy as np

    from retrain_lib.core.metrics import predict_scores
    from retrain_lib.learn.training_data import xy
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.store import registry
    from retrain_lib.store.data import load_window
    from retrain_lib.store.lineage import data_registry
    from retrain_lib.store.model_context import ModelContext, load_model

    settings, cfg_dir = platform
    ctx = ModelContext(MODEL, settings)
    champion = load_model(ctx, f"models:/{MODEL}@champion")
    window = load_window(ctx.cfg, settings, dt.date(2026, 1, 2), dt.date(2026, 1, 4), as_of=dt.date(2026, 2, 1))
    frame = window.frame[window.frame["__label_known"]].drop(columns="__label_known").head(300).reset_index(drop=True)
    X, _ = xy(ctx.cfg, frame)
    frame["must"] = False
    (cfg_dir / "golden").mkdir(exist_ok=True)
    frame.to_csv(cfg_dir / "golden" / "held.csv", index=False)
    # the trap: three applications the champion is sure will not default, labelled as defaults
    trap = frame.copy()
    sure = np.flatnonzero(predict_scores(champion, X, "classification") < 0.1)[:3]
    assert len(sure) == 3
    trap.loc[sure, "defaulted"] = 1
    trap.loc[sure, "must"] = True
    trap.to_csv(cfg_dir / "golden" / "trap.csv", index=False)

    original = (cfg_dir / "models" / f"{MODEL}.yaml").read_text()
    _edit(
        cfg_dir,
        lambda raw: raw["gates"].extend(
            [
                {"type": "golden", "dataset": "golden/held.csv", "metric": "roc_auc", "min": 0.6},
                {"type": "golden", "dataset": "golden/trap.csv", "must_pass": "must"},
                {"type": "importance_shift", "max_rank_change": 7, "top_k": 3},  # 8 features: cannot fail
            ]
        ),
    )
    try:
        res = retrain_model(MODEL, "2026-02-06", settings=settings, actor="golden")
    finally:
        (cfg_dir / "models" / f"{MODEL}.yaml").write_text(original)
    assert res.outcome == "rejected", res
    assert any("3 of 3 must-pass rows of the golden set golden/trap.csv" in r for r in res.failed), res.failed
    client = registry.get_client(settings.tracking_uri)
    results = client.download_artifacts(res.rejection.run_id, "gates/results.json")
    by_gate = {r["gate"]: r for r in json.loads(Path(results).read_text())["results"]}
    held = by_gate["golden_roc_auc_min"]
    assert held["passed"] and held["observed"] >= 0.6
    repo = data_registry(settings).repo
    for name in ("held.csv", "trap.csv"):
        dvc_file = f"models/{MODEL}/golden/{name}.dvc"
        rev = subprocess.run(
            ["git", "-C", str(repo), "log", "-1", "--format=%H", "--", dvc_file], capture_output=True, text=True
        ).stdout.strip()
        assert rev, f"{dvc_file} was not committed to the data registry"
    assert held["details"]["source"]["path"] == f"models/{MODEL}/golden/held.csv"
    shift = by_gate["importance_shift"]
    assert shift["passed"] and len(shift["details"]["rank_changes"]) == 3
    assert abs(sum(shift["details"]["candidate"].values()) - 1) < 1e-9
