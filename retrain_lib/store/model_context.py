"""A model's context for the lifecycle steps: its config with the platform settings, lazy
MLflow handles (client, experiments, champion), its ledger, and the models it loaded once."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Any, Protocol

from retrain_lib.core.config import ModelConfig, load_model_config
from retrain_lib.core.settings import Settings, load_settings
from retrain_lib.store import audit, registry


class ModelContextLike(Protocol):
    """What the monitor's facts, the snapshot's rows and the gate inputs read of a context:
    :class:`ModelContext`, or the backtest's ``ReplayContext`` (no registry, no MLflow)."""

    cfg: ModelConfig
    settings: Any  # Settings, or what load_window reads of one
    models: dict[str, Any]

    @property
    def name(self) -> str: ...

    @property
    def client(self) -> Any: ...

    def mlflow(self) -> Any: ...


class ModelContext:
    """A model's config with the platform settings and lazy MLflow handles."""

    def __init__(self, model: str, settings: Settings | None = None):
        self.settings = settings or load_settings()
        path = self.settings.models_dir / f"{model}.yaml"
        self.config_path = path
        self.cfg: ModelConfig = load_model_config(path, self.settings.platform)
        self._client = None
        self.models: dict[str, Any] = {}  # loaded models by URI, see load_model()

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def client(self):
        if self._client is None:
            # Some MLflow calls (registering a 'models:/m-...' source) open a default client
            # through the global tracking URI: point it at this platform's store as well.
            self.mlflow()
            self._client = registry.get_client(self.settings.tracking_uri, self.settings.registry_uri)
        return self._client

    def mlflow(self):
        """The ``mlflow`` module pointed at this platform's store, with the model's experiment."""
        import mlflow
        import mlflow.sklearn  # noqa: F401 - the flavour the platform logs and loads

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        # set_*_uri also export MLFLOW_*_URI, which load_settings() reads as an override: keep
        # the environment as it was, so the next model's settings are not this model's store.
        saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
        mlflow.set_tracking_uri(self.settings.tracking_uri)
        mlflow.set_registry_uri(self.settings.registry_uri)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        return mlflow

    def experiment_id(self, *, monitor: bool = False) -> str:
        """The model's MLflow experiment (training and validation runs); with ``monitor=True``
        its monitor experiment, so the daily monitor runs do not crowd the training runs."""
        name = (self.settings.monitor_experiment_name if monitor else self.settings.experiment_name)(self.name)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = None
        if self.settings.tracking_uri.startswith("sqlite:"):
            location = (
                self.settings.state_dir / "mlflow" / "artifacts" / self.name / ("monitor" if monitor else "")
            ).as_uri()
        try:
            return self.client.create_experiment(
                name, artifact_location=location, tags={"retrain.model": self.name, "owner": self.cfg.owner}
            )
        except Exception:  # noqa: BLE001 - created concurrently: read it back
            exp = self.client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id

    def champion(self):
        return registry.get_alias_version(self.client, self.name, registry.CHAMPION)

    def ledger(self) -> audit.Ledger:
        return audit.Ledger.from_settings(self.settings)

    def record(self, event: str, as_of: str | None, actor: str, details: dict) -> dict:
        """Append a decision to the ledger; the champion move in ``details['moves']`` fills the
        ``before``/``after`` columns and ``details['reason']`` the ``reason`` column."""
        details = details or {}
        move = (
            next(
                (m for m in details.get("moves") or [] if isinstance(m, dict) and m.get("alias") == registry.CHAMPION),
                None,
            )
            or {}
        )
        return audit.Ledger.from_settings(self.settings).append(
            self.name,
            event,
            as_of=as_of,
            actor=actor,
            before=move.get("from"),
            after=move.get("to"),
            reason=str(details.get("reason") or ""),
            details=details,
        )


@contextlib.contextmanager
def quiet_skops_import():
    """Without the ~1,200 warnings Airflow's deprecated-module shims emit when skops is first
    imported in a task (skops looks up each scipy ufunc in every loaded module): only
    ``FutureWarning`` (Airflow's ``DeprecatedImportWarning``) raised from ``skops.io._utils``
    about an ``airflow.`` attribute."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"The `airflow\.", category=FutureWarning, module=r"skops\.io\._utils"
        )
        yield


# MLflow's notes on every logged model that say nothing about this platform's models
MLFLOW_MODEL_NOTE_LOGGERS = ("mlflow.utils.uv_utils", "mlflow.utils.environment")


@contextlib.contextmanager
def quiet_mlflow_model_notes():
    """Without the two lines MLflow writes for each ``log_model`` (twice per training run: the
    model and the candidate selection's model): "Detected uv project: found uv.lock and
    pyproject.toml" (INFO, written to stderr, which an Airflow task log shows as an error)
    and "Failed to resolve installed pip version" (a uv venv has no pip; the requirements are
    pinned explicitly). Their loggers' errors still show."""
    loggers = [logging.getLogger(name) for name in MLFLOW_MODEL_NOTE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def load_model(ctx: ModelContextLike, uri: str):
    """A model by URI, loaded once per context (a monitor run uses the champion several times)."""
    if uri not in ctx.models:
        with quiet_skops_import():
            ctx.models[uri] = ctx.mlflow().sklearn.load_model(uri)
    return ctx.models[uri]
