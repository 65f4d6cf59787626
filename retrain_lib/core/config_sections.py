"""The sections of a model config about its data and training: the strict base model, data
source, features, windows, schedule, training and change-aware adaptation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_CRON_PRESETS = ("@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_cron(value: str | None) -> str | None:
    if value is None:
        return value
    value = value.strip()
    if value in _CRON_PRESETS:
        return value
    fields = value.split()
    if len(fields) != 5 or not all(re.fullmatch(r"[0-9*/,\-A-Za-z?]+", f) for f in fields):
        raise ValueError(
            f"{value!r} is not a cron expression; use five fields such as '0 6 * * *' "
            f"or one of {', '.join(_CRON_PRESETS[1:])}"
        )
    return value


_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"


class DataSource(StrictModel):
    """Where a model's data lives.

    ``local``: files named ``YYYY-MM-DD.<format>`` in ``path`` under the platform's data_root.
    ``s3``: the same files under ``s3://<bucket>/<path>/`` (endpoint and region from
    platform.yaml, credentials from the environment). ``sql``: rows of ``table`` selected by
    the timestamp column, labels from ``labels_table`` by their arrival column (connection URL
    from the environment variable named in platform.yaml).
    """

    source: Literal["local", "s3", "sql"] = "local"
    path: str | None = Field(
        default=None,
        description="local: directory under data_root; s3: key prefix in the bucket.",
    )
    bucket: str | None = Field(default=None, description="s3 only; default: platform.yaml s3.bucket.")
    format: Literal["parquet", "csv"] = "parquet"
    labels_path: str | None = Field(
        default=None,
        description=(
            "Directory (or S3 prefix) of daily label partitions (id column + target), dated by the day "
            "the labels arrived. When omitted the target is read from the feature partitions."
        ),
    )
    table: str | None = Field(default=None, pattern=_IDENT, description="sql only: table of events.")
    labels_table: str | None = Field(default=None, pattern=_IDENT, description="sql only: table of labels.")
    labels_arrival_column: str = Field(default="arrived_at", description="sql only: when a label arrived.")
    id_column: str = Field(description="Unique id of an event; joins late labels to features.")
    timestamp_column: str
    label_delay_days: int = Field(default=0, ge=0, le=365)

    @field_validator("path", "labels_path")
    @classmethod
    def _relative_path(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = Path(value).parts
        if Path(value).is_absolute() or ".." in parts or "://" in value:
            raise ValueError(f"{value!r} must be a path relative to the platform's data_root (or bucket), without '..'")
        return value

    @model_validator(mode="after")
    def _source_fields(self) -> DataSource:
        if self.source in ("local", "s3") and not self.path:
            raise ValueError(f"source {self.source!r} needs 'path' (the directory or prefix of daily files)")
        if self.source == "sql" and not self.table:
            raise ValueError("source 'sql' needs 'table'")
        if self.source != "sql" and (self.table or self.labels_table):
            raise ValueError("'table' and 'labels_table' only apply to source 'sql'")
        if self.source != "s3" and self.bucket:
            raise ValueError("'bucket' only applies to source 's3'")
        return self


class Features(StrictModel):
    target: str
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list, description="Columns to report metrics by.")

    @model_validator(mode="after")
    def _consistent(self) -> Features:
        if not self.numeric and not self.categorical:
            raise ValueError("declare at least one feature under 'numeric' or 'categorical'")
        seen: dict[str, str] = {}
        for kind in ("numeric", "categorical"):
            for name in getattr(self, kind):
                if name in seen:
                    raise ValueError(f"feature {name!r} is listed under both {seen[name]!r} and {kind!r}")
                seen[name] = kind
        if self.target in seen:
            raise ValueError(f"the target {self.target!r} is also listed as a feature; remove it")
        return self

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


class Windows(StrictModel):
    training_days: int = Field(default=60, ge=1, le=3660)
    monitor_days: int = Field(default=7, ge=1, le=366, description="Current window for drift checks.")
    reference_days: int = Field(
        default=30,
        ge=1,
        le=3660,
        description=(
            "Reference window for drift: the last days of the champion's training window "
            "(before any champion: the oldest days of data)."
        ),
    )


class MaxRetrains(StrictModel):
    """``{count: 3, days: 7}``: at most ``count`` retrain requests in any ``days`` days."""

    count: int = Field(ge=1, le=1000)
    days: int = Field(ge=1, le=3660)


class PartitionWatch(StrictModel):
    """Start the monitor for a new daily partition of ``data:`` (a file ``YYYY-MM-DD.<format>``
    in the directory or S3 prefix, or a later ``max(timestamp_column)`` day of the SQL table),
    noticed by a trigger on Airflow's triggerer that looks every ``poll_seconds``."""

    poll_seconds: float = Field(
        default=60, ge=1, le=86_400, description="How often the triggerer looks for a new partition."
    )


