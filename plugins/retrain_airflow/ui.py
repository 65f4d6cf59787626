"""The fleet page: a FastAPI app the Airflow API server mounts under ``/retrain`` (see
:mod:`retrain_airflow.retrain_plugin`).

Pages are rendered on the server from :func:`retrain_lib.tools.status.fleet_status`, the same
data ``retrain status --format json`` prints, with the Jinja templates under ``templates/``
(autoescaped) and inline SVG charts (:mod:`retrain_airflow.charts`); no script:

* ``GET /retrain/``                  every model: aliases, versions with their gated metrics,
                                     the live metric and drifted share per day with retrain,
                                     promotion, rollback and rejection markers, the last drift
                                     check (each feature against its threshold, one axis per
                                     method kind), last gates, last retrain, last decisions
* ``GET /retrain/models/{model}``    one model in detail
* ``GET /retrain/?page=&per_page=``  one page of the fleet (50 models by default, in name
                                     order; previous/next links): a page reads the registry in
                                     two queries whatever the fleet's size
* ``GET /retrain/api/status[/{model}]``  the same as JSON (paged the same way; ``page`` says where)
* ``GET /retrain/runbooks/[{kind}]``   the on-call runbooks (``docs/runbooks``), linked from every alert
* ``GET /retrain/reports/{path}``    a file of the monitor's reports directory (drift reports,
                                     ``monitor.json``); nothing outside that directory is served

Every route needs an Airflow user allowed to view the website (the API server's auth
manager: the UI's session cookie or a bearer token). Pages carry a content-security policy
that allows their own stylesheet (by hash) and nothing else; reports are sandboxed.

Nothing is imported at module level but the standard library: the plugin manager executes
every file under ``plugins/`` in every Airflow process, and only the API server ever
answers a request. There the app is built and the fleet read in a background thread when
the server starts (:class:`WarmUpMiddleware`), and the state is kept between requests while
the ledger does not move (:class:`FleetCache`), so no request waits for MLflow's import.
"""

# No ``from __future__ import annotations``: FastAPI reads the route signatures' annotations,
# which name classes imported inside create_app().
import base64
import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from retrain_airflow.fleet_cache import CACHE_SECONDS, DEFAULT_PER_PAGE, MAX_PER_PAGE, FleetCache

log = logging.getLogger(__name__)

URL_PREFIX = "/retrain"
TEMPLATES = Path(__file__).resolve().parent / "templates"


class LazyApp:
    """An ASGI app that builds the real FastAPI app on its first request (in the API server),
    so loading the plugin in a scheduler or task process costs nothing.

    :meth:`warm_up` builds it in a background thread instead and reads the fleet once, so the
    first page is served from memory; :class:`WarmUpMiddleware` calls it when the API server
    starts."""

    def __init__(self, factory: Callable[[], Any]):
        self._factory = factory
        self._app = None
        self._lock = threading.Lock()
        self._warming: threading.Thread | None = None

    @property
    def app(self):
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = self._factory()
        return self._app

    def warm_up(self) -> threading.Thread:
        """Build the app and read the fleet in a daemon thread (once per process)."""
        with self._lock:
            if self._warming is None:
                self._warming = threading.Thread(target=self._warm, name="retrain-fleet-warm-up", daemon=True)
                self._warming.start()
            return self._warming

    def _warm(self) -> None:
        try:
            cache = getattr(self.app.state, "fleet_cache", None)
        except Exception:  # noqa: BLE001 - the first request shows the error instead
            log.exception("building the fleet app")
            return
        if cache is not None:
            cache.warm(lambda fleet: render_fleet(fleet, URL_PREFIX))

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


class WarmUpMiddleware:
    """A pass-through root middleware of the API server (``fastapi_root_middlewares`` of the
    plugin) whose construction, when the API server builds its middleware stack at startup,
    starts :meth:`LazyApp.warm_up` of the fleet app. Only the API server builds it; the
    scheduler, DAG processor and workers never do."""

    def __init__(self, app, lazy_app: LazyApp | None = None):
        self.app = app
        (lazy_app or globals()["app"]).warm_up()

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


# -----------------------------------------------------------------------------------------
# Pages: Jinja templates under templates/ (autoescaped), charts from retrain_airflow.charts
# -----------------------------------------------------------------------------------------


def _num(value: Any, spec: str = ".4f") -> str:
    if value is None:
        return "-"
    try:
        text = format(float(value), spec)
    except (TypeError, ValueError):
        return str(value)
    return text[1:] if text.startswith("-") and not text.strip("-0.%") else text  # no "-0.0000"


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0%}"


