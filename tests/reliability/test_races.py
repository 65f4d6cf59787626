"""Races on one model, against a real MLflow store and the platform's ledger: two retrain
runs at once, and a manual promotion racing an automatic rollback. Every trial must end with
exactly one outcome per contender, a champion that matches the ledger's last champion change,
no lost update (each change starts where the previous one ended), no version promoted twice,
and a verifiable hash chain. Violations are counted per trial (``race_violations``)."""

from __future__ import annotations

import threading

import pytest
from harness import champion, make_platform, platform_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "credit_default"
RETRAIN_TRIALS = 3
PROMOTE_ROLLBACK_TRIALS = 20


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    from retrain_lib.pipeline.retrain_run import retrain_model

    root = tmp_path_factory.mktemp("races")
    settings, cfg_dir = make_platform(root, days=35, rows_per_day=150)
    with platform_env(root, cfg_dir):
        first = retrain_model(MODEL, "2026-01-28", settings=settings, actor="race/setup")
        assert first.outcome == "deployed", first
        yield settings, first


def _chain_problems(settings) -> list[str]:
    """What is wrong with the ledger's story of the champion (empty when consistent)."""
    from retrain_lib.store import audit, registry

    ledger = audit.Ledger.from_settings(settings)
    problems = list(ledger.verify())
    changes = [r for r in ledger.records(MODEL) if r["event"] in ("promote", "rollback")]
    for prev, nxt in zip(changes, changes[1:]):
        if nxt["before"] != prev["after"]:
            problems.append(
                f"lost update: seq {nxt['seq']} starts from {nxt['before']}, seq {prev['seq']} ended at {prev['after']}"
            )
    promoted = [r["after"] for r in changes if r["event"] == "promote"]
    if len(promoted) != len(set(promoted)):
        problems.append(f"a version promoted twice: {promoted}")
    now = registry.aliases(registry.get_client(settings.tracking_uri), MODEL).get("champion")
    if changes and changes[-1]["after"] != now:
        problems.append(f"champion is {now} but the ledger's last change says {changes[-1]['after']}")
    return problems


def _race(*fns):
    """Run the functions at the same instant (a barrier); ``[(result, exception)]``."""
    barrier = threading.Barrier(len(fns))
    out: list = [None] * len(fns)

    def run(i, fn):
        try:
            barrier.wait(timeout=60)
            out[i] = (fn(), None)
        except BaseException as exc:  # noqa: BLE001 - an outcome of the race
            out[i] = (None, exc)

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return out


def test_race_two_retrain_runs_of_one_model(platform, reliability):
    """Two retrain runs of the model (two DAG runs, or a DAG run and ``retrain retrain``) train,
    evaluate, gate, register and deploy at the same time from the same champion."""
    from retrain_lib.pipeline.evaluation import check_gates, evaluate_candidate
    from retrain_lib.pipeline.promotion import deploy_candidate, reject_candidate
    from retrain_lib.pipeline.registration import register_candidate
    from retrain_lib.pipeline.snapshot import snapshot_data
    from retrain_lib.pipeline.training_run import train_candidate

    settings, _ = platform
    violations: list[str] = []
    root = settings.state_dir.parent
    with platform_env(root, settings.config_dir):
        for trial in range(RETRAIN_TRIALS):
            as_of = f"2026-02-0{trial + 1}"
            snap = snapshot_data(MODEL, as_of, settings=settings, actor="race")
            assert snap.valid, snap.problems
            start_champion = champion(settings)

            def one_run(i, snap=snap, trial=trial, as_of=as_of):
                actor = f"race/{trial}/{i}"
                trained = train_candidate(MODEL, snap, settings=settings, run_key=actor, actor=actor)
                evaluation = evaluate_candidate(MODEL, snap, trained, settings=settings)
                gates = check_gates(MODEL, evaluation, trained, settings=settings, as_of=as_of, actor=actor, snap=snap)
                if not gates.passed:
                    reject_candidate(MODEL, trained, gates, settings=settings, as_of=as_of, actor=actor)
                    return {"outcome": "rejected", "version": None}
                registered = register_candidate(MODEL, snap, trained, evaluation, gates, settings=settings)
                deployed = deploy_candidate(
                    MODEL,
                    registered,
                    evaluation,
                    settings=settings,
                    as_of=as_of,
                    actor=actor,
                    reason=f"race {trial}",
                    snap=snap,
                    trained=trained,
                )
                outcome = "rejected" if deployed.rejected else ("promoted" if deployed.moves else "none")
                return {
                    "outcome": outcome,
                    "version": registered.version,
                    "reevaluated": deployed.reevaluated,
                    "against": evaluation.champion_version,
                }

            results = _race(lambda: one_run(0), lambda: one_run(1))
            problems = [f"run raised {exc!r}" for _, exc in results if exc is not None]
            outs = [r for r, exc in results if exc is None]
            if any(o["outcome"] not in ("promoted", "rejected") for o in outs):
                problems.append(f"a run ended without an outcome: {outs}")
            made = [o["version"] for o in outs if o["version"]]
            if len(made) != len(set(made)):
                problems.append(f"both runs got the same version: {outs}")
            promoted = [o for o in outs if o["outcome"] == "promoted"]
            # A run that finished before the other evaluated has promoted legitimately: the violation
            # is two promotions evaluated against the same champion with no re-evaluation.
            if (
                len(promoted) == 2
                and promoted[0]["against"] == promoted[1]["against"]
                and not any(o["reevaluated"] for o in promoted)
            ):
                problems.append(f"both promoted on the same evidence (champion {start_champion}): {outs}")
            problems += _chain_problems(settings)
            violations += [f"trial {trial}: {p}" for p in problems]
    reliability("race", race_trials=RETRAIN_TRIALS, race_violations=len(violations))
    assert violations == []


