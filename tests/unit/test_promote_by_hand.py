"""``promote_version`` on the registry alone (no serving check): promoting the challenger of a
canary by hand ends the rollout state too, so the gateway goes back to champion-only."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"


@pytest.fixture
def registry_with_a_canary(tmp_path):
    from retrain_lib.core.settings import load_settings
    from retrain_lib.serving.routing import set_rollout_state
    from retrain_lib.store import registry
    from retrain_lib.store.model_context import ModelContext

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(tmp_path / "state"))
        settings = load_settings(tmp_path / "configs")
    ctx = ModelContext(MODEL, settings)
    client = ctx.client
    run_id = client.create_run(ctx.experiment_id()).info.run_id
    client.create_registered_model(MODEL)
    for _ in range(2):
        client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id)
    registry.promote_champion(client, MODEL, "1", expected_champion=None)
    registry.set_challenger(client, MODEL, "2")
    set_rollout_state(client, MODEL, "canary", 20.0, "application_id")
    return settings, client


def test_promoting_the_canary_challenger_by_hand_ends_the_rollout_state(registry_with_a_canary):
    from retrain_lib.pipeline.promotion import promote_version
    from retrain_lib.serving.routing import state_from_tags
    from retrain_lib.store import registry

    settings, client = registry_with_a_canary
    out = promote_version(MODEL, "2", settings=settings, reason="canary looks fine", check_serving=False)
    assert out["promoted"]
    assert registry.aliases(client, MODEL) == {"champion": "2", "previous-champion": "1"}
    assert state_from_tags(client.get_registered_model(MODEL).tags).mode == "none"


def test_promoting_another_version_leaves_a_running_rollout_alone(registry_with_a_canary):
    from retrain_lib.pipeline.promotion import promote_version
    from retrain_lib.serving.routing import state_from_tags
    from retrain_lib.store import registry

    settings, client = registry_with_a_canary
    v1 = client.get_model_version(MODEL, "1")
    assert str(client.create_model_version(MODEL, v1.source, run_id=v1.run_id).version) == "3"
    promote_version(MODEL, "3", settings=settings, reason="hotfix", check_serving=False)
    assert registry.aliases(client, MODEL)["challenger"] == "2"
    state = state_from_tags(client.get_registered_model(MODEL).tags)
    assert (state.mode, state.canary_percent) == ("canary", 20.0)
