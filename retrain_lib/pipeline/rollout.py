"""Decisions of a shadow or canary rollout and their records (verdicts, canary decisions).

The rollout DAG reads numbers from the prediction log at each check of each step and calls
the pure functions below (built on the statistics of :mod:`retrain_lib.stats.rollout_stats`); none
of them does I/O or keeps state between calls.

* :func:`compare_shadow`: the challenger answers the same requests as the champion without
  serving them. Compares output distributions (PSI), p95 latency, error rates and, for paired
  requests, the mean absolute output difference, against :class:`ShadowLimits`.
* :func:`canary_decision`: the challenger serves a share of live traffic. A mixture
  sequential probability ratio test (mSPRT) on per-request losses decides ``promote``,
  ``rollback`` or ``continue`` and stays valid however often it is looked at.
* :func:`canary_proxy_decision`: the same step before labels arrive: output PSI and request
  error rates only.
* :func:`~retrain_lib.stats.rollout_stats.loss_per_request` turns labels and scores into
  per-request losses; :func:`plan_steps` turns ``deploy.canary_steps`` (percent) into traffic fractions.

Example::

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> champ = rng.normal(1.0, 1.0, 400)          # per-request losses
    >>> chall = rng.normal(1.5, 1.0, 400)          # clearly worse
    >>> canary_decision(champ, chall).decision
    'rollback'

Decisions of :func:`canary_decision` (the mSPRT, its always-valid p-value ``p`` and
confidence sequence ``[d - h, d + h]`` of ``theta = E[challenger loss] - E[champion loss]``,
``m = margin``, are described in :mod:`retrain_lib.stats.rollout_stats`). Hypotheses:

* ``rollback``: H0 ``theta <= m`` (challenger not worse than champion + margin) rejected
  in favour of ``theta > m``: ``p <= alpha`` and ``d > m`` (equivalently ``ci_low > m``).
  A false rollback (``theta <= m``) happens with probability at most ``alpha``, under any
  number of looks.
* ``promote``: H0 ``theta >= m`` (challenger worse than champion + margin) rejected in
  favour of ``theta < m``: ``p <= alpha`` and ``d < m`` (equivalently ``ci_high < m``).
  With ``margin=0`` this asks for a strictly better challenger; give a non-inferiority
  margin (in loss units) to promote a challenger that is "no worse than m".
* ``max_n``: once both arms hold ``max_n`` losses and neither hypothesis is rejected, the
  canary ends: ``promote`` when the confidence-sequence upper bound is below ``m`` (the same
  condition as above), otherwise ``rollback`` with ``stopped_at_max_n=True`` and a reason
  starting ``inconclusive`` (fail closed: the champion stays). Without ``max_n`` the
  answer stays ``continue``.
* Below ``min_n`` losses on either arm the answer is always ``continue``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from retrain_lib.core.errors import DataError
from retrain_lib.stats.rollout_stats import MSPRT, PSI_BINS, default_tau2, msprt, output_psi

log = logging.getLogger(__name__)

PROMOTE = "promote"
ROLLBACK = "rollback"
CONTINUE = "continue"
DECISIONS = (PROMOTE, ROLLBACK, CONTINUE)


# -----------------------------------------------------------------------------------------
# Parameter checks (one error shape, as scikit-learn's)
# -----------------------------------------------------------------------------------------


def _check_unit(value, name: str, func: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"The '{name}' parameter of {func} must be a float in (0, 1). Got {value!r} instead.")
    return float(value)


def _check_positive(value, name: str, func: str, *, allow_none: bool = False, integer: bool = False):
    if value is None and allow_none:
        return None
    kinds = int if integer else int | float
    ok = not isinstance(value, bool) and isinstance(value, kinds) and value > 0 and math.isfinite(value)
    if not ok:
        what = "a positive int" if integer else "a positive finite number"
        if allow_none:
            what += " or None"
        raise ValueError(f"The '{name}' parameter of {func} must be {what}. Got {value!r} instead.")
    return value


def _finite_1d(values, name: str, func: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise DataError(f"The '{name}' parameter of {func} must be a 1-D array. Got shape {arr.shape} instead.")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise DataError(
            f"The '{name}' parameter of {func} must hold finite numbers only. "
            f"Got {bad} NaN/inf value(s) instead; drop or fix those requests first."
        )
    return arr


# -----------------------------------------------------------------------------------------
# Shadow comparison
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ShadowArm:
    """What one model did on the shadow (or canary) traffic.

    ``outputs``: predictions or positive-class probabilities of the answered requests;
    ``latencies_ms``: per-request latencies; ``errors``: requests that failed; ``n``: requests
    sent (answered + failed). ``request_ids`` (optional, same length as ``outputs``) pairs
    outputs across arms; without it two output arrays of equal length are taken as aligned
    (the same requests in the same order).
    """

    outputs: np.ndarray
    latencies_ms: np.ndarray
    errors: int
    n: int
    request_ids: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "outputs", np.asarray(self.outputs, dtype=float).ravel())
        object.__setattr__(self, "latencies_ms", np.asarray(self.latencies_ms, dtype=float).ravel())
        if self.request_ids is not None:
            ids = np.asarray(self.request_ids).ravel()
            if ids.size != self.outputs.size:
                raise DataError(
                    f"ShadowArm: request_ids has {ids.size} values but outputs has "
                    f"{self.outputs.size}; give one id per output."
                )
            object.__setattr__(self, "request_ids", ids)
        for name in ("errors", "n"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"The '{name}' parameter of ShadowArm must be an int >= 0. Got {value!r} instead.")
        if self.errors > self.n:
            raise DataError(
                f"ShadowArm: errors ({self.errors}) is greater than n ({self.n}); "
                f"n counts every request sent, failed ones included."
            )

    @property
    def error_rate(self) -> float:
        return self.errors / self.n if self.n else math.nan


@dataclass(frozen=True)
class ShadowLimits:
    """Limits of :func:`compare_shadow`; a figure *above* its limit fails (equal passes).

    ``max_psi``: PSI of the challenger's outputs against the champion's;
    ``max_latency_ratio``: challenger p95 latency / champion p95 latency;
    ``max_error_rate``: the most the challenger's error rate may exceed the champion's
    (absolute, 0.01 = one percentage point); ``min_n``: requests needed on each arm before
    any verdict (below it the verdict is "not ready": wait).
    """

    max_psi: float = 0.2
    max_latency_ratio: float = 1.5
    max_error_rate: float = 0.01
    min_n: int = 200

    def __post_init__(self):
        for name in ("max_psi", "max_latency_ratio", "max_error_rate"):
            _check_positive(getattr(self, name), name, "ShadowLimits")
        _check_positive(self.min_n, "min_n", "ShadowLimits", integer=True)


@dataclass(frozen=True)
class ShadowVerdict:
    """The outcome of :func:`compare_shadow`, with its own explanation.

    ``ok`` is True only when ``ready`` and no limit failed; ``reasons`` holds one message per
    failed limit (or the "not ready" message). Figures that cannot be computed are NaN;
    ``mean_abs_diff`` is None when the outputs are not paired.
    """

    ok: bool
    ready: bool
    reasons: list[str]
    psi: float
    latency_p95_ratio: float
    champion_p95_ms: float
    challenger_p95_ms: float
    champion_error_rate: float
    challenger_error_rate: float
    error_rate_diff: float
    mean_abs_diff: float | None
    n_paired: int
    n_champion: int
    n_challenger: int
    limits: ShadowLimits = field(default_factory=ShadowLimits)

    def to_dict(self) -> dict:
        """Small JSON-able dict (for XCom or a report)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "limits"}
        out["limits"] = {k: getattr(self.limits, k) for k in self.limits.__dataclass_fields__}
        return out


