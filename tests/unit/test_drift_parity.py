"""Parity of the whole-frame drift engine with Evidently 0.7, SciPy and our per-column code.

Two kinds of checks:

* **Independent golden values.** On the same inputs (and, for PSI/JS, the same buckets),
  our scores equal Evidently 0.7's legacy stattests (``_psi``, ``_jensenshannon``,
  ``_wasserstein_distance_norm``, ``_ks_stat_test``, ``_chi_stat_test``, binning by
  ``get_binned_data``) and KS p-values equal ``scipy.stats.ks_2samp``, within 1e-9, on many
  random cases with ties, constant columns, NaNs, infinities and tiny samples. Evidently's
  drift calculation drops NaN and +-inf before a stattest (``get_one_column_drift``), so the
  Evidently side gets the cleaned columns.
* **Vectorised vs per-column.** ``compute_drift`` (all columns at once) equals
  ``compute_feature_drift`` (the simple per-column implementation) within 1e-12.

Known, documented differences with Evidently (tested below so that they stay deliberate):
Wasserstein divides by ``max(std, 0.001)`` in Evidently and by ``std`` here (0 or inf when
the reference is constant); Evidently's chi-squared has no floor for categories the
reference never had (its p-value is then NaN or 0) and drifts on ``p < threshold``.
"""

from __future__ import annotations

import math
import tracemalloc
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from retrain_lib.stats import drift, drift_stats
from retrain_lib.stats.drift import compute_drift, compute_feature_drift
from retrain_lib.stats.drift_stats import binned_shares, js_from_shares, psi_from_shares, sturges_edges

TOL = 1e-9  # against independent implementations
SAME = 1e-12  # vectorised against per-column


@pytest.fixture(scope="module")
def ev():
    """Evidently 0.7's legacy stattests (imported once; the import is slow and noisy)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from evidently.legacy.calculations.stattests.chisquare_stattest import _chi_stat_test
        from evidently.legacy.calculations.stattests.jensenshannon import _jensenshannon
        from evidently.legacy.calculations.stattests.ks_stattest import _ks_stat_test
        from evidently.legacy.calculations.stattests.psi import _psi
        from evidently.legacy.calculations.stattests.utils import get_binned_data
        from evidently.legacy.calculations.stattests.wasserstein_distance_norm import _wasserstein_distance_norm
        from evidently.legacy.core import ColumnType

    num, cat = ColumnType.Numerical, ColumnType.Categorical

    def call(func, ref, cur, ctype, *args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(func(ev_clean(ref), ev_clean(cur), ctype, *args)[0])

    return SimpleNamespace(
        psi=lambda r, c, categorical=False: call(_psi, r, c, cat if categorical else num, 0.1),
        js=lambda r, c, categorical=False: call(_jensenshannon, r, c, cat if categorical else num, 0.1),
        wasserstein=lambda r, c: call(_wasserstein_distance_norm, r, c, num, 0.1),
        ks=lambda r, c: call(_ks_stat_test, r, c, num, 0.05),
        chi2=lambda r, c: call(_chi_stat_test, r, c, cat, 0.05),
        binned=lambda r, c: get_binned_data(ev_clean(r), ev_clean(c), num, 30, False),
    )


def ev_clean(values) -> pd.Series:
    """What Evidently's get_one_column_drift hands to a stattest: no NaN, no +-inf."""
    return pd.Series(values).replace([-np.inf, np.inf], np.nan).dropna()


def finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[np.isfinite(x)]


def not_nan(x) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x[~np.isnan(x)]


# -----------------------------------------------------------------------------------------
# Random cases
# -----------------------------------------------------------------------------------------


