"""How fast a degraded champion is rolled back, in embedded Airflow with a running gateway.

A good champion (v1) serves through the gateway; a deliberately weak model (v2) is then
promoted over it (the injected degradation). The monitor DAG runs with ``dag.test()`` for
the next day whose labels have matured, finds v2 worse than ``previous-champion`` on the
same labels and its ``rollback_champion`` task moves ``champion`` back. Measured:

* ``degradation_to_decision_s``: from the injection to the rollback's ledger entry (the
  monitor run, in embedded Airflow, started right away: in production its cron or an asset
  event starts it);
* ``decision_to_serving_s``: from that ledger entry to the first gateway answer from v1
  (the gateway polls the registry every ``--refresh-s``).

Prints one JSON object on its last line. Target: decision_to_serving_s < 60.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = "credit_default"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refresh-s", type=float, default=2.0, help="gateway registry poll interval")
    ap.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    args = ap.parse_args()

    root = Path(tempfile.mkdtemp(prefix="rollback_bench_"))
    from retrain_demo.demo import airflow_env, migrate_db, quiet_airflow

    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    env = airflow_env(root, REPO)
    env["RETRAIN_CONFIG_DIR"] = str(cfg_dir)
    os.environ.update(env)
    migrate_db(env)
    gateway = None
    try:
        import httpx

        from retrain_lib.core.config import load_model_config
        from retrain_lib.core.settings import load_settings
        from retrain_lib.pipeline.promotion import promote_version
        from retrain_lib.pipeline.retrain_run import retrain_model
        from retrain_lib.serving.process import GatewayProcess
        from retrain_lib.store import registry
        from retrain_lib.store.audit import Ledger
        from retrain_lib.tools.simulate import simulate

        settings = load_settings(cfg_dir)
        cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
        simulate(cfg, settings.data_root, days=45, drift_day=None, drift_kind="none", rows_per_day=400, seed=3)
        assert retrain_model(MODEL, "2026-01-30", settings=settings).outcome == "deployed"
        client = registry.get_client(settings.tracking_uri)
        good = registry.aliases(client, MODEL)["champion"]

        # the weak model, trained like any candidate but with one stump
        from retrain_lib.tools.simulate import register_weak_version

        tags = dict(client.get_model_version(MODEL, good).tags)
        bad = register_weak_version(MODEL, settings, "2026-01-30", run_key="weak", tags=tags)

        gateway = GatewayProcess(MODEL, refresh_s=args.refresh_s, log_path=root / "gateway.log").start()
        url = gateway.url
        import pandas as pd

        rec = pd.read_parquet(settings.data_root / MODEL / "2026-02-10.parquet")[cfg.features.all].head(1)
        record = rec.astype(object).where(rec.notna(), None).to_dict("records")[0]

        def served() -> str:
            r = httpx.post(f"{url}/v1/models/{MODEL}/predict", json={"record": record}, timeout=10)
            return r.json()["predictions"][0]["version"]

        # inject the degradation: the weak model becomes champion
        injected = time.time()
        promote_version(
            MODEL,
            bad,
            settings=settings,
            as_of="2026-01-31",
            actor="rollback_bench",
            reason="injected degradation",
            expected_champion=good,
        )
        while served() != bad:  # the gateway serves the degraded model
            time.sleep(0.1)

        from airflow.dag_processing.dagbag import DagBag

        quiet_airflow()
        bag = DagBag(dag_folder=env["AIRFLOW__CORE__DAGS_FOLDER"])
        dag = bag.get_dag(f"{MODEL}__monitor")
        run = dag.test(logical_date=dt.datetime(2026, 2, 12, 6, tzinfo=dt.UTC))
        rollback = [r for r in Ledger.from_settings(settings).records(MODEL) if r["event"] == "rollback"]
        if not rollback:
            raise RuntimeError(f"the monitor did not roll back (run {run.state})")
        decided = dt.datetime.fromisoformat(rollback[-1]["time"]).timestamp()
        while served() != good:
            time.sleep(0.05)
        serving = time.time()
        result = {
            "degradation_to_decision_s": round(decided - injected, 2),
            "decision_to_serving_s": round(serving - decided, 2),
            "refresh_s": args.refresh_s,
            "rolled_back_from": bad,
            "rolled_back_to": good,
            "monitor_run_state": str(run.state),
            "target_decision_to_serving_s": 60,
        }
    finally:
        if gateway is not None:
            gateway.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
