"""The fleet page: a FastAPI app the Airflow API server mounts under ``/retrain`` (see
:mod:`retrain_airflow.retrain_plugin`).

Pages are rendered on the server from :func:`retrain_lib.status.fleet_status`, the same
data ``retrain status --format json`` prints:

* ``GET /retrain/``                  every model: aliases, rollout, last drift check (per-feature
                                     scores and a trend chart), last gates, last decisions
* ``GET /retrain/models/{model}``    one model in detail
* ``GET /retrain/api/status[/{model}]``  the same as JSON
* ``GET /retrain/reports/{path}``    a file of the monitor's reports directory (drift reports,
                                     ``monitor.json``); nothing outside that directory is served

Every route needs an Airflow user allowed to view the website (the API server's auth
manager: the UI's session cookie or a bearer token).

Nothing is imported at module level but the standard library: the plugin manager executes
every file under ``plugins/`` in every Airflow process, and only the API server ever
answers a request (FastAPI, MLflow and the status reader are imported on the first one).
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures' annotations,
# which name classes imported inside create_app().
import datetime as dt
import html
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

URL_PREFIX = "/retrain"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


class LazyApp:
    """An ASGI app that builds the real FastAPI app on its first request (in the API server),
    so loading the plugin in a scheduler or task process costs nothing."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._app = None
        self._lock = threading.Lock()

    @property
    def app(self):
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


# -----------------------------------------------------------------------------------------
# HTML pieces
# -----------------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    try:
        return format(float(value), spec)
    except (TypeError, ValueError):
        return _e(value)


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0%}"


def _link(url: str | None, text: str, *, new_tab: bool = True) -> str:
    if not url:
        return _e(text)
    target = ' target="_blank" rel="noopener"' if new_tab else ""
    return f'<a href="{_e(url)}"{target}>{_e(text)}</a>'


def _v(version: Any) -> str:
    return f"v{version}" if version else "-"


def _rollout(r: dict) -> str:
    if r.get("mode") == "canary":
        key = f" by {r['sticky_key']}" if r.get("sticky_key") else ""
        return f"canary {float(r.get('canary_percent') or 0):g}%{key}"
    return str(r.get("mode") or "none")


CSS = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
 color:#1d2433;background:#f6f7f9;font-size:14px}
