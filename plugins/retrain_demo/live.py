"""The live part of ``make demo``: a serving gateway with traffic, a canary that is promoted
and a bad champion that its post-deploy guard rolls back, all in real Airflow runs.

1. ``retrain serve`` starts (a subprocess) and serves the model's champion; a thread sends it
   the last days' records and posts each answer's label back (``LiveTraffic``).
2. The retrain DAG runs with ``deploy_mode: canary``: the new version becomes the challenger
   and the run triggers the rollout DAG, which the demo then runs the way the scheduler
   would, with its durations shortened through the run's params (minutes instead of hours):
   shadow, then each canary step judged by the sequential test on the live labels, then
   the promotion (compare-and-swap).
3. A deliberately bad version (trained with ``max_iter: 1, max_depth: 1``) is promoted by
   hand (``promote_version``, as ``retrain promote`` does). Its guard run (``<model>__guard``)
   reads the prediction log every ``guard.interval_s``, rescores the same labelled live
   requests with previous-champion, and its sequential test on the paired losses rolls the
   champion back; the gateway follows within seconds.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

# Durations of the demo's rollout (a real one takes the config's hours): run params.
FAST_ROLLOUT = {"shadow_minutes": 0.2, "min_predictions": 150, "step_minutes": 0.2, "margin": 0.25}
# The guard ends at its first final decision; this bounds it when none comes.
DEMO_GUARD_MINUTES = 5


def _since(iso_time: str) -> float:
    return (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(iso_time)).total_seconds()


def _promotion_time(ledger, version: str) -> str:
    return [r for r in ledger.records() if r["event"] == "promote" and r["after"] == version][-1]["time"]


def _triggered(dag_id: str, run_id: str):
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
        return (run.logical_date, dict(run.conf or {})) if run else None


def _bad_version(model: str, settings, day: dt.date) -> str:
    """A version trained with one stump, carrying the champion's data tags."""
    from retrain_lib.store import registry
    from retrain_lib.tools.simulate import register_weak_version

    champion = registry.get_client(settings.tracking_uri).get_model_version_by_alias(model, registry.CHAMPION)
    tags = {k: v for k, v in champion.tags.items() if k.startswith(("data.", "trained_as_of", "config_hash"))}
    return register_weak_version(model, settings, day.isoformat(), run_key="demo/bad-model", tags=tags)


def run_live(bag, settings, ledger, model: str, day: dt.date, state_dir: Path, print) -> int:  # noqa: A002
    from retrain_lib.core.config import load_model_config
    from retrain_lib.serving.process import GatewayProcess
    from retrain_lib.serving.replay import LiveTraffic, labelled_records
    from retrain_lib.store import registry

    cfg = load_model_config(settings.models_dir / f"{model}.yaml", settings.platform)
    client = registry.get_client(settings.tracking_uri)
    seen = len(ledger.records())
    print(f"\nLive on {day}: {model} behind the serving gateway, traffic with labels, rollout and rollback")
    gateway = GatewayProcess(model, log_path=state_dir / "gateway.log")
    traffic = None
    try:
        health = gateway.start().health()
        print(
            f"  gateway {gateway.url} serves {model} v{health['models'][model]['champion']}; every prediction "
            f"logged in {settings.state_dir / 'predictions.db'} (gateway log: {state_dir / 'gateway.log'})"
        )
        records = labelled_records(cfg, settings.data_root, (day - dt.timedelta(days=6), day))
        traffic = LiveTraffic(gateway.url, model, records, batch=10).start()
        print(
            f"  traffic: {len(records)} recorded applications of the last week in a loop, 10 per request, "
            "each label posted back after the answer"
        )

        if _promoted_canary(bag, ledger, client, gateway, model, day, seen, print) != 0:
            return 1
        if _rolled_back_bad_champion(bag, settings, ledger, cfg, gateway, model, day, print) != 0:
            return 1
        print(
            f"  traffic: {traffic.sent} predictions answered, "
            f"{sum(traffic.failed.values())} requests failed {traffic.failed or ''}"
        )
        return 0
    finally:
        if traffic is not None:
            traffic.stop()
        gateway.stop()


