"""The ``<model>__rollout`` DAG in real ``dag.test()`` runs against a running serving gateway
(uvicorn subprocess) and a real MLflow store: live traffic with labels flows while the DAG
shadows the challenger, moves it to a canary share and decides with the sequential test.
A challenger as good as the champion is promoted; a much weaker one is rolled back and the
champion keeps serving."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml
from airflow_runs import task_states

from retrain_lib.serving.process import GatewayProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
DAG_ID = f"{MODEL}__rollout"


@pytest.fixture(scope="module")
def platform(airflow_db, tmp_path_factory):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for run in session.query(DagRun).all():
            session.delete(run)

    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.store import registry
    from retrain_lib.tools.simulate import simulate

    root = tmp_path_factory.mktemp("rollout")
    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    (cfg_dir / "models" / "daily_demand.yaml").unlink()
    raw = yaml.safe_load((cfg_dir / "models" / f"{MODEL}.yaml").read_text())
    # seconds instead of hours; margin: "no worse than the champion by 0.25 nats per request"
    raw["deploy"] = {
        "mode": "canary",
        "canary_steps": [50, 100],
        "shadow_hours": 0.001,
        "min_predictions": 150,
        "step_minutes": 0.01,
        "max_step_predictions": 3000,
        "rollout_timeout_hours": 0.12,
        "margin": 0.25,
        "max_psi": 0.25,
    }
    (cfg_dir / "models" / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        mp.setenv("RETRAIN_CONFIG_DIR", str(cfg_dir))
        mp.setenv("RETRAIN_STRICT", "1")
        mp.setenv("RETRAIN_ROLLOUT_POLL_S", "0.5")
        settings = load_settings(cfg_dir)
        cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
        simulate(cfg, settings.data_root, days=35, drift_day=None, drift_kind="none", rows_per_day=400, seed=8)
        first = retrain_model(MODEL, "2026-01-30", settings=settings)
        assert first.outcome == "deployed" and first.deployed.mode == "direct", first  # first model: direct
        client = registry.get_client(settings.tracking_uri)
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        assert DAG_ID in bag.dags

        from retrain_lib.serving.replay import labelled_records

        records = labelled_records(cfg, settings.data_root, (dt.date(2026, 2, 1), dt.date(2026, 2, 3)))
        env = {**os.environ}
        env.pop("RETRAIN_PREDICTIONS_URL", None)
        gateway = GatewayProcess(MODEL, refresh_s=0.3, env=env, log_path=root / "gateway.log").start()
        url = gateway.url
        try:
            yield SimpleNamespace(
                bag=bag, settings=settings, client=client, url=url, records=records, cfg_dir=cfg_dir, gateway=gateway
            )
        finally:
            gateway.stop()


def _run_rollout(platform, day: str):
    dag = platform.bag.dags[DAG_ID]
    from retrain_lib.serving.replay import LiveTraffic

    with LiveTraffic(platform.url, MODEL, platform.records) as traffic:
        run = dag.test(logical_date=dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC), run_conf={"as_of": day})
    assert not traffic.failed and traffic.sent > 0
    return run, task_states(DAG_ID, run.run_id)


def _ledger(platform):
    from retrain_lib.store.audit import Ledger

    return Ledger.from_settings(platform.settings)


def test_a_challenger_as_good_as_the_champion_goes_through_shadow_and_canary_and_is_promoted(platform):
    from retrain_lib.store import registry

    client = platform.client
    v1 = client.get_model_version(MODEL, "1")
    v2 = str(client.create_model_version(MODEL, v1.source, run_id=v1.run_id).version)
    registry.set_challenger(client, MODEL, v2)
    run, states = _run_rollout(platform, "2026-02-03")
    assert states["judge_shadow"] == "success" and states["canary_step_1"] == "success", states
    assert states["promote_challenger"] == "success", states
    assert states["rollback_challenger"] == "skipped", states
    assert states["guard_needed"] == states["guard_champion"] == "success", states  # the guard of v2 starts
    aliases = registry.aliases(client, MODEL)
    assert aliases["champion"] == v2 and aliases["previous-champion"] == "1" and "challenger" not in aliases
    events = [r["event"] for r in _ledger(platform).records(MODEL)]
    for event in ("rollout_start", "rollout_shadow", "rollout_step", "rollout_canary", "promote"):
        assert event in events, events
    canary = [r for r in _ledger(platform).records(MODEL) if r["event"] == "rollout_canary"][-1]
    assert canary["details"]["decision"] == "promote"
    assert canary["details"]["labelled"]["challenger"] > 0
    # the gateway follows: the new champion answers
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = httpx.post(f"{platform.url}/v1/models/{MODEL}/predict", json={"record": platform.records[0][0]})
        if r.json()["predictions"][0]["version"] == v2:
            break
        time.sleep(0.3)
    assert r.json()["predictions"][0]["version"] == v2


def _weak_version(platform, key: str) -> str:
    """A registered version trained with one stump (much weaker than the others)."""
    from retrain_lib.tools.simulate import register_weak_version

    return register_weak_version(MODEL, platform.settings, "2026-01-30", run_key=key)


def _wait_serving(platform, version: str, timeout_s: float = 15) -> None:
    platform.gateway.wait_serving(MODEL, version, timeout_s)


def test_a_much_weaker_challenger_is_rolled_back_and_the_champion_keeps_serving(platform):
    from retrain_lib.store import registry

    client = platform.client
    champion = registry.aliases(client, MODEL)["champion"]
    bad = _weak_version(platform, "weak")
    registry.set_challenger(client, MODEL, bad)
    run, states = _run_rollout(platform, "2026-02-04")
    assert states["promote_challenger"] == "skipped", states
    assert states["rollback_challenger"] == "success", states
    assert states["guard_champion"] == "skipped", states  # no new champion, nothing to guard
    aliases = registry.aliases(client, MODEL)
    assert aliases["champion"] == champion and "challenger" not in aliases
    assert client.get_model_version(MODEL, bad).tags.get("retrain.rollout") == "rolled_back"
    last = [r for r in _ledger(platform).records(MODEL) if r["event"] == "rollout_rollback"][-1]
    assert last["details"]["version"] == bad and last["details"]["reason"]
    assert _ledger(platform).verify() == []


def test_a_bad_champion_promoted_by_hand_is_rolled_back_by_the_monitor_from_the_prediction_log(platform):
    from retrain_lib.pipeline.promotion import promote_version
    from retrain_lib.serving.replay import LiveTraffic
    from retrain_lib.store import registry

    client = platform.client
    good = registry.aliases(client, MODEL)["champion"]
    bad = _weak_version(platform, "bad-by-hand")
    out = promote_version(
        MODEL, bad, settings=platform.settings, as_of="2026-02-05", actor="test/on-call", reason="hotfix without gates"
    )
    assert out["promoted"] and registry.aliases(client, MODEL)["previous-champion"] == good
    _wait_serving(platform, bad)
    min_labels = 200  # rollback.min_labels of the example config
    with LiveTraffic(platform.url, MODEL, platform.records) as traffic:
        deadline = time.monotonic() + 120
        while traffic.versions.get(bad, 0) < 2 * min_labels and time.monotonic() < deadline:
            time.sleep(0.3)
        monitor = platform.bag.dags[f"{MODEL}__monitor"]
        run = monitor.test(logical_date=dt.datetime(2026, 2, 5, 18, tzinfo=dt.UTC))
        states = task_states(f"{MODEL}__monitor", run.run_id)
        assert states["rollback_champion"] == "success", states
        assert states["request_retrain"] == "skipped" and states["healthy"] == "skipped", states
        assert states["guard_champion"] == "success", states  # the version rolled back to is guarded
        _wait_serving(platform, good)
    assert not traffic.failed and traffic.versions.get(bad, 0) >= 2 * min_labels
    aliases = registry.aliases(client, MODEL)
    assert aliases["champion"] == good
    records = _ledger(platform).records(MODEL)
    monitor_rec = [r for r in records if r["event"] == "monitor"][-1]
    serving = next(s for s in monitor_rec["details"]["signals"] if s["signal"] == "serving")
    assert serving["triggered"] is True and serving["detail"]["labels"] >= min_labels
    assert serving["detail"]["champion_live"] < serving["detail"]["previous_live"]
    assert "degraded in live serving" in monitor_rec["details"]["reasons"][0]
    back = [r for r in records if r["event"] == "rollback"][-1]
    assert (back["before"], back["after"]) == (bad, good)
    assert _ledger(platform).verify() == []


def test_a_shadow_challenger_better_on_labels_is_promoted_although_its_outputs_moved(platform):
    """After a real change a better model answers differently: output PSI past ``max_psi``
    alone must not roll back a challenger that the labels joined to the shadowed requests show
    is not worse; the PSI stays in the record as a warning."""
    from retrain_lib.pipeline.promotion import promote_version
    from retrain_lib.store import registry
    from retrain_lib.tools.simulate import register_weak_version

    client = platform.client
    good = registry.aliases(client, MODEL)["champion"]
    # few, small boosting steps: probabilities squeezed towards the base rate (continuous, so
    # the champion's quantile buckets are many), a worse log loss than the config's model
    weak = register_weak_version(
        MODEL, platform.settings, "2026-01-30", run_key="timid-champion", params={"max_iter": 8, "learning_rate": 0.03}
    )
    out = promote_version(
        MODEL, weak, settings=platform.settings, as_of="2026-02-06", actor="test/on-call", reason="weak on purpose"
    )
    assert out["promoted"]
    _wait_serving(platform, weak)
    registry.set_challenger(client, MODEL, good)
    dag = platform.bag.dags[DAG_ID]
    from retrain_lib.serving.replay import LiveTraffic

    with LiveTraffic(platform.url, MODEL, platform.records) as traffic:
        run = dag.test(
            logical_date=dt.datetime(2026, 2, 6, tzinfo=dt.UTC),
            run_conf={"as_of": "2026-02-06", "mode": "shadow"},
        )
    assert not traffic.failed
    states = task_states(DAG_ID, run.run_id)
    shadow = [r for r in _ledger(platform).records(MODEL) if r["event"] == "rollout_shadow"][-1]
    details = shadow["details"]
    print(f"shadow of v{good} over weak v{weak}: psi {details['verdict']['psi']:.3f}, {details['labels']}")
    assert details["verdict"]["psi"] > details["verdict"]["limits"]["max_psi"], details["verdict"]
    assert details["labelled"]["ci"][1] <= 0, details["labelled"]  # not worse than the champion at all
    assert details["labelled"]["loss_b"] < details["labelled"]["loss_a"], details["labelled"]
    assert details["decision"] == "continue" and details["warnings"][0].startswith("psi:"), details
    assert states["promote_challenger"] == "success" and states["rollback_challenger"] == "skipped", states
    assert registry.aliases(client, MODEL)["champion"] == good


def test_a_newer_challenger_stops_the_running_rollout_and_is_measured_by_its_own(platform):
    """A rollout never promotes a version it did not measure: when a newer challenger is
    registered while it runs, it ends as ``rollout_superseded`` (no promotion, no rollback of the
    newer one), and the next rollout measures the newer version from its start."""
    import threading

    from retrain_lib.pipeline.rollout_run import judge_shadow
    from retrain_lib.store import registry

    client = platform.client
    champion = registry.aliases(client, MODEL)["champion"]
    source = client.get_model_version(MODEL, champion)
    older = str(client.create_model_version(MODEL, source.source, run_id=source.run_id).version)
    newer = str(client.create_model_version(MODEL, source.source, run_id=source.run_id).version)
    registry.set_challenger(client, MODEL, older)
    seen = len(_ledger(platform).records(MODEL))

    def register_newer_once_the_rollout_started():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(r["event"] == "rollout_start" for r in _ledger(platform).records(MODEL)[seen:]):
                registry.set_challenger(client, MODEL, newer)
                return
            time.sleep(0.1)

    flip = threading.Thread(target=register_newer_once_the_rollout_started)
    flip.start()
    try:
        run, states = _run_rollout(platform, "2026-02-07")
    finally:
        flip.join()
    records = _ledger(platform).records(MODEL)[seen:]
    assert states["promote_challenger"] == "skipped" and states["rollback_challenger"] == "success", states
    superseded = [r for r in records if r["event"] == "rollout_superseded"]
    assert len(superseded) == 1 and superseded[0]["details"]["by"] == newer, [r["event"] for r in records]
    assert not [r for r in records if r["event"] in ("promote", "rollout_rollback")], [r["event"] for r in records]
    aliases = registry.aliases(client, MODEL)
    assert aliases["champion"] == champion and aliases["challenger"] == newer, aliases
    assert client.get_model_version(MODEL, older).tags.get("retrain.rollout") == "superseded"
    # the judge of a rollout whose challenger moved says so, whatever its traffic showed
    stale = {"challenger": older, "champion": champion, "since": records[0]["time"], "mode": "canary"}
    assert judge_shadow(MODEL, stale, settings=platform.settings)["superseded_by"] == newer

    # the restart: a rollout of the newer challenger, measured from its own start
    seen = len(_ledger(platform).records(MODEL))
    run, states = _run_rollout(platform, "2026-02-08")
    records = _ledger(platform).records(MODEL)[seen:]
    start = next(r for r in records if r["event"] == "rollout_start")
    assert start["details"]["version"] == newer, start
    assert states["promote_challenger"] == "success", states
    assert registry.aliases(client, MODEL)["champion"] == newer


def test_a_rollout_whose_shadow_never_gets_traffic_withdraws_its_challenger(platform):
    """No traffic reaches the gateway: the shadow's wait times out (the run param
    ``timeout_hours``) and fails; ``withdraw_challenger`` then ends the rollout with a rollback,
    so the challenger alias and the gateway's shadow state do not outlive the failed run."""
    from retrain_lib.serving.routing import state_from_tags
    from retrain_lib.store import registry

    client = platform.client
    champion = registry.aliases(client, MODEL)["champion"]
    source = client.get_model_version(MODEL, champion)
    twin = str(client.create_model_version(MODEL, source.source, run_id=source.run_id).version)
    registry.set_challenger(client, MODEL, twin)
    dag = platform.bag.dags[DAG_ID]
    run = dag.test(
        logical_date=dt.datetime(2026, 2, 8, tzinfo=dt.UTC),
        run_conf={"as_of": "2026-02-08", "mode": "shadow", "timeout_hours": 0.004},  # 14.4 s
    )
    states = task_states(DAG_ID, run.run_id)
    assert run.state == "failed", states
    assert states["start_rollout"] == "success" and states["wait_shadow"] == "failed", states
    assert states["withdraw_challenger"] == "success", states
    assert states["promote_challenger"] != "success" and states["rollback_challenger"] != "success", states
    aliases = registry.aliases(client, MODEL)
    assert aliases["champion"] == champion and "challenger" not in aliases, aliases
    assert state_from_tags(client.get_registered_model(MODEL).tags).mode == "none"
    back = [r for r in _ledger(platform).records(MODEL) if r["event"] == "rollout_rollback"][-1]
    assert back["details"]["version"] == twin and "challenger withdrawn" in back["reason"], back
    deadline = time.monotonic() + 15
    while platform.gateway.health()["models"][MODEL]["challenger"] is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert platform.gateway.health()["models"][MODEL]["challenger"] is None
