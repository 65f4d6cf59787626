"""``retrain config validate`` and ``retrain config schema``: check model configs or print
their JSON Schema."""

from __future__ import annotations

import json
import sys

from retrain_lib.cli.parsing import Parser, add_format
from retrain_lib.core.config import json_schema, load_model_configs
from retrain_lib.core.config_platform import platform_json_schema
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_OK
from retrain_lib.core.settings import load_settings


def cmd_config_validate(args) -> int:
    settings = load_settings(args.config_dir)
    paths = args.paths or [settings.models_dir]
    result = load_model_configs(paths, settings.platform)
    if args.format == "json":
        print(
            json.dumps({"valid": sorted(result.models), "problems": [p.to_dict() for p in result.problems]}, indent=2)
        )
    else:
        for problem in result.problems:
            print(str(problem), file=sys.stderr)
        files = len({p.file for p in result.problems})
        if result.problems:
            print(
                f"{len(result.problems)} problem(s) in {files} file(s); {len(result.models)} valid model(s)",
                file=sys.stderr,
            )
        else:
            print(f"ok: {len(result.models)} model config(s) valid: {', '.join(sorted(result.models))}")
    return EXIT_OK if result.ok else EXIT_BAD_INPUT


def cmd_config_schema(args) -> int:
    print(json.dumps(platform_json_schema() if args.platform else json_schema(), indent=2))
    return EXIT_OK


def register(sub) -> None:
    """Add ``config`` (``validate``, ``schema``) to the subparsers ``sub`` of the ``retrain`` parser."""
    cfg = sub.add_parser(
        "config",
        help="validate model configs or print their JSON Schema",
        description="Check model configs (configs/models/*.yaml) or print the JSON Schema editors "
        "and CI can check them with.",
    )
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, parser_class=Parser)
    v = cfg_sub.add_parser(
        "validate",
        help="report every problem of every model config (exit 2 on any)",
        description="Validate model configs against the schema and report every problem of every file in one pass, "
        "each with file, line, field, reason and fix: unknown or misspelt fields, wrong types, a model name that is "
        "not the file name, and an estimator class or params that do not exist (looked up in the estimator's source "
        "without importing it). Exit 0 all valid, 2 any problem.",
    )
    v.add_argument("paths", nargs="*", help="files or directories (default: configs/models)")
    add_format(v)
    v.set_defaults(func=cmd_config_validate)
    s = cfg_sub.add_parser(
        "schema",
        help="print the JSON Schema of a model config",
        description="Print the JSON Schema of a model config (or of platform.yaml) on stdout.",
    )
    s.add_argument("--platform", action="store_true", help="the schema of platform.yaml instead")
    s.set_defaults(func=cmd_config_schema)