def _paired(champion: ShadowArm, challenger: ShadowArm) -> tuple[np.ndarray, np.ndarray] | None:
    if champion.request_ids is not None and challenger.request_ids is not None:
        _, ia, ib = np.intersect1d(champion.request_ids, challenger.request_ids, return_indices=True)
        return champion.outputs[ia], challenger.outputs[ib]
    if champion.outputs.size == challenger.outputs.size and champion.outputs.size:
        return champion.outputs, challenger.outputs
    return None


def _p95(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.percentile(values, 95)) if values.size else math.nan


def _ratio(num: float, den: float) -> float:
    if math.isnan(num) or math.isnan(den):
        return math.nan
    if den == 0:
        return 1.0 if num == 0 else math.inf
    return num / den


def compare_shadow(champion: ShadowArm, challenger: ShadowArm, limits: ShadowLimits | None = None) -> ShadowVerdict:
    """Compare a challenger's shadow traffic with the champion's against ``limits``.

    Figures: ``psi`` (:func:`~retrain_lib.stats.rollout_stats.output_psi`, 10 champion-quantile
    buckets), ``latency_p95_ratio`` (challenger p95 / champion p95, ``numpy.percentile``
    linear interpolation),
    ``error_rate_diff`` (challenger error rate - champion error rate) and ``mean_abs_diff``
    (mean ``|challenger - champion|`` over paired outputs, see :class:`ShadowArm`).

    Fewer than ``limits.min_n`` requests on either arm: ``ok=False, ready=False`` ("wait"),
    with the figures computed so far.

    Example::

        >>> import numpy as np
        >>> rng = np.random.default_rng(1)
        >>> out, lat = rng.random(1000), rng.gamma(4, 10, 1000)
        >>> arm = ShadowArm(outputs=out, latencies_ms=lat, errors=0, n=1000)
        >>> v = compare_shadow(arm, ShadowArm(outputs=out, latencies_ms=lat * 2, errors=0, n=1000))
        >>> v.ok, v.reasons[0][:7]
        (False, 'latency')
    """
    limits = limits or ShadowLimits()
    psi = output_psi(champion.outputs, challenger.outputs)
    p95_a, p95_b = _p95(champion.latencies_ms), _p95(challenger.latencies_ms)
    lat_ratio = _ratio(p95_b, p95_a)
    err_a, err_b = champion.error_rate, challenger.error_rate
    err_diff = err_b - err_a
    pair = _paired(champion, challenger)
    mad = float(np.nanmean(np.abs(pair[1] - pair[0]))) if pair is not None and pair[0].size else None
    n_paired = 0 if pair is None else int(pair[0].size)

    ready = champion.n >= limits.min_n and challenger.n >= limits.min_n
    reasons: list[str] = []
    if not ready:
        reasons.append(
            f"not ready: champion n={champion.n}, challenger n={challenger.n}; "
            f"need min_n={limits.min_n} requests on each arm, wait for more traffic"
        )
    else:
        if not psi <= limits.max_psi:  # NaN fails too
            reasons.append(
                f"psi: output distribution shift {psi:.4f} > max_psi {limits.max_psi:g} "
                f"({PSI_BINS} champion-quantile buckets)"
            )
        if not lat_ratio <= limits.max_latency_ratio:
            reasons.append(
                f"latency: challenger p95 {p95_b:.1f} ms is {lat_ratio:.2f}x champion p95 "
                f"{p95_a:.1f} ms > max_latency_ratio {limits.max_latency_ratio:g}"
            )
        if not err_diff <= limits.max_error_rate:
            reasons.append(
                f"error_rate: challenger {err_b:.4f} - champion {err_a:.4f} = {err_diff:.4f} "
                f"> max_error_rate {limits.max_error_rate:g}"
            )
    ok = ready and not reasons
    log.debug("compare_shadow: ok=%s psi=%.4f latency_ratio=%.3f error_diff=%.4f", ok, psi, lat_ratio, err_diff)
    return ShadowVerdict(
        ok=ok,
        ready=ready,
        reasons=reasons,
        psi=psi,
        latency_p95_ratio=lat_ratio,
        champion_p95_ms=p95_a,
        challenger_p95_ms=p95_b,
        champion_error_rate=err_a,
        challenger_error_rate=err_b,
        error_rate_diff=err_diff,
        mean_abs_diff=mad,
        n_paired=n_paired,
        n_champion=champion.n,
        n_challenger=challenger.n,
        limits=limits,
    )


