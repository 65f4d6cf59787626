"""The ``<model>__guard`` DAG in real ``dag.test()`` runs against a running serving gateway
(uvicorn subprocess), a real MLflow store and a local Slack webhook: live traffic with
labels flows while the guard's deferred check reads the prediction log. A much weaker
version promoted directly is rolled back within seconds by the paired labelled-loss test; a
version as good as the champion is kept and the guard ends clean after ``guard.minutes``."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from airflow_runs import task_states, xcom_return
from fake_slack import WEBHOOK_PATH, FakeSlack

from retrain_lib.serving.process import GatewayProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MODEL = "credit_default"
DAG_ID = f"{MODEL}__guard"
GUARD = {"minutes": 0.5, "interval_s": 1, "min_requests": 30, "min_labels": 50, "alpha": 0.01, "margin": 0.02}


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

    slack = FakeSlack()
    root = tmp_path_factory.mktemp("guard")
    cfg_dir = root / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    (cfg_dir / "models" / "daily_demand.yaml").unlink()
    raw = yaml.safe_load((cfg_dir / "models" / f"{MODEL}.yaml").read_text())
    raw["guard"] = GUARD  # seconds instead of two hours
    raw["alerts"] = {"slack_conn_id": "slack_retrain", "retries": 0, "dedupe_minutes": 0}
    (cfg_dir / "models" / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RETRAIN_HOME", str(root / "state"))
        mp.setenv("RETRAIN_CONFIG_DIR", str(cfg_dir))
        mp.setenv("RETRAIN_STRICT", "1")
        mp.setenv(
            "AIRFLOW_CONN_SLACK_RETRAIN",
            json.dumps({"conn_type": "slackwebhook", "password": slack.url + WEBHOOK_PATH}),
        )
        settings = load_settings(cfg_dir)
        cfg = load_model_config(cfg_dir / "models" / f"{MODEL}.yaml")
        assert cfg.guard_enabled and cfg.guard.minutes == 0.5
        simulate(cfg, settings.data_root, days=35, drift_day=None, drift_kind="none", rows_per_day=400, seed=8)
        first = retrain_model(MODEL, "2026-01-30", settings=settings)
        assert first.outcome == "deployed" and first.deployed.mode == "direct", first
        client = registry.get_client(settings.tracking_uri)
        bag = DagBag(dag_folder=str(REPO / "dags"))
        assert bag.import_errors == {}
        assert DAG_ID in bag.dags

        from retrain_lib.serving.replay import labelled_records

        records = labelled_records(cfg, settings.data_root, (dt.date(2026, 2, 1), dt.date(2026, 2, 3)))
        env = {**os.environ}
        env.pop("RETRAIN_PREDICTIONS_URL", None)
        gateway = GatewayProcess(MODEL, refresh_s=0.3, env=env, log_path=root / "gateway.log").start()
        try:
            yield SimpleNamespace(
                bag=bag,
                settings=settings,
                client=client,
                url=gateway.url,
                records=records,
                gateway=gateway,
                slack=slack,
                cfg_dir=cfg_dir,
            )
        finally:
            gateway.stop()
            slack.close()


def _promote_by_hand(platform, version: str, day: str) -> str:
    """``version`` becomes champion directly (as ``retrain promote`` does); returns the champion before."""
    from retrain_lib.pipeline.promotion import promote_version
    from retrain_lib.store import registry

    before = registry.aliases(platform.client, MODEL)["champion"]
    out = promote_version(MODEL, version, settings=platform.settings, as_of=day, actor="test/on-call", reason="direct")
    assert out["promoted"], out
    platform.gateway.wait_serving(MODEL, version, 15)
    return before


def _run_guard(platform, version: str, day: str, **conf):
    from retrain_lib.serving.replay import LiveTraffic

    dag = platform.bag.dags[DAG_ID]
    started = time.monotonic()
    with LiveTraffic(platform.url, MODEL, platform.records, label_delay_s=0.5) as traffic:
        run = dag.test(
            logical_date=dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC),
            run_conf={"as_of": day, "version": version, **conf},
        )
    assert not traffic.failed and traffic.sent > 0
    return run, task_states(DAG_ID, run.run_id), time.monotonic() - started


def _guard_records(platform) -> list[dict]:
    from retrain_lib.store.audit import Ledger

    return [r for r in Ledger.from_settings(platform.settings).records(MODEL) if r["event"].startswith("guard_")]


def test_a_much_weaker_version_promoted_directly_is_rolled_back_by_the_guard(platform):
    from retrain_lib.store import registry
    from retrain_lib.store.audit import Ledger
    from retrain_lib.tools.simulate import register_weak_version

    platform.slack.requests.clear()
    bad = register_weak_version(MODEL, platform.settings, "2026-01-30", run_key="guard-weak")
    good = _promote_by_hand(platform, bad, "2026-02-04")
    run, states, _ = _run_guard(platform, bad, "2026-02-04")
    assert states["start_guard"] == states["watch_champion"] == states["finish_guard"] == "success", states
    # the version rolled back to is guarded in turn (a run of this DAG is started)
    assert states["guard_needed"] == states["guard_champion"] == "success", states
    # decided on the labels, not by the end of the guard's time
    aliases = registry.aliases(platform.client, MODEL)
    assert aliases["champion"] == good and "previous-champion" not in aliases
    platform.gateway.wait_serving(MODEL, good, 15)

    watched = xcom_return(DAG_ID, run.run_id, "watch_champion")
    assert watched["decision"]["action"] == "rollback", watched
    facts = watched["facts"]
    assert facts["labelled"] >= GUARD["min_labels"] and facts["champion_loss"] > facts["previous_loss"]
    # shown worse on the same labelled requests, or answering far from previous-champion with
    # labels that do not show it no worse: either is evidence from the same paired requests
    assert watched["decision"]["reasons"][0].startswith(("paired_loss: per-request loss", "output_shift: output PSI"))

    ledger = Ledger.from_settings(platform.settings)
    rollback = [r for r in ledger.records(MODEL) if r["event"] == "rollback"][-1]
    assert (rollback["before"], rollback["after"]) == (bad, good)
    # from the first request the bad version answered to the rollback in the ledger
    from retrain_lib.serving.predlog_read import read_predictions
    from retrain_lib.serving.predlog_store import resolve_url

    served = read_predictions(resolve_url(platform.settings, None), MODEL, "2026-01-01", arm="champion")
    first_bad = served[served["version"] == bad]["created_at"].min().to_pydatetime()
    decided = dt.datetime.fromisoformat(str(rollback["time"]))
    to_decision = (decided.replace(tzinfo=decided.tzinfo or dt.UTC) - first_bad).total_seconds()
    print(f"guard: degradation -> decision {to_decision:.1f} s (interval_s {GUARD['interval_s']})")
    assert to_decision > 0, to_decision
    assert rollback["reason"].startswith(("post-deploy guard: paired_loss", "post-deploy guard: output_shift"))
    start, end = _guard_records(platform)[-2:]
    assert (start["event"], start["details"]["version"], start["details"]["previous"]) == ("guard_start", bad, good)
    assert end["event"] == "guard_end" and end["details"]["action"] == "rollback" and end["details"]["rolled_back"]
    assert ledger.verify() == []
    # the fleet page and `retrain status` show how the guard of the bad version ended
    from retrain_lib.tools.status import model_status

    shown = model_status(platform.settings, MODEL)["guard"]
    assert (shown["state"], shown["version"], shown["previous"]) == ("rollback", bad, good), shown

    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        nxt = session.query(DagRun).filter_by(dag_id=DAG_ID, run_id=f"guard__{run.run_id}").one()
        assert nxt.conf == {"version": good, "as_of": "2026-02-04"}

    titles = [p["blocks"][0]["text"]["text"] for p in platform.slack.payloads() if p.get("blocks")]
    assert any(t.endswith(f"Rollback: {MODEL} v{bad} → v{good}") for t in titles), titles


def test_a_version_as_good_as_the_champion_is_kept_and_the_guard_ends_clean(platform):
    from retrain_lib.store import registry

    platform.slack.requests.clear()
    client = platform.client
    champion = registry.aliases(client, MODEL)["champion"]
    same = client.get_model_version(MODEL, champion)
    twin = str(client.create_model_version(MODEL, same.source, run_id=same.run_id).version)
    before = _promote_by_hand(platform, twin, "2026-02-05")
    # the run shortens the config's 0.5 minutes (the demo bounds its guard this way)
    run, states, took = _run_guard(platform, twin, "2026-02-05", minutes=0.4)
    assert states["finish_guard"] == "success" and states["guard_champion"] == "skipped", states
    print(f"guard: clean guard of 0.4 minutes took {took:.1f} s")
    aliases = registry.aliases(client, MODEL)
    assert aliases["champion"] == twin and aliases["previous-champion"] == before

    watched = xcom_return(DAG_ID, run.run_id, "watch_champion")
    assert watched["decision"]["action"] == "clean", watched
    assert watched["looks"] > 5 and watched["facts"]["labelled"] >= GUARD["min_labels"]
    judged = {c["name"] for c in watched["decision"]["checks"] if c["judged"]}
    assert judged == {"error_rate", "paired_loss", "output_shift"}  # no latency limit configured
    # the same model answers as previous-champion scores the same requests: no output shift
    assert watched["facts"]["output_pairs"] >= GUARD["min_requests"] and watched["facts"]["output_psi"] < 0.01
    end = _guard_records(platform)[-1]
    assert end["event"] == "guard_end" and end["details"]["action"] == "clean"
    assert end["details"]["version"] == twin and not end["details"]["rolled_back"]
    assert end["reason"].startswith("clean after 0.4 minutes"), end
    begin = _guard_records(platform)[-2]
    assert begin["event"] == "guard_start" and begin["details"]["minutes"] == 0.4, begin

    titles = [p["blocks"][0]["text"]["text"] for p in platform.slack.payloads() if p.get("blocks")]
    assert any(t.endswith(f"Guard passed: {MODEL} v{twin} stays champion") for t in titles), titles


def test_a_promotion_by_hand_on_the_command_line_says_how_to_start_its_guard(platform, capsys):
    from retrain_lib.cli.app import main
    from retrain_lib.store import registry

    previous = registry.aliases(platform.client, MODEL)["previous-champion"]
    code = main(
        ["promote", MODEL, previous, "--reason", "back to the known-good one", "--config-dir", str(platform.cfg_dir)]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"version {previous} is the champion" in out
    assert f"""airflow dags trigger {MODEL}__guard --conf '{{"version": "{previous}"}}'""" in err

    # and a rollback by hand: back to the version just replaced, in the ledger, then its guard
    from retrain_lib.store.audit import Ledger

    replaced = registry.aliases(platform.client, MODEL)["previous-champion"]
    cfg = ["--config-dir", str(platform.cfg_dir)]
    code = main(["rollback", MODEL, "--reason", "the hand promotion was a mistake", *cfg])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"rolled back from version {previous} to {replaced}" in out
    assert registry.aliases(platform.client, MODEL)["champion"] == replaced
    back = [r for r in Ledger.from_settings(platform.settings).records(MODEL) if r["event"] == "rollback"][-1]
    assert (back["before"], back["after"]) == (previous, replaced)
    assert back["reason"] == "by hand: the hand promotion was a mistake" and back["actor"].startswith("cli/")
    assert f"""airflow dags trigger {MODEL}__guard --conf '{{"version": "{replaced}"}}'""" in err
    # nothing to go back to now: exit 1, nothing moves
    assert main(["rollback", MODEL, "--reason", "again", *cfg]) == 1
    assert "no previous-champion" in capsys.readouterr().err
    assert registry.aliases(platform.client, MODEL)["champion"] == replaced
