"""MLflow's notes on every logged model stay out of the task logs (issue 20: each training
task's log had "Detected uv project" and "Failed to resolve installed pip version" twice, the
INFO line shown as an error because MLflow writes it to stderr)."""

from __future__ import annotations

import importlib.metadata
import logging

import pytest

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
    mlflow_logger.setLevel(logging.INFO)
    notes = [logging.getLogger(n) for n in MLFLOW_MODEL_NOTE_LOGGERS]
    for lg in notes:  # on the note loggers themselves: whatever their parents' handlers do
        lg.addHandler(handler)
    try:
        assert detect_uv_project() is not None  # what MLflow's log_model asks (its "Detected uv project" note)
        model = LinearRegression().fit([[0.0], [1.0]], [0.0, 1.0])
        mlflow.sklearn.save_model(model, tmp_path / name, pip_requirements=["scikit-learn"])
    finally:
        for lg in notes:
            lg.removeHandler(handler)
        mlflow_logger.setLevel(old_level)
    return [m for m in handler.messages if m[0] in MLFLOW_MODEL_NOTE_LOGGERS]


@pytest.fixture
def fresh_note_loggers():
    """The note loggers saying INFO, as in a task process: an earlier test in the same worker
    may have configured logging (a dictConfig disables the loggers that exist then; levels,
    filters and ``logging.disable`` set elsewhere). Restored afterwards."""
    notes = [logging.getLogger(n) for n in MLFLOW_MODEL_NOTE_LOGGERS]
    saved = [(lg, lg.level, lg.disabled, lg.propagate, list(lg.filters)) for lg in notes]
    disabled_below = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    for lg in notes:
        lg.setLevel(logging.INFO)
        lg.disabled, lg.propagate, lg.filters = False, True, []
    yield
    for lg, level, disabled, propagate, filters in saved:
        lg.setLevel(level)
        lg.disabled, lg.propagate, lg.filters = disabled, propagate, filters
    logging.disable(disabled_below)


def test_mlflow_model_notes_are_quiet_and_the_loggers_restored(tmp_path, monkeypatch, fresh_note_loggers):
    (tmp_path / "uv.lock").write_text("")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    monkeypatch.chdir(tmp_path)
    loud = _notes(tmp_path, "loud")
    assert any("Detected uv project" in text for _, text in loud), (loud, _state())
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


def _state() -> list:
    """How the note loggers stand (for a failure's message)."""
    import mlflow.utils.uv_utils

    return [
        (n, lg.level, lg.disabled, lg.propagate, lg.filters, lg.handlers, lg.getEffectiveLevel())
        for n, lg in ((n, logging.getLogger(n)) for n in MLFLOW_MODEL_NOTE_LOGGERS)
    ] + [("uv_utils._logger is getLogger", mlflow.utils.uv_utils._logger is logging.getLogger("mlflow.utils.uv_utils"))]
