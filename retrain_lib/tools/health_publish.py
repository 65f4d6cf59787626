"""The monthly health report published: rendered to one self-contained HTML page with inline
SVG charts (``templates/health_report.html``, geometry from :mod:`retrain_lib.tools.health_plots`),
written next to the monitor's reports, logged to MLflow, and summarised in a Slack message.

* :func:`publish_health_report` builds the :class:`~retrain_lib.tools.health_report.HealthReport`,
  writes ``<reports_dir>/<model>/health/<YYYY-MM>.html`` and ``.json`` and logs both to one MLflow
  run of the model's monitor experiment, named ``health_report_<model>_<YYYY-MM>`` and tagged
  ``retrain.kind=health_report``, ``retrain.month``. Running it again for the same month
  replaces that run (the earlier one is deleted once the new one is complete), so each month
  has one report run.
* :func:`health_alert` is the ``health_report`` Slack alert: the month's counts, the failed
  gates, the live metric's trend and the open approvals, with links to the report.
  The DAG sends it through the Airflow Slack connection; :func:`send_health_alert` sends it
  through any ``post`` and :func:`env_webhook_post` gives a ``post`` for a webhook connection
  defined in the environment (``AIRFLOW_CONN_<ID>``), which ``retrain report`` uses.

Example::

    published = publish_health_report("credit_default", "2026-02", settings=load_settings())
    published.html_path, published.run_id
    alert = health_alert(published.report, links=summary_links(settings, published))
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrain_lib.core.settings import Settings, load_settings
from retrain_lib.pipeline import alert_delivery
from retrain_lib.pipeline.alert_links import mlflow_run_url, runbook_url
from retrain_lib.pipeline.alert_payload import (
    Alert,
    Links,
    bullets,
    context_line,
    dedupe_key,
    esc,
    num,
    resolve_severity,
    slack_payload,
)
from retrain_lib.store.model_context import ModelContext
from retrain_lib.tools.health_plots import drift_chart, metric_chart
from retrain_lib.tools.health_report import HealthReport, build_health_report

log = logging.getLogger(__name__)

KIND = "health_report"  # the alert kind, the runbook and the MLflow run's retrain.kind tag
TEMPLATES = Path(__file__).resolve().parent / "templates"
ARTIFACT_DIR = "health_report"
HTTP_TIMEOUT_S = 10


@dataclass(frozen=True)
class PublishedReport:
    """A health report and where it went: the HTML and JSON files, and (when logged) its MLflow
    run, the runs it replaced and the MLflow UI page of its HTML."""

    report: HealthReport
    html_path: str
    json_path: str
    run_id: str | None = None
    experiment_id: str | None = None
    replaced: tuple[str, ...] = ()

    @property
    def html_artifact(self) -> str:
        return f"{ARTIFACT_DIR}/{Path(self.html_path).name}"

    def to_xcom(self) -> dict[str, Any]:
        """Ids and paths only (what a task returns)."""
        return {
            "model": self.report.model,
            "month": self.report.month,
            "html_path": self.html_path,
            "json_path": self.json_path,
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "replaced": list(self.replaced),
        }


def run_name(model: str, month: str) -> str:
    """``health_report_<model>_<YYYY-MM>``: the MLflow run of one model-month."""
    return f"{KIND}_{model}_{month}"


# -----------------------------------------------------------------------------------------
# HTML
# -----------------------------------------------------------------------------------------


def _num(value: Any, fmt: str = ".4g") -> str:
    return "–" if value is None else format(float(value), fmt)


def render_html(report: HealthReport) -> str:
    """The report as one HTML page (no script, no external resource): counts, champion,
    the live metric and drift charts, failed gates, open approvals and the month's decisions."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True
    )
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: "–" if v is None else f"{float(v):.0%}"
    return env.get_template("health_report.html").render(
        r=report,
        c=report.counts,
        trend=report.to_dict()["trend"],
        metric_chart=metric_chart(report.days, report.metric),
        drift_chart=drift_chart(report.days, report.drift_share_threshold),
        headline=headline(report),
    )


# -----------------------------------------------------------------------------------------
# Publishing
# -----------------------------------------------------------------------------------------


