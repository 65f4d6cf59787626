"""The fleet's state kept between requests of the fleet page (:mod:`retrain_airflow.ui`).

Nothing is imported at module level but the standard library (the plugin manager imports
every file under ``plugins/`` in every Airflow process).
"""

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_SECONDS = 15.0  # a kept fleet state is read again after this long even if the ledger did not move
DEFAULT_PER_PAGE = 50  # models per fleet page (?per_page= changes it)
MAX_PER_PAGE = 500


class FleetCache:
    """:func:`retrain_lib.tools.status.fleet_status` kept between requests.

    A kept state is served while it is younger than ``max_age`` seconds and the decision
    ledger's head and the model config files are unchanged (every alias move and rollout step
    is written to the ledger in the same transaction); an ``MlflowClient`` (registries that
    are not an SQLite file) and the gate results of a run (which never change) are kept for
    the life of the process. :meth:`warm` reads everything and renders the page once in the
    background when the API server starts, so the first page finds the templates compiled
    and, with a registry server, MLflow imported (6-10 s on two cores).
    """

    def __init__(self, settings_factory: Callable[[], Any], *, max_age: float = CACHE_SECONDS):
        self._settings_factory = settings_factory
        self.max_age = max_age
        self._lock = threading.Lock()
        self._clients: dict[tuple, Any] = {}
        self._gate_results: dict[str, Any] = {}
        self._kept: dict[tuple, tuple[float, tuple, dict]] = {}

    def _read(self, settings, model: str | None = None, page: int = 1, per_page: int | None = None) -> dict:
        """The state from the sources: an SQLite registry straight from its file (a reader
        opened for this read only: ``make demo`` may replace the file), any other through one
        ``MlflowClient`` kept for the process."""
        from retrain_lib.store import registry
        from retrain_lib.store.registry_reader import reader_for
        from retrain_lib.tools.status import fleet_status

        reader = reader_for(settings.tracking_uri, settings.registry_uri)
        try:
            if reader is not None:
                client = reader
            else:
                key = (settings.tracking_uri, settings.registry_uri)
                if key not in self._clients:
                    self._clients[key] = registry.get_client(*key)
                client = self._clients[key]
            return fleet_status(
                settings,
                model=model,
                client=client,
                gate_results=self._gate_results,
                page=page,
                per_page=per_page,
            )
        finally:
            if reader is not None:
                reader.close()

    @staticmethod
    def _signature(settings) -> tuple:
        """What a kept state depends on besides the registry: the ledger head and the configs."""
        from retrain_lib.store.audit import Ledger

        head = Ledger.from_settings(settings).head() or {}
        models_dir = Path(settings.models_dir)
        files = (
            tuple(sorted((p.name, p.stat().st_mtime_ns) for p in models_dir.glob("*.yaml")))
            if models_dir.is_dir()
            else ()
        )
        return head.get("seq"), head.get("hash"), files

    def status(self, model: str | None = None, *, page: int = 1, per_page: int | None = DEFAULT_PER_PAGE) -> dict:
        """The fleet's page ``page`` of ``per_page`` models (``None``: every model), or one model
        (:class:`~retrain_lib.tools.status.UnknownModelError` if unknown). Each page is kept on
        its own; a model is read on its own (the models of a page are not all kept)."""
        settings = self._settings_factory()
        key = (str(settings.state_dir), settings.tracking_uri, str(settings.models_dir), model, page, per_page)
        with self._lock:
            signature = self._signature(settings)
            kept = self._kept.get(key)
            if kept is None or kept[1] != signature or time.monotonic() - kept[0] > self.max_age:
                for old in [k for k, v in self._kept.items() if v[1] != signature]:
                    del self._kept[old]  # states of an older ledger head are never served again
                kept = self._kept[key] = (
                    time.monotonic(),
                    signature,
                    self._read(settings, model, page=page, per_page=None if model else per_page),
                )
            return kept[2]

    def warm(self, render: Callable[[dict], Any]) -> None:
        """Read the fleet's first page and ``render`` it once (imports MLflow, opens the store,
        compiles the templates); errors are logged, the page shows them when asked."""
        started = time.perf_counter()
        try:
            render(self.status())
        except Exception:  # noqa: BLE001 - a warm-up must never take the API server down
            log.exception("warming up the fleet page")
        else:
            log.info("fleet page warmed up in %.1f s", time.perf_counter() - started)