def _v(version: Any) -> str:
    return f"v{version}" if version else "-"


def _rollout(r: dict | None) -> str:
    r = r or {}
    if r.get("mode") == "canary":
        key = f" by {r['sticky_key']}" if r.get("sticky_key") else ""
        return f"canary {float(r.get('canary_percent') or 0):g}%{key}"
    return str(r.get("mode") or "none")


class Templates:
    """The Jinja environment of the pages (autoescaped) and the page stylesheet, whose hash
    the content-security policy allows (no other style, no script, no remote resource)."""

    def __init__(self, directory: Path = TEMPLATES):
        import jinja2

        self.css = (directory / "fleet.css").read_text()
        digest = base64.b64encode(hashlib.sha256(self.css.encode()).digest()).decode()
        self.csp = (
            f"default-src 'none'; style-src 'sha256-{digest}'; img-src 'self' data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'self'"
        )
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(directory),
            autoescape=True,
            finalize=lambda value: "" if value is None else value,
            trim_blocks=True,
            lstrip_blocks=True,
        )

        def defined(f):  # a missing key (an empty section) reads as None, as a None value does
            return lambda value, *args: f(None if isinstance(value, jinja2.Undefined) else value, *args)

        self.env.filters.update(
            {name: defined(f) for name, f in (("num", _num), ("pct", _pct), ("v", _v), ("rollout", _rollout))}
        )
        self._css_markup = jinja2.utils.markupsafe.Markup(self.css)

    def render(self, name: str, *, title: str, root: str, generated: str, **context: Any) -> str:
        return self.env.get_template(name).render(
            title=title, root=root, generated=generated, css=self._css_markup, **context
        )


_templates: Templates | None = None
_templates_lock = threading.Lock()


def templates() -> Templates:
    global _templates
    if _templates is None:
        with _templates_lock:
            if _templates is None:
                _templates = Templates()
    return _templates


def _feature_groups(mon: dict | None) -> list[dict]:
    """The last check's features on one axis per method kind (distances, p-values), each with
    its bar relative to its own threshold."""
    from retrain_airflow.charts import threshold_bar
    from retrain_lib.tools.status_monitor import DISTANCE, P_VALUE

    feats = (mon or {}).get("features") or []
    groups = []
    for axis, title, note in (
        (
            DISTANCE,
            "distance methods",
            "drift at or above the threshold; bar = score / threshold, the tick is the threshold",
        ),
        (
            P_VALUE,
            "p-value methods",
            "drift at or below the threshold; bar = log(p) / log(threshold), "
            "a smaller p-value is a longer bar, the tick is the threshold",
        ),
    ):
        rows = [
            {**f, "bar": threshold_bar(f.get("relative"), drifted=bool(f.get("drifted")))}
            for f in feats
            if (f.get("axis") or DISTANCE) == axis
        ]
        if rows:
            groups.append(
                {
                    "axis": axis,
                    "title": title,
                    "note": note,
                    "rows": rows,
                    "methods": sorted({str(f.get("method")) for f in rows}),
                }
            )
    return groups


def _trend_charts(m: dict) -> list[dict]:
    """The per-feature scores of the last checks: one chart per method kind."""
    from retrain_airflow.charts import line_chart
    from retrain_lib.tools.status_monitor import DISTANCE, P_VALUE

    trend = m.get("drift_trend") or []
    if not trend:
        return []
    labels = [t["as_of"] for t in trend]
    charts = []
    for axis, key, title in (
        (DISTANCE, "scores", "distance scores per feature (psi, js, ...: up = drift)"),
        (P_VALUE, "p_values", "p-values per feature (ks, chi2: log axis, up = drift)"),
    ):
        names = sorted({n for t in trend for n, a in (t.get("axes") or {}).items() if a == axis})
        if not names:
            continue
        series = {n: [(t.get(key) or {}).get(n) for t in trend] for n in names}
        # each feature's own threshold at each check (a calibrated one changes with the sample)
        thresholds = {n: [(t.get("thresholds") or {}).get(n) for t in trend] for n in names}
        charts.append(
            line_chart(
                labels,
                series,
                title=f"{title}, last {len(trend)} checks",
                threshold_series=thresholds,
                p_values=axis == P_VALUE,
            )
        )
    return charts


