"""Benchmark: this platform's drift check against Evidently's DataDriftPreset, same data.

Usage::

    .venv/bin/python benchmarks/drift_bench.py [--rows N --cols C --cat-cols K --seed S --method M]

Generates a reference and a current frame of ``--rows`` rows each with ``--cols`` numeric
and ``--cat-cols`` categorical (string) columns; the current frame is shifted in about a
third of the columns (mean or scale shift, changed category shares, one new category) and a
few numeric columns have missing values. Then, in one process on the same frames:

* ours: ``retrain_lib.stats.drift.compute_drift`` with ``method`` for numeric and categorical
  columns (PSI by default). For PSI and JS it runs with ``binning="sturges_combined"``,
  the binning Evidently's stattests use (Sturges' rule over reference + current when the
  reference has more than 20 distinct values, else one bucket per value; NaN and +-inf
  dropped), so both compute the score on the SAME buckets. ``ours_native_s`` is the time of
  the platform's default configuration (reference-quantile buckets, ``bins=10``), whose
  scores are not compared because its buckets differ.
* Evidently 0.7: ``Report([DataDriftPreset(method=M)])`` run on ``Dataset.from_pandas`` of
  both frames with an explicit ``DataDefinition``; the per-column scores are the ``value``
  of each ``ValueDrift`` metric in ``snapshot.dict()["metrics"]``. ``evidently_s`` covers
  building the datasets and running the report; importing Evidently is measured apart
  (``evidently_import_s``) and so is ``snapshot.dict()`` (``evidently_dict_s``).

What is compared: ``max_abs_diff`` is the largest absolute difference between our score and
Evidently's score over all columns (PSI values for ``--method psi``; for ``ks`` Evidently
reports the p-value and so do we). ``speedup = evidently_s / ours_s``.

Memory: ``ours_peak_mb`` is the peak of memory allocated during ``compute_drift`` as
``tracemalloc`` sees it (a separate, untimed run; NumPy and pandas buffers are traced),
``input_mb`` the deep memory usage of the reference plus the current frame.

The last line of stdout is one JSON object: ``rows, cols, cat_cols, method, ours_s,
ours_native_s, evidently_s, evidently_import_s, evidently_dict_s, speedup, max_abs_diff,
ours_peak_mb, input_mb, peak_ratio, cores``. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
import tracemalloc
import warnings

import numpy as np
import pandas as pd

from retrain_lib.stats.drift import compute_drift


def make_frames(rows: int, cols: int, cat_cols: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, list, list]:
    """Reference and current frames; the current one drifts in about a third of the columns."""
    rng = np.random.default_rng(seed)
    ref: dict[str, np.ndarray] = {}
    cur: dict[str, np.ndarray] = {}
    numeric = [f"num_{i:03d}" for i in range(cols)]
    categorical = [f"cat_{i:03d}" for i in range(cat_cols)]
    for i, name in enumerate(numeric):
        kind = i % 5
        shifted = i % 3 == 0
        if kind == 0:
            ref[name] = rng.normal(0.0, 1.0, rows)
            cur[name] = rng.normal(0.3 if shifted else 0.0, 1.0, rows)
        elif kind == 1:
            ref[name] = rng.lognormal(3.0, 0.6, rows)
            cur[name] = rng.lognormal(3.0, 0.9 if shifted else 0.6, rows)
        elif kind == 2:  # integer valued with ties (more than 20 distinct values)
            ref[name] = rng.poisson(40, rows).astype(float)
            cur[name] = rng.poisson(44 if shifted else 40, rows).astype(float)
        elif kind == 3:
            ref[name] = rng.uniform(-5, 5, rows)
            cur[name] = rng.uniform(-4 if shifted else -5, 5, rows)
        else:  # rounded, heavy ties
            ref[name] = rng.exponential(10, rows).round(1)
            cur[name] = rng.exponential(12 if shifted else 10, rows).round(1)
        if i % 7 == 3:  # missing values
            for arr in (ref[name], cur[name]):
                arr[rng.random(rows) < 0.02] = np.nan
    labels = np.array([f"level_{j:02d}" for j in range(13)], dtype=object)
    for i, name in enumerate(categorical):
        k = 12
        p = rng.dirichlet(np.ones(k) * 3)
        ref[name] = labels[rng.choice(k, rows, p=p)]
        if i % 3 == 0:
            q = rng.dirichlet(np.ones(k) * 3)
            cur[name] = labels[rng.choice(k, rows, p=q)]
        elif i % 3 == 1:  # a category the reference never had
            q = np.append(p * 0.97, 0.03)
            cur[name] = labels[rng.choice(k + 1, rows, p=q / q.sum())]
        else:
            cur[name] = labels[rng.choice(k, rows, p=p)]
    return pd.DataFrame(ref), pd.DataFrame(cur), numeric, categorical


def run_ours(ref, cur, numeric, categorical, method: str, binning: str):
    return compute_drift(
        ref,
        cur,
        numeric=numeric,
        categorical=categorical,
        method=method,
        categorical_method=method if method in ("psi", "js") else "psi",
        binning=binning,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cols", type=int, default=50)
    p.add_argument("--cat-cols", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", choices=["psi", "js", "ks", "wasserstein"], default="psi")
    args = p.parse_args(argv)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    ref, cur, numeric, categorical = make_frames(args.rows, args.cols, args.cat_cols, args.seed)
    # ks and wasserstein are numeric-only in Evidently too: categorical columns use psi on both sides
    method = args.method
    binning = "sturges_combined" if method in ("psi", "js") else "quantile"
    input_mb = (ref.memory_usage(deep=True).sum() + cur.memory_usage(deep=True).sum()) / 2**20
    say(f"data: {args.rows} rows x {args.cols} numeric + {args.cat_cols} categorical, {input_mb:.0f} MiB")

    # warm up: the first call imports scipy.stats (Evidently's import does that too, untimed)
    run_ours(ref.head(50), cur.head(50), numeric, categorical, method, binning)
    gc.collect()
    t0 = time.perf_counter()
    ours = run_ours(ref, cur, numeric, categorical, method, binning)
    ours_s = time.perf_counter() - t0
    say(f"ours ({method}, {binning}): {ours_s:.2f} s")

    gc.collect()
    t0 = time.perf_counter()
    run_ours(ref, cur, numeric, categorical, method, "quantile")
    ours_native_s = time.perf_counter() - t0
    say(f"ours (default reference-quantile bins): {ours_native_s:.2f} s")

    gc.collect()
    tracemalloc.start()
    run_ours(ref, cur, numeric, categorical, method, binning)
    ours_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    say(f"ours peak traced memory: {ours_peak_mb:.0f} MiB")

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # third-party deprecation warnings on import
        from evidently import DataDefinition, Dataset, Report
        from evidently.presets import DataDriftPreset
    evidently_import_s = time.perf_counter() - t0

    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
        ref_ds = Dataset.from_pandas(ref, data_definition=definition)
        cur_ds = Dataset.from_pandas(cur, data_definition=definition)
        evidently_name = {"js": "jensenshannon"}.get(method, method)
        preset = DataDriftPreset(method=evidently_name, cat_method="psi" if method in ("ks", "wasserstein") else None)
        snapshot = Report([preset]).run(current_data=cur_ds, reference_data=ref_ds)
        evidently_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        metrics = snapshot.dict()["metrics"]
        evidently_dict_s = time.perf_counter() - t0
    say(f"evidently: {evidently_s:.2f} s (+ import {evidently_import_s:.2f} s, dict {evidently_dict_s:.2f} s)")

    theirs = {
        m["config"]["column"]: float(m["value"]) for m in metrics if m["config"].get("type", "").endswith("ValueDrift")
    }
    mine = {f.name: (f.p_value if f.p_value is not None else f.score) for f in ours.features}
    missing = sorted(set(mine) ^ set(theirs))
    if missing:
        raise SystemExit(f"columns scored by only one side: {missing}")
    diffs = {name: abs(mine[name] - theirs[name]) for name in mine}
    worst = max(diffs, key=diffs.get) if diffs else None
    if worst is not None:
        say(f"largest difference: {worst}: ours {mine[worst]!r} evidently {theirs[worst]!r}")

    result = {
        "rows": args.rows,
        "cols": args.cols,
        "cat_cols": args.cat_cols,
        "method": method,
        "ours_s": round(ours_s, 4),
        "ours_native_s": round(ours_native_s, 4),
        "evidently_s": round(evidently_s, 4),
        "evidently_import_s": round(evidently_import_s, 4),
        "evidently_dict_s": round(evidently_dict_s, 4),
        "speedup": round(evidently_s / ours_s, 2),
        "max_abs_diff": max(diffs.values()) if diffs else 0.0,
        "ours_peak_mb": round(ours_peak_mb, 1),
        "input_mb": round(float(input_mb), 1),
        "peak_ratio": round(ours_peak_mb / float(input_mb), 3),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