def publish_health_report(
    model: str,
    month: str,
    *,
    settings: Settings | None = None,
    out: str | os.PathLike | None = None,
    log_to_mlflow: bool = True,
    now: dt.datetime | None = None,
) -> PublishedReport:
    """Build ``model``'s report of ``month``, write its HTML (to ``out``, default
    ``<reports_dir>/<model>/health/<month>.html``) and JSON (next to it), and unless
    ``log_to_mlflow`` is off log both to the month's MLflow run (replacing an earlier one)."""
    settings = settings or load_settings()
    ctx = ModelContext(model, settings)
    report = build_health_report(model, month, settings=settings, client=ctx.client, now=now)
    html_path = Path(out) if out is not None else settings.reports_dir / ctx.name / "health" / f"{report.month}.html"
    html_path.parent.mkdir(parents=True, exist_ok=True)
    json_path = html_path.with_suffix(".json")
    html_path.write_text(render_html(report), encoding="utf-8")
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    published = PublishedReport(report=report, html_path=str(html_path), json_path=str(json_path))
    if not log_to_mlflow:
        return published
    run_id, experiment_id, replaced = log_report_run(ctx, report, html_path, json_path)
    log.info("health report of %s for %s logged to MLflow run %s", ctx.name, report.month, run_id)
    return dataclasses.replace(published, run_id=run_id, experiment_id=experiment_id, replaced=replaced)


def report_metrics(report: HealthReport) -> dict[str, float]:
    """What the MLflow run records as metrics: every count, the open approvals and the live
    metric's first, last and mean value of the month."""
    out = {f"health.{k}": float(v) for k, v in dataclasses.asdict(report.counts).items()}
    out["health.open_approvals"] = float(len(report.open_approvals))
    values = report.live_values
    if values and report.metric:
        out[f"live.{report.metric}.first"] = values[0]
        out[f"live.{report.metric}.last"] = values[-1]
        out[f"live.{report.metric}.mean"] = float(report.live_mean or 0.0)
    return out


def log_report_run(
    ctx: ModelContext, report: HealthReport, html_path: Path, json_path: Path
) -> tuple[str, str, tuple[str, ...]]:
    """Log the report to a new run of the model's monitor experiment, then delete the earlier
    runs of the same month: ``(run id, experiment id, the run ids replaced)``. A failure while
    logging leaves the earlier run in place (the new one is marked failed and deleted)."""
    from mlflow.entities import Metric

    client = ctx.client
    experiment_id = ctx.experiment_id(monitor=True)
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`retrain.kind` = '{KIND}' and tags.`retrain.month` = '{report.month}'",
    )
    earlier = tuple(r.info.run_id for r in found)
    tags = {
        "retrain.kind": KIND,
        "retrain.model": ctx.name,
        "retrain.month": report.month,
        "retrain.champion": report.champion.now or "",
        "mlflow.note.content": headline(report),
    }
    run = client.create_run(experiment_id, run_name=run_name(ctx.name, report.month), tags=tags)
    run_id = run.info.run_id
    try:
        stamp = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        metrics = [Metric(k, v, stamp, 0) for k, v in sorted(report_metrics(report).items())]
        client.log_batch(run_id, metrics=metrics)
        client.log_artifact(run_id, str(html_path), ARTIFACT_DIR)
        client.log_artifact(run_id, str(json_path), ARTIFACT_DIR)
    except Exception:
        client.set_terminated(run_id, "FAILED")
        client.delete_run(run_id)
        raise
    client.set_terminated(run_id)
    for old in earlier:
        client.delete_run(old)
    return run_id, experiment_id, earlier


# -----------------------------------------------------------------------------------------
# Slack
# -----------------------------------------------------------------------------------------


def headline(report: HealthReport) -> str:
    """One line: ``3 drift alarms, 2 retrains, 1 promotion, 1 rollback, live roc_auc 0.81 -> 0.78
    (worse), 1 open approval``."""
    c = report.counts

    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    parts = [
        n(c.drift_alarms, "drift alarm"),
        n(c.retrains, "retrain"),
        n(c.promotions, "promotion"),
        n(c.rollbacks, "rollback"),
    ]
    values = report.live_values
    if values:
        parts.append(
            f"live {report.metric} {num(values[0])} -> {num(values[-1])} ({report.trend_direction or 'one day'})"
        )
    parts.append(n(len(report.open_approvals), "open approval"))
    return ", ".join(parts)