def _promoted_canary(bag, ledger, client, gateway, model: str, day: dt.date, seen: int, print) -> int:  # noqa: A002
    """A retrain run in canary mode, its rollout on live traffic, and the gateway following the promotion."""
    from retrain_demo.runs import run_dag
    from retrain_lib.store import registry

    retrain = bag.get_dag(f"{model}__retrain")
    logical = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC)
    run_r = run_dag(
        retrain,
        logical_date=logical,
        conf={
            "as_of": day.isoformat(),
            "deploy_mode": "canary",
            "require_gain": False,
            "reason": "live demo: roll the retrained model out as a canary, which judges it on live traffic",
        },
    )
    if run_r.state != "success":
        print(f"  retrain run {run_r.run_id} ended {run_r.state}", err=True)
        return 1
    trig = _triggered(f"{model}__rollout", f"rollout__{run_r.run_id}")
    if trig is None:
        outcome = [r for r in ledger.records()[seen:] if r["event"] in ("reject", "promote")]
        print(
            f"  retrain run {run_r.run_id} started no rollout: {outcome[-1]['reason'] if outcome else '?'}",
            err=True,
        )
        return 1
    challenger = registry.aliases(client, model).get(registry.CHALLENGER)
    print(
        f"  retrain run {run_r.run_id} (deploy_mode canary): v{challenger} is the challenger; it triggered the "
        f"rollout run rollout__{run_r.run_id}"
    )
    print(f"  rollout params for the demo: {FAST_ROLLOUT} (a real rollout keeps the config's hours)")
    t0 = time.monotonic()
    rollout = bag.get_dag(f"{model}__rollout")
    run_o = run_dag(rollout, logical_date=trig[0], conf={**trig[1], **FAST_ROLLOUT})
    records_now = ledger.records()[seen:]
    _print_rollout_records(records_now, t0, print)
    if run_o.state != "success":
        print(f"  rollout run ended {run_o.state}", err=True)
        return 1
    champion = registry.aliases(client, model)[registry.CHAMPION]
    if champion != challenger:
        print(f"  the canary v{challenger} was not promoted (champion v{champion})", err=True)
        return 1
    gateway.wait_serving(model, champion)
    print(
        f"  the gateway answers with v{champion} {_since(_promotion_time(ledger, champion)):.1f} s after the "
        "promotion (registry poll every second)"
    )
    return 0


def _print_rollout_records(records: list[dict], t0: float, print) -> None:  # noqa: A002
    """One line per shadow, canary, promote and rollback decision of a rollout run."""
    for r in records:
        d = r["details"]
        if r["event"] == "rollout_shadow":
            v = d.get("verdict") or {}
            print(
                f"    shadow: {d['decision']} ({d['reason']}; output PSI {v.get('psi', float('nan')):.3f}, "
                f"{v.get('n_paired', v.get('n', '?'))} paired requests)"
            )
        elif r["event"] == "rollout_canary":
            print(
                f"    canary {d['percent']:g}%: {d['decision']} after {d['labelled']['challenger']} labelled "
                f"challenger requests ({d['reason']})"
            )
        elif r["event"] == "promote":
            print(
                f"    promoted v{r['after']} (was v{r['before']}), compare-and-swap, {time.monotonic() - t0:.0f} s "
                "after the rollout began"
            )
        elif r["event"] == "rollout_rollback":
            print(f"    rolled back v{d['version']}: {d['reason']}")


def _rolled_back_bad_champion(bag, settings, ledger, cfg, gateway, model: str, day: dt.date, print) -> int:  # noqa: A002
    """A bad version promoted by hand, and its post-deploy guard rolling it back once the
    labelled live requests show it worse than previous-champion on the same requests."""
    from retrain_demo.runs import run_dag
    from retrain_lib.pipeline.promotion import promote_version

    bad = _bad_version(model, settings, day)
    promote_version(
        model,
        bad,
        settings=settings,
        as_of=day.isoformat(),
        actor="demo/on-call",
        reason="hotfix promoted by hand without gates (trained with max_iter 1, max_depth 1)",
    )
    gateway.wait_serving(model, bad)
    print(
        f"  v{bad} (trained with max_iter 1, max_depth 1) promoted by hand, as `retrain promote` does; "
        "the gateway serves it"
    )
    seen = len(ledger.records())
    guard = bag.get_dag(f"{model}__guard")
    print(
        f"  {guard.dag_id} watches v{bad}: its deferred check reads the prediction log every "
        f"{cfg.guard.interval_s:g} s (for at most {DEMO_GUARD_MINUTES} minutes here, {cfg.guard.minutes:g} in the config)"
    )
    run_g = run_dag(
        guard,
        logical_date=dt.datetime.combine(day, dt.time(18), tzinfo=dt.UTC),
        conf={"as_of": day.isoformat(), "version": bad, "minutes": DEMO_GUARD_MINUTES},
    )
    if run_g.state != "success":
        print(f"  guard run {run_g.run_id} ended {run_g.state}", err=True)
        return 1
    new = ledger.records()[seen:]
    end = next((r for r in new if r["event"] == "guard_end"), None)
    back = next((r for r in new if r["event"] == "rollback"), None)
    if back is None:
        print(f"  the guard did not roll the bad champion back: {end['reason'] if end else '?'}", err=True)
        return 1
    facts = end["details"]["facts"] if end else {}
    print(
        f"  guard run {run_g.run_id} -> rollback {_since(_promotion_time(ledger, bad)) - _since(back['time']):.0f} s "
        f"after the promotion, on {facts.get('labelled', '?')} labelled requests: {back['reason'].removeprefix('post-deploy guard: ')}"
    )
    gateway.wait_serving(model, back["after"])
    print(
        f"  its finish_guard task moved champion v{back['before']} -> v{back['after']}; the gateway answers "
        f"with v{back['after']} {_since(back['time']):.1f} s after that decision"
    )
    return 0
