"""Where things are: config directory, state directory, data root, MLflow store.

Resolution order: explicit argument, environment variable, ``configs/platform.yaml``,
built-in default. The platform database (decision ledger) comes from the environment variable
named by ``database.url_env`` in ``platform.yaml`` (default ``RETRAIN_DB_URL``), else an
embedded SQLite file ``<state_dir>/platform.db``. Relative paths in ``platform.yaml`` are
relative to the directory that holds ``configs/`` (the project root). The UI bases that alerts
link to (``airflow_base_url``, ``mlflow_ui_url``) are overridden by ``RETRAIN_AIRFLOW_URL`` and
``RETRAIN_MLFLOW_UI_URL``; the default bucket of S3 data sources (``s3.bucket``) by
``RETRAIN_S3_BUCKET`` (the S3 endpoint already follows ``AWS_ENDPOINT_URL``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from retrain_lib.core.config_platform import PlatformConfig, load_platform_config

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # retrain_lib/core/settings.py -> the repository
# platform.yaml link bases and the environment variables that override them
LINK_ENV = {"airflow_base_url": "RETRAIN_AIRFLOW_URL", "mlflow_ui_url": "RETRAIN_MLFLOW_UI_URL"}


# Environment variables whose values are credentials: masked wherever :func:`redact` runs.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "RETRAIN_GATEWAY_TOKEN")
_SECRET_PATTERNS = (
    (re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/\s@'\"]*):[^@\s/'\"]+@"), r"\1:***@"),  # URL password
    (re.compile(r"/services/[A-Za-z0-9_]+/[A-Za-z0-9_]+/[A-Za-z0-9_]+"), "/services/***"),  # Slack webhook path
    (re.compile(r"\bxox[a-z]-[A-Za-z0-9-]+"), "xox*-***"),  # Slack token
)


def redact(text: object) -> str:
    """``text`` with credentials masked: URL passwords, Slack webhook paths and tokens, and the
    values of :data:`SECRET_ENV`. For messages that may quote a URL or a client's error (logs,
    alerts, exceptions), e.g. ``postgresql://u:***@db/x``."""
    out = str(text)
    for pattern, repl in _SECRET_PATTERNS:
        out = pattern.sub(repl, out)
    for name in SECRET_ENV:
        value = os.environ.get(name) or ""
        if len(value) >= 8:
            out = out.replace(value, "***")
    return out


def default_config_dir() -> Path:
    env = os.environ.get("RETRAIN_CONFIG_DIR")
    if env:
        return Path(env).resolve()
    cwd = Path.cwd() / "configs"
    if (cwd / "models").is_dir():
        return cwd.resolve()
    return PACKAGE_ROOT / "configs"


@dataclass(frozen=True)
class Settings:
    config_dir: Path
    platform: PlatformConfig
    state_dir: Path
    data_root: Path
    tracking_uri: str
    registry_uri: str
    database_url: str = ""  # the platform database (decision ledger); "" = the embedded SQLite file

    def __post_init__(self):
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.state_dir / 'platform.db'}")

    @property
    def models_dir(self) -> Path:
        return self.config_dir / "models"

    @property
    def reports_dir(self) -> Path:
        return self.state_dir / "reports"

    @property
    def ledger_path(self) -> str:
        """Deprecated: the ledger is a table in :attr:`database_url` now (use
        ``audit.Ledger.from_settings``). Kept so ``audit.read_ledger(settings.ledger_path)`` works."""
        return self.database_url

    def experiment_name(self, model: str) -> str:
        return f"{self.platform.mlflow.experiment_prefix}{model}"

    def monitor_experiment_name(self, model: str) -> str:
        """The experiment of the model's monitor runs, apart from its training runs."""
        return f"{self.experiment_name(model)}/monitor"


def load_settings(config_dir: str | os.PathLike | None = None) -> Settings:
    config_dir = Path(config_dir).resolve() if config_dir else default_config_dir()
    platform = load_platform_config(config_dir / "platform.yaml")
    links = {
        field: os.environ[env].strip().rstrip("/")
        for field, env in LINK_ENV.items()
        if (os.environ.get(env) or "").strip()
    }
    if links:  # the UIs alerts and approval requests link to
        platform = platform.model_copy(update=links)
    bucket = (os.environ.get("RETRAIN_S3_BUCKET") or "").strip()
    if bucket:  # one deployment-wide bucket (docker-compose.yaml) without editing platform.yaml
        platform = platform.model_copy(update={"s3": platform.s3.model_copy(update={"bucket": bucket})})
    base = config_dir.parent

    def _path(env: str, value: str) -> Path:
        raw = os.environ.get(env) or value
        p = Path(raw).expanduser()
        return (p if p.is_absolute() else base / p).resolve()

    state_dir = _path("RETRAIN_HOME", platform.state_dir)
    data_root = _path("RETRAIN_DATA_ROOT", platform.data_root)
    if (
        os.environ.get("RETRAIN_HOME")
        and not os.environ.get("RETRAIN_DATA_ROOT")
        and platform.data_root.startswith(platform.state_dir)
    ):
        # The data root lives inside the state directory by default: follow it.
        data_root = (state_dir / Path(platform.data_root).relative_to(platform.state_dir)).resolve()
    tracking = (
        os.environ.get("MLFLOW_TRACKING_URI")
        or platform.mlflow.tracking_uri
        or f"sqlite:///{state_dir / 'mlflow' / 'mlflow.db'}"
    )
    registry = os.environ.get("MLFLOW_REGISTRY_URI") or platform.mlflow.registry_uri or tracking
    database = (os.environ.get(platform.database.url_env) or "").strip()
    return Settings(config_dir, platform, state_dir, data_root, tracking, registry, database)