def model_view(m: dict) -> dict[str, Any]:
    """What the templates draw for one model: chart geometry, feature groups, versions."""
    from retrain_airflow.charts import line_chart, timeline_chart

    mon = m.get("last_monitor") or {}
    share_threshold = mon.get("drift_share_threshold") or m.get("drift_share_threshold")
    trend = m.get("drift_trend") or []
    timeline = m.get("timeline") or []
    lives = [d for d in timeline if d.get("live") is not None]
    return {
        "versions": sorted((m.get("versions") or {}).values(), key=lambda v: int(v["version"]), reverse=True),
        "timeline": timeline_chart(timeline, metric=m.get("performance_metric"), drift_share_threshold=share_threshold)
        if timeline
        else None,
        "feature_groups": _feature_groups(mon),
        "trend_charts": _trend_charts(m),
        "spark": line_chart(
            [t["as_of"] for t in trend],
            {"share": [t.get("drifted_share") for t in trend]},
            title="",
            ymax=1.0,
            percent=True,
            width=150,
            height=46,
        )
        if len(trend) > 1
        else None,
        "live": {"metric": m.get("performance_metric") or "", "value": lives[-1]["live"], "as_of": lives[-1]["as_of"]}
        if lives
        else None,
        "live_spark": line_chart(
            [d["as_of"] for d in timeline], {"live": [d.get("live") for d in timeline]}, title="", width=150, height=46
        )
        if len(lives) > 1
        else None,
    }


def page_size(per_page: int) -> int:
    """``?per_page=`` clamped into 1..MAX_PER_PAGE."""
    return min(max(int(per_page), 1), MAX_PER_PAGE)


def page_links(page: dict | None, root: str) -> dict[str, str | None]:
    """The URLs of the previous and next fleet pages (``None`` at either end)."""
    page = page or {}

    def url(number: int | None) -> str | None:
        return None if number is None else f"{root}/?page={number}&per_page={page.get('per_page')}"

    return {"prev": url(page.get("prev")), "next": url(page.get("next"))}


def render_fleet(fleet: dict, root: str) -> str:
    """The fleet page (one page of models, with links to the previous and next pages)."""
    models = [{"m": m, "view": model_view(m)} for m in fleet["models"]]
    return templates().render(
        "fleet.html",
        title="Model fleet",
        root=root,
        generated=fleet.get("generated_at", ""),
        fleet=fleet,
        models=models,
        page=fleet.get("page") or {},
        links=page_links(fleet.get("page"), root),
    )


def render_model(fleet: dict, root: str) -> str:
    """The page of one model (``fleet`` holds that model only)."""
    m = fleet["models"][0]
    return templates().render(
        "model.html",
        title=f"Model {m['model']}",
        root=root,
        generated=fleet.get("generated_at", ""),
        item={"m": m, "view": model_view(m)},
        dag_ids=list((m.get("dag_ids") or {}).values()),
        airflow_root=root.removesuffix(URL_PREFIX),
    )


