"""Calibrated drift thresholds (``threshold: auto``), multiple testing and persistence.

A fixed threshold such as PSI 0.1 means very different things at 100 and at 1,000,000 rows:
under *no* drift the PSI of two samples shrinks like ``1/n + 1/m``, so a fixed threshold
fires on noise at small sizes and ignores real but small shifts at large ones. ``threshold:
auto`` instead sets each feature's threshold from the distribution of its statistic under
the null hypothesis "current and reference come from the same distribution", at the actual
sample sizes, for a target false-alarm rate ``far`` (``drift.false_alarm_rate``, 0.01)::

    drift:
      threshold: auto          # every feature without its own threshold
      false_alarm_rate: 0.01
      multiple_testing: bh     # default with auto; or none
      features:
        income: {method: ks, threshold: auto}

How each method is calibrated (``source`` in ``FeatureDrift.calibration``):

================ ================================================================================
method           null model
================ ================================================================================
ks               ``alpha``: SciPy's two-sample p-value is already calibrated; threshold = far.
chi2             ``two_sample_chi2``: the method tests current counts against the reference shares
                 as if those were exact; with a sampled reference the statistic is about
                 ``(1 + m/n) * chi2(k - 1)``, so the p-value is corrected by that factor. The
                 threshold is given on the method's own p-value scale (so ``p <= threshold`` still
                 decides).
psi              ``analytic_chi2``: ``PSI / (1/n + 1/m) ~ chi2(b - 1)`` (b buckets with reference
                 rows; quantile buckets behave the same because their edges are reference
                 quantiles), threshold ``chi2.ppf(1 - far, b - 1) * (1/n + 1/m)``. Used when every
                 bucket expects at least ``ANALYTIC_MIN_EXPECTED_COUNT`` (50) rows in the smaller
                 sample (below that PSI's log tail is heavier than chi-square's: at 10 rows per
                 bucket the real false-alarm rate is about twice the target); otherwise
                 ``resampled`` (see below).
js               ``analytic_chi2``: ``8 * JS^2 / (1/n + 1/m) ~ chi2(b - 1)`` (JS divergence is PSI/8
                 to second order), same validity rule as PSI; otherwise ``resampled``.
missing_share    ``analytic_normal``: difference of two binomial shares,
                 ``sd = sqrt(p (1 - p) (1/n + 1/m))`` with ``p`` the reference missing share, when
                 ``min(n, m) * min(p, 1 - p) >= 5``; otherwise ``resampled`` (binomial draws).
wasserstein,     ``resampled``: null values simulated from the reference with a seed fixed per
linf, unseen     feature. Bucket/category statistics (linf, unseen, small-count psi/js): bucket
                 counts at the exact sizes n and m, up to ``COUNT_RESAMPLES`` (20,000) draws,
                 vectorised, cost independent of n. Categories: both samples multinomial with
                 the reference shares. Reference-quantile buckets: the reference shares are fixed
                 by construction and the randomness is in the edges, so the true bucket masses
                 are drawn from ``Dirichlet(reference counts)`` and the current counts are
                 multinomial with them (this gets PSI's heavy tail from empty current buckets
                 right). The p-value is empirical, ``(1 + #{null >= score}) / (draws + 1)``, and
                 the threshold the matching order statistic: 20,000 draws resolve the per-test
                 level of BH over a few dozen features. Simulations depend only on (method,
                 reference counts, n, m, seed) and are cached, so columns with the same counts
                 share one. Wasserstein: ``RESAMPLES`` (200) pairs of samples drawn with
                 replacement, both of the harmonic size ``2nm / (n + m)`` capped at
                 ``MAX_RESAMPLE_SIZE`` (10,000), sorted row-wise, rescaled to the real sizes by
                 the root-n rate; a gamma distribution fitted by moments to these 200 values gives
                 the threshold and the p-value (200 draws cannot resolve a 0.01 tail by counting;
                 the plain empirical quantile is reported as ``null_quantile``). When all null
                 values are equal (e.g. ``unseen`` with no rare reference category) any larger
                 score is drift.
================ ================================================================================

A feature whose reference or current sample has no values has source ``empty``: never drift.

Multiple testing: with ``bh`` (the default with auto) all auto features enter one
Benjamini-Hochberg procedure on the p-values above (distance methods use the p-value of
their null model, so PSI, KS and chi2 features are corrected together) at level ``far``;
under no drift at all this keeps the chance of *any* false alarm at about ``far``. The
threshold a feature reports is then the BH cut-off translated to its own scale, so
``score >= threshold`` (or ``p <= threshold``) still reads true.

Persistence (``drift.persistence: {k: 2, n: 3}``) is applied by the caller over successive
monitor checks with :func:`persistent_alarm` / :func:`apply_persistence`.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from retrain_lib.stats.drift_stats import CATEGORICAL, binned_shares, js_rows, psi_rows

AUTO = "auto"
DEFAULT_FALSE_ALARM_RATE = 0.01
MULTIPLE_TESTING = ("bh", "none")
RESAMPLES = 200
COUNT_RESAMPLES = 20_000
_COUNT_CELLS = 4_000_000  # at most this many simulated counts per sample (memory/time bound)
MAX_RESAMPLE_SIZE = 10_000
MIN_EXPECTED_COUNT = 5
ANALYTIC_MIN_EXPECTED_COUNT = 50


# -----------------------------------------------------------------------------------------
# Closed forms
# -----------------------------------------------------------------------------------------


def psi_null_threshold(n_ref: int, n_cur: int, buckets: int, false_alarm_rate: float) -> float:
    """PSI threshold with false-alarm rate ``false_alarm_rate`` under no drift.

    ``chi2.ppf(1 - far, buckets - 1) * (1/n_ref + 1/n_cur)``::

        >>> round(psi_null_threshold(1000, 1000, 10, 0.01), 4)
        0.0433
    """
    from scipy import stats

    return float(stats.chi2.isf(false_alarm_rate, buckets - 1) * (1.0 / n_ref + 1.0 / n_cur))


def psi_null_p_value(score: float, n_ref: int, n_cur: int, buckets: int) -> float:
    """P-value of a PSI score under no drift: ``chi2.sf(PSI / (1/n + 1/m), buckets - 1)``."""
    from scipy import stats

    return float(stats.chi2.sf(score / (1.0 / n_ref + 1.0 / n_cur), buckets - 1))


# -----------------------------------------------------------------------------------------
# Null models
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NullModel:
    """Distribution of a statistic under no drift; converts scores to p-values and back.

    ``kind``: ``p_value`` (the method's p-value is calibrated), ``chi2_p`` (chi2 method,
    ``factor`` corrects it), ``chi2`` (``score**power / scale ~ chi2(df)``), ``normal``
    (``|score| / scale ~ |N(0, 1)|``), ``gamma`` (``shape``, ``scale``), ``point`` (all null
    values equal ``loc``), ``empirical`` (``values``: many simulated null values, p-value
    ``(1 + #{null >= score}) / (draws + 1)``), ``never`` (no data: never drift).
    """

    kind: str
    df: float = 1.0
    scale: float = 1.0
    power: float = 1.0
    shape: float = 1.0
    factor: float = 1.0
    loc: float = 0.0
    values: np.ndarray | None = field(default=None, compare=False, repr=False)  # sorted, for "empirical"

    def p_value(self, score: float, p_value: float | None) -> float:
        from scipy import stats

        if self.kind == "p_value":
            return 1.0 if p_value is None else float(p_value)
        if self.kind == "chi2_p":
            return float(stats.chi2.sf(score / self.factor, self.df)) if self.df >= 1 else 1.0
        if self.kind == "chi2":
            return float(stats.chi2.sf(score**self.power / self.scale, self.df))
        if self.kind == "normal":
            return float(2 * stats.norm.sf(abs(score) / self.scale))
        if self.kind == "gamma":
            return float(stats.gamma.sf(score, self.shape, scale=self.scale))
        if self.kind == "point":
            return 0.0 if score > self.loc else 1.0
        if self.kind == "empirical":
            values = self._empirical_values()
            above = values.size - np.searchsorted(values, score, side="left")
            return float((1 + above) / (values.size + 1))
        return 1.0

    def threshold(self, alpha: float) -> float:
        """The threshold, on the method's own scale, that a test at level ``alpha`` uses."""
        from scipy import stats

        if self.kind == "p_value":
            return float(alpha)
        if self.kind == "chi2_p":
            return float(stats.chi2.sf(self.factor * stats.chi2.isf(alpha, self.df), self.df)) if self.df >= 1 else 0.0
        if self.kind == "chi2":
            return float((stats.chi2.isf(alpha, self.df) * self.scale) ** (1.0 / self.power))
        if self.kind == "normal":
            return float(stats.norm.isf(alpha / 2) * self.scale)
        if self.kind == "gamma":
            return float(stats.gamma.isf(alpha, self.shape, scale=self.scale))
        if self.kind == "point":
            return float(np.nextafter(self.loc, np.inf))
        if self.kind == "empirical":
            values = self._empirical_values()
            allowed = math.floor(alpha * (values.size + 1) + 1e-9) - 1  # null values >= threshold
            if allowed < 0:
                return math.inf
            return float(np.nextafter(values[values.size - 1 - allowed], np.inf))
        return math.inf

    def _empirical_values(self) -> np.ndarray:
        assert self.values is not None, "an empirical null model holds its sorted values"
        return self.values


@dataclass(frozen=True)
class Calibration:
    """How one feature was calibrated: the null model, its source and the feature's p-value."""

    source: str
    null: NullModel
    p_value: float
    resamples: int = 0
    null_quantile: float | None = None


def _fit_resampled(values: np.ndarray, false_alarm_rate: float) -> tuple[NullModel, float]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return NullModel("never"), math.inf
    quantile = float(np.quantile(values, 1 - false_alarm_rate))
    mean, var = float(values.mean()), float(values.var())
    if var <= 1e-12 * max(mean * mean, 1e-300) or mean <= 0:
        return NullModel("point", loc=float(values.max())), quantile
    return NullModel("gamma", shape=mean * mean / var, scale=var / mean), quantile


def _empirical(values: np.ndarray, false_alarm_rate: float) -> tuple[NullModel, float]:
    values = np.sort(np.where(np.isfinite(values), values, np.inf))
    return NullModel("empirical", values=values), float(np.quantile(values, 1 - false_alarm_rate))


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _harmonic_size(n: int, m: int) -> tuple[int, float]:
    """Equal resample size ``s`` with about the same ``1/n + 1/m``, capped; and the rate ratio."""
    s = min(max(int(round(2 * n * m / (n + m))), 2), MAX_RESAMPLE_SIZE)
    return s, (1.0 / n + 1.0 / m) / (2.0 / s)


def _count_draws(buckets: int) -> int:
    return int(max(1000, min(COUNT_RESAMPLES, _COUNT_CELLS // max(buckets, 1))))


def _resample_buckets(
    method: str, ref_shares: np.ndarray, n: int, m: int, *, fixed_reference: bool, seed: int
) -> np.ndarray:
    """Sorted null values of a bucket statistic from simulated bucket counts (cached).

    The null depends only on the method, the reference bucket counts, the sizes and the
    seed, so features with the same bucket counts (e.g. continuous features in quantile
    buckets) share one simulation: the random stream is seeded from these, not from the name.
    """
    counts = tuple(int(c) for c in np.round(np.asarray(ref_shares, dtype=float) * n))
    if sum(counts) != n or min(counts, default=0) <= 0:  # shares that are not counts of n rows: no cache
        return _simulate_buckets(method, tuple(float(x) for x in ref_shares), n, m, fixed_reference, seed)
    return _simulate_buckets(method, counts, n, m, fixed_reference, seed)


@functools.lru_cache(maxsize=64)
def _simulate_buckets(method: str, weights: tuple, n: int, m: int, fixed_reference: bool, seed: int) -> np.ndarray:
    """Null values of a bucket statistic from simulated bucket counts.

    ``fixed_reference=False`` (categories, Sturges buckets): both samples are multinomial
    counts of sizes n and m with the reference shares. ``fixed_reference=True`` (reference-
    quantile buckets of a continuous feature): the reference shares are fixed by construction
    and the randomness is in the edges, so the true bucket masses are drawn from
    ``Dirichlet(reference counts)`` (the law of spacings between reference order statistics)
    and only the current counts are multinomial. This gets the heavy tail of PSI at small
    counts right (a current bucket is empty more often than a fixed-mass model predicts).
    """
    rng = np.random.default_rng([seed, zlib.crc32(repr((method, weights, n, m, fixed_reference)).encode())])
    p = np.asarray(weights, dtype=float)
    p = p / p.sum()
    draws = _count_draws(p.size)
    if fixed_reference:
        counts = np.maximum(np.round(p * n), 1e-3)
        ra = np.broadcast_to(p, (draws, p.size))
        c = rng.multinomial(m, rng.dirichlet(counts, size=draws))
        a = None
    else:
        a = rng.multinomial(n, p, size=draws)
        c = rng.multinomial(m, p, size=draws)
        ra = a / n
    if method == "unseen":
        seen = np.broadcast_to(p > 0, c.shape) if a is None else a > 0
        values = np.where(seen, 0, c).sum(axis=1) / m
    else:
        rc = c / m
        if method == "linf":
            values = np.abs(ra - rc).max(axis=1)
        elif method == "js":
            values = js_rows(ra, rc)
        else:
            values = psi_rows(ra, rc, np.ones(ra.shape, dtype=bool))
    values = np.sort(np.where(np.isfinite(values), values, np.inf))
    values.setflags(write=False)
    return values


def _wasserstein_null(ref: np.ndarray, n: int, m: int, rng) -> np.ndarray:
    """Null values of the normalised Wasserstein distance from reference resamples (vectorised):
    two samples of the harmonic size, each row sorted, ``mean |a - b| / std(a)``, rescaled to
    the real sizes by the root-n rate."""
    s, ratio = _harmonic_size(n, m)
    a = np.sort(ref[rng.integers(0, ref.size, size=(RESAMPLES, s))], axis=1)
    b = np.sort(ref[rng.integers(0, ref.size, size=(RESAMPLES, s))], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.abs(a - b).mean(axis=1) / a.std(axis=1)
    return np.where(np.isfinite(values), values, 0.0) * math.sqrt(ratio)


def calibrate_feature(
    name: str,
    method: str,
    kind: str,
    reference: pd.Series,
    current: pd.Series,
    *,
    score: float,
    p_value: float | None,
    n_ref: int,
    n_cur: int,
    bins: int = 10,
    binning: str = "quantile",
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    seed: int = 0,
) -> Calibration:
    """Null model of one feature's statistic at sizes ``n_ref``/``n_cur`` (non-missing rows).

    ``score``/``p_value`` are the method's result on the feature; see the module docstring
    for which null model each method gets.
    """
    far = false_alarm_rate
    if method == "ks":
        return Calibration("alpha", NullModel("p_value"), 1.0 if p_value is None else float(p_value))
    if method == "missing_share":
        nr, nc = len(reference), len(current)
        if nr == 0 or nc == 0:
            return Calibration("empty", NullModel("never"), 1.0)
        pr = float(pd.isna(reference).mean())
        if min(nr, nc) * min(pr, 1 - pr) >= MIN_EXPECTED_COUNT:
            null = NullModel("normal", scale=math.sqrt(pr * (1 - pr) * (1 / nr + 1 / nc)))
            return Calibration("analytic_normal", null, null.p_value(score, p_value))
        rng = _rng(seed, name)
        values = np.abs(rng.binomial(nc, pr, COUNT_RESAMPLES) / nc - rng.binomial(nr, pr, COUNT_RESAMPLES) / nr)
        null, q = _empirical(values, far)
        return Calibration("resampled", null, null.p_value(score, p_value), COUNT_RESAMPLES, q)
    if n_ref == 0 or n_cur == 0:
        return Calibration("empty", NullModel("never"), 1.0)

    ref_values = reference.dropna()
    if kind == CATEGORICAL:
        ref_counts = ref_values.value_counts().to_numpy(dtype=float)
        ref_shares = ref_counts / ref_counts.sum()
    else:
        ref_shares, _ = binned_shares(reference, current, bins=bins, binning=binning)
    if method == "chi2":
        k = len(set(ref_values.unique()) | set(current.dropna().unique()))
        null = NullModel("chi2_p", df=k - 1, factor=1 + n_cur / n_ref)
        return Calibration("two_sample_chi2", null, null.p_value(score, p_value))
    rng = _rng(seed, name)
    if method in ("psi", "js"):
        present = ref_shares[ref_shares > 0]
        if present.size >= 2 and present.min() * min(n_ref, n_cur) >= ANALYTIC_MIN_EXPECTED_COUNT:
            rate = 1.0 / n_ref + 1.0 / n_cur
            null = (
                NullModel("chi2", df=present.size - 1, scale=rate)
                if method == "psi"
                else NullModel("chi2", df=present.size - 1, scale=rate / 8, power=2)
            )
            return Calibration("analytic_chi2", null, null.p_value(score, p_value))
    if method == "wasserstein":
        ref = ref_values.to_numpy(dtype=float)
        values = _wasserstein_null(ref[np.isfinite(ref)], n_ref, n_cur, rng)
        null, q = _fit_resampled(values, far)
        return Calibration("resampled", null, null.p_value(score, p_value), RESAMPLES, q)
    # psi, js (small counts), linf, unseen: simulated bucket or category counts
    values = _resample_buckets(
        method, ref_shares, n_ref, n_cur, seed=seed, fixed_reference=kind != CATEGORICAL and binning == "quantile"
    )
    null, q = _empirical(values, far)
    return Calibration("resampled", null, null.p_value(score, p_value), values.size, q)


# -----------------------------------------------------------------------------------------
# Multiple testing
# -----------------------------------------------------------------------------------------


def benjamini_hochberg(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (same order as the input).

    ``p_adj[(i)] = min over j >= i of p[(j)] * k / j`` (sorted ascending, ``k`` tests),
    clipped to 1; a feature is a discovery at level ``q`` when ``p_adj <= q``::

        >>> benjamini_hochberg([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.04, 0.04]
    """
    p = np.asarray(p_values, dtype=float)
    k = p.size
    if k == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * k / np.arange(1, k + 1)
    adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(k)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def bh_level(p_values: Sequence[float] | np.ndarray, alpha: float) -> float:
    """The per-test level BH uses: ``alpha * r / k`` with ``r`` discoveries (``alpha / k`` when none)."""
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return float(alpha)
    discoveries = int(np.count_nonzero(benjamini_hochberg(p) <= alpha))
    return float(alpha * max(discoveries, 1) / p.size)


def decide_calibrated(
    calibrations: dict[str, Calibration],
    *,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    multiple_testing: str = "bh",
) -> dict[str, tuple[float, bool, dict]]:
    """``{feature: (threshold, drifted, calibration info)}`` for calibrated features.

    ``multiple_testing="bh"`` runs one Benjamini-Hochberg procedure over all of them at
    level ``false_alarm_rate``; ``"none"`` tests each at that level.
    """
    if multiple_testing not in MULTIPLE_TESTING:
        raise ValueError(
            "The 'multiple_testing' parameter of decide_calibrated must be 'bh' or 'none'. "
            f"Got {multiple_testing!r} instead."
        )
    names = list(calibrations)
    p = np.array([calibrations[n].p_value for n in names], dtype=float)
    if multiple_testing == "bh":
        adjusted = benjamini_hochberg(p)
        drifted = adjusted <= false_alarm_rate
        level = bh_level(p, false_alarm_rate)
    else:
        adjusted = p
        drifted = p <= false_alarm_rate
        level = false_alarm_rate
    out = {}
    for i, name in enumerate(names):
        cal = calibrations[name]
        info = {
            "source": cal.source,
            "false_alarm_rate": false_alarm_rate,
            "multiple_testing": multiple_testing,
            "p_value": float(p[i]),
            "level": float(level),
        }
        if multiple_testing == "bh":
            info["p_adjusted"] = float(adjusted[i])
        if cal.resamples:
            info["resamples"] = cal.resamples
            info["null_quantile"] = cal.null_quantile
        out[name] = (cal.null.threshold(level), bool(drifted[i]), info)
    return out


# -----------------------------------------------------------------------------------------
# Persistence
# -----------------------------------------------------------------------------------------


def persistent_alarm(history: Sequence[bool], current: bool, k: int, n: int) -> bool:
    """Whether at least ``k`` of the last ``n`` checks (``history`` then ``current``) drifted.

    ``history`` holds the *raw* dataset-level drift decisions of the previous monitor checks
    of the model, oldest first (e.g. ``DriftReport.dataset_drift``, as recorded in the ledger's
    monitor entries; record the raw value, not the persisted alarm, or one alarm would keep
    itself alive). Only the last ``n - 1`` entries are used; with fewer checks so far, the
    alarm still needs ``k`` drifted ones. ``k=1, n=1`` is the plain decision::

        >>> persistent_alarm([False, True], True, k=2, n=3)
        True
        >>> persistent_alarm([True, False, False], True, k=2, n=3)
        False
    """
    if not (isinstance(k, int) and isinstance(n, int) and 1 <= k <= n):
        raise ValueError(
            f"The 'k' and 'n' parameters of persistent_alarm must satisfy 1 <= k <= n. Got k={k!r}, n={n!r} instead."
        )
    window = [bool(h) for h in list(history)[-(n - 1) :]] if n > 1 else []
    return sum(window) + bool(current) >= k


def apply_persistence(drift_summary: dict, history: Sequence[bool], *, k: int, n: int) -> dict:
    """A copy of a ``DriftReport.to_dict()`` summary whose ``dataset_drift`` is the persistent alarm.

    The raw decision moves to ``dataset_drift_raw`` (store *that* in the ledger as the next
    check's history) and ``persistence`` records ``{k, n, drifted_checks}``::

        >>> apply_persistence({"dataset_drift": True}, [False, True], k=2, n=3)["dataset_drift"]
        True
    """
    raw = bool(drift_summary.get("dataset_drift_raw", drift_summary["dataset_drift"]))
    window = [bool(h) for h in list(history)[-(n - 1) :]] if n > 1 else []
    out = dict(drift_summary)
    out["dataset_drift_raw"] = raw
    out["dataset_drift"] = persistent_alarm(history, raw, k, n)
    out["persistence"] = {"k": k, "n": n, "drifted_checks": sum(window) + raw}
    return out
