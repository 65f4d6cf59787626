"""The lifecycle fields of a registered version's record: its semantic version, intended use,
who registered it and its compliance status (the tag names and the pure functions that fill them).

Semantic version (tag ``version.semantic``), from the previous registered version's tags:

* **major** when the feature set (tag ``features``: numeric and categorical features, sorted,
  so a feature changing type counts) or the target (tag ``features.target``) differ;
* else **minor** when the training data differ (tag ``data.fingerprint``; a missing fingerprint
  counts as different: the data cannot be shown to be the same): a retrain on new data;
* else **patch**: the same data with another config (``config.hash``), code or environment.

The first version (no earlier version has a semantic version) is ``1.0.0``. A field that the
previous version lacks (registered before it was tagged) cannot show a change and is ignored.

>>> bump = next_semantic_version(
...     {"version.semantic": "1.2.0", "features": "age,income|region", "features.target": "defaulted",
...      "data.fingerprint": "aa", "config.hash": "c1"},
...     {"features": "age,income|region", "features.target": "defaulted", "data.fingerprint": "bb",
...      "config.hash": "c1"},
...     previous_version="4",
... )
>>> str(bump.version), bump.part
('1.3.0', 'minor')
"""

from __future__ import annotations

import getpass
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from retrain_lib.quality.approval import FEATURES_TAG

SEMVER_TAG = "version.semantic"
SEMVER_REASON_TAG = "version.semantic_reason"
TARGET_TAG = "features.target"
FINGERPRINT_TAG = "data.fingerprint"
CONFIG_HASH_TAG = "config.hash"
INTENDED_USE_TAG = "intended_use"
REGISTERED_BY_TAG = "registered_by"
COMPLIANCE_TAG = "compliance.status"
DEPRECATION_TAG = "deprecation.target"
#: The MLflow UI route (after the UI's base URL) of a version's model card.
MODEL_CARD_PAGE_TAG = "model_card.page"


def model_card_page(experiment_id: str, run_id: str) -> str:
    """The MLflow UI route of the model card logged to ``run_id`` (the artifact viewer renders
    its HTML): append it to the UI's base URL."""
    return f"#/experiments/{experiment_id}/runs/{run_id}/artifactPath/model_card/model_card.html"


"""Set by the retirement of a version (``lifecycle:``); read here, never written."""

APPROVED, REJECTED, TIMED_OUT = "approved", "rejected", "approval timed out"
PENDING, NOT_REQUIRED = "pending approval", "not required"
COMPLIANCE_STATUSES = (APPROVED, REJECTED, TIMED_OUT, PENDING, NOT_REQUIRED)

_SEMVER = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")
MAX_TAG_CHARS = 4000
"""Longest text kept in a tag (MLflow limits a model version tag's value)."""


@dataclass(frozen=True, order=True)
class SemanticVersion:
    """``major.minor.patch``."""

    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    @classmethod
    def parse(cls, text: str | None) -> SemanticVersion | None:
        """The version written as ``text`` (``"2.1.0"``), or ``None`` when it is not one."""
        match = _SEMVER.fullmatch(str(text or "").strip())
        return cls(*(int(g) for g in match.groups())) if match else None


FIRST_VERSION = SemanticVersion(1, 0, 0)


@dataclass(frozen=True)
class SemanticBump:
    """The semantic version of a new registered version and why: ``part`` is ``first``,
    ``major``, ``minor`` or ``patch``; ``previous`` the registry version it was compared with."""

    version: SemanticVersion
    part: Literal["first", "major", "minor", "patch"]
    reason: str
    previous: str | None = None


def _feature_change(before: str, now: str) -> str:
    old = set(before.replace("|", ",").split(",")) - {""}
    new = set(now.replace("|", ",").split(",")) - {""}
    added, removed = sorted(new - old), sorted(old - new)
    parts = ([f"added {', '.join(added)}"] if added else []) + ([f"removed {', '.join(removed)}"] if removed else [])
    return "; ".join(parts) or "feature types changed"


def _changed(previous: Mapping[str, str], current: Mapping[str, str], key: str) -> bool:
    """Whether ``key`` differs; a value the previous version lacks cannot show a change."""
    return bool(previous.get(key)) and previous.get(key) != current.get(key)