def numeric_column(rng: np.random.Generator, n: int, kind: int) -> np.ndarray:
    if kind == 0:
        x = rng.normal(rng.uniform(-1, 1), rng.uniform(0.5, 2), n)
    elif kind == 1:  # integer valued, few distinct values: many ties
        x = rng.poisson(rng.uniform(1, 5), n).astype(float)
    elif kind == 2:  # constant
        x = np.full(n, 2.5)
    elif kind == 3:  # rounded, heavy ties, > 20 distinct values
        x = rng.exponential(rng.uniform(1, 2), n).round(1)
    elif kind == 4:  # integer valued with values landing on bucket edges
        x = rng.integers(0, int(rng.integers(10, 60)), n).astype(float)
    elif kind == 5:  # current squeezed into a corner
        x = rng.uniform(0.97 if rng.random() < 0.5 else 0, 1, n)
    else:  # heavy shift: many empty buckets
        x = rng.normal(rng.choice([0.0, 6.0]), 1, n)
    if n > 1 and rng.random() < 0.5:
        mask = rng.random(n) < 0.15
        mask[0] = False  # never all missing
        x[mask] = np.nan
    return x


def numeric_frames(rng: np.random.Generator, i: int, k: int = 4, inf: bool = False):
    if i % 5 == 0:  # tiny samples
        n1, n2 = (int(v) for v in rng.integers(1, 6, 2))
    elif i % 5 == 1:
        n1, n2 = (int(v) for v in rng.integers(5, 60, 2))
    else:
        n1, n2 = (int(v) for v in rng.integers(60, 2500, 2))
    kinds = rng.integers(0, 7, k)
    ref = pd.DataFrame({f"x{j}": numeric_column(rng, n1, int(kinds[j])) for j in range(k)})
    cur = pd.DataFrame({f"x{j}": numeric_column(rng, n2, int(kinds[j])) for j in range(k)})
    if inf:
        for frame in (ref, cur):
            col = frame.columns[int(rng.integers(0, k))]
            idx = rng.random(len(frame)) < 0.05
            frame.loc[idx, col] = rng.choice([-np.inf, np.inf], int(idx.sum()))
    return ref, cur


