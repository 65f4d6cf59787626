"""Which arm answers a request: the rollout-state contract and deterministic routing.

Rollout state lives in the MLflow registry, next to the aliases it refers to, as tags of the
*registered model* (not of a version), so any serving stack (this gateway, a KServe or Seldon
controller) can follow it:

==========================  =================================================================
tag                         meaning
==========================  =================================================================
``rollout.mode``            ``none`` (champion only), ``shadow`` (champion answers, the
                            challenger is scored off the request path and logged with arm
                            ``shadow``) or ``canary`` (a share of requests is answered by the
                            challenger). Missing tag = ``none``.
``rollout.canary_percent``  share of requests (0..100, float) routed to the challenger in
                            ``canary`` mode. Missing = 0.
``rollout.sticky_key``      a feature or entity column (e.g. ``application_id``); when set
                            and a request carries it, the same entity always gets the same
                            arm. Empty or missing = route each request on its request id.
==========================  =================================================================

The aliases ``champion`` and ``challenger`` say which versions the arms are. Without a
``challenger`` alias every request goes to the champion, whatever the mode.

Routing is a pure function of the key and the percent (:func:`route`): the first 8 bytes of
``sha256(key)`` read as an integer in ``[0, 2**64)`` give a bucket in ``[0, 100)``; a request
goes to the challenger when its bucket is below ``canary_percent``. Raising the percent only
moves entities from champion to challenger, never back.

Example::

    >>> route("app-17", "req-1", 100.0, "canary")
    'challenger'
    >>> route(None, "req-1", 0.0, "canary")
    'champion'
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from retrain_lib.core.errors import RetrainError
from retrain_lib.store.registry import is_not_found

CHAMPION_ARM = "champion"
CHALLENGER_ARM = "challenger"
SHADOW_ARM = "shadow"

TAG_MODE = "rollout.mode"
TAG_PERCENT = "rollout.canary_percent"
TAG_STICKY = "rollout.sticky_key"
MODES = ("none", "shadow", "canary")

_SCALE = 100.0 / float(2**64)


class RolloutStateError(RetrainError, ValueError):
    """A rollout state (mode, percent, sticky key) is invalid."""


@dataclass(frozen=True)
class RolloutState:
    """The rollout state of one registered model (see the module docstring)."""

    mode: str = "none"
    canary_percent: float = 0.0
    sticky_key: str = ""

    def to_dict(self) -> dict:
        return {"mode": self.mode, "canary_percent": self.canary_percent, "sticky_key": self.sticky_key}


def bucket(key: str) -> float:
    """Position of ``key`` in ``[0, 100)``: the first 8 bytes of its sha256, scaled."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") * _SCALE


def route(request_key: str | None, request_id: str, percent: float, mode: str) -> str:
    """The arm that answers a request: ``"champion"`` or ``"challenger"``.

    Only ``canary`` mode ever returns ``"challenger"`` (in ``shadow`` mode the champion
    answers and the challenger is called on the side). With a ``request_key`` (the value of
    the sticky key column) the decision depends on it alone, so an entity keeps its arm;
    without one, on ``request_id``. ``percent <= 0`` never and ``percent >= 100`` always
    picks the challenger.
    """
    if mode != "canary" or percent <= 0:
        return CHAMPION_ARM
    if percent >= 100:
        return CHALLENGER_ARM
    key = request_id if request_key is None or request_key == "" else str(request_key)
    return CHALLENGER_ARM if bucket(key) < percent else CHAMPION_ARM


def check_rollout_state(mode: str, percent: float | str, sticky_key: str | None) -> RolloutState:
    """A valid :class:`RolloutState`, or :class:`RolloutStateError` naming what is wrong."""
    if mode not in MODES:
        raise RolloutStateError(f"The 'mode' of a rollout must be one of {', '.join(MODES)}. Got {mode!r} instead.")
    try:
        value = float(percent)
    except (TypeError, ValueError):
        raise RolloutStateError(
            f"The 'canary_percent' of a rollout must be a number in 0..100. Got {percent!r} instead."
        ) from None
    if math.isnan(value) or not 0 <= value <= 100:
        raise RolloutStateError(
            f"The 'canary_percent' of a rollout must be a number in 0..100. Got {percent!r} instead."
        )
    return RolloutState(mode, value, (sticky_key or "").strip())


def set_rollout_state(client, name: str, mode: str, percent: float = 0.0, sticky_key: str | None = "") -> RolloutState:
    """Write the rollout state of registered model ``name`` as its ``rollout.*`` tags.

    Checks the arguments before calling the registry. Gateways pick the change up within
    their refresh interval.

    Example::

        set_rollout_state(client, "credit_default", "canary", 20, "application_id")
    """
    state = check_rollout_state(mode, percent, sticky_key)
    # Percent and key first, mode last: a reader that sees the new mode sees its parameters.
    client.set_registered_model_tag(name, TAG_PERCENT, repr(state.canary_percent))
    client.set_registered_model_tag(name, TAG_STICKY, state.sticky_key)
    client.set_registered_model_tag(name, TAG_MODE, state.mode)
    return state


def state_from_tags(tags: dict[str, str] | None) -> RolloutState:
    """The rollout state held by a registered model's tags; invalid or missing -> ``none``."""
    tags = tags or {}
    try:
        return check_rollout_state(
            tags.get(TAG_MODE) or "none", tags.get(TAG_PERCENT) or 0.0, tags.get(TAG_STICKY) or ""
        )
    except RolloutStateError:
        return RolloutState()


def get_rollout_state(client, name: str) -> RolloutState:
    """The rollout state of registered model ``name`` (``none`` when unset or unknown model)."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if is_not_found(exc):
            return RolloutState()
        raise
    return state_from_tags(model.tags)
