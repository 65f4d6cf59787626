"""The lifecycle side of the fleet status: whether a model is active, deprecated (and until
when) or retired (since when, why, replaced by what), from its ledger records, its config's
``lifecycle`` section and its registry tags (:mod:`retrain_lib.pipeline.retirement_plan`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from retrain_lib.pipeline.retirement_plan import ACTIVE, RETIRED, plan_lifecycle, version_plans
from retrain_lib.store.lifecycle_tags import LifecycleTags


def lifecycle_summary(
    name: str, records: list[dict], cfg, tags: Mapping[str, Any] | None, day: dt.date
) -> dict[str, Any]:
    """``{"status", "retire_on", "notice_from", "days_left", "reason", "replacement",
    "retired_on", "explain", "retired_versions", "deprecated_versions", ...}`` of ``name`` on
    ``day``. A registered model tagged retired without a ledger record (tagged by hand) reads as
    retired too."""
    plan = plan_lifecycle(name, records, cfg.lifecycle if cfg is not None else None, day)
    out = plan.to_dict()
    tagged = LifecycleTags(**tags) if tags else LifecycleTags()
    if plan.status == ACTIVE and tagged.retired:
        out.update(
            status=RETIRED,
            reason=tagged.reason,
            replacement=tagged.replacement,
            retired_on=tagged.retired_on,
            explain=tagged.explain(name) + " (registry tags; no ledger record)",
        )
    versions = version_plans(name, records, day)
    out["retired_versions"] = [p.version for p in versions if p.status == RETIRED]
    out["deprecated_versions"] = {p.version: str(p.retire_on) for p in versions if p.status != RETIRED}
    return out


def lifecycle_text(summary: Mapping[str, Any] | None) -> str:
    """A status cell: ``active``, ``retires 2027-01-31``, ``deprecated until 2027-01-31``,
    ``retirement due 2027-01-31`` or ``retired 2027-02-01``."""
    s = summary or {}
    status = s.get("status") or ACTIVE
    if status == RETIRED:
        return "retired" + (f" {s['retired_on']}" if s.get("retired_on") else "")
    if status == ACTIVE:
        return ACTIVE
    return {"scheduled": "retires", "deprecated": "deprecated until", "due": "retirement due"}[status] + (
        f" {s.get('retire_on')}"
    )
