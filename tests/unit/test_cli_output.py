"""What the ``retrain`` command line prints besides results: help on every command and
option, aligned tables, progress on stderr for the slow commands."""

from __future__ import annotations

import argparse
import io

import pytest

from retrain_lib.cli.app import build_parser, main
from retrain_lib.cli.output import say, table
from retrain_lib.cli.runner import with_progress


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every (command path, parser, subcommand help) in the ``retrain`` tree."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, (*path, name))


def _commands():
    return list(_walk(build_parser()))


def test_every_command_has_a_description_and_a_help_line():
    root = build_parser()
    assert root.description
    missing = []
    for path, parser in _walk(root):
        if not path:
            continue
        if not parser.description:
            missing.append(("description", " ".join(path)))
    # the one-line help shown in the parent's list of commands
    for action in (a for _, p in _walk(root) for a in p._actions if isinstance(a, argparse._SubParsersAction)):
        listed = {c.dest for c in action._choices_actions}
        missing += [("help", name) for name in action.choices if name not in listed]
    assert missing == []


def test_every_option_and_argument_has_help():
    missing = [
        (" ".join(path) or "retrain", action.option_strings[0] if action.option_strings else action.dest)
        for path, parser in _commands()
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and not (action.help and action.help.strip() and action.help != argparse.SUPPRESS)
    ]
    assert missing == []


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in _commands() if p])
def test_help_prints_and_exits_0(path, capsys):
    with pytest.raises(SystemExit) as info:
        main([*path.split(), "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and out.startswith("usage: retrain")
    description = out.split("\n\n")[1]  # between the usage and the lists of arguments
    assert not description.startswith(("positional arguments:", "options:")), description


# -----------------------------------------------------------------------------------------
# Tables
# -----------------------------------------------------------------------------------------


def test_table_columns_line_up_whatever_the_widths():
    rows = [
        ["2026-01-10", "1", "alice", "short"],
        ["2026-01-20T06:00:00+00:00", "12345", "a-very-long-actor/run", "x"],
        ["d", "7", "", "a reason with spaces"],
    ]
    out = io.StringIO()
    table(["effective", "seq", "actor", "reason"], rows, out, right={1})
    lines = out.getvalue().splitlines()
    rule = lines[1]
    starts = [i for i, ch in enumerate(rule) if ch == "-" and (i == 0 or rule[i - 1] == " ")]
    ends = [i for i, ch in enumerate(rule) if ch == "-" and (i == len(rule) - 1 or rule[i + 1] == " ")]
    assert len(starts) == 4
    for line, cells in zip([lines[0], *lines[2:]], [["effective", "seq", "actor", "reason"], *rows]):
        assert line[starts[0] :].startswith(cells[0]) and line[starts[2] :].startswith(cells[2])
        assert line[starts[3] :] == cells[3]
        assert line[: ends[1] + 1].endswith(cells[1])  # right-aligned numbers end at the column's end


def test_history_table_is_aligned(tmp_path, monkeypatch, capsys, retrain_cfg_config_dir):
    from retrain_lib.store.audit import Ledger

    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    led = Ledger(f"sqlite:///{tmp_path / 'state' / 'platform.db'}")
    m = "credit_default"
    led.append(m, "promote", as_of="2026-01-10", actor="cli", after="1", reason="first")
    led.append(
        m,
        "promote",
        as_of="2026-01-20T06:00:00+00:00",
        actor="credit_default__retrain/manual__2026-12-05T12:58:35.619033+00:00",
        before="1",
        after="10",
        reason="data drift",
    )
    led.append(m, "rollback", as_of="2026-01-22", actor="alice", before="10", after="1", reason="AUC dropped")
    assert main(["--config-dir", str(retrain_cfg_config_dir), "history", m]) == 0
    header, rule, *rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 3
    columns = [i for i in range(len(rule)) if rule[i] == "-" and (i == 0 or rule[i - 1] == " ")]
    names = ["effective", "from -> to", "event", "seq", "actor", "reason"]
    assert [header[i:].split("  ")[0].strip() for i in columns] == names
    arrows = {row.index(" -> ") for row in [header, *rows]}
    assert len(arrows) == 1  # the arrows line up
    for row, (event, actor, reason) in zip(
        rows,
        [
            ("promote", "cli", "first"),
            ("promote", "credit_default__retrain/manual__2026-12-05T12:58:35.619033+00:00", "data drift"),
            ("rollback", "alice", "AUC dropped"),
        ],
    ):
        assert row[columns[2] :].startswith(event) and row[columns[4] :].startswith(actor)
        assert row[columns[5] :] == reason


# -----------------------------------------------------------------------------------------
# Progress on stderr
# -----------------------------------------------------------------------------------------


def _slow_command(args) -> int:
    import logging

    say(args, "step one")
    logging.getLogger("retrain_lib.pipeline.training_run").info("trained %s on %s rows", "m", 10)
    logging.getLogger("mlflow.store").info("not ours")
    print("result")
    return 0


@pytest.mark.parametrize(
    ("argv", "lines"),
    [
        ([], ["step one", "trained m on 10 rows"]),
        (["-q"], []),
        (["--quiet"], []),
    ],
)
def test_slow_commands_print_progress_to_stderr(argv, lines, capsys, monkeypatch):
    import logging
    import re

    args = build_parser().parse_args([*argv, "status"])
    monkeypatch.setattr(args, "func", _slow_command)
    assert with_progress(args, args.func) == 0
    out, err = capsys.readouterr()
    assert out == "result\n"  # stdout keeps only the result (and --format json stays parseable)
    got = err.splitlines()
    assert all(re.fullmatch(r"\[ *\d+\.\ds\] .+", line) for line in got), got
    assert [line.split("] ", 1)[1] for line in got] == lines
    assert logging.getLogger("retrain_lib").handlers == []  # removed again


def test_commands_with_their_own_progress_are_left_alone(capsys):
    args = build_parser().parse_args(["dry-run", "new.yaml", "--against", "old.yaml", "--days", "3"])
    assert args.own_progress is True
    assert with_progress(args, _slow_command) == 0
    assert capsys.readouterr().err == ""
