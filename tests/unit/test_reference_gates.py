"""The gates that judge a candidate against a fixed reference: ``importance_shift`` (rank moves
of the champion's most important features) and ``golden`` (a fixed evaluation set versioned in
the DVC data registry, with must-pass rows). Expected values are computed here by hand,
with scikit-learn or hashlib, never by the code under test."""

from __future__ import annotations

import hashlib
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from retrain_lib.core.config import load_model_config
from retrain_lib.core.config_gates import Gate
from retrain_lib.core.settings import load_settings
from retrain_lib.pipeline.reference_inputs import golden_scores
from retrain_lib.quality.gate_types import GateInputs, GoldenScores
from retrain_lib.quality.gates import all_passed, run_gates
from retrain_lib.stats.gate_measures import importance_ranks, rank_changes

CHAMP = {"income": 0.5, "age": 0.3, "region": 0.2, "noise_a": 0.0, "noise_b": 0.0}


def test_ranks_share_ties_so_zero_importances_never_move():
    assert importance_ranks(CHAMP) == {"income": 1, "age": 2, "region": 3, "noise_a": 4, "noise_b": 4}
    # the candidate swaps the two zero-importance features' order and income/age: only those move
    cand = {"income": 0.3, "age": 0.5, "region": 0.2, "noise_b": 0.0, "noise_a": 0.0}
    assert rank_changes(CHAMP, cand, top_k=10) == {"income": 1, "age": 1, "region": 0}
    # a feature the candidate lacks ranks last (5 features known)
    assert rank_changes(CHAMP, {"age": 0.6, "region": 0.4}, top_k=1) == {"income": 4}


@pytest.mark.parametrize(("max_rank_change", "passed"), [(2, True), (1, False)])
def test_importance_shift_gate(max_rank_change, passed):
    # region jumps from 3rd to 1st: 2 places
    cand = {"income": 0.25, "age": 0.2, "region": 0.55, "noise_a": 0.0, "noise_b": 0.0}
    gate = Gate(type="importance_shift", max_rank_change=max_rank_change, top_k=3)
    data = GateInputs(
        task="classification", champion_metrics={}, candidate_importances=cand, champion_importances=CHAMP
    )
    [r] = run_gates([gate], data)
    assert r.passed is passed and r.observed == 2.0 and r.slice == "region"
    assert r.details["rank_changes"] == {"income": 1, "age": 1, "region": 2}
    assert "region moved 2 place(s)" in r.reason


def test_importance_shift_skips_the_first_model_and_fails_closed_without_importances():
    gate = Gate(type="importance_shift", max_rank_change=2)
    [first] = run_gates([gate], GateInputs(task="classification"))
    assert first.passed and first.skipped
    [blind] = run_gates([gate], GateInputs(task="classification", champion_metrics={}))
    assert not blind.passed and "permutation importances" in blind.reason


def _golden(y, scores, must=None, **kw) -> GateInputs:
    source = {"path": "models/m/golden/g.csv", "rev": "abc123def456", "md5": "0" * 32}
    return GateInputs(
        task=kw.pop("task", "classification"),
        golden={"g.csv": GoldenScores("g.csv", np.asarray(y), np.asarray(scores), must, source)},
    )


def test_golden_metric_and_must_pass_rows():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 200)
    scores = np.clip(0.3 * y + 0.7 * rng.random(200), 0, 1)
    must = np.zeros(200, dtype=bool)
    right = np.flatnonzero((scores >= 0.5).astype(int) == y)
    wrong = np.flatnonzero((scores >= 0.5).astype(int) != y)
    assert len(wrong) >= 2
    must[right[:5]] = True
    auc = roc_auc_score(y, scores)
    gate = Gate(type="golden", dataset="g.csv", metric="roc_auc", min=auc - 0.01, must_pass="must")
    results = run_gates([gate], _golden(y, scores, must))
    assert [r.gate for r in results] == ["golden_roc_auc_min", "golden_roc_auc_must_pass"]
    assert results[0].observed == pytest.approx(auc) and all_passed(results)
    assert "DVC rev abc123def4" in results[0].reason
    must[wrong[:2]] = True  # two must-pass rows now predicted wrong
    results = run_gates([gate], _golden(y, scores, must))
    bad = results[1]
    assert not bad.passed and bad.observed == 5.0 and bad.threshold == 7.0
    assert "2 of 7 must-pass rows" in bad.reason and bad.details["wrong_rows"] == sorted(wrong[:2].tolist())
    # the metric bound decides on its own
    strict = Gate(type="golden", dataset="g.csv", metric="roc_auc", min=auc + 0.01)
    assert not run_gates([strict], _golden(y, scores))[0].passed


