"""Replay recorded daily partitions against a gateway, as live traffic would arrive.

Each record of ``<data_root>/<data.path>/<day>.<fmt>`` is sent alone to
``POST /v1/models/<name>/predict`` at a fixed rate (open loop: send times are scheduled, a
slow answer does not slow the sender down unless every worker is busy), with the record's id
column as ``entity``. After ``label_delay_s`` the labels of the answered records (from the
``<data.labels_path>`` partitions, else the target column) are posted to ``feedback`` in
batches, keyed by the request ids the gateway returned.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from retrain_lib.core.errors import DataError
from retrain_lib.store.data import list_partitions, read_partition, resolve_dir

log = logging.getLogger(__name__)


def _records(cfg, data_root: Path, days: tuple[dt.date, dt.date] | None):
    import pandas as pd

    src = cfg.data
    parts = list_partitions(resolve_dir(data_root, src.path or cfg.name), src.format)
    if days:
        parts = {d: p for d, p in parts.items() if days[0] <= d <= days[1]}
    if not parts:
        raise DataError(
            f"no {src.format} partitions for {cfg.name!r} under {data_root / (src.path or cfg.name)}"
            f"{' in ' + days[0].isoformat() + '..' + days[1].isoformat() if days else ''}; "
            "check --data and --days"
        )
    frame = pd.concat([read_partition(p, src.format) for p in parts.values()], ignore_index=True)
    labels: dict | None = None
    if src.labels_path:
        label_parts = list_partitions(resolve_dir(data_root, src.labels_path), src.format)
        if label_parts:
            label_frame = pd.concat([read_partition(p, src.format) for p in label_parts.values()], ignore_index=True)
            labels = dict(zip(label_frame[src.id_column].astype(str), label_frame[cfg.features.target]))
    elif cfg.features.target in frame.columns:
        labels = dict(zip(frame[src.id_column].astype(str), frame[cfg.features.target]))
    feats = frame[cfg.features.all].astype(object).where(frame[cfg.features.all].notna(), None)
    return feats.to_dict("records"), frame[src.id_column].astype(str).tolist(), labels or {}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))], 3)


def replay(
    cfg,
    data_root,
    *,
    url: str,
    rate: float,
    days=None,
    label_delay_s: float = 0.0,
    limit: int | None = None,
    token: str | None = None,
    concurrency: int = 8,
    timeout_s: float = 10.0,
) -> dict[str, Any]:
    """Send the records of ``days`` at ``rate`` per second, then their labels; a summary dict:
    ``sent``, ``ok``, ``errors`` (by status), ``labels_posted``, ``labels_unknown``, ``rps``,
    ``p50_ms``, ``p99_ms``."""
    import httpx

    records, entity_ids, labels = _records(cfg, Path(data_root), days)
    if limit is not None:
        records, entity_ids = records[:limit], entity_ids[:limit]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    base = url.rstrip("/") + f"/v1/models/{cfg.name}"
    lock = threading.Lock()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    answered: list[tuple[str, str]] = []  # (entity id, request id)
    client = httpx.Client(
        headers=headers,
        timeout=timeout_s,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
    )

    def send(i: int) -> None:
        t0 = time.perf_counter()
        try:
            resp = client.post(f"{base}/predict", json={"record": records[i], "entity": entity_ids[i]})
            status = str(resp.status_code)
        except httpx.HTTPError as exc:
            resp, status = None, type(exc).__name__
        ms = (time.perf_counter() - t0) * 1000
        with lock:
            if resp is not None and resp.status_code == 200:
                latencies.append(ms)
                answered.append((entity_ids[i], resp.json()["predictions"][0]["request_id"]))
            else:
                errors[status] = errors.get(status, 0) + 1

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for i in range(len(records)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, i)
    elapsed = time.perf_counter() - start
    if label_delay_s > 0:
        time.sleep(label_delay_s)
    pending = [
        {"request_id": rid, "label": float(labels[eid])}
        for eid, rid in answered
        if eid in labels and labels[eid] == labels[eid]
    ]
    posted, unknown = _post_labels(client, base, pending, errors)
    client.close()
    n_err = sum(v for k, v in errors.items() if not k.startswith("feedback"))
    return {
        "model": cfg.name,
        "sent": len(records),
        "ok": len(latencies),
        "errors": n_err,
        "error_kinds": errors,
        "labels_posted": posted,
        "labels_unknown": unknown,
        "rps": round(len(records) / elapsed, 2) if elapsed > 0 else None,
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
    }


def _post_labels(client, base: str, pending: list[dict], errors: dict[str, int]) -> tuple[int, int]:
    """Post the labels in chunks of 500; (labels stored, labels naming an unknown request).
    Failed posts are counted in ``errors`` as ``feedback <status>``."""
    import httpx

    posted = unknown = 0
    for i in range(0, len(pending), 500):
        try:
            resp = client.post(f"{base}/feedback", json={"labels": pending[i : i + 500]})
        except httpx.HTTPError as exc:
            errors[f"feedback {type(exc).__name__}"] = errors.get(f"feedback {type(exc).__name__}", 0) + 1
            continue
        if resp.status_code in (200, 404):
            body = resp.json()
            posted += int(body.get("stored", 0))
            unknown += len(body.get("unknown", []))
        else:
            errors[f"feedback {resp.status_code}"] = errors.get(f"feedback {resp.status_code}", 0) + 1
    return posted, unknown


class LiveTraffic:
    """Steady live traffic for demos and tests: batches of ``batch`` records sent back to back
    from a background thread (or ``rate_per_s`` requests a second at most), each batch's labels
    posted ``label_delay_s`` after its answer (0: at once). ``records`` are ``(features,
    label)`` pairs, reused round robin. Counts: ``sent`` (answered records), ``failed``
    (requests not answered 200, by status)."""

    def __init__(
        self,
        url: str,
        model: str,
        records: list[tuple[dict, float]],
        *,
        batch: int = 10,
        label_delay_s: float = 0.0,
        token: str | None = None,
        rate_per_s: float | None = None,
    ):
        if not records:
            raise DataError(f"no labelled records to send to {model}")
        self.base = url.rstrip("/") + f"/v1/models/{model}"
        self.records, self.batch, self.label_delay_s = records, batch, label_delay_s
        self.gap_s = 1.0 / rate_per_s if rate_per_s else 0.0
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.stop_event = threading.Event()
        self.sent = 0
        self.failed: dict[str, int] = {}
        self.versions: dict[str, int] = {}
        self._pending: list[tuple[float, list[dict]]] = []
        self.thread = threading.Thread(target=self._run, name=f"traffic-{model}", daemon=True)

    def _run(self) -> None:
        import httpx

        i = 0
        with httpx.Client(timeout=30, headers=self.headers) as http:
            next_at = time.monotonic()
            while not self.stop_event.is_set():
                if self.gap_s:
                    self.stop_event.wait(max(0.0, next_at - time.monotonic()))
                    next_at = max(next_at + self.gap_s, time.monotonic() - 1.0)
                chunk = [self.records[(i + k) % len(self.records)] for k in range(self.batch)]
                i += self.batch
                try:
                    r = http.post(f"{self.base}/predict", json={"records": [c[0] for c in chunk]})
                except httpx.HTTPError as exc:
                    r, status = None, type(exc).__name__
                if r is not None and r.status_code == 200:
                    preds = r.json()["predictions"]
                    self.sent += len(preds)
                    for p in preds:
                        self.versions[p["version"]] = self.versions.get(p["version"], 0) + 1
                    self._pending.append(
                        (
                            time.monotonic() + self.label_delay_s,
                            [{"request_id": p["request_id"], "label": float(c[1])} for p, c in zip(preds, chunk)],
                        )
                    )
                else:
                    status = str(r.status_code) if r is not None else status
                    self.failed[status] = self.failed.get(status, 0) + 1
                    time.sleep(0.05)
                due = [p for p in self._pending if p[0] <= time.monotonic()]
                if due:
                    self._pending = [p for p in self._pending if p[0] > time.monotonic()]
                    labels = [x for _, batch in due for x in batch]
                    try:
                        http.post(f"{self.base}/feedback", json={"labels": labels})
                    except httpx.HTTPError as exc:
                        log.warning("feedback to %s failed: %s", self.base, exc)

    def start(self) -> LiveTraffic:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)

    def __enter__(self) -> LiveTraffic:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def labelled_records(cfg, data_root, days: tuple[dt.date, dt.date]) -> list[tuple[dict, float]]:
    """``(features, label)`` of the records of ``days`` whose label is known."""
    records, ids, labels = _records(cfg, Path(data_root), days)
    return [(r, float(labels[i])) for r, i in zip(records, ids) if i in labels and labels[i] == labels[i]]
