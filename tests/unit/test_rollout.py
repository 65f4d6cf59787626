"""Unit tests of retrain_lib.pipeline.rollout.

Expected values come from simulation (A/A and A/B experiments drawn here with numpy), from
the mSPRT mixture integrated numerically with SciPy, from scikit-learn's losses and from
small formulas written out in this file; none is produced by the code under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats
from sklearn import metrics as skm

from retrain_lib.core.errors import DataError
from retrain_lib.pipeline.rollout import (
    CanaryDecision,
    ShadowArm,
    ShadowLimits,
    canary_decision,
    canary_proxy_decision,
    compare_shadow,
    plan_steps,
)
from retrain_lib.stats.rollout_stats import loss_per_request

ALPHA = 0.05
RUNS = 500
MAX_N = 2000
STEP = 50
LOOKS = np.arange(STEP, MAX_N + 1, STEP)
# Binomial tolerance of a rate estimated from RUNS independent runs.
TOL = 3 * math.sqrt(ALPHA * (1 - ALPHA) / RUNS)


def _run_sequential(a: np.ndarray, b: np.ndarray, looks=LOOKS, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Peek at every look of every run; stop at the first decision. Returns decisions, stop n."""
    decisions, stops = [], []
    for i in range(a.shape[0]):
        decision, stop = "continue", looks[-1]
        for n in looks:
            out = canary_decision(a[i, :n], b[i, :n], alpha=ALPHA, **kwargs)
            if out.decision != "continue":
                decision, stop = out.decision, n
                break
        decisions.append(decision)
        stops.append(stop)
    return np.array(decisions), np.array(stops)


def _naive_z_rollbacks(a: np.ndarray, b: np.ndarray, looks=LOOKS, min_n: int = 100) -> np.ndarray:
    """One-sided fixed-sample Welch z-test at level ALPHA, peeked at every look (vectorised)."""
    z_crit = stats.norm.ppf(1 - ALPHA)
    looks = np.asarray([n for n in looks if n >= min_n])
    rejected = np.zeros(a.shape[0], dtype=bool)
    for n in looks:
        xa, xb = a[:, :n], b[:, :n]
        se = np.sqrt(xa.var(axis=1, ddof=1) / n + xb.var(axis=1, ddof=1) / n)
        rejected |= (xb.mean(axis=1) - xa.mean(axis=1)) / se > z_crit
    return rejected


@pytest.fixture(scope="module")
def aa_normal():
    rng = np.random.default_rng(20170101)
    return rng.normal(1.0, 1.0, (RUNS, MAX_N)), rng.normal(1.0, 1.0, (RUNS, MAX_N))


# -----------------------------------------------------------------------------------------
# The sequential test under peeking
# -----------------------------------------------------------------------------------------


def test_false_rollback_rate_under_peeking_is_bounded(aa_normal):
    a, b = aa_normal
    decisions, _ = _run_sequential(a, b)
    rate = np.mean(decisions == "rollback")
    assert rate <= ALPHA + TOL, f"false rollback rate {rate:.3f} under {len(LOOKS)} looks"


def test_naive_z_test_peeked_the_same_way_exceeds_alpha(aa_normal):
    a, b = aa_normal
    # One look at the end: the naive test holds its level ...
    single = np.mean(_naive_z_rollbacks(a, b, looks=[MAX_N]))
    assert abs(single - ALPHA) <= TOL
    # ... peeking every 50 samples inflates it far above alpha: why the sequential test exists.
    peeked = np.mean(_naive_z_rollbacks(a, b))
    assert peeked > ALPHA + 2 * TOL, f"naive peeked rate {peeked:.3f}"
    assert peeked > 3 * np.mean(_run_sequential(a[:200], b[:200])[0] == "rollback")


def test_false_rollback_rate_with_skewed_losses_and_uneven_traffic():
    # Log-loss-like skewed losses; the champion serves 4x the challenger's traffic.
    rng = np.random.default_rng(7)
    n_b = 1000
    a, b = rng.exponential(0.5, (RUNS, 4 * n_b)), rng.exponential(0.5, (RUNS, n_b))
    rollbacks = 0
    for i in range(RUNS):
        for n in range(STEP, n_b + 1, STEP):
            out = canary_decision(a[i, : 4 * n], b[i, :n], alpha=ALPHA)
            if out.decision != "continue":
                rollbacks += out.decision == "rollback"
                break
    assert rollbacks / RUNS <= ALPHA + TOL