def test_race_manual_promotion_against_automatic_rollback(platform, reliability):
    """A person promotes version C by hand (``retrain promote``, having seen champion B) while
    the monitor's ``rollback_champion`` rolls B back to its previous champion: exactly one of
    them moves the champion, the other is refused because the champion it saw is gone."""
    from retrain_lib.core.errors import StaleChampionError
    from retrain_lib.pipeline.promotion import promote_version, rollback_model
    from retrain_lib.store import registry
    from retrain_lib.store.audit import Ledger

    settings, first = platform
    violations: list[str] = []
    wins = {"promotion": 0, "rollback": 0}
    root = settings.state_dir.parent
    with platform_env(root, settings.config_dir):
        client = registry.get_client(settings.tracking_uri)
        trained = first.trained
        ledger = Ledger.from_settings(settings)

        def new_version() -> str:
            return str(client.create_model_version(MODEL, trained.model_uri, run_id=trained.run_id).version)

        for trial in range(PROMOTE_ROLLBACK_TRIALS):
            previous = champion(settings)
            b = new_version()
            # the race is on the aliases and the ledger: the serving check (a process per call) is not raced
            promote_version(
                MODEL,
                b,
                settings=settings,
                actor="setup",
                reason=f"trial {trial} setup",
                expected_champion=previous,
                check_serving=False,
            )
            c = new_version()
            seq = ledger.head()["seq"]
            results = _race(
                lambda c=c, b=b: promote_version(
                    MODEL,
                    c,
                    settings=settings,
                    actor="human",
                    reason="known-good version",
                    expected_champion=b,
                    check_serving=False,
                ),
                lambda b=b: rollback_model(
                    MODEL, settings=settings, actor="monitor", reason="champion degraded", expected_champion=b
                ),
            )
            (promo, promo_exc), (back, back_exc) = results
            promoted = promo_exc is None and promo and promo.get("promoted")
            rolled = back_exc is None and back and back.get("rolled_back")
            problems = []
            if promo_exc is not None and not isinstance(promo_exc, StaleChampionError):
                problems.append(f"promotion raised {promo_exc!r}")
            if back_exc is not None:
                problems.append(f"rollback raised {back_exc!r}")
            if bool(promoted) == bool(rolled):
                problems.append(f"outcomes: promotion {promo or promo_exc!r}, rollback {back or back_exc!r}")
            expected_now = c if promoted else previous
            if champion(settings) != expected_now:
                problems.append(f"champion {champion(settings)}, expected {expected_now}")
            new = [r for r in ledger.records(MODEL) if r["seq"] > seq]
            if [(r["event"], r["before"], r["after"]) for r in new] != [
                ("promote", b, c) if promoted else ("rollback", b, previous)
            ]:
                problems.append(f"ledger rows of the race: {[(r['event'], r['before'], r['after']) for r in new]}")
            problems += _chain_problems(settings)
            wins["promotion" if promoted else "rollback"] += 1
            violations += [f"trial {trial}: {p}" for p in problems]
    reliability("race", race_trials=PROMOTE_ROLLBACK_TRIALS, race_violations=len(violations))
    assert violations == [], violations
    assert sum(wins.values()) == PROMOTE_ROLLBACK_TRIALS
