"""The serving gateway: answers predictions from ``champion``/``challenger`` per the
registry's rollout state, logs each one durably before answering, accepts late labels.

Routes (JSON in and out; all but ``/health`` need ``Authorization: Bearer <token>`` when the
app has a token):

* ``POST /v1/models/{name}/predict`` body ``{"records": [{feature: value, ...}, ...]}`` or
  ``{"record": {...}}``; optional ``"entity"`` (a list as long as ``records``, or one value
  with ``record``) used as sticky routing key when the record lacks the sticky column.
  Records carry every feature of the model config (numeric: number or null; categorical:
  string or null) and may carry the config's ``data.id_column``; anything else is an error.
  Answer ``{"model", "predictions": [{"request_id", "version", "arm", "prediction"}]}``;
  each prediction is committed to the prediction log before the answer is sent.
  Errors: 404 unknown model, 413 body larger than ``max_body_bytes``, 422 invalid body
  (``{"detail": [{"index", "field", "reason"}, ...]}``, nothing logged), 503 no champion
  loaded or the log could not commit; 410 Gone for a retired model (``lifecycle.status`` tag), body
  ``{"detail", "model", "status": "retired", "retired_on", "reason", "replacement",
  "replacement_url"}``.
* ``POST /v1/models/{name}/feedback`` body ``{"labels": [{"request_id", "label"}]}``: stores
  the labels of known requests; 200 ``{"stored": n}``, or 404 ``{"stored": n, "unknown": [...]}``
  when some ids are unknown (the known ones are stored).
* ``GET /health``: loaded versions and rollout state per model; 503 while a model has no
  champion loaded (a retired model has none, on purpose: it counts as ready).
* ``GET /metrics``: Prometheus text format.

The work is done by :class:`~retrain_lib.serving.service.Gateway` (scoring, logging,
shadow, metrics); this module holds the routes, which authenticate, read and parse the body
(:mod:`~retrain_lib.serving.payloads`) and answer what the service returns. A refresher
thread (:mod:`~retrain_lib.serving.refresher`) follows the registry's aliases and rollout
tags and swaps each model's immutable
:class:`~retrain_lib.serving.deployment.Deployment`, so requests never wait for a load and
never see half a change. Models of the usual pipeline shape are scored without pandas
(:mod:`~retrain_lib.serving.fast_path`); every prediction is durable in the prediction log
(:mod:`~retrain_lib.serving.predlog`) before it is answered.
"""

# No `from __future__ import annotations`: FastAPI resolves the `Request` annotations of the
# routes defined by create_app() at runtime.
import hmac
import os
import time

import orjson

from retrain_lib.serving.payloads import Reply, RequestError, parse_feedback, parse_predict
from retrain_lib.serving.service import Gateway


def _json(content, status: int = 200):
    from fastapi.responses import Response

    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def _reply(reply: Reply):
    return _json(reply.body, reply.status)


def _refusal(exc: RequestError):
    return _json({"detail": exc.detail}, exc.status)


