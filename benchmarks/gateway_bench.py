"""Serving gateway overhead: single-record latency through HTTP vs the model's own predict.

1. Builds a platform (simulated credit_default data, champion v1, challenger v2 = same
   artifact) in a temp dir, in a child process, or reuses one (``--state-dir`` +
   ``--config-dir``).
2. With two or more CPUs, pins itself to CPU 1 (``pinned``): the in-process timing below and
   the gateways started next run there, and the load client then moves to CPU 0, so the
   client's own threads never preempt the server they measure (unpinned, two identical
   gateways differ by up to 15 % in p99 from run to run; pinned, by about 3 %).
   Times the champion's in-process ``predict_proba`` on single-row frames of the bench rows
   (1 OpenMP thread, as the gateway runs it) and derives its capacity (1 / mean time). Also
   times the gateway's own scorer (``LoadedModel.score``: the pandas-free fast path when the
   model allows it) on the same rows, for information (``fastpath_*``), and the CPU cost of
   one registry poll, alternated: MLflow's registry call (``registry_poll_cpu_ms``, what a
   full poll costs per model, GIL held) and the gateway's SQLite change probe that replaces
   it while nothing is committed (``change_probe_cpu_ms``).
3. Starts the gateway (subprocess, canary 20 % sticky on application_id, prediction log on)
   and a second one with ``--no-log``, and sends single-record requests open-loop at half
   that capacity with a few client threads for ``--seconds`` to each, alternating between
   the two in ``--segments`` slices so that the changing load of other jobs on the machine
   hits both alike (one gateway is loaded at a time). The slice pairs are spread over
   ``--rounds`` freshly started pairs of gateways: two processes running the same code differ
   by a few per cent in p99 by the luck of their memory layout (hash seeds, address-space
   randomisation), which a longer run does not average out but several processes of each
   kind do. The client's garbage collector is off
   while a slice runs (its heap is frozen, the rest collected between slices): a full
   collection of the client's heap takes ~100 ms and would land in someone's p99. Request
   ``i`` is due at
   ``start + i / rate``; a client that is late sends at once, and the lateness is reported
   (``max_send_lag_ms``, ``late_sends``: more than 5 ms late) together with the achieved
   ``rps``, so a run that could not keep the rate shows it. A slice pair in which the client
   stalled (a thread that was free, with its previous answer in, and whose request was due,
   yet sent more than ``STALL_MS`` late: its own GIL, its CPU, the VM's steal; a send that
   is late because the previous answer was slow is the gateway's doing and counts) is
   set aside and run again, at most ``--redo`` times: the stall inflates the requests in
   flight and is followed by a burst, both landing in one gateway's p99 without saying
   anything about that gateway. ``redone_pairs`` and ``stalls_set_aside`` (by gateway) show
   what was set aside, ``stalled_kept`` what stayed once the budget was spent,
   ``max_client_stall_ms`` the longest such stall, ``max_latency_ms`` each gateway's slowest
   answer,
   ``logging_overhead_all_slices`` the ratio with nothing set aside, and ``steal_pct`` the
   share of CPU the hypervisor gave to other guests during the load.
4. Prints one JSON line last: p50_ms, p99_ms (logging on), inprocess_p50_ms,
   inprocess_p99_ms, rps, p99_ratio (gateway/in-process), nolog_p99_ms, logging_overhead
   (p99 with logging / without) with ``logging_overhead_ci90`` (a 90 % bootstrap interval:
   the slices resampled in their on/off pairs), the machine's load average (1, 5, 15 min) at start and
   end (``loadavg_start``, ``loadavg_end``; other jobs on the machine skew every number) and
   ``cpus``. Targets: p99_ratio <= 1.5, logging_overhead <= 1.1.

Client latencies include the client's own HTTP work (httpx, same machine, same cores);
``p99_from_due_ms`` is measured from the due time instead (includes any send lag).

    .venv/bin/python benchmarks/gateway_bench.py                # 120 s per gateway, ~6 min
    .venv/bin/python benchmarks/gateway_bench.py --seconds 30   # a quick look, wider interval
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = "credit_default"


def build_platform(root: Path) -> tuple[Path, Path]:
    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    (cfg_dir / "models" / "daily_demand.yaml").unlink()
    os.environ.update(RETRAIN_HOME=str(root / "state"), RETRAIN_CONFIG_DIR=str(cfg_dir))
    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.tools.simulate import simulate

    settings = load_settings(cfg_dir)
    simulate(
        load_model_config(cfg_dir / "models" / f"{MODEL}.yaml"),
        settings.data_root,
        days=35,
        drift_day=None,
        drift_kind="none",
        rows_per_day=300,
        seed=1,
    )
    res = retrain_model(MODEL, "2026-01-30", settings=settings)
    assert res.outcome == "deployed", res
    return root / "state", cfg_dir


def pct(values, q) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 3)


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def poll_costs(settings, n: int = 100) -> tuple[list[float], list[float]]:
    """CPU ms of one registry poll of the model, alternated: MLflow's registry call (what
    a full poll makes per model) and the gateway's change probe with nothing committed (what
    a poll costs instead with a SQLite registry). Empty lists for other registries."""
    from retrain_lib.serving.refresher import RegistryChangeProbe
    from retrain_lib.store.registry import get_client

    client = get_client(settings.tracking_uri, settings.registry_uri)
    probe = RegistryChangeProbe.for_uri(settings.registry_uri)
    if probe is None:
        return [], []
    probe.changed()
    full, quick = [], []
    try:
        for _ in range(n):
            t0 = time.thread_time()
            client.get_registered_model(MODEL)
            full.append((time.thread_time() - t0) * 1000)
            t0 = time.thread_time()
            changed = probe.changed()
            quick.append((time.thread_time() - t0) * 1000)
            assert not changed, "the registry changed during the measurement"
    finally:
        probe.close()
    return full, quick


def start_gateway(env, *, log: bool):
    """A healthy gateway subprocess serving the model, with or without its prediction log."""
    from retrain_lib.serving.process import GatewayProcess

    return GatewayProcess(MODEL, refresh_s=2, env=env, args=[] if log else ["--no-log"]).start()


STALL_MS = 20.0  # a thread this late to send, though free and due, means the client itself stalled


class Load:
    """Open-loop single-record load against one gateway, run in slices; keeps each slice."""

    def __init__(self, url: str, clients: int, bodies: list[dict], slices: list[dict] | None = None):
        import httpx

        self.http = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=clients))
        self.path = f"{url}/v1/models/{MODEL}/predict"
        self.clients, self.bodies = clients, bodies
        # in order: lat, lag, from_due (ms per request), errors, arms, took; shared by the
        # loads of one kind of gateway over several rounds
        self.slices: list[dict] = [] if slices is None else slices
        self.sent = sum(len(s["lat"]) for s in self.slices)
        for b in bodies[:200]:  # warm up
            self.http.post(self.path, json=b).raise_for_status()

    def run(self, rate: float, seconds: float) -> dict:
        n = int(rate * seconds)
        lat, lag, own, from_due = [0.0] * n, [0.0] * n, [0.0] * n, [0.0] * n
        errors = [0]
        arms: dict[str, int] = {}
        lock = threading.Lock()
        offset = self.sent
        start = time.perf_counter() + 0.05

        def worker(k):
            free = start  # when this thread's previous request ended
            for i in range(k, n, self.clients):
                due = start + i / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                t0 = time.perf_counter()
                r = self.http.post(self.path, json=self.bodies[(offset + i) % len(self.bodies)])
                t1 = time.perf_counter()
                lat[i] = (t1 - t0) * 1000
                lag[i] = max(0.0, (t0 - due) * 1000)
                # late through no fault of the gateway: the thread was free (its previous answer
                # was in) and the request due, yet it did not send
                own[i] = max(0.0, (t0 - max(due, free)) * 1000)
                free = t1
                from_due[i] = (t1 - due) * 1000
                if r.status_code != 200:
                    with lock:
                        errors[0] += 1
                else:
                    arm = r.json()["predictions"][0]["arm"]
                    with lock:
                        arms[arm] = arms.get(arm, 0) + 1

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.sent += n
        piece = {
            "lat": lat,
            "lag": lag,
            "from_due": from_due,
            "errors": errors[0],
            "arms": arms,
            "took": time.perf_counter() - start,
            "stalled": max(own, default=0.0) > STALL_MS,
            "max_own_lag": max(own, default=0.0),
            "max_lat": max(lat, default=0.0),
        }
        self.slices.append(piece)
        return piece

    def summary(self, kept: list[dict]) -> dict:
        """Latency over the ``kept`` slices; errors, canary arms and send lag over all slices."""
        lat = [x for s in kept for x in s["lat"]]
        lag = [x for s in self.slices for x in s["lag"]]
        arms: dict[str, int] = {}
        for s in self.slices:
            for arm, c in s["arms"].items():
                arms[arm] = arms.get(arm, 0) + c
        return {
            "p50": pct(lat, 50),
            "p99": pct(lat, 99),
            "p99_from_due": pct([x for s in kept for x in s["from_due"]], 99),
            "rps": round(sum(len(s["lat"]) for s in kept) / sum(s["took"] for s in kept), 1),
            "errors": sum(s["errors"] for s in self.slices),
            "arms": arms,
            "max_send_lag_ms": round(max(lag), 3),
            "late_sends": sum(x > 5.0 for x in lag),
        }


def run_both(
    env,
    *,
    rate: float,
    seconds: float,
    clients: int,
    bodies: list[dict],
    segments: int,
    rounds: int,
    server_cpus: set[int] | None,
    client_cpus: set[int] | None,
    redo: int,
):
    """Both gateways (prediction log on / off) up at once, loaded in turn: ``segments``
    alternating slice pairs of ``seconds / segments`` each, so drifting load from other jobs
    on the machine hits both alike. Only one gateway is loaded at a time.

    The pairs are spread over ``rounds``, each with a freshly started pair of gateways: two
    processes running the same code differ by a few per cent in p99 by the luck of their
    memory layout (hash seeds, address-space randomisation), which no run length averages
    out, but several processes of each kind do. Each round the gateways are started on
    ``server_cpus`` (they inherit this process's affinity) and the client then moves to
    ``client_cpus`` (if given).

    A pair in which the client stalled (a free thread sent more than ``STALL_MS`` after its
    request was due) is set aside and run again, at most ``redo`` times in all: a stalled
    client inflates the latency of the requests it has in flight and then sends a burst,
    which lands in one gateway's p99 and says nothing about that gateway. Returns both loads
    (their ``slices``: every slice of every round) and the (on, off) slices kept."""
    on_slices: list[dict] = []
    off_slices: list[dict] = []
    kept_on: list[dict] = []
    kept_off: list[dict] = []
    k = 0
    rounds = max(1, min(rounds, segments))
    on = off = None
    for r in range(rounds):
        gateways = []
        try:
            if server_cpus:
                os.sched_setaffinity(0, server_cpus)
            gateways.append(start_gateway(env, log=True))
            gateways.append(start_gateway(env, log=False))
            if client_cpus:
                os.sched_setaffinity(0, client_cpus)
            on = Load(gateways[0].url, clients, bodies, on_slices)
            off = Load(gateways[1].url, clients, bodies, off_slices)
            gc.collect()
            gc.freeze()
            while len(kept_on) < segments * (r + 1) // rounds:
                pair = {}
                for load in (on, off) if k % 2 == 0 else (off, on):
                    gc.disable()
                    try:
                        pair[id(load)] = load.run(rate, seconds / segments)
                    finally:
                        gc.enable()
                    gc.collect()
                k += 1
                stalled = pair[id(on)]["stalled"] or pair[id(off)]["stalled"]
                if stalled and k - len(kept_on) - 1 < redo:
                    continue
                kept_on.append(pair[id(on)])
                kept_off.append(pair[id(off)])
        finally:
            for load in (on, off):
                if load is not None:
                    load.http.close()
            for gateway in gateways:
                gateway.stop()
            gc.unfreeze()
    return on, off, kept_on, kept_off


def cpu_times() -> list[int] | None:
    """The machine's aggregate CPU times from /proc/stat (user ... steal), or None."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None


def steal_pct(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of CPU time the hypervisor gave to other guests between two ``cpu_times``."""
    if not before or not after:
        return None
    d = [b - a for a, b in zip(before, after)]
    return round(100.0 * d[7] / max(1, sum(d)), 2)


def bootstrap_ratio_ci(
    on: list[list[float]], off: list[list[float]], q: float = 99, n: int = 400, seed: int = 0
) -> list[float]:
    """90 % interval of p``q``(on) / p``q``(off), resampling slice pairs with replacement
    (slice k of both gateways was run back to back, so a pair shares the machine's state)."""
    rng = np.random.default_rng(seed)
    on_a, off_a = [np.asarray(x) for x in on], [np.asarray(x) for x in off]
    ratios = []
    for _ in range(n):
        idx = rng.integers(0, len(on_a), len(on_a))
        ratios.append(
            np.percentile(np.concatenate([on_a[i] for i in idx]), q)
            / np.percentile(np.concatenate([off_a[i] for i in idx]), q)
        )
    return [round(float(x), 3) for x in np.percentile(ratios, [5, 95])]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=120.0, help="load per gateway, in all")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument(
        "--segments",
        type=int,
        default=60,
        help="alternate the logging-on and logging-off gateways this many times each",
    )
    p.add_argument(
        "--rounds", type=int, default=4, help="spread the slice pairs over this many freshly started pairs of gateways"
    )
    p.add_argument(
        "--redo",
        type=int,
        default=10,
        help="run a slice pair again when the client stalled in it, at most this many times",
    )
    p.add_argument("--state-dir", help="reuse this RETRAIN_HOME (with --config-dir) instead of building one")
    p.add_argument("--config-dir")
    p.add_argument("--build-into", help=argparse.SUPPRESS)  # internal: build a platform there and exit
    args = p.parse_args()
    if args.build_into:
        build_platform(Path(args.build_into))
        return 0
    load_start = loadavg()
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = len(cpus) >= 2
    tmp = None
    if args.state_dir:
        state, cfg_dir = Path(args.state_dir), Path(args.config_dir)
        os.environ.update(RETRAIN_HOME=str(state), RETRAIN_CONFIG_DIR=str(cfg_dir))
    else:
        # Built in a child process, so that training's threads and heap stay out of the
        # process that measures (the client's send lag is reported either way).
        tmp = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        subprocess.run([sys.executable, __file__, "--build-into", str(tmp)], check=True)
        state, cfg_dir = tmp / "state", tmp / "configs"
        os.environ.update(RETRAIN_HOME=str(state), RETRAIN_CONFIG_DIR=str(cfg_dir))
    try:
        import mlflow
        import pandas as pd
        from threadpoolctl import threadpool_limits

        from retrain_lib.core.config import load_model_config
        from retrain_lib.core.settings import load_settings
        from retrain_lib.serving.deployment import LoadedModel
        from retrain_lib.serving.fast_path import compile_fast
        from retrain_lib.serving.routing import set_rollout_state
        from retrain_lib.serving.schema import FeatureSchema
        from retrain_lib.store import registry

        settings = load_settings(cfg_dir)
        cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
        mlflow.set_tracking_uri(settings.tracking_uri)  # versions are created from logged models
        client = registry.get_client(settings.tracking_uri, settings.registry_uri)
        if "2" not in {str(v.version) for v in client.search_model_versions(f"name='{MODEL}'")}:
            v1 = client.get_model_version(MODEL, "1")
            client.create_model_version(MODEL, source=v1.source, run_id=v1.run_id)
        client.set_registered_model_alias(MODEL, "champion", "1")
        client.set_registered_model_alias(MODEL, "challenger", "2")
        set_rollout_state(client, MODEL, "canary", 20, "application_id")

        if pinned:  # server side (in-process timing, gateways) on one CPU, the client on another
            os.sched_setaffinity(0, {cpus[1]})
        frame = pd.read_parquet(settings.data_root / MODEL / "2026-01-31.parquet")
        feats = frame[cfg.features.all].astype(object).where(frame[cfg.features.all].notna(), None)
        recs = feats.to_dict("records")
        bodies = [{"record": r, "entity": a} for r, a in zip(recs, frame["application_id"])]

        model = mlflow.sklearn.load_model(f"models:/{MODEL}/1")
        schema = FeatureSchema.from_config(cfg)
        frames = [schema.frame([r]) for r in recs]
        loaded = LoadedModel("1", model, cfg.task, schema, compile_fast(model, schema, cfg.task))
        with threadpool_limits(1):
            for f in frames[:100]:
                model.predict_proba(f)
            times = []
            for _ in range(3):
                for f in frames:
                    t0 = time.perf_counter()
                    model.predict_proba(f)
                    times.append((time.perf_counter() - t0) * 1000)
            for r in recs[:100]:
                loaded.score([r])
            fast_times = []
            for r in recs * 3:
                t0 = time.perf_counter()
                loaded.score([r])
                fast_times.append((time.perf_counter() - t0) * 1000)
        in50, in99 = pct(times, 50), pct(times, 99)
        poll_full, poll_probe = poll_costs(settings)
        capacity = 1000.0 / float(np.mean(times))
        rate = round(capacity / 2, 1)
        env = {**os.environ, "RETRAIN_HOME": str(state), "RETRAIN_CONFIG_DIR": str(cfg_dir)}
        env.pop("RETRAIN_GATEWAY_TOKEN", None)
        times0 = cpu_times()
        on_load, off_load, kept_on, kept_off = run_both(
            env,
            rate=rate,
            seconds=args.seconds,
            clients=args.clients,
            bodies=bodies,
            segments=max(1, args.segments),
            rounds=args.rounds,
            server_cpus={cpus[1]} if pinned else None,
            client_cpus={cpus[0]} if pinned else None,
            redo=args.redo,
        )
        steal = steal_pct(times0, cpu_times())
        ci = bootstrap_ratio_ci([s["lat"] for s in kept_on], [s["lat"] for s in kept_off])
        on, off = on_load.summary(kept_on), off_load.summary(kept_off)
        on_all, off_all = on_load.summary(on_load.slices), off_load.summary(off_load.slices)
        kept = {id(s) for s in kept_on + kept_off}
        print(f"logging on:  {on}", file=sys.stderr)
        print(f"logging off: {off}", file=sys.stderr)
        print(
            json.dumps(
                {
                    "p50_ms": on["p50"],
                    "p99_ms": on["p99"],
                    "inprocess_p50_ms": in50,
                    "inprocess_p99_ms": in99,
                    "rps": on["rps"],
                    "target_rps": rate,
                    "inprocess_capacity_rps": round(capacity, 1),
                    "p99_ratio": round(on["p99"] / in99, 3),
                    "nolog_p50_ms": off["p50"],
                    "nolog_p99_ms": off["p99"],
                    "logging_overhead": round(on["p99"] / off["p99"], 3),
                    "logging_overhead_ci90": ci,
                    "logging_overhead_p50": round(on["p50"] / off["p50"], 3),
                    "errors": on["errors"] + off["errors"],
                    "canary_arms": on["arms"],
                    "seconds": args.seconds,
                    "clients": args.clients,
                    "segments": args.segments,
                    "rounds": args.rounds,
                    "p99_from_due_ms": on["p99_from_due"],
                    "nolog_p99_from_due_ms": off["p99_from_due"],
                    "nolog_rps": off["rps"],
                    "max_send_lag_ms": max(on["max_send_lag_ms"], off["max_send_lag_ms"]),
                    "late_sends": on["late_sends"] + off["late_sends"],
                    "redone_pairs": len(on_load.slices) - len(kept_on),
                    "stalls_set_aside": {
                        "log": sum(s["stalled"] and id(s) not in kept for s in on_load.slices),
                        "nolog": sum(s["stalled"] and id(s) not in kept for s in off_load.slices),
                    },
                    "stalled_kept": sum(s["stalled"] for s in kept_on + kept_off),
                    "max_client_stall_ms": round(max(s["max_own_lag"] for s in on_load.slices + off_load.slices), 3),
                    "max_latency_ms": {
                        "log": round(max(s["max_lat"] for s in on_load.slices), 3),
                        "nolog": round(max(s["max_lat"] for s in off_load.slices), 3),
                    },
                    "logging_overhead_all_slices": round(on_all["p99"] / off_all["p99"], 3),
                    "steal_pct": steal,
                    "fastpath": loaded.fast is not None,
                    "fastpath_p50_ms": pct(fast_times, 50),
                    "fastpath_p99_ms": pct(fast_times, 99),
                    "registry_poll_cpu_ms": pct(poll_full, 50) if poll_full else None,
                    "change_probe_cpu_ms": pct(poll_probe, 50) if poll_probe else None,
                    "cpus": os.cpu_count(),
                    "pinned": pinned,
                    "loadavg_start": load_start,
                    "loadavg_end": loadavg(),
                }
            )
        )
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
