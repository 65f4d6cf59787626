"""``retrain report``: a model's monthly health report (see :mod:`retrain_lib.tools.health_report`),
as HTML with charts, logged to MLflow and summarised in Slack."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys

from retrain_lib.cli.output import say
from retrain_lib.cli.parsing import add_config_dir, add_format
from retrain_lib.core.errors import EXIT_OK
from retrain_lib.core.settings import load_settings
from retrain_lib.pipeline import alert_delivery
from retrain_lib.store.model_context import ModelContext
from retrain_lib.tools.health_publish import (
    env_webhook_post,
    headline,
    health_alert,
    publish_health_report,
    send_health_alert,
    summary_links,
)
from retrain_lib.tools.health_report import MONTH, previous_month

_REPORT_HELP = """\
The health of MODEL over one calendar month, from the decision ledger and the MLflow registry:
monitor checks, drift and performance alarms, retrains, gate failures (which gates), promotions,
rollbacks (the post-deploy guard's among them), open approvals, the champion, and the live
metric per day. Written as HTML with two charts (the live metric, the drifted share per day)
and JSON next to it (default <state>/reports/MODEL/health/YYYY-MM.html), logged to an MLflow
run 'health_report_MODEL_YYYY-MM' of the model's monitor experiment (a second report of the
same month replaces it), and summarised in Slack through the model's alerts.slack_conn_id when
the environment defines that connection (AIRFLOW_CONN_<ID>, a slackwebhook connection). The
<model>__health_report DAG does the same on the 1st of every month for the month before.

Exit codes: 0 ok; 2 unknown model, bad config or bad --month."""


def _month(value: str) -> str:
    """--month: YYYY-MM."""
    if not MONTH.fullmatch(value.strip()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a month; use YYYY-MM, e.g. 2026-02")
    return value.strip()


def _send_summary(args, settings, published) -> str:
    """Slack: the summary through the connection of the model's alerts config, when the
    environment defines it; what happened, in a word."""
    cfg = ModelContext(args.model, settings).cfg
    conn_id = cfg.alerts.slack_conn_id or settings.platform.alerts.slack_conn_id
    post = env_webhook_post(conn_id) if conn_id else None
    if post is None:
        where = f"AIRFLOW_CONN_{conn_id.upper()}" if conn_id else "alerts.slack_conn_id"
        print(f"Slack summary not sent: no slackwebhook connection in {where}", file=sys.stderr)
        return alert_delivery.DISABLED
    alert = health_alert(published.report, links=summary_links(settings, published))
    return send_health_alert(alert, post, settings=settings, alerts_cfg=cfg.alerts)


def cmd_report(args) -> int:
    settings = load_settings(args.config_dir)
    month = args.month or previous_month(dt.date.today())
    say(args, f"health report of {args.model} for {month}: ledger, registry" + ("" if args.no_log else ", MLflow"))
    published = publish_health_report(args.model, month, settings=settings, out=args.out, log_to_mlflow=not args.no_log)
    slack = "skipped" if args.no_slack else _send_summary(args, settings, published)
    if args.format == "json":
        print(json.dumps({**published.to_xcom(), "slack": slack, "report": published.report.to_dict()}, indent=2))
        return EXIT_OK
    r = published.report
    print(f"{r.model} {r.month}: {r.counts.monitor_checks} monitor checks, {headline(r)}")
    print(f"HTML: {published.html_path}")
    if published.run_id:
        print(
            f"MLflow run: {published.run_id}"
            + (f" (replaced {', '.join(published.replaced)})" if published.replaced else "")
        )
    print(f"Slack: {slack}")
    return EXIT_OK


def register(sub) -> None:
    """Add ``report`` to the subparsers ``sub`` of the ``retrain`` parser."""
    rp = sub.add_parser(
        "report",
        help="monthly health report of a model: HTML with charts, MLflow, Slack",
        description=_REPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rp.add_argument("model", help="the model (its config in models/)")
    rp.add_argument("--month", type=_month, default=None, help="YYYY-MM (default: the month before today's)")
    rp.add_argument("--out", default=None, help="write the HTML here (the JSON next to it) instead of the reports dir")
    rp.add_argument("--no-log", action="store_true", help="do not log the report to MLflow")
    rp.add_argument("--no-slack", action="store_true", help="do not send the Slack summary")
    add_format(rp)
    add_config_dir(rp)
    rp.set_defaults(func=cmd_report)