# -----------------------------------------------------------------------------------------
# Sequential canary test
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryDecision:
    """The decision of one canary check, with its own explanation.

    ``decision``: ``"promote"``, ``"rollback"`` or ``"continue"``. ``p_value``: always-valid
    p-value of ``theta = margin`` (see the module docstring). ``mean_diff``: challenger minus
    champion mean loss (error rate for the proxy); ``ci_low``/``ci_high``: always-valid
    ``1 - alpha`` confidence sequence of that difference (NaN below ``min_n``).
    ``stopped_at_max_n``: the canary ended at ``max_n`` without a significant result.
    ``psi``: output PSI (proxy decisions only).
    """

    decision: str
    p_value: float
    n_champion: int
    n_challenger: int
    mean_diff: float
    ci_low: float
    ci_high: float
    reason: str
    margin: float = 0.0
    alpha: float = 0.05
    stopped_at_max_n: bool = False
    psi: float | None = None
    method: str = "msprt"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _decide(
    t: MSPRT,
    *,
    n_a: int,
    n_b: int,
    alpha: float,
    margin: float,
    max_n: int | None,
    what: str,
    method: str,
    psi: float | None = None,
) -> CanaryDecision:
    lo, hi = t.ci
    common: dict[str, Any] = dict(
        p_value=t.p_value,
        n_champion=n_a,
        n_challenger=n_b,
        mean_diff=t.d,
        ci_low=lo,
        ci_high=hi,
        margin=margin,
        alpha=alpha,
        psi=psi,
        method=method,
    )
    figures = (
        f"{what} difference {t.d:+.4g} (challenger - champion), {1 - alpha:.0%} always-valid "
        f"CI [{lo:.4g}, {hi:.4g}], p={t.p_value:.3g} vs margin {margin:g}"
    )
    if t.p_value <= alpha and t.d > margin:
        return CanaryDecision(ROLLBACK, reason=f"challenger worse: {figures}", **common)
    if t.p_value <= alpha and t.d < margin:
        return CanaryDecision(PROMOTE, reason=f"challenger not worse: {figures}", **common)
    if max_n is not None and min(n_a, n_b) >= max_n:
        return CanaryDecision(
            ROLLBACK,
            stopped_at_max_n=True,
            reason=f"inconclusive at max_n={max_n}: cannot show the challenger is not worse "
            f"(CI upper bound {hi:.4g} >= margin {margin:g}); keep the champion. "
            f"{figures}",
            **common,
        )
    return CanaryDecision(CONTINUE, reason=f"not significant yet: {figures}", **common)


