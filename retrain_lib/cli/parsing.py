"""Parser pieces every ``retrain`` command module shares: the parser class with short errors
and exit code 2, the ``--format`` and ``--config-dir`` options and the YYYY-MM-DD argument type."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

from retrain_lib.core.errors import EXIT_BAD_INPUT

FORMAT_HELP = "text for people (default) or json: one JSON object on stdout"


class Parser(argparse.ArgumentParser):
    """The ``retrain`` parser: a usage line and a one-line error on stderr, exit code 2."""

    def error(self, message):  # argparse exits 2 already; keep its message short and clear
        self.print_usage(sys.stderr)
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def parse_date(value: str) -> dt.date:
    """An argument type: a YYYY-MM-DD day."""
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date; use YYYY-MM-DD") from None


def add_format(p, default: str = "text") -> None:
    """The --format option every command has."""
    p.add_argument(
        "--format",
        choices=["text", "json"],
        default=default,
        help=FORMAT_HELP if default == "text" else "json (default): one JSON object on stdout; or text",
    )


def add_config_dir(p) -> None:
    """``--config-dir`` after the command too (the top-level parser has it before the command)."""
    p.add_argument(
        "--config-dir",
        default=argparse.SUPPRESS,
        help="directory holding platform.yaml and models/ (also accepted before the command)",
    )
