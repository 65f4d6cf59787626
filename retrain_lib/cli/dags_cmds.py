"""``retrain dags sync``: one generated DAG file per model config
(:mod:`retrain_lib.tools.dag_stubs`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from retrain_lib.cli.parsing import Parser, add_format
from retrain_lib.core.errors import EXIT_OK
from retrain_lib.core.settings import default_config_dir
from retrain_lib.tools.dag_stubs import default_dags_dir, sync_dag_stubs

_SYNC_HELP = """\
Write dags/models/<model>.py for every configs/models/<model>.yaml: a 3-line file that builds
that model's DAGs alone, so Airflow's DAG processor parses the fleet file by file, in
parallel, re-parses only the file of a changed config (its stub is rewritten only when the
config's content changed) and reports a broken config as an error of its own file. Stubs
whose config is gone are removed; other files are never touched. Models without a stub get
their DAGs from dags/retrain_dags.py, so running this is never required for correctness.

Exit codes: 0 ok."""


def cmd_dags_sync(args) -> int:
    config_dir = Path(args.config_dir).resolve() if args.config_dir else default_config_dir()
    dags_dir = Path(args.dags_dir).resolve() if args.dags_dir else default_dags_dir(config_dir)
    result = sync_dag_stubs(config_dir / "models", dags_dir)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(
            f"{result.stub_dir}: {len(result.written)} written, {len(result.unchanged)} unchanged, "
            f"{len(result.removed)} removed"
        )
        for name in result.skipped:
            print(f"skipped {name}: not a model name (lower-case letters, digits, _)", file=sys.stderr)
    return EXIT_OK


def register(sub) -> None:
    """Add ``dags`` (``sync``) to the subparsers ``sub`` of the ``retrain`` parser."""
    d = sub.add_parser(
        "dags",
        help="generate one DAG file per model config (fast, isolated parsing)",
        description="Manage the generated per-model DAG files under dags/models/.",
    )
    d_sub = d.add_subparsers(dest="dags_command", required=True, parser_class=Parser)
    s = d_sub.add_parser(
        "sync",
        help="write dags/models/<model>.py per config; remove stale ones",
        description=_SYNC_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s.add_argument(
        "--dags-dir",
        help="the Airflow DAGs folder (default: $RETRAIN_DAGS_DIR, else $AIRFLOW__CORE__DAGS_FOLDER, "
        "else dags/ beside the config directory)",
    )
    add_format(s)
    s.set_defaults(func=cmd_dags_sync)
