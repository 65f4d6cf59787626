"""Platform-wide settings: the schema of ``configs/platform.yaml`` (MLflow, S3, SQL, database,
DVC, alerts) and its loader.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from retrain_lib.core.config_alerts import Alerts
from retrain_lib.core.config_sections import StrictModel
from retrain_lib.core.config_yaml import validate_file
from retrain_lib.core.errors import ConfigError


class MlflowSettings(StrictModel):
    tracking_uri: str | None = Field(
        default=None, description="Default: a SQLite file under state_dir. Env MLFLOW_TRACKING_URI overrides."
    )
    registry_uri: str | None = None
    experiment_prefix: str = "retrain/"


class S3Settings(StrictModel):
    bucket: str | None = Field(default=None, description="Default bucket of s3 data sources.")
    endpoint_url: str | None = Field(
        default=None,
        description="S3-compatible endpoint (MinIO, ...); env AWS_ENDPOINT_URL also works.",
    )
    region: str | None = None


class SqlSettings(StrictModel):
    url_env: str = Field(
        default="RETRAIN_SQL_URL",
        description="Environment variable holding the SQLAlchemy URL of sql data sources (never the URL itself).",
    )


class DvcSettings(StrictModel):
    """The data registry (see :mod:`retrain_lib.store.lineage`): a git repository of ``.dvc`` files
    plus a DVC remote holding every training set a model was trained on."""

    repo: str | None = Field(
        default=None,
        description="Git repository of the registry. null = <state_dir>/data-registry; relative = to the project root.",
    )
    remote: str | None = Field(
        default=None,
        description=(
            "DVC remote: s3://bucket/prefix (endpoint and region from s3:, credentials from the environment "
            "only) or a local directory. null = <state_dir>/dvc-remote. Env RETRAIN_DVC_REMOTE overrides."
        ),
    )

    @field_validator("remote")
    @classmethod
    def _remote_url(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value
        if not re.fullmatch(r"s3://[a-z0-9][a-z0-9.\-]{1,62}(/[^@\s]*)?", value):
            raise ValueError(
                f"{value!r} is not a DVC remote this platform supports: use s3://bucket/prefix "
                "(credentials come from the environment, never from the URL) or a local directory"
            )
        return value


class DatabaseSettings(StrictModel):
    url_env: str = Field(
        default="RETRAIN_DB_URL",
        description=(
            "Environment variable holding the SQLAlchemy URL of the platform database (decision ledger), "
            "never the URL itself. Unset variable: an embedded SQLite file <state_dir>/platform.db. "
            "postgresql:// URLs use the psycopg 3 driver."
        ),
    )


class PlatformConfig(StrictModel):
    """Platform-wide settings from ``configs/platform.yaml``. Paths are relative to the
    directory holding ``configs/``; environment variables override them."""

    state_dir: str = Field(default=".retrain", description="Env RETRAIN_HOME overrides.")
    data_root: str = Field(default=".retrain/data", description="Env RETRAIN_DATA_ROOT overrides.")
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    allowed_estimator_prefixes: list[str] = Field(default_factory=lambda: ["sklearn."])
    alerts: Alerts = Field(default_factory=Alerts)
    s3: S3Settings = Field(default_factory=S3Settings)
    sql: SqlSettings = Field(default_factory=SqlSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    dvc: DvcSettings = Field(default_factory=DvcSettings)
    airflow_base_url: str = "http://localhost:8080"
    mlflow_ui_url: str = "http://localhost:5000"


def load_platform_config(path: str | os.PathLike | None) -> PlatformConfig:
    """Load ``platform.yaml``; a missing file means the defaults."""
    if path is None or not Path(path).exists():
        return PlatformConfig()
    config, _, problems = validate_file(Path(path), PlatformConfig)
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems), problems)
    return config


def platform_json_schema() -> dict[str, Any]:
    schema = PlatformConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
