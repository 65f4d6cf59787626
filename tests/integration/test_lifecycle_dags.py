"""The monitor and retrain DAGs run through real Airflow (``dag.test()``) against a real
MLflow store: first champion, a healthy day, a drift that leads to retrain and promotion,
a failed gate and invalid data."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from airflow_runs import task_states, triggered_retrain, xcom_return
from platforms import pin_fixed_policy

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TASK_ONLY_ESTIMATOR = """
from sklearn.linear_model import LogisticRegression


class TaskOnlyClassifier(LogisticRegression):
    pass
"""

REPO = Path(__file__).resolve().parents[2]
START = dt.date(2026, 1, 1)


def day(n: int) -> dt.date:
    return START + dt.timedelta(days=n - 1)


def git_head() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"the tests need the project's git checkout: {proc.stderr}"
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def platform(airflow_db, tmp_path_factory):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:  # runs other modules left in the shared DB
        for run in session.query(DagRun).all():
            session.delete(run)

    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.tools.simulate import simulate

    root = tmp_path_factory.mktemp("platform")
    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    pin_fixed_policy(cfg_dir)  # these tests check the lifecycle's mechanics on the fixed policy
    demand = yaml.safe_load((cfg_dir / "models" / "daily_demand.yaml").read_text())
    demand["gates"] = [{"metric": "r2", "min": 0.999}]  # no model can pass this
    (cfg_dir / "models" / "daily_demand.yaml").write_text(yaml.safe_dump(demand, sort_keys=False))
    # credit_custom: credit_default's data and gates, trained with an estimator whose code only
    # the task process can import (as when the training image has code the serving image lacks)
    (root / "task_code").mkdir()
    (root / "task_code" / "task_only_estimators.py").write_text(TASK_ONLY_ESTIMATOR)
    custom = yaml.safe_load((cfg_dir / "models" / "credit_default.yaml").read_text())
    custom["name"] = "credit_custom"
    custom["training"]["estimator"] = "task_only_estimators.TaskOnlyClassifier"
    custom["training"].pop("params", None)
    (cfg_dir / "models" / "credit_custom.yaml").write_text(yaml.safe_dump(custom, sort_keys=False))
    platform_yaml = yaml.safe_load((cfg_dir / "platform.yaml").read_text())
    platform_yaml["allowed_estimator_prefixes"] = ["sklearn.", "task_only_estimators"]
    (cfg_dir / "platform.yaml").write_text(yaml.safe_dump(platform_yaml, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(root / "task_code"))  # this process only: not in PYTHONPATH
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        mp.setenv("RETRAIN_CONFIG_DIR", str(cfg_dir))
        mp.setenv("RETRAIN_STRICT", "1")
        settings = load_settings(cfg_dir)
        for name, kind, seed in (("credit_default", "covariate", 3), ("daily_demand", "none", 4)):
            cfg = load_model_config(cfg_dir / "models" / f"{name}.yaml")
            simulate(cfg, settings.data_root, days=44, drift_day=40, drift_kind=kind, rows_per_day=800, seed=seed)
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        yield SimpleNamespace(bag=bag, settings=settings, root=root)


def run_monitor(platform, model: str, n: int):
    dag = platform.bag.dags[f"{model}__monitor"]
    run = dag.test(logical_date=dt.datetime.combine(day(n), dt.time(6), tzinfo=dt.UTC))
    return run, task_states(dag.dag_id, run.run_id)


def run_retrain(platform, model: str, conf: dict, logical_date=None):
    dag = platform.bag.dags[f"{model}__retrain"]
    run = dag.test(logical_date=logical_date, run_conf=conf)
    return run, task_states(dag.dag_id, run.run_id)


def client(platform):
    from retrain_lib.store import registry

    return registry.get_client(platform.settings.tracking_uri)


def versions(platform, model: str) -> list:
    return client(platform).search_model_versions(f"name='{model}'")


def assert_xcom_records(dag_id: str, run_id: str, task_ids: list[str]) -> None:
    """What each task of a real run put in XCom decodes to its record, and the record writes
    the same payload back (the XCom shape the fleet page and later tasks read)."""
    from retrain_lib.pipeline import monitor_records, records

    kinds = {
        "check_model": monitor_records.MonitorSummary,
        "snapshot_data": records.Snapshot,
        "train_candidate": records.TrainedRun,
        "evaluate_candidate": records.Evaluation,
        "check_gates": records.GateReport,
        "register_candidate": records.Registered,
        "deploy_candidate": records.DeployOutcome,
        "reject_candidate": records.Rejection,
    }
    for task_id in task_ids:
        payload = xcom_return(dag_id, run_id, task_id)
        assert isinstance(payload, dict), (task_id, payload)
        assert kinds[task_id].from_xcom(payload).to_xcom() == payload, task_id


def guard_run_conf(model: str, run_id: str) -> dict | None:
    """The conf of the ``<model>__guard`` run that run ``run_id`` started, or ``None``."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=f"{model}__guard", run_id=f"guard__{run_id}").one_or_none()
        return None if run is None else dict(run.conf or {})


