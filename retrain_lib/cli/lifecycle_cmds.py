"""``retrain retire`` and ``retrain unretire``: deprecating or retiring a model (or one version)
by hand, and a person's undo (:mod:`retrain_lib.pipeline.retirement`).

Exit codes as in ``retrain``: 0 done (or nothing to do), 1 refused (the champion version without
--force), 2 bad input (unknown model or version, missing reason).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

from retrain_lib.cli.output import say
from retrain_lib.cli.parsing import add_config_dir, add_format, parse_date
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, RegistryError
from retrain_lib.core.settings import load_settings
from retrain_lib.pipeline.retirement import LifecycleChange, deprecate_model, retire_model, unretire_model
from retrain_lib.tools.airflow_api import AirflowApi, pause_dags


def _known(settings, model: str, what: str = "model") -> bool:
    path = settings.models_dir / f"{model}.yaml"
    if not path.is_file():
        print(f"error: unknown {what} {model!r}: no config {path}", file=sys.stderr)
    return path.is_file()


def _actor() -> str:
    return f"cli/{os.environ.get('USER', 'unknown')}"


def _not_found(exc: Exception, args) -> bool:
    """An unknown version (from MLflow) or a model never registered: say so (exit 2)."""
    if not isinstance(exc, RegistryError) and type(exc).__name__ != "MlflowException":
        return False
    print(f"error: {args.model}{f' version {args.version}' if args.version else ''}: {exc}", file=sys.stderr)
    return True


def _show(change: LifecycleChange, args) -> int:
    if args.format == "json":
        print(json.dumps(change.to_dict(), indent=2))
    else:
        print(f"{change.model}: {change.message}")
        for dag_id, outcome in change.dags.items():
            print(f"  DAG {dag_id}: {outcome}")
        if change.action == "retired" and change.version is None:
            instead = f"; it names {change.replacement}" if change.replacement else ""
            print(f"  the gateway answers 410 Gone for {change.model}{instead}")
        for hint in change.hints:
            print(f"  next: {hint}")
    return EXIT_FAILED if change.action == "refused" else EXIT_OK


def cmd_retire(args) -> int:
    settings = load_settings(args.config_dir)
    if not _known(settings, args.model):
        return EXIT_BAD_INPUT
    if args.now and args.notice_days is not None:
        print("error: --notice-days announces a retirement; --now retires at once: pass one of them", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.force and args.version is None:
        print("error: --force only applies with --version (retiring the champion version)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.replacement and not (settings.models_dir / f"{args.replacement}.yaml").is_file():
        print(f"note: the replacement {args.replacement!r} has no config in {settings.models_dir}", file=sys.stderr)
    as_of = args.as_of or dt.date.today()
    common = {
        "as_of": as_of,
        "reason": args.reason,
        "settings": settings,
        "replacement": args.replacement,
        "actor": _actor(),
        "version": args.version,
    }
    try:
        if args.now:
            say(args, f"retiring {args.model}" + (f" version {args.version}" if args.version else "") + " now")
            api = AirflowApi.from_env()
            change = retire_model(args.model, force=args.force, pause=lambda ids: pause_dags(api, ids), **common)
        else:
            change = deprecate_model(args.model, notice_days=args.notice_days, **common)
    except Exception as exc:
        if _not_found(exc, args):
            return EXIT_BAD_INPUT
        raise
    return _show(change, args)


def cmd_unretire(args) -> int:
    settings = load_settings(args.config_dir)
    if not _known(settings, args.model):
        return EXIT_BAD_INPUT
    try:
        change = unretire_model(
            args.model,
            as_of=args.as_of or dt.date.today(),
            reason=args.reason,
            settings=settings,
            actor=_actor(),
            version=args.version,
        )
    except Exception as exc:
        if _not_found(exc, args):
            return EXIT_BAD_INPUT
        raise
    return _show(change, args)


def _non_negative(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of days") from None
    if days < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return days


def register(sub) -> None:
    """Add ``retire`` and ``unretire`` to the subparsers ``sub`` of the ``retrain`` parser."""
    r = sub.add_parser(
        "retire",
        help="deprecate a model (retired after a notice) or retire it now (--now); in the ledger",
        description="Without --now: deprecate MODEL (or its --version): tagged lifecycle.status=deprecated with "
        "deprecation.target = today + --notice-days (default: lifecycle.notice_days of its config, else 30); the "
        "monitor sends one deprecation notice on Slack and retires it on that day. With --now: retire it at once: "
        "every alias removed, every version tagged lifecycle.status=retired with the reason and the replacement, "
        "its monitor/retrain/rollout/guard DAGs paused through the Airflow REST API when RETRAIN_AIRFLOW_API_URL is "
        "set (their runs do nothing for a retired model otherwise), and the gateway answers 410 Gone naming the "
        "replacement. With --version: that version only (its aliases removed; the champion is refused unless "
        "--force). Undo: `retrain unretire`. Exit 1 when refused.",
    )
    r.add_argument("model", help="model name (its config is configs/models/MODEL.yaml)")
    r.add_argument("--reason", required=True, help="why (kept in the ledger and the tags)")
    r.add_argument("--version", default=None, help="retire this registered version only")
    r.add_argument("--replacement", default=None, help="the model that replaces it (default: lifecycle.replacement)")
    r.add_argument("--notice-days", type=_non_negative, default=None, help="days of deprecation before retirement")
    r.add_argument("--now", action="store_true", help="retire now instead of announcing it")
    r.add_argument("--force", action="store_true", help="with --version: retire the champion version too")
    r.add_argument("--as-of", type=parse_date, default=None, help="the day recorded, YYYY-MM-DD (default: today)")
    add_format(r)
    add_config_dir(r)
    r.set_defaults(func=cmd_retire)

    u = sub.add_parser(
        "unretire",
        help="make a retired or deprecated model (or version) active again, by hand; in the ledger",
        description="Undo a retirement or a pending deprecation of MODEL (or its --version): tagged "
        "lifecycle.status=active again, with an unretire ledger record. No alias is restored and no DAG "
        "unpaused: the commands to promote a version and unpause the DAGs are printed.",
    )
    u.add_argument("model", help="model name (its config is configs/models/MODEL.yaml)")
    u.add_argument("--reason", required=True, help="why (kept in the ledger)")
    u.add_argument("--version", default=None, help="unretire this registered version only")
    u.add_argument("--as-of", type=parse_date, default=None, help="the day recorded, YYYY-MM-DD (default: today)")
    add_format(u)
    add_config_dir(u)
    u.set_defaults(func=cmd_unretire)
