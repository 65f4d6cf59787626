"""Unit tests of retrain_lib.stats.drift.

Golden values come from independent implementations: SciPy (KS, Jensen-Shannon,
Wasserstein, chi-squared), Evidently 0.7's legacy PSI stattest and small formulas written
out in this file. None of them is computed by the code under test.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from retrain_lib.core.config import load_model_config
from retrain_lib.stats import drift
from retrain_lib.stats.drift import compute_drift, compute_feature_drift, drift_for_config
from retrain_lib.stats.drift_methods import METHODS, get_method
from retrain_lib.stats.drift_stats import bucket_shares, psi_from_shares, quantile_edges

MODELS = Path(__file__).resolve().parents[2] / "configs" / "models"

# -----------------------------------------------------------------------------------------
# Independent reference implementations (no retrain_lib code involved)
# -----------------------------------------------------------------------------------------


def ref_fill_zeros(p: np.ndarray) -> np.ndarray:
    """Evidently's floor for empty buckets, written out independently."""
    p = np.array(p, dtype=float)
    m = p[p > 0].min()
    p[p == 0] = m / 1e6 if m <= 1e-4 else 1e-4
    return p


def ref_psi(p, q) -> float:
    p, q = ref_fill_zeros(p), ref_fill_zeros(q)
    return float(sum((a - b) * math.log(a / b) for a, b in zip(p, q)))


def ref_quantile_bucket_shares(ref: np.ndarray, cur: np.ndarray, bins: int):
    """Shares in reference-quantile buckets [e_i, e_i+1), outer buckets open, via pandas.cut."""
    ref = ref[~np.isnan(ref)]
    cur = cur[~np.isnan(cur)]
    inner = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    edges = np.concatenate(([-np.inf], inner, [np.inf]))
    k = len(edges) - 1

    def shares(x):
        codes = pd.cut(x, edges, right=False, labels=False)
        return np.array([(codes == i).sum() for i in range(k)], dtype=float) / len(x)

    return shares(ref), shares(cur)


def ref_js(p, q) -> float:
    p = np.asarray(p, float) / np.sum(p)
    q = np.asarray(q, float) / np.sum(q)
    m = (p + q) / 2

    def kl(a, b):
        mask = a > 0
        return float(np.sum(a[mask] * np.log(a[mask] / b[mask])))

    return math.sqrt(max(0.0, (kl(p, m) + kl(q, m)) / 2))


def ref_ks_statistic(a, b) -> float:
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def ref_wasserstein(a, b) -> float:
    """W1 = integral of |F_a - F_b| over the real line."""
    a, b = np.sort(a), np.sort(b)
    grid = np.sort(np.concatenate([a, b]))
    fa = np.searchsorted(a, grid[:-1], side="right") / a.size
    fb = np.searchsorted(b, grid[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * np.diff(grid)))


def evidently_psi(ref, cur, categorical: bool, n_bins: int = 30) -> float:
    with warnings.catch_warnings():  # Evidently's import emits third-party deprecation warnings
        warnings.simplefilter("ignore")
        from evidently.legacy.calculations.stattests.psi import _psi
        from evidently.legacy.core import ColumnType

    ctype = ColumnType.Categorical if categorical else ColumnType.Numerical
    value, _ = _psi(pd.Series(ref), pd.Series(cur), ctype, 0.1, n_bins)
    return float(value)


def _dropna(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[~np.isnan(x)]


# -----------------------------------------------------------------------------------------
# Random case generators
# -----------------------------------------------------------------------------------------


def _numeric_case(rng: np.random.Generator, i: int):
    kind = i % 6
    if kind == 0:  # tiny samples
        n1, n2 = rng.integers(1, 6, size=2)
    elif kind == 1:
        n1, n2 = rng.integers(5, 40, size=2)
    else:
        n1, n2 = rng.integers(30, 1500, size=2)
    if kind in (0, 1, 2):
        ref = rng.normal(0, 1, n1)
        cur = rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 2), n2)
    elif kind == 3:  # integer valued: many ties
        ref = rng.poisson(3, n1).astype(float)
        cur = rng.poisson(rng.uniform(2, 5), n2).astype(float)
    elif kind == 4:  # constant column(s)
        ref = np.full(n1, 2.0)
        cur = np.full(n2, 2.0) if rng.random() < 0.5 else rng.integers(1, 4, n2).astype(float)
    else:  # rounded values, heavy ties
        ref = rng.exponential(1, n1).round(1)
        cur = rng.exponential(1.3, n2).round(1)
    # NaNs mixed in (never all of them)
    for arr in (ref, cur):
        if arr.size > 1 and rng.random() < 0.6:
            mask = rng.random(arr.size) < 0.2
            mask[0] = False
            arr[mask] = np.nan
    return ref, cur