def test_first_monitor_requests_a_retrain_that_promotes_the_first_champion(platform):
    from retrain_lib.store import registry
    from retrain_lib.store.audit import Ledger

    run, states = run_monitor(platform, "credit_default", 29)
    assert run.state == "success"
    assert states["check_model"] == "success" and states["request_retrain"] == "success"
    assert states["healthy"] == "skipped"
    # the monitor's MLflow run is in the model's monitor experiment, not among its training runs
    mlflow = client(platform)
    monitor_run = mlflow.get_run(xcom_return("credit_default__monitor", run.run_id, "check_model")["mlflow_run_id"])
    assert mlflow.get_experiment(monitor_run.info.experiment_id).name == "retrain/credit_default/monitor"
    triggered = triggered_retrain("credit_default", run.run_id)
    assert triggered is not None, "the monitor did not trigger the retrain DAG"
    logical, conf = triggered
    assert conf["as_of"] == "2026-01-29" and "no champion" in conf["reason"]
    assert_xcom_records("credit_default__monitor", run.run_id, ["check_model"])

    run, states = run_retrain(platform, "credit_default", conf, logical)
    assert run.state == "success", states
    assert states["deploy_candidate"] == "success" and states["reject_candidate"] == "skipped"
    assert states["retrain_rejected"] == states["retrain_no_gain"] == "skipped"
    assert registry.aliases(client(platform), "credit_default") == {"champion": "1"}
    training = mlflow.get_experiment_by_name("retrain/credit_default")
    kinds = {r.data.tags.get("retrain.kind") for r in mlflow.search_runs([training.experiment_id])}
    assert "train" in kinds and "monitor" not in kinds, kinds
    assert_xcom_records(
        "credit_default__retrain",
        run.run_id,
        [
            "snapshot_data",
            "train_candidate",
            "evaluate_candidate",
            "check_gates",
            "register_candidate",
            "deploy_candidate",
        ],
    )
    # a fresh gateway process served the candidate before it was registered: every probe request
    # answered as the evaluated model scores it, and the latency gate judged that served path
    results = {r["kind"]: r for r in xcom_return("credit_default__retrain", run.run_id, "check_gates")["results"]}
    served = results["servable"]
    assert served["passed"], served
    assert served["details"]["loaded"] and served["details"]["answered"] == served["details"]["requests"] == 50
    assert served["details"]["mismatched"] == 0 and served["details"]["max_abs_diff"] <= 1e-6
    assert results["latency"]["details"]["path"] == "served"
    assert results["latency"]["observed"] == served["details"]["p95_ms"] > 0
    v1 = client(platform).get_model_version("credit_default", "1")
    for tag in ("data.fingerprint", "data.start", "data.end", "config.hash", "metric.roc_auc"):
        assert v1.tags.get(tag), tag
    # the code it was trained from: this checkout's HEAD (-dirty while the tree has uncommitted
    # changes) and the hash of its uv.lock (test_image_lineage.py: the same values from the image)
    head = git_head()
    assert v1.tags["git.commit"] in {head, f"{head}-dirty"}, v1.tags["git.commit"]
    assert v1.tags["lock.hash"] == hashlib.sha256((REPO / "uv.lock").read_bytes()).hexdigest()[:16]
    assert v1.tags["data.end"] == "2026-01-29"
    mlflow_run = client(platform).get_run(v1.run_id)
    assert mlflow_run.data.params["estimator"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert 0.7 < mlflow_run.data.metrics["holdout.roc_auc"] <= 1.0
    ledger = Ledger.from_settings(platform.settings)
    records = ledger.records("credit_default")
    assert [r["event"] for r in records] == ["monitor", "gates", "promote"]
    assert (records[-1]["before"], records[-1]["after"]) == (None, "1")  # the champion columns
    assert ledger.verify() == []


def test_retrain_reproduce_rebuilds_the_version_the_dag_registered(platform, capsys):
    """Version 1, registered by the retrain DAG above, retrained by `retrain reproduce` from its
    DVC training set, logged config and seed: every holdout prediction and metric equal."""
    from retrain_lib.cli.app import main

    v1 = client(platform).get_model_version("credit_default", "1")
    capsys.readouterr()  # nothing but the command's JSON below
    code = main(
        ["--config-dir", str(platform.root / "configs"), "reproduce", "credit_default", "1", "--format", "json"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    res = json.loads(out.out)
    assert res["identical"] is True and res["max_abs_prediction_diff"] == 0.0
    assert res["data"] == {"path": v1.tags["dvc.path"], "rev": v1.tags["dvc.rev"], "md5": v1.tags["dvc.md5"]}
    assert res["data"]["path"] == "models/credit_default/training.parquet"
    assert res["metrics"]["recorded"] == res["metrics"]["reproduced"]
    run = client(platform).get_run(v1.run_id)
    assert set(res["metrics"]["logged"]) >= {"roc_auc", "brier"}
    for name, value in res["metrics"]["logged"].items():  # what the DAG's training logged
        assert value == run.data.metrics[f"holdout.{name}"]
        assert res["metrics"]["recorded"][name] == pytest.approx(value, rel=1e-12, abs=1e-12)
    assert res["config_hash"]["recorded"] == res["config_hash"]["logged_config"] == v1.tags["config.hash"]
    assert res["git_commit"]["recorded"] == v1.tags["git.commit"]
    assert res["lock_hash"] == {"recorded": v1.tags["lock.hash"], "current": v1.tags["lock.hash"]}
    assert res["as_of"] == "2026-01-29" and res["warm_start_from"] is None
    # the same split as the DAG's training
    assert res["rows"] == {"train": int(run.data.params["rows.train"]), "holdout": int(run.data.params["rows.holdout"])}


def test_a_healthy_day_makes_no_new_version(platform):
    run, states = run_monitor(platform, "credit_default", 33)
    assert run.state == "success"
    assert states["healthy"] == "success" and states["request_retrain"] == "skipped"
    assert triggered_retrain("credit_default", run.run_id) is None
    assert len(versions(platform, "credit_default")) == 1


def test_drift_leads_to_retrain_gates_and_promotion(platform, capsys):
    from retrain_lib.pipeline.monitor_records import MonitorSummary
    from retrain_lib.store import registry
    from retrain_lib.store.audit import Ledger

    run, states = run_monitor(platform, "credit_default", 42)
    assert states["request_retrain"] == "success", states
    logical, conf = triggered_retrain("credit_default", run.run_id)
    assert "data drift" in conf["reason"]
    monitor_rec = [
        r for r in Ledger.from_settings(platform.settings).records("credit_default") if r["event"] == "monitor"
    ][-1]
    drifted = {t["name"] for t in monitor_rec["details"]["top"] if t["drifted"]}
    assert drifted & {"income", "credit_utilization", "region", "num_late_payments"}
    # the check_model XCom decodes to the decision the ledger recorded
    assert_xcom_records("credit_default__monitor", run.run_id, ["check_model"])
    summary = MonitorSummary.from_xcom(xcom_return("credit_default__monitor", run.run_id, "check_model"))
    assert summary.action == "retrain" and summary.signal("drift").triggered
    assert list(summary.reasons) == monitor_rec["details"]["reasons"]
    assert [s.to_xcom() for s in summary.signals] == monitor_rec["details"]["signals"]

    run, states = run_retrain(platform, "credit_default", conf, logical)
    assert run.state == "success", states
    assert registry.aliases(client(platform), "credit_default") == {"champion": "2", "previous-champion": "1"}
    promote = [r for r in Ledger.from_settings(platform.settings).records("credit_default") if r["event"] == "promote"][
        -1
    ]
    assert {"alias": "champion", "from": "1", "to": "2"} in promote["details"]["moves"]
    assert (promote["before"], promote["after"]) == ("1", "2")
    # the direct deploy starts the post-deploy guard of the new champion
    assert states["guard_needed"] == states["guard_champion"] == "success", states
    assert guard_run_conf("credit_default", run.run_id) == {"version": "2", "as_of": conf["as_of"]}
    assert promote["details"]["champion_metrics"]["roc_auc"] > 0.5  # the champion was scored on the same holdout
    assert_registry_record_and_model_card(platform, run.run_id, capsys)


def assert_registry_record_and_model_card(platform, run_id: str, capsys) -> None:
    """Version 2, registered by the retrain DAG run ``run_id`` after version 1: its registry record
    (tags), its model card artifact (Markdown, HTML, info.json) and `retrain show` of both."""
    import tempfile

    from retrain_lib.cli.app import main
    from retrain_lib.core.config import load_model_config

    cfg = load_model_config(platform.root / "configs" / "models" / "credit_default.yaml")
    mlflow = client(platform)
    v1, v2 = (mlflow.get_model_version("credit_default", v) for v in ("1", "2"))
    # semantic version: v1 is the first; v2 has v1's features and target, trained on another window
    assert v1.tags["version.semantic"] == "1.0.0"
    assert v2.tags["features"] == v1.tags["features"] and v2.tags["features.target"] == cfg.features.target
    assert v2.tags["data.fingerprint"] != v1.tags["data.fingerprint"]
    assert v2.tags["version.semantic"] == "1.1.0", v2.tags["version.semantic_reason"]
    assert v2.tags["registered_by"] == f"credit_default__retrain/{run_id}"
    assert v2.tags["intended_use"] == cfg.intended_use and cfg.intended_use
    assert cfg.approval is None and v2.tags["compliance.status"] == "not required"

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(mlflow.download_artifacts(v2.run_id, "model_card", tmp))
        markdown = (folder / "model_card.md").read_text()
        page = (folder / "model_card.html").read_text()
        info = json.loads((folder / "info.json").read_text())
    assert v2.tags["model_card"] == f"runs:/{v2.run_id}/model_card/model_card.html"
    experiment = mlflow.get_run(v2.run_id).info.experiment_id
    assert (
        v2.tags["model_card.page"]
        == f"#/experiments/{experiment}/runs/{v2.run_id}/artifactPath/model_card/model_card.html"
    )
    for title in ("Intended use", "Retraining triggers and frequency", "Fairness considerations", "Data requirements"):
        assert f"\n## {title}\n" in markdown and f"<h2>{title}</h2>" in page, title
    assert cfg.intended_use in markdown.split("## Intended use", 1)[1].split("\n## ", 1)[0]
    # fairness: the configured gate and the very result the DAG's check_gates computed
    [fair_gate] = [g for g in cfg.gates if g.type == "fairness"]
    assert info["fairness"]["gates"] == [
        {"metric": fair_gate.metric, "by": fair_gate.by, "max_gap": fair_gate.max_gap, "min_rows": fair_gate.min_rows}
    ]
    gate_results = xcom_return("credit_default__retrain", run_id, "check_gates")["results"]
    assert info["fairness"]["results"] == [r for r in gate_results if r["kind"] == "fairness"] != []
    fairness = markdown.split("## Fairness considerations", 1)[1].split("\n## ", 1)[0]
    assert f"| {fair_gate.metric} | {fair_gate.by} | {fair_gate.max_gap:g} | {fair_gate.min_rows} |" in fairness
    assert "No fairness gate" not in fairness
    # data requirements: every column of the config with its role and rules
    columns = {c["column"]: c for c in info["data_requirements"]["columns"]}
    assert list(columns) == [
        cfg.data.id_column,
        cfg.data.timestamp_column,
        *cfg.features.numeric,
        *cfg.features.categorical,
        cfg.features.target,
    ]
    assert columns["income"]["rules"][0] == "not null (at least 95% of rows)"
    assert columns["region"]["role"] == "segment feature" and columns[cfg.features.target]["role"] == "target"
    # retraining: the monitor's schedule and the drift and performance triggers of the config
    assert info["retraining"]["frequency"]["monitor checks"] == cfg.schedule.monitor
    assert info["retraining"]["triggers"][0].startswith(f"Data drift: {cfg.drift.method} on numeric features")
    assert f"live {cfg.performance.metric} on matured labels" in info["retraining"]["triggers"][1]
    assert info["record"] == {
        "semantic_version": "1.1.0",
        "semantic_version_reason": v2.tags["version.semantic_reason"],
        "registered_by": f"credit_default__retrain/{run_id}",
        "compliance_status": "not required",
    }

    cfg_dir = str(platform.root / "configs")
    capsys.readouterr()  # what the DAG runs logged
    code = main(["--config-dir", cfg_dir, "show", "credit_default", "2", "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    with capsys.disabled():
        print("\nretrain show credit_default 2 --format json:\n" + out.out)
    shown = json.loads(out.out)
    assert shown["semantic_version"] == "1.1.0" and shown["aliases"] == ["champion"]
    assert shown["intended_use"] == cfg.intended_use and shown["compliance_status"] == "not required"
    assert shown["registered_by"] == f"credit_default__retrain/{run_id}"
    assert shown["model_card_uri"] == v2.tags["model_card"] and shown["deprecation_target"] is None
    assert shown["lineage"]["run_id"] == v2.run_id
    assert (
        shown["lineage"]["git_commit"] == v2.tags["git.commit"]
        and shown["lineage"]["lock_hash"] == v2.tags["lock.hash"]
    )
    assert shown["lineage"]["data"]["dvc"] == {k: v2.tags[f"dvc.{k}"] for k in ("path", "rev", "md5")}
    assert [(e["event"], e["summary"], e["actor"]) for e in shown["deployment_history"]] == [
        ("promote", "champion: 1 -> 2", f"credit_default__retrain/{run_id}")
    ]
    code = main(["--config-dir", cfg_dir, "show", "credit_default", "1", "--format", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    shown = json.loads(out.out)
    assert shown["aliases"] == ["previous-champion"] and shown["semantic_version"] == "1.0.0"
    assert [e["summary"] for e in shown["deployment_history"]] == [
        "champion: - -> 1",
        "previous-champion: - -> 1; champion: 1 -> 2",  # the moves of v2's promotion, in their order
    ]


def test_a_failed_gate_rejects_the_candidate_and_registers_nothing(platform):
    from retrain_lib.store.audit import Ledger

    run, states = run_retrain(platform, "daily_demand", {"as_of": "2026-02-05", "reason": "test"})
    assert run.state == "success"
    assert states["reject_candidate"] == "success"
    assert states["register_candidate"] == "skipped" and states["deploy_candidate"] == "skipped"
    # the run says so in Airflow: its leaf retrain_rejected ran (and returned the note), retrain_no_gain did not
    assert (states["retrain_rejected"], states["retrain_no_gain"]) == ("success", "skipped"), states
    note = xcom_return("daily_demand__retrain", run.run_id, "retrain_rejected")
    assert note.startswith("rejected: ") and "r2" in note and "< min 0.999" in note, note
    assert_xcom_records("daily_demand__retrain", run.run_id, ["check_gates", "reject_candidate"])
    assert versions(platform, "daily_demand") == []
    reject = [r for r in Ledger.from_settings(platform.settings).records("daily_demand") if r["event"] == "reject"][-1]
    assert any("r2" in f and "< min 0.999" in f for f in reject["details"]["failed"])


def test_invalid_data_stops_the_retrain_before_training(platform):
    run, states = run_retrain(platform, "credit_default", {"as_of": "2025-06-01", "reason": "test"})
    assert run.state == "failed"
    assert states["snapshot_data"] == "failed"
    assert states["train_candidate"] == "upstream_failed"
    assert len(versions(platform, "credit_default")) == 2


def test_retried_steps_create_no_second_run_or_version(platform):
    from retrain_lib.pipeline.evaluation import evaluate_candidate
    from retrain_lib.pipeline.records import GateReport
    from retrain_lib.pipeline.registration import register_candidate
    from retrain_lib.pipeline.snapshot import snapshot_data
    from retrain_lib.pipeline.training_run import train_candidate

    s = platform.settings
    before = len(versions(platform, "credit_default"))  # whatever earlier tests registered
    snap = snapshot_data("credit_default", "2026-02-01", settings=s)
    first = train_candidate("credit_default", snap, settings=s, run_key="retry-test")
    again = train_candidate("credit_default", snap, settings=s, run_key="retry-test")
    assert again.run_id == first.run_id and again.reused is True
    assert again.metrics == pytest.approx(first.metrics)
    evaluation = evaluate_candidate("credit_default", snap, first, settings=s)
    gates = GateReport(passed=True, results=())
    # a model card that cannot be written fails the registration (fail closed); the version is
    # there without a card, and the retry registers nothing new and writes the card
    from retrain_lib.core.errors import RegistryError
    from retrain_lib.pipeline import registration

    def unwritable(info):
        raise OSError("artifact store unreachable")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registration, "build_model_card", unwritable)
        with pytest.raises(
            RegistryError,
            match=r"model card of credit_default version \d+ could not be written "
            r"\(OSError: artifact store unreachable\)",
        ):
            register_candidate("credit_default", snap, first, evaluation, gates, settings=s)
    [carded] = [v for v in versions(platform, "credit_default") if v.run_id == first.run_id]
    assert "model_card" not in carded.tags
    reg1 = register_candidate("credit_default", snap, first, evaluation, gates, settings=s)
    assert reg1.version == str(carded.version)
    assert client(platform).get_model_version("credit_default", reg1.version).tags["model_card"]
    reg2 = register_candidate("credit_default", snap, first, evaluation, gates, settings=s)
    assert reg1.version == reg2.version == str(before + 1)
    assert len(versions(platform, "credit_default")) == before + 1


def test_a_candidate_a_fresh_gateway_cannot_load_is_rejected_by_the_servability_gate(platform, capsys):
    """The estimator's module is importable in the task (training, evaluation and every other
    gate pass) but not in a fresh serving process: the servable gate rejects the candidate and
    nothing is registered."""
    from retrain_lib.store.audit import Ledger

    run, states = run_retrain(platform, "credit_custom", {"as_of": "2026-01-29", "reason": "test"})
    assert run.state == "success", states
    assert states["train_candidate"] == states["check_gates"] == states["reject_candidate"] == "success"
    assert states["register_candidate"] == states["deploy_candidate"] == "skipped", states
    results = xcom_return("credit_custom__retrain", run.run_id, "check_gates")["results"]
    failed = [r for r in results if not r["passed"]]
    assert [r["kind"] for r in failed] == ["servable", "latency"], failed
    assert not failed[0]["details"]["loaded"]
    assert "could not serve" in failed[0]["reason"] and "task_only_estimators" in failed[0]["reason"]
    assert all(r["passed"] for r in results if r["kind"] not in ("servable", "latency"))
    assert versions(platform, "credit_custom") == []
    reject = [r for r in Ledger.from_settings(platform.settings).records("credit_custom") if r["event"] == "reject"][-1]
    assert any("could not serve" in f for f in reject["details"]["failed"])

    # registered by hand anyway, it cannot be made the champion by hand either: `retrain promote`
    # serves it from the registry first, refuses with exit 1 and moves nothing
    from retrain_lib.cli.app import main
    from retrain_lib.store import registry

    trained = xcom_return("credit_custom__retrain", run.run_id, "train_candidate")
    client(platform).create_registered_model("credit_custom")
    mv = client(platform).create_model_version("credit_custom", trained["model_uri"], run_id=trained["run_id"])
    cfg_dir = str(platform.settings.config_dir)
    code = main(["promote", "credit_custom", str(mv.version), "--reason", "by hand", "--config-dir", cfg_dir])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert "not promoted: a fresh gateway process could not serve" in out and "task_only_estimators" in out, out
    assert registry.aliases(client(platform), "credit_custom") == {}
    refused = [r for r in Ledger.from_settings(platform.settings).records("credit_custom")][-1]
    assert refused["event"] == "promote_refused" and refused["details"]["version"] == str(mv.version)
    assert refused["details"]["servable"]["loaded"] is False
