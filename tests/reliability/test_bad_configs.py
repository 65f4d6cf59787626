"""A corpus of malformed and malicious model configs (``corpus.py``): each is rejected with
exit 2 and a message naming its file and field, none runs code, and the valid models' DAGs
still load beside all of them."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import corpus
import pytest

from retrain_lib.cli.app import main
from retrain_lib.core.errors import EXIT_BAD_INPUT

REPO = Path(__file__).resolve().parents[2]
CASES = corpus.cases()


def test_the_corpus_has_at_least_40_distinct_cases():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.fixture(autouse=True)
def no_marker():
    Path(corpus.MARKER).unlink(missing_ok=True)
    yield
    assert not Path(corpus.MARKER).exists(), "a config ran code"


@pytest.mark.parametrize(("name", "field", "content"), CASES, ids=[c[0] for c in CASES])
def test_each_bad_config_is_rejected_with_its_file_and_field(tmp_path, capsys, name, field, content):
    cfg_dir = tmp_path / "configs"
    (cfg_dir / "models").mkdir(parents=True)
    shutil.copy(REPO / "configs" / "platform.yaml", cfg_dir / "platform.yaml")
    path = cfg_dir / "models" / f"{name}.yaml"
    path.write_bytes(content)
    before = set(sys.modules)
    code = main(["--config-dir", str(cfg_dir), "config", "validate", str(path)])
    out, err = capsys.readouterr()
    text = out + err
    assert code == EXIT_BAD_INPUT, text
    problem = next((line for line in text.splitlines() if str(path) in line), None)
    assert problem is not None, f"no line names {path}:\n{text}"
    assert f": {field}" in problem or f": {field}." in problem or f": {field}[" in problem, problem
    assert "Traceback" not in text
    # validating imports nothing a config names
    assert not {"subprocess", "sklearnx"} & (set(sys.modules) - before)


def test_the_valid_models_still_load_beside_the_whole_corpus(tmp_path, monkeypatch, caplog):
    from airflow.dag_processing.dagbag import DagBag

    cfg_dir = tmp_path / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    written = corpus.write(cfg_dir / "models")
    monkeypatch.setenv("RETRAIN_CONFIG_DIR", str(cfg_dir))
    monkeypatch.setenv("RETRAIN_STRICT", "0")
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {
        f"{m}__{k}"
        for m in ("credit_default", "daily_demand")
        for k in ("monitor", "retrain", "rollout", "guard", "health_report")
    }
    for path, _ in written:  # each bad file is named in the log with what is wrong
        assert path.name in caplog.text, path.name
    assert not Path(corpus.MARKER).exists()
    assert os.environ["RETRAIN_STRICT"] == "0"
