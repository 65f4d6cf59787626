"""``retrain dags sync``: one generated DAG file per model config. The files are the Airflow
side's (``retrain_airflow.dag_files``, which knows the DAG factory); the library never imports
the plugin, so this command runs it as ``python -m retrain_airflow.dag_files sync``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from retrain_lib.cli.parsing import Parser, add_format

_SYNC_HELP = """\
Write dags/models/<model>.py for every configs/models/<model>.yaml: a 3-line file that builds
that model's DAGs alone, so Airflow's DAG processor parses the fleet file by file, in
parallel, re-parses only the file of a changed config (its stub is rewritten only when the
config's content changed) and reports a broken config as an error of its own file. Stubs
whose config is gone are removed; other files are never touched. Models without a stub get
their DAGs from dags/retrain_dags.py, so running this is never required for correctness.

Exit codes: 0 ok."""


def cmd_dags_sync(args) -> int:
    cmd = [sys.executable, "-m", "retrain_airflow.dag_files", "sync", "--format", args.format]
    if args.config_dir:
        cmd += ["--config-dir", str(Path(args.config_dir).resolve())]
    if args.dags_dir:
        cmd += ["--dags-dir", str(Path(args.dags_dir).resolve())]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    return proc.returncode


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