def test_golden_regression_tolerance_and_fail_closed():
    y = np.array([10.0, 20.0, 30.0])
    pred = np.array([10.5, 21.5, 30.0])
    must = np.array([True, True, False])
    ok = Gate(type="golden", dataset="g.csv", must_pass="must", tolerance=1.5)
    assert run_gates([ok], _golden(y, pred, must, task="regression"))[0].passed
    tight = Gate(type="golden", dataset="g.csv", must_pass="must", tolerance=1.0)
    [r] = run_gates([tight], _golden(y, pred, must, task="regression"))
    assert not r.passed and r.details["wrong_rows"] == [1]
    no_tol = Gate(type="golden", dataset="g.csv", must_pass="must")
    assert "needs 'tolerance'" in run_gates([no_tol], _golden(y, pred, must, task="regression"))[0].reason
    # a set that could not be scored, or none marked must-pass: fails, never passes unchecked
    broken = GateInputs(task="classification", golden={"g.csv": GoldenScores("g.csv", error="no such file")})
    assert "no such file" in run_gates([ok], broken)[0].reason
    [none] = run_gates([ok], _golden(y, pred, np.zeros(3, dtype=bool), task="regression"))
    assert not none.passed and "nothing to check" in none.reason


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"dataset": "g.csv"}, "needs min or max"),
        ({"dataset": "g.csv", "min": 0.8}, "need the 'metric'"),
        ({"dataset": "g.csv", "metric": "roc_auc"}, "needs min or max"),
        ({"dataset": "g.json", "must_pass": "m"}, ".parquet or .csv"),
        ({"dataset": "g.csv", "metric": "roc_auc", "min": 0.8, "tolerance": 1}, "tolerance only applies"),
        ({"metric": "roc_auc", "min": 0.8}, "needs 'dataset'"),
    ],
)
def test_golden_config_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        Gate(type="golden", **fields)


def test_importance_shift_config_errors():
    with pytest.raises(ValueError, match="needs 'max_rank_change'"):
        Gate(type="importance_shift")
    with pytest.raises(ValueError, match="'top_k' does not apply to a metric gate"):
        Gate(metric="roc_auc", min=0.5, top_k=3)


@pytest.fixture
def churn(retrain_cfg_config_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    for var in ("RETRAIN_DATA_ROOT", "RETRAIN_DVC_REMOTE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = load_settings(retrain_cfg_config_dir)
    cfg = load_model_config(settings.models_dir / "credit_default.yaml", settings.platform)
    return settings, cfg


def _churn_frame(cfg, n, seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({c: rng.normal(50, 10, n) for c in cfg.features.numeric})
    for c in cfg.features.categorical:
        frame[c] = rng.choice(["basic", "plus", "pro"], n)
    first = cfg.features.numeric[0]
    frame[cfg.features.target] = (frame[first] + rng.normal(0, 3, n) > 50).astype(int)
    return frame


def test_golden_set_is_versioned_in_the_data_registry_and_scored(churn):
    from retrain_lib.learn.training_data import xy
    from retrain_lib.store.lineage import data_registry

    settings, cfg = churn
    train = _churn_frame(cfg, 400, 1)
    X, y = xy(cfg, train)
    numeric = [c for c in cfg.features.numeric]
    model = LogisticRegression(max_iter=500).fit(X[numeric], y)

    class Numeric:  # scores the numeric features only (the categorical ones are noise here)
        def predict_proba(self, frame):
            return model.predict_proba(frame[numeric])

    golden = _churn_frame(cfg, 60, 2)
    golden["must"] = [True] * 3 + [False] * 57
    path = settings.config_dir / "golden" / "churn.csv"
    path.parent.mkdir()
    golden.to_csv(path, index=False)
    cfg = cfg.model_copy(update={"gates": [Gate(type="golden", dataset="golden/churn.csv", must_pass="must")]})

    scored = golden_scores(cfg, settings, Numeric())["golden/churn.csv"]
    assert scored.error is None
    assert scored.source["md5"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert scored.source["path"] == "models/credit_default/golden/churn.csv"
    repo = data_registry(settings).repo
    assert (
        subprocess.run(
            ["git", "-C", str(repo), "cat-file", "-e", f"{scored.source['rev']}:{scored.source['path']}.dvc"]
        ).returncode
        == 0
    )
    expected = model.predict_proba(golden[numeric])[:, 1]
    assert np.allclose(scored.scores, expected) and scored.must_pass.tolist() == golden["must"].tolist()
    # unchanged file: same revision; an edited file: a new one
    assert golden_scores(cfg, settings, Numeric())["golden/churn.csv"].source["rev"] == scored.source["rev"]
    golden.iloc[:10].to_csv(path, index=False)
    assert golden_scores(cfg, settings, Numeric())["golden/churn.csv"].source["rev"] != scored.source["rev"]
    # a set missing a column is an error the gate reports, not an exception
    golden.drop(columns=["must"]).to_csv(path, index=False)
    broken = golden_scores(cfg, settings, Numeric())["golden/churn.csv"]
    assert broken.error is not None and "lacks the column(s) must" in broken.error
