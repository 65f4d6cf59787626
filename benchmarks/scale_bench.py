"""Scale: drift checks from a stored reference profile over parquet windows larger than memory.

Usage::

    .venv/bin/python benchmarks/scale_bench.py [--rows 20000000 --days 10 --num-cols 50 --cat-cols 10
        --wide-rows 3000000 --wide-cols 1000 --wide-days 4 --workers 2 --sample-rows 200000]

What it does (all generated data under a temporary directory, ``--tmp``, deleted at the end):

1. A reference sample (``--sample-rows`` rows, in memory) gives the spec (its quantile edges)
   and the stored reference profile (a JSON file, read back as the monitor would).
2. A current window of ``--rows`` rows x (``--num-cols`` numeric + ``--cat-cols`` categorical)
   in ``--days`` daily parquet partitions, generated and written in chunks (never the window
   in memory); a third of the numeric columns drift, some have NaN and +-inf, one categorical
   column has a category the reference never had.
3. The timed run, in a child process: ``profile_window`` over the partitions (cold cache,
   ``--workers`` processes) and ``compare_profiles`` against the stored reference profile
   (PSI for every feature, the platform's default). ``seconds`` is its wall time,
   ``peak_mb`` the peak RSS of that child plus the peak RSS of each of its worker processes
   (``VmHWM``; an upper bound of the memory they held at once). ``peak_mb_at_1_10th`` is the
   same run on a tenth of the rows (same partitions, each a tenth as long). After it, KS from
   the sketches on the full window is timed apart (``ks_compare_s``): SciPy's p-value
   (``kstwo.sf``, as on the exact path) alone costs up to about a second per column here.
4. Exactness on a sample that fits in memory: one more partition of ``--sample-rows`` rows,
   profiled by the same streaming reader, compared with the reference profile and, exactly,
   by ``compute_drift`` on the pandas frames: ``max_abs_diff_binned`` (PSI, JS,
   missing_share; chi2, L-inf, unseen for categories: scores and p-values), ``ks_max_error``
   vs ``ks_error_bound`` (the largest KS statistic error and the largest stated bound).
5. The wide case: ``--wide-rows`` x ``--wide-cols`` numeric (float32 on disk) in
   ``--wide-days`` partitions, a stored reference profile from a 20,000-row sample, the same
   timed run (PSI): ``wide_seconds``, ``wide_peak_mb``.

The last line of stdout is one JSON object with ``rows, cols, seconds, rows_per_s, peak_mb,
peak_mb_at_1_10th, max_abs_diff_binned, ks_max_error, ks_error_bound, wide_rows, wide_cols,
wide_seconds, wide_peak_mb, workers, cores, load_avg`` and a few more. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHUNK_ROWS = 250_000
VOCAB = np.array(["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"])


def log(msg: str) -> None:
    print(f"[scale_bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def numeric_names(n: int) -> list[str]:
    return [f"num_{i:04d}" for i in range(n)]


def categorical_names(n: int) -> list[str]:
    return [f"cat_{i:02d}" for i in range(n)]


def gen_numeric(rng: np.random.Generator, i: int, n: int, drift: bool, dtype=np.float64) -> np.ndarray:
    """Column ``i``: a mix of shapes; a third of them shifted when ``drift``; some NaN and +-inf."""
    shifted = drift and i % 3 == 0
    kind = i % 4
    if kind == 0:
        x = rng.standard_normal(n, dtype=np.float32 if dtype == np.float32 else np.float64) + (0.2 if shifted else 0.0)
    elif kind == 1:
        x = rng.lognormal(1.0, 0.8 if shifted else 0.6, n)
    elif kind == 2:
        x = rng.poisson(44 if shifted else 40, n).astype(float)
    else:
        x = rng.exponential(12.0 if shifted else 10.0, n).round(1)
    x = x.astype(dtype, copy=False)
    if i % 7 == 3:
        x[rng.random(n) < 0.03] = np.nan
    if i % 11 == 5 and n > 4:
        x[rng.integers(0, n, 2)] = np.inf
        x[rng.integers(0, n, 1)] = -np.inf
    return x


def gen_categorical(rng: np.random.Generator, j: int, n: int, drift: bool):
    """Column ``j`` as an arrow string array: category shares reversed in half of them when
    ``drift``, a category the reference never had in one, missing values in a third."""
    import pyarrow as pa
    import pyarrow.compute as pc

    p = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02])
    if drift and j % 2 == 0:
        p = p[::-1].copy()
    idx = np.searchsorted(np.cumsum(p / p.sum()), rng.random(n), side="right").clip(0, len(VOCAB) - 1)
    if drift and j == 1:
        idx[rng.random(n) < 0.02] = len(VOCAB)  # "unseen_cat"
    mask = (rng.random(n) < 0.05) if j % 3 == 2 else None
    return pc.take(pa.array([*VOCAB, "unseen_cat"], pa.string()), pa.array(idx, mask=mask))


def gen_chunk(rng, n: int, num: int, cat: int, drift: bool, dtype=np.float64):
    import pyarrow as pa

    arrays = {name: pa.array(gen_numeric(rng, i, n, drift, dtype)) for i, name in enumerate(numeric_names(num))}
    arrays |= {name: gen_categorical(rng, j, n, drift) for j, name in enumerate(categorical_names(cat))}
    return pa.table(arrays)


def write_partition(path: Path, rows: int, num: int, cat: int, *, seed: int, drift: bool, dtype=np.float64) -> None:
    """One parquet file of ``rows`` rows written in chunks (one row group per chunk)."""
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    chunk = max(1, min(CHUNK_ROWS, (64 << 20) // (8 * max(num + cat, 1))))
    writer = None
    try:
        for start in range(0, rows, chunk):
            table = gen_chunk(rng, min(chunk, rows - start), num, cat, drift, dtype)
            if writer is None:
                writer = pq.ParquetWriter(
                    path, table.schema, compression="snappy", use_dictionary=categorical_names(cat) or False
                )
            writer.write_table(table, row_group_size=chunk)
    finally:
        if writer is not None:
            writer.close()


def write_window(root: Path, rows: int, days: int, num: int, cat: int, *, seed: int, dtype=np.float64) -> list[Path]:
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    per_day = [rows // days + (1 if d < rows % days else 0) for d in range(days)]
    for d, n in enumerate(per_day):
        path = root / f"2026-11-{d + 1:02d}.parquet"
        write_partition(path, n, num, cat, seed=seed + d, drift=True, dtype=dtype)
        paths.append(path)
    return paths


def reference_frame(rows: int, num: int, cat: int, seed: int):
    rng = np.random.default_rng(seed)
    return gen_chunk(rng, rows, num, cat, False).to_pandas()


def store_reference(path: Path, rows: int, num: int, cat: int, seed: int):
    """Spec + reference profile of a generated reference sample, stored as JSON; the frame."""
    from retrain_lib.stats.profile import profile_frame, spec_from_frame

    ref = reference_frame(rows, num, cat, seed)
    spec = spec_from_frame(ref, numeric_names(num), categorical_names(cat))
    path.write_text(json.dumps(profile_frame(ref, spec).to_dict()))
    return ref


# -----------------------------------------------------------------------------------------
# The timed run (child process)
# -----------------------------------------------------------------------------------------


def child_run(args: argparse.Namespace) -> None:
    """Profile the window, compare with the stored reference; print one JSON line."""
    from retrain_lib.stats.profile import Profile
    from retrain_lib.stats.profile_drift import compare_profiles
    from retrain_lib.store.profile_scan import ScanStats, peak_rss_mb, profile_window

    t0 = time.perf_counter()
    reference = Profile.from_dict(json.loads(Path(args.child_reference).read_text()))
    parts = sorted(Path(args.child_window).glob("*.parquet"))
    stats = ScanStats()
    current = profile_window(
        parts, reference.spec, Path(args.child_cache), workers=args.workers, batch_rows=args.batch_rows, stats=stats
    )
    psi = compare_profiles(reference, current, method="psi", categorical_method="psi")
    seconds = time.perf_counter() - t0
    ks_s = None
    ks_drifted = ks_bound = None
    if args.child_ks:  # SciPy's KS p-value costs up to ~1 s per column at these sizes (as on the exact path)
        t1 = time.perf_counter()
        ks = compare_profiles(reference, current, method="ks", categorical_method="chi2")
        ks_s = time.perf_counter() - t1
        ks_drifted = len(ks.drifted)
        ks_bound = ks.extra.get("sketch", {}).get("ks_rank_error_bound")
    own = peak_rss_mb()
    out = {
        "seconds": seconds,
        "rows": current.rows,
        "peak_mb": own + sum(stats.peak_rss_mb.values()),
        "parent_peak_mb": own,
        "worker_peak_mb": sorted(stats.peak_rss_mb.values()),
        "files_opened": stats.files_opened,
        "drifted_psi": len(psi.drifted),
        "drifted_ks": ks_drifted,
        "ks_compare_s": ks_s,
        "ks_rank_error_bound": ks_bound,
    }
    print(json.dumps(out))


def timed_run(window: Path, reference: Path, cache: Path, args: argparse.Namespace, *, ks: bool = False) -> dict:
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child-window",
        str(window),
        "--child-reference",
        str(reference),
        "--child-cache",
        str(cache),
        "--workers",
        str(args.workers),
        "--batch-rows",
        str(args.batch_rows),
    ] + (["--child-ks"] if ks else [])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"profiling run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


# -----------------------------------------------------------------------------------------
# Exactness on a sample that fits in memory
# -----------------------------------------------------------------------------------------


def exactness(tmp: Path, ref_frame, reference_path: Path, args: argparse.Namespace) -> dict:
    import pandas as pd

    from retrain_lib.stats.drift import compute_drift
    from retrain_lib.stats.profile import Profile
    from retrain_lib.stats.profile_drift import compare_profiles
    from retrain_lib.store.profile_scan import profile_partition

    sample_path = tmp / "sample.parquet"
    write_partition(sample_path, args.sample_rows, args.num_cols, args.cat_cols, seed=args.seed + 999, drift=True)
    reference = Profile.from_dict(json.loads(reference_path.read_text()))
    streamed = profile_partition(sample_path, reference.spec, batch_rows=args.batch_rows)
    frame = pd.read_parquet(sample_path)
    num, cat = numeric_names(args.num_cols), categorical_names(args.cat_cols)
    diff = 0.0
    for m, cm in (("psi", "psi"), ("js", "js"), ("missing_share", "chi2"), ("psi", "linf"), ("psi", "unseen")):
        exact = compute_drift(ref_frame, frame, numeric=num, categorical=cat, method=m, categorical_method=cm)
        ours = compare_profiles(reference, streamed, method=m, categorical_method=cm)
        for a, b in zip(ours.features, exact.features, strict=True):
            diff = max(diff, abs(a.score - b.score))
            if a.p_value is not None or b.p_value is not None:
                diff = max(diff, abs((a.p_value or 0.0) - (b.p_value or 0.0)))
        if m == "missing_share":  # categorical missing_share too
            exact = compute_drift(ref_frame, frame, numeric=[], categorical=cat, categorical_method=m)
            ours = compare_profiles(reference, streamed, numeric=[], categorical_method=m)
            for a, b in zip(ours.features, exact.features, strict=True):
                diff = max(diff, abs(a.score - b.score))
    out: dict = {"max_abs_diff_binned": diff}
    for m in ("ks", "wasserstein"):
        exact = compute_drift(ref_frame, frame, numeric=num, categorical=[], method=m)
        ours = compare_profiles(reference, streamed, categorical=[], method=m)
        bounds = ours.extra["sketch"]["features"]
        errors = [
            abs(a.score - b.score)
            for a, b in zip(ours.features, exact.features, strict=True)
            if np.isfinite(a.score) and np.isfinite(b.score)
        ]
        within = all(
            abs(a.score - b.score) <= bounds[a.name]["error_bound"] + 1e-12
            for a, b in zip(ours.features, exact.features, strict=True)
            if np.isfinite(a.score) and np.isfinite(b.score)
        )
        out[f"{m}_max_error"] = max(errors, default=0.0)
        out[f"{m}_error_bound"] = max((b["error_bound"] for b in bounds.values()), default=0.0)
        out[f"{m}_within_bound"] = within
    sample_path.unlink()
    return out


# -----------------------------------------------------------------------------------------
# Main
# -----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--num-cols", type=int, default=50)
    ap.add_argument("--cat-cols", type=int, default=10)
    ap.add_argument("--wide-rows", type=int, default=3_000_000)
    ap.add_argument("--wide-cols", type=int, default=1000)
    ap.add_argument("--wide-days", type=int, default=4)
    ap.add_argument("--sample-rows", type=int, default=200_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-rows", type=int, default=65_536)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="where to write generated data (default: a new dir under /tmp)")
    ap.add_argument("--child-window", help=argparse.SUPPRESS)
    ap.add_argument("--child-reference", help=argparse.SUPPRESS)
    ap.add_argument("--child-cache", help=argparse.SUPPRESS)
    ap.add_argument("--child-ks", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child_window:
        child_run(args)
        return {}
    load_avg = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="scale_bench_", dir=args.tmp))
    result: dict = {"load_avg": [round(x, 2) for x in load_avg], "cores": os.cpu_count(), "workers": args.workers}
    try:
        ref_path = tmp / "reference_profile.json"
        log(f"reference sample {args.sample_rows} rows -> stored profile")
        ref_frame = store_reference(ref_path, args.sample_rows, args.num_cols, args.cat_cols, args.seed)

        log("exactness on the in-memory sample")
        result |= exactness(tmp, ref_frame, ref_path, args)
        del ref_frame

        tenth = max(args.days, args.rows // 10)
        log(f"window of {tenth} rows (1/10th)")
        small = write_window(tmp / "window_tenth", tenth, args.days, args.num_cols, args.cat_cols, seed=args.seed + 100)
        run_small = timed_run(small[0].parent, ref_path, tmp / "cache_tenth", args)
        shutil.rmtree(small[0].parent)
        log(f"1/10th: {run_small}")

        log(f"window of {args.rows} rows in {args.days} partitions: writing")
        t = time.perf_counter()
        big = write_window(tmp / "window", args.rows, args.days, args.num_cols, args.cat_cols, seed=args.seed + 100)
        result["generate_s"] = round(time.perf_counter() - t, 1)
        result["window_gb"] = round(sum(p.stat().st_size for p in big) / 1e9, 2)
        log("profiling the window")
        run = timed_run(big[0].parent, ref_path, tmp / "cache", args, ks=True)
        log(f"full: {run}")
        shutil.rmtree(big[0].parent)
        result |= {
            "rows": run["rows"],
            "cols": args.num_cols + args.cat_cols,
            "seconds": round(run["seconds"], 3),
            "rows_per_s": round(run["rows"] / run["seconds"]),
            "peak_mb": round(run["peak_mb"], 1),
            "peak_mb_at_1_10th": round(run_small["peak_mb"], 1),
            "peak_ratio": round(run["peak_mb"] / run_small["peak_mb"], 3),
            "parent_peak_mb": round(run["parent_peak_mb"], 1),
            "worker_peak_mb": [round(x, 1) for x in run["worker_peak_mb"]],
            "drifted_psi": run["drifted_psi"],
            "drifted_ks": run["drifted_ks"],
            "ks_compare_s": round(run["ks_compare_s"], 2),
            "ks_rank_error_bound_window": run["ks_rank_error_bound"],
        }

        if args.wide_rows > 0 and args.wide_cols > 0:
            wide_ref = tmp / "wide_reference_profile.json"
            store_reference(wide_ref, min(20_000, max(args.wide_rows, 100)), args.wide_cols, 0, args.seed + 7)
            log(f"wide window {args.wide_rows} x {args.wide_cols}: writing")
            wide = write_window(
                tmp / "wide", args.wide_rows, args.wide_days, args.wide_cols, 0, seed=args.seed + 300, dtype=np.float32
            )
            result["wide_gb"] = round(sum(p.stat().st_size for p in wide) / 1e9, 2)
            log("profiling the wide window")
            wrun = timed_run(wide[0].parent, wide_ref, tmp / "cache_wide", args)
            log(f"wide: {wrun}")
            shutil.rmtree(wide[0].parent)
            result |= {
                "wide_rows": wrun["rows"],
                "wide_cols": args.wide_cols,
                "wide_seconds": round(wrun["seconds"], 3),
                "wide_peak_mb": round(wrun["peak_mb"], 1),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