def categorical_frames(rng: np.random.Generator, i: int, k: int = 3):
    ref, cur = {}, {}
    n1, n2 = (int(v) for v in rng.integers(1, 1500 if i % 4 else 8, 2))
    for j in range(k):
        n_cat = int(rng.integers(1, 9))
        cats = np.array([f"c{t}" for t in range(n_cat + 2)], dtype=object)
        r = rng.choice(cats[:n_cat], n1, p=rng.dirichlet(np.ones(n_cat))).astype(object)
        c = rng.choice(cats[:n_cat], n2, p=rng.dirichlet(np.ones(n_cat) * rng.uniform(0.3, 3))).astype(object)
        if (i + j) % 3 == 0:  # only the current sample has it
            c[: max(1, n2 // 8)] = cats[n_cat]
        if (i + j) % 4 == 0:  # only the reference has it
            r[: max(1, n1 // 6)] = cats[n_cat + 1]
        if (i + j) % 5 == 0 and n1 > 2:
            r[1] = None
            c[-1] = np.nan
        ref[f"g{j}"], cur[f"g{j}"] = r, c
    return pd.DataFrame(ref), pd.DataFrame(cur)


def scores(report) -> dict[str, tuple[float, float | None]]:
    return {f.name: (f.score, f.p_value) for f in report.features}


# -----------------------------------------------------------------------------------------
# Shares level: our building blocks fed Evidently's buckets
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_sturges_shares_equal_evidently_binned_data(ev, seed):
    rng = np.random.default_rng(100 + seed)
    for i in range(40):
        ref, cur = numeric_frames(rng, i + 2, k=1, inf=i % 4 == 0)
        r, c = ref["x0"].to_numpy(), cur["x0"].to_numpy()
        if finite(r).size == 0 or finite(c).size == 0:
            continue
        ev_r, ev_c = ev.binned(r, c)
        ours_r, ours_c = binned_shares(r, c, binning="sturges_combined")
        if ev_clean(r).nunique() > 20:  # histogram buckets: same order, same values
            np.testing.assert_allclose(ours_r, ev_r, rtol=0, atol=1e-15)
            np.testing.assert_allclose(ours_c, ev_c, rtol=0, atol=1e-15)
            edges = sturges_edges(r, c)
            np.testing.assert_array_equal(
                edges, np.histogram_bin_edges(np.concatenate([finite(r), finite(c)]), bins="sturges")
            )
        else:  # one bucket per value; Evidently's order is a set's: compare as multisets
            np.testing.assert_allclose(np.sort(ours_r), np.sort(ev_r), rtol=0, atol=1e-15)
        # Evidently's shares fed to our shares-level functions give Evidently's scores
        assert psi_from_shares(ev_r, ev_c) == pytest.approx(ev.psi(r, c), abs=TOL, rel=TOL)
        assert js_from_shares(ev_r, ev_c) == pytest.approx(ev.js(r, c), abs=TOL)
        assert psi_from_shares(ours_r, ours_c) == pytest.approx(ev.psi(r, c), abs=TOL, rel=TOL)


def test_sturges_integer_columns_use_evidently_unit_width():
    """Integer data: numpy (and so Evidently) never makes Sturges buckets narrower than 1."""
    rng = np.random.default_rng(7)
    ref = pd.DataFrame({"k": rng.integers(0, 21, 300_000)})
    cur = pd.DataFrame({"k": rng.integers(0, 21, 300_000)})
    both = np.concatenate([ref["k"].to_numpy(), cur["k"].to_numpy()])
    assert len(np.histogram_bin_edges(both, bins="sturges")) - 1 == 20  # clamped (21 unclamped)
    expected_r = np.histogram(ref["k"], np.histogram_bin_edges(both, bins="sturges"))[0] / len(ref)
    expected_c = np.histogram(cur["k"], np.histogram_bin_edges(both, bins="sturges"))[0] / len(cur)
    rep = compute_drift(ref, cur, numeric=["k"], categorical=[], binning="sturges_combined")
    assert rep.features[0].score == pytest.approx(psi_from_shares(expected_r, expected_c), abs=SAME)


# -----------------------------------------------------------------------------------------
# Whole-frame scores against Evidently and SciPy
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_numeric_psi_and_js_equal_evidently_on_sturges_buckets(ev, seed):
    rng = np.random.default_rng(200 + seed)
    for i in range(25):
        ref, cur = numeric_frames(rng, i, inf=i % 3 == 0)
        cols = [c for c in ref.columns if finite(ref[c]).size and finite(cur[c]).size]
        for method, golden in (("psi", ev.psi), ("js", ev.js)):
            rep = compute_drift(ref, cur, numeric=cols, categorical=[], method=method, binning="sturges_combined")
            for f in rep.features:
                expected = golden(ref[f.name], cur[f.name])
                assert f.score == pytest.approx(expected, abs=TOL, rel=TOL), (method, i, f.name)


@pytest.mark.parametrize("seed", range(2))
def test_categorical_psi_js_and_chi2_equal_evidently(ev, seed):
    rng = np.random.default_rng(300 + seed)
    for i in range(30):
        ref, cur = categorical_frames(rng, i)
        cols = [c for c in ref.columns if ref[c].notna().any() and cur[c].notna().any()]
        for method, golden in (("psi", ev.psi), ("js", ev.js)):
            rep = compute_drift(ref, cur, numeric=[], categorical=cols, categorical_method=method)
            for f in rep.features:
                assert f.score == pytest.approx(golden(ref[f.name], cur[f.name], True), abs=TOL, rel=TOL)
        rep = compute_drift(ref, cur, numeric=[], categorical=cols, categorical_method="chi2")
        for f in rep.features:
            seen = set(ev_clean(ref[f.name]))
            if set(ev_clean(cur[f.name])) <= seen and len(seen | set(ev_clean(cur[f.name]))) >= 2:
                # same categories on both sides: same test (Evidently has no floor for new ones)
                assert f.p_value == pytest.approx(ev.chi2(ref[f.name], cur[f.name]), abs=TOL, rel=1e-7)


@pytest.mark.parametrize("seed", range(3))
def test_wasserstein_equals_evidently_when_reference_spread_is_not_tiny(ev, seed):
    rng = np.random.default_rng(400 + seed)
    checked = 0
    for i in range(30):
        ref, cur = numeric_frames(rng, i)
        rep = compute_drift(ref, cur, numeric=list(ref.columns), categorical=[], method="wasserstein")
        for f in rep.features:
            r, c = not_nan(ref[f.name]), not_nan(cur[f.name])
            if r.size == 0 or c.size == 0:
                continue
            dist = stats.wasserstein_distance(r, c)
            if np.std(r) > 0:
                assert f.score * np.std(r) == pytest.approx(dist, abs=TOL, rel=TOL)
            if np.std(r) >= 0.001:
                assert f.score == pytest.approx(ev.wasserstein(ref[f.name], cur[f.name]), abs=TOL, rel=TOL)
                checked += 1
            else:  # documented difference: Evidently divides by 0.001, we by the (zero) std
                assert f.score == (0.0 if dist == 0 else math.inf)
                assert ev.wasserstein(ref[f.name], cur[f.name]) == pytest.approx(dist / 0.001, rel=TOL, abs=TOL)
    assert checked > 40


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
@pytest.mark.parametrize("seed", range(4))
def test_ks_p_values_equal_scipy_and_evidently(ev, seed):
    rng = np.random.default_rng(500 + seed)
    for i in range(30):
        ref, cur = numeric_frames(rng, i)
        rep = compute_drift(ref, cur, numeric=list(ref.columns), categorical=[], method="ks")
        for f in rep.features:
            r, c = not_nan(ref[f.name]), not_nan(cur[f.name])
            if r.size == 0 or c.size == 0:
                assert (f.score, f.p_value) == (0.0, 1.0)
                continue
            expected = stats.ks_2samp(r, c)
            assert f.p_value == pytest.approx(float(expected.pvalue), abs=TOL)
            assert f.score == pytest.approx(float(expected.statistic), abs=TOL)
            assert f.p_value == pytest.approx(ev.ks(ref[f.name], cur[f.name]), abs=TOL)
            assert f.drifted == (f.p_value <= 0.05)


def test_ks_large_samples_use_the_asymptotic_distribution_like_scipy():
    rng = np.random.default_rng(9)
    ref = pd.DataFrame(
        {"a": rng.normal(0, 1, 12_000), "b": rng.poisson(4, 12_000).astype(float), "c": rng.normal(0, 1, 12_000)}
    )
    cur = pd.DataFrame(
        {"a": rng.normal(0.03, 1, 10_001), "b": rng.poisson(4.1, 10_001).astype(float), "c": rng.normal(0, 1, 10_001)}
    )
    cur.loc[::7, "c"] = np.nan
    rep = compute_drift(ref, cur, numeric=["a", "b", "c"], categorical=[], method="ks")
    for f in rep.features:
        expected = stats.ks_2samp(not_nan(ref[f.name]), not_nan(cur[f.name]))
        assert f.score == pytest.approx(float(expected.statistic), abs=SAME)
        assert f.p_value == pytest.approx(float(expected.pvalue), abs=SAME)


def test_ks_falls_back_to_scipy_when_its_internals_move(monkeypatch):
    rng = np.random.default_rng(10)
    ref = pd.DataFrame({"a": rng.normal(0, 1, 300)})
    cur = pd.DataFrame({"a": rng.normal(0.2, 1, 200)})
    monkeypatch.setattr(drift_stats, "_ks_from_statistic", lambda d, n1, n2: None)
    f = compute_drift(ref, cur, numeric=["a"], categorical=[], method="ks").features[0]
    expected = stats.ks_2samp(ref["a"], cur["a"])
    assert (f.score, f.p_value) == (
        pytest.approx(expected.statistic, abs=SAME),
        pytest.approx(expected.pvalue, abs=SAME),
    )


# -----------------------------------------------------------------------------------------
# Vectorised (compute_drift) against per-column (compute_feature_drift)
# -----------------------------------------------------------------------------------------


def assert_same_as_per_column(
    ref, cur, numeric, categorical, *, method="psi", categorical_method="psi", bins=10, binning="quantile"
):
    rep = compute_drift(
        ref,
        cur,
        numeric=numeric,
        categorical=categorical,
        method=method,
        categorical_method=categorical_method,
        bins=bins,
        binning=binning,
    )
    for f in rep.features:
        one = compute_feature_drift(
            f.name, ref[f.name], cur[f.name], method=f.method, kind=f.kind, bins=bins, binning=binning
        )
        if math.isinf(one.score) or math.isnan(one.score):
            assert f.score == one.score or (math.isnan(f.score) and math.isnan(one.score)), (f, one)
        else:
            assert abs(f.score - one.score) <= SAME * max(1.0, abs(one.score)), (f, one)
        if one.p_value is None:
            assert f.p_value is None
        else:
            assert abs(f.p_value - one.p_value) <= SAME, (f, one)
        assert (f.drifted, f.reference_rows, f.current_rows) == (one.drifted, one.reference_rows, one.current_rows)
    return rep


@pytest.mark.parametrize("method", ["psi", "js", "ks", "wasserstein", "missing_share"])
def test_vectorised_numeric_equals_per_column(method):
    rng = np.random.default_rng(600 + len(method))
    for i in range(30):
        ref, cur = numeric_frames(rng, i, k=5, inf=i % 4 == 1)
        bins = int(rng.integers(2, 25))
        assert_same_as_per_column(ref, cur, list(ref.columns), [], method=method, bins=bins)
        if method in ("psi", "js"):
            assert_same_as_per_column(ref, cur, list(ref.columns), [], method=method, binning="sturges_combined")


@pytest.mark.parametrize("method", ["psi", "js", "chi2", "linf", "missing_share", "unseen"])
def test_vectorised_categorical_equals_per_column(method):
    rng = np.random.default_rng(700 + len(method))
    for i in range(30):
        ref, cur = categorical_frames(rng, i)
        assert_same_as_per_column(ref, cur, [], list(ref.columns), categorical_method=method)


def test_vectorised_handles_dtypes_and_layouts():
    rng = np.random.default_rng(11)
    n = 3000
    block = rng.normal(size=(n, 6))  # one row-major 2-D block: strided columns
    ref = pd.DataFrame(block, columns=[f"b{j}" for j in range(6)])
    cur = pd.DataFrame(block[::-1] + 0.1, columns=[f"b{j}" for j in range(6)])
    for frame in (ref, cur):
        frame["i"] = rng.integers(0, 50, n)  # int64
        frame["ni"] = pd.array(rng.integers(0, 30, n), dtype="Int64")
        frame.loc[frame.index[::11], "ni"] = pd.NA
        frame["nf"] = pd.array(rng.normal(size=n), dtype="Float64")
        frame["o"] = pd.Series(rng.normal(size=n), dtype=object)
        frame.loc[frame.index[::13], "o"] = None
        frame["f32"] = rng.normal(size=n).astype(np.float32)
        cats = ["x", "y", "z"] if frame is ref else ["x", "y", "z", "w"]
        frame["cat"] = pd.Categorical(rng.choice(cats, n), categories=cats)
        frame["same"] = pd.Categorical(rng.choice(["p", "q"], n), categories=["p", "q"])
        frame["num_cat"] = rng.choice([0.0, 0.5, 1.0], n)
    numeric = [f"b{j}" for j in range(6)] + ["i", "ni", "nf", "o", "f32"]
    categorical = ["cat", "same", "num_cat"]
    for method in ("psi", "js", "ks", "wasserstein", "missing_share"):
        assert_same_as_per_column(ref, cur, numeric, categorical, method=method)
    for cm in ("psi", "chi2", "linf", "unseen", "missing_share"):
        assert_same_as_per_column(ref, cur, numeric, categorical, categorical_method=cm)
    assert_same_as_per_column(ref, cur, numeric, categorical, binning="sturges_combined")


def test_vectorised_blocks_give_the_same_scores(monkeypatch):
    """Columns are processed in blocks of bounded size; the block size changes no score."""
    rng = np.random.default_rng(12)
    ref, cur = numeric_frames(rng, 3, k=9)
    full = {
        m: scores(compute_drift(ref, cur, numeric=list(ref.columns), categorical=[], method=m))
        for m in ("psi", "ks", "wasserstein")
    }
    monkeypatch.setattr(drift, "_BLOCK_ELEMENTS", 1)  # one column per block
    for m, expected in full.items():
        assert scores(compute_drift(ref, cur, numeric=list(ref.columns), categorical=[], method=m)) == expected


def test_empty_frames_and_all_missing_columns_score_no_drift():
    ref = pd.DataFrame({"x": pd.Series([], dtype=float), "g": pd.Series([], dtype=object)})
    cur = pd.DataFrame({"x": [1.0, 2.0], "g": ["a", "b"]})
    for m in ("psi", "js", "ks", "wasserstein"):
        rep = assert_same_as_per_column(ref, cur, ["x"], ["g"], method=m)
        assert not rep.features[0].drifted
    ref = pd.DataFrame({"x": [np.nan] * 4, "g": [None] * 4})
    rep = assert_same_as_per_column(ref, cur, ["x"], ["g"], method="js", categorical_method="js")
    assert [f.score for f in rep.features] == [0.0, 0.0]
    rep = assert_same_as_per_column(ref, cur, ["x"], ["g"], method="missing_share", categorical_method="missing_share")
    assert [f.score for f in rep.features] == [1.0, 1.0] and all(f.drifted for f in rep.features)


def test_compute_drift_peak_memory_is_bounded_by_the_input():
    """No timing here: the traced peak of a whole-frame check stays below 2x its input."""
    rng = np.random.default_rng(13)
    n = 100_000
    ref = pd.DataFrame({f"x{j}": rng.normal(size=n) for j in range(12)})
    cur = pd.DataFrame({f"x{j}": rng.normal(0.1, 1, n) for j in range(12)})
    ref["g"] = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    cur["g"] = rng.choice(np.array(["a", "b", "c"], dtype=object), n)
    input_bytes = ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum()
    compute_drift(ref.head(10), cur.head(10), numeric=list(ref.columns[:-1]), categorical=["g"])  # imports
    for method in ("psi", "ks"):
        tracemalloc.start()
        try:
            compute_drift(ref, cur, numeric=list(ref.columns[:-1]), categorical=["g"], method=method)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak <= 2 * input_bytes, (method, peak / 2**20, input_bytes / 2**20)


def test_floor_boundary_share_of_exactly_one_in_ten_thousand(ev):
    """A smallest non-zero share of exactly 0.0001 takes the millionth floor (``<=``)."""
    ref = pd.DataFrame({"g": ["a"] * 9_999 + ["b"]})  # b: 1 / 10_000 == 0.0001
    cur = pd.DataFrame({"g": ["a"] * 500 + ["c"] * 500})
    rep = assert_same_as_per_column(ref, cur, [], ["g"])
    assert rep.features[0].score == pytest.approx(ev.psi(ref["g"], cur["g"], True), abs=TOL, rel=TOL)
    r, c = np.array([0.9999, 0.0001, 1e-10]), np.array([0.5, 0.0001, 0.5])  # the floors written out
    expected = float(np.sum((r - c) * np.log(r / c)))
    assert rep.features[0].score == pytest.approx(expected, rel=1e-12)
