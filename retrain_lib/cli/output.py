"""What the ``retrain`` commands print besides their results: progress lines on stderr and
aligned text tables."""

from __future__ import annotations

import logging
import sys
import time


class ProgressHandler(logging.Handler):
    """Shows the library's INFO messages (``retrain_lib.*`` loggers) as progress lines."""

    def __init__(self, say):
        super().__init__(logging.INFO)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.say(record.getMessage())
        except Exception:  # noqa: BLE001 - a progress line must never fail the command
            self.handleError(record)


def progress_printer(out=None):
    """``say(message)``: one ``[  12.3s] message`` line on stderr, seconds since the command started."""
    started = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=out or sys.stderr, flush=True)

    return say


def say(args, message: str) -> None:
    """A progress line on stderr for a step that can take seconds (not with --quiet)."""
    printer = getattr(args, "say", None)
    if printer is not None:
        printer(message)


def table(headers: list[str], rows: list[list[str]], out, *, right=frozenset()) -> None:
    """Columns as wide as their widest cell (header included), two spaces apart; the columns
    whose index is in ``right`` aligned right (numbers)."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    print(line(headers).rstrip(), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for r in rows:
        print(line(r).rstrip(), file=out)
