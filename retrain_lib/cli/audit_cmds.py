"""``retrain history``, ``retrain ledger verify`` and ``retrain reproduce``: champion changes
from the decision ledger, a check of its hash chain, and a registered version retrained from
its lineage to compare."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from retrain_lib.cli.output import say, table
from retrain_lib.cli.parsing import Parser, add_config_dir, add_format
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, RegistryError
from retrain_lib.core.settings import load_settings
from retrain_lib.store.audit import Ledger
from retrain_lib.store.ledger_history import champion_at, champion_changes, parse_instant

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
            table(
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


def cmd_reproduce(args) -> int:
    # lazy: pandas; each command loads only what it runs
    from retrain_lib.tools.reproduce import reproduce

    try:
        res = reproduce(
            args.model,
            args.version,
            settings=load_settings(args.config_dir),
            progress=lambda message: say(args, message),
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


def register(sub) -> None:
    """Add ``history``, ``ledger`` (``verify``) and ``reproduce`` to the subparsers ``sub`` of the ``retrain`` parser."""
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
    add_format(h)
    h.set_defaults(func=cmd_history)

    led = sub.add_parser(
        "ledger",
        help="check the decision ledger",
        description="The decision ledger: every monitor check, gate verdict, promotion and rollback, hash-chained.",
    )
    led_sub = led.add_subparsers(dest="ledger_command", required=True, parser_class=Parser)
    lv = led_sub.add_parser(
        "verify",
        help="check the hash chain and head of the decision ledger (exit 1 when broken)",
        description="Recompute every row's hash, check seq is contiguous from 0, every prev_hash links to the row "
        "before, and the head table names the last row. Exit 0 intact, 1 broken. A chain cannot prove "
        "that nobody rewrote the whole table and head: anchor the printed head hash elsewhere.",
    )
    add_format(lv)
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
    add_format(rp)
    add_config_dir(rp)
    rp.set_defaults(func=cmd_reproduce)
