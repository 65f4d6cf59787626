"""Running a parsed ``retrain`` command: progress on stderr around it, and a group of commands
(``serving_cmds``, ``backtest_cmds``) run alone with the same exit codes."""

from __future__ import annotations

import logging
import sys

from retrain_lib.cli.output import ProgressHandler, progress_printer
from retrain_lib.cli.parsing import Parser
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, ConfigError, DataError, RetrainError


def with_progress(args, run) -> int:
    """Run ``run(args)`` with progress on stderr: the command's own steps (``say``) and the
    library's INFO messages; none with --quiet or for a command that shows its own
    (``own_progress``: serve, backtest, dry-run); -v logs everything instead."""
    if getattr(args, "no_progress", False) or getattr(args, "own_progress", False):
        return run(args)
    args.say = progress_printer()
    if getattr(args, "verbose", False):
        return run(args)
    handler = ProgressHandler(args.say)
    lib = logging.getLogger("retrain_lib")
    level = lib.level
    lib.addHandler(handler)
    lib.setLevel(logging.INFO)
    try:
        return run(args)
    finally:
        lib.removeHandler(handler)
        lib.setLevel(level)


def run_commands(register, description: str, argv: list[str] | None = None) -> int:
    """``main`` of a module that adds its commands with ``register(sub)`` (``serving_cmds``,
    ``backtest_cmds``), run alone: the same parser class, ``--config-dir`` and exit codes."""
    parser = Parser(prog="retrain", description=description)
    parser.add_argument("--config-dir", help="directory holding platform.yaml and models/ (default: ./configs)")
    register(parser.add_subparsers(dest="command", required=True, parser_class=Parser))
    args = parser.parse_args(argv)
    if not hasattr(args, "config_dir"):
        args.config_dir = None
    try:
        return with_progress(args, args.func)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RetrainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