def next_semantic_version(
    previous: Mapping[str, str] | None, current: Mapping[str, str], *, previous_version: str | None = None
) -> SemanticBump:
    """The semantic version of a version with tags ``current``, registered after the version
    ``previous_version`` with tags ``previous`` (``None``: there is none). See the module's rule."""
    before = SemanticVersion.parse((previous or {}).get(SEMVER_TAG))
    if previous is None or before is None:
        return SemanticBump(FIRST_VERSION, "first", "first version with a semantic version", None)
    against = f"version {previous_version} ({before})" if previous_version else str(before)
    changes = []
    if _changed(previous, current, FEATURES_TAG):
        changes.append(f"features changed ({_feature_change(previous[FEATURES_TAG], current.get(FEATURES_TAG, ''))})")
    if _changed(previous, current, TARGET_TAG):
        changes.append(f"target changed from {previous[TARGET_TAG]!r} to {current.get(TARGET_TAG)!r}")
    if changes:
        bump = SemanticVersion(before.major + 1, 0, 0)
        return SemanticBump(bump, "major", f"major: {'; '.join(changes)} vs {against}", previous_version)
    if not current.get(FINGERPRINT_TAG) or current.get(FINGERPRINT_TAG) != previous.get(FINGERPRINT_TAG):
        bump = SemanticVersion(before.major, before.minor + 1, 0)
        return SemanticBump(bump, "minor", f"minor: retrained on new data vs {against}", previous_version)
    bump = SemanticVersion(before.major, before.minor, before.patch + 1)
    if _changed(previous, current, CONFIG_HASH_TAG):
        why = f"config changed ({previous[CONFIG_HASH_TAG]} -> {current.get(CONFIG_HASH_TAG)})"
    else:
        why = "same config; code or environment changed"
    return SemanticBump(bump, "patch", f"patch: same data, {why} vs {against}", previous_version)


def previous_semantic(versions: Iterable[Any], *, run_id: str) -> Any | None:
    """Of registry ``versions`` (objects with ``version``, ``run_id`` and ``tags``, as MLflow's
    ``ModelVersion``), the newest one with a semantic version that another run than ``run_id``
    registered (a retried registration must not compare a version with itself); ``None`` if none."""
    tagged = [
        v for v in versions if v.run_id != run_id and SemanticVersion.parse((v.tags or {}).get(SEMVER_TAG)) is not None
    ]
    return max(tagged, key=lambda v: int(v.version), default=None)


def registered_by(env: Mapping[str, str] | None = None) -> str:
    """Who registers a version: ``<dag_id>/<run_id>`` inside an Airflow task (the
    ``AIRFLOW_CTX_DAG_ID`` and ``AIRFLOW_CTX_DAG_RUN_ID`` variables Airflow sets for a task,
    the ledger's actor of the same run), else ``user:<login>`` of the process (the CLI).

    >>> registered_by({"AIRFLOW_CTX_DAG_ID": "credit_default__retrain", "AIRFLOW_CTX_DAG_RUN_ID": "manual__1"})
    'credit_default__retrain/manual__1'
    """
    env = os.environ if env is None else env
    dag_id, run_id = env.get("AIRFLOW_CTX_DAG_ID"), env.get("AIRFLOW_CTX_DAG_RUN_ID")
    if dag_id:
        return f"{dag_id}/{run_id}" if run_id else dag_id
    try:
        return f"user:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container without a passwd entry)
        return "user:unknown"


def compliance_status(tags: Mapping[str, str], *, approval_configured: bool | None = None) -> str:
    """The compliance status of a version from its tags: an answer recorded by the approval
    step (``approval.answer``, ``approval.timed_out``) wins; else the ``compliance.status`` tag
    (``pending approval`` while the approval step may ask, ``not required``); for a version
    registered before that tag, ``approval`` (``required`` / ``not required``) or, when nothing
    is recorded, ``approval_configured``.

    >>> compliance_status({"compliance.status": "pending approval", "approval.answer": "Approve"})
    'approved'
    """
    timed_out = str(tags.get("approval.timed_out", "")).lower() == "true"
    if timed_out or tags.get("approval.answer"):
        return answer_status(tags.get("approval.answer"), timed_out=timed_out)
    if tags.get(COMPLIANCE_TAG) in COMPLIANCE_STATUSES:
        return str(tags[COMPLIANCE_TAG])
    if tags.get("approval") in ("required", NOT_REQUIRED):
        return PENDING if tags["approval"] == "required" else NOT_REQUIRED
    return PENDING if approval_configured else NOT_REQUIRED


def answer_status(answer: str | None, *, timed_out: bool = False) -> str:
    """The compliance status after the approval step's answer: ``Approve`` is approved, no
    answer in time timed out, any other answer (``Reject``) rejected."""
    if timed_out:
        return TIMED_OUT
    return APPROVED if answer == "Approve" else REJECTED


def intended_use(intended: str, description: str) -> tuple[str, str]:
    """``(text, source)``: the config's ``intended_use``, else its ``description`` (source
    ``description``), else empty (source ``none``)."""
    if intended.strip():
        return intended.strip(), "intended_use"
    if description.strip():
        return description.strip(), "description"
    return "", "none"


def card_record(tags: Mapping[str, str]) -> dict[str, str | None]:
    """The registry record's fields a model card shows (its ``record``), from the version's tags."""
    return {
        "semantic_version": tags.get(SEMVER_TAG),
        "semantic_version_reason": tags.get(SEMVER_REASON_TAG),
        "registered_by": tags.get(REGISTERED_BY_TAG),
        "compliance_status": compliance_status(tags),
    }
