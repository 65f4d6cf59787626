"""Following the registry: a refresher thread polls each served model (aliases and
``rollout.*`` tags, one registry call per model) every ``refresh_s`` seconds, loads and warms
new versions off the request path and swaps the slot's immutable
:class:`~retrain_lib.serving.deployment.Deployment`, so requests never wait for a load and
never see half a change.

With a registry in a local SQLite file (the embedded store) a poll first asks SQLite whether
anything was committed since the last one (:class:`RegistryChangeProbe`, about 0.03 ms) and
skips the registry calls when nothing was: each costs about 3 ms of CPU with the GIL held in
MLflow's SQLAlchemy store, which requests arriving meanwhile would wait for
(``benchmarks/gateway_bench.py`` measures both). A full poll still runs at least every
``FULL_REFRESH_S``.

A pushed change (an MLflow webhook delivery, :mod:`retrain_lib.serving.webhooks`) wakes the
thread for the model named (:meth:`Refresher.wake`): it is polled at once, so the poll
interval only bounds how late a change whose push was lost is seen.
"""

import logging
import math
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable

from retrain_lib.serving import routing
from retrain_lib.serving.deployment import Deployment, ModelSlot, load_version
from retrain_lib.serving.predlog_store import sqlite_file
from retrain_lib.store.lifecycle_tags import LifecycleTags
from retrain_lib.store.registry import CHALLENGER, CHAMPION, is_not_found

log = logging.getLogger(__name__)

FULL_REFRESH_S = 30.0  # a full registry poll at least this often, whatever RegistryChangeProbe says


