"""The gateway service behind the HTTP routes: the served models (slots), their refresher,
the shadow scorer, the prediction log, the prediction thread pool and the metrics.

:meth:`Gateway.predict` takes a parsed :class:`~retrain_lib.serving.payloads.PredictRequest`
and answers a :class:`~retrain_lib.serving.payloads.Reply`: it routes each record to an arm
(canary), scores it, makes the predictions durable in the log before answering and queues
shadow scorings. A single record on the fast path is scored on the event loop (it takes
about a millisecond, less than a thread handoff costs under load); batches and
pipeline-path predictions run in a small prediction thread pool (1 OpenMP thread each).

Logging: with the embedded SQLite log, a request's rows are made durable by one append to
the process's prediction-log journal before the answer and reach the database within a
second, off the request path; with PostgreSQL the request waits for the group-commit writer
(one queue put and one future settled on the loop).
"""

import asyncio
import concurrent.futures
import logging
import time

import orjson

from retrain_lib.core.errors import ConfigError
from retrain_lib.serving import routing
from retrain_lib.serving.deployment import Deployment, ModelSlot, score_records
from retrain_lib.serving.gateway_metrics import Metrics
from retrain_lib.serving.payloads import FeedbackRequest, PredictRequest, Reply, RequestError, predictions_reply
from retrain_lib.serving.predlog import PredictionLog
from retrain_lib.serving.predlog_store import new_request_id, resolve_url, utcnow
from retrain_lib.serving.refresher import Refresher, RegistryChangeProbe, pin_slot
from retrain_lib.serving.schema import FeatureSchema
from retrain_lib.serving.shadow import ShadowScorer
from retrain_lib.serving.webhooks import EVENTS, DeliveryCheck
from retrain_lib.store.lifecycle_tags import LifecycleTags
from retrain_lib.store.model_context import ModelContext
from retrain_lib.store.registry import get_client

log = logging.getLogger(__name__)


