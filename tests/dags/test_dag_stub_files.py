"""One generated DAG file per model (``retrain dags sync``): the same DAG ids as the factory
file, each model parsed from its own file, a broken or changed config touching only its own
file, stale files removed, and ``dags/retrain_dags.py`` covering the models without a file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = ["credit_default", "daily_demand"]
KINDS = ("monitor", "retrain", "rollout", "guard", "health_report")
HEAVY = ["mlflow", "evidently", "great_expectations", "sklearn", "pandas", "numpy", "scipy", "dvc", "boto3"]


@pytest.fixture
def layout(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """``(config dir, DAGs folder)``: a copy of configs/ and a DAGs folder holding
    ``retrain_dags.py`` and the generated files of the shipped models."""
    from retrain_airflow.dag_files import sync_dag_stubs

    cfg = tmp_path / "configs"
    shutil.copytree(REPO / "configs", cfg)
    dags = tmp_path / "dags"
    dags.mkdir()
    shutil.copy(REPO / "dags" / "retrain_dags.py", dags / "retrain_dags.py")
    sync_dag_stubs(cfg / "models", dags)
    monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(cfg))
    return cfg, dags


def _bag(monkeypatch, dags: Path, strict: bool):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("RETRAIN_STRICT", "1" if strict else "0")
    return DagBag(dag_folder=str(dags))


def _ids(models) -> set[str]:
    return {f"{m}__{kind}" for m in models for kind in KINDS}


def test_each_model_is_parsed_from_its_own_file_with_the_same_dag_ids(monkeypatch, layout):
    cfg, dags = layout
    assert sorted(p.name for p in (dags / "models").iterdir()) == ["credit_default.py", "daily_demand.py"]
    text = (dags / "models" / "credit_default.py").read_text()
    assert len(text.strip().splitlines()) <= 5 and 'build_model_dags_for("credit_default")' in text
    bag = _bag(monkeypatch, dags, strict=True)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == _ids(MODELS)
    for model in MODELS:
        for kind in KINDS:
            assert bag.dags[f"{model}__{kind}"].fileloc == str(dags / "models" / f"{model}.py")
    per_file = {Path(s.file).name: s.dag_num for s in bag.dagbag_stats}
    # the factory file builds nothing when every model has its own file
    assert per_file == {"retrain_dags.py": 0, "credit_default.py": 5, "daily_demand.py": 5}


def test_a_bad_config_breaks_only_its_own_file(monkeypatch, layout):
    cfg, dags = layout
    path = cfg / "models" / "daily_demand.yaml"
    path.write_text(path.read_text().replace("task: regression", "task: regresion"))
    bag = _bag(monkeypatch, dags, strict=True)
    assert list(bag.import_errors) == [str(dags / "models" / "daily_demand.py")]
    assert "daily_demand.yaml" in bag.import_errors[str(dags / "models" / "daily_demand.py")]
    assert set(bag.dag_ids) == _ids(["credit_default"])


def test_a_bad_config_is_skipped_without_strict_mode(monkeypatch, layout, caplog):
    cfg, dags = layout
    (cfg / "models" / "credit_default.yaml").write_text("name: [unclosed\n")
    bag = _bag(monkeypatch, dags, strict=False)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == _ids(["daily_demand"])
    assert "credit_default.yaml" in caplog.text


def test_a_model_file_reads_only_its_own_config(monkeypatch, layout):
    """A garbage file for another model is not read by this model's file (strict mode raises
    for any problem it sees), and platform.yaml is validated once for several models."""
    from retrain_airflow import factory

    from retrain_lib.core.errors import ConfigError

    cfg, _ = layout  # a new directory: nothing of it is in the per-process platform cache yet
    (cfg / "models" / "other_model.yaml").write_text("name: [unclosed\n")
    monkeypatch.setenv("RETRAIN_STRICT", "1")
    loads = []
    real = factory.load_platform_config
    monkeypatch.setattr(factory, "load_platform_config", lambda p: loads.append(p) or real(p))
    assert set(factory.build_model_dags_for("credit_default")) == _ids(["credit_default"])
    assert set(factory.build_model_dags_for("daily_demand")) == _ids(["daily_demand"])
    assert loads == [cfg / "platform.yaml"]
    with pytest.raises(ConfigError, match="other_model.yaml"):
        factory.build_model_dags_for("other_model")


def test_sync_rewrites_only_the_file_of_a_changed_config(layout):
    from retrain_airflow.dag_files import sync_dag_stubs

    cfg, dags = layout
    stubs = {m: dags / "models" / f"{m}.py" for m in MODELS}
    before = {m: (p.read_text(), p.stat().st_mtime_ns) for m, p in stubs.items()}
    again = sync_dag_stubs(cfg / "models", dags)
    assert (again.written, sorted(again.unchanged), again.removed) == ((), MODELS, ())
    path = cfg / "models" / "daily_demand.yaml"
    path.write_text(path.read_text() + "\n# a comment changes the content\n")
    changed = sync_dag_stubs(cfg / "models", dags)
    assert changed.written == ("daily_demand",) and changed.unchanged == ("credit_default",)
    assert (stubs["credit_default"].read_text(), stubs["credit_default"].stat().st_mtime_ns) == before["credit_default"]
    assert stubs["daily_demand"].read_text() != before["daily_demand"][0]


def test_sync_removes_stale_files_and_never_touches_others(monkeypatch, layout):
    from retrain_airflow.dag_files import sync_dag_stubs

    cfg, dags = layout
    own = dags / "models" / "hand_written.py"
    own.write_text("# a file of the user's\n")
    (cfg / "models" / "daily_demand.yaml").unlink()
    result = sync_dag_stubs(cfg / "models", dags)
    assert result.removed == ("daily_demand",)
    assert sorted(p.name for p in (dags / "models").iterdir()) == ["credit_default.py", "hand_written.py"]
    bag = _bag(monkeypatch, dags, strict=True)
    assert bag.import_errors == {} and set(bag.dag_ids) == _ids(["credit_default"])


def test_a_config_added_after_the_sync_gets_its_dags_from_the_factory_file(monkeypatch, layout):
    """No stub yet: dags/retrain_dags.py builds it (and only it); a stub whose config is gone
    yields no DAG and no error."""
    cfg, dags = layout
    text = (cfg / "models" / "daily_demand.yaml").read_text().replace("name: daily_demand", "name: new_model")
    (cfg / "models" / "new_model.yaml").write_text(text)
    (cfg / "models" / "credit_default.yaml").unlink()  # its generated file is now stale
    bag = _bag(monkeypatch, dags, strict=True)
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == _ids(["daily_demand", "new_model"])
    assert bag.dags["new_model__monitor"].fileloc == str(dags / "retrain_dags.py")
    assert bag.dags["daily_demand__monitor"].fileloc == str(dags / "models" / "daily_demand.py")


def test_a_model_file_imports_no_heavy_library(layout):
    cfg, dags = layout
    code = (
        "import json, runpy, sys\n"
        f"runpy.run_path({str(dags / 'models' / 'credit_default.py')!r})\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = {**os.environ, "RETRAIN_CONFIG_DIR": str(cfg), "RETRAIN_STRICT": "1"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_dags_sync_command(tmp_path, capsys):
    from retrain_lib.cli.app import main

    cfg = tmp_path / "configs"
    shutil.copytree(REPO / "configs", cfg)
    dags = tmp_path / "airflow-dags"
    assert main(["--config-dir", str(cfg), "dags", "sync", "--dags-dir", str(dags), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["written"] == MODELS and out["stub_dir"] == str(dags / "models")
    assert main(["--config-dir", str(cfg), "dags", "sync", "--dags-dir", str(dags)]) == 0
    assert "0 written, 2 unchanged, 0 removed" in capsys.readouterr().out


def test_tasks_read_the_dag_params_without_a_copy_each_and_the_dag_serializes(layout):
    """The tasks of a model's DAGs carry no copy of the DAG's params (dag_base.model_dag), yet
    the params a task's run resolves (Airflow's own process_params: the DAG's, then the
    task's, then the run's conf) are the DAG's, with the run's conf applied and validated;
    after a serialization round trip too (what the scheduler and the UI read)."""
    from airflow.sdk.definitions.param import process_params
    from airflow.serialization.serialized_objects import DagSerialization
    from retrain_airflow.factory import build_model_dags_for

    for dag in build_model_dags_for("credit_default").values():
        assert dag.params, dag.dag_id
        expected = {k: dag.params[k] for k in dag.params}
        for t in dag.tasks:
            assert not set(t.params) & set(dag.params), (dag.dag_id, t.task_id)
            assert process_params(dag, t, None, suppress_exception=False) == expected, (dag.dag_id, t.task_id)
        again = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        assert {k: again.params[k] for k in again.params} == expected, dag.dag_id
        assert all(not again.get_task(t.task_id).params for t in dag.tasks), dag.dag_id

    dag = build_model_dags_for("credit_default")["credit_default__retrain"]
    task = dag.get_task("train_candidate") if "train_candidate" in dag.task_ids else dag.tasks[-1]
    assert process_params(dag, task, {"deploy_mode": "canary"}, suppress_exception=False)["deploy_mode"] == "canary"
    with pytest.raises(Exception, match="deploy_mode|canary|enum|not one of"):
        process_params(dag, task, {"deploy_mode": "sideways"}, suppress_exception=False)
    # Airflow resolves a run's conf into the Param objects it merged (here the DAG's), as
    # before into the tasks' copies; a run in a worker is a process of its own
    dag = build_model_dags_for("credit_default")["credit_default__retrain"]
    again = DagSerialization.from_dict(DagSerialization.to_dict(dag))
    assert again.params.get_param("deploy_mode").schema == {"enum": ["direct", "shadow", "canary"]}
    assert again.params.get_param("deploy_mode").value == "direct"