header{background:#017cee;color:#fff;padding:12px 24px}header h1{margin:0;font-size:20px}
header .sub{opacity:.85;font-size:12px}
main{padding:16px 24px}a{color:#0b5cad}
table{border-collapse:collapse;background:#fff;margin:6px 0 14px 0}
th,td{border:1px solid #dde1e7;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
section.model{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 16px;margin:14px 0}
section.model h2{margin:4px 0 8px 0;font-size:18px}
.grid{display:flex;flex-wrap:wrap;gap:18px}.grid>div{min-width:300px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.ok{background:#d9f2dd;color:#1b6b2a}.bad{background:#fbdada;color:#9b1c1c}.warn{background:#fff1c2;color:#7a5a00}
.muted{color:#6b7385}.small{font-size:12px}
.bar{display:inline-block;height:9px;background:#8fb8e8;vertical-align:middle}.bar.drift{background:#e46a6a}
h3{font-size:14px;margin:10px 0 4px 0}
"""


def _page(title: str, body: str, *, root: str, generated: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><header><h1>{_e(title)}</h1><div class="sub">from the MLflow registry and the decision ledger; '
            f'generated {_e(generated)} &middot; <a style="color:#fff" href="{_e(root)}/">fleet</a> &middot; '
            f'<a style="color:#fff" href="{_e(root)}/api/status">JSON</a></div></header><main>{body}</main>'
            "</body></html>")


def _pill(text: str, kind: str) -> str:
    return f'<span class="pill {kind}">{_e(text)}</span>'


def _action_pill(action: str | None) -> str:
    if not action:
        return "-"
    return _pill(action, {"healthy": "ok", "retrain": "warn", "rollback": "bad"}.get(action, "warn"))


def _gates_pill(passed: Any) -> str:
    return {True: _pill("passed", "ok"), False: _pill("failed", "bad")}.get(passed, "-")


def line_chart(labels: list[str], series: dict[str, list[float | None]], *, title: str, ymax: float | None = None,
               threshold: float | None = None, percent: bool = False, width: int = 560, height: int = 190) -> str:
    """An inline SVG line chart: one polyline per series over ``labels`` (x), with an
    optional dashed threshold line and a legend."""
    compact = height < 80  # a sparkline: no axes, labels or legend
    legend_rows = 0 if compact or len(series) < 2 else 1 + sum(6 * len(n) + 18 for n in series) // (width - 60)
    left, right, top, bottom = (3, 3, 3, 3) if compact else (46, 22, 22, 22 + 13 * legend_rows)
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None]
    top_value = max([*values, threshold or 0.0, 1e-9]) if ymax is None else ymax
    top_value = top_value * (1.0 if ymax is not None else 1.1)
    n = len(labels)

    def x(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return top + plot_h - plot_h * min(max(v / top_value, 0.0), 1.0)

    fmt = (lambda v: f"{v:.0%}") if percent else (lambda v: f"{v:.2g}")
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
             f'<text x="{left}" y="14" font-size="12" font-weight="600">{_e(title)}</text>' if title else ""]
    for k in range(0 if compact else 5):
        v = top_value * k / 4
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eceff3"/>')
        parts.append(f'<text x="{left - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end" '
                     f'fill="#6b7385">{_e(fmt(v))}</text>')
    step = max(1, n // 6)
    for i, label in enumerate(labels):
        if not compact and (i % step == 0 or i == n - 1):
            parts.append(f'<text x="{x(i):.1f}" y="{top + plot_h + 14}" font-size="10" text-anchor="middle" '
                         f'fill="#6b7385">{_e(label[5:] if len(label) == 10 else label)}</text>')
    if threshold is not None:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y(threshold):.1f}" y2="{y(threshold):.1f}" '
                     f'stroke="#d62728" stroke-dasharray="4 3"/>')
        if not compact:
            parts.append(f'<text x="{left + plot_w}" y="{y(threshold) - 3:.1f}" '
                     f'font-size="10" text-anchor="end" fill="#d62728">threshold {_e(fmt(threshold))}</text>')
    legend_x, legend_y = left, top + plot_h + 30
    for idx, (name, vs) in enumerate(series.items()):
        color = PALETTE[idx % len(PALETTE)]
        points = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}" '
                         f'data-series="{_e(name)}"/>')
        for a, b in points:
            parts.append(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="2.5" fill="{color}"/>')
        if legend_rows:
            if legend_x + 18 + 6 * len(name) > width - right and legend_x > left:
                legend_x, legend_y = left, legend_y + 13
            parts.append(f'<rect x="{legend_x}" y="{legend_y - 4}" width="10" height="3" fill="{color}"/>'
                         f'<text x="{legend_x + 13}" y="{legend_y}" font-size="10">{_e(name)}</text>')
            legend_x += 18 + 6 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _features_table(mon: dict) -> str:
    feats = mon.get("features") or []
    if not feats:
        return '<p class="muted">no per-feature scores</p>'
    top = max([float(f.get("score") or 0) for f in feats] + [1e-9])
    rows = []
    for f in feats:
        score = f.get("score")
        width = int(80 * float(score or 0) / top)
        drifted = bool(f.get("drifted"))
        rows.append(
            f'<tr data-feature="{_e(f.get("name"))}"><td>{_e(f.get("name"))}</td><td>{_e(f.get("method"))}</td>'
            f'<td class="num" data-field="score">{_num(score)}</td><td class="num">{_num(f.get("p_value"), ".3g")}</td>'
            f'<td class="num">{_num(f.get("threshold"), "g")}</td>'
            f'<td><span class="bar{" drift" if drifted else ""}" style="width:{width}px"></span></td>'
            f'<td data-field="drifted">{_pill("drifted", "bad") if drifted else "no"}</td></tr>')
    note = "" if mon.get("features_source") == "report" else \
        '<p class="muted small">monitor.json missing: the top features from the ledger only</p>'
    return ("<table><tr><th>feature</th><th>method</th><th>score</th><th>p-value</th><th>threshold</th><th></th>"
            f"<th>drifted</th></tr>{''.join(rows)}</table>{note}")


def _drift_block(m: dict, root: str, *, features_chart: bool) -> str:
    mon = m.get("last_monitor")
    if not mon:
        return '<h3>Last drift check</h3><p class="muted">no monitor check in the ledger yet</p>'
    links = [_link(mon.get("run_url"), "MLflow run")]
    if mon.get("drift_report"):
        links.append(_link(f"{root}/reports/{quote(mon['drift_report'])}", "drift report"))
    if mon.get("report"):
        links.append(_link(f"{root}/reports/{quote(mon['report'])}", "monitor.json"))
    reasons = "".join(f"<li>{_e(r)}</li>" for r in mon.get("reasons") or [])
    out = [f'<h3>Last drift check <span data-field="last-check">{_e(mon.get("as_of"))}</span></h3>',
           f'<p>{_action_pill(mon.get("action"))} drifted share <b data-field="drifted-share">'
           f'{_pct(mon.get("drifted_share"))}</b> (dataset drift at {_pct(mon.get("drift_share_threshold"))}) '
           f'&middot; {" &middot; ".join(links)}</p>']
    if reasons:
        out.append(f'<ul class="small">{reasons}</ul>')
    out.append(_features_table(mon))
    trend = m.get("drift_trend") or []
    if trend:
        labels = [t["as_of"] for t in trend]
        out.append('<div class="grid"><div>')
        out.append(line_chart(labels, {"drifted share": [t.get("drifted_share") for t in trend]},
                              title=f"drifted share, last {len(trend)} checks", ymax=1.0, percent=True,
                              threshold=mon.get("drift_share_threshold") or m.get("drift_share_threshold")))
        out.append("</div>")
        if features_chart:
            names = sorted({k for t in trend for k in t.get("scores") or {}})
            series = {n: [(t.get("scores") or {}).get(n) for t in trend] for n in names}
            out.append("<div>")
            out.append(line_chart(labels, series, title="per-feature drift score (method's own scale)"))
            out.append("</div>")
        out.append("</div>")
    return "".join(out)


def _gates_block(m: dict) -> str:
    g = m.get("last_gates")
    if not g:
        return '<h3>Last gates</h3><p class="muted">no gate verdict in the ledger yet</p>'
    head = (f'<h3>Last gates <span class="small muted">{_e(g.get("as_of"))}</span></h3><p>'
            f'<span data-field="gates">{_gates_pill(g.get("passed"))}</span> &middot; '
            f'{_link(g.get("run_url"), "MLflow run")} <span class="muted small">(ledger seq {_e(g.get("seq"))})</span></p>')
    results = g.get("results")
    if not results:
        failed = "".join(f"<li>{_e(r)}</li>" for r in g.get("failed") or [])
        return head + (f"<ul>{failed}</ul>" if failed else "")
    rows = "".join(
        f'<tr><td>{_e(r.get("gate"))}</td><td>{_e(r.get("metric") or "")}</td><td>{_e(r.get("slice"))}</td>'
        f'<td class="num">{_num(r.get("observed"))}</td><td class="num">{_num(r.get("threshold"))}</td>'
        f'<td class="num">{_num(r.get("champion"))}</td>'
        f'<td>{_pill("skipped", "warn") if r.get("skipped") else (_pill("pass", "ok") if r.get("passed") else _pill("FAIL", "bad"))}'
        f'</td></tr>' for r in results)
    return head + ("<table><tr><th>gate</th><th>metric</th><th>slice</th><th>observed</th><th>threshold</th>"
                   f"<th>champion</th><th></th></tr>{rows}</table>")


def _decisions_block(m: dict, limit: int | None = None) -> str:
    decisions = m.get("decisions") or []
    if limit is not None:
        decisions = decisions[:limit]
    if not decisions:
        return '<h3>Last decisions</h3><p class="muted">no decision in the ledger yet</p>'
    rows = []
    for d in decisions:
        moved = f"{_v(d.get('before'))} &rarr; {_v(d.get('after'))}" if d.get("after") or d.get("before") else ""
        rows.append(
            f'<tr data-seq="{_e(d["seq"])}" data-event="{_e(d["event"])}"><td class="num">{_e(d["seq"])}</td>'
            f'<td>{_e(d.get("as_of") or (d.get("time") or "")[:19])}</td><td data-field="event">{_e(d["event"])}</td>'
            f'<td data-field="moved">{moved}</td><td class="small">{_e(d.get("reason"))}</td>'
            f'<td class="small">{_link(d.get("run_url"), "run") if d.get("run_url") else ""}</td>'
            f'<td class="small muted">{_e(d.get("actor"))}</td></tr>')
    return ('<h3>Last decisions <span class="small muted">(decision ledger)</span></h3>'
            "<table><tr><th>seq</th><th>as of</th><th>event</th><th>champion</th><th>reason</th><th></th>"
            f"<th>actor</th></tr>{''.join(rows)}</table>")


def _versions_block(m: dict) -> str:
    versions = sorted((m.get("versions") or {}).values(), key=lambda v: int(v["version"]), reverse=True)
    if not versions:
        return '<p class="muted">no registered version</p>'
    metrics = sorted({k for v in versions for k in v.get("metrics") or {}})[:6]
    rows = []
    for v in versions:
        cells = "".join(f'<td class="num">{_num((v.get("metrics") or {}).get(k))}</td>' for k in metrics)
        rows.append(
            f'<tr data-version="{_e(v["version"])}"><td>{_e(", ".join(v.get("aliases") or []))}</td>'
            f'<td>{_link(v.get("mlflow_url"), _v(v["version"]))}</td><td>{_e(v.get("trained_as_of"))}</td>'
            f'<td>{_e(v.get("promoted_as_of") or "")}</td><td>{_gates_pill(v.get("gates_passed"))}</td>{cells}'
            f'<td>{_link(v.get("run_url"), "run")}</td></tr>')
    head = "".join(f"<th>{_e(k)}</th>" for k in metrics)
    return ("<table><tr><th>alias</th><th>version</th><th>trained as of</th><th>promoted as of</th><th>gates</th>"
            f"{head}<th>MLflow</th></tr>{''.join(rows)}</table>")


def _model_section(m: dict, root: str, *, detail: bool) -> str:
    a = m.get("aliases") or {}
    name = m["model"]
    title = name if detail else _link(f"{root}/models/{quote(name)}", name, new_tab=False)
    problems = "".join(f'<p class="pill bad">config problem: {_e(p.get("field"))}: {_e(p.get("reason"))}</p>'
                       for p in m.get("config_problems") or [])
    summary = (f'<p>champion <b data-field="champion">{_e(_v(a.get("champion")))}</b> &middot; challenger '
               f'<b data-field="challenger">{_e(_v(a.get("challenger")))}</b> &middot; previous-champion '
               f'<b data-field="previous-champion">{_e(_v(a.get("previous-champion")))}</b> &middot; rollout '
               f'<b data-field="rollout">{_e(_rollout(m.get("rollout") or {}))}</b> &middot; '
               f'<span class="muted">owner {_e(m.get("owner"))}, {_e(m.get("task"))}, deploy '
               f'{_e(m.get("deploy_mode"))}</span></p>')
    body = [f'<section class="model" id="model-{_e(name)}" data-model="{_e(name)}"><h2>{title}</h2>', problems,
            summary, _versions_block(m), _drift_block(m, root, features_chart=True),
            '<div class="grid"><div>', _gates_block(m), "</div><div>",
            _decisions_block(m, None if detail else 5), "</div></div></section>"]
    return "".join(body)


def _fleet_table(fleet: dict, root: str) -> str:
    rows = []
    for m in fleet["models"]:
        a = m.get("aliases") or {}
        mon = m.get("last_monitor") or {}
        last = m.get("last_decision") or {}
        trend = m.get("drift_trend") or []
        spark = line_chart([t["as_of"] for t in trend], {"share": [t.get("drifted_share") for t in trend]},
                           title="", ymax=1.0, percent=True, width=150, height=46) if len(trend) > 1 else ""
        last_text = (f'{last.get("as_of") or ""} {last.get("event")} '
                     f'{_v(last.get("before")) + " → " + _v(last.get("after")) if last.get("after") else ""}'
                     if last else "-")
        model_url = f"{root}/models/{quote(m['model'])}"
        rows.append(
            f'<tr data-model="{_e(m["model"])}"><td>{_link(model_url, m["model"], new_tab=False)}</td>'
            f'<td data-field="champion">{_e(_v(a.get("champion")))}</td>'
            f'<td data-field="challenger">{_e(_v(a.get("challenger")))}</td>'
            f'<td data-field="previous-champion">{_e(_v(a.get("previous-champion")))}</td>'
            f'<td data-field="rollout">{_e(_rollout(m.get("rollout") or {}))}</td>'
            f'<td data-field="last-check">{_e(mon.get("as_of") or "-")}</td>'
            f'<td data-field="action">{_action_pill(mon.get("action"))}</td>'
            f'<td class="num" data-field="drifted-share">{_pct(mon.get("drifted_share"))}</td><td>{spark}</td>'
            f'<td data-field="gates">{_gates_pill((m.get("last_gates") or {}).get("passed"))}</td>'
            f'<td data-field="last-decision" data-seq="{_e(last.get("seq", ""))}">{_e(last_text)}</td></tr>')
    return ("<table><tr><th>model</th><th>champion</th><th>challenger</th><th>previous</th><th>rollout</th>"
            "<th>last check</th><th>action</th><th>drifted</th><th>trend</th><th>last gates</th><th>last decision</th>"
            f"</tr>{''.join(rows)}</table>")


def render_fleet(fleet: dict, root: str) -> str:
    """The fleet page."""
    problems = "".join(f'<p><span class="pill bad">config problem</span> {_e(p.get("file"))}:{_e(p.get("line"))}: '
                       f'{_e(p.get("field"))}: {_e(p.get("reason"))}</p>' for p in fleet.get("config_problems") or [])
    if not fleet["models"]:
        body = f'<p class="muted">no model yet: add a config under {_e(fleet.get("state_dir"))}/../configs/models</p>'
    else:
        body = _fleet_table(fleet, root) + "".join(_model_section(m, root, detail=False) for m in fleet["models"])
    foot = (f'<p class="muted small">registry {_e(fleet.get("tracking_uri"))} &middot; ledger {_e(fleet.get("ledger"))} '
            f'({_e(fleet.get("ledger_records"))} records) &middot; MLflow UI {_link(fleet.get("mlflow_ui_url"), fleet.get("mlflow_ui_url") or "")}</p>')
    return _page("Model fleet", problems + body + foot, root=root, generated=fleet.get("generated_at", ""))


def render_model(fleet: dict, root: str) -> str:
    """The page of one model (``fleet`` holds that model only)."""
    m = fleet["models"][0]
    dags = " &middot; ".join(_link(f"{root.removesuffix(URL_PREFIX)}/dags/{quote(d)}", d, new_tab=False)
                             for d in (m.get("dag_ids") or {}).values())
    body = f'<p class="small">Airflow: {dags}</p>' + _model_section(m, root, detail=True)
    return _page(f"Model {m['model']}", body, root=root, generated=fleet.get("generated_at", ""))


def render_error(message: str, root: str) -> str:
    return _page("Model fleet", f'<p><span class="pill bad">cannot read the fleet</span> {_e(message)}</p>', root=root,
                 generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


# -----------------------------------------------------------------------------------------
# The app
# -----------------------------------------------------------------------------------------


def create_app(settings_factory: Callable[[], Any] | None = None, *, require_auth: bool = True):
    """The FastAPI app of the fleet pages.

    Args:
        settings_factory: returns the platform :class:`~retrain_lib.settings.Settings` for each
            request (default :func:`retrain_lib.settings.load_settings`, i.e. the API server's
            ``RETRAIN_HOME`` / ``RETRAIN_CONFIG_DIR``).
        require_auth: every route needs an Airflow user allowed to view the website (only off
            in tests that run the app outside the API server).
    """
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse

    from retrain_lib.status import UnknownModelError, fleet_status, resolve_report

    if settings_factory is None:
        from retrain_lib.settings import load_settings as settings_factory

    dependencies = []
    if require_auth:
        from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
        from airflow.api_fastapi.core_api.security import requires_access_view

        dependencies.append(Depends(requires_access_view(AccessView.WEBSITE)))
    app = FastAPI(title="Retrain fleet", description="Models, aliases, drift, gates and decisions.",
                  dependencies=dependencies, docs_url=None, redoc_url=None)
    if require_auth:
        from fastapi.exception_handlers import http_exception_handler
        from fastapi.responses import RedirectResponse
        from starlette.exceptions import HTTPException as StarletteHTTPException

        @app.exception_handler(StarletteHTTPException)
        async def login_first(request: Request, exc: StarletteHTTPException):
            """A browser that opens a page without an Airflow session goes to the login page
            and comes back; API clients and report files keep the plain 401."""
            page = request.url.path.removeprefix(root_of(request)) or "/"
            if (exc.status_code == 401 and request.method == "GET" and "text/html" in request.headers.get("accept", "")
                    and (page == "/" or page.startswith("/models/"))):
                from airflow.api_fastapi.app import get_auth_manager

                return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
            return await http_exception_handler(request, exc)

    def root_of(request: Request) -> str:
        return str(request.scope.get("root_path") or "").rstrip("/")

    def status(model: str | None = None) -> dict:
        try:
            return fleet_status(settings_factory(), model=model)
        except UnknownModelError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    @app.get("/", response_class=HTMLResponse)
    def fleet_page(request: Request):
        try:
            fleet = fleet_status(settings_factory())
        except Exception as exc:  # noqa: BLE001 - show what is wrong instead of a bare 500
            return HTMLResponse(render_error(f"{type(exc).__name__}: {exc}", root_of(request)), status_code=503)
        return HTMLResponse(render_fleet(fleet, root_of(request)))

    @app.get("/models/{model}", response_class=HTMLResponse)
    def model_page(model: str, request: Request):
        try:
            fleet = fleet_status(settings_factory(), model=model)
        except UnknownModelError as exc:
            return HTMLResponse(render_error(str(exc), root_of(request)), status_code=404)
        return HTMLResponse(render_model(fleet, root_of(request)))

    @app.get("/api/status")
    def status_json():
        return JSONResponse(status())

    @app.get("/api/status/{model}")
    def model_json(model: str):
        return JSONResponse(status(model))

    @app.get("/reports/{relpath:path}")
    def report_file(relpath: str):
        path = resolve_report(settings_factory().reports_dir, relpath)
        if path is None:
            raise HTTPException(status_code=404, detail=f"no report {relpath!r} in the reports directory")
        # A report is someone else's HTML (Evidently's, with scripts): its own origin, never Airflow's.
        return FileResponse(path, headers={"Content-Security-Policy": "sandbox allow-scripts",
                                           "X-Content-Type-Options": "nosniff"})

    return app


app = LazyApp(create_app)