_CHANNEL = r"^[A-Za-z0-9_.:/-]{1,200}$"


class QueueWatch(StrictModel):
    """Start the monitor when the data pipeline publishes ``{"day": "YYYY-MM-DD"}`` on a message
    queue (Redis pub/sub here: scheme ``redis+pubsub`` of Airflow's common-messaging provider)."""

    scheme: Literal["redis+pubsub"] = Field(default="redis+pubsub", description="The queue's kind.")
    conn_id: str = Field(
        default="redis_default",
        pattern=r"^[A-Za-z0-9_.-]{1,250}$",
        description="Airflow connection of the broker (e.g. env AIRFLOW_CONN_REDIS_DEFAULT=redis://host:6379/0).",
    )
    channel: str | None = Field(default=None, description="Channel to listen on; default retrain.<model>.new_data.")
    poll_seconds: float = Field(default=1, gt=0, le=3600, description="Pause between reads of the channel.")

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(_CHANNEL, value):
            raise ValueError(
                f"channel {value!r} must be 1-200 letters, digits or _ . : / - (no spaces, no wildcards), "
                "e.g. retrain.<model>.new_data"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _no_url(cls, value: Any) -> Any:
        if isinstance(value, dict) and ("url" in value or "uri" in value):
            raise ValueError(
                "the broker's address is not written in YAML: put it in an Airflow connection "
                "(e.g. env AIRFLOW_CONN_REDIS_DEFAULT=redis://host:6379/0) and name it in conn_id"
            )
        return value


class NewDataWatch(StrictModel):
    """What starts a monitor run besides its cron (``schedule.new_data``); both off by default."""

    partitions: PartitionWatch | None = Field(
        default=None,
        description="Watch the data source for a new daily partition: true or {poll_seconds}; null = off.",
    )
    queue: QueueWatch | None = Field(
        default=None,
        description='Listen for {"day": ...} messages: {conn_id, channel, poll_seconds}; null = off.',
    )

    @field_validator("partitions", "queue", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        if value is True:
            return {}
        if value is False:
            return None
        return value


class Schedule(StrictModel):
    monitor: str = Field(default="@daily", description="Cron of the monitor DAG.")
    retrain_floor: str | None = Field(
        default="@weekly",
        description="Cron of the retrain DAG: a retrain at least this often. null = never.",
    )
    min_retrain_interval_days: int = Field(default=1, ge=0, le=365)
    max_days_without_retrain: int | None = Field(
        default=None,
        ge=1,
        le=3660,
        description="The monitor requests a retrain when the champion is older than this.",
    )
    new_labels_share: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description=(
            "The monitor requests a retrain when the labelled rows that matured since the champion's "
            "training window are at least this share of its training rows (e.g. 0.15). null = off."
        ),
    )
    max_retrains: MaxRetrains | None = Field(
        default=None,
        description="At most this many retrain requests by the monitor within a rolling period; more are throttled.",
    )

    new_data: NewDataWatch = Field(
        default_factory=NewDataWatch,
        description=(
            "Run the monitor for the day that landed: partitions (a trigger watches data:) and/or queue "
            '(messages {"day": ...}); both off by default.'
        ),
    )

    @field_validator("monitor", "retrain_floor")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        return _check_cron(value)


class Recency(StrictModel):
    """Weight recent training rows more (``retrain_lib.learn.training_data.sample_weights``).

    The window is anchored at the end of the training window (``as_of``): ``{days: 90,
    weight: 2.0}`` makes rows of the last 90 days count ``weight`` times as much as older
    rows; ``{half_life_days: 30}`` halves a row's weight every 30 days of age. Both together
    multiply. The weights are rescaled to average 1, so the total weight equals the number
    of rows, as in unweighted training. The estimator's ``fit`` must accept ``sample_weight``.
    """

    days: int | None = Field(
        default=None,
        gt=0,
        le=3660,
        description="Rows of the last `days` days count `weight` times (with weight).",
    )
    weight: float | None = Field(
        default=None,
        gt=0,
        le=1000,
        description="Relative weight of rows within the last `days` days.",
    )
    half_life_days: float | None = Field(
        default=None,
        gt=0,
        le=3660,
        description="Exponential decay: a row's weight halves every this many days.",
    )

    @model_validator(mode="after")
    def _complete(self) -> Recency:
        if (self.days is None) != (self.weight is None):
            given, missing = ("days", "weight") if self.weight is None else ("weight", "days")
            raise ValueError(f"recency {given} needs {missing} too, e.g. {{days: 90, weight: 2.0}}")
        if self.days is None and self.half_life_days is None:
            raise ValueError(
                "recency needs days and weight, half_life_days, or both; "
                "e.g. {days: 90, weight: 2.0} or {half_life_days: 30}"
            )
        if self.weight == 1:
            raise ValueError(
                "recency weight 1 gives recent and older rows the same weight; use a weight other "
                "than 1 (e.g. 2.0) or remove days and weight"
            )
        return self


class Split(StrictModel):
    method: Literal["time", "random", "stratified"] = "time"
    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.9)


