"""The servability probe: before a candidate may be promoted, a fresh gateway process
(``retrain serve --pin <model>=<source> --no-log``) loads it the way production loads a
version, and answers single-row requests built from the training rows over real HTTP. What
it did comes back as a :class:`~retrain_lib.quality.gate_types.ServedProbe`: loaded or why
not, requests answered, answers that differ from the evaluated model's scores on the same
rows (serving skew), and the wall-clock p50/p95 of the served path, which the latency gate
judges.

TFX's InfraValidator does the same with a model server in a sandbox; here the sandbox is a
child process of the task, stopped by its PID whatever happens.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from retrain_lib.quality.gate_types import ServedProbe
from retrain_lib.serving.process import GatewayProcess

PROBE_ENV_CLEARED = ("RETRAIN_GATEWAY_TOKEN",)  # the probe's own gateway needs no bearer token


def probe_env(settings) -> dict[str, str]:
    """The child's environment: this process's, with the settings spelled out so the child
    resolves the same stores whatever its working directory."""
    env = dict(os.environ)
    env.update(
        {
            "RETRAIN_HOME": str(settings.state_dir),
            "RETRAIN_DATA_ROOT": str(settings.data_root),
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "MLFLOW_REGISTRY_URI": settings.registry_uri,
            "OMP_NUM_THREADS": "1",
        }
    )
    for name in PROBE_ENV_CLEARED:
        env.pop(name, None)
    return env


def json_record(row: dict) -> dict:
    """A request record of ``row``: plain JSON values, missing values as ``null``."""
    out = {}
    for key, value in row.items():
        if hasattr(value, "item"):  # numpy scalars
            value = value.item()
        if isinstance(value, float) and math.isnan(value):
            value = None
        out[str(key)] = value
    return out


def _wait_loaded(gw: GatewayProcess, model: str, deadline: float) -> str | None:
    """None once the gateway serves ``model``; else why it will not (load error, exit, timeout)."""
    import httpx

    assert gw.proc is not None
    while True:
        if gw.proc.poll() is not None:
            return f"the gateway process exited with {gw.proc.returncode} before serving: {gw.output()[-800:]}"
        try:
            r = httpx.get(f"{gw.url}/health", timeout=2)
            body = r.json()
            if r.status_code == 200:
                return None
            error = ((body.get("models") or {}).get(model) or {}).get("error")
            if error:
                return f"the gateway could not load it: {error}"
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() > deadline:
            return "the gateway did not serve it within the probe's timeout"
        time.sleep(0.2)


def _percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


def probe_served(
    settings,
    model: str,
    source: str,
    records: Sequence[dict],
    expected: Sequence[float] | None = None,
    *,
    requests: int = 50,
    timeout_s: float = 180.0,
    tolerance: float = 1e-6,
) -> ServedProbe:
    """Serve ``source`` (a version number or model URI) of ``model`` in a fresh gateway
    process and send it ``requests`` single-row requests cycling over ``records`` (whose
    scores by the evaluated model are ``expected``, same order). Never raises for what the
    candidate does; the process is stopped before returning."""
    if not records:
        return ServedProbe(source, False, error="no probe records: the training rows are empty")
    records = [json_record(r) for r in records]  # plain JSON values, once
    with tempfile.TemporaryDirectory(prefix="retrain-probe-") as tmp:
        gw = GatewayProcess(
            [model],
            refresh_s=3600,
            args=["--pin", f"{model}={source}", "--no-log", "--config-dir", str(settings.config_dir)],
            env=probe_env(settings),
            log_path=Path(tmp) / "gateway.log",  # a file, not a pipe nobody reads while it runs
        )
        return _probe(gw, model, source, records, expected, requests, timeout_s, tolerance)


def _probe(gw: GatewayProcess, model, source, records, expected, requests, timeout_s, tolerance) -> ServedProbe:
    import httpx

    t0 = time.monotonic()
    gw.launch()
    try:
        why = _wait_loaded(gw, model, t0 + timeout_s)
        startup = round(time.monotonic() - t0, 3)
        if why is not None:
            return ServedProbe(source, False, requests, startup_s=startup, error=why)
        times: list[float] = []
        mismatched, worst, failures = 0, 0.0, []
        with httpx.Client(base_url=gw.url, timeout=30) as client:
            for i in range(requests):
                k = i % len(records)
                started = time.perf_counter()
                try:
                    r = client.post(f"/v1/models/{model}/predict", json={"record": records[k]})
                except httpx.HTTPError as exc:
                    failures.append(f"request {i}: {type(exc).__name__}: {exc}")
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                if r.status_code != 200:
                    failures.append(f"request {i}: HTTP {r.status_code} {r.text[:200]}")
                    continue
                times.append(elapsed)
                got = float(r.json()["predictions"][0]["prediction"])
                if expected is not None:
                    diff = abs(got - float(expected[k]))
                    worst = max(worst, diff)
                    mismatched += diff > tolerance * max(1.0, abs(float(expected[k])))
        return ServedProbe(
            source,
            True,
            requests,
            answered=len(times),
            mismatched=mismatched,
            max_abs_diff=worst if expected is not None else None,
            tolerance=tolerance,
            p50_ms=round(_percentile(times, 50), 3) if times else None,
            p95_ms=round(_percentile(times, 95), 3) if times else None,
            startup_s=startup,
            error="; ".join(failures[:3]) + (f" (+{len(failures) - 3} more)" if len(failures) > 3 else "")
            if failures
            else None,
        )
    finally:
        gw.stop()
