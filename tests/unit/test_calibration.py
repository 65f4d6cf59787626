"""Unit tests of retrain_lib.stats.calibration and ``threshold: auto`` in compute_drift / drift_for_config.

Golden values come from SciPy (chi-square and normal quantiles, ``false_discovery_control``)
or from the definitions written out in the test, never from the code under test.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retrain_lib.core.config import check_model_file, load_model_config
from retrain_lib.stats.calibration import (
    apply_persistence,
    benjamini_hochberg,
    persistent_alarm,
    psi_null_p_value,
    psi_null_threshold,
)
from retrain_lib.stats.drift import compute_drift, drift_for_config

FAR = 0.01


def frames(
    rng: np.random.Generator, n: int, m: int | None = None, *, shift: float = 0.0, cat_shift: float = 0.0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    m = n if m is None else m

    def one(size: int, mean: float, moved: float) -> pd.DataFrame:
        p = np.array([0.5 + moved, 0.3 - moved, 0.2])
        return pd.DataFrame(
            {
                "x": rng.normal(mean, 1, size),
                "y": rng.exponential(1.0, size),
                "c": np.array(["a", "b", "c"])[rng.choice(3, size=size, p=p)],
            }
        )

    return one(n, 0.0, 0.0), one(m, shift, cat_shift)


# -----------------------------------------------------------------------------------------
# closed forms
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "m", "buckets", "far"), [(1000, 1000, 10, 0.01), (2000, 500, 5, 0.05), (10**6, 10**4, 20, 0.001)]
)
def test_psi_null_threshold_is_the_chi2_formula(n, m, buckets, far):
    expected = stats.chi2.ppf(1 - far, buckets - 1) * (1 / n + 1 / m)
    assert psi_null_threshold(n, m, buckets, far) == pytest.approx(expected, rel=1e-12)
    assert psi_null_p_value(expected, n, m, buckets) == pytest.approx(far, rel=1e-9)


def test_auto_psi_threshold_in_compute_drift_is_the_analytic_formula():
    rng = np.random.default_rng(3)
    ref, cur = frames(rng, 2000, 3000)
    report = compute_drift(ref, cur, numeric=["x"], categorical=["c"], threshold="auto", multiple_testing="none")
    x, c = report.features
    assert x.calibration["source"] == "analytic_chi2"
    assert x.threshold == pytest.approx(stats.chi2.ppf(0.99, 10 - 1) * (1 / 2000 + 1 / 3000), rel=1e-9)
    # three categories, every one common: analytic with 3 - 1 degrees of freedom
    assert c.calibration["source"] == "analytic_chi2"
    assert c.threshold == pytest.approx(stats.chi2.ppf(0.99, 3 - 1) * (1 / 2000 + 1 / 3000), rel=1e-9)
    for f in report.features:
        assert f.drifted == (f.score >= f.threshold)


def test_auto_missing_share_threshold_is_the_two_proportion_formula():
    rng = np.random.default_rng(4)
    ref, cur = frames(rng, 4000, 1000)
    ref.loc[rng.random(4000) < 0.2, "x"] = np.nan
    cur.loc[rng.random(1000) < 0.2, "x"] = np.nan
    report = compute_drift(
        ref, cur, numeric=["x"], categorical=[], per_feature={"x": ("missing_share", "auto")}, multiple_testing="none"
    )
    (f,) = report.features
    p = ref["x"].isna().mean()
    sd = math.sqrt(p * (1 - p) * (1 / 4000 + 1 / 1000))
    assert f.calibration["source"] == "analytic_normal"
    assert f.threshold == pytest.approx(stats.norm.ppf(1 - FAR / 2) * sd, rel=1e-9)


# -----------------------------------------------------------------------------------------
# false alarms and detection
# -----------------------------------------------------------------------------------------


def test_auto_false_alarm_rate_on_unchanged_data_is_near_the_target():
    rng = np.random.default_rng(20261125)
    trials, alarms, tests = 300, 0, 0
    for _ in range(trials):
        ref, cur = frames(rng, 500)
        report = compute_drift(
            ref, cur, numeric=["x", "y"], categorical=["c"], threshold="auto", multiple_testing="none"
        )
        alarms += sum(f.drifted for f in report.features)
        tests += len(report.features)
    # 900 tests at a target of 0.01: mean 9, sd about 3; 0.03 is far beyond noise
    assert alarms / tests < 0.03


def test_auto_false_alarm_rate_small_samples_resampled():
    """At 60 rows the buckets expect 6 rows: the resampled null keeps the rate near the target."""
    rng = np.random.default_rng(7)
    alarms = 0
    trials = 300
    for _ in range(trials):
        ref, cur = frames(rng, 60)
        report = compute_drift(ref, cur, numeric=["x"], categorical=[], threshold="auto", multiple_testing="none")
        assert report.features[0].calibration["source"] == "resampled"
        alarms += report.features[0].drifted
    assert alarms / trials < 0.035


@pytest.mark.parametrize(
    ("method", "column"),
    [
        ("psi", "x"),
        ("ks", "x"),
        ("js", "x"),
        ("wasserstein", "x"),
        ("psi", "c"),
        ("chi2", "c"),
        ("linf", "c"),
        ("js", "c"),
    ],
)
def test_auto_detects_a_clear_shift(method, column):
    rng = np.random.default_rng(11)
    ref, cur = frames(rng, 3000, shift=0.3, cat_shift=0.1)
    numeric, categorical = (["x"], []) if column == "x" else ([], ["c"])
    report = compute_drift(ref, cur, numeric=numeric, categorical=categorical, per_feature={column: (method, "auto")})
    (f,) = report.features
    assert f.drifted, f.explain()
    assert "auto:" in f.explain()


def test_auto_does_not_flag_unchanged_data_at_a_million_rows_where_fixed_psi_is_tiny():
    rng = np.random.default_rng(12)
    ref, cur = frames(rng, 200_000, shift=0.02)  # a real but small shift: PSI far below 0.1
    report = compute_drift(ref, cur, numeric=["x"], categorical=[], threshold="auto")
    (f,) = report.features
    assert f.score < 0.1 and f.drifted


# -----------------------------------------------------------------------------------------
# Benjamini-Hochberg
# -----------------------------------------------------------------------------------------


def test_benjamini_hochberg_equals_scipy():
    rng = np.random.default_rng(5)
    for k in (1, 2, 7, 50):
        p = np.concatenate([rng.uniform(0, 1, k), rng.uniform(0, 0.001, k // 3)])
        p[: min(2, p.size)] = p[0]  # ties
        np.testing.assert_allclose(benjamini_hochberg(p), stats.false_discovery_control(p, method="bh"), rtol=1e-12)


def test_bh_decisions_in_compute_drift_match_scipy():
    rng = np.random.default_rng(6)
    ref = pd.DataFrame({f"x{i}": rng.normal(0, 1, 1500) for i in range(8)})
    cur = pd.DataFrame({f"x{i}": rng.normal(0.12 * (i % 3), 1, 1500) for i in range(8)})
    per = {"x1": ("ks", None), "x2": ("js", None), "x3": ("wasserstein", None)}
    report = compute_drift(ref, cur, numeric=list(ref.columns), categorical=[], threshold="auto", per_feature=per)
    p = np.array([f.calibration["p_value"] for f in report.features])
    expected = stats.false_discovery_control(p, method="bh") <= FAR
    assert [f.drifted for f in report.features] == expected.tolist()
    assert 0 < expected.sum() < len(expected)  # the test discriminates
    for f in report.features:
        assert f.calibration["multiple_testing"] == "bh"
        if f.p_value is not None:  # p-value methods: p <= threshold decides
            assert f.drifted == (f.p_value <= f.threshold)
        else:
            assert f.drifted == (f.score >= f.threshold)
    assert report.to_dict()["calibration"]["multiple_testing"] == "bh"


# -----------------------------------------------------------------------------------------
# persistence
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("k", "n"), [(1, 1), (2, 3), (3, 3), (1, 3), (2, 2)])
def test_persistent_alarm_truth_table(k, n):
    for length in range(0, 5):
        for history in itertools.product([False, True], repeat=length):
            for current in (False, True):
                window = ([*history, current])[-n:]
                assert persistent_alarm(list(history), current, k, n) == (sum(window) >= k), (history, current)


def test_persistent_alarm_examples_and_bad_parameters():
    assert persistent_alarm([False, True], True, 2, 3)
    assert not persistent_alarm([True, False, False], True, 2, 3)
    assert not persistent_alarm([], True, 2, 3)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        persistent_alarm([], True, 3, 2)
    summary = apply_persistence({"dataset_drift": True, "drifted_share": 0.5}, [True, False], k=2, n=3)
    assert summary == {
        "dataset_drift": True,
        "drifted_share": 0.5,
        "dataset_drift_raw": True,
        "persistence": {"k": 2, "n": 3, "drifted_checks": 2},
    }


# -----------------------------------------------------------------------------------------
# config and drift_for_config
# -----------------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "churn_risk.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_config_accepts_auto(tmp_path, retrain_cfg_model_yaml):
    text = retrain_cfg_model_yaml.replace(
        "  threshold: 0.2\n", "  threshold: auto\n  false_alarm_rate: 0.02\n  persistence: {k: 2, n: 3}\n"
    )
    text = text.replace("{method: ks, threshold: 0.01}", "{method: ks, threshold: auto}")
    cfg = load_model_config(_write(tmp_path, text))
    assert cfg.drift.threshold == "auto"
    assert cfg.drift.features["tenure"].threshold == "auto"
    assert cfg.drift.false_alarm_rate == 0.02 and cfg.drift.multiple_testing is None
    assert (cfg.drift.persistence.k, cfg.drift.persistence.n) == (2, 3)

    rng = np.random.default_rng(8)
    cols = {
        "tenure": lambda s: rng.normal(0, 1, s),
        "monthly_spend": lambda s: rng.gamma(2, 10, s),
        "support_calls": lambda s: rng.poisson(2, s),
        "plan": lambda s: rng.choice(["a", "b"], s),
        "region": lambda s: rng.choice(["n", "s", "e"], s),
    }
    ref = pd.DataFrame({k: f(3000) for k, f in cols.items()})
    cur = pd.DataFrame({k: f(2000) for k, f in cols.items()})
    report = drift_for_config(cfg, ref, cur)
    assert all(f.calibration is not None for f in report.features)
    assert {f.calibration["false_alarm_rate"] for f in report.features} == {0.02}
    assert report.to_dict()["calibration"]["multiple_testing"] == "bh"


def test_fixed_threshold_report_keeps_its_shape(tmp_path, retrain_cfg_model_yaml):
    cfg = load_model_config(_write(tmp_path, retrain_cfg_model_yaml))
    rng = np.random.default_rng(9)
    cols = ["tenure", "monthly_spend", "support_calls"]
    ref = pd.DataFrame({c: rng.normal(0, 1, 500) for c in cols} | {"plan": ["a"] * 500, "region": ["n"] * 500})
    cur = ref.sample(frac=1.0, random_state=1).reset_index(drop=True)
    out = drift_for_config(cfg, ref, cur).to_dict()
    assert "calibration" not in out
    assert all(
        set(f) == {"name", "method", "kind", "score", "p_value", "threshold", "drifted"} for f in out["features"]
    )


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("  threshold: 0.2\n", "  threshold: automatic\n", "drift.threshold"),
        ("{method: ks, threshold: 0.01}", "{method: ks, threshold: automatic}", "drift.features.tenure.threshold"),
    ],
)
def test_config_rejects_a_wrong_threshold_word(tmp_path, retrain_cfg_model_yaml, old, new, field):
    config, problems = check_model_file(_write(tmp_path, retrain_cfg_model_yaml.replace(old, new)))
    assert config is None
    assert [p.field for p in problems] == [field]
    assert problems[0].reason == (
        "threshold must be a positive number or 'auto'. Got 'automatic' instead; did you mean 'auto'?"
    )


def test_config_rejects_multiple_testing_without_auto(tmp_path, retrain_cfg_model_yaml):
    text = retrain_cfg_model_yaml.replace("  threshold: 0.2\n", "  threshold: 0.2\n  multiple_testing: bh\n")
    config, problems = check_model_file(_write(tmp_path, text))
    assert config is None and len(problems) == 1
    assert "multiple_testing only applies to calibrated thresholds" in problems[0].reason


def test_compute_drift_rejects_a_wrong_threshold_word():
    rng = np.random.default_rng(10)
    ref, cur = frames(rng, 100)
    with pytest.raises(ValueError, match="positive number, 'auto' or None. Got 'automatic'"):
        compute_drift(ref, cur, numeric=["x"], categorical=[], threshold="automatic")
    with pytest.raises(ValueError, match="'multiple_testing' parameter of compute_drift"):
        compute_drift(ref, cur, numeric=["x"], categorical=[], threshold="auto", multiple_testing="holm")
