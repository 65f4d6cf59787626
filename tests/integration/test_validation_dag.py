"""Data validation and drift reports through real Airflow runs (``dag.test()``) and a real
MLflow store: a batch that breaks the shipped expectations stops the retrain at
``snapshot_data`` and is quarantined; the monitor records the same failure, carries on and
logs the Evidently drift report."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from airflow_runs import task_states
from platforms import pin_fixed_policy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
BAD_DAY = dt.date(2026, 1, 30)
AS_OF = dt.date(2026, 1, 31)  # a day no other integration module runs the credit monitor for


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def platform(airflow_db, tmp_path_factory):
    import pandas as pd
    from airflow.dag_processing.dagbag import DagBag

    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.simulate import simulate

    root = tmp_path_factory.mktemp("validation")
    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    pin_fixed_policy(cfg_dir)  # these tests check the lifecycle's mechanics on the fixed policy
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        mp.setenv("RETRAIN_CONFIG_DIR", str(cfg_dir))
        mp.setenv("RETRAIN_STRICT", "1")
        # mlflow.set_tracking_uri() exports MLFLOW_TRACKING_URI: an earlier module's store would win.
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            # setenv first records the value before, or that there was none: delenv alone records
            # nothing for an unset name, and a value exported during the module would stay.
            mp.setenv(name, "")
            mp.delenv(name)
        settings = load_settings(cfg_dir)
        cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
        simulate(cfg, settings.data_root, days=31, rows_per_day=400, seed=8)
        bad = settings.data_root / cfg.data.path / f"{BAD_DAY}.parquet"
        part = pd.read_parquet(bad)
        part.loc[:19, "income"] = -5.0  # broken upstream unit conversion
        part.loc[25, "region"] = "atlantis"
        part.to_parquet(bad, index=False)
        sources = {p: _sha(p) for p in settings.data_root.rglob("*.parquet")}
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        yield SimpleNamespace(
            bag=bag,
            settings=settings,
            cfg=cfg,
            bad=bad,
            sources=sources,
            broken={
                "income": int((part["income"] < 0).sum()),
                "region": int((~part["region"].isin(["north", "south", "east", "west"])).sum()),
            },
        )


def _client(platform):
    from retrain_lib.store import registry

    return registry.get_client(platform.settings.tracking_uri, platform.settings.registry_uri)


def _runs(platform, kind: str):
    client = _client(platform)
    exp = client.get_experiment_by_name(platform.settings.experiment_name(MODEL))
    assert exp is not None
    return client.search_runs([exp.experiment_id], filter_string=f"tags.`retrain.kind` = '{kind}'")


def test_a_batch_that_breaks_an_expectation_stops_the_retrain_and_is_quarantined(platform):
    from retrain_lib.pipeline.snapshot import training_window
    from retrain_lib.store.audit import Ledger
    from retrain_lib.store.data import load_window

    dag = platform.bag.dags[f"{MODEL}__retrain"]
    run = dag.test(run_conf={"as_of": AS_OF.isoformat(), "reason": "test"})
    states = task_states(dag.dag_id, run.run_id)
    assert run.state == "failed"
    assert states["snapshot_data"] == "failed"
    assert states["train_candidate"] == "upstream_failed"
    assert _client(platform).search_model_versions(f"name='{MODEL}'") == []
    assert _runs(platform, "train") == []

    # The sources are untouched; the quarantine holds a copy of every file of the window.
    assert {p: _sha(p) for p in platform.settings.data_root.rglob("*.parquet")} == platform.sources
    start, end = training_window(platform.cfg, AS_OF)
    window = load_window(platform.cfg, platform.settings, start, end, as_of=AS_OF)
    quarantine = platform.settings.state_dir / "quarantine" / MODEL / AS_OF.isoformat()
    root = platform.settings.data_root.resolve()
    for f in window.files:
        copy = quarantine / Path(f).resolve().relative_to(root)
        assert _sha(copy) == platform.sources[Path(f)], copy
    manifest = json.loads((quarantine / "manifest.json").read_text())
    assert manifest["fingerprint"] == window.fingerprint
    assert manifest["actor"].startswith(f"{MODEL}__retrain/")
    failed = {(f["check"], f["column"]): f for f in manifest["failed"]}
    assert set(failed) == {("between", "income"), ("in_set", "region")}
    assert failed[("between", "income")]["unexpected_count"] == platform.broken["income"] == 20
    assert failed[("in_set", "region")]["unexpected_count"] == platform.broken["region"] == 1
    assert failed[("in_set", "region")]["partial_unexpected_list"] == ["atlantis"]
    assert failed[("in_set", "region")]["rows"][0]["region"] == "atlantis"
    assert all(r["income"] == -5.0 for r in failed[("between", "income")]["rows"])

    # MLflow has the validation run, with the report.
    [vrun] = _runs(platform, "validation")
    assert vrun.data.tags["validation.success"] == "false"
    assert vrun.data.tags["data.fingerprint"] == window.fingerprint
    assert vrun.data.tags["validation.quarantine"] == str(quarantine)
    assert vrun.data.metrics["failed_expectations"] == 2
    client = _client(platform)
    names = {a.path for a in client.list_artifacts(vrun.info.run_id, "validation")}
    assert names == {"validation/report.json", "validation/manifest.json"}
    report = json.loads(Path(client.download_artifacts(vrun.info.run_id, "validation/report.json")).read_text())
    assert report["failed_expectations"] == 2 and report["quarantine"] == str(quarantine)
    assert any(
        line.startswith("income: expect_column_values_to_be_between(min=0, max=10000000): 20 rows")
        for line in report["failed"]
    )

    [rec] = [
        r for r in Ledger.from_settings(platform.settings).records(MODEL) if r["event"] == "data_validation_failed"
    ]
    assert rec["details"]["mlflow_run_id"] == vrun.info.run_id
    assert rec["details"]["quarantine"] == str(quarantine)
    assert any("'atlantis'" in p for p in rec["details"]["problems"])


def test_the_monitor_records_the_failure_carries_on_and_logs_the_drift_report(platform):
    from retrain_lib.store.audit import Ledger

    dag = platform.bag.dags[f"{MODEL}__monitor"]
    run = dag.test(logical_date=dt.datetime.combine(AS_OF, dt.time(6), tzinfo=dt.UTC))
    states = task_states(dag.dag_id, run.run_id)
    assert run.state == "success", states
    assert states["check_model"] == "success"
    assert states["request_retrain"] == "success"  # no champion yet: the decision is still made

    rec = [r for r in Ledger.from_settings(platform.settings).records(MODEL) if r["event"] == "monitor"][-1]
    validation = rec["details"]["validation"]
    assert validation["success"] is False and validation["failed_expectations"] == 2
    assert any(line.startswith("region: expect_column_values_to_be_in_set") for line in validation["failed"])
    html = Path(rec["details"]["drift_report"])
    assert html.name == "drift_report.html" and html.parent == Path(rec["details"]["report"]).parent
    text = html.read_text()
    assert all(f'"column_name": "{f}"' in text for f in platform.cfg.features.all)

    client = _client(platform)
    mrun = client.get_run(rec["details"]["mlflow_run_id"])
    assert mrun.data.tags["retrain.kind"] == "monitor" and mrun.data.tags["retrain.validation"] == "failed"
    assert mrun.data.metrics["validation.failed_expectations"] == 2
    assert any(k.startswith("drift.income.") for k in mrun.data.metrics)  # the per-feature scores stay
    names = {a.path for a in client.list_artifacts(mrun.info.run_id, "monitor")}
    assert {"monitor/drift_report.html", "monitor/monitor.json", "monitor/validation.json"} <= names
    # the report is stored once: the reports directory's file is the MLflow artifact (a hard link)
    from urllib.parse import urlparse

    logged = Path(urlparse(mrun.info.artifact_uri).path) / "monitor" / "drift_report.html"
    assert os.path.samefile(logged, html) and html.stat().st_nlink == 2
    # in the model's monitor experiment, apart from its training runs
    assert client.get_experiment(mrun.info.experiment_id).name == f"retrain/{MODEL}/monitor"
    logged = Path(client.download_artifacts(mrun.info.run_id, "monitor/drift_report.html"))
    assert logged.read_bytes() == html.read_bytes()
