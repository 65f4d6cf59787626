"""Session-wide isolation: one temporary Airflow home, metadata DB and platform state.

Airflow reads its configuration when first imported, so the environment is set in
``pytest_configure``, before any test module is collected. Nothing is written to the
repository's ``.retrain/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_SESSION_DIR: Path | None = None


def pytest_configure(config):
    global _SESSION_DIR
    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="retrain-tests-"))
    from retrain_demo.demo import airflow_env  # stdlib only: Airflow is not imported yet

    env = airflow_env(_SESSION_DIR)  # the same layout `make demo` uses, under a temp dir
    Path(env["AIRFLOW_HOME"]).mkdir()
    os.environ.update(env)
    os.environ.update({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "GIT_PYTHON_REFRESH": "quiet"})
    os.environ["RETRAIN_CACHE_DIR"] = str(_SESSION_DIR / "cache")  # not the user's ~/.cache/retrain
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("RETRAIN_DATA_ROOT", None)


# The longest test modules, started first so that the pytest-xdist workers (``--dist
# loadfile``) do not end with one of them running alone.
FIRST = ("tests/e2e/test_demo.py", "tests/e2e/test_scheduler.py", "tests/integration/test_triggers.py")


def pytest_collection_modifyitems(config, items):
    """The longest modules first; deprecated Airflow imports and APIs are errors
    (DeprecatedImportWarning, RemovedInAirflow4Warning): the platform uses Airflow 3 idioms only."""
    rank = {path: i for i, path in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(FIRST)))  # stable: order kept within
    ours = r"(retrain_dags|retrain_airflow|retrain_lib|tests|test_\w+)(\..*)?$"
    for item in items:
        for category in (
            "airflow.utils.deprecation_tools.DeprecatedImportWarning",
            "airflow.exceptions.RemovedInAirflow4Warning",
        ):
            item.add_marker(pytest.mark.filterwarnings(f"error::{category}:{ours}"))


def pytest_unconfigure(config):
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    assert _SESSION_DIR is not None
    return _SESSION_DIR


@pytest.fixture(scope="session")
def airflow_db(session_dir) -> Path:
    """A migrated Airflow metadata DB shared by the whole session."""
    airflow = Path(sys.executable).parent / "airflow"
    proc = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy(), timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return session_dir / "airflow" / "airflow.db"


@pytest.fixture
def clear_dag_runs(airflow_db):
    """Forget the DAG runs earlier tests made in the shared metadata DB.

    The monitor triggers one retrain run per logical date; a run left by another test for the
    same model and date would (rightly) be seen as "already requested"."""

    def clear() -> None:
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session

        with create_session() as session:
            for run in session.query(DagRun).all():
                session.delete(run)

    clear()
    return clear