class Training(StrictModel):
    """How a candidate is trained (``retrain_lib.learn.training.fit``).

    ``recency`` weights recent rows more; ``timeout_minutes`` fits in a child process that is
    stopped after that long; ``warm_start`` continues from the champion's fitted model instead
    of training from scratch (the champion's preprocessing is reused when the feature lists
    are unchanged, and ``warm_start_extra`` trees/iterations are added). A warm-started model
    depends on its parent version: the same data and config reproduce it only from the same
    parent, which is recorded in its lineage.
    """

    estimator: str = Field(description="Import path of a scikit-learn estimator class.")
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 42
    split: Split = Field(default_factory=Split)
    recency: Recency | None = Field(
        default=None,
        description="Weight recent rows more: {days: 90, weight: 2.0} and/or {half_life_days: 30}.",
    )
    timeout_minutes: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 60,
        description="Stop a fit that takes longer (it then runs in a child process). null = no limit, in-process.",
    )
    warm_start: bool = Field(
        default=False,
        description=(
            "Continue from the champion's fitted model (estimators with a warm_start parameter); "
            "the new model then depends on its parent version."
        ),
    )
    warm_start_extra: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description=(
            "With warm_start: trees/boosting iterations added to the champion's (n_estimators, "
            "max_iter); for solvers such as LogisticRegression the max_iter of the continued fit. "
            "Default 50."
        ),
    )

    @field_validator("estimator")
    @classmethod
    def _import_path(cls, value: str) -> str:
        # dotted names, none private or dunder: ``sklearn.__class__.__init__`` is not an estimator
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+", value):
            raise ValueError(
                f"{value!r} is not an import path such as 'sklearn.linear_model.LogisticRegression' "
                "(dotted names, none starting with '_')"
            )
        return value

    @model_validator(mode="after")
    def _warm_start_options(self) -> Training:
        if self.warm_start_extra is not None and not self.warm_start:
            raise ValueError(
                "warm_start_extra only applies with warm_start: true; set warm_start: true or remove warm_start_extra"
            )
        return self

    @property
    def extra_iterations(self) -> int:
        """``warm_start_extra`` or its default (50)."""
        return 50 if self.warm_start_extra is None else self.warm_start_extra


