"""Shadow scoring: in ``shadow`` rollout mode the challenger scores every answered request
off the request path, on a thread of its own; its outputs are logged with arm ``shadow``
(request id ``<id>:shadow``, ``parent_id`` the answered request) and never affect answers.
When the queue is full a shadow scoring is dropped (counted), never waited for."""

import logging
import queue
import threading
import time
from collections.abc import Sequence

from retrain_lib.serving import routing
from retrain_lib.serving.deployment import LoadedModel
from retrain_lib.serving.gateway_metrics import Metrics
from retrain_lib.serving.predlog import PredictionLog
from retrain_lib.serving.predlog_store import utcnow

log = logging.getLogger(__name__)


class ShadowScorer:
    """A queue of requests for the challenger to score and the thread that scores and logs
    them (between :meth:`start` and :meth:`stop`)."""

    def __init__(self, metrics: Metrics, maxsize: int = 10_000):
        self.metrics = metrics
        self.predlog: PredictionLog | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._thread: threading.Thread | None = None

    @property
    def depth(self) -> int:
        """Shadow scorings waiting."""
        return self._queue.qsize()

    def offer(self, model: str, challenger: LoadedModel, records: list[dict], request_ids: list[str], features) -> None:
        """Queue the answered ``records`` of ``model`` (``features``: their JSON text) for
        ``challenger``; dropped and counted when the queue is full."""
        try:
            self._queue.put_nowait((model, challenger, records, request_ids, features))
        except queue.Full:
            self.metrics.count_shadow_dropped()

    def start(self, predlog: PredictionLog | None) -> None:
        """Score queued requests on a daemon thread, logging to ``predlog`` (None: not logged)."""
        self.predlog = predlog
        self._thread = threading.Thread(target=self._loop, name="gateway-shadow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread once what is queued before this call is scored."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._score(*item)

    def _score(self, name: str, challenger: LoadedModel, records: list[dict], request_ids: list[str], features):
        error = None
        t0 = time.perf_counter()
        outputs: Sequence[float | None]
        try:
            outputs = challenger.score(records)
        except Exception as exc:  # noqa: BLE001 - the shadow never affects answers; its errors are logged
            log.exception("shadow scoring of %s failed", name)
            error, outputs = f"{type(exc).__name__}: {exc}"[:300], [None] * len(records)
            self.metrics.count_shadow_failed()
        ms = (time.perf_counter() - t0) * 1000 / max(len(request_ids), 1)
        if self.predlog is not None:
            now = utcnow()
            self.predlog.submit(
                [
                    {
                        "request_id": f"{rid}:shadow",
                        "model": name,
                        "version": challenger.version,
                        "arm": routing.SHADOW_ARM,
                        "features": feats,
                        "output": out,
                        "latency_ms": ms,
                        "created_at": now,
                        "parent_id": rid,
                        "error": error,
                    }
                    for rid, feats, out in zip(request_ids, features, outputs)
                ]
            )
        self.metrics.request(name, routing.SHADOW_ARM, 500 if error else 200, len(request_ids))
