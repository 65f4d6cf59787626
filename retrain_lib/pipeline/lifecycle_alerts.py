"""The Slack alerts of a model's retirement, built from the monitor's
:class:`~retrain_lib.pipeline.retirement_step.LifecycleCheck` (laid out like every alert by
:mod:`retrain_lib.pipeline.alert_payload`; sent through :mod:`retrain_lib.pipeline.alert_delivery`):

* ``deprecation``: the notice, once per planned retirement day (the ledger's
  ``deprecation_notice`` record decides; the de-duplication key is the model and that day)::

      credit_default is deprecated and will be retired on 2027-01-31 (in 30 days) ...

* ``retirement``: the monitor retired it on the planned day (aliases removed, DAGs paused,
  the gateway answers 410 Gone naming the replacement).

A retirement by hand (``retrain retire --now``) sends none: a person did it and the ledger
has it, as for ``retrain promote``.
"""

from __future__ import annotations

from retrain_lib.pipeline.alert_payload import (
    Alert,
    Links,
    context_line,
    dedupe_key,
    esc,
    resolve_severity,
    slack_payload,
)
from retrain_lib.pipeline.retirement_step import LifecycleCheck


def _instead(replacement: str | None) -> str:
    if replacement:
        return f"Clients must move to *{esc(replacement)}* (`/v1/models/{esc(replacement)}/predict` on the gateway)."
    return "No replacement is named: clients must stop calling it."


def deprecation_notice(
    model: str, check: LifecycleCheck, *, links: Links = Links(), severity: str | None = None
) -> Alert:
    """The deprecation notice of ``check`` (its ``plan`` is deprecated)."""
    sev = resolve_severity(severity, "deprecation")
    plan = check.plan
    day = str(plan.retire_on)
    head = (
        f"*{esc(model)} is deprecated* and will be retired on *{esc(day)}* (in {plan.days_left} days): "
        "its aliases removed, its DAGs paused, the gateway answering 410 Gone."
        f"\n{_instead(plan.replacement)}"
        + (f"\nWhy: {esc(plan.reason)}" if plan.reason else "")
        + f"\nTo keep it: `retrain unretire {esc(model)} --reason ...` (and move or remove `lifecycle.deprecate_on`)."
    )
    fallback = f"{model} is deprecated: retired on {day}" + (
        f", replaced by {plan.replacement}" if plan.replacement else ""
    )
    payload = slack_payload(
        sev, f"Deprecated: {model} retires on {day}", [head], esc(fallback), links, context_line(model, check.as_of)
    )
    return Alert("deprecation", model, sev, dedupe_key("deprecation", model, [day]), payload)


def retirement(model: str, check: LifecycleCheck, *, links: Links = Links(), severity: str | None = None) -> Alert:
    """The retirement the monitor made on the planned day (``check.retired``)."""
    sev = resolve_severity(severity, "retirement")
    change = check.retired
    assert change is not None  # sent only for a run that retired the model
    removed = ", ".join(f"{a} v{v}" for a, v in sorted(change.aliases_removed.items())) or "none"
    paused = [d for d, outcome in change.dags.items() if outcome == "paused"]
    head = (
        f"*{esc(model)} is retired* as planned: aliases removed ({esc(removed)}), "
        f"{len(change.versions_tagged)} version(s) tagged `lifecycle.status=retired`; "
        "the gateway answers 410 Gone.\n"
        + _instead(change.replacement)
        + (f"\nWhy: {esc(change.reason)}" if change.reason else "")
        + (
            f"\nDAGs paused: {esc(', '.join(paused))}."
            if paused
            else "\nIts DAGs were not paused through the Airflow API: their runs do nothing for a retired model."
        )
    )
    fallback = f"{model} retired" + (f"; use {change.replacement}" if change.replacement else "")
    payload = slack_payload(sev, f"Retired: {model}", [head], esc(fallback), links, context_line(model, check.as_of))
    return Alert("retirement", model, sev, dedupe_key("retirement", model, [check.as_of]), payload)