def _too_few(n_a: int, n_b: int, min_n: int, margin: float, alpha: float, method: str) -> CanaryDecision:
    return CanaryDecision(
        CONTINUE,
        p_value=1.0,
        n_champion=n_a,
        n_challenger=n_b,
        mean_diff=math.nan,
        ci_low=math.nan,
        ci_high=math.nan,
        margin=margin,
        alpha=alpha,
        method=method,
        reason=f"too few samples: champion n={n_a}, challenger n={n_b}; need min_n={min_n} on each arm",
    )


def canary_decision(
    champion_losses,
    challenger_losses,
    *,
    alpha: float = 0.05,
    min_n: int = 100,
    tau2: float | None = None,
    margin: float = 0.0,
    max_n: int | None = None,
) -> CanaryDecision:
    """Decide a canary check from per-request losses with the mSPRT (see the module docstring).

    Args:
        champion_losses: losses of the requests the champion served so far (1-D, finite;
            e.g. from :func:`~retrain_lib.stats.rollout_stats.loss_per_request`; lower is better).
        challenger_losses: the same for the challenger (independent requests).
        alpha: bound on the false-rollback (and false-promote) probability over all looks.
        min_n: losses needed on *each* arm before any decision other than ``continue``.
        tau2: variance of the normal mixing distribution, in squared loss units; None:
            ``0.01 * (var_champion + var_challenger) / 2``.
        margin: non-inferiority margin in loss units (the challenger may be worse by less).
        max_n: losses per arm after which the canary ends (see the module docstring).

    Returns:
        CanaryDecision: ``rollback`` when ``theta > margin`` is shown at level ``alpha``,
        ``promote`` when ``theta < margin`` is shown, ``continue`` otherwise.

    Example::

        >>> import numpy as np
        >>> rng = np.random.default_rng(3)
        >>> d = canary_decision(rng.normal(1, 1, 50), rng.normal(5, 1, 50))
        >>> d.decision, d.reason[:9]
        ('continue', 'too few s')
    """
    func = "canary_decision"
    alpha = _check_unit(alpha, "alpha", func)
    _check_positive(min_n, "min_n", func, integer=True)
    _check_positive(tau2, "tau2", func, allow_none=True)
    _check_positive(max_n, "max_n", func, allow_none=True, integer=True)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not math.isfinite(margin):
        raise ValueError(f"The 'margin' parameter of {func} must be a finite number. Got {margin!r} instead.")
    a = _finite_1d(champion_losses, "champion_losses", func)
    b = _finite_1d(challenger_losses, "challenger_losses", func)
    n_a, n_b = int(a.size), int(b.size)
    if min(n_a, n_b) < max(min_n, 2):
        return _too_few(n_a, n_b, min_n, margin, alpha, "msprt")
    var_a, var_b = float(a.var(ddof=1)), float(b.var(ddof=1))
    t2 = tau2 if tau2 is not None else default_tau2(var_a, var_b)
    if t2 <= 0:  # default tau2 of two constant streams
        t2 = 1e-12
    test = msprt(float(b.mean() - a.mean()), var_a / n_a + var_b / n_b, float(t2), float(margin), alpha)
    out = _decide(
        test, n_a=n_a, n_b=n_b, alpha=alpha, margin=float(margin), max_n=max_n, what="mean loss", method="msprt"
    )
    log.debug("canary_decision: %s (%s)", out.decision, out.reason)
    return out