def _one_model_thread() -> None:
    """Cap OpenMP (a per-thread setting) to 1 thread in a prediction worker: a small predict
    is faster and steadier single-threaded, and the cap is paid once, not per call."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="openmp")
    except Exception:  # noqa: BLE001 - only a speed setting
        log.debug("could not cap OpenMP threads", exc_info=True)


def _arms(dep: Deployment, request: PredictRequest, ids: list[str]) -> list[str]:
    """The arm of each record: the champion, or in canary mode with a challenger loaded the
    deterministic route of its sticky key (the record's column, else its entity) or id."""
    state = dep.rollout
    if state.mode == "canary" and dep.challenger is not None:
        sticky = state.sticky_key
        return [
            routing.route(rec.get(sticky, ent) if sticky else ent, rid, state.canary_percent, "canary")
            for rec, ent, rid in zip(request.records, request.entity, ids)
        ]
    return [routing.CHAMPION_ARM] * len(request.records)


class Gateway:
    """The state behind the app: model slots, refresher, shadow worker, prediction log."""

    def __init__(
        self,
        settings,
        models: list[str] | None,
        *,
        refresh_s: float,
        log_url: str | None,
        log_predictions: bool,
        shadow_queue: int = 10_000,
        predict_threads: int = 2,
        pins: dict[str, str] | None = None,
        webhook_secret: str | None = None,
    ):
        self.settings = settings
        self.deliveries = DeliveryCheck(webhook_secret) if webhook_secret else None
        # Pinned models serve one version (or model URI) as champion and never follow the registry.
        self.pins = dict(pins or {})
        names = models or sorted(self.pins) or sorted(p.stem for p in settings.models_dir.glob("*.yaml"))
        for name in self.pins:
            if name not in names:
                raise ConfigError(f"pinned model {name!r} is not among the served models {names}; serve it too")
        self.slots: dict[str, ModelSlot] = {}
        for name in names:
            path = settings.models_dir / f"{name}.yaml"
            if not path.is_file():
                raise ConfigError(
                    f"model {name!r} has no config {path}; pass models that exist in {settings.models_dir}"
                )
            ctx = ModelContext(name, settings)
            self.slots[name] = ModelSlot(name, ctx.cfg, ctx, FeatureSchema.from_config(ctx.cfg))
        self.refresh_s = refresh_s
        self.metrics = Metrics()
        self.log_url = resolve_url(settings, log_url) if log_predictions else None
        self.predlog: PredictionLog | None = None
        self.shadow = ShadowScorer(self.metrics, shadow_queue)
        self._client = None
        self._probe = RegistryChangeProbe.for_uri(settings.registry_uri)
        followed = {name: slot for name, slot in self.slots.items() if name not in self.pins}
        self.refresher = Refresher(followed, lambda: self.client, self._probe, refresh_s)
        # Batches and pipeline-path predictions run here, off the event loop (1 OpenMP thread each).
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, predict_threads), thread_name_prefix="gateway-predict", initializer=_one_model_thread
        )

    @property
    def client(self):
        """The registry client (made on first use)."""
        if self._client is None:
            self._client = get_client(self.settings.tracking_uri, self.settings.registry_uri)
        return self._client

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Open the prediction log, load what the registry says, start the background threads."""
        if self.log_url is not None:
            self.predlog = PredictionLog(self.log_url)
        for name, source in self.pins.items():
            pin_slot(self.slots[name], source)
        self.refresh_all()
        self.refresher.start()
        self.shadow.start(self.predlog)

    def stop(self) -> None:
        """Stop the threads, finish queued predictions and close the log."""
        self.refresher.stop()
        self.shadow.stop()
        self.executor.shutdown(wait=True)
        if self.predlog is not None:
            self.predlog.close()

    def refresh_all(self) -> None:
        """Poll the registry for every model now (see :meth:`Refresher.refresh_all`)."""
        self.refresher.refresh_all()

    # -- requests --------------------------------------------------------------------------

    def slot(self, model: str) -> ModelSlot:
        """The slot of a served model; :class:`RequestError` 404 for any other name."""
        slot = self.slots.get(model)
        if slot is None:
            raise RequestError(404, f"unknown model {model!r}; served: {', '.join(sorted(self.slots))}")
        return slot

    def gone(self, model: str) -> Reply | None:
        """410 Gone for a retired model (naming its replacement), else None."""
        retired = self.slots[model].deployment.retired
        return None if retired is None else gone_reply(model, retired)

    def count_refused(self, model: str, status: int) -> None:
        """Count a predict request refused before scoring (unknown names count as ``_unknown``)."""
        self.metrics.request(model if model in self.slots else "_unknown", "none", status)

    def require_log(self) -> PredictionLog:
        """The prediction log; :class:`RequestError` 503 when the gateway runs without one."""
        if self.predlog is None:
            raise RequestError(503, "this gateway runs without a prediction log")
        return self.predlog

    async def predict(self, request: PredictRequest, started: float) -> Reply:
        """Score, log and answer ``request`` (received at ``time.perf_counter()`` ``started``)."""
        name, records = request.model, request.records
        slot = self.slots[name]
        dep = slot.deployment  # one read: the whole request sees one deployment
        if dep.retired is not None:  # retired since the route's check
            self.metrics.request(name, "none", 410)
            return gone_reply(name, dep.retired)
        if dep.champion is None:
            self.metrics.request(name, "none", 503)
            detail = f"model {name!r} has no champion loaded ({slot.error or 'no champion alias in the registry'})"
            return Reply({"detail": detail}, 503)
        ids = [new_request_id() for _ in records]
        arms = _arms(dep, request, ids)
        outputs, error = await self._score(name, dep, records, arms)
        ms = (time.perf_counter() - started) * 1000
        if dep.challenger is None:  # every record is on the champion arm (_arms)
            versions = [dep.champion.version] * len(arms)
        else:
            versions = [dep.champion.version if a == routing.CHAMPION_ARM else dep.challenger.version for a in arms]
        shadow = dep.rollout.mode == "shadow" and dep.challenger is not None
        features = None
        if self.predlog is not None or shadow:
            features = [orjson.dumps(r).decode() for r in records]
        if self.predlog is not None:
            rows = _prediction_rows(name, ids, versions, arms, features, outputs, ms, error)
            refused = await self._log(rows)
            if refused is not None:
                self.metrics.request(name, "none", 503)
                return refused
        if error is not None:
            self._count(name, arms, 500)
            return Reply({"detail": f"model {name!r} could not score the request ({error})", "request_ids": ids}, 500)
        if shadow and dep.challenger is not None:  # (shadow implies a challenger)
            self.shadow.offer(name, dep.challenger, records, ids, features)
        self._count(name, arms, 200)
        self.metrics.latency(name, time.perf_counter() - started)
        return predictions_reply(name, ids, versions, arms, outputs)

    def feedback(self, request: FeedbackRequest) -> Reply:
        """Store the labels of known requests (blocking: run it off the event loop)."""
        res = self.require_log().add_feedback(request.model, request.labels)
        if res.unknown:
            return Reply(
                {
                    "stored": len(res.stored),
                    "unknown": res.unknown,
                    "detail": f"{len(res.unknown)} request id(s) not in the prediction log of {request.model!r}",
                },
                404,
            )
        return Reply({"stored": len(res.stored)})

    def registry_event(self, headers, body: bytes) -> Reply:
        """A registry change pushed by an MLflow webhook: verified (:class:`RequestError` 401
        when not), then the model it names is refreshed now (202), or ignored (200)."""
        if self.deliveries is None:
            raise RequestError(404, "registry events are off: start the gateway with a webhook secret")
        event = self.deliveries.verify(headers, body)
        if event.event not in EVENTS or event.model is None:
            return Reply({"ignored": event.event, "delivery": event.delivery_id})
        if not self.refresher.wake(event.model):  # pinned models are not the refresher's
            return Reply({"ignored": event.event, "model": event.model, "reason": "not followed by this gateway"})
        self.metrics.count_pushed(event.model)
        return Reply({"refreshing": event.model, "event": event.event, "delivery": event.delivery_id}, 202)

    def health(self) -> Reply:
        """Loaded versions and rollout state per model; 503 while a model has no champion."""
        out, ready = {}, True
        for name, slot in self.slots.items():
            d = slot.deployment
            ready = ready and (d.champion is not None or d.retired is not None)  # retired: 410, on purpose
            out[name] = {
                "champion": d.champion and d.champion.version,
                "challenger": d.challenger and d.challenger.version,
                "rollout": d.rollout.to_dict(),
                "since": d.since,
                "last_refresh": slot.last_refresh,
                "error": slot.error,
                "retired": d.retired.to_dict() if d.retired is not None else None,
            }
        return Reply(
            {"status": "ok" if ready else "degraded", "models": out, "prediction_log": self.log_url is not None},
            200 if ready else 503,
        )

    def metrics_text(self) -> str:
        """The metrics in the Prometheus text format."""
        plog = self.predlog
        return self.metrics.render(
            self.slots, plog.depth if plog else 0, self.shadow.depth, plog.journaled if plog else 0
        )

    # -- helpers of predict ----------------------------------------------------------------

    async def _score(self, name: str, dep: Deployment, records: list[dict], arms: list[str]) -> tuple[list, str | None]:
        """The outputs and None, or Nones and why the model could not score (logged)."""
        # One record on the fast path takes well under a millisecond: answer it on the loop
        # (a thread handoff would cost more than it frees). Batches and the pandas pipeline
        # path run in the prediction pool so the loop keeps serving.
        try:
            if (
                len(records) == 1
                and (model := dep.champion if arms[0] == routing.CHAMPION_ARM else dep.challenger) is not None
                and model.fast is not None
            ):
                return score_records(dep, records, arms), None
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, score_records, dep, records, arms), None
        except Exception as exc:  # noqa: BLE001 - a model that cannot score: logged, answered 500
            log.exception("%s: scoring failed", name)
            return [None] * len(records), f"{type(exc).__name__}: {exc}"[:300]

    async def _log(self, rows: list[dict]) -> Reply | None:
        """Make ``rows`` durable before the answer: journaled here (SQLite, one file write),
        else committed by the writer thread while this request waits. A 503 reply when the
        log could not take them (not logged = not acknowledged)."""
        try:
            if not self.require_log().append(rows):
                async with asyncio.timeout(30):
                    await self._committed(rows)
        except Exception as exc:  # noqa: BLE001 - not logged = not acknowledged
            log.warning("prediction log commit failed: %s", exc)
            return Reply({"detail": f"the prediction could not be logged ({type(exc).__name__}); retry"}, 503)
        return None

    def _committed(self, rows: list[dict]) -> asyncio.Future:
        """A future settled on the event loop once the writer committed ``rows`` (or failed):
        one queue put to the writer and one wake-up of the loop per request."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def settle(error):
            if fut.done():  # timed out meanwhile
                return
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

        def done(error):
            loop.call_soon_threadsafe(settle, error)

        self.require_log().submit(rows, done)
        return fut

    def _count(self, name: str, arms: list[str], status: int) -> None:
        if len(arms) == 1:
            self.metrics.request(name, arms[0], status)
        else:
            for a in set(arms):
                self.metrics.request(name, a, status, arms.count(a))


def gone_reply(model: str, retired: LifecycleTags) -> Reply:
    """The 410 answer of a retired model: why, since when, and the replacement's predict path."""
    body = {
        "detail": f"model {retired.explain(model)}",
        "model": model,
        "status": retired.status,
        "retired_on": retired.retired_on,
        "reason": retired.reason,
        "replacement": retired.replacement,
    }
    if retired.replacement:
        body["replacement_url"] = f"/v1/models/{retired.replacement}/predict"
    return Reply(body, 410)


def _prediction_rows(name: str, ids, versions, arms, features, outputs, ms: float, error: str | None) -> list[dict]:
    """The prediction-log rows of one answered request."""
    now = utcnow()
    return [
        {
            "request_id": rid,
            "model": name,
            "version": v,
            "arm": a,
            "features": f,
            "output": o,
            "latency_ms": ms,
            "created_at": now,
            "parent_id": None,
            "error": error,
        }
        for rid, v, a, f, o in zip(ids, versions, arms, features, outputs)
    ]
