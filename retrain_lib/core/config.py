"""Model configuration: the root schema :class:`ModelConfig` and the loader of model files.

A model is described by one YAML file in ``configs/models/``; platform-wide settings live in
``configs/platform.yaml`` (:mod:`retrain_lib.core.config_platform`). Both are read with a
``yaml.SafeLoader`` only (:mod:`retrain_lib.core.config_yaml`) and validated by pydantic models that
forbid unknown keys (the sections live in the ``config_*`` modules). Validation reports *every*
problem of *every* file at once, each with file, line, dotted field path, reason and a fix
(:mod:`retrain_lib.core.config_problems`)::

    configs/models/credit.yaml:14:3: drift.treshold: unknown field; did you mean 'threshold'?

This module is imported by the DAG factory at parse time: it must stay light (pydantic and
PyYAML only), as must every module it imports.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationInfo, model_validator

from retrain_lib.core.config_alerts import Alerts
from retrain_lib.core.config_expectations import Validation
from retrain_lib.core.config_gates import Gate
from retrain_lib.core.config_lifecycle import Lifecycle, lifecycle_problems
from retrain_lib.core.config_platform import PlatformConfig
from retrain_lib.core.config_problems import ConfigProblem, did_you_mean, dotted
from retrain_lib.core.config_release import Approval, Deploy, Guard, Rollback
from retrain_lib.core.config_sections import (
    Adaptation,
    DataSource,
    Features,
    Schedule,
    StrictModel,
    Training,
    Windows,
)
from retrain_lib.core.config_triggers import DriftTrigger, PerformanceTrigger
from retrain_lib.core.config_yaml import read_yaml, validate_file
from retrain_lib.core.errors import ConfigError
from retrain_lib.core.estimators import check_estimator

CLASSIFICATION_METRICS = ("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss", "brier", "ece")
REGRESSION_METRICS = ("rmse", "mae", "r2", "mape")
_NAME_RE = r"^[a-z][a-z0-9_]{0,62}$"


class ModelConfig(StrictModel):
    """One model, as a data engineer describes it in ``configs/models/<name>.yaml``."""

    name: Annotated[str, Field(pattern=_NAME_RE, description="Lower-case identifier; DAG ids derive from it.")]
    owner: str
    description: str = ""
    intended_use: str = Field(
        default="",
        description="What the model is for and who may use its output (model card, registry tag intended_use); "
        "empty = the description.",
    )
    task: Literal["classification", "regression"]
    data: DataSource
    features: Features
    windows: Windows = Field(default_factory=Windows)
    schedule: Schedule = Field(default_factory=Schedule)
    drift: DriftTrigger = Field(default_factory=DriftTrigger)
    performance: PerformanceTrigger | None = None
    training: Training
    gates: list[Gate] = Field(default_factory=list)
    deploy: Deploy = Field(default_factory=Deploy)
    alerts: Alerts = Field(default_factory=Alerts)
    approval: Approval | None = Field(
        default=None,
        description="Ask a human before promoting; omitted = gates alone decide.",
    )
    rollback: Rollback | None = Field(
        default=None,
        description="Roll a degraded new champion back to previous-champion; needs performance.",
    )
    guard: Guard = Field(
        default_factory=Guard,
        description="Watch every new champion live after its promotion (on by default with rollback).",
    )
    validation: Validation | None = Field(
        default=None,
        description="Data expectations; omitted = only the built-in sanity checks.",
    )
    adaptation: Adaptation | None = Field(
        default=None,
        description="Change-aware retraining; omitted = the configured window and holdout only.",
    )
    lifecycle: Lifecycle | None = Field(
        default=None,
        description="Planned retirement: {deprecate_on, notice_days, replacement}; omitted = none planned.",
    )
    tags: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> ModelConfig:
        if info.context and info.context.get("defer_cross_checks"):
            return self  # check_model_file reports them one by one, with their lines
        problems = self.cross_field_problems()
        if problems:
            raise ValueError("; ".join(f"{dotted(loc)}: {reason}" for loc, reason, _ in problems))
        return self

    def cross_field_problems(self) -> list[tuple[tuple, str, str]]:
        """Problems that involve several fields: ``(location, reason, fix)`` each."""
        problems = [*self._metric_problems(), *self._drift_problems(), *lifecycle_problems(self.name, self.lifecycle)]
        for i, name in enumerate(self.features.segments):
            if name not in self.features.categorical:
                problems.append(
                    (
                        ("features", "segments", i),
                        f"segment {name!r} is not a categorical feature",
                        "list it under features.categorical too",
                    )
                )
        if self.task == "regression" and self.training.split.method == "stratified":
            problems.append(
                (("training", "split", "method"), "'stratified' needs a classification task", "use 'time' or 'random'")
            )
        if self.rollback is not None and self.rollback.enabled and self.performance is None:
            problems.append(
                (
                    ("rollback",),
                    "rollback compares live performance and this model has no performance section",
                    "add performance: {metric: ..., max_drop: ...} or remove rollback",
                )
            )
        if self.validation is not None:
            problems += self._validation_problems(self.validation)
        return problems

    def _metric_problems(self) -> list[tuple[tuple, str, str]]:
        """Gate and performance metrics that are not metrics of the task."""
        metrics = self.metrics
        listed = ", ".join(metrics)
        problems: list[tuple[tuple, str, str]] = []
        for i, gate in enumerate(self.gates):
            if gate.metric is not None and gate.metric not in metrics:
                problems.append(
                    (
                        ("gates", i, "metric"),
                        f"{gate.metric!r} is not a {self.task} metric{did_you_mean(gate.metric, metrics)}",
                        f"use one of: {listed}",
                    )
                )
        if self.performance and self.performance.metric not in metrics:
            m = self.performance.metric
            problems.append(
                (
                    ("performance", "metric"),
                    f"{m!r} is not a {self.task} metric{did_you_mean(m, metrics)}",
                    f"use one of: {listed}",
                )
            )
        return problems

    def _drift_problems(self) -> list[tuple[tuple, str, str]]:
        """``drift.features`` and ``drift.exclude`` entries that are not declared features, and
        per-feature methods that do not fit the feature's kind."""
        problems: list[tuple[tuple, str, str]] = []
        features = set(self.features.all)
        declared = ", ".join(self.features.all)
        for name, spec in self.drift.features.items():
            if name not in features:
                problems.append(
                    (
                        ("drift", "features", name),
                        f"{name!r} is not a declared feature{did_you_mean(name, features)}",
                        f"use one of: {declared}",
                    )
                )
            elif spec.method in ("ks", "wasserstein") and name in self.features.categorical:
                problems.append(
                    (
                        ("drift", "features", name, "method"),
                        f"{spec.method!r} needs a numeric feature and {name!r} is categorical",
                        "use psi, js, chi2, linf, unseen or missing_share for a categorical feature",
                    )
                )
            elif spec.method in ("chi2", "linf", "unseen") and name in self.features.numeric:
                problems.append(
                    (
                        ("drift", "features", name, "method"),
                        f"{spec.method!r} needs a categorical feature and {name!r} is numeric",
                        "use psi, ks, js, wasserstein or missing_share for a numeric feature",
                    )
                )
        for i, name in enumerate(self.drift.exclude):
            if name not in features:
                problems.append(
                    (
                        ("drift", "exclude", i),
                        f"{name!r} is not a declared feature{did_you_mean(name, features)}",
                        f"use one of: {declared}",
                    )
                )
        return problems

    @property
    def guard_enabled(self) -> bool:
        """Whether new champions are guarded: ``guard.enabled``, or by default whether the
        model has an enabled ``rollback`` section."""
        if self.guard.enabled is not None:
            return self.guard.enabled
        return self.rollback is not None and self.rollback.enabled

    @property
    def columns(self) -> list[str]:
        """Every column a model's data has: id, timestamp, features, target."""
        return [self.data.id_column, self.data.timestamp_column, *self.features.all, self.features.target]

    def expected_dtypes(self) -> dict[str, str]:
        """Column -> ``numeric``/``string``/``datetime`` the validation expects: derived from
        the features (when ``dtypes_from_features``), then the explicit ``dtypes``."""
        v = self.validation
        if v is None:
            return {}
        out: dict[str, str] = {}
        if v.dtypes_from_features:
            out[self.data.timestamp_column] = "datetime"
            out.update({name: "numeric" for name in self.features.numeric})
        out.update(v.dtypes)
        return out

    def _validation_problems(self, v: Validation) -> list[tuple[tuple, str, str]]:  # noqa: C901 - one check per validation rule kind
        problems: list[tuple[tuple, str, str]] = []
        columns = self.columns
        declared = ", ".join(columns)

        def unknown(loc: tuple, name: str) -> bool:
            if name in columns:
                return False
            problems.append(
                (loc, f"{name!r} is not a declared column{did_you_mean(name, columns)}", f"use one of: {declared}")
            )
            return True

        target, ts = self.features.target, self.data.timestamp_column
        late_labels = bool(self.data.labels_path or self.data.label_delay_days)
        loc: tuple[str | int, ...]
        for i, rule in enumerate(v.not_null):
            loc = ("validation", "not_null", i)
            if not unknown(loc, rule.column) and rule.column == target and late_labels:
                problems.append(
                    (
                        loc,
                        f"the target {target!r} is missing until its label arrives, so not_null on "
                        "it fails for every recent row",
                        "remove it; between or in_set on the target skip missing values",
                    )
                )
        for i, name in enumerate(v.unique):
            unknown(("validation", "unique", i), name)
        for name in v.in_set:
            unknown(("validation", "in_set", name), name)
        for name, kind in v.dtypes.items():
            loc = ("validation", "dtypes", name)
            if unknown(loc, name):
                continue
            if name in self.features.numeric and kind != "numeric":
                problems.append(
                    (
                        loc,
                        f"{name!r} is a numeric feature; dtype {kind!r} contradicts it",
                        "use numeric, or list the feature under features.categorical",
                    )
                )
            elif name == ts and kind != "datetime":
                problems.append(
                    (
                        loc,
                        f"the timestamp column {name!r} is parsed as a datetime when loaded",
                        "use datetime or remove the entry",
                    )
                )
        dtypes = self.expected_dtypes()
        for name in v.between:
            loc = ("validation", "between", name)
            if unknown(loc, name):
                continue
            dtype = dtypes.get(name)
            if name == ts or dtype == "datetime":
                problems.append(
                    (
                        loc,
                        f"between needs a numeric column and {name!r} holds datetimes",
                        "use freshness_hours to check the latest timestamp",
                    )
                )
            elif name in self.features.numeric:
                continue  # a contradicting dtype is reported above
            elif dtype == "string" or (dtype is None and name in (*self.features.categorical, self.data.id_column)):
                problems.append(
                    (
                        loc,
                        f"between needs a numeric column and {name!r} is {'a string' if dtype else 'categorical'}",
                        "use in_set for a categorical column, or declare it under dtypes as numeric",
                    )
                )
        return problems

    # Convenience -------------------------------------------------------------------------
    @property
    def metrics(self) -> tuple[str, ...]:
        return CLASSIFICATION_METRICS if self.task == "classification" else REGRESSION_METRICS

    @property
    def primary_metric(self) -> str:
        if self.performance:
            return self.performance.metric
        for gate in self.gates:
            if gate.metric is not None and gate.type in ("metric", "bootstrap"):
                return gate.metric
        return "roc_auc" if self.task == "classification" else "rmse"

    def dag_id(self, kind: str) -> str:
        return f"{self.name}__{kind}"

    def config_hash(self) -> str:
        """A stable hash of the validated config (key order and comments do not matter). The
        ``lifecycle`` section is left out: planning a retirement changes no model."""
        payload = json.dumps(self.model_dump(mode="json", exclude={"lifecycle"}), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


# -----------------------------------------------------------------------------------------
# Public API
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedConfig:
    """A validated model config and the file it came from."""

    path: Path
    config: ModelConfig


@dataclass
class ConfigSet:
    """All model configs of a directory: the valid ones and the problems of the others."""

    models: dict[str, LoadedConfig]
    problems: list[ConfigProblem]
    platform: PlatformConfig

    @property
    def ok(self) -> bool:
        return not self.problems


def _file_problems(path: Path, data, platform: PlatformConfig) -> list[tuple[tuple, str, str]]:
    """Problems of a model file's raw values (``(location, reason, fix)`` each), found even
    when the schema rejects other fields: ``name`` against the file name, and
    ``training.estimator`` / ``training.params`` looked up in the estimator's source
    (:func:`retrain_lib.core.estimators.check_estimator`: a misspelt class or param gets a "did you
    mean"; nothing is imported, so scikit-learn stays out of DAG parsing)."""
    data = data if isinstance(data, dict) else {}
    found: list[tuple[tuple, str, str]] = []
    name, training = data.get("name"), data.get("training")
    if isinstance(name, str) and name != path.stem:
        found.append(
            (
                ("name",),
                f"model name {name!r} does not match the file name {path.name!r}",
                f"rename the file to {name}.yaml or set name: {path.stem}",
            )
        )
    if isinstance(training, dict) and isinstance(training.get("estimator"), str):
        found += check_estimator(
            training["estimator"],
            training.get("params"),
            platform.allowed_estimator_prefixes,
            recency=training.get("recency") is not None,
            warm_start=training.get("warm_start") is True,
        )
    return found


def check_model_file(path: str | os.PathLike, platform: PlatformConfig | None = None):
    """Validate one model file. Returns ``(ModelConfig | None, problems)``.

    Every problem in one pass: when the schema rejects the file, its raw values are still
    checked for the name/file-name match and the estimator (:func:`_file_problems`).
    """
    path = Path(path)
    platform = platform or PlatformConfig()
    config, index, problems = validate_file(path, ModelConfig)
    if config is None:
        if index is None:  # not YAML, not a mapping, too big: nothing more to read
            return None, problems
        data, _, _ = read_yaml(path)
        reported = [p.field for p in problems]
        found = [
            (loc, reason, fix)
            for loc, reason, fix in _file_problems(path, data, platform)
            if not any(dotted(loc) == f or dotted(loc).startswith(f + ".") for f in reported)
        ]
    else:
        found = [
            *config.cross_field_problems(),
            *_file_problems(path, config.model_dump(include={"name", "training"}), platform),
        ]
    for loc, reason, fix in found:
        line, col = index.find(loc)
        problems.append(ConfigProblem(str(path), line, col, dotted(loc), reason, fix))
    return (None if problems else config), problems


def _expand(paths) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files += sorted(q for q in p.iterdir() if q.suffix in (".yaml", ".yml") and q.is_file())
        else:
            files.append(p)
    return files


def load_model_configs(paths, platform: PlatformConfig | None = None) -> ConfigSet:
    """Validate every model file under ``paths`` (files or directories).

    Never raises for a bad file: its problems are collected and the good files are kept,
    so one broken config cannot hide the others.
    """
    platform = platform or PlatformConfig()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    models: dict[str, LoadedConfig] = {}
    problems: list[ConfigProblem] = []
    for file in _expand(paths):
        if not file.exists():
            problems.append(ConfigProblem(str(file), None, None, "", "no such file or directory", "check the path"))
            continue
        config, file_problems = check_model_file(file, platform)
        problems += file_problems
        if config is None:
            continue
        if config.name in models:
            problems.append(
                ConfigProblem(
                    str(file),
                    None,
                    None,
                    "name",
                    f"model name {config.name!r} is already used by {models[config.name].path}",
                    "give every model a unique name",
                )
            )
            continue
        models[config.name] = LoadedConfig(file, config)
    return ConfigSet(models, problems, platform)


def load_model_config(path: str | os.PathLike, platform: PlatformConfig | None = None) -> ModelConfig:
    """Load one model config or raise :class:`ConfigError` listing all its problems."""
    config, problems = check_model_file(path, platform)
    if problems:
        raise ConfigError("\n".join(str(p) for p in problems), problems)
    return config


def json_schema() -> dict[str, Any]:
    """JSON Schema of a model config file (for editors and CI)."""
    schema = ModelConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Retrain model config"
    return schema
