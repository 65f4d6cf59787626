"""The ``alerts:`` section (of a model config and of platform.yaml): alert kinds, their default
severities and the Slack delivery settings.
"""

from __future__ import annotations

from typing import Literal, cast, get_args

from pydantic import Field

from retrain_lib.core.config_sections import StrictModel

AlertKind = Literal[
    "gate_failure",
    "validation_failure",
    "drift",
    "promotion",
    "rollback",
    "guard",
    "approval_needed",
    "failure",
    "deprecation",
    "retirement",
    "health_report",
]
ALERT_KINDS: tuple[AlertKind, ...] = get_args(AlertKind)  # in the order above
Severity = Literal["green", "yellow", "red"]
DEFAULT_SEVERITY: dict[str, str] = {
    "gate_failure": "yellow",
    "validation_failure": "red",
    "drift": "yellow",
    "promotion": "green",
    "rollback": "red",
    "guard": "green",
    "approval_needed": "yellow",
    "failure": "red",
    "deprecation": "yellow",
    "retirement": "red",
    "health_report": "green",
}


class Alerts(StrictModel):
    """Slack alerts of a model (see :mod:`retrain_lib.pipeline.alerts`). The Slack webhook or token
    lives in the Airflow connection ``slack_conn_id``, never here."""

    slack_conn_id: str | None = Field(
        default=None,
        description="Airflow connection: type slackwebhook (webhook URL) or slack (bot token).",
    )
    channel: str | None = Field(
        default=None,
        description="Channel of a token (slack) connection; a webhook posts to its own channel.",
    )
    on: list[AlertKind] = Field(
        default_factory=lambda: list(ALERT_KINDS),
        description="Kinds sent (failure = a task failed after its retries); default: all.",
    )
    severity: dict[AlertKind, Severity] = Field(
        default_factory=dict,
        description="Severity (colour) per kind; unlisted kinds keep their default "
        "(promotion, guard and health_report green; gate_failure, drift, approval_needed, deprecation yellow; the others red; "
        "a guard that could not roll back is always red).",
    )
    dedupe_minutes: float = Field(
        default=60,
        ge=0,
        description="The same alert (kind, model, failing items) is not sent again within this.",
    )
    retries: int = Field(default=3, ge=0, le=10, description="Extra attempts when Slack does not answer 200.")
    retry_seconds: float = Field(default=2.0, ge=0, le=300, description="First backoff; doubles per attempt.")

    def severity_of(self, kind: str) -> str:
        severity = cast("dict[str, Severity]", self.severity)  # any name: an unknown kind has none
        return severity.get(kind) or DEFAULT_SEVERITY.get(kind, "red")

    def wants(self, kind: str) -> bool:
        return kind in self.on
