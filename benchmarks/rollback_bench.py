"""How fast the post-deploy guard rolls a degraded champion back, and how often it rolls back
one that is as good as the champion, in embedded Airflow with a running gateway.

A good champion serves ``credit_default`` through the gateway under steady traffic
(``--rate`` requests a second, one record each, labels posted back ``--label-delay-s`` after
the answer). Two measurements, in one run:

* **degradation**: a deliberately weak model (one stump) is promoted by hand over it. The
  guard DAG (``<model>__guard``) runs with ``dag.test()`` with the config's guard defaults
  (``interval_s`` 30, ``min_labels`` 100, ``alpha`` 0.01, 120 minutes) and rolls it back.
  ``degradation_to_decision_s``: from the first request the weak model answered (prediction
  log) to the rollback's ledger entry; ``decision_to_serving_s``: from that entry to the first
  gateway answer from the good model again (the gateway polls the registry every
  ``--refresh-s``).
* **false rollbacks**: ``--promotions`` versions trained with the config's own params on
  windows ending on different days (as good as the champion, with predictions of their own)
  are promoted one after the other, each guarded for ``--clean-minutes``;
  ``false_rollbacks`` counts the guards that rolled one back.

Before the guard, a degraded champion was rolled back at the next monitor run (daily in the
shipped configs): the ``monitor_schedule`` in the output is that bound.

Prints one JSON object on its last line. Targets: degradation_to_decision_s < 120,
decision_to_serving_s < 5, false_rollbacks 0.
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


def _args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refresh-s", type=float, default=1.0, help="gateway registry poll interval (s)")
    ap.add_argument("--rate", type=float, default=20.0, help="requests a second (one record each)")
    ap.add_argument("--label-delay-s", type=float, default=3.0, help="seconds from an answer to its label")
    ap.add_argument("--promotions", type=int, default=10, help="as-good versions promoted for false rollbacks")
    ap.add_argument("--clean-minutes", type=float, default=2.0, help="guard length of each as-good promotion")
    ap.add_argument("--keep", action="store_true", help="keep the temporary state directory")
    return ap.parse_args(argv)


def _guard(bag, settings, version: str, day: str, **conf):
    """One guard run (``dag.test()``) of ``version``; its ``guard_end`` and ``rollback`` records."""
    from retrain_lib.store.audit import Ledger

    ledger = Ledger.from_settings(settings)
    seen = len(ledger.records(MODEL))
    run = bag.get_dag(f"{MODEL}__guard").test(
        logical_date=dt.datetime.now(dt.UTC), run_conf={"as_of": day, "version": version, **conf}
    )
    new = ledger.records(MODEL)[seen:]
    end = next((r for r in new if r["event"] == "guard_end"), None)
    if str(run.state) != "success" or end is None:
        raise RuntimeError(f"guard run of v{version} ended {run.state} without a guard_end record")
    return end, next((r for r in new if r["event"] == "rollback"), None)


def main(argv=None) -> int:
    args = _args(argv)
    root = Path(tempfile.mkdtemp(prefix="rollback_bench_"))
    from retrain_demo.demo import airflow_env, migrate_db, quiet_airflow

    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    (cfg_dir / "models" / "daily_demand.yaml").unlink()
    env = airflow_env(root, REPO)
    env["RETRAIN_CONFIG_DIR"] = str(cfg_dir)
    os.environ.update(env)
    migrate_db(env)
    gateway = traffic = None
    try:
        from retrain_lib.core.config import load_model_config
        from retrain_lib.core.settings import load_settings
        from retrain_lib.pipeline.promotion import promote_version
        from retrain_lib.pipeline.retrain_run import retrain_model
        from retrain_lib.serving.predlog_read import read_predictions
        from retrain_lib.serving.predlog_store import resolve_url
        from retrain_lib.serving.process import GatewayProcess
        from retrain_lib.serving.replay import LiveTraffic, labelled_records
        from retrain_lib.store import registry
        from retrain_lib.tools.simulate import register_weak_version, simulate

        settings = load_settings(cfg_dir)
        cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
        simulate(cfg, settings.data_root, days=45, drift_day=None, drift_kind="none", rows_per_day=400, seed=3)
        assert retrain_model(MODEL, "2026-01-30", settings=settings).outcome == "deployed"
        client = registry.get_client(settings.tracking_uri)
        good = registry.aliases(client, MODEL)["champion"]
        tags = dict(client.get_model_version(MODEL, good).tags)
        bad = register_weak_version(MODEL, settings, "2026-01-30", run_key="weak", tags=tags)
        peers = [
            register_weak_version(
                MODEL,
                settings,
                f"2026-02-{i + 1:02d}",
                run_key=f"peer-{i}",
                params=dict(cfg.training.params),
                tags=tags,
            )
            for i in range(args.promotions)
        ]

        from airflow.dag_processing.dagbag import DagBag

        quiet_airflow()
        bag = DagBag(dag_folder=env["AIRFLOW__CORE__DAGS_FOLDER"])
        if bag.import_errors:
            raise RuntimeError(f"DAG import errors: {bag.import_errors}")

        env_gw = {**os.environ}
        env_gw.pop("RETRAIN_PREDICTIONS_URL", None)
        gateway = GatewayProcess(MODEL, refresh_s=args.refresh_s, env=env_gw, log_path=root / "gateway.log").start()
        records = labelled_records(cfg, settings.data_root, (dt.date(2026, 2, 1), dt.date(2026, 2, 14)))
        traffic = LiveTraffic(
            gateway.url, MODEL, records, batch=1, label_delay_s=args.label_delay_s, rate_per_s=args.rate
        ).start()

        def promote(version: str, why: str) -> None:
            promote_version(MODEL, version, settings=settings, as_of="2026-02-15", actor="rollback_bench", reason=why)
            gateway.wait_serving(MODEL, version, 30)

        # 1. the degraded champion
        promote(bad, "injected degradation")
        end, rollback = _guard(bag, settings, bad, "2026-02-15")
        if rollback is None:
            raise RuntimeError(f"the guard did not roll v{bad} back: {end['reason']}")
        decided = dt.datetime.fromisoformat(rollback["time"])
        decided = decided if decided.tzinfo else decided.replace(tzinfo=dt.UTC)
        gateway.wait_serving(MODEL, rollback["after"], 30)
        serving = dt.datetime.now(dt.UTC)
        log = read_predictions(resolve_url(settings, None), MODEL, "2026-01-01", arm="champion")
        first_bad = log[log["version"] == bad]["created_at"].min().to_pydatetime()
        first_bad = first_bad if first_bad.tzinfo else first_bad.replace(tzinfo=dt.UTC)
        served_good = log[(log["version"] == rollback["after"]) & (log["created_at"] > decided)]
        if not served_good.empty:
            back = served_good["created_at"].min().to_pydatetime()
            serving = back if back.tzinfo else back.replace(tzinfo=dt.UTC)

        # 2. as-good versions, each guarded for --clean-minutes
        outcomes = []
        for peer in peers:
            promote(peer, "as good as the champion")
            t0 = time.monotonic()
            end, rolled = _guard(bag, settings, peer, "2026-02-15", minutes=args.clean_minutes)
            outcomes.append(
                {
                    "version": peer,
                    "action": end["details"]["action"],
                    "labelled": end["details"]["facts"].get("labelled"),
                    "champion_loss": end["details"]["facts"].get("champion_loss"),
                    "previous_loss": end["details"]["facts"].get("previous_loss"),
                    "guard_s": round(time.monotonic() - t0, 1),
                }
            )
            print(json.dumps(outcomes[-1]), file=sys.stderr)
        result = {
            "degradation_to_decision_s": round((decided - first_bad).total_seconds(), 1),
            "decision_to_serving_s": round((serving - decided).total_seconds(), 2),
            "rollback": {k: rollback[k] for k in ("before", "after", "reason")},
            "guard": {"interval_s": cfg.guard.interval_s, "min_labels": cfg.guard.min_labels, "alpha": cfg.guard.alpha},
            "false_rollbacks": sum(o["action"] == "rollback" for o in outcomes),
            "as_good_promotions": len(outcomes),
            "clean_guards": sum(o["action"] == "clean" for o in outcomes),
            "clean_minutes": args.clean_minutes,
            "rate_per_s": args.rate,
            "label_delay_s": args.label_delay_s,
            "refresh_s": args.refresh_s,
            "requests_answered": traffic.sent,
            "requests_failed": sum(traffic.failed.values()),
            "monitor_schedule": cfg.schedule.monitor,
            "targets": {"degradation_to_decision_s": 120, "decision_to_serving_s": 5, "false_rollbacks": 0},
        }
    finally:
        if traffic is not None:
            traffic.stop()
        if gateway is not None:
            gateway.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
