"""Statistics of a shadow or canary rollout, free of decisions: the output PSI of two models,
per-request losses and the mixture sequential probability ratio test (mSPRT) with its
always-valid confidence sequence; :mod:`retrain_lib.pipeline.rollout` decides with them.

The sequential test (mSPRT, Johari, Koomen, Pekelis & Walsh 2017, "Peeking at A/B tests")
------------------------------------------------------------------------------------------
Let ``theta = E[challenger loss] - E[champion loss]`` (positive: the challenger is worse) and
``m = margin``. At a look with ``n_A`` champion and ``n_B`` challenger losses::

    d   = mean(challenger) - mean(champion)                    (estimate of theta)
    s2  = var_A / n_A + var_B / n_B                             (plug-in variance of d,
                                                                 sample variances, ddof=1)
    Lambda = sqrt(s2 / (s2 + tau2)) * exp( tau2 * (d - m)^2 / (2 * s2 * (s2 + tau2)) )

``Lambda`` is the likelihood ratio of ``d ~ N(theta, s2)`` averaged over
``theta - m ~ N(0, tau2)`` against ``theta = m``; with equal arms (``s2 = V/n``,
``V = var_A + var_B``) it is the paper's ``sqrt(V/(V + n tau2)) exp(n^2 tau2 (d-m)^2 /
(2 V (V + n tau2)))``. Under ``theta = m`` it is a (nonnegative) martingale, so by Ville's
inequality ``P(Lambda_n >= 1/alpha for some n) <= alpha``: the always-valid p-value is

    p = min(1, 1 / Lambda)

and rejecting when ``p <= alpha`` keeps the error at ``alpha`` whenever the caller looks.
(The paper's running minimum ``min(p_{n-1}, 1/Lambda_n)`` is the caller's to keep across
calls; the DAG stops at the first rejection, so it changes no decision.) Inverting the test
gives the always-valid confidence sequence ``d +- h`` with::

    h = sqrt( 2 * s2 * (s2 + tau2) / tau2 * ( ln(1/alpha) + ln((s2 + tau2) / s2) / 2 ) )

so ``p <= alpha`` exactly when ``m`` lies outside ``[d - h, d + h]``.

Each one-sided test of :mod:`retrain_lib.pipeline.rollout` (rollback, promote) uses the two-sided mixture at level ``alpha``, which is conservative
(valid, slightly less powerful than a one-sided mixture). The guarantees are exact for
normal losses with known variance and a fixed traffic split; with plug-in variances they
hold asymptotically, which is why ``min_n`` (default 100) matters. ``tau2`` (loss units
squared) is the variance of the mixing distribution: the test is most sensitive to
differences of about ``sqrt(tau2)``. By default ``tau2 = 0.01 * (var_A + var_B) / 2``,
i.e. differences of about a tenth of a per-request standard deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from retrain_lib.core.errors import DataError
from retrain_lib.stats.drift_stats import bucket_shares, psi_from_shares, quantile_edges

PSI_BINS = 10
# Default mixing variance as a share of the pooled per-request variance (see module docstring).
DEFAULT_TAU2_SHARE = 0.01
# Probabilities are clipped to [eps, 1 - eps] before the log loss (as retrain_lib.core.metrics).
LOG_LOSS_EPS = 1e-15
TASKS = ("classification", "regression")


def output_psi(champion_outputs, challenger_outputs, *, bins: int = PSI_BINS) -> float:
    """PSI of the challenger's output distribution against the champion's.

    Buckets: ``bins`` quantile buckets of the champion's (finite) outputs, the outer ones
    open-ended, edges of tied quantiles merged (:func:`retrain_lib.stats.drift_stats.quantile_edges`).
    With ``r_i``/``c_i`` the champion/challenger shares of bucket ``i``::

        PSI = sum_i (c_i - r_i) * ln(c_i / r_i)

    An empty bucket's share is replaced by ``eps = 1e-4`` (or a millionth of the smallest
    non-zero share when that is below 1e-4), the rule of :mod:`retrain_lib.stats.drift_stats`, so PSI
    stays finite. NaN outputs are left out. Either sample empty: NaN.
    """
    ref = np.asarray(champion_outputs, dtype=float).ravel()
    cur = np.asarray(challenger_outputs, dtype=float).ravel()
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if ref.size == 0 or cur.size == 0:
        return math.nan
    edges = quantile_edges(ref, bins)
    return psi_from_shares(bucket_shares(ref, edges), bucket_shares(cur, edges))


# -----------------------------------------------------------------------------------------
# Mixture sequential probability ratio test
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MSPRT:
    """One look of the mSPRT: estimate ``d``, its variance ``s2``, ``tau2``, the always-valid
    p-value and the half width ``h`` of the confidence sequence."""

    d: float
    s2: float
    tau2: float
    p_value: float
    half_width: float

    @property
    def ci(self) -> tuple[float, float]:
        return self.d - self.half_width, self.d + self.half_width


def msprt(d: float, s2: float, tau2: float, theta0: float, alpha: float) -> MSPRT:
    """Normal-mixture SPRT of ``theta = theta0`` from an estimate ``d`` with variance ``s2``."""
    if s2 <= 0:  # both arms constant: the difference is known exactly
        p = 1.0 if d == theta0 else 0.0
        return MSPRT(d, s2, tau2, p, 0.0)
    log_lambda = 0.5 * math.log(s2 / (s2 + tau2)) + tau2 * (d - theta0) ** 2 / (2 * s2 * (s2 + tau2))
    p = min(1.0, math.exp(-log_lambda))
    half = math.sqrt(2 * s2 * (s2 + tau2) / tau2 * (math.log(1 / alpha) + 0.5 * math.log((s2 + tau2) / s2)))
    return MSPRT(d, s2, tau2, p, half)


def default_tau2(var_a: float, var_b: float) -> float:
    return DEFAULT_TAU2_SHARE * (var_a + var_b) / 2


# -----------------------------------------------------------------------------------------
# Inputs
# -----------------------------------------------------------------------------------------


def loss_per_request(task: str, y_true, scores) -> np.ndarray:
    """Per-request loss (lower is better) for :func:`canary_decision`.

    * ``"classification"``: log loss ``-ln p(y)``. ``scores`` is the positive-class
      probability (1-D, labels 0/1 or bool) or a ``(n, k)`` probability matrix (labels
      ``0..k-1``); probabilities are clipped to ``[1e-15, 1 - 1e-15]`` first.
    * ``"regression"``: squared error ``(y - prediction)^2``.

    For 0/1 error pass ``(y_true != predicted_label).astype(float)`` directly.
    """
    func = "loss_per_request"
    if task not in TASKS:
        raise ValueError(
            f"The 'task' parameter of {func} must be 'classification' or 'regression'. Got {task!r} instead."
        )
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=float)
    if y.ndim != 1 or s.ndim not in (1, 2) or s.shape[0] != y.shape[0]:
        raise DataError(f"{func}: y_true has shape {y.shape} and scores {s.shape}; give one score per label.")
    if np.isnan(s).any():
        raise DataError(f"{func}: scores hold {int(np.isnan(s).sum())} NaN value(s); drop those requests first.")
    if task == "regression":
        return (y.astype(float) - s) ** 2
    yi = y.astype(int)
    if not np.array_equal(yi, y.astype(float)):
        raise DataError(f"{func}: classification labels must be integers (0/1 or 0..k-1).")
    p = np.clip(s, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    if p.ndim == 1:
        if not np.isin(yi, (0, 1)).all():
            raise DataError(f"{func}: 1-D scores are positive-class probabilities; labels must be 0/1.")
        return -np.where(yi == 1, np.log(p), np.log1p(-p))
    if p.ndim != 2 or yi.min(initial=0) < 0 or yi.max(initial=0) >= p.shape[1]:
        raise DataError(f"{func}: with a probability matrix of shape {p.shape}, labels must be in 0..{p.shape[1] - 1}.")
    return -np.log(p[np.arange(p.shape[0]), yi])


# -----------------------------------------------------------------------------------------
# Paired losses (shadow, guard)
# -----------------------------------------------------------------------------------------

WORSE, NOT_WORSE, UNDECIDED, TOO_FEW = "worse", "not_worse", "undecided", "too_few"


@dataclass(frozen=True)
class PairedLossTest:
    """The mSPRT of ``theta = E[loss_b - loss_a]`` on paired per-request losses (the same
    requests scored by both models). ``verdict``: ``worse`` (b worse than a by more than
    ``margin``: p <= alpha and d > margin), ``not_worse`` (the confidence sequence's upper
    bound is at most ``margin``), ``undecided``, or ``too_few`` (fewer than ``min_n``
    pairs). Both answers keep their error rate at ``alpha`` however often one looks."""

    verdict: str
    n: int
    mean_diff: float | None
    loss_a: float | None
    loss_b: float | None
    p_value: float | None
    ci: tuple[float, float] | None
    margin: float
    alpha: float

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def paired_loss_test(loss_a, loss_b, *, alpha: float, margin: float = 0.0, min_n: int = 30) -> PairedLossTest:
    """Is ``b`` worse than ``a`` on the same requests? ``loss_a``/``loss_b``: per-request
    losses of the same requests in the same order (:func:`loss_per_request`).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> a = rng.exponential(0.5, 500)
    >>> paired_loss_test(a, a + rng.normal(0.3, 0.2, 500), alpha=0.05).verdict
    'worse'
    >>> paired_loss_test(a, a - rng.normal(0.3, 0.2, 500), alpha=0.05).verdict
    'not_worse'
    """
    a, b = np.asarray(loss_a, dtype=float), np.asarray(loss_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise DataError(f"paired_loss_test: losses of shapes {a.shape} and {b.shape}; give one pair per request.")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = int(a.size)
    if n < max(min_n, 2):
        mean = float(np.mean(b - a)) if n else None
        return PairedLossTest(TOO_FEW, n, mean, None, None, None, None, margin, alpha)
    diff = b - a
    mean, var = float(diff.mean()), float(diff.var(ddof=1))
    test = msprt(mean, var / n, max(DEFAULT_TAU2_SHARE * var, 1e-12), margin, alpha)
    lo, hi = test.ci
    if test.p_value <= alpha and mean > margin:
        verdict = WORSE
    elif hi <= margin:
        verdict = NOT_WORSE
    else:
        verdict = UNDECIDED
    return PairedLossTest(verdict, n, mean, float(a.mean()), float(b.mean()), test.p_value, (lo, hi), margin, alpha)