WindowKind = Literal["after_change", "recency_weighted", "configured"]


def _every_window() -> list[WindowKind]:
    return ["after_change", "recency_weighted", "configured"]


class Adaptation(StrictModel):
    """Change-aware retraining (``retrain_lib.pipeline.adaptation``).

    A retrain estimates the day the champion's matured performance changed (if it did).
    Candidates trained on several ``windows`` compete on the newest matured labels (after the
    change when there is one): ``after_change`` (only the rows since the change, once there are
    ``min_rows_after_change`` of them), ``recency_weighted`` (the whole window, rows since the
    change, or the last quarter of the window, carrying ``recent_weight_share`` of the weight)
    and ``configured`` (the training section as written). The winner is compared with the
    champion on those same rows, then refit on every row it may use. With ``require_gain`` a
    candidate that is not better than the champion beyond noise (paired bootstrap at
    ``gain_confidence``) is a "no gain" outcome, not a promotion. With a performance trigger,
    data drift alone rebases the drift reference and leaves the decision to the labels
    (``rebase_on_drift``), and a champion below its healthy level stays armed with backoff.
    """

    windows: list[WindowKind] = Field(
        default_factory=_every_window,
        min_length=1,
        description="Training windows whose candidates compete on the newest matured labels.",
    )
    min_rows_after_change: int = Field(
        default=200,
        ge=20,
        description="after_change: labelled rows since the change needed to train on them alone.",
    )
    recent_weight_share: float = Field(
        default=0.75,
        gt=0,
        lt=1,
        description="recency_weighted: share of the total weight of the recent rows.",
    )
    require_gain: bool = Field(
        default=True,
        description="A candidate not better than the champion beyond noise is not registered.",
    )
    gain_confidence: float = Field(default=0.95, gt=0.5, lt=1, description="One-sided confidence of the gain.")
    gain_resamples: int = Field(default=1000, ge=100, le=100_000, description="Resamples of the gain bootstrap.")
    rebase_on_drift: bool = Field(
        default=True,
        description="With performance: drift alone rebases the drift reference; matured labels decide a retrain.",
    )
    backoff: bool = Field(
        default=True,
        description="Double the wait after each retrain that was not deployed (no gain, rejected).",
    )
    shift_label_days: int | None = Field(
        default=7,
        ge=1,
        le=365,
        description=(
            "After a covariate shift the champion survived: once this many days of labels since the shift "
            "have matured, one retrain asks whether they allow a better model. null = never."
        ),
    )
    follow_up: bool = Field(
        default=True,
        description=(
            "After a retrain that learnt a change from a few days of labels: retrain again each time the "
            "matured days since the change double, until they fill the training window or a retrain "
            "brings no gain."
        ),
    )
    shift_follow_up: bool = Field(
        default=True,
        description=(
            "After a covariate shift whose retrain brought no gain: ask again each time the matured days "
            "since the shift double, until they fill the training window."
        ),
    )
    shift_requires_gain: bool = Field(
        default=False,
        description=(
            "After a covariate shift the champion survived (the concept held): false = a candidate that passes "
            "the gates and is not worse than the champion on the rows since the shift is promoted; true = it "
            "must be better beyond noise, as after a concept change."
        ),
    )
    crossfit_folds: int = Field(
        default=5,
        ge=0,
        le=20,
        description=(
            "After a covariate shift: the gain is measured on every matured row since the shift, each "
            "scored by the chosen recipe fitted without its block of days (this many blocks; 0 = only "
            "the newest rows held out)."
        ),
    )