# -----------------------------------------------------------------------------------------
# KS
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_ks_matches_scipy_on_nan_dropped_data(seed):
    rng = np.random.default_rng(1000 + seed)
    for i in range(40):
        ref, cur = _numeric_case(rng, i)
        threshold = float(rng.choice([0.001, 0.01, 0.05, 0.2, 0.9]))
        r = compute_feature_drift("x", ref, cur, method="ks", kind="numeric", threshold=threshold)
        a, b = _dropna(ref), _dropna(cur)
        expected = stats.ks_2samp(a, b)
        assert r.p_value == pytest.approx(float(expected.pvalue), abs=1e-12), (i, a, b)
        assert r.score == pytest.approx(float(expected.statistic), abs=1e-12)
        assert r.score == pytest.approx(ref_ks_statistic(a, b), abs=1e-12)
        assert r.drifted == (r.p_value <= threshold)
        assert r.reference_rows == a.size and r.current_rows == b.size


def test_ks_tiny_and_constant_samples():
    r = compute_feature_drift("x", [1.0], [2.0], method="ks", kind="numeric")
    e = stats.ks_2samp([1.0], [2.0])
    assert (r.score, r.p_value) == (pytest.approx(e.statistic, abs=1e-12), pytest.approx(e.pvalue, abs=1e-12))
    r = compute_feature_drift("x", [3.0] * 5, [3.0, np.nan, 3.0], method="ks", kind="numeric")
    assert r.score == 0.0 and r.p_value == pytest.approx(1.0, abs=1e-12) and not r.drifted


def test_ks_all_missing_is_no_drift():
    r = compute_feature_drift("x", [np.nan, np.nan], [1.0, 2.0], method="ks", kind="numeric")
    assert r.p_value == 1.0 and not r.drifted
    assert r.reference_rows == 0


# -----------------------------------------------------------------------------------------
# PSI
# -----------------------------------------------------------------------------------------


