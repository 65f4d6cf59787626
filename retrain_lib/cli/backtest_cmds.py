"""``retrain backtest``, ``retrain dry-run`` and ``retrain calibrate``: try a retraining
policy on recorded data before merging it (see :mod:`retrain_lib.tools.backtest`).

Hooked into :mod:`retrain_lib.cli.app` by ``register(sub)``; also runs alone as
``python -m retrain_lib.cli.backtest_cmds backtest|dry-run|calibrate ...``. Exit codes as in
``retrain``: 0 ok; 2 bad input (config, data, arguments) with a message naming the file,
the field and the reason. Progress goes to stderr; ``--format json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from retrain_lib.cli.parsing import add_config_dir, add_format, parse_date
from retrain_lib.cli.runner import run_commands
from retrain_lib.core.config import load_model_config
from retrain_lib.core.errors import EXIT_OK, ConfigError, DataError
from retrain_lib.core.settings import load_settings
from retrain_lib.tools.backtest_policies import POLICIES, default_policies, policy_from_file


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _progress(quiet: bool):
    if quiet:
        return None
    started = dt.datetime.now()

    def say(message: str) -> None:
        elapsed = (dt.datetime.now() - started).total_seconds()
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    return say


def _platform(args):
    return load_settings(getattr(args, "config_dir", None)).platform


def _load(path: str, platform, what: str):
    if not Path(path).is_file():
        raise ConfigError(f"{path}: {what}: no such file; pass the path of a model config YAML")
    return load_model_config(path, platform)


def _data_dir(args, platform) -> Path:
    if args.data:
        path = Path(args.data)
    else:
        path = load_settings(getattr(args, "config_dir", None)).data_root
    if not path.is_dir():
        raise DataError(f"--data {path}: no such directory; pass the data root holding the model's partitions")
    return path


def cmd_backtest(args) -> int:
    # lazy: pandas; each command loads only what it runs
    from retrain_lib.tools.backtest import backtest
    from retrain_lib.tools.backtest_report import headline, plot_backtest

    platform = _platform(args)
    cfg = _load(args.config, platform, "CONFIG")
    data = _data_dir(args, platform)
    names = [n.strip() for n in args.policies.split(",") if n.strip()] if args.policies else list(POLICIES)
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise ConfigError(
            f"--policies: unknown polic{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; "
            f"use some of {', '.join(POLICIES)}"
        )
    policies = default_policies(cfg, names)
    taken = {p.name for p in policies}
    for path in args.policy or []:
        alt = policy_from_file(path, platform)
        if alt.cfg.name != cfg.name:
            raise ConfigError(
                f"{path}: name: the policy describes model {alt.cfg.name!r}, not {cfg.name!r}; "
                "a policy file is another version of the same model config"
            )
        name, i = alt.name, 2
        while name in taken:
            name, i = f"{alt.name}-{i}", i + 1
        taken.add(name)
        policies.append(type(alt)(name, alt.cfg, alt.monitor, alt.floor, alt.daily, alt.gates, alt.source))
    if args.start and args.end and args.start > args.end:
        raise ConfigError(f"--from {args.start} is after --to {args.end}")
    summary = backtest(
        cfg,
        data,
        start=args.start,
        end=args.end,
        policies=policies,
        drift_days=args.drift_day or [],
        platform=platform,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        workers=args.workers,
        reveal_drifts=not args.no_reveal,
        progress=_progress(args.quiet),
    )
    summary["config"] = str(args.config)
    summary["data"] = str(data)
    if args.plot:
        summary["plot"] = str(plot_backtest(summary, Path(args.plot)))
    if args.format == "json":
        print(json.dumps(summary if args.full else headline(summary), default=str))
        return EXIT_OK
    _print_backtest(summary)
    return EXIT_OK


def _fmt(value, spec=".4f") -> str:
    return "-" if value is None else format(value, spec)


def _print_backtest(summary: dict) -> None:
    print(
        f"{summary['model']}: {summary['from']}..{summary['to']} ({summary['days']} days), labels "
        f"{summary['label_delay_days']} day(s) late, metric {summary['metric']}"
    )
    if summary["drifts"]:
        print("drifts: " + ", ".join(f"{d['day']} ({d['source']})" for d in summary["drifts"]))
    header = f"{'policy':<12} {'retrains':>8} {'deployed':>8} {'false':>5} {'compute s':>9} {'mean':>7} {'lost':>8}  detection"
    print(header)
    print("-" * len(header))
    for name, p in summary["policies"].items():
        det = (
            "; ".join(
                f"{d['drift']}: {'+' + str(d['delay_days']) + 'd (' + d['trigger'] + ')' if d['detected_on'] else 'missed'}"
                for d in p["detection"]
            )
            or "-"
        )
        print(
            f"{name:<12} {p['retrains']:>8} {p['deployed']:>8} {p['false_alarms']:>5} {p['compute_s']:>9.1f} "
            f"{_fmt(p['metric_mean']):>7} {_fmt(p['metric_lost_vs_oracle'], '+.4f'):>8}  {det}"
        )
    for name, p in summary["policies"].items():
        if p["retrain_days"]:
            print(f"  {name}: retrains on {', '.join(p['retrain_days'])}")
    if summary.get("plot"):
        print(f"plot: {summary['plot']}")


def cmd_dry_run(args) -> int:
    from retrain_lib.tools.dry_run import dry_run

    platform = _platform(args)
    new = _load(args.config, platform, "CONFIG")
    old = _load(args.against, platform, "--against")
    data = _data_dir(args, platform)
    out = dry_run(
        new,
        old,
        data,
        days=args.days,
        end=args.to,
        platform=platform,
        workers=args.workers,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None,
        progress=_progress(args.quiet),
    )
    out.update(config=str(args.config), against=str(args.against))
    if args.format == "json":
        print(json.dumps(out, default=str))
        return EXIT_OK
    print(f"{out['model']}: {out['from']}..{out['to']} ({out['days']} days), {args.config} vs {args.against}")
    for side in ("edited", "current"):
        s = out[side]
        print(
            f"  {side:<8} retrains {s['retrains']} ({', '.join(s['retrain_days']) or 'none'}), deployed "
            f"{s['deployed']}, rollbacks {len(s['rollbacks'])}, throttled {len(s['throttled'])}"
        )
    if out["same"]:
        print("no difference: both configs fire the same way")
    for d in out["differences"]:
        print(f"  {d['day']}: edited {'; '.join(d['edited'])} | current {'; '.join(d['current'])}")
    return EXIT_OK


def cmd_calibrate(args) -> int:
    from retrain_lib.tools.threshold_calibration import calibrate, patch_yaml

    platform = _platform(args)
    cfg = _load(args.config, platform, "CONFIG")
    data = _data_dir(args, platform)
    out = calibrate(
        cfg,
        data,
        stable_from=args.stable_from,
        stable_to=args.stable_to,
        false_alarm_rate=args.false_alarm_rate,
        warn_ratio=args.warn,
        critical_ratio=args.critical,
        platform=platform,
    )
    if args.format == "json":
        print(json.dumps(out, default=str))
    else:
        print(patch_yaml(out), end="")
    return EXIT_OK


DATA_HELP = "data root holding the model's <data.path>/ and <data.labels_path>/ (default: the platform's data_root)"


def _common(p, *, data_help: str) -> None:
    p.add_argument("--data", default=None, help=data_help)
    add_format(p)
    add_config_dir(p)


def register(sub) -> None:
    """Add ``backtest``, ``dry-run`` and ``calibrate`` to the subparsers ``sub`` of ``retrain``."""
    _add_backtest(sub)
    _add_dry_run(sub)
    _add_calibrate(sub)


def _add_backtest(sub) -> None:
    b = sub.add_parser(
        "backtest",
        help="replay dated partitions day by day through several retraining policies",
        description="Replay the model's daily partitions day by day through the config's real triggers, validation, "
        "training, gates and rollback (labels revealed only after their delay, no future data), for the config as "
        "written, schedule-only, drift-only, never-retrain, a daily-retrain oracle and any --policy file. Reports "
        "per policy the retrains and their days, compute time, the prequential metric per day, the metric lost vs "
        "the oracle, the detection delay of each drift and the false alarms. Nothing is written to MLflow, the "
        "registry or the ledger.",
    )
    b.add_argument("config", help="model config YAML")
    b.add_argument(
        "--from",
        dest="start",
        type=parse_date,
        default=None,
        help="first day (default: first data day + windows.training_days)",
    )
    b.add_argument("--to", dest="end", type=parse_date, default=None, help="last day (default: last data day)")
    b.add_argument(
        "--policy", action="append", metavar="ALT.yaml", help="another version of the config to compare (repeatable)"
    )
    b.add_argument(
        "--policies",
        default=None,
        help="built-in policies, comma-separated (default: config,schedule,drift,never,oracle)",
    )
    b.add_argument(
        "--drift-day",
        action="append",
        type=parse_date,
        metavar="YYYY-MM-DD",
        help="a drift known to start that day (repeatable); onsets the features reveal are added",
    )
    b.add_argument("--no-reveal", action="store_true", help="do not add the drift onsets the features reveal")
    b.add_argument("--plot", metavar="FILE.png", help="write the metric per day and policy with retrain markers")
    b.add_argument("--workers", type=_workers, default=2, help="processes (default 2)")
    b.add_argument(
        "--cache-dir", default=None, help="keep trained models here between runs (default: a temporary directory)"
    )
    b.add_argument("--full", action="store_true", help="with --format json: include day-by-day metrics and decisions")
    b.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _common(b, data_help=DATA_HELP)
    b.set_defaults(func=cmd_backtest, own_progress=True)  # --quiet turns its progress off


def _add_dry_run(sub) -> None:
    d = sub.add_parser(
        "dry-run",
        help="what an edited config would have fired in the last N days vs the current one",
        description="Replay the last --days days for the edited CONFIG and the current --against config, from the "
        "same champion (trained by the current config the day before), and list the days on which they act "
        "differently (retrain requests, throttling, rollbacks, gate outcomes).",
    )
    d.add_argument("config", help="the edited model config YAML")
    d.add_argument("--against", required=True, metavar="OLD.yaml", help="the current model config YAML")
    d.add_argument("--days", type=_workers, required=True, help="how many days back from --to")
    d.add_argument("--to", type=parse_date, default=None, help="last day (default: last data day)")
    d.add_argument("--workers", type=_workers, default=2, help="processes (default 2)")
    d.add_argument(
        "--cache-dir", default=None, help="keep trained models here between runs (default: a temporary directory)"
    )
    d.add_argument("--quiet", action="store_true", help="no progress on stderr")
    _common(d, data_help=DATA_HELP)
    d.set_defaults(func=cmd_dry_run, own_progress=True)


def _add_calibrate(sub) -> None:
    c = sub.add_parser(
        "calibrate",
        help="drift thresholds and performance levels from a stable window, as a YAML patch",
        description="From the monitor checks that fit in a stable window (reference_days then monitor_days), propose "
        "per-feature drift thresholds for a target false-alarm rate (null model at the monitor's sample sizes and "
        "the stable window's own statistics, Bonferroni across features) and performance warn/critical levels "
        "(default baseline x 0.90 and x 0.80). Prints a YAML patch for the model config.",
    )
    c.add_argument("config", help="model config YAML")
    c.add_argument(
        "--stable-from",
        type=parse_date,
        required=True,
        help="first day of a window without drift or incidents, YYYY-MM-DD",
    )
    c.add_argument("--stable-to", type=parse_date, required=True, help="last day of that window, YYYY-MM-DD")
    c.add_argument("--false-alarm-rate", type=float, default=0.01, help="target rate of dataset drift alarms")
    c.add_argument("--warn", type=float, default=0.90, help="warning at baseline x this (default 0.90)")
    c.add_argument("--critical", type=float, default=0.80, help="critical at baseline x this (default 0.80)")
    _common(c, data_help=DATA_HELP)
    c.set_defaults(func=cmd_calibrate)


def main(argv: list[str] | None = None) -> int:
    """Run the backtest commands alone (``python -m retrain_lib.cli.backtest_cmds``); the exit code."""
    return run_commands(register, "Backtest commands of retrain.", argv)


if __name__ == "__main__":
    sys.exit(main())
