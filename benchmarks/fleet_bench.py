"""Fleet scale: parsing N model configs, the fleet page at N registered models, and (opt-in) one
monitor run of every model on K Celery workers.

* Parse (``--layout files``, the default): a DAGs folder holding ``dags/retrain_dags.py`` and one
  generated file per model (``retrain dags sync``), N model configs (copies of
  ``credit_default`` under other names), parsed as Airflow's DAG processor parses them: a parent
  process that imported Airflow and the ``airflow.*`` modules the files name
  (``parsing_pre_import_modules``) forks one process per file, ``--processes`` at a time
  (``parsing_processes``, default 2), and each runs Airflow's own ``_parse_file`` (the file's
  DagBag and the serialization of its DAGs). ``parse_s`` is the sum of the per-file durations
  (fork to exit) - what the targets use (< 10 s at 1,000 models); ``parse_wall_s`` the wall
  time over the processes; ``largest_file_parse_s`` the slowest file (target < 1 s). The
  ``*_factory_preimported`` keys are the same with ``retrain_airflow.factory`` imported by the
  parent too, as an ``airflow_local_settings.py`` holding that import does for the real DAG
  processor (README, "A large fleet"): each file's process then only builds and serializes.
  ``inprocess_*`` is one DagBag over the folder in one process (``dagbag_stats``; no
  serialization, and every file after the first finds the plugin package imported);
  ``cold_file_parse_s`` one file in a fresh process; ``parse_peak_mb`` how much that one
  process's peak RSS grew (it keeps every DAG of the fleet; the DAG processor's per-file
  processes hold one model each). ``--layout single`` parses the factory file alone (every
  model in one file, the layout before), which passes Airflow's 30 s ``dagbag_import_timeout``
  near 1,000 models.
* Fleet page (skip with ``--no-page``): N models registered in an SQLite MLflow store (one
  version each, aliased ``champion``; ``register_s``), then in a fresh process: the fleet
  page's second page (``fleet_page_s``, read from the sources, nothing kept; target < 1 s;
  ``fleet_page_first_s`` is the first request, which also compiles the templates) and
  ``fleet_status`` for a page through a counting ``MlflowClient`` (``status_mlflow_s``,
  ``mlflow_calls``). ``--page-code DIR`` measures the same with another version's code (e.g.
  ``git archive HEAD retrain_lib plugins | tar -x -C DIR``) under ``before``.
* ``monitor_all_s`` (``--monitor-models M``, default 0 = skipped): docker-compose.yaml's
  topology started natively (the starter of ``tests/production``: Airflow with the
  CeleryExecutor on PostgreSQL + Redis, K workers, MLflow on PostgreSQL with S3 artifacts, data
  in S3), then one ``<model>__monitor`` run of each of M models triggered through the REST API
  at once: the time until all M runs have finished. With no champion yet every monitor
  requests a retrain; the retrain DAGs stay paused, so only the monitors run (8 models take a
  few minutes on 2 cores).

Prints one JSON object on its last line, e.g.
``{"models": 1000, "files": 1001, "dags": 5000, "parse_s": 150.2, "largest_file_parse_s": 0.9,
"fleet_page_s": 0.3, "mlflow_calls_total": 2, ...}``.
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


def preimport_airflow_modules(files) -> None:
    """Import the ``airflow.*`` modules ``files`` name, as the DAG processor does before it
    starts the process that parses a file (``[dag_processor] parsing_pre_import_modules``)."""
    import importlib

    from airflow.utils.file import iter_airflow_imports

    for module in sorted({m for f in files for m in iter_airflow_imports(str(f))}):
        importlib.import_module(module)


def parse_child(config_dir: str, dags_dir: str) -> None:
    """Run in a fresh process: import Airflow (and the ``airflow.*`` modules the files name, as
    the DAG processor pre-imports them), then parse the DAGs folder once, file by file, as the
    DAG processor does (DagBag over the folder; one ``dagbag_stats`` entry per file). The first
    file also pays the import of the plugin package, once for the process."""
    import airflow  # noqa: F401 - Airflow itself is imported before the measurement
    from airflow.dag_processing.dagbag import DagBag

    preimport_airflow_modules(Path(dags_dir).rglob("*.py"))
    os.environ["RETRAIN_CONFIG_DIR"] = config_dir
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=dags_dir)
    wall = time.perf_counter() - t0
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    durations = sorted(((s.duration.total_seconds(), s.file) for s in bag.dagbag_stats), reverse=True)
    print(
        json.dumps(
            {
                "parse_s": round(sum(d for d, _ in durations), 3),
                "parse_wall_s": round(wall, 3),
                "largest_file_parse_s": round(durations[0][0], 3) if durations else None,
                "largest_file": durations[0][1] if durations else None,
                "median_file_parse_s": round(durations[len(durations) // 2][0], 4) if durations else None,
                "files": len(durations),
                "parse_peak_mb": round(peak_after - max(peak_before, rss_before), 1),
                "process_peak_mb": round(peak_after, 1),
                "dags": len(bag.dags),
                "import_errors": {k: v[-500:] for k, v in bag.import_errors.items()},
            }
        )
    )


def processor_child(config_dir: str, dags_dir: str, preimport: str, processes: str) -> None:
    """Parse the DAGs folder the way Airflow's DAG processor does: a parent that has imported
    Airflow and the ``airflow.*`` modules the files name (``parsing_pre_import_modules``), and
    with ``preimport`` = ``factory`` also ``retrain_airflow.factory`` (what an
    ``airflow_local_settings.py`` holding that import gives the DAG processor), freezes its
    heap as the DAG processor does (``gc.freeze``), then forks one process per file, at most
    ``processes`` at a time (``[dag_processor] parsing_processes``, default 2); each runs
    Airflow's own ``_parse_file`` (stability check, DagBag of the one file, serialization of
    its DAGs). A file's duration runs from its fork to its exit, as the DAG processor's
    ``run_duration``."""
    import gc
    import importlib

    import airflow  # noqa: F401
    import structlog
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file

    files = sorted(str(f) for f in Path(dags_dir).rglob("*.py"))
    preimport_airflow_modules(files)
    os.environ["RETRAIN_CONFIG_DIR"] = config_dir
    if preimport == "factory":
        importlib.import_module("retrain_airflow.factory")
    log = structlog.get_logger(logger_name="fleet_bench")
    gc.collect()
    gc.freeze()
    started: dict[int, tuple[str, float]] = {}
    durations: list[tuple[float, str]] = []
    failed: dict[str, int] = {}
    pending = list(reversed(files))
    t0 = time.perf_counter()
    while pending or started:
        while pending and len(started) < int(processes):
            file = pending.pop()
            begin = time.perf_counter()
            pid = os.fork()
            if pid == 0:  # the file's own process
                code = 1
                try:
                    request = DagFileParseRequest(file=file, bundle_path=Path(dags_dir), bundle_name="dags-folder")
                    result = _parse_file(request, log)
                    code = 4 if result is None or result.import_errors else 0
                    code = 3 if code == 0 and not result.serialized_dags and "models" in file else code
                finally:
                    os._exit(code)
            started[pid] = (file, begin)
        pid, status = os.wait()
        file, begin = started.pop(pid)
        durations.append((time.perf_counter() - begin, file))
        if os.waitstatus_to_exitcode(status) != 0:
            failed[file] = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    durations.sort(reverse=True)
    print(
        json.dumps(
            {
                "parse_s": round(sum(d for d, _ in durations), 3),
                "wall_s": round(wall, 3),
                "largest_file_s": round(durations[0][0], 3),
                "largest_file": durations[0][1],
                "median_file_s": round(durations[len(durations) // 2][0], 4),
                "files": len(durations),
                "failed": failed,
            }
        )
    )


def cold_child(config_dir: str, stub: str) -> None:
    """A fresh process that imports what the DAG processor has imported before it starts the
    process parsing a file (Airflow, and the ``airflow.*`` modules the file names:
    ``parsing_pre_import_modules``), then parses one generated file: what each file costs in
    the DAG processor, where no earlier file warmed the other imports."""
    import airflow.sdk  # noqa: F401
    from airflow.dag_processing.dagbag import DagBag

    preimport_airflow_modules([stub])
    os.environ["RETRAIN_CONFIG_DIR"] = config_dir
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=stub)
    print(json.dumps({"cold_file_parse_s": round(time.perf_counter() - t0, 3), "cold_file_dags": len(bag.dags)}))


def _child(args: list[str], env: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"parse child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure_parse(n: int, root: Path, layout: str = "files", processes: int = 2) -> dict:
    """Parse ``n`` models' DAGs from a DAGs folder of their own: ``files`` = ``dags/retrain_dags.py``
    plus one generated file per model (``retrain dags sync``); ``single`` = the factory file
    alone (every model in one file, the layout before the generated files)."""
    from retrain_airflow.dag_files import sync_dag_stubs

    config_dir = fleet_configs(root / "parse-configs", n)
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "retrain_dags.py", dags / "retrain_dags.py")
    if layout == "files":
        sync_dag_stubs(config_dir / "models", dags)
    home = root / "airflow-parse"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RETRAIN"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        RETRAIN_STRICT="1",
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
    )
    out = _child(["--parse-child", str(config_dir), str(dags)], env)
    if layout == "single" and out["import_errors"]:  # the layout before: may pass the 30 s limit
        print(f"import errors: {out['import_errors']}", file=sys.stderr)
        return out
    if out["import_errors"] or out["dags"] < 2 * n:
        raise SystemExit(f"the factory did not build every model's DAGs: {out}")
    if layout == "files":
        out.update(_child(["--cold-child", str(config_dir), str(dags / "models" / "fleet_0000.py")], env))
    for preimport in ("airflow", "factory"):
        run = _child(["--processor-child", str(config_dir), str(dags), preimport, str(processes)], env)
        if run["failed"]:
            raise SystemExit(f"files failed to parse in their own processes: {run['failed']}")
        out[f"processor_{preimport}"] = run
    return out


def register_fleet(tracking_uri: str, names: list[str]) -> float:
    """Register every model of ``names`` in the MLflow registry at ``tracking_uri`` with one
    version (tags as the retrain DAG writes a few of them) aliased ``champion``: three registry
    calls per model, no run, no artifact (the cheapest real registration). Returns seconds."""
    import warnings

    warnings.filterwarnings("ignore")
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    t0 = time.perf_counter()
    for name in names:
        client.create_registered_model(name, tags={"rollout.mode": "none"})
        mv = client.create_model_version(
            name, source=f"file:///tmp/{name}", tags={"metric.roc_auc": "0.81", "trained_as_of": "2026-01-20"}
        )
        client.set_registered_model_alias(name, "champion", mv.version)
    return time.perf_counter() - t0


class CountingClient:
    """The real ``MlflowClient`` with every call counted by method name (no result is faked)."""

    def __init__(self, client):
        self._client = client
        self.calls: dict[str, int] = {}

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.calls[name] = self.calls.get(name, 0) + 1
            return attr(*args, **kwargs)

        return counted


def page_child(config_dir: str, per_page: int) -> None:
    """In a fresh process (with the code on ``sys.path``, old or new): the fleet page's first
    page through the app (SQLite registry read from its file, as the API server does), then
    ``fleet_status`` through a counting ``MlflowClient`` (what a registry server costs)."""
    import inspect
    import warnings

    warnings.filterwarnings("ignore")
    from fastapi.testclient import TestClient
    from retrain_airflow.ui import create_app

    from retrain_lib.core.settings import load_settings
    from retrain_lib.store import registry
    from retrain_lib.tools.status import fleet_status

    settings = load_settings(config_dir)
    paged = "per_page" in inspect.signature(fleet_status).parameters
    app = TestClient(create_app(lambda: settings, require_auth=False, max_age=0), root_path="/retrain")
    out: dict = {"paged": paged}
    t0 = time.perf_counter()
    first = app.get(f"/?per_page={per_page}")
    out["fleet_page_first_s"] = round(time.perf_counter() - t0, 3)  # templates compiled on this one
    t0 = time.perf_counter()
    again = app.get(f"/?page=2&per_page={per_page}")
    out["fleet_page_s"] = round(time.perf_counter() - t0, 3)
    out["fleet_page_status"] = [first.status_code, again.status_code]
    out["fleet_page_rows"] = again.text.count("<tr data-model=")
    out["fleet_page_kb"] = round(len(again.text) / 1024, 1)
    client = CountingClient(registry.get_client(settings.tracking_uri, settings.registry_uri))
    kwargs = {"page": 2, "per_page": per_page} if paged else {}
    t0 = time.perf_counter()
    status = fleet_status(settings, client=client, **kwargs)
    out["status_mlflow_s"] = round(time.perf_counter() - t0, 3)
    out["status_models"] = len(status["models"])
    out["mlflow_calls"] = client.calls
    out["mlflow_calls_total"] = sum(client.calls.values())
    print(json.dumps(out))


def measure_fleet_page(n: int, root: Path, per_page: int, code: str | None = None) -> dict:
    """The fleet page and ``fleet_status`` at ``n`` registered models (an SQLite MLflow store
    under the bench's RETRAIN_HOME), with this repository's code or, with ``code``, a copy of
    another version's ``retrain_lib`` and ``plugins`` (``git archive``) put first on the path."""
    config_dir = root / "parse-configs"
    if not config_dir.exists():
        fleet_configs(config_dir, n)
    home = root / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RETRAIN", "MLFLOW"))}
    env.update(RETRAIN_HOME=str(home), RETRAIN_CONFIG_DIR=str(config_dir), AIRFLOW_HOME=str(root / "airflow-page"))
    out: dict = {}
    if not (home / "mlflow" / "mlflow.db").exists():
        (home / "mlflow").mkdir(parents=True)
        names = sorted(p.stem for p in (config_dir / "models").glob("*.yaml"))
        out["register_s"] = round(register_fleet(f"sqlite:///{home / 'mlflow' / 'mlflow.db'}", names), 1)
    if code:
        env["PYTHONPATH"] = f"{code}:{code}/plugins"
    proc = subprocess.run(
        [sys.executable, __file__, "--page-child", str(config_dir), str(per_page)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        raise SystemExit(f"page child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
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


PARSE_TARGET_S = 10.0  # the fleet's total (sum of per-file durations, as the DAG processor parses them)
FILE_TARGET_S = 1.0  # the largest single file
PAGE_TARGET_S = 1.0  # the fleet page at N models


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--parse-child":
        parse_child(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) == 6 and sys.argv[1] == "--processor-child":
        processor_child(*sys.argv[2:6])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "--cold-child":
        cold_child(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "--page-child":
        page_child(sys.argv[2], int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=100, help="model configs to parse (default 100)")
    ap.add_argument(
        "--layout",
        choices=["files", "single"],
        default="files",
        help="files: one generated DAG file per model (retrain dags sync, default); "
        "single: every model from dags/retrain_dags.py (the layout before)",
    )
    ap.add_argument(
        "--monitor-models",
        type=int,
        default=0,
        help="models whose monitor runs on the Celery workers (default 0 = skip; e.g. 8, a few minutes)",
    )
    ap.add_argument(
        "--processes", type=int, default=2, help="DAG processor parsing processes (default 2, Airflow's default)"
    )
    ap.add_argument("--workers", type=int, default=2, help="Celery workers K (default 2)")
    ap.add_argument("--concurrency", type=int, default=1, help="task slots per worker (default 1)")
    ap.add_argument("--no-page", action="store_true", help="skip the fleet page part (registering N models)")
    ap.add_argument("--per-page", type=int, default=50, help="models per fleet page (default 50)")
    ap.add_argument(
        "--page-code",
        help="also measure the fleet page with another version's code: a directory holding its "
        "retrain_lib/ and plugins/ (e.g. from `git archive HEAD retrain_lib plugins`)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="fleet_bench_"))
    try:
        parse = measure_parse(args.models, root, args.layout, args.processes)
        result = {"models": args.models, "layout": args.layout, "files": parse["files"], "dags": parse["dags"]}
        proc, pre = parse.get("processor_airflow"), parse.get("processor_factory")
        if proc:  # as the DAG processor parses them: the targets apply to these
            result.update(
                parse_s=proc["parse_s"],
                parse_s_is="sum of per-file durations, each file parsed and serialized in its own forked process "
                "as Airflow's DAG processor does (_parse_file); the target applies to it",
                parse_wall_s=proc["wall_s"],
                parse_processes=args.processes,
                largest_file_parse_s=proc["largest_file_s"],
                median_file_parse_s=proc["median_file_s"],
                parse_s_factory_preimported=pre["parse_s"],
                parse_wall_s_factory_preimported=pre["wall_s"],
                largest_file_parse_s_factory_preimported=pre["largest_file_s"],
                median_file_parse_s_factory_preimported=pre["median_file_s"],
            )
        result.update(
            inprocess_parse_s=parse["parse_s"],
            inprocess_parse_s_is="sum of dagbag_stats durations of one DagBag over the folder in one process "
            "(no serialization; every later file finds the plugin package imported)",
            inprocess_largest_file_parse_s=parse["largest_file_parse_s"],
            inprocess_median_file_parse_s=parse["median_file_parse_s"],
            cold_file_parse_s=parse.get("cold_file_parse_s"),
            parse_peak_mb=parse["parse_peak_mb"],
            parse_process_peak_mb=parse["process_peak_mb"],
            import_errors=len(parse["import_errors"]),
            parse_target_s=PARSE_TARGET_S,
        )
        total = result.get("parse_s", parse["parse_s"])
        largest = result.get("largest_file_parse_s", parse["largest_file_parse_s"]) or 0
        result["parse_ok"] = not parse["import_errors"] and total < PARSE_TARGET_S
        result["largest_file_ok"] = largest < FILE_TARGET_S
        print(
            f"parse: {args.models} models -> {parse['dags']} DAGs from {parse['files']} files in {total} s",
            file=sys.stderr,
        )
        if not args.no_page:
            page = measure_fleet_page(args.models, root, args.per_page)
            result.update(page)
            result["fleet_page_ok"] = result["fleet_page_s"] < PAGE_TARGET_S
            if args.page_code:
                before = measure_fleet_page(args.models, root, args.per_page, code=args.page_code)
                result["before"] = {k: v for k, v in before.items() if k != "register_s"}
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