def test_bucket_shares_places_min_and_max_like_numpy_histogram():
    """np.histogram bins are [e_i, e_i+1) with the last one closed: the minimum goes into
    the first bin, the maximum into the last and values on an inner edge go right."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        x = rng.integers(0, 30, rng.integers(25, 300)).astype(float)  # values land on edges
        edges = np.histogram_bin_edges(x, bins="sturges")
        counts, _ = np.histogram(x, edges)
        np.testing.assert_allclose(bucket_shares(x, edges), counts / x.size, rtol=0, atol=0)
    edges = np.array([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(bucket_shares([0.0, 1.0, 2.0, 2.0], edges), [0.25, 0.75])


def _psi_case(rng, i):
    n1, n2 = (int(v) for v in rng.integers(30, 2500, size=2))
    kind = i % 5
    if kind == 0:
        ref, cur = rng.normal(0, 1, n1), rng.normal(rng.uniform(-0.5, 0.5), rng.uniform(0.8, 1.3), n2)
    elif kind == 1:  # heavy shift: many empty bins on both sides
        ref, cur = rng.normal(0, 1, n1), rng.normal(rng.uniform(3, 8), 0.5, n2)
    elif kind == 2:  # integer valued with > 20 distinct values, values on the edges
        ref = rng.integers(0, 40, n1).astype(float)
        cur = rng.integers(10, 70, n2).astype(float)
    elif kind == 3:  # skewed and rounded
        ref, cur = rng.lognormal(10, 0.5, n1).round(0), rng.lognormal(10.3, 0.7, n2).round(0)
    else:  # current squeezed into a corner
        ref, cur = rng.uniform(0, 1, n1), rng.uniform(0.97, 1.0, n2)
    return ref, cur


@pytest.mark.parametrize("seed", range(4))
def test_psi_from_shares_matches_evidently_with_sturges_edges(seed):
    rng = np.random.default_rng(2000 + seed)
    checked = 0
    for i in range(50):
        ref, cur = _psi_case(rng, i)
        if pd.Series(ref).nunique() <= 20:  # Evidently would fall back to categories
            continue
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        ours = psi_from_shares(bucket_shares(ref, edges), bucket_shares(cur, edges))
        expected = evidently_psi(ref, cur, categorical=False)
        assert ours == pytest.approx(expected, rel=1e-9, abs=1e-9), i
        checked += 1
    assert checked >= 45


def test_psi_evidently_parity_with_empty_bins_is_large():
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(0, 1, 1000), rng.normal(10, 1, 800)
    edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
    r, c = bucket_shares(ref, edges), bucket_shares(cur, edges)
    assert (r == 0).any() and (c == 0).any()
    ours = psi_from_shares(r, c)
    assert math.isfinite(ours) and ours > 10
    assert ours == pytest.approx(evidently_psi(ref, cur, categorical=False), rel=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_categorical_psi_matches_evidently(seed):
    rng = np.random.default_rng(3000 + seed)
    for i in range(40):
        n_cat = int(rng.integers(1, 12))
        cats = np.array([f"c{j}" for j in range(n_cat + 3)])
        p = rng.dirichlet(np.ones(n_cat))
        q = rng.dirichlet(np.ones(n_cat) * rng.uniform(0.3, 3))
        ref = rng.choice(cats[:n_cat], int(rng.integers(1, 800)), p=p).astype(object)
        cur = rng.choice(cats[:n_cat], int(rng.integers(1, 800)), p=q).astype(object)
        if i % 3 == 0:  # a category that only the current sample has
            cur[: max(1, cur.size // 10)] = cats[n_cat]
        if i % 4 == 0:  # one that only the reference has
            ref[: max(1, ref.size // 7)] = cats[n_cat + 1]
        if i % 5 == 0 and ref.size > 2:  # missing values are ignored
            ref[1] = None
        r = compute_feature_drift("c", ref, cur, method="psi", kind="categorical")
        ref_ok = pd.Series(ref).dropna()
        expected = evidently_psi(ref_ok, pd.Series(cur).dropna(), categorical=True)
        assert r.score == pytest.approx(expected, rel=1e-9, abs=1e-9), i
        # and against the hand-written formula
        keys = sorted(set(ref_ok) | set(cur))
        rp = np.array([(ref_ok == k).sum() for k in keys]) / len(ref_ok)
        cp = np.array([(pd.Series(cur) == k).sum() for k in keys]) / len(cur)
        assert r.score == pytest.approx(ref_psi(rp, cp), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("bins", [2, 5, 10, 20])
def test_numeric_psi_uses_reference_quantile_buckets(bins):
    rng = np.random.default_rng(bins)
    for i in range(25):
        ref, cur = _numeric_case(rng, i + 2)  # skip the tiny-sample branch
        if _dropna(ref).size == 0 or _dropna(cur).size == 0:
            continue
        rs, cs = ref_quantile_bucket_shares(ref, cur, bins)
        r = compute_feature_drift("x", ref, cur, method="psi", kind="numeric", bins=bins)
        assert r.score == pytest.approx(ref_psi(rs, cs), rel=1e-9, abs=1e-12), i


def test_quantile_edges_hold_equal_reference_shares():
    rng = np.random.default_rng(11)
    ref = rng.normal(size=10_000)
    edges = quantile_edges(ref, 10)
    assert edges[0] == -np.inf and edges[-1] == np.inf and len(edges) == 11
    np.testing.assert_allclose(bucket_shares(ref, edges), 0.1, atol=1e-3)


def test_quantile_edges_ignore_infinite_values():
    """Regression: +-inf in the reference produced NaN/unsorted edges."""
    rng = np.random.default_rng(12)
    ref = rng.normal(size=1000)
    ref[:200] = np.inf
    ref[200:300] = -np.inf
    edges = quantile_edges(ref, 10)
    assert not np.isnan(edges).any()
    assert np.all(np.diff(edges) > 0)
    assert np.isfinite(edges[1:-1]).all()
    assert compute_feature_drift("x", ref, ref.copy(), method="psi", kind="numeric").score == 0.0


def test_identical_distributions_not_flagged_by_psi_in_20_of_20_seeds():
    for seed in range(20):
        rng = np.random.default_rng(seed)
        ref, cur = rng.normal(0, 1, 5000), rng.normal(0, 1, 5000)
        r = compute_feature_drift("x", ref, cur, method="psi", kind="numeric", threshold=0.2)
        assert not r.drifted, (seed, r.score)
        assert r.score < 0.05


def test_one_sigma_shift_is_flagged_by_psi():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        ref, cur = rng.normal(0, 1, 5000), rng.normal(1, 1, 5000)
        r = compute_feature_drift("x", ref, cur, method="psi", kind="numeric", threshold=0.2)
        assert r.drifted and r.score > 0.5


# -----------------------------------------------------------------------------------------
# Jensen-Shannon, Wasserstein, chi-squared
# -----------------------------------------------------------------------------------------


def test_js_matches_scipy_and_formula():
    rng = np.random.default_rng(21)
    for i in range(40):
        ref, cur = _numeric_case(rng, i + 2)
        if _dropna(ref).size == 0 or _dropna(cur).size == 0:
            continue
        rs, cs = ref_quantile_bucket_shares(ref, cur, 10)
        r = compute_feature_drift("x", ref, cur, method="js", kind="numeric")
        assert r.score == pytest.approx(float(distance.jensenshannon(rs, cs)), abs=1e-12)
        assert r.score == pytest.approx(ref_js(rs, cs), abs=1e-9)
    ref = np.array(["a", "b", "b", "c"] * 50, dtype=object)
    cur = np.array(["a", "a", "b", "d"] * 40, dtype=object)
    keys = ["a", "b", "c", "d"]
    rs = np.array([np.mean(ref == k) for k in keys])
    cs = np.array([np.mean(cur == k) for k in keys])
    r = compute_feature_drift("c", ref, cur, method="js", kind="categorical")
    assert r.score == pytest.approx(float(distance.jensenshannon(rs, cs)), abs=1e-12)
    assert r.score == pytest.approx(ref_js(rs, cs), abs=1e-9)


def test_wasserstein_is_normalised_by_reference_std():
    rng = np.random.default_rng(31)
    for i in range(40):
        ref, cur = _numeric_case(rng, i)
        a, b = _dropna(ref), _dropna(cur)
        r = compute_feature_drift("x", ref, cur, method="wasserstein", kind="numeric")
        sd = np.std(a)
        dist = ref_wasserstein(a, b)
        assert dist == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-9)
        if sd > 0:
            assert r.score == pytest.approx(stats.wasserstein_distance(a, b) / sd, rel=1e-12, abs=1e-12)
            assert r.score == pytest.approx(dist / sd, rel=1e-9, abs=1e-9)
        else:
            assert r.score == (0.0 if dist == 0 else math.inf)
        assert r.drifted == (r.score >= 0.1)


def test_chi2_matches_scipy_chisquare():
    rng = np.random.default_rng(41)
    for _ in range(30):
        k = int(rng.integers(2, 8))
        cats = [f"k{j}" for j in range(k)]
        ref = rng.choice(cats, 2000, p=rng.dirichlet(np.ones(k) * 5))
        cur = rng.choice(cats, int(rng.integers(20, 1000)), p=rng.dirichlet(np.ones(k) * 5))
        keys = sorted(set(ref) | set(cur))
        rshare = np.array([np.mean(ref == c) for c in keys])
        obs = np.array([np.sum(cur == c) for c in keys], dtype=float)
        if (rshare == 0).any():
            continue
        exp = rshare * cur.size
        expected = stats.chisquare(obs, exp)
        r = compute_feature_drift("c", ref, cur, method="chi2", kind="categorical")
        assert r.score == pytest.approx(float(expected.statistic), rel=1e-9)
        assert r.p_value == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-12)
        # hand-written statistic and p-value
        stat = float(np.sum((obs - exp) ** 2 / exp))
        assert r.score == pytest.approx(stat, rel=1e-9)
        assert r.p_value == pytest.approx(float(stats.chi2.sf(stat, len(keys) - 1)), rel=1e-9, abs=1e-12)
        assert r.drifted == (r.p_value <= 0.05)


def test_chi2_new_category_in_current_is_drift():
    ref = ["a"] * 500 + ["b"] * 500
    cur = ["a"] * 90 + ["b"] * 90 + ["z"] * 20
    assert compute_feature_drift("c", ref, cur, method="chi2", kind="categorical").drifted


# -----------------------------------------------------------------------------------------
# Registry semantics
# -----------------------------------------------------------------------------------------


def test_registry_directions():
    assert set(METHODS) >= {"psi", "ks", "js", "wasserstein", "chi2"}
    assert not get_method("psi").uses_p_value and get_method("ks").uses_p_value
    assert get_method("chi2").uses_p_value and not get_method("wasserstein").uses_p_value


def test_psi_drifts_when_score_at_or_above_threshold():
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(0, 1, 2000), rng.normal(0.3, 1, 2000)
    s = compute_feature_drift("x", ref, cur, method="psi", kind="numeric").score
    assert compute_feature_drift("x", ref, cur, method="psi", kind="numeric", threshold=s).drifted
    above = float(np.nextafter(s, np.inf))
    assert not compute_feature_drift("x", ref, cur, method="psi", kind="numeric", threshold=above).drifted
    assert compute_feature_drift("x", ref, cur, method="psi", kind="numeric", threshold=s / 2).drifted


def test_ks_drifts_when_p_value_at_or_below_threshold():
    rng = np.random.default_rng(6)
    ref, cur = rng.normal(0, 1, 300), rng.normal(0.15, 1, 300)
    p = compute_feature_drift("x", ref, cur, method="ks", kind="numeric").p_value
    assert 0 < p < 1
    assert compute_feature_drift("x", ref, cur, method="ks", kind="numeric", threshold=p).drifted
    below = float(np.nextafter(p, 0))
    assert not compute_feature_drift("x", ref, cur, method="ks", kind="numeric", threshold=below).drifted


def test_default_thresholds_apply_when_none_given():
    rng = np.random.default_rng(8)
    ref, cur = rng.normal(0, 1, 500), rng.normal(0, 1, 500)
    for name, kind in (("psi", "numeric"), ("ks", "numeric"), ("js", "numeric"), ("wasserstein", "numeric")):
        assert compute_feature_drift("x", ref, cur, method=name, kind=kind).threshold == METHODS[name].default_threshold


def test_unsupported_kind_raises_clear_error():
    with pytest.raises(ValueError, match=r"'ks' does not support categorical feature 'region'.*numeric"):
        compute_feature_drift("region", ["a", "b"], ["a"], method="ks", kind="categorical")
    with pytest.raises(ValueError, match="does not support numeric"):
        compute_feature_drift("x", [1.0, 2.0], [1.0], method="chi2", kind="numeric")
    with pytest.raises(ValueError, match="does not support categorical"):
        compute_feature_drift("x", ["a"], ["a"], method="wasserstein", kind="categorical")


def test_unknown_method_raises():
    with pytest.raises(ValueError, match=r"unknown drift method 'kl'.*psi"):
        compute_feature_drift("x", [1.0], [1.0], method="kl", kind="numeric")
    with pytest.raises(ValueError, match="unknown drift method"):
        get_method("")


def test_explain_and_top():
    f1 = drift.FeatureDrift("a", "psi", "numeric", 0.5, None, 0.2, True, 10, 10)
    f2 = drift.FeatureDrift("b", "ks", "numeric", 0.3, 1e-6, 0.001, True, 10, 10)
    f3 = drift.FeatureDrift("c", "psi", "numeric", 0.1, None, 0.2, False, 10, 10)
    assert f1.explain() == "a: psi 0.500 >= 0.2"
    assert f3.explain() == "c: psi 0.100 < 0.2"
    assert f2.explain() == "b: ks p=1e-06 <= 0.001"
    rep = drift.DriftReport([f1, f2, f3], 2 / 3, 0.5, True)
    assert [f.name for f in rep.top(3)] == ["a", "b", "c"]  # 2.5x vs 2x vs 0.5x
    assert [f.name for f in rep.drifted] == ["a", "b"]
    d = rep.to_dict()
    assert d["dataset_drift"] is True and len(d["features"]) == 3


# -----------------------------------------------------------------------------------------
# compute_drift / drift_for_config
# -----------------------------------------------------------------------------------------


def _frames(seed=0, n=3000):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame(
        {
            "a": rng.normal(0, 1, n),
            "b": rng.normal(0, 1, n),
            "c": rng.normal(0, 1, n),
            "d": rng.normal(0, 1, n),
            "g": rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2]),
        }
    )
    cur = pd.DataFrame(
        {
            "a": rng.normal(1.0, 1, n),  # drifted
            "b": rng.normal(0.6, 1, n),  # drifted
            "c": rng.normal(0, 1, n),
            "d": rng.normal(0, 1, n),
            "g": rng.choice(["x", "y", "z"], n, p=[0.2, 0.3, 0.5]),  # drifted
        }
    )
    return ref, cur


def test_compute_drift_share_and_dataset_decision():
    ref, cur = _frames()
    rep = compute_drift(ref, cur, numeric=["a", "b", "c", "d"], categorical=[], drift_share=0.5)
    assert [f.drifted for f in rep.features] == [True, True, False, False]
    assert rep.drifted_share == 0.5 and rep.dataset_drift  # at least the share
    rep = compute_drift(ref, cur, numeric=["a", "b", "c", "d"], categorical=[], drift_share=0.51)
    assert rep.drifted_share == 0.5 and not rep.dataset_drift
    rep = compute_drift(ref, cur, numeric=["a", "b", "c", "d"], categorical=["g"], drift_share=0.6)
    assert rep.drifted_share == pytest.approx(0.6) and rep.dataset_drift
    assert rep.reference_rows == len(ref) and rep.current_rows == len(cur)
    empty = compute_drift(ref, cur, numeric=[], categorical=[])
    assert empty.drifted_share == 0.0 and not empty.dataset_drift


def test_compute_drift_default_threshold_applies_to_default_method():
    ref, cur = _frames()
    rep = compute_drift(ref, cur, numeric=["a", "b"], categorical=["g"], method="psi", threshold=50.0)
    by = {f.name: f for f in rep.features}
    assert by["a"].threshold == 50.0 and not by["a"].drifted
    assert by["g"].threshold == 50.0  # categorical default is psi too: same default method
    rep = compute_drift(
        ref, cur, numeric=["a"], categorical=["g"], method="ks", threshold=1e-300, categorical_method="chi2"
    )
    by = {f.name: f for f in rep.features}
    assert by["a"].method == "ks" and by["a"].threshold == 1e-300
    # the threshold belongs to ks; the categorical method keeps its own default
    assert by["g"].method == "chi2" and by["g"].threshold == METHODS["chi2"].default_threshold
    rep = compute_drift(ref, cur, numeric=["a"], categorical=["g"], method="ks", threshold=0.01)
    assert {f.name: f.threshold for f in rep.features}["g"] == METHODS["psi"].default_threshold
    rep = compute_drift(ref, cur, numeric=["a"], categorical=["g"])
    assert [f.threshold for f in rep.features] == [0.2, 0.2]


def test_compute_drift_per_feature_overrides():
    ref, cur = _frames()
    per = {"a": ("ks", 1e-300), "b": (None, 5.0), "c": ("wasserstein", None), "g": ("chi2", 0.01)}
    rep = compute_drift(ref, cur, numeric=["a", "b", "c", "d"], categorical=["g"], threshold=0.25, per_feature=per)
    by = {f.name: f for f in rep.features}
    assert (by["a"].method, by["a"].threshold) == ("ks", 1e-300)
    assert (by["b"].method, by["b"].threshold, by["b"].drifted) == ("psi", 5.0, False)
    assert (by["c"].method, by["c"].threshold) == ("wasserstein", METHODS["wasserstein"].default_threshold)
    assert (by["d"].method, by["d"].threshold) == ("psi", 0.25)
    assert (by["g"].method, by["g"].threshold, by["g"].drifted) == ("chi2", 0.01, True)
    # the override's p-value test decides, not the PSI threshold
    assert by["a"].p_value is not None and by["a"].drifted == (by["a"].p_value <= 1e-300)


def test_compute_drift_missing_column_raises():
    ref, cur = _frames()
    with pytest.raises(ValueError, match="'zz' is missing from the reference"):
        compute_drift(ref, cur, numeric=["zz"], categorical=[])
    with pytest.raises(ValueError, match="'a' is missing from the current"):
        compute_drift(ref, cur.drop(columns=["a"]), numeric=["a"], categorical=[])


def test_drift_for_config_honours_exclude_and_overrides():
    demand = load_model_config(MODELS / "daily_demand.yaml")
    assert "day_of_week" in demand.drift.exclude
    rng = np.random.default_rng(0)
    n = 1000

    def frame(dow):
        return pd.DataFrame(
            {
                "temperature": rng.normal(15, 4, n),
                "price": rng.normal(10, 1.5, n),
                "discount": rng.choice([0, 0.1], n),
                "day_of_week": np.full(n, float(dow)),
                "store_size": rng.lognormal(6, 0.3, n),
                "store_type": rng.choice(["small", "large"], n),
                "promo": rng.choice(["yes", "no"], n),
            }
        )

    rep = drift_for_config(demand, frame(0), frame(6))
    names = [f.name for f in rep.features]
    assert "day_of_week" not in names
    assert set(names) == set(demand.features.all) - {"day_of_week"}
    assert rep.drift_share_threshold == demand.drift.drift_share
    assert not rep.dataset_drift

    credit = load_model_config(MODELS / "credit_default.yaml")
    m = 800
    cf = pd.DataFrame({c: rng.normal(0, 1, m) for c in credit.features.numeric})
    cf["region"] = rng.choice(["n", "s"], m)
    cf["employment_type"] = rng.choice(["a", "b"], m)
    rep = drift_for_config(credit, cf, cf.sample(frac=1.0, random_state=1).reset_index(drop=True))
    by = {f.name: f for f in rep.features}
    # threshold: auto: a KS p-value limit at false_alarm_rate / features (Bonferroni), a PSI
    # limit from the statistic's null distribution at these sample sizes (positive, finite)
    assert by["income"].method == "ks"
    assert by["income"].threshold == pytest.approx(credit.drift.false_alarm_rate / len(credit.features.all))
    assert by["age"].method == "psi" and 0 < by["age"].threshold < 1
    assert by["region"].kind == "categorical" and by["region"].method == credit.drift.categorical_method
    assert not any(f.drifted for f in rep.features)


# -----------------------------------------------------------------------------------------
# L-infinity, missing values, unseen categories (golden values written out here)
# -----------------------------------------------------------------------------------------


def test_linf_is_the_largest_share_difference():
    ref = ["a"] * 50 + ["b"] * 30 + ["c"] * 20 + [None] * 7
    cur = ["a"] * 20 + ["b"] * 30 + ["d"] * 10
    # shares over non-missing rows: ref a .5 b .3 c .2; cur a 1/3 b .5 d 1/6
    expected = max(abs(0.5 - 20 / 60), abs(0.3 - 30 / 60), abs(0.2 - 0), abs(0 - 10 / 60))
    r = compute_feature_drift("g", ref, cur, method="linf", kind="categorical")
    assert r.score == pytest.approx(expected, abs=1e-15) and r.p_value is None
    assert r.threshold == 0.1 and r.drifted
    assert not compute_feature_drift("g", ref, ref, method="linf", kind="categorical").drifted
    assert compute_feature_drift("g", [None], [None], method="linf", kind="categorical").score == 0.0
    with pytest.raises(ValueError, match="'linf' does not support numeric"):
        compute_feature_drift("x", [1.0], [1.0], method="linf", kind="numeric")


def test_missing_share_is_the_absolute_change_of_the_missing_share():
    ref = np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0])  # 10 % missing
    cur = np.array([np.nan, np.nan, 3.0, np.nan, 5.0])  # 60 % missing
    r = compute_feature_drift("x", ref, cur, method="missing_share", kind="numeric")
    assert r.score == pytest.approx(0.5, abs=1e-15) and r.drifted and r.threshold == 0.1
    r = compute_feature_drift("x", cur, ref, method="missing_share", kind="numeric")
    assert r.score == pytest.approx(0.5, abs=1e-15)  # absolute: less missing is a change too
    # at or above the threshold is drift
    ref = [None] * 1 + ["a"] * 9
    cur = [None] * 2 + ["a"] * 8
    r = compute_feature_drift("g", ref, cur, method="missing_share", kind="categorical")
    assert r.score == pytest.approx(0.1, abs=1e-15)
    assert compute_feature_drift("g", ref, cur, method="missing_share", kind="categorical", threshold=r.score).drifted
    assert not compute_feature_drift(
        "g", ref, cur, method="missing_share", kind="categorical", threshold=float(np.nextafter(r.score, 1))
    ).drifted
    # infinities are values, not missing
    assert compute_feature_drift("x", [np.inf, 1.0], [1.0, 2.0], method="missing_share", kind="numeric").score == 0


def test_unseen_is_the_share_of_current_rows_with_a_new_category():
    ref = ["a", "b", "b", None]
    cur = ["a", "z", "z", "b", "y", None, None, "a"]  # 3 of 6 non-missing rows are new
    r = compute_feature_drift("g", ref, cur, method="unseen", kind="categorical")
    assert r.score == pytest.approx(3 / 6, abs=1e-15) and r.drifted and r.threshold == 0.05
    assert compute_feature_drift("g", ref, ["a", "b"], method="unseen", kind="categorical").score == 0.0
    assert compute_feature_drift("g", ref, [None], method="unseen", kind="categorical").score == 0.0
    rng = np.random.default_rng(3)
    ref = rng.choice(["p", "q", "r"], 1000)
    cur = np.where(rng.random(2000) < 0.04, "new", rng.choice(["p", "q"], 2000))
    r = compute_feature_drift("g", ref, cur, method="unseen", kind="categorical")
    assert r.score == pytest.approx(np.mean(cur == "new"), abs=1e-15)
    assert r.drifted == (r.score >= 0.05)


def test_new_methods_are_registered_with_kinds_defaults_and_direction():
    assert {"linf", "missing_share", "unseen"} <= set(METHODS)
    assert METHODS["linf"].kinds == frozenset({"categorical"})
    assert METHODS["unseen"].kinds == frozenset({"categorical"})
    assert METHODS["missing_share"].kinds == frozenset({"numeric", "categorical"})
    assert (METHODS["missing_share"].default_threshold, METHODS["unseen"].default_threshold) == (0.1, 0.05)
    assert not any(METHODS[m].uses_p_value for m in ("linf", "missing_share", "unseen"))


def test_model_config_accepts_the_new_method_names():
    from retrain_lib.core.config_triggers import DriftTrigger

    d = DriftTrigger.model_validate(
        {"categorical_method": "unseen", "features": {"region": {"method": "linf"}, "age": {"method": "missing_share"}}}
    )
    assert d.categorical_method == "unseen" and d.features["region"].method == "linf"


# -----------------------------------------------------------------------------------------
# Prediction drift, weighted dataset decision, binning option
# -----------------------------------------------------------------------------------------


def test_prediction_drift_on_scores_and_labels():
    rng = np.random.default_rng(4)
    ref, cur = rng.beta(2, 5, 3000), rng.beta(2.6, 5, 3000)
    r = drift.prediction_drift(ref, cur)
    assert (r.name, r.method, r.kind) == ("prediction", "psi", "numeric")
    rs, cs = ref_quantile_bucket_shares(ref, cur, 10)
    assert r.score == pytest.approx(ref_psi(rs, cs), rel=1e-9, abs=1e-12)
    k = drift.prediction_drift(ref, cur, method="ks", threshold=0.01)
    assert k.p_value == pytest.approx(float(stats.ks_2samp(ref, cur).pvalue), abs=1e-12)
    assert k.drifted == (k.p_value <= 0.01)
    labels = drift.prediction_drift(
        np.array(["yes"] * 70 + ["no"] * 30), np.array(["yes"] * 40 + ["no"] * 60), method="linf"
    )
    assert labels.kind == "categorical" and labels.score == pytest.approx(0.3)
    with pytest.raises(ValueError, match="one-dimensional"):
        drift.prediction_drift(np.zeros((5, 2)), np.zeros((5, 2)))


def test_weighted_drifted_share():
    ref, cur = _frames()
    # drifted: a, b, g; not drifted: c, d
    numeric, categorical = ["a", "b", "c", "d"], ["g"]
    plain = compute_drift(ref, cur, numeric=numeric, categorical=categorical, drift_share=0.5)
    assert plain.drifted_share == pytest.approx(3 / 5) and "weights" not in plain.to_dict()
    w = {"a": 1.0, "b": 1.0, "c": 4.0, "d": 4.0, "g": 0.0, "not_checked": 100.0}
    rep = compute_drift(ref, cur, numeric=numeric, categorical=categorical, drift_share=0.5, weights=w)
    assert rep.drifted_share == pytest.approx(2 / 10) and not rep.dataset_drift
    assert rep.to_dict()["weights"] == pytest.approx({"a": 0.1, "b": 0.1, "c": 0.4, "d": 0.4, "g": 0.0})
    assert [f.drifted for f in rep.features] == [f.drifted for f in plain.features]  # only the share changes
    rep = compute_drift(
        ref, cur, numeric=numeric, categorical=categorical, drift_share=0.5, weights={"a": 3, "g": np.float64(1.0)}
    )  # c, d, b missing: weight 0
    assert rep.drifted_share == pytest.approx(1.0) and rep.dataset_drift
    with pytest.raises(ValueError, match="non-negative finite numbers"):
        compute_drift(ref, cur, numeric=numeric, categorical=[], weights={"a": -1.0})
    with pytest.raises(ValueError, match="weight of 0"):
        compute_drift(ref, cur, numeric=numeric, categorical=[], weights={"g": 1.0})


def test_binning_option_is_validated():
    ref, cur = _frames()
    with pytest.raises(
        ValueError,
        match=r"'binning' parameter of compute_drift must be 'quantile' or "
        r"'sturges_combined'. Got 'sturges' instead",
    ):
        compute_drift(ref, cur, numeric=["a"], categorical=[], binning="sturges")
    with pytest.raises(ValueError, match="'binning' parameter of compute_feature_drift"):
        compute_feature_drift("a", ref["a"], cur["a"], method="psi", kind="numeric", binning="x")


def test_sturges_binning_matches_evidently_psi():
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(0, 1, 2000), rng.normal(0.3, 1.2, 1500)
    r = compute_feature_drift("x", ref, cur, method="psi", kind="numeric", binning="sturges_combined")
    assert r.score == pytest.approx(evidently_psi(ref, cur, categorical=False), rel=1e-9, abs=1e-12)


def test_compute_drift_rejects_non_numeric_values_in_a_numeric_feature():
    ref = pd.DataFrame({"x": ["1.0", "abc"]})
    with pytest.raises(ValueError, match="numeric feature 'x' has non-numeric values in the reference data"):
        compute_drift(ref, ref, numeric=["x"], categorical=[])