def summary_lines(report: HealthReport) -> list[str]:
    """The facts of the Slack summary, one line each (Slack mrkdwn, escaped)."""
    c = report.counts
    gates = ", ".join(f"`{esc(g.gate)}` ×{g.failures}" for g in report.failed_gates)
    lines = [
        f"*monitor*: {c.monitor_checks} checks on {c.days_checked} days; {c.drift_alarms} drift alarm(s), "
        f"{c.performance_alarms} performance alarm(s); {c.retrain_requests} retrain request(s) ({c.throttled} throttled)",
        f"*retrains*: {c.retrains} candidate(s) judged; {c.promotions} promotion(s) ({c.promotions_by_hand} by hand), "
        f"{c.challengers} rollout(s) started, {c.gate_failures} gate failure(s)"
        + (f" ({gates})" if gates else "")
        + f", {c.no_gain} without gain, {c.validation_failures} stopped by data validation",
        f"*rollbacks*: {c.rollbacks} ({c.guard_rollbacks} by the post-deploy guard); "
        f"{c.rollout_rollbacks} rollout(s) withdrawn",
    ]
    values = report.live_values
    if values:
        lines.append(
            f"*live {esc(report.metric)}*: {num(values[0])} → {num(values[-1])} "
            f"({esc(report.trend_direction or 'one day')}; mean {num(report.live_mean)} over {len(values)} day(s))"
        )
    else:
        lines.append(f"*live {esc(report.metric or 'metric')}*: not measured this month (no matured labels)")
    waiting = [f"v{esc(a.version)} since {esc(a.requested_on)} ({a.waiting_days} d)" for a in report.open_approvals]
    lines.append("*open approvals*: " + ("; ".join(waiting) if waiting else "none"))
    return lines


def health_alert(report: HealthReport, *, links: Links = Links(), severity: str | None = None) -> Alert:
    """The ``health_report`` Slack alert of ``report`` (green unless the config says otherwise)."""
    sev = resolve_severity(severity, KIND)
    ch = report.champion
    champion = f"champion v{esc(ch.at_end)}" if ch.at_end else "no champion"
    if ch.now and ch.now != ch.at_end:
        champion += f" (v{esc(ch.now)} now)"
    head = f"*{esc(report.model)}* in {esc(report.month)}: {champion}."
    payload = slack_payload(
        sev,
        f"Health report: {report.model} {report.month}",
        [head, bullets(summary_lines(report))],
        f"{report.model} health {report.month}: {headline(report)}",
        links,
        context_line(report.model, report.last_day, f"month {esc(report.month)}"),
    )
    return Alert(KIND, report.model, sev, dedupe_key(KIND, report.model, [report.month]), payload)


def summary_links(settings: Settings, published: PublishedReport, *, task_log: str | None = None) -> Links:
    """The report's HTML in the MLflow UI (first), its MLflow run, the task log and the runbook."""
    ui = settings.platform.mlflow_ui_url
    html = mlflow_run_url(ui, published.run_id, published.experiment_id, published.html_artifact)
    return Links(
        task_log=task_log,
        mlflow_run=mlflow_run_url(ui, published.run_id, published.experiment_id),
        extra=(("health report", html),) if html else (),
        runbook=runbook_url(settings.platform.airflow_base_url, KIND),
    )


def send_health_alert(alert: Alert, post: Callable[[dict[str, Any]], Any], *, settings: Settings, alerts_cfg) -> str:
    """Deliver ``alert`` with ``post`` per the model's ``alerts`` config (de-duplicated in the
    platform database, retried): ``sent``, ``suppressed``, ``failed`` or ``disabled``. Never raises."""
    if not alerts_cfg.wants(KIND):
        return alert_delivery.DISABLED
    return alert_delivery.deliver(
        alert,
        post,
        store=alert_delivery.DedupeStore.from_settings(settings),
        dedupe_minutes=alerts_cfg.dedupe_minutes,
        retries=alerts_cfg.retries,
        retry_seconds=alerts_cfg.retry_seconds,
    )


def env_webhook_post(conn_id: str, environ: dict[str, str] | None = None) -> Callable[[dict[str, Any]], Any] | None:
    """A ``post(payload)`` to the webhook of the Slack connection ``conn_id`` as the environment
    defines it for Airflow (``AIRFLOW_CONN_<ID>``: JSON of a ``slackwebhook`` connection whose
    password, or host and password, is the webhook URL), or ``None`` when it defines none."""
    import urllib.request

    raw = (os.environ if environ is None else environ).get(f"AIRFLOW_CONN_{conn_id.upper()}")
    try:
        conn = json.loads(raw) if raw else None
    except ValueError:
        conn = None
    if not isinstance(conn, dict) or conn.get("conn_type") != "slackwebhook":
        return None
    password, host = str(conn.get("password") or ""), str(conn.get("host") or "")
    url = password if password.startswith(("http://", "https://")) else f"{host.rstrip('/')}/{password.lstrip('/')}"
    if not url.startswith(("http://", "https://")):
        return None

    def post(payload: dict[str, Any]) -> None:
        request = urllib.request.Request(
            url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            if response.status != 200:
                raise RuntimeError(f"Slack webhook answered HTTP {response.status}")

    return post