class RegistryChangeProbe:
    """Whether a registry kept in a local SQLite file may have changed since the last call:
    ``PRAGMA data_version`` on this probe's own connection changes whenever another
    connection (any process) commits to the file. A replaced file (another inode), a missing
    file or any SQLite error counts as a change, so the caller falls back to a full poll.
    :meth:`for_uri` gives ``None`` for registries elsewhere (an MLflow server)."""

    def __init__(self, path: str):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._seen: tuple[int, int, int] | None = None  # (st_dev, st_ino, data_version) at the last call

    @classmethod
    def for_uri(cls, uri: str | None) -> "RegistryChangeProbe | None":
        if not uri:
            return None
        database = sqlite_file(uri)
        return cls(os.path.abspath(database)) if database else None

    def changed(self) -> bool:
        try:
            st = os.stat(self.path)
            if self._conn is None or self._seen is None or (st.st_dev, st.st_ino) != self._seen[:2]:
                self.close()
                # read-only, autocommit: it holds no lock between calls and never writes
                self._conn = sqlite3.connect(
                    f"file:{urllib.parse.quote(self.path)}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            seen = (st.st_dev, st.st_ino, self._conn.execute("PRAGMA data_version").fetchone()[0])
        except (OSError, sqlite3.Error):
            self.close()
            return True
        changed, self._seen = seen != self._seen, seen
        return changed

    def close(self) -> None:
        conn, self._conn, self._seen = self._conn, None, None
        if conn is not None:
            conn.close()


def refresh_slot(slot: ModelSlot, client) -> bool:
    """Poll the registry once for ``slot``; load and swap when something changed. True on a swap.
    A retired model (``lifecycle.status`` tag of the registered model) loads nothing: its
    requests get 410 Gone."""
    from mlflow.exceptions import MlflowException

    try:
        rm = client.get_registered_model(slot.name)
        found_aliases = {k: str(v) for k, v in (rm.aliases or {}).items()}
        state = routing.state_from_tags(rm.tags)
        lifecycle = LifecycleTags.from_tags(rm.tags)
    except MlflowException as exc:
        if not is_not_found(exc):
            raise
        found_aliases, state, lifecycle = {}, routing.RolloutState(), LifecycleTags()
    retired = lifecycle if lifecycle.retired else None
    if retired is not None:
        found_aliases, state = {}, routing.RolloutState()
    champ_v, chall_v = found_aliases.get(CHAMPION), found_aliases.get(CHALLENGER)
    current = slot.deployment
    slot.last_refresh = time.time()
    if (champ_v, chall_v, state, retired) == current.key:
        slot.error = None
        return False
    champion = load_version(slot, champ_v) if champ_v else None
    challenger = load_version(slot, chall_v) if chall_v else None
    slot.deployment = Deployment(champion, challenger, state, time.time(), retired)  # the atomic swap
    keep = {v for v in (champ_v, chall_v, current.key[0], current.key[1]) if v}
    for v in list(slot.cache):
        if v not in keep:
            slot.cache.pop(v, None)
    slot.error = None
    if retired is not None:
        log.warning("%s: answering 410 Gone", retired.explain(slot.name))
    else:
        log.info("%s now serves champion %s, challenger %s, rollout %s", slot.name, champ_v, chall_v, state.to_dict())
    return True


def pin_slot(slot: ModelSlot, source: str) -> None:
    """Serve ``source`` (a version number or a model URI) as the slot's champion, for good: a
    pinned slot is not refreshed. A load failure is kept in ``slot.error`` (``/health`` shows
    it and answers 503), never raised, so the process stays up to say why."""
    try:
        slot.deployment = Deployment(load_version(slot, source), None, routing.RolloutState(), time.time())
        slot.error = None
        slot.last_refresh = time.time()
        log.info("%s pinned to %s", slot.name, source)
    except Exception as exc:  # noqa: BLE001 - reported by /health, which is what a prober reads
        slot.error = f"{type(exc).__name__}: {exc}"
        log.error("%s could not load its pinned %s: %s", slot.name, source, slot.error)


class Refresher:
    """Keeps ``slots`` in step with the registry: :meth:`refresh_all` once, or every
    ``refresh_s`` seconds on a thread between :meth:`start` and :meth:`stop`. ``client()``
    gives the registry client; ``probe`` (None: always a full poll) tells whether the registry
    may have changed."""

    def __init__(
        self,
        slots: dict[str, ModelSlot],
        client: Callable[[], object],
        probe: RegistryChangeProbe | None,
        refresh_s: float,
    ):
        self.slots = slots
        self.client = client
        self.probe = probe
        self.refresh_s = refresh_s
        self._last_full = -math.inf  # time.monotonic() of the last full poll
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by wake(): refresh the woken models now
        self._woken: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def refresh_all(self) -> None:
        """Poll the registry for every model, unless the change probe says nothing was
        committed since the last full poll, that poll left no model in error and it is less
        than ``FULL_REFRESH_S`` old. The probe is read before the poll, so a change committed
        during a poll is seen by the next one."""
        if self.probe is not None:
            changed = self.probe.changed()
            if (
                not changed
                and time.monotonic() - self._last_full < FULL_REFRESH_S
                and all(slot.error is None for slot in self.slots.values())
            ):
                now = time.time()
                for slot in self.slots.values():
                    slot.last_refresh = now
                return
        self._last_full = time.monotonic()
        for slot in self.slots.values():
            try:
                refresh_slot(slot, self.client())
            except Exception as exc:  # noqa: BLE001 - keep serving what is loaded; retry next round
                slot.error = f"{type(exc).__name__}: {exc}"
                log.warning("refresh of %s failed (still serving %s): %s", slot.name, slot.deployment.key, exc)

    def wake(self, name: str) -> bool:
        """Refresh ``name`` now on the refresher's thread (a pushed registry change, see
        :mod:`retrain_lib.serving.webhooks`), whatever the change probe says; False for a
        model this gateway does not follow."""
        if name not in self.slots:
            return False
        with self._lock:
            self._woken.add(name)
        self._wake.set()
        return True

    def refresh_woken(self) -> None:
        """The full poll of every model :meth:`wake` named since the last call."""
        with self._lock:
            names, self._woken = self._woken, set()
            self._wake.clear()
        for name in sorted(names):
            slot = self.slots[name]
            try:
                refresh_slot(slot, self.client())
            except Exception as exc:  # noqa: BLE001 - keep serving what is loaded; the poll retries
                slot.error = f"{type(exc).__name__}: {exc}"
                log.warning("pushed refresh of %s failed (still serving %s): %s", name, slot.deployment.key, exc)

    def start(self) -> None:
        """Poll every ``refresh_s`` seconds on a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="gateway-refresher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (after the poll under way) and close the probe."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.probe is not None:
            self.probe.close()

    def _loop(self) -> None:
        deadline = time.monotonic() + self.refresh_s
        while not self._stop.is_set():
            woken = self._wake.wait(max(0.0, deadline - time.monotonic()))
            if self._stop.is_set():
                return
            if woken:
                self.refresh_woken()
            if time.monotonic() >= deadline:
                self.refresh_all()
                deadline = time.monotonic() + self.refresh_s
