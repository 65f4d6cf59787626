"""Fleet scale: parsing N model configs, and one monitor run of every model on K Celery workers.

* ``parse_s``: the time the DAG processor spends on the factory file ``dags/retrain_dags.py``
  with N generated model configs (copies of ``credit_default`` under other names), as DagBag
  reports it (``dagbag_stats[].duration``), in a process that has already imported Airflow.
  Target < 5 s for 100 models, far under Airflow's 30 s ``dagbag_import_timeout``.
  ``parse_peak_mb``: how much the process's peak RSS grew during that parse.
* ``monitor_all_s``: docker-compose.yaml's topology started natively (the starter of
  ``tests/production``: Airflow with the CeleryExecutor on PostgreSQL + Redis, K workers,
  MLflow on PostgreSQL with S3 artifacts, data in S3), then one ``<model>__monitor`` run of
  each of M models triggered through the REST API at once: the time until all M runs have
  finished. With no champion yet every monitor requests a retrain; the retrain DAGs stay
  paused, so only the monitors run. M is ``--monitor-models`` (default 8, a few minutes on
  2 cores); ``--monitor-models 0`` skips this part.

Prints one JSON object on its last line, e.g.
``{"models": 100, "dags": 300, "parse_s": 1.9, "parse_peak_mb": 60.1, "monitor_models": 8, "workers": 2,
"worker_concurrency": 1, "monitor_all_s": 150.2, ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE_MODEL = "credit_default"
LOGICAL_DATE = "2026-01-29T06:00:00+00:00"


def fleet_configs(dst: Path, n: int) -> Path:
    """A config directory with ``n`` models ``fleet_0000``..: copies of credit_default, all
    reading credit_default's data."""
    import yaml

    shutil.copytree(REPO / "configs", dst)
    base = yaml.safe_load((dst / "models" / f"{BASE_MODEL}.yaml").read_text())
    for path in (dst / "models").glob("*.yaml"):
        path.unlink()
    for i in range(n):
        name = f"fleet_{i:04d}"
        (dst / "models" / f"{name}.yaml").write_text(yaml.safe_dump({**base, "name": name}, sort_keys=False))
    return dst


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def parse_child(config_dir: str) -> None:
    """Run in a fresh process: import Airflow, then parse the factory file once."""
    import airflow  # noqa: F401 - Airflow itself is imported before the measurement
    from airflow.dag_processing.dagbag import DagBag

    os.environ["RETRAIN_CONFIG_DIR"] = config_dir
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=str(REPO / "dags" / "retrain_dags.py"))
    wall = time.perf_counter() - t0
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats = bag.dagbag_stats  # one entry: the factory file (reported as "." when given as the folder)
    print(
        json.dumps(
            {
                "parse_s": round(
                    sum(s.duration.total_seconds() for s in stats), 3
                ),  # the factory file is the only file
                "parse_wall_s": round(wall, 3),
                "parse_peak_mb": round(peak_after - max(peak_before, rss_before), 1),
                "process_peak_mb": round(peak_after, 1),
                "dags": len(bag.dags),
                "import_errors": {k: v[-500:] for k, v in bag.import_errors.items()},
            }
        )
    )


def measure_parse(n: int, root: Path) -> dict:
    config_dir = fleet_configs(root / "parse-configs", n)
    home = root / "airflow-parse"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RETRAIN"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        RETRAIN_STRICT="1",
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--parse-child", str(config_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise SystemExit(f"parse child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if out["import_errors"] or out["dags"] < 2 * n:
        raise SystemExit(f"the factory did not build every model's DAGs: {out}")
    return out


def measure_monitor_all(m: int, workers: int, concurrency: int, root: Path) -> dict:
    from retrain_native.topology import NativeTopology, s3_model_configs, upload_tree

    from retrain_lib.core.config import load_model_config
    from retrain_lib.tools.simulate import simulate

    config_dir = s3_model_configs(fleet_configs(root / "fleet-configs", m), root / "configs")
    local = root / "simulated"
    simulate(
        load_model_config(REPO / "configs" / "models" / f"{BASE_MODEL}.yaml"),
        local,
        days=35,
        drift_kind="none",
        rows_per_day=600,
        seed=3,
    )
    models = sorted(p.stem for p in (config_dir / "models").glob("*.yaml"))
    t_start = time.monotonic()
    topo = NativeTopology(
        root / "topology",
        config_dir,
        workers=workers,
        gateway=False,
        variables={
            "AIRFLOW_WORKER_CONCURRENCY": str(concurrency),
            "AIRFLOW_API_WORKERS": "1",
            "AIRFLOW_DAG_REFRESH_INTERVAL": "5",
            "RETRAIN_STRICT": "1",
        },
    )
    (root / "topology").mkdir()
    with topo:
        upload_tree(topo.s3_client(), topo.env_vars["RETRAIN_BUCKET"], local)
        token = topo.wait("a token", 180, topo.token)
        monitors = {f"{name}__monitor" for name in models}
        topo.wait("the monitor DAGs to be parsed", 300, lambda: monitors <= topo.parsed_dags())
        startup_s = time.monotonic() - t_start
        for dag_id in sorted(monitors):
            status, body = topo.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False}, token)
            assert status == 200, (status, body)
        t0 = time.monotonic()
        runs = {}
        for dag_id in sorted(monitors):
            status, body = topo.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": LOGICAL_DATE}, token)
            assert status == 200, (status, body)
            runs[dag_id] = body["dag_run_id"]

        def finished():
            with topo.sql() as con:
                rows = con.execute("SELECT dag_id, state FROM dag_run WHERE run_type = 'manual'").fetchall()
            states = {d: s for d, s in rows if d in runs}
            return states if all(states.get(d) in ("success", "failed") for d in runs) else None

        states = topo.wait(f"{len(runs)} monitor runs", 3600, finished, poll=1)
        monitor_all_s = time.monotonic() - t0
        with topo.sql() as con:
            hosts = dict(
                con.execute(
                    "SELECT hostname, count(*) FROM task_instance WHERE state = 'success' GROUP BY hostname"
                ).fetchall()
            )
    failed = sorted(d for d, s in states.items() if s != "success")
    return {
        "monitor_models": m,
        "workers": workers,
        "worker_concurrency": concurrency,
        "monitor_all_s": round(monitor_all_s, 1),
        "monitor_failed": failed,
        "tasks_per_worker": hosts,
        "topology_startup_s": round(startup_s, 1),
    }


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--parse-child":
        parse_child(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=100, help="model configs to parse (default 100)")
    ap.add_argument(
        "--monitor-models",
        type=int,
        default=8,
        help="models whose monitor runs on the Celery workers (default 8; 0 = skip)",
    )
    ap.add_argument("--workers", type=int, default=2, help="Celery workers K (default 2)")
    ap.add_argument("--concurrency", type=int, default=1, help="task slots per worker (default 1)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="fleet_bench_"))
    try:
        parse = measure_parse(args.models, root)
        result = {
            "models": args.models,
            "dags": parse["dags"],
            "parse_s": parse["parse_s"],
            "parse_peak_mb": parse["parse_peak_mb"],
            "parse_wall_s": parse["parse_wall_s"],
            "parse_process_peak_mb": parse["process_peak_mb"],
            "parse_target_s": 5.0,
            "parse_ok": parse["parse_s"] < 5.0,
        }
        print(f"parse: {args.models} models -> {parse['dags']} DAGs in {parse['parse_s']} s", file=sys.stderr)
        m = min(args.monitor_models, args.models)
        if m > 0:
            result.update(measure_monitor_all(m, args.workers, args.concurrency, root))
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