def test_clearly_worse_challenger_is_rolled_back_early():
    rng = np.random.default_rng(11)
    a, b = rng.normal(1.0, 1.0, (RUNS, MAX_N)), rng.normal(1.5, 1.0, (RUNS, MAX_N))  # +0.5 sd
    decisions, stops = _run_sequential(a, b, max_n=MAX_N)
    assert np.mean(decisions == "rollback") >= 0.9
    assert not np.any(decisions == "promote")
    assert stops[decisions == "rollback"].mean() <= MAX_N / 4


def test_clearly_better_challenger_is_promoted():
    rng = np.random.default_rng(12)
    a, b = rng.normal(1.0, 1.0, (RUNS, MAX_N)), rng.normal(0.5, 1.0, (RUNS, MAX_N))
    decisions, stops = _run_sequential(a, b, max_n=MAX_N)
    assert np.mean(decisions == "promote") >= 0.9
    assert not np.any(decisions == "rollback")
    assert stops[decisions == "promote"].mean() <= MAX_N / 4


def test_min_n_is_respected_on_each_arm():
    rng = np.random.default_rng(3)
    huge = rng.normal(10.0, 1.0, 5000)
    base = rng.normal(0.0, 1.0, 5000)
    out = canary_decision(base[:99], huge[:99], min_n=100)
    assert (out.decision, out.p_value) == ("continue", 1.0)
    assert "min_n=100" in out.reason and (out.n_champion, out.n_challenger) == (99, 99)
    assert canary_decision(base, huge[:99], min_n=100).decision == "continue"  # champion has plenty
    assert canary_decision(base[:100], huge[:100], min_n=100).decision == "rollback"
    assert canary_decision(base[:300], huge[:300], min_n=400).decision == "continue"


def _coverage(a, b, true_diff, stop_index) -> float:
    covered = 0
    for i, j in enumerate(stop_index):
        out = canary_decision(a[i, : LOOKS[j]], b[i, : LOOKS[j]], alpha=ALPHA)
        covered += out.ci_low <= true_diff <= out.ci_high
    return covered / len(stop_index)


def test_always_valid_ci_covers_true_difference_at_random_and_adversarial_stops():
    rng = np.random.default_rng(5)
    true_diff = 0.1
    a, b = rng.normal(1.0, 1.0, (RUNS, MAX_N)), rng.normal(1.0 + true_diff, 1.0, (RUNS, MAX_N))
    looks_ok = np.flatnonzero(LOOKS >= 100)
    # A stopping time independent of the data.
    random_stop = rng.choice(looks_ok, size=RUNS)
    assert _coverage(a, b, true_diff, random_stop) >= 1 - ALPHA
    # The worst a peeker can do: stop at the first look where the naive 95% CI misses.
    z = stats.norm.ppf(1 - ALPHA / 2)
    adversarial = np.full(RUNS, looks_ok[-1])
    for j in looks_ok[::-1]:
        n = LOOKS[j]
        se = np.sqrt(a[:, :n].var(axis=1, ddof=1) / n + b[:, :n].var(axis=1, ddof=1) / n)
        misses = np.abs(b[:, :n].mean(axis=1) - a[:, :n].mean(axis=1) - true_diff) > z * se
        adversarial[misses] = j
    naive_cov = (
        1
        - np.mean(
            [  # the naive CI at that stop covers far less than 95%
                abs(b[i, : LOOKS[j]].mean() - a[i, : LOOKS[j]].mean() - true_diff)
                > z * math.sqrt(a[i, : LOOKS[j]].var(ddof=1) / LOOKS[j] + b[i, : LOOKS[j]].var(ddof=1) / LOOKS[j])
                for i, j in enumerate(adversarial)
            ]
        )
    )
    assert naive_cov < 1 - ALPHA - TOL
    assert _coverage(a, b, true_diff, adversarial) >= 1 - ALPHA


# -----------------------------------------------------------------------------------------
# The statistic itself, against the mixture integrated numerically
# -----------------------------------------------------------------------------------------


