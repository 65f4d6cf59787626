"""Change detection for adaptation: the performance drop as a test and the day the champion's
daily metric changed.

* :func:`drop_test`: a drop of the live metric is declared when it is significant at the
  configured false-alarm rate for the rows of the day (bootstrap standard errors of the live
  metric and of the baseline) and at least ``min_effect``; a fixed threshold fires on noise
  at 100 rows a day and misses real drops at 100,000.
* :func:`change_day`: the day the champion's daily metric shifted down (the split of the
  daily series with the largest significant mean difference), or ``None``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from retrain_lib.core.metrics import greater_is_better, resampled_metric

# -----------------------------------------------------------------------------------------
# The drop as a test
# -----------------------------------------------------------------------------------------


def bootstrap_se(task: str, metric: str, y, scores, *, n_resamples: int = 200, seed: int = 0) -> float:
    """Standard error of ``metric`` on these rows (bootstrap, seeded); NaN below 2 rows."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    if n < 2:
        return math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    counts = np.bincount((idx + (np.arange(n_resamples) * n)[:, None]).ravel(), minlength=n_resamples * n).reshape(
        n_resamples, n
    )
    values = np.asarray(resampled_metric(task, metric, y, scores, counts), dtype=float)
    values = values[np.isfinite(values)]
    return float(values.std(ddof=1)) if len(values) > 1 else math.nan


def z_limit(false_alarm_rate: float) -> float:
    """One-sided normal quantile: a drop this many standard errors large happens by chance
    with probability ``false_alarm_rate``."""
    from scipy.stats import norm

    return float(norm.ppf(1 - false_alarm_rate))


@dataclass(frozen=True)
class DropTest:
    """The live metric against the baseline as a one-sided test of a drop."""

    metric: str
    live: float
    baseline: float
    drop: float  # in the metric's bad direction: positive = worse
    live_se: float
    baseline_se: float
    z: float
    z_limit: float
    min_effect: float
    rows: int
    false_alarm_rate: float
    significant: bool

    def explain(self) -> str:
        verdict = "a significant drop" if self.significant else "no significant drop"
        return (
            f"{self.metric} {self.live:.4f} vs {self.baseline:.4f}: drop {self.drop:+.4f} = {self.z:.1f} standard "
            f"errors on {self.rows} labelled rows (limit {self.z_limit:.2f} for a false-alarm rate of "
            f"{self.false_alarm_rate:g} per check; min_effect {self.min_effect:g}): {verdict}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def drop_test(
    live: float,
    baseline: float,
    metric: str,
    *,
    live_se: float,
    baseline_se: float,
    rows: int,
    false_alarm_rate: float,
    min_effect: float = 0.0,
) -> DropTest:
    """Is ``live`` worse than ``baseline`` beyond noise (and by at least ``min_effect``)?

    The standard error of the difference is ``sqrt(live_se**2 + baseline_se**2)`` (a NaN
    baseline error counts as 0). A NaN live value or baseline is never significant.

    >>> t = drop_test(0.80, 0.90, "accuracy", live_se=0.01, baseline_se=0.005, rows=1000, false_alarm_rate=0.001)
    >>> t.significant, round(t.z, 1)
    (True, 8.9)
    """
    limit = z_limit(false_alarm_rate)
    if any(v is None or not math.isfinite(v) for v in (live, baseline)):
        return DropTest(
            metric,
            float(live if live is not None else math.nan),
            float(baseline if baseline is not None else math.nan),
            math.nan,
            live_se,
            baseline_se,
            math.nan,
            limit,
            min_effect,
            rows,
            false_alarm_rate,
            False,
        )
    drop = (baseline - live) if greater_is_better(metric) else (live - baseline)
    se = math.sqrt(sum(v * v for v in (live_se, baseline_se) if v is not None and math.isfinite(v)))
    z = drop / se if se > 0 else (math.inf if drop > 0 else 0.0)
    return DropTest(
        metric,
        float(live),
        float(baseline),
        float(drop),
        float(live_se),
        float(baseline_se),
        float(z),
        limit,
        float(min_effect),
        int(rows),
        float(false_alarm_rate),
        bool(z >= limit and drop >= min_effect and drop > 0),
    )


# -----------------------------------------------------------------------------------------
# The change day
# -----------------------------------------------------------------------------------------


def change_day(daily: dict[str, float], rows: dict[str, int], metric: str, *, z: float = 3.0) -> str | None:
    """The first day of the later part of the daily series when it splits into an earlier
    and a later part whose row-weighted means differ, the later worse, by at least ``z``
    standard errors (the days' scatter around their part's mean, pooled); ``None`` when no
    split is that clear. One change point: the split with the largest such statistic.

    >>> days = {f"2026-03-{d:02d}": (0.9 if d < 8 else 0.6) + 0.01 * (d % 2) for d in range(1, 11)}
    >>> change_day(days, {d: 500 for d in days}, "accuracy")
    '2026-03-08'
    """
    names = sorted(d for d in daily if daily[d] is not None and math.isfinite(daily[d]))
    if len(names) < 3:
        return None
    sign = 1.0 if greater_is_better(metric) else -1.0
    v = np.array([sign * daily[d] for d in names])
    w = np.array([max(int(rows.get(d, 1)), 1) for d in names], dtype=float)
    best, best_day = z, None
    for k in range(1, len(names)):
        a, b = slice(0, k), slice(k, None)
        ma, mb = np.average(v[a], weights=w[a]), np.average(v[b], weights=w[b])
        if mb >= ma:
            continue
        resid = np.concatenate([v[a] - ma, v[b] - mb])
        dof = len(names) - 2
        # per-day variance scaled by rows: var(day) ~ s2 / rows
        s2 = float((w * resid**2).sum() / dof) if dof > 0 else math.nan
        if not math.isfinite(s2) or s2 <= 0:
            s2 = 1e-12
        se = math.sqrt(s2 / w[a].sum() + s2 / w[b].sum())
        stat = (ma - mb) / se
        if stat > best:
            best, best_day = stat, names[k]
    return best_day
