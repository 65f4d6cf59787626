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
import time
from pathlib import Path

from retrain_lib.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, ConfigError, DataError, RetrainError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 already; keep its message short and clear
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


class _ProgressHandler(logging.Handler):
    """Shows the library's INFO messages (``retrain_lib.*`` loggers) as progress lines."""

    def __init__(self, say):
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.say(record.getMessage())
        except Exception:  # noqa: BLE001 - a progress line must never fail the command
            self.handleError(record)


def _progress_printer(out=None):
    """``say(message)``: one ``[  12.3s] message`` line on stderr, seconds since the command started."""
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=out or sys.stderr, flush=True)

    return say


def _say(args, message: str) -> None:
    """A progress line on stderr for a step that can take seconds (not with --quiet)."""
    say = getattr(args, "say", None)
    if say is not None:
        say(message)


def _with_progress(args, run) -> int:
    """Run ``run(args)`` with progress on stderr: the command's own steps (``_say``) and the
    library's INFO messages; none with --quiet or for a command that shows its own
    (``own_progress``: serve, backtest, dry-run); -v logs everything instead."""
    if getattr(args, "no_progress", False) or getattr(args, "own_progress", False):
        return run(args)
    args.say = _progress_printer()
    if getattr(args, "verbose", False):
        return run(args)
    handler = _ProgressHandler(args.say)
    lib = logging.getLogger("retrain_lib")
    level = lib.level
    lib.addHandler(handler)
    lib.setLevel(logging.INFO)
    try:
        return run(args)
    finally:
        lib.removeHandler(handler)
        lib.setLevel(level)


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
        print(
            json.dumps({"valid": sorted(result.models), "problems": [p.to_dict() for p in result.problems]}, indent=2)
        )
    else:
        for problem in result.problems:
            print(str(problem), file=sys.stderr)
        files = len({p.file for p in result.problems})
        if result.problems:
            print(
                f"{len(result.problems)} problem(s) in {files} file(s); {len(result.models)} valid model(s)",
                file=sys.stderr,
            )
        else:
            print(f"ok: {len(result.models)} model config(s) valid: {', '.join(sorted(result.models))}")
    return EXIT_OK if result.ok else EXIT_BAD_INPUT


def cmd_config_schema(args) -> int:
    from retrain_lib.config import json_schema
    from retrain_lib.config_platform import platform_json_schema

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
    _say(args, f"simulating {args.days} day(s) of {args.rows_per_day} rows for {cfg.name} under {out}")
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
        return pd.read_parquet(p)
    if p.suffix == ".csv":
        return pd.read_csv(p)
    raise DataError(f"{path}: unknown file type {p.suffix!r}; use .parquet or .csv")


def _drift_features(args, ref, cur):
    """The features two files are compared on without --config; DataError when the files do
    not look like two samples of one table."""
    from retrain_lib.feature_selection import select_features

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
    from retrain_lib.drift import compute_drift, drift_for_config

    ref = _read_table(args.reference)
    cur = _read_table(args.current)
    left_out = {}
    if args.config:
        from retrain_lib.config import load_model_config

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


# -----------------------------------------------------------------------------------------
# lifecycle steps
# -----------------------------------------------------------------------------------------


def cmd_monitor(args) -> int:
    from retrain_lib.monitor_run import monitor_model
    from retrain_lib.settings import load_settings

    _say(
        args,
        f"checking {args.model} as of {args.as_of}: data validation, drift, the champion's live metric "
        "(MLflow and the data load first)",
    )
    res = monitor_model(args.model, args.as_of, settings=load_settings(args.config_dir), actor="cli")
    if args.format == "json":
        print(json.dumps(res, default=str))
    else:
        print(f"{res['model']} as of {res['as_of']}: {res['action'].upper()}")
        for r in res["reasons"]:
            print(f"  - {r}")
    return EXIT_FAILED if res["action"] == "retrain" else EXIT_OK


