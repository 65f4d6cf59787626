"""``retrain status``: the fleet's state (see :mod:`retrain_lib.tools.status`), one row per model or
one model in detail."""

from __future__ import annotations

import argparse
import json
import sys

from retrain_lib.cli.parsing import add_format
from retrain_lib.cli.status_view import print_fleet, print_model
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_OK
from retrain_lib.core.settings import load_settings
from retrain_lib.tools.status import UnknownModelError, fleet_status

_STATUS_HELP = """\
The fleet's state from the MLflow registry (aliases, versions, rollout tags), the decision
ledger (last monitor check, gate results, decisions) and the monitor's reports: the same
information as the Airflow fleet page (/retrain/ on the API server).

Without MODEL: one row per model (--per-page N --page P: the P-th page of N models, in
name order, and a line naming the next page). With MODEL: its versions, rollout, last drift check per
feature, drift trend, last gates and last decisions. Progress goes to stderr on a terminal.

Exit codes: 0 ok; 2 unknown model or bad arguments."""


def cmd_status(args) -> int:
    if args.history < 0 or args.decisions < 0:
        print(
            f"error: --history and --decisions must be 0 or more; got {args.history} and {args.decisions}",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    if args.page < 1 or (args.per_page is not None and args.per_page < 1):
        print(f"error: --page and --per-page must be 1 or more; got {args.page} and {args.per_page}", file=sys.stderr)
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
            page=args.page,
            per_page=args.per_page,
            gate_details=args.model is not None or args.format == "json",
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
        print_fleet(fleet, sys.stdout)
    else:
        print_model(fleet["models"][0], sys.stdout)
    return EXIT_OK


def register(sub) -> None:
    """Add ``status`` to the subparsers ``sub`` of the ``retrain`` parser."""
    st = sub.add_parser(
        "status",
        help="fleet state: champions, challengers, rollout, drift, gates, decisions",
        description=_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("model", nargs="?", default=None, help="one model in detail (default: every model, one row each)")
    st.add_argument("--history", type=int, default=14, help="monitor checks in the drift trend (default 14)")
    st.add_argument("--decisions", type=int, default=10, help="ledger decisions per model (default 10)")
    st.add_argument("--page", type=int, default=1, help="page of the fleet to show, from 1 (with --per-page)")
    st.add_argument(
        "--per-page",
        type=int,
        default=None,
        help="models per page, in name order (default: every model); a page reads the registry in two queries",
    )
    add_format(st)
    st.set_defaults(func=cmd_status)