def _mixture_lambda(d: float, s2: float, tau2: float, theta0: float) -> float:
    """int N(d; theta, s2) N(theta; theta0, tau2) dtheta / N(d; theta0, s2), by quadrature."""
    s, t = math.sqrt(s2), math.sqrt(tau2)
    num, _ = integrate.quad(
        lambda th: stats.norm.pdf(d, th, s) * stats.norm.pdf(th, theta0, t),
        theta0 - 12 * t,
        theta0 + 12 * t,
        points=[d],
        limit=200,
    )
    return num / stats.norm.pdf(d, theta0, s)


@pytest.mark.parametrize(("tau2", "margin"), [(None, 0.0), (0.05, 0.0), (0.01, 0.1)])
def test_p_value_and_ci_match_the_integrated_mixture(tau2, margin):
    rng = np.random.default_rng(21)
    a, b = rng.normal(1.0, 1.0, 400), rng.normal(1.2, 1.5, 250)
    d = b.mean() - a.mean()
    s2 = a.var(ddof=1) / 400 + b.var(ddof=1) / 250
    t2 = tau2 if tau2 is not None else 0.01 * (a.var(ddof=1) + b.var(ddof=1)) / 2
    out = canary_decision(a, b, tau2=tau2, margin=margin)
    assert out.mean_diff == pytest.approx(d, rel=1e-12)
    assert out.p_value == pytest.approx(min(1.0, 1 / _mixture_lambda(d, s2, t2, margin)), rel=1e-6)
    # The CI ends are the values of theta0 where the mixture ratio reaches 1/alpha.
    f = lambda th: math.log(_mixture_lambda(d, s2, t2, th)) - math.log(1 / ALPHA)  # noqa: E731
    assert out.ci_high == pytest.approx(optimize.brentq(f, d, d + 2.0), rel=1e-6)
    assert out.ci_low == pytest.approx(optimize.brentq(f, d - 2.0, d), rel=1e-6)
    expected = "rollback" if out.ci_low > margin else "promote" if out.ci_high < margin else "continue"
    assert out.decision == expected


def test_margin_turns_a_small_regression_into_non_inferiority():
    rng = np.random.default_rng(8)
    a = rng.normal(1.0, 1.0, 3000)
    b = a[rng.permutation(3000)] + 0.3  # challenger exactly 0.3 worse on average
    assert canary_decision(a, b).decision == "rollback"
    promoted = canary_decision(a, b, margin=0.6)
    assert promoted.decision == "promote" and promoted.ci_high < 0.6
    assert canary_decision(a, b, margin=0.3).decision == "continue"  # d == margin: p = 1
    assert canary_decision(a, b, margin=0.3).p_value == 1.0


def test_max_n_ends_an_inconclusive_canary_with_rollback():
    rng = np.random.default_rng(9)
    a = rng.normal(1.0, 1.0, 500)
    b = a[rng.permutation(500)]  # the same losses: difference exactly 0, p = 1
    assert canary_decision(a[:300], b[:300], max_n=500).decision == "continue"
    out = canary_decision(a, b, max_n=500)
    assert (out.decision, out.stopped_at_max_n, out.p_value) == ("rollback", True, 1.0)
    assert out.reason.startswith("inconclusive at max_n=500")
    # With a margin the same data shows non-inferiority: promote.
    out = canary_decision(a, b, max_n=500, margin=0.5)
    assert (out.decision, out.stopped_at_max_n) == ("promote", False)


def test_decision_round_trips_to_a_plain_dict():
    rng = np.random.default_rng(1)
    out = canary_decision(rng.normal(0, 1, 200), rng.normal(0, 1, 200))
    assert isinstance(out, CanaryDecision)
    assert set(out.to_dict()) >= {
        "decision",
        "p_value",
        "n_champion",
        "n_challenger",
        "mean_diff",
        "ci_low",
        "ci_high",
        "reason",
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 1.5}, "The 'alpha' parameter of canary_decision must be a float in (0, 1). Got 1.5 instead."),
        ({"min_n": 0}, "The 'min_n' parameter of canary_decision must be a positive int. Got 0 instead."),
        ({"tau2": -1.0}, "The 'tau2' parameter of canary_decision must be a positive finite number or None."),
        ({"max_n": 2.5}, "The 'max_n' parameter of canary_decision must be a positive int or None."),
    ],
)
def test_bad_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError) as exc:
        canary_decision(np.zeros(10), np.zeros(10), **kwargs)
    assert str(exc.value).startswith(message)


def test_non_finite_losses_are_a_data_error():
    with pytest.raises(DataError, match="1 NaN/inf value"):
        canary_decision(np.r_[np.ones(200), np.nan], np.ones(200))