class _Requests:
    """What every route does with its request: check the bearer token, read the JSON body
    (at most ``max_body_bytes``)."""

    def __init__(self, auth_token: str | None, max_body_bytes: int):
        self.token = auth_token.encode() if auth_token else None
        self.max_body_bytes = max_body_bytes

    def unauthorized(self, request):
        """A 401 answer when the request lacks the bearer token, else None."""
        from fastapi.responses import JSONResponse

        if self.token is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
            return JSONResponse(
                {"detail": "missing or wrong bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return None

    async def read_json(self, request):
        """The parsed body; :class:`RequestError` 413 when too large, 422 when not JSON."""
        limit = self.max_body_bytes
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise RequestError(413, f"body of {length} bytes is larger than the limit of {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"body larger than the limit of {limit} bytes")
            chunks.append(chunk)
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise RequestError(
                422, [{"index": None, "field": None, "reason": f"body is not valid JSON: {exc}"}]
            ) from None


def create_app(
    settings,
    models: list[str] | None = None,
    *,
    auth_token: str | None = None,
    max_body_bytes: int = 1_000_000,
    refresh_s: float = 2.0,
    log_url: str | None = None,
    log_predictions: bool = True,
    pins: dict[str, str] | None = None,
    webhook_secret: str | None = None,
):
    """The gateway as a FastAPI app (models load at startup; see the module docstring).

    ``models``: names of model configs to serve (default: every config in
    ``settings.models_dir``). ``log_url``: the prediction log (default
    ``$RETRAIN_PREDICTIONS_URL`` or ``<state_dir>/predictions.db``). ``log_predictions=False``
    turns the log off (benchmarks only: nothing is recorded). ``pins``: models that serve one
    version or model URI as champion and never follow the registry (the servability gate).
    ``webhook_secret``: the secret of the MLflow webhook that pushes alias changes to
    ``/v1/registry/events`` (None: that route answers 404).

    Example::

        app = create_app(load_settings(), ["credit_default"], auth_token="s3cret")
        uvicorn.run(app, port=8000)
    """
    import contextlib

    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    gw = Gateway(
        settings,
        models,
        refresh_s=refresh_s,
        log_url=log_url,
        log_predictions=log_predictions,
        pins=pins,
        webhook_secret=webhook_secret,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(gw.start)
        try:
            yield
        finally:
            await run_in_threadpool(gw.stop)

    app = FastAPI(title="retrain serving gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw
    requests = _Requests(auth_token, max_body_bytes)
    _add_model_routes(app, gw, requests)
    _add_status_routes(app, gw, requests)
    return app


def _add_model_routes(app, gw: Gateway, requests: _Requests) -> None:
    """``POST /v1/models/{name}/predict`` and ``POST /v1/models/{name}/feedback``."""
    from fastapi import Request
    from starlette.concurrency import run_in_threadpool

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, request: Request):
        started = time.perf_counter()
        denied = requests.unauthorized(request)
        if denied is not None:
            gw.count_refused(name, 401)
            return denied
        try:
            slot = gw.slot(name)
            if (gone := gw.gone(name)) is not None:
                gw.count_refused(name, gone.status)
                return _reply(gone)
            parsed = parse_predict(name, slot.schema, await requests.read_json(request))
        except RequestError as exc:
            gw.count_refused(name, exc.status)
            return _refusal(exc)
        return _reply(await gw.predict(parsed, started))

    @app.post("/v1/models/{name}/feedback")
    async def post_feedback(name: str, request: Request):
        denied = requests.unauthorized(request)
        if denied is not None:
            return denied
        try:
            gw.slot(name)
            gw.require_log()
            parsed = parse_feedback(name, await requests.read_json(request))
        except RequestError as exc:
            return _refusal(exc)
        return _reply(await run_in_threadpool(gw.feedback, parsed))


def _add_status_routes(app, gw: Gateway, requests: _Requests) -> None:
    """``GET /health``, ``GET /metrics`` and ``POST /v1/registry/events`` (MLflow webhooks)."""
    from fastapi import Request
    from fastapi.responses import Response

    @app.post("/v1/registry/events")
    async def registry_event(request: Request):
        # Signed by the MLflow server (HMAC), not by a client's bearer token.
        body = await request.body()
        if len(body) > requests.max_body_bytes:
            return _refusal(RequestError(413, f"body larger than {requests.max_body_bytes} bytes"))
        try:
            return _reply(gw.registry_event(request.headers, body))
        except RequestError as exc:
            return _refusal(exc)

    @app.get("/health")
    async def health():
        return _reply(gw.health())

    @app.get("/metrics")
    async def metrics(request: Request):
        denied = requests.unauthorized(request)
        if denied is not None:
            return denied
        return Response(gw.metrics_text(), media_type="text/plain; version=0.0.4; charset=utf-8")


def serve(
    settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    models: list[str] | None = None,
    auth_token: str | None = None,
    refresh_s: float = 2.0,
    log_url: str | None = None,
    log_predictions: bool = True,
    max_body_bytes: int = 1_000_000,
    model_threads: int | None = 1,
    pins: dict[str, str] | None = None,
    webhook_secret: str | None = None,
) -> None:
    """Run the gateway with uvicorn until SIGINT/SIGTERM.

    ``model_threads`` caps OpenMP/BLAS threads (``threadpoolctl``): a single-row predict is
    faster and far steadier with 1 thread than with threads that spin against each other.
    """
    import uvicorn

    if model_threads:
        # Before sklearn loads its OpenMP runtime (threadpoolctl only limits loaded libraries).
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(model_threads))
        import sklearn.ensemble  # noqa: F401 - load the OpenMP runtime now, then cap it
        from threadpoolctl import threadpool_limits

        threadpool_limits(model_threads)
    app = create_app(
        settings,
        models,
        auth_token=auth_token,
        max_body_bytes=max_body_bytes,
        refresh_s=refresh_s,
        log_url=log_url,
        log_predictions=log_predictions,
        pins=pins,
        webhook_secret=webhook_secret,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
