"""The ``retrain`` command line (also ``python -m retrain_lib``): the parser of every command
group and ``main``, the console entry point.

Exit codes: 0 ok; 1 the check ran and failed (drift found, gate failed, invalid data);
2 bad input (config, path, arguments) with a message naming the file, field and reason.
"""

from __future__ import annotations

import argparse
import logging
import sys

from retrain_lib.cli import (
    audit_cmds,
    backtest_cmds,
    config_cmds,
    dags_cmds,
    data_cmds,
    lifecycle_cmds,
    model_cmds,
    report_cmds,
    serving_cmds,
    show_cmds,
    status_cmds,
)
from retrain_lib.cli.parsing import Parser
from retrain_lib.cli.runner import with_progress
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, ConfigError, DataError, RetrainError


def build_parser() -> argparse.ArgumentParser:
    """The ``retrain`` parser: the global options and every command group's subcommands."""
    p = Parser(prog="retrain", description="Keep production ML models current: drift, retrain, gates, promotion.")
    p.add_argument("--config-dir", help="directory holding platform.yaml and models/ (default: ./configs)")
    p.add_argument("-v", "--verbose", action="store_true", help="log everything (every library's INFO) to stderr")
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        dest="no_progress",
        help="no progress lines on stderr (by default the slow steps of a command are printed there)",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    config_cmds.register(sub)  # config validate, config schema
    data_cmds.register(sub)  # simulate, drift
    model_cmds.register(sub)  # monitor, retrain
    audit_cmds.register(sub)  # history, ledger verify, reproduce
    status_cmds.register(sub)  # status
    show_cmds.register(sub)  # show MODEL VERSION
    serving_cmds.register(sub)  # serve, replay, promote
    backtest_cmds.register(sub)  # backtest, dry-run, calibrate
    lifecycle_cmds.register(sub)  # retire, unretire
    report_cmds.register(sub)  # report
    dags_cmds.register(sub)  # dags sync
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the ``retrain`` command ``argv`` (default: the process's arguments); its exit code."""
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # keep stderr for messages
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return with_progress(args, args.func)
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