def cmd_retrain(args) -> int:
    from retrain_lib.retrain_run import retrain_model
    from retrain_lib.settings import load_settings

    _say(args, f"retraining {args.model} as of {args.as_of}: snapshot, training, evaluation, gates, registration")
    res = retrain_model(
        args.model, args.as_of, settings=load_settings(args.config_dir), actor="cli", reason=args.reason
    )
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
# decision ledger: history / ledger verify
# -----------------------------------------------------------------------------------------

_HISTORY_HELP = """\
Champion changes of MODEL over time, from the decision ledger (promotions, rollbacks and any
decision that moved the 'champion' alias), oldest first.

Time semantics: a decision takes effect at its as_of, the logical day of the Airflow run (or
CLI call) that took it, read as the start of that day in UTC; a decision without as_of takes
effect at the wall-clock time it was written. --at DATE means the end of that day (UTC);
--at DATETIME is an ISO 8601 instant (naive = UTC). With --at, prints the champion at that
instant and the ledger entry that made it champion (none before the first promotion).

Exit codes: 0 ok; 2 unknown model or bad --at."""


def _instant(value: str) -> dt.datetime:
    """--at: a date (its end, UTC) or an ISO datetime (naive = UTC)."""
    from retrain_lib.ledger_history import parse_instant

    value = value.strip()
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            return parse_instant(dt.datetime.combine(day, dt.time.max))
        return parse_instant(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a date or ISO datetime; use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]"
        ) from None


def cmd_history(args) -> int:
    from retrain_lib.audit import Ledger
    from retrain_lib.ledger_history import champion_at, champion_changes
    from retrain_lib.settings import load_settings

    settings = load_settings(args.config_dir)
    ledger = Ledger.from_settings(settings)
    records = ledger.records(args.model)
    if not records and not (settings.models_dir / f"{args.model}.yaml").is_file():
        known = sorted({p.stem for p in settings.models_dir.glob("*.yaml")} | set(ledger.models()))
        print(
            f"error: unknown model {args.model!r}: no config {settings.models_dir / (args.model + '.yaml')} and no "
            f"ledger records; known models: {', '.join(known) or 'none'}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    changes = champion_changes(records)
    if args.at is None:
        if args.format == "json":
            print(json.dumps({"model": args.model, "changes": changes}, indent=2))
        elif not changes:
            print(f"{args.model}: no champion changes in the ledger")
        else:
            wide = max(len("from"), *(len(str(c["from"] or "-")) for c in changes))
            _table(
                ["effective", f"{'from':>{wide}} -> to", "event", "seq", "actor", "reason"],
                [
                    [
                        str(c["effective"]),
                        f"{c['from'] or '-':>{wide}} -> {c['to'] or '-'}",
                        str(c["event"]),
                        str(c["seq"]),
                        str(c["actor"] or "-"),
                        str(c["reason"] or ""),
                    ]
                    for c in changes
                ],
                sys.stdout,
                right={3},
            )
        return EXIT_OK
    entry = champion_at(changes, args.at)
    out = {
        "model": args.model,
        "at": args.at.isoformat(),
        "champion": entry["to"] if entry else None,
        "entry": entry,
        "first_change": changes[0]["effective"] if changes else None,
    }
    if args.format == "json":
        print(json.dumps(out, indent=2))
    elif entry is None:
        first = f" (first champion from {changes[0]['effective']})" if changes else ""
        print(f"{args.model} at {out['at']}: no champion{first}")
    else:
        print(f"{args.model} at {out['at']}: champion version {entry['to']}, since {entry['effective']}")
        print(
            f"  ledger seq {entry['seq']} ({entry['event']} by {entry['actor'] or '?'}, written {entry['time']}): "
            f"{entry['from'] or '-'} -> {entry['to']}; reason: {entry['reason'] or '-'}"
        )
    return EXIT_OK


def cmd_ledger_verify(args) -> int:
    from retrain_lib.audit import Ledger
    from retrain_lib.settings import load_settings

    ledger = Ledger.from_settings(load_settings(args.config_dir))
    problems = ledger.verify()
    head = ledger.head()
    out = {
        "ok": not problems,
        "records": len(ledger.records()),
        "head": head["hash"] if head else None,
        "head_seq": head["seq"] if head else None,
    }
    if problems:
        out["problems"] = problems
    if args.format == "json":
        print(json.dumps(out, indent=2))
    elif problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"ledger BROKEN: {len(problems)} problem(s) in {out['records']} record(s) ({ledger!r})", file=sys.stderr)
    else:
        print(f"ok: {out['records']} record(s), chain intact; head seq {out['head_seq']} hash {out['head']}")
    return EXIT_FAILED if problems else EXIT_OK