def canary_proxy_decision(
    champion: ShadowArm,
    challenger: ShadowArm,
    *,
    limits: ShadowLimits | None = None,
    alpha: float = 0.05,
    min_n: int | None = None,
    tau2: float | None = None,
    max_n: int | None = None,
) -> CanaryDecision:
    """Decide a canary check before labels arrive: output PSI and request error rates only.

    * ``continue`` while either arm has fewer than ``min_n`` requests (default
      ``limits.min_n``: PSI over 10 buckets is noisy on small samples; with no shift,
      ``PSI * n_A n_B / (n_A + n_B)`` is roughly chi-squared with 9 degrees of freedom).
    * ``rollback`` when the output PSI (:func:`~retrain_lib.stats.rollout_stats.output_psi`) is
      above ``limits.max_psi``, or when the mSPRT on the per-request error indicators shows the challenger's error rate
      above the champion's by more than ``limits.max_error_rate`` (margin) at level ``alpha``.
    * ``promote`` when the PSI is within its limit and the mSPRT shows the error-rate
      difference below ``limits.max_error_rate``. ``max_n`` ends an inconclusive canary
      with ``rollback`` as in :func:`canary_decision`.

    The error-rate test works from the counts: the plug-in variance of each arm uses
    ``p~ = (errors + 0.5) / (n + 1)`` so that zero errors do not mean zero uncertainty. The PSI
    check is a threshold rule, not a sequential test: its false-rollback rate under repeated
    looks is not bounded by ``alpha``. Decide on labelled losses (:func:`canary_decision`)
    as soon as labels exist.
    """
    func = "canary_proxy_decision"
    limits = limits or ShadowLimits()
    alpha = _check_unit(alpha, "alpha", func)
    min_n = limits.min_n if min_n is None else _check_positive(min_n, "min_n", func, integer=True)
    _check_positive(tau2, "tau2", func, allow_none=True)
    _check_positive(max_n, "max_n", func, allow_none=True, integer=True)
    margin = float(limits.max_error_rate)
    n_a, n_b = champion.n, challenger.n
    if min(n_a, n_b) < max(min_n, 2):
        return _too_few(n_a, n_b, min_n, margin, alpha, "proxy")
    psi = output_psi(champion.outputs, challenger.outputs)
    pa, pb = (champion.errors + 0.5) / (n_a + 1), (challenger.errors + 0.5) / (n_b + 1)
    var_a, var_b = pa * (1 - pa), pb * (1 - pb)
    t2 = tau2 if tau2 is not None else default_tau2(var_a, var_b)
    test = msprt(challenger.error_rate - champion.error_rate, var_a / n_a + var_b / n_b, float(t2), margin, alpha)
    if not psi <= limits.max_psi:
        lo, hi = test.ci
        return CanaryDecision(
            ROLLBACK,
            p_value=test.p_value,
            n_champion=n_a,
            n_challenger=n_b,
            mean_diff=test.d,
            ci_low=lo,
            ci_high=hi,
            margin=margin,
            alpha=alpha,
            psi=psi,
            method="proxy",
            reason=f"psi: output distribution shift {psi:.4f} > max_psi {limits.max_psi:g}",
        )
    out = _decide(
        test, n_a=n_a, n_b=n_b, alpha=alpha, margin=margin, max_n=max_n, what="error rate", method="proxy", psi=psi
    )
    return out


def plan_steps(canary_steps: list[int]) -> list[float]:
    """Canary traffic steps in percent -> fractions of traffic.

    Steps must be numbers in (0, 100], strictly increasing, the last one 100::

        >>> plan_steps([5, 20, 50, 100])
        [0.05, 0.2, 0.5, 1.0]
    """
    steps = list(canary_steps) if isinstance(canary_steps, list | tuple) else None
    problem = None
    if not steps:
        problem = "a non-empty list of percentages"
    elif any(isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= 100 for s in steps):
        problem = "a list of percentages in (0, 100]"
    elif any(a >= b for a, b in zip(steps, steps[1:])):
        problem = "strictly increasing"
    elif steps[-1] != 100:
        problem = "a list ending at 100 (full traffic)"
    if problem:
        raise ValueError(f"The 'canary_steps' parameter of plan_steps must be {problem}. Got {canary_steps!r} instead.")
    return [s / 100 for s in steps]
