"""The ``lifecycle:`` section of a model config: when the model is retired, how long before
that it is announced as deprecated, and which model replaces it.

    lifecycle:
      deprecate_on: 2027-01-31   # the day the model is retired (the deprecation's target)
      notice_days: 30            # deprecated (a notice on Slack) from 2027-01-01
      replacement: credit_default_v2

The dates and what happens on them are :mod:`retrain_lib.pipeline.retirement_plan`'s; the
acts (tags, aliases, DAGs paused, ledger) :mod:`retrain_lib.pipeline.retirement`'s.
"""

from __future__ import annotations

import datetime as dt

from pydantic import Field, field_validator

from retrain_lib.core.config_sections import StrictModel

DEFAULT_NOTICE_DAYS = 30
MODEL_NAME = r"^[a-z][a-z0-9_]{0,62}$"


class Lifecycle(StrictModel):
    """A model's planned retirement (all optional: ``notice_days`` alone sets the notice of a
    ``retrain retire`` without ``--notice-days``)."""

    deprecate_on: dt.date | None = Field(
        default=None,
        description="The day the model is retired (YYYY-MM-DD): aliases removed, DAGs paused, the gateway "
        "answers 410. It is deprecated (one notice on Slack) from notice_days before.",
    )
    notice_days: int = Field(
        default=DEFAULT_NOTICE_DAYS,
        ge=0,
        le=3660,
        description="Days of deprecation before deprecate_on (and the default notice of `retrain retire`).",
    )
    replacement: str | None = Field(
        default=None,
        pattern=MODEL_NAME,
        description="The model that replaces this one: named in the notice and in the gateway's 410 answer.",
    )

    @field_validator("deprecate_on", mode="before")
    @classmethod
    def _day(cls, value):
        if value is None or (isinstance(value, dt.date) and not isinstance(value, dt.datetime)):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError(f"{value!r} is not a day; write it as YYYY-MM-DD, e.g. deprecate_on: 2027-01-31")

    def notice_from(self) -> dt.date | None:
        """The first day of the deprecation: ``deprecate_on - notice_days`` (``None`` without a date)."""
        if self.deprecate_on is None:
            return None
        return self.deprecate_on - dt.timedelta(days=self.notice_days)


def lifecycle_problems(name: str, lifecycle: Lifecycle | None) -> list[tuple[tuple, str, str]]:
    """Problems of the section that involve the model's name: ``(location, reason, fix)`` each."""
    if lifecycle is not None and lifecycle.replacement == name:
        return [
            (
                ("lifecycle", "replacement"),
                f"{name!r} cannot replace itself",
                "name the model that takes over, or remove replacement",
            )
        ]
    return []
