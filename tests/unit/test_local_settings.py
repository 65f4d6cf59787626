"""``deploy/airflow_local_settings.py`` (the image's ``$AIRFLOW_HOME/config/``): importing
Airflow imports the DAG factory, so the DAG processor's per-file processes inherit it; a factory
that fails to import never stops Airflow from starting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROBE = (
    "import json, sys, airflow; "
    "print(json.dumps({'factory': 'retrain_airflow.factory' in sys.modules, 'airflow': 'airflow.settings' in sys.modules}))"
)


def _import_airflow(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False", **extra)
    proc = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "stderr": proc.stderr}


def _home(tmp_path: Path, with_settings: bool) -> Path:
    home = tmp_path / ("with" if with_settings else "without")
    (home / "config").mkdir(parents=True)
    if with_settings:
        shutil.copy(REPO / "deploy" / "airflow_local_settings.py", home / "config" / "airflow_local_settings.py")
    return home


def test_importing_airflow_imports_the_dag_factory_only_with_the_local_settings(tmp_path):
    assert _import_airflow(_home(tmp_path, True))["factory"] is True
    assert _import_airflow(_home(tmp_path, False))["factory"] is False


def test_a_factory_that_fails_to_import_does_not_stop_airflow(tmp_path):
    broken = tmp_path / "broken" / "retrain_airflow"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    (broken / "factory.py").write_text("raise RuntimeError('factory broken on purpose')\n")
    got = _import_airflow(_home(tmp_path, True), PYTHONPATH=str(tmp_path / "broken"))
    assert got["airflow"] is True and got["factory"] is False
    assert "could not pre-import retrain_airflow.factory" in got["stderr"]
    assert "factory broken on purpose" in got["stderr"]
