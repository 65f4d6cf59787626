"""Routing is deterministic, sticky per entity and honours the configured share; the
rollout state round-trips through a real (SQLite) MLflow registry."""

from __future__ import annotations

import hashlib
import math

import pytest

from retrain_lib.serving.routing import (
    RolloutState,
    RolloutStateError,
    bucket,
    check_rollout_state,
    route,
    state_from_tags,
)


def test_bucket_is_sha256_based_and_in_range():
    # an independent computation of the documented contract
    expected = int(hashlib.sha256(b"app-42").hexdigest()[:16], 16) / 2**64 * 100
    assert bucket("app-42") == pytest.approx(expected)
    assert all(0 <= bucket(f"k{i}") < 100 for i in range(1000))


def test_route_is_deterministic():
    first = [route(None, f"req-{i}", 30.0, "canary") for i in range(500)]
    again = [route(None, f"req-{i}", 30.0, "canary") for i in range(500)]
    assert first == again
    assert set(first) == {"champion", "challenger"}


def test_a_sticky_key_keeps_an_entity_on_one_arm_whatever_the_request_id():
    for entity in (f"app-{i}" for i in range(200)):
        arms = {route(entity, f"req-{j}", 50.0, "canary") for j in range(20)}
        assert len(arms) == 1, entity
    # without a key, the request id decides: the same entity spreads over both arms
    assert {route(None, f"req-{j}", 50.0, "canary") for j in range(50)} == {"champion", "challenger"}


def test_raising_the_percent_only_moves_entities_to_the_challenger():
    at20 = {e for e in (f"app-{i}" for i in range(2000)) if route(e, "r", 20.0, "canary") == "challenger"}
    at50 = {e for e in (f"app-{i}" for i in range(2000)) if route(e, "r", 50.0, "canary") == "challenger"}
    assert at20 < at50


@pytest.mark.parametrize("percent", [1.0, 5.0, 20.0, 50.0, 90.0])
def test_share_is_within_binomial_tolerance_on_10000_ids(percent):
    n = 10_000
    hits = sum(route(None, f"request-{i}", percent, "canary") == "challenger" for i in range(n))
    p = percent / 100
    sd = math.sqrt(n * p * (1 - p))
    assert abs(hits - n * p) <= 4 * sd, (hits, n * p, sd)


def test_zero_and_hundred_percent_are_exact_and_other_modes_never_route_to_the_challenger():
    ids = [f"r{i}" for i in range(10_000)]
    assert all(route(None, r, 0.0, "canary") == "champion" for r in ids)
    assert all(route(None, r, 100.0, "canary") == "challenger" for r in ids)
    assert all(route("k", r, 100.0, mode) == "champion" for r in ids[:100] for mode in ("none", "shadow"))


def test_invalid_states_are_refused_with_a_clear_message():
    with pytest.raises(RolloutStateError, match="'mode' of a rollout must be one of none, shadow, canary"):
        check_rollout_state("blue-green", 10, "")
    with pytest.raises(ValueError, match="0..100. Got 120"):
        check_rollout_state("canary", 120, "")
    with pytest.raises(ValueError, match="Got 'lots'"):
        check_rollout_state("canary", "lots", "")
    # a reader never fails on garbage tags: it falls back to champion-only
    assert state_from_tags({"rollout.mode": "canary", "rollout.canary_percent": "abc"}) == RolloutState()
    assert state_from_tags({}) == RolloutState("none", 0.0, "")


def test_rollout_state_round_trips_through_the_registry(tmp_path):
    from retrain_lib.serving.routing import get_rollout_state, set_rollout_state
    from retrain_lib.store.registry import get_client

    client = get_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert get_rollout_state(client, "nothing") == RolloutState()
    client.create_registered_model("m")
    assert get_rollout_state(client, "m") == RolloutState()
    set_rollout_state(client, "m", "canary", 12.5, "application_id")
    assert get_rollout_state(client, "m") == RolloutState("canary", 12.5, "application_id")
    tags = client.get_registered_model("m").tags
    assert tags["rollout.mode"] == "canary" and float(tags["rollout.canary_percent"]) == 12.5
    assert tags["rollout.sticky_key"] == "application_id"
    set_rollout_state(client, "m", "shadow")
    assert get_rollout_state(client, "m") == RolloutState("shadow", 0.0, "")
    with pytest.raises(RolloutStateError):
        set_rollout_state(client, "m", "canary", -1)
    assert get_rollout_state(client, "m").mode == "shadow"  # checked before writing anything
