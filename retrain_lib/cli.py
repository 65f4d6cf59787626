"""The ``retrain`` command line (also ``python -m retrain_lib``).

Exit codes: 0 ok; 1 the check ran and failed (drift found, gate failed, invalid data);
2 bad input (config, path, arguments) with a message naming the file, field and reason.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from pathlib import Path

from retrain_lib.errors import ConfigError, DataError, RetrainError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 already; keep its message short and clear
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date; use YYYY-MM-DD") from None


# -----------------------------------------------------------------------------------------
# config
# -----------------------------------------------------------------------------------------


def cmd_config_validate(args) -> int:
    from retrain_lib.config import load_model_configs
    from retrain_lib.settings import load_settings

    settings = load_settings(args.config_dir)
    paths = args.paths or [settings.models_dir]
    result = load_model_configs(paths, settings.platform)
    if args.format == "json":
        print(json.dumps({"valid": sorted(result.models), "problems": [p.to_dict() for p in result.problems]},
                         indent=2))
    else:
        for problem in result.problems:
            print(str(problem), file=sys.stderr)
        files = len({p.file for p in result.problems})
        if result.problems:
            print(f"{len(result.problems)} problem(s) in {files} file(s); {len(result.models)} valid model(s)",
                  file=sys.stderr)
        else:
            print(f"ok: {len(result.models)} model config(s) valid: {', '.join(sorted(result.models))}")
    return EXIT_OK if result.ok else EXIT_BAD_INPUT


def cmd_config_schema(args) -> int:
    from retrain_lib.config import json_schema, platform_json_schema

    print(json.dumps(platform_json_schema() if args.platform else json_schema(), indent=2))
    return EXIT_OK


# -----------------------------------------------------------------------------------------
# simulate / drift
# -----------------------------------------------------------------------------------------


def cmd_simulate(args) -> int:
    from retrain_lib.config import load_model_config
    from retrain_lib.settings import load_settings
    from retrain_lib.simulate import simulate

    settings = load_settings(args.config_dir)
    cfg = load_model_config(args.config, settings.platform)
    out = Path(args.out) if args.out else settings.data_root
    res = simulate(cfg, out, days=args.days, start=args.start, drift_day=args.drift_day, drift_kind=args.drift_kind,
                   rows_per_day=args.rows_per_day, seed=args.seed)
    summary = {"model": cfg.name, "out": str(out / (cfg.data.path or cfg.name)), "days": res.days, "rows": res.rows,
               "start": res.start.isoformat(), "drift_start": res.drift_start.isoformat() if res.drift_start else None,
               "drift_kind": args.drift_kind, "label_files": res.label_files}
    if args.format == "json":
        print(json.dumps(summary))
    else:
        print(f"wrote {res.days} daily partitions ({res.rows} rows) for {cfg.name} to {summary['out']}; "
              f"drift ({args.drift_kind}) from {summary['drift_start']}; labels arrive "
              f"{cfg.data.label_delay_days} day(s) late")
    return EXIT_OK


def _read_table(path: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{path}: no such file; pass a parquet or CSV file")
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    if p.suffix == ".csv":
        return pd.read_csv(p)
    raise DataError(f"{path}: unknown file type {p.suffix!r}; use .parquet or .csv")


def cmd_drift(args) -> int:
    import pandas as pd

    from retrain_lib.drift import compute_drift, drift_for_config

    ref = _read_table(args.reference)
    cur = _read_table(args.current)
    if args.config:
        from retrain_lib.config import load_model_config

        cfg = load_model_config(args.config)
        report = drift_for_config(cfg, ref, cur)
    else:
        skip = set(args.exclude or [])
        common = [c for c in ref.columns if c in cur.columns and c not in skip]
        numeric = [c for c in common if pd.api.types.is_numeric_dtype(ref[c]) and not pd.api.types.is_bool_dtype(ref[c])]
        categorical = [c for c in common if c not in numeric]
        report = compute_drift(ref, cur, numeric=numeric, categorical=categorical, method=args.method,
                               threshold=args.threshold, drift_share=args.drift_share, bins=args.bins)
    out = report.to_dict()
    if args.format == "json":
        print(json.dumps(out, default=float))
    else:
        print(f"{'feature':<24} {'method':<12} {'score':>10} {'p_value':>10} {'threshold':>10}  drifted")
        for f in out["features"]:
            p = "" if f["p_value"] is None else f"{f['p_value']:.3g}"
            print(f"{f['name']:<24} {f['method']:<12} {f['score']:>10.4f} {p:>10} {f['threshold']:>10g}  "
                  f"{'YES' if f['drifted'] else 'no'}")
        print(f"drifted share {out['drifted_share']:.0%} (threshold {out['drift_share_threshold']:.0%}): "
              f"{'DATASET DRIFT' if out['dataset_drift'] else 'no dataset drift'}")
    return EXIT_FAILED if out["dataset_drift"] else EXIT_OK


# -----------------------------------------------------------------------------------------
# lifecycle steps
# -----------------------------------------------------------------------------------------


def cmd_monitor(args) -> int:
    from retrain_lib.lifecycle import monitor_model
    from retrain_lib.settings import load_settings

    res = monitor_model(args.model, args.as_of, settings=load_settings(args.config_dir), actor="cli")
    if args.format == "json":
        print(json.dumps(res, default=str))
    else:
        print(f"{res['model']} as of {res['as_of']}: {res['action'].upper()}")
        for r in res["reasons"]:
            print(f"  - {r}")
    return EXIT_FAILED if res["action"] == "retrain" else EXIT_OK


def cmd_retrain(args) -> int:
    from retrain_lib.lifecycle import retrain_model
    from retrain_lib.settings import load_settings

    res = retrain_model(args.model, args.as_of, settings=load_settings(args.config_dir), actor="cli",
                        reason=args.reason)
    if args.format == "json":
        print(json.dumps(res, default=str))
    else:
        print(f"{args.model} retrain as of {args.as_of}: {res['outcome']}")
        for g in (res.get("gates") or {}).get("results", []):
            print(f"  {'PASS' if g['passed'] else 'FAIL'} {g['reason']}")
        if res["outcome"] == "deployed":
            print(f"  version {res['registered']['version']} -> champion {res['deployed']['champion']}")
    return EXIT_OK if res["outcome"] == "deployed" else EXIT_FAILED


# -----------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="retrain", description="Keep production ML models current: drift, retrain, gates, promotion.")
    p.add_argument("--config-dir", help="directory holding platform.yaml and models/ (default: ./configs)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    cfg = sub.add_parser("config", help="validate model configs or print their JSON Schema")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    v = cfg_sub.add_parser("validate", help="report every problem of every model config (exit 2 on any)")
    v.add_argument("paths", nargs="*", help="files or directories (default: configs/models)")
    v.add_argument("--format", choices=["text", "json"], default="text")
    v.set_defaults(func=cmd_config_validate)
    s = cfg_sub.add_parser("schema", help="print the JSON Schema of a model config")
    s.add_argument("--platform", action="store_true", help="the schema of platform.yaml instead")
    s.set_defaults(func=cmd_config_schema)

    sim = sub.add_parser("simulate", help="write daily sample partitions with a drift and late labels")
    sim.add_argument("--config", required=True, help="model config file")
    sim.add_argument("--out", help="data root to write to (default: the platform's data_root)")
    sim.add_argument("--days", type=int, default=60)
    sim.add_argument("--start", type=_date, default=dt.date(2026, 1, 1))
    sim.add_argument("--drift-day", type=int, default=None, help="1-based day the drift starts")
    sim.add_argument("--drift-kind", choices=["covariate", "concept", "none"], default="covariate")
    sim.add_argument("--rows-per-day", type=int, default=1500)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--format", choices=["text", "json"], default="text")
    sim.set_defaults(func=cmd_simulate)

    d = sub.add_parser("drift", help="compare two data files feature by feature (exit 1 on dataset drift)")
    d.add_argument("--reference", required=True, help="parquet or CSV file")
    d.add_argument("--current", required=True, help="parquet or CSV file")
    d.add_argument("--config", help="model config: features, methods and thresholds from it")
    d.add_argument("--method", choices=["psi", "ks", "js", "wasserstein", "missing_share"], default="psi",
                   help="method for numeric columns without --config (categoricals use psi)")
    d.add_argument("--threshold", type=float, default=None)
    d.add_argument("--drift-share", type=float, default=0.3)
    d.add_argument("--bins", type=int, default=10)
    d.add_argument("--exclude", nargs="*", help="columns to leave out (without --config)")
    d.add_argument("--format", choices=["text", "json"], default="text")
    d.set_defaults(func=cmd_drift)

    m = sub.add_parser("monitor", help="check one model for one day (exit 1 when it should retrain)")
    m.add_argument("model")
    m.add_argument("--as-of", type=_date, required=True)
    m.add_argument("--format", choices=["text", "json"], default="text")
    m.set_defaults(func=cmd_monitor)

    r = sub.add_parser("retrain", help="train, evaluate, gate and deploy one model (exit 1 when rejected)")
    r.add_argument("model")
    r.add_argument("--as-of", type=_date, required=True)
    r.add_argument("--reason", default="manual")
    r.add_argument("--format", choices=["text", "json"], default="text")
    r.set_defaults(func=cmd_retrain)

    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RetrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:
        return EXIT_OK