def render_error(message: str, root: str) -> str:
    return templates().render(
        "error.html",
        title="Model fleet",
        root=root,
        message=message,
        generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


# -----------------------------------------------------------------------------------------
# The routes' responses (the fleet's state is kept by :class:`retrain_airflow.fleet_cache.FleetCache`)
# -----------------------------------------------------------------------------------------


class FleetPages:
    """The responses of the fleet app's routes (the routes only pick one)."""

    def __init__(self, cache: FleetCache):
        self.cache = cache

    def _html(self, body: str, status_code: int = 200):
        from fastapi.responses import HTMLResponse

        return HTMLResponse(
            body,
            status_code=status_code,
            headers={"Content-Security-Policy": templates().csp, "X-Content-Type-Options": "nosniff"},
        )

    def fleet(self, root: str, page: int = 1, per_page: int = DEFAULT_PER_PAGE):
        try:
            fleet = self.cache.status(page=page, per_page=page_size(per_page))
        except Exception as exc:  # noqa: BLE001 - show what is wrong instead of a bare 500
            return self._html(render_error(f"{type(exc).__name__}: {exc}", root), 503)
        return self._html(render_fleet(fleet, root))

    def model(self, model: str, root: str):
        from retrain_lib.tools.status import UnknownModelError

        try:
            fleet = self.cache.status(model)
        except UnknownModelError as exc:
            return self._html(render_error(str(exc), root), 404)
        return self._html(render_model(fleet, root))

    def json(self, model: str | None = None, page: int = 1, per_page: int = DEFAULT_PER_PAGE):
        from fastapi import HTTPException
        from fastapi.responses import JSONResponse

        from retrain_lib.tools.status import UnknownModelError

        try:
            return JSONResponse(self.cache.status(model, page=page, per_page=page_size(per_page)))
        except UnknownModelError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    def report(self, relpath: str):
        from fastapi import HTTPException
        from fastapi.responses import FileResponse

        from retrain_lib.tools.status_links import resolve_report

        path = resolve_report(self.cache._settings_factory().reports_dir, relpath)
        if path is None:
            raise HTTPException(status_code=404, detail=f"no report {relpath!r} in the reports directory")
        # A report is someone else's HTML (Evidently's, with scripts): its own origin, never Airflow's.
        return FileResponse(
            path, headers={"Content-Security-Policy": "sandbox allow-scripts", "X-Content-Type-Options": "nosniff"}
        )

    def runbook(self, kind: str | None, root: str):
        """The runbook of alert ``kind`` rendered (404 listing the others when there is none),
        or the list of them (``kind`` None)."""
        from markupsafe import Markup

        from retrain_airflow import runbooks

        directory = runbooks.runbooks_dir(self.cache._settings_factory().config_dir)
        path = runbooks.runbook_file(directory, kind) if kind else None
        body = Markup(runbooks.to_html(path.read_text())) if path else None
        page = templates().render(
            "runbook.html",
            title=f"Runbook: {kind}" if path else "Runbooks",
            root=root,
            generated=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            kind=kind,
            body=body,
            runbooks=runbooks.listed(directory),
        )
        return self._html(page, 404 if kind and path is None else 200)


# -----------------------------------------------------------------------------------------
# The app
# -----------------------------------------------------------------------------------------


def create_app(
    settings_factory: Callable[[], Any] | None = None, *, require_auth: bool = True, max_age: float = CACHE_SECONDS
):
    """The FastAPI app of the fleet pages.

    Args:
        settings_factory: returns the platform :class:`~retrain_lib.core.settings.Settings` for each
            request (default :func:`retrain_lib.core.settings.load_settings`, i.e. the API server's
            ``RETRAIN_HOME`` / ``RETRAIN_CONFIG_DIR``).
        require_auth: every route needs an Airflow user allowed to view the website (only off
            in tests that run the app outside the API server).
        max_age: seconds a fleet state read from the registry and the ledger is kept while
            the ledger does not move (see :class:`FleetCache`); 0 reads it for every request.
    """
    from fastapi import Depends, FastAPI, Request

    if settings_factory is None:
        from retrain_lib.core.settings import load_settings as settings_factory

    dependencies = []
    if require_auth:
        from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
        from airflow.api_fastapi.core_api.security import requires_access_view

        dependencies.append(Depends(requires_access_view(AccessView.WEBSITE)))
    app = FastAPI(
        title="Retrain fleet",
        description="Models, aliases, drift, gates and decisions.",
        dependencies=dependencies,
        docs_url=None,
        redoc_url=None,
    )
    app.state.fleet_cache = FleetCache(settings_factory, max_age=max_age)
    pages = FleetPages(app.state.fleet_cache)
    if require_auth:
        from fastapi.exception_handlers import http_exception_handler
        from fastapi.responses import RedirectResponse
        from starlette.exceptions import HTTPException as StarletteHTTPException

        @app.exception_handler(StarletteHTTPException)
        async def login_first(request: Request, exc: StarletteHTTPException):
            """A browser that opens a page without an Airflow session goes to the login page
            and comes back; API clients and report files keep the plain 401."""
            page = request.url.path.removeprefix(root_of(request)) or "/"
            if (
                exc.status_code == 401
                and request.method == "GET"
                and "text/html" in request.headers.get("accept", "")
                and (page == "/" or page.startswith("/models/"))
            ):
                from airflow.api_fastapi.app import get_auth_manager

                return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
            return await http_exception_handler(request, exc)

    def root_of(request: Request) -> str:
        return str(request.scope.get("root_path") or "").rstrip("/")

    @app.get("/")
    def fleet_page(request: Request, page: int = 1, per_page: int = DEFAULT_PER_PAGE):
        return pages.fleet(root_of(request), page, per_page)

    @app.get("/models/{model}")
    def model_page(model: str, request: Request):
        return pages.model(model, root_of(request))

    @app.get("/api/status")
    def status_json(page: int = 1, per_page: int = DEFAULT_PER_PAGE):
        return pages.json(None, page, per_page)

    @app.get("/api/status/{model}")
    def model_json(model: str):
        return pages.json(model)

    @app.get("/reports/{relpath:path}")
    def report_file(relpath: str):
        return pages.report(relpath)

    @app.get("/runbooks/")
    def runbook_index(request: Request):
        return pages.runbook(None, root_of(request))

    @app.get("/runbooks/{kind}")
    def runbook_page(kind: str, request: Request):
        return pages.runbook(kind, root_of(request))

    return app


app = LazyApp(create_app)
