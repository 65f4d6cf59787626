"""MLflow's notes on every logged model stay out of the task logs (issue 20: each training
task's log had "Detected uv project" and "Failed to resolve installed pip version" twice, the
INFO line shown as an error because MLflow writes it to stderr)."""

from __future__ import annotations

import importlib.metadata
import logging

from retrain_lib.store.model_context import MLFLOW_MODEL_NOTE_LOGGERS, quiet_mlflow_model_notes


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.messages: list[tuple[str, str]] = []

    def emit(self, record):
        self.messages.append((record.name, record.getMessage()))


def _notes(tmp_path, name: str) -> list[tuple[str, str]]:
    """What MLflow's loggers say while a model is saved from a uv project's directory."""
    import mlflow.sklearn
    from mlflow.utils.uv_utils import detect_uv_project
    from sklearn.linear_model import LinearRegression

    handler, mlflow_logger = _Records(), logging.getLogger("mlflow")
    old_level = mlflow_logger.level
    mlflow_logger.addHandler(handler)
    mlflow_logger.setLevel(logging.INFO)
    # an earlier test in the same process may have configured logging (Airflow's dictConfig
    # disables the loggers that exist then): the note loggers as a fresh process has them
    notes = [logging.getLogger(n) for n in MLFLOW_MODEL_NOTE_LOGGERS]
    saved = [(lg, lg.disabled, lg.propagate) for lg in notes]
    for lg in notes:
        lg.disabled, lg.propagate = False, True
    try:
        assert detect_uv_project() is not None  # what MLflow's log_model asks (its "Detected uv project" note)
        model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
        mlflow.sklearn.save_model(model, tmp_path / name, pip_requirements=["scikit-learn"])
    finally:
        mlflow_logger.removeHandler(handler)
        mlflow_logger.setLevel(old_level)
        for lg, disabled, propagate in saved:
            lg.disabled, lg.propagate = disabled, propagate
    return [m for m in handler.messages if m[0] in MLFLOW_MODEL_NOTE_LOGGERS]


def test_mlflow_model_notes_are_quiet_and_the_loggers_restored(tmp_path, monkeypatch):
    (tmp_path / "uv.lock").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    monkeypatch.chdir(tmp_path)
    loud = _notes(tmp_path, "loud")
    assert any("Detected uv project" in text for _, text in loud), loud
    if not _has_pip():  # a uv venv, like the platform's: MLflow notes that pip has no version
        assert any("Failed to resolve installed pip version" in text for _, text in loud), loud
    levels = [logging.getLogger(n).level for n in MLFLOW_MODEL_NOTE_LOGGERS]
    with quiet_mlflow_model_notes():
        assert _notes(tmp_path, "quiet") == []
        assert logging.getLogger("mlflow.utils.environment").isEnabledFor(logging.ERROR)  # errors still show
    assert [logging.getLogger(n).level for n in MLFLOW_MODEL_NOTE_LOGGERS] == levels


def _has_pip() -> bool:
    try:
        importlib.metadata.version("pip")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True
