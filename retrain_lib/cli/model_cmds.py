"""``retrain monitor`` and ``retrain retrain``: one model's monitor check and retrain, run here
as its DAGs run them."""

from __future__ import annotations

import json

from retrain_lib.cli.output import say
from retrain_lib.cli.parsing import add_format, parse_date
from retrain_lib.core.errors import EXIT_FAILED, EXIT_OK
from retrain_lib.core.settings import load_settings


def cmd_monitor(args) -> int:
    # lazy: pandas; each command loads only what it runs
    from retrain_lib.pipeline.monitor_run import monitor_model

    say(
        args,
        f"checking {args.model} as of {args.as_of}: data validation, drift, the champion's live metric "
        "(MLflow and the data load first)",
    )
    res = monitor_model(args.model, args.as_of, settings=load_settings(args.config_dir), actor="cli")
    if args.format == "json":
        print(json.dumps(res.to_xcom(), default=str))
    else:
        print(f"{res.model} as of {res.as_of}: {res.action.upper()}")
        for r in res.reasons:
            print(f"  - {r}")
    return EXIT_FAILED if res.action == "retrain" else EXIT_OK


def cmd_retrain(args) -> int:
    from retrain_lib.pipeline.retrain_run import retrain_model

    say(args, f"retraining {args.model} as of {args.as_of}: snapshot, training, evaluation, gates, registration")
    res = retrain_model(
        args.model, args.as_of, settings=load_settings(args.config_dir), actor="cli", reason=args.reason
    )
    if args.format == "json":
        print(json.dumps(res.to_dict(), default=str))
    else:
        print(f"{args.model} retrain as of {args.as_of}: {res.outcome}")
        for g in res.gates.results if res.gates is not None else ():
            print(f"  {'PASS' if g.passed else 'FAIL'} {g.reason}")
        if res.outcome == "deployed":
            assert res.registered is not None and res.deployed is not None  # both steps ran
            print(f"  version {res.registered.version} -> champion {res.deployed.champion}")
    return EXIT_OK if res.outcome == "deployed" else EXIT_FAILED


def register(sub) -> None:
    """Add ``monitor`` and ``retrain`` to the subparsers ``sub`` of the ``retrain`` parser."""
    m = sub.add_parser(
        "monitor",
        help="check one model for one day (exit 1 when it should retrain)",
        description="What the model's monitor DAG does for one day, run here: validate the day's data, score drift "
        "against the reference window, compare the champion's live metric with its baseline, check the schedule "
        "and the retrain limits, and decide whether the model should retrain. Exit 0 no retrain needed, 1 retrain "
        "needed, 2 bad input.",
    )
    m.add_argument("model", help="model name (its config is configs/models/MODEL.yaml)")
    m.add_argument("--as-of", type=parse_date, required=True, help="the logical day to check, YYYY-MM-DD")
    add_format(m)
    m.set_defaults(func=cmd_monitor)

    r = sub.add_parser(
        "retrain",
        help="train, evaluate, gate and deploy one model (exit 1 when rejected)",
        description="What the model's retrain DAG does, run here: snapshot the training window ending at --as-of, "
        "train a candidate, evaluate it on the holdout against the champion, run the gates, register it and deploy "
        "it as the config's deploy mode says (champion, or challenger for shadow/canary). Exit 0 deployed, 1 not "
        "deployed (a gate failed, invalid data, approval required), 2 bad input.",
    )
    r.add_argument("model", help="model name (its config is configs/models/MODEL.yaml)")
    r.add_argument("--as-of", type=parse_date, required=True, help="the logical day: last day of the training window")
    r.add_argument("--reason", default="manual", help="why, kept in the ledger and the model version (default manual)")
    add_format(r)
    r.set_defaults(func=cmd_retrain)