# -----------------------------------------------------------------------------------------
# Shadow comparison
# -----------------------------------------------------------------------------------------


def _psi_reference(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    """Textbook PSI over reference deciles (no empty buckets in the data used here)."""
    inner = np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.r_[-np.inf, inner, np.inf]
    r = np.histogram(ref, edges)[0] / ref.size
    c = np.histogram(cur, edges)[0] / cur.size
    assert (r > 0).all() and (c > 0).all()
    return float(np.sum((c - r) * np.log(c / r)))


def _p95_reference(x: np.ndarray) -> float:
    """Linear interpolation between order statistics at rank 0.95 (n - 1) (Hyndman-Fan type 7)."""
    s = np.sort(x)
    h = 0.95 * (s.size - 1)
    lo = int(math.floor(h))
    return float(s[lo] + (h - lo) * (s[min(lo + 1, s.size - 1)] - s[lo]))


def _arm(outputs, latencies, errors=0, n=None, ids=None) -> ShadowArm:
    return ShadowArm(
        outputs=outputs,
        latencies_ms=latencies,
        errors=errors,
        n=len(outputs) + errors if n is None else n,
        request_ids=ids,
    )


@pytest.fixture(scope="module")
def shadow_data():
    rng = np.random.default_rng(42)
    x = rng.normal(size=2000)
    proba = 1 / (1 + np.exp(-x))
    latency = rng.gamma(4.0, 10.0, 2000)
    return rng, x, proba, latency


def test_identical_arms_pass(shadow_data):
    _, _, proba, latency = shadow_data
    v = compare_shadow(_arm(proba, latency), _arm(proba.copy(), latency.copy()), ShadowLimits())
    assert (v.ok, v.ready, v.reasons) == (True, True, [])
    assert v.psi == pytest.approx(0.0, abs=1e-12)
    assert v.latency_p95_ratio == pytest.approx(1.0)
    assert (v.mean_abs_diff, v.n_paired, v.error_rate_diff) == (0.0, 2000, 0.0)


def test_shifted_outputs_fail_on_psi_with_the_values(shadow_data):
    rng, x, proba, latency = shadow_data
    shifted = 1 / (1 + np.exp(-(x + 1.0)))  # the same requests, scored higher
    v = compare_shadow(_arm(proba, latency), _arm(shifted, latency))
    expected = _psi_reference(proba, shifted)
    assert v.psi == pytest.approx(expected, rel=1e-9)
    assert expected > 0.2 and not v.ok and v.ready
    assert v.reasons == [f"psi: output distribution shift {expected:.4f} > max_psi 0.2 (10 champion-quantile buckets)"]
    assert v.mean_abs_diff == pytest.approx(np.mean(np.abs(shifted - proba)), rel=1e-12)


def test_slow_challenger_fails_on_latency(shadow_data):
    _, _, proba, latency = shadow_data
    slow = latency * 1.6 + 5
    v = compare_shadow(_arm(proba, latency), _arm(proba, slow))
    ratio = _p95_reference(slow) / _p95_reference(latency)
    assert v.latency_p95_ratio == pytest.approx(ratio, rel=1e-12)
    assert not v.ok and len(v.reasons) == 1 and v.reasons[0].startswith("latency: challenger p95")
    assert f"{ratio:.2f}x" in v.reasons[0] and "max_latency_ratio 1.5" in v.reasons[0]


def test_error_rate_increase_fails(shadow_data):
    _, _, proba, latency = shadow_data
    v = compare_shadow(_arm(proba, latency, errors=10), _arm(proba, latency, errors=50))
    assert v.error_rate_diff == pytest.approx(50 / 2050 - 10 / 2010)
    assert not v.ok and v.reasons[0].startswith("error_rate: challenger 0.0244 - champion 0.0050")


def test_too_few_requests_is_not_ready(shadow_data):
    _, _, proba, latency = shadow_data
    v = compare_shadow(_arm(proba[:150], latency[:150]), _arm(proba[:150], latency[:150]))
    assert (v.ok, v.ready) == (False, False)
    assert v.reasons == [
        "not ready: champion n=150, challenger n=150; need min_n=200 requests on each arm, wait for more traffic"
    ]


def test_outputs_are_paired_by_request_id(shadow_data):
    rng, _, proba, latency = shadow_data
    ids = np.arange(2000)
    order = rng.permutation(2000)[:1500]  # the challenger answered 1500 requests, in another order
    chall = proba[order] + 0.01 * (order % 3)
    v = compare_shadow(_arm(proba, latency, ids=ids), _arm(chall, latency[order], ids=ids[order]))
    assert v.n_paired == 1500
    assert v.mean_abs_diff == pytest.approx(np.mean(0.01 * (order % 3)), rel=1e-9)
    unpaired = compare_shadow(_arm(proba, latency), _arm(chall, latency[order]))
    assert (unpaired.mean_abs_diff, unpaired.n_paired) == (None, 0)


# -----------------------------------------------------------------------------------------
# Proxy canary (no labels)
# -----------------------------------------------------------------------------------------


def test_proxy_rolls_back_on_output_shift_and_on_errors(shadow_data):
    rng, x, proba, latency = shadow_data
    y = rng.normal(size=2000)
    same = 1 / (1 + np.exp(-y))
    shifted = 1 / (1 + np.exp(-(y + 1.0)))
    out = canary_proxy_decision(_arm(proba, latency, errors=5), _arm(shifted, latency, errors=5))
    assert out.decision == "rollback" and out.reason.startswith("psi:")
    assert out.psi == pytest.approx(_psi_reference(proba, shifted), rel=1e-9)
    # 6% vs 0.25% errors: clearly above the 1-point margin.
    errs = canary_proxy_decision(_arm(proba, latency, errors=5), _arm(same, latency, errors=128))
    assert errs.decision == "rollback" and errs.ci_low > 0.01 and errs.mean_diff > 0.05
    fine = canary_proxy_decision(_arm(proba, latency, errors=5), _arm(same, latency, errors=6))
    assert fine.decision == "promote" and fine.ci_high < 0.01
    early = canary_proxy_decision(_arm(proba[:100], latency[:100]), _arm(shifted[:100], latency[:100]))
    assert early.decision == "continue"


# -----------------------------------------------------------------------------------------
# Inputs
# -----------------------------------------------------------------------------------------


def test_log_loss_per_request_matches_sklearn():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 500)
    p = rng.random(500)
    loss = loss_per_request("classification", y, p)
    assert loss.mean() == pytest.approx(skm.log_loss(y, p, labels=[0, 1]), rel=1e-12)
    clipped = loss_per_request("classification", [1, 0], [0.0, 1.0])
    # p = 0 -> 1e-15; p = 1 -> 1 - 1e-15 (in float arithmetic), as sklearn's former eps=1e-15.
    assert clipped.tolist() == pytest.approx([-math.log(1e-15), -math.log1p(-(1 - 1e-15))], rel=1e-12)
    proba = rng.dirichlet(np.ones(3), 300)
    yk = rng.integers(0, 3, 300)
    assert loss_per_request("classification", yk, proba).mean() == pytest.approx(
        skm.log_loss(yk, proba, labels=[0, 1, 2]), rel=1e-12
    )


