"""``retrain show MODEL VERSION``: the full registry record of one model version (see
:mod:`retrain_lib.tools.version_record`)."""

from __future__ import annotations

import argparse
import sys

from retrain_lib.cli.output import table
from retrain_lib.cli.parsing import add_config_dir, add_format
from retrain_lib.core.errors import EXIT_BAD_INPUT, EXIT_OK
from retrain_lib.core.settings import load_settings
from retrain_lib.tools.version_record import UnknownVersionError, VersionRecord, version_record

_SHOW_HELP = """\
The registry record of MODEL version VERSION: semantic version and the rule that set it,
aliases pointing at it, intended use, who registered it, compliance status, deprecation
target, model card, lineage (data window and DVC version, git commit, lock hash, config hash,
MLflow run), gates, metrics, its deployment history from the decision ledger (promotions,
challenger, rollout steps, rollbacks, approvals) and every registry tag.

Semantic version: major when the features or the target changed against the previous
registered version, minor for a retrain on new data, patch for the same data with another
config (or code); the first version is 1.0.0.

Exit codes: 0 ok; 2 unknown model or version (the message lists what exists)."""


def _print_text(record: VersionRecord, out) -> None:
    d = record.to_dict()
    lin = d["lineage"]
    data, dvc = lin["data"], lin["data"]["dvc"]
    fields = [
        (
            "semantic version",
            f"{record.semantic_version or '-'} ({record.semantic_version_reason or 'no rule recorded'})",
        ),
        ("aliases", ", ".join(record.aliases) or "-"),
        ("intended use", record.intended_use or "-"),
        ("registered by", record.registered_by or "-"),
        ("compliance", record.compliance_status),
        ("deprecation target", record.deprecation_target or "-"),
        ("model card", record.model_card_uri or "-"),
        ("created", record.created or "-"),
        ("gates", f"{'passed' if record.gates_passed else 'not passed'}: {record.gates_summary or '-'}"),
        ("metrics", ", ".join(f"{k}={v}" for k, v in record.metrics.items()) or "-"),
        ("data", f"{data['start'] or '?'}..{data['end'] or '?'} (fingerprint {data['fingerprint'] or '-'})"),
        ("data version", f"{dvc['path'] or '-'} at rev {dvc['rev'] or '-'} (md5 {dvc['md5'] or '-'})"),
        ("git commit", lin["git_commit"] or "-"),
        ("lock hash", lin["lock_hash"] or "-"),
        ("config hash", lin["config_hash"] or "-"),
        ("MLflow run", lin["run_id"] or "-"),
        ("warm start from", lin["warm_start_from"] or "-"),
    ]
    print(f"{record.model} version {record.version}", file=out)
    for name, value in fields:
        print(f"  {name + ':':<20} {value}", file=out)
    print("", file=out)
    if not record.deployment_history:
        print("deployment history: none in the ledger", file=out)
        return
    print("deployment history:", file=out)
    table(
        ["effective", "seq", "event", "what", "actor", "reason"],
        [[e.effective, str(e.seq), e.event, e.summary, e.actor or "-", e.reason] for e in record.deployment_history],
        out,
        right={1},
    )


def cmd_show(args) -> int:
    try:
        record = version_record(args.model, args.version, settings=load_settings(args.config_dir))
    except UnknownVersionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.format == "json":
        print(record.to_json())
    else:
        _print_text(record, sys.stdout)
    return EXIT_OK


def register(sub) -> None:
    """Add ``show`` to the subparsers ``sub`` of the ``retrain`` parser."""
    sh = sub.add_parser(
        "show",
        help="the registry record of one model version: semantic version, compliance, lineage, deployments",
        description=_SHOW_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sh.add_argument("model", help="registered model name")
    sh.add_argument("version", help="registered version number")
    add_format(sh)
    add_config_dir(sh)
    sh.set_defaults(func=cmd_show)