# -----------------------------------------------------------------------------------------
# reproduce
# -----------------------------------------------------------------------------------------


def cmd_reproduce(args) -> int:
    from retrain_lib.errors import RegistryError
    from retrain_lib.reproduce import reproduce
    from retrain_lib.settings import load_settings

    try:
        res = reproduce(
            args.model,
            args.version,
            settings=load_settings(args.config_dir),
            progress=lambda message: _say(args, message),
        )
    except RegistryError as exc:  # unknown model or version, no lineage tags: bad input here
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.format == "json":
        print(json.dumps(res, indent=2))
    else:
        data, diff = res["data"], res["max_abs_prediction_diff"]
        print(
            f"{res['model']} version {res['version']}: {'IDENTICAL' if res['identical'] else 'DIFFERENT'} "
            f"(max |prediction diff| {diff} on {res['rows']['holdout']} holdout rows, "
            f"{res['rows']['train']} training rows)"
        )
        print(f"  data: {data['path']} at DVC rev {data['rev']} (md5 {data['md5']})")
        for name, recorded in res["metrics"]["recorded"].items():
            print(f"  {name:<10} recorded {recorded!s:<22} reproduced {res['metrics']['reproduced'].get(name)}")
        git = res["git_commit"]
        print(f"  code: recorded {git['recorded']}, current {git['current']}")
    return EXIT_OK if res["identical"] else EXIT_FAILED


# -----------------------------------------------------------------------------------------
# status
# -----------------------------------------------------------------------------------------

_STATUS_HELP = """\
The fleet's state from the MLflow registry (aliases, versions, rollout tags), the decision
ledger (last monitor check, gate results, decisions) and the monitor's reports: the same
information as the Airflow fleet page (/retrain/ on the API server).

Without MODEL: one row per model. With MODEL: its versions, rollout, last drift check per
feature, drift trend, last gates and last decisions. Progress goes to stderr on a terminal.

Exit codes: 0 ok; 2 unknown model or bad arguments."""


def _fmt(value, spec: str = "", none: str = "-") -> str:
    if value is None:
        return none
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec and isinstance(value, int | float):
        return format(value, spec)
    return str(value)


def _v(version) -> str:
    return f"v{version}" if version else "-"


def _moved(decision: dict) -> str:
    """``v1->v2`` (``none->v1`` for a first champion, ``v2->none`` for a removed alias)."""
    return f"{_v(decision.get('before')).replace('-', 'none')}->{_v(decision.get('after')).replace('-', 'none')}"


def _rollout_text(r: dict) -> str:
    if r["mode"] == "canary":
        return f"canary {r['canary_percent']:g}%" + (f" by {r['sticky_key']}" if r["sticky_key"] else "")
    return r["mode"]