def test_squared_error_per_request():
    assert loss_per_request("regression", [1.0, 2.0, -1.0], [1.5, 0.0, -1.0]).tolist() == [0.25, 4.0, 0.0]


@pytest.mark.parametrize(
    ("task", "y", "s", "error"),
    [
        ("ranking", [1], [1.0], ValueError),
        ("classification", [0, 2], [0.1, 0.2], DataError),
        ("regression", [1.0, 2.0], [1.0], DataError),
    ],
)
def test_loss_per_request_rejects_bad_input(task, y, s, error):
    with pytest.raises(error):
        loss_per_request(task, y, s)


def test_plan_steps():
    assert plan_steps([5, 20, 50, 100]) == [0.05, 0.2, 0.5, 1.0]
    assert plan_steps([100]) == [1.0]


@pytest.mark.parametrize(
    ("steps", "problem"),
    [
        ([], "a non-empty list"),
        ([5, 5, 100], "strictly increasing"),
        ([50, 20, 100], "strictly increasing"),
        ([5, 50], "ending at 100"),
        ([0, 100], "in (0, 100]"),
        ([5, 150], "in (0, 100]"),
    ],
)
def test_plan_steps_rejects_bad_plans(steps, problem):
    with pytest.raises(ValueError, match=r"The 'canary_steps' parameter of plan_steps must be") as exc:
        plan_steps(steps)
    assert problem in str(exc.value)
