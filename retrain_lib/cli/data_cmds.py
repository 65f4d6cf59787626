"""``retrain simulate`` and ``retrain drift``: write sample daily partitions with a drift,
and compare two data files feature by feature."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

from retrain_lib.cli.output import say
from retrain_lib.cli.parsing import add_format, parse_date
from retrain_lib.core.config import load_model_config
from retrain_lib.core.errors import EXIT_FAILED, EXIT_OK, DataError
from retrain_lib.core.settings import load_settings
from retrain_lib.store.parquet_io import read_parquet


def cmd_simulate(args) -> int:
    # lazy: pandas; each command loads only what it runs
    from retrain_lib.tools.simulate import simulate

    settings = load_settings(args.config_dir)
    cfg = load_model_config(args.config, settings.platform)
    out = Path(args.out) if args.out else settings.data_root
    say(args, f"simulating {args.days} day(s) of {args.rows_per_day} rows for {cfg.name} under {out}")
    res = simulate(
        cfg,
        out,
        days=args.days,
        start=args.start,
        drift_day=args.drift_day,
        drift_kind=args.drift_kind,
        rows_per_day=args.rows_per_day,
        seed=args.seed,
    )
    summary = {
        "model": cfg.name,
        "out": str(out / (cfg.data.path or cfg.name)),
        "days": res.days,
        "rows": res.rows,
        "start": res.start.isoformat(),
        "drift_start": res.drift_start.isoformat() if res.drift_start else None,
        "drift_kind": args.drift_kind,
        "label_files": res.label_files,
    }
    if args.format == "json":
        print(json.dumps(summary))
    else:
        print(
            f"wrote {res.days} daily partitions ({res.rows} rows) for {cfg.name} to {summary['out']}; "
            f"drift ({args.drift_kind}) from {summary['drift_start']}; labels arrive "
            f"{cfg.data.label_delay_days} day(s) late"
        )
    return EXIT_OK


def _read_table(path: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such file; pass a parquet or CSV file")
    if p.suffix == ".parquet":
        return read_parquet(p)
    if p.suffix == ".csv":
        return pd.read_csv(p)
    raise DataError(f"{path}: unknown file type {p.suffix!r}; use .parquet or .csv")


def _drift_features(args, ref, cur):
    """The features two files are compared on without --config; DataError when the files do
    not look like two samples of one table."""
    from retrain_lib.stats.feature_selection import select_features

    sel = select_features(ref, cur, exclude=args.exclude or (), keep=args.keep or ())
    shapes = (
        f"{args.reference} has {sel.reference_columns} column(s), {args.current} has "
        f"{sel.current_columns}, shared: {', '.join(map(str, sel.shared)) or 'none'}"
    )
    fix = "compare two files of the same table, or pass --config MODEL.yaml to name the features"
    if sel.shared_fraction < 0.5:
        raise DataError(
            f"{args.reference} and {args.current} share fewer than half of their columns ({shapes}); "
            f"they do not look like two samples of the same table: {fix}"
        )
    if not sel.features:
        left = "; ".join(f"{c}: {why}" for c, why in sel.left_out.items())
        raise DataError(
            f"{args.reference} and {args.current} share no feature column ({shapes}; left out: "
            f"{left or '-'}): {fix}, or --keep COLUMN to score a column left out"
        )
    if sel.left_out:
        print(
            f"note: left out {len(sel.left_out)} shared column(s) that are ids or timestamps, not features: "
            + ", ".join(f"{c} ({why})" for c, why in sel.left_out.items())
            + "; --keep COLUMN scores one anyway",
            file=sys.stderr,
        )
    return sel


def cmd_drift(args) -> int:
    from retrain_lib.stats.drift import compute_drift, drift_for_config

    ref = _read_table(args.reference)
    cur = _read_table(args.current)
    left_out = {}
    if args.config:
        cfg = load_model_config(args.config)
        report = drift_for_config(cfg, ref, cur)
    else:
        sel = _drift_features(args, ref, cur)
        left_out = sel.left_out
        report = compute_drift(
            ref,
            cur,
            numeric=sel.numeric,
            categorical=sel.categorical,
            method=args.method,
            threshold=args.threshold,
            drift_share=args.drift_share,
            bins=args.bins,
        )
    out = report.to_dict()
    if not args.config:
        out["left_out"] = left_out
    if args.format == "json":
        print(json.dumps(out, default=float))
    else:
        print(f"{'feature':<24} {'method':<12} {'score':>10} {'p_value':>10} {'threshold':>10}  drifted")
        for f in out["features"]:
            p = "" if f["p_value"] is None else f"{f['p_value']:.3g}"
            print(
                f"{f['name']:<24} {f['method']:<12} {f['score']:>10.4f} {p:>10} {f['threshold']:>10g}  "
                f"{'YES' if f['drifted'] else 'no'}"
            )
        print(
            f"drifted share {out['drifted_share']:.0%} (threshold {out['drift_share_threshold']:.0%}): "
            f"{'DATASET DRIFT' if out['dataset_drift'] else 'no dataset drift'}"
        )
    return EXIT_FAILED if out["dataset_drift"] else EXIT_OK


def register(sub) -> None:
    """Add ``simulate`` and ``drift`` to the subparsers ``sub`` of the ``retrain`` parser."""
    sim = sub.add_parser(
        "simulate",
        help="write daily sample partitions with a drift and late labels",
        description="Write one partition per day of sample data for a model config (its features and label) under "
        "<out>/<data.path>/, and the labels under <data.labels_path>/ data.label_delay_days later, with a drift "
        "from --drift-day on. For trying the platform without real data.",
    )
    sim.add_argument("--config", required=True, help="model config file")
    sim.add_argument("--out", help="data root to write to (default: the platform's data_root)")
    sim.add_argument("--days", type=int, default=60, help="how many daily partitions (default 60)")
    sim.add_argument(
        "--start", type=parse_date, default=dt.date(2026, 1, 1), help="first day, YYYY-MM-DD (default 2026-01-01)"
    )
    sim.add_argument("--drift-day", type=int, default=None, help="1-based day the drift starts (default: no drift)")
    sim.add_argument(
        "--drift-kind",
        choices=["covariate", "concept", "none"],
        default="covariate",
        help="covariate: the features shift; concept: the features stay, their relation to the label "
        "changes; none (default covariate)",
    )
    sim.add_argument("--rows-per-day", type=int, default=1500, help="rows in each daily partition (default 1500)")
    sim.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same data (default 0)")
    add_format(sim)
    sim.set_defaults(func=cmd_simulate)

    d = sub.add_parser(
        "drift",
        help="compare two data files feature by feature (exit 1 on dataset drift)",
        description="Score the drift of every feature between a reference and a current file (parquet or CSV). With "
        "--config the features, methods and thresholds come from the model config; without it, the columns both "
        "files share, less ids and timestamps (named on stderr), numeric ones with --method and the others with psi. "
        "Files that share fewer than half of their columns are refused. Exit 0 no dataset drift, 1 dataset drift, "
        "2 bad input.",
    )
    d.add_argument("--reference", required=True, help="parquet or CSV file")
    d.add_argument("--current", required=True, help="parquet or CSV file")
    d.add_argument("--config", help="model config: features, methods and thresholds from it")
    d.add_argument(
        "--method",
        choices=["psi", "ks", "js", "wasserstein", "missing_share"],
        default="psi",
        help="method for numeric columns without --config (categoricals use psi)",
    )
    d.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="a feature drifts at this score (p-value methods: at or below it; default: the method's)",
    )
    d.add_argument(
        "--drift-share",
        type=float,
        default=0.3,
        help="dataset drift when at least this share of the features drift (default 0.3)",
    )
    d.add_argument("--bins", type=int, default=10, help="bins of numeric features for psi and js (default 10)")
    d.add_argument("--exclude", nargs="*", metavar="COLUMN", help="columns to leave out (without --config)")
    d.add_argument(
        "--keep",
        nargs="*",
        metavar="COLUMN",
        help="columns to score although they look like ids or timestamps (without --config)",
    )
    add_format(d)
    d.set_defaults(func=cmd_drift)
