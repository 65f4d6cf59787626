"""Benchmark: false alarms and detection of a fixed PSI threshold vs ``threshold: auto``.

Usage::

    .venv/bin/python benchmarks/false_alarm_bench.py [--trials T] [--sizes 100,1000,10000,100000,1000000]

For each size ``n`` and trial, a reference and a current frame of ``n`` rows each are drawn
from the SAME distributions: 10 numeric features (normal, log-normal, exponential, uniform,
Student t, a bimodal mixture, Poisson counts with ties, a rounded normal, beta, gamma) and 3
categorical ones (3, 6 and 12 categories, the largest with a 1% category). One
``compute_drift`` (PSI for every feature, quantile buckets, ``bins=10``) with
``threshold="auto"``, ``false_alarm_rate=0.01``, ``multiple_testing="bh"`` gives both rules:

* fixed: PSI >= 0.1 (the scores are the same PSI values);
* auto: the calibrated decision (analytic chi-square null for PSI where every bucket expects
  at least 50 rows, simulated bucket counts otherwise) with Benjamini-Hochberg across the 13 features.

A second current frame with a real shift (numeric ``num_0`` and ``num_1``: mean + 0.1 standard
deviation; categorical ``cat_0``: share of its first category + 5 points, taken from the
second) measures detection.

Reported per size (last stdout line, one JSON object keyed by size):

* ``far_fixed_psi`` / ``far_auto``: dataset-level false-alarm rate, the share of unchanged
  trials in which ANY feature was flagged (what BH at 0.01 controls);
* ``far_feature_fixed_psi`` / ``far_feature_auto``: per-feature false-alarm rate;
* ``detect_fixed_psi`` / ``detect_auto``: share of (trial, shifted feature) pairs flagged on
  the shifted data; ``detect_any_*``: share of shifted trials with any shifted feature flagged;
* ``trials``, ``seconds``.

The number of trials falls with ``n`` (``--trials`` at up to 10,000 rows, then about
``trials * 10,000 / n``, at least 5) so that the default run takes under 3 minutes on 2 cores.
Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd

from retrain_lib.stats.drift import compute_drift

NUMERIC = [f"num_{i}" for i in range(10)]
CATEGORICAL = ["cat_0", "cat_1", "cat_2"]
SHIFTED = ["num_0", "num_1", "cat_0"]
CAT_SHARES = {
    "cat_0": np.array([0.5, 0.3, 0.2]),
    "cat_1": np.array([0.3, 0.2, 0.2, 0.15, 0.1, 0.05]),
    "cat_2": np.r_[np.full(11, 0.99 / 11), 0.01],
}
FIXED_PSI = 0.1
FAR = 0.01


def _numeric(rng: np.random.Generator, i: int, n: int) -> np.ndarray:
    """Feature ``num_i``; each returns (values, standard deviation of the distribution)."""
    draws = [
        lambda: rng.normal(0, 1, n),
        lambda: rng.lognormal(0, 0.5, n),
        lambda: rng.exponential(2.0, n),
        lambda: rng.uniform(-1, 1, n),
        lambda: rng.standard_t(5, n),
        lambda: np.where(rng.random(n) < 0.3, rng.normal(-2, 0.5, n), rng.normal(1, 1, n)),
        lambda: rng.poisson(3, n).astype(float),
        lambda: np.round(rng.normal(50, 10, n)),
        lambda: rng.beta(2, 5, n),
        lambda: rng.gamma(2.0, 1.5, n),
    ]
    return draws[i]()


_SD = {"num_0": 1.0, "num_1": float(np.sqrt((np.exp(0.25) - 1) * np.exp(0.25)))}


def make_frame(rng: np.random.Generator, n: int, *, shifted: bool = False) -> pd.DataFrame:
    data = {}
    for i, name in enumerate(NUMERIC):
        values = _numeric(rng, i, n)
        if shifted and name in _SD:
            values = values + 0.1 * _SD[name]
        data[name] = values
    for name in CATEGORICAL:
        p = CAT_SHARES[name].copy()
        if shifted and name in SHIFTED:
            p[0] += 0.05
            p[1] -= 0.05
        labels = np.array([f"{name}_{k}" for k in range(p.size)])
        data[name] = labels[rng.choice(p.size, size=n, p=p)]
    return pd.DataFrame(data)


def flags(reference: pd.DataFrame, current: pd.DataFrame) -> tuple[dict[str, bool], dict[str, bool]]:
    report = compute_drift(
        reference,
        current,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        method="psi",
        categorical_method="psi",
        threshold="auto",
        false_alarm_rate=FAR,
        multiple_testing="bh",
    )
    fixed = {f.name: f.score >= FIXED_PSI for f in report.features}
    auto = {f.name: f.drifted for f in report.features}
    return fixed, auto


def trials_for(n: int, trials: int) -> int:
    return trials if n <= 10_000 else max(5, int(trials * 10_000 / n))


def run_size(n: int, trials: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, n])
    counts = {
        k: 0
        for k in (
            "any_fixed",
            "any_auto",
            "feat_fixed",
            "feat_auto",
            "det_fixed",
            "det_auto",
            "det_any_fixed",
            "det_any_auto",
        )
    }
    start = time.perf_counter()
    for _ in range(trials):
        reference = make_frame(rng, n)
        fixed, auto = flags(reference, make_frame(rng, n))
        counts["any_fixed"] += any(fixed.values())
        counts["any_auto"] += any(auto.values())
        counts["feat_fixed"] += sum(fixed.values())
        counts["feat_auto"] += sum(auto.values())
        fixed, auto = flags(reference, make_frame(rng, n, shifted=True))
        counts["det_fixed"] += sum(fixed[c] for c in SHIFTED)
        counts["det_auto"] += sum(auto[c] for c in SHIFTED)
        counts["det_any_fixed"] += any(fixed[c] for c in SHIFTED)
        counts["det_any_auto"] += any(auto[c] for c in SHIFTED)
    features = len(NUMERIC) + len(CATEGORICAL)
    return {
        "trials": trials,
        "far_fixed_psi": counts["any_fixed"] / trials,
        "far_auto": counts["any_auto"] / trials,
        "far_feature_fixed_psi": round(counts["feat_fixed"] / (trials * features), 5),
        "far_feature_auto": round(counts["feat_auto"] / (trials * features), 5),
        "detect_fixed_psi": round(counts["det_fixed"] / (trials * len(SHIFTED)), 4),
        "detect_auto": round(counts["det_auto"] / (trials * len(SHIFTED)), 4),
        "detect_any_fixed_psi": counts["det_any_fixed"] / trials,
        "detect_any_auto": counts["det_any_auto"] / trials,
        "seconds": round(time.perf_counter() - start, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200, help="trials per size up to 10,000 rows")
    parser.add_argument("--sizes", default="100,1000,10000,100000,1000000")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    out = {}
    for n in sizes:
        out[str(n)] = run_size(n, trials_for(n, args.trials), args.seed)
        print(f"n={n}: {out[str(n)]}", file=sys.stderr, flush=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