def _table(headers: list[str], rows: list[list[str]], out, *, right=frozenset()) -> None:
    """Columns as wide as their widest cell (header included), two spaces apart; the columns
    whose index is in ``right`` aligned right (numbers)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(headers).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print(line(r).rstrip(), file=out)


def _print_fleet(fleet: dict, out) -> None:
    rows = []
    for m in fleet["models"]:
        mon = m["last_monitor"] or {}
        last = m["last_decision"] or {}
        gates = m["last_gates"] or {}
        rows.append(
            [
                m["model"],
                _v(m["aliases"].get("champion")),
                _v(m["aliases"].get("challenger")),
                _v(m["aliases"].get("previous-champion")),
                _rollout_text(m["rollout"]),
                _fmt(mon.get("as_of")),
                _fmt(mon.get("action")),
                _fmt(mon.get("drifted_share"), ".0%"),
                {True: "passed", False: "FAILED"}.get(gates.get("passed"), "-"),
                f"{last['as_of'] or last['time'][:10]} {last['event']}"
                + (f" {_moved(last)}" if last.get("after") else "")
                if last
                else "-",
            ]
        )
    _table(
        [
            "model",
            "champion",
            "challenger",
            "previous",
            "rollout",
            "last check",
            "action",
            "drifted",
            "gates",
            "last decision",
        ],
        rows,
        out,
    )
    for p in fleet["config_problems"]:
        print(f"config problem: {p['file']}:{p['line']}: {p['field']}: {p['reason']}", file=out)


def _print_model(m: dict, out) -> None:
    print(
        f"{m['model']}  (owner {_fmt(m['owner'])}, {_fmt(m['task'])}, deploy {_fmt(m['deploy_mode'])}, "
        f"config {_fmt(m['config'])})",
        file=out,
    )
    print(f"rollout: {_rollout_text(m['rollout'])}; latest registered version {_v(m['latest_version'])}", file=out)
    print(file=out)
    metric_names = sorted({k for v in m["versions"].values() for k in (v.get("metrics") or {})})[:4]
    rows = [
        [
            ", ".join(v.get("aliases") or []),
            _v(v["version"]),
            _fmt(v.get("trained_as_of")),
            _fmt(v.get("promoted_as_of")),
            _fmt(v.get("gates_passed")),
            *[_fmt((v.get("metrics") or {}).get(k), ".4f") for k in metric_names],
            _fmt(v.get("run_id")),
        ]
        for v in sorted(m["versions"].values(), key=lambda v: int(v["version"]), reverse=True)
    ]
    _table(["alias", "version", "trained as of", "promoted as of", "gates", *metric_names, "run"], rows, out)
    mon = m["last_monitor"]
    print(file=out)
    if mon is None:
        print("last drift check: none in the ledger", file=out)
    else:
        print(
            f"last drift check {mon['as_of']}: {_fmt(mon['action']).upper()}, drifted share "
            f"{_fmt(mon['drifted_share'], '.0%')} (dataset drift at {_fmt(mon.get('drift_share_threshold'), '.0%')})"
            f"; report {_fmt(mon['drift_report'])}",
            file=out,
        )
        for r in mon["reasons"]:
            print(f"  - {r}", file=out)
        _table(
            ["feature", "method", "score", "p_value", "threshold", "drifted"],
            [
                [
                    _fmt(f.get("name")),
                    _fmt(f.get("method")),
                    _fmt(f.get("score"), ".4f"),
                    _fmt(f.get("p_value"), ".3g"),
                    _fmt(f.get("threshold"), "g"),
                    "YES" if f.get("drifted") else "no",
                ]
                for f in mon["features"]
            ],
            out,
        )
    if m["drift_trend"]:
        print(file=out)
        print(f"drift trend (last {len(m['drift_trend'])} checks):", file=out)
        _table(
            ["as of", "action", "drifted", "drifted features"],
            [
                [t["as_of"], _fmt(t["action"]), _fmt(t["drifted_share"], ".0%"), ", ".join(t["drifted"]) or "-"]
                for t in m["drift_trend"]
            ],
            out,
        )
    g = m["last_gates"]
    print(file=out)
    if g is None:
        print("last gates: none in the ledger", file=out)
    else:
        print(f"last gates {g['as_of']}: {'PASSED' if g['passed'] else 'FAILED'} (run {g['run_id']})", file=out)
        if g["results"]:
            _table(
                ["gate", "metric", "slice", "observed", "threshold", "champion", "passed"],
                [
                    [
                        _fmt(r.get("gate")),
                        _fmt(r.get("metric")),
                        _fmt(r.get("slice")),
                        _fmt(r.get("observed"), ".4f"),
                        _fmt(r.get("threshold"), ".4f"),
                        _fmt(r.get("champion"), ".4f"),
                        "skipped" if r.get("skipped") else ("PASS" if r.get("passed") else "FAIL"),
                    ]
                    for r in g["results"]
                ],
                out,
            )
        else:
            for reason in g["failed"]:
                print(f"  FAIL {reason}", file=out)
    print(file=out)
    print(f"last decisions ({len(m['decisions'])} of {m['ledger_records']} ledger records):", file=out)
    _table(
        ["seq", "as of", "event", "champion", "actor", "reason"],
        [
            [
                str(d["seq"]),
                _fmt(d["as_of"]),
                d["event"],
                _moved(d) if d.get("after") or d.get("before") else "-",
                _fmt(d["actor"]),
                (d["reason"] or "")[:80],
            ]
            for d in m["decisions"]
        ],
        out,
    )


def cmd_status(args) -> int:
    from retrain_lib.settings import load_settings
    from retrain_lib.status import UnknownModelError, fleet_status

    if args.history < 0 or args.decisions < 0:
        print(
            f"error: --history and --decisions must be 0 or more; got {args.history} and {args.decisions}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    show = sys.stderr.isatty() and args.format == "text"

    def progress(message: str) -> None:
        if show:
            print(f"\r\033[K{message}...", end="", file=sys.stderr, flush=True)

    try:
        fleet = fleet_status(
            load_settings(args.config_dir),
            model=args.model,
            history=args.history,
            decisions=args.decisions,
            progress=progress,
        )
    except UnknownModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if show:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    if args.format == "json":
        print(json.dumps(fleet, indent=2, default=str))
    elif args.model is None:
        _print_fleet(fleet, sys.stdout)
    else:
        _print_model(fleet["models"][0], sys.stdout)
    return EXIT_OK


# -----------------------------------------------------------------------------------------


FORMAT_HELP = "text for people (default) or json: one JSON object on stdout"


def _format(p, default: str = "text") -> None:
    """The --format option every command has."""
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default=default,
        help=FORMAT_HELP if default == "text" else "json (default): one JSON object on stdout; or text",
    )


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="retrain", description="Keep production ML models current: drift, retrain, gates, promotion.")
    p.add_argument("--config-dir", help="directory holding platform.yaml and models/ (default: ./configs)")
    p.add_argument("-v", "--verbose", action="store_true", help="log everything (every library's INFO) to stderr")
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        dest="no_progress",
        help="no progress lines on stderr (by default the slow steps of a command are printed there)",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    cfg = sub.add_parser(
        "config",
        help="validate model configs or print their JSON Schema",
        description="Check model configs (configs/models/*.yaml) or print the JSON Schema editors "
        "and CI can check them with.",
    )
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    v = cfg_sub.add_parser(
        "validate",
        help="report every problem of every model config (exit 2 on any)",
        description="Validate model configs against the schema and report every problem of every file in one pass, "
        "each with file, line, field, reason and fix: unknown or misspelt fields, wrong types, a model name that is "
        "not the file name, and an estimator class or params that do not exist (looked up in the estimator's source "
        "without importing it). Exit 0 all valid, 2 any problem.",
    )
    v.add_argument("paths", nargs="*", help="files or directories (default: configs/models)")
    _format(v)
    v.set_defaults(func=cmd_config_validate)
    s = cfg_sub.add_parser(
        "schema",
        help="print the JSON Schema of a model config",
        description="Print the JSON Schema of a model config (or of platform.yaml) on stdout.",
    )
    s.add_argument("--platform", action="store_true", help="the schema of platform.yaml instead")
    s.set_defaults(func=cmd_config_schema)

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
        "--start", type=_date, default=dt.date(2026, 1, 1), help="first day, YYYY-MM-DD (default 2026-01-01)"
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
    _format(sim)
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
    _format(d)
    d.set_defaults(func=cmd_drift)

    m = sub.add_parser(
        "monitor",
        help="check one model for one day (exit 1 when it should retrain)",
        description="What the model's monitor DAG does for one day, run here: validate the day's data, score drift "
        "against the reference window, compare the champion's live metric with its baseline, check the schedule "
        "and the retrain limits, and decide whether the model should retrain. Exit 0 no retrain needed, 1 retrain "
        "needed, 2 bad input.",
    )
    m.add_argument("model", help="model name (its config is configs/models/MODEL.yaml)")
    m.add_argument("--as-of", type=_date, required=True, help="the logical day to check, YYYY-MM-DD")
    _format(m)
    m.set_defaults(func=cmd_monitor)

    r = sub.add_parser(
        "retrain",
        help="train, evaluate, gate and deploy one model (exit 1 when rejected)",
        description="What the model's retrain DAG does, run here: snapshot the training window ending at --as-of, "
        "train a candidate, evaluate it on the holdout against the champion, run the gates, register it and deploy "
        "it as the config's deploy mode says (champion, or challenger for shadow/canary). Exit 0 deployed, 1 not "
        "deployed (a gate failed, invalid data, approval required), 2 bad input.",
    )
    r.add_argument("model", help="model name (its config is configs/models/MODEL.yaml)")
    r.add_argument("--as-of", type=_date, required=True, help="the logical day: last day of the training window")
    r.add_argument("--reason", default="manual", help="why, kept in the ledger and the model version (default manual)")
    _format(r)
    r.set_defaults(func=cmd_retrain)

    h = sub.add_parser(
        "history",
        help="champion changes of a model over time, or the champion at --at and why",
        description=_HISTORY_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    h.add_argument("model", help="model name")
    h.add_argument(
        "--at",
        type=_instant,
        default=None,
        help="YYYY-MM-DD (end of that day, UTC) or ISO datetime: the champion at that instant",
    )
    _format(h)
    h.set_defaults(func=cmd_history)

    led = sub.add_parser(
        "ledger",
        help="check the decision ledger",
        description="The decision ledger: every monitor check, gate verdict, promotion and rollback, hash-chained.",
    )
    led_sub = led.add_subparsers(dest="ledger_command", required=True, parser_class=_Parser)
    lv = led_sub.add_parser(
        "verify",
        help="check the hash chain and head of the decision ledger (exit 1 when broken)",
        description="Recompute every row's hash, check seq is contiguous from 0, every prev_hash links to the row "
        "before, and the head table names the last row. Exit 0 intact, 1 broken. A chain cannot prove "
        "that nobody rewrote the whole table and head: anchor the printed head hash elsewhere.",
    )
    _format(lv)
    lv.set_defaults(func=cmd_ledger_verify)

    rp = sub.add_parser(
        "reproduce",
        help="retrain a registered model version from its DVC data and logged config "
        "and compare (exit 1 when not identical)",
        description="Fetch the exact training set of MODEL version VERSION from the data registry "
        "(tags dvc.path, dvc.rev, dvc.md5), retrain it with its logged config and seed, and compare "
        "holdout metrics and predictions with the registered model. Exit 0 identical, 1 different, "
        "2 unknown model/version or tampered data.",
    )
    rp.add_argument("model", help="registered model name")
    rp.add_argument("version", help="registered version number")
    _format(rp)
    rp.add_argument(
        "--config-dir",
        default=argparse.SUPPRESS,
        help="directory holding platform.yaml and models/ (also accepted before the command)",
    )
    rp.set_defaults(func=cmd_reproduce)

    st = sub.add_parser(
        "status",
        help="fleet state: champions, challengers, rollout, drift, gates, decisions",
        description=_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("model", nargs="?", default=None, help="one model in detail (default: every model, one row each)")
    st.add_argument("--history", type=int, default=14, help="monitor checks in the drift trend (default 14)")
    st.add_argument("--decisions", type=int, default=10, help="ledger decisions per model (default 10)")
    _format(st)
    st.set_defaults(func=cmd_status)

    from retrain_lib.cli_serving import register as register_serving

    register_serving(sub)  # serve, replay, promote
    from retrain_lib.cli_backtest import register as register_backtest

    register_backtest(sub)  # backtest, dry-run, calibrate
    return p


def run_commands(register, description: str, argv: list[str] | None = None) -> int:
    """``main`` of a module that adds its commands with ``register(sub)`` (``cli_serving``,
    ``cli_backtest``), run alone: the same parser class, ``--config-dir`` and exit codes."""
    parser = _Parser(prog="retrain", description=description)
    parser.add_argument("--config-dir", help="directory holding platform.yaml and models/ (default: ./configs)")
    register(parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    args = parser.parse_args(argv)
    if not hasattr(args, "config_dir"):
        args.config_dir = None
    try:
        return _with_progress(args, args.func)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RetrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stderr for messages
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return _with_progress(args, args.func)
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
