"""The paired per-request loss test that judges a shadow challenger on labels
(:func:`retrain_lib.stats.rollout_stats.paired_loss_test`)."""

from __future__ import annotations

import numpy as np
import pytest

from retrain_lib.core.errors import DataError
from retrain_lib.stats.rollout_stats import NOT_WORSE, TOO_FEW, UNDECIDED, WORSE, paired_loss_test


def _losses(n: int, shift: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.exponential(0.5, n)
    return a, a + rng.normal(shift, 0.3, n)


def test_a_clearly_worse_b_is_worse_and_a_clearly_better_one_not_worse():
    a, b = _losses(400, 0.2)
    worse = paired_loss_test(a, b, alpha=0.05)
    assert worse.verdict == WORSE and worse.mean_diff > 0 and worse.ci[0] > 0
    a, b = _losses(400, -0.2)
    better = paired_loss_test(a, b, alpha=0.05)
    assert better.verdict == NOT_WORSE and better.ci[1] < 0 and better.loss_b < better.loss_a


def test_the_margin_lets_a_slightly_worse_b_through_and_too_few_pairs_are_not_judged():
    a, b = _losses(2000, 0.02, seed=3)
    assert paired_loss_test(a, b, alpha=0.05).verdict in (WORSE, UNDECIDED)
    assert paired_loss_test(a, b, alpha=0.05, margin=0.1).verdict == NOT_WORSE
    few = paired_loss_test(a[:20], b[:20], alpha=0.05, min_n=30)
    assert few.verdict == TOO_FEW and few.n == 20 and few.p_value is None


def test_identical_models_are_not_worse():
    a, _ = _losses(100, 0.0)
    res = paired_loss_test(a, a.copy(), alpha=0.05)
    assert res.verdict == NOT_WORSE and res.mean_diff == 0


def test_pairs_with_a_missing_loss_are_left_out_and_mismatched_inputs_refused():
    a, b = _losses(100, -0.3)
    b[:10] = np.nan
    assert paired_loss_test(a, b, alpha=0.05).n == 90
    with pytest.raises(DataError, match="one pair per request"):
        paired_loss_test(a, b[:50], alpha=0.05)


def test_an_equal_b_is_called_worse_at_most_alpha_of_the_time_however_often_one_looks():
    """200 streams with no difference, looked at every 25 pairs up to 1,000: the share of
    streams ever called ``worse`` stays near alpha (an uncorrected test would be far above)."""
    alpha, ever = 0.05, 0
    for seed in range(200):
        a, b = _losses(1000, 0.0, seed=seed)
        if any(paired_loss_test(a[:n], b[:n], alpha=alpha).verdict == WORSE for n in range(50, 1001, 25)):
            ever += 1
    assert ever / 200 <= alpha + 0.03, ever
