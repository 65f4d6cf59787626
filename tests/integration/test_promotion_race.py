"""Two retrain runs racing to promote a candidate of the same model, 20 times, against a real
MLflow store and the platform's ledger.

Both runs evaluated their candidate against the same champion; both reach the promotion at
the same instant (a barrier). Compare-and-swap under the ledger lock must let exactly one
promote on that evidence; the other sees the champion moved, evaluates again against the
new champion and is promoted or rejected on that new evidence. Never a lost update (each
promotion's "before" is the previous promotion's "after"), never a version promoted twice,
and the ledger chain stays verifiable.
"""

from __future__ import annotations

import threading

import pytest
from platforms import credit_platform

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "credit_default"
TRIALS = 20


def _light(raw: dict) -> None:
    raw.pop("validation", None)
    # the race is about the registry and the ledger: gates that only read metrics keep trials quick
    raw["gates"] = [{"metric": "roc_auc", "min": 0.6}, {"metric": "roc_auc", "max_regression": 0.01}]


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with credit_platform(tmp_path_factory.mktemp("race"), days=35, rows_per_day=300, seed=5, edit=_light) as (
        settings,
        _,
        _,
    ):
        yield settings


def test_racing_promotions_never_lose_an_update_or_promote_twice(platform):
    from retrain_lib.pipeline.evaluation import evaluate_candidate
    from retrain_lib.pipeline.promotion import deploy_candidate
    from retrain_lib.pipeline.records import Registered
    from retrain_lib.pipeline.retrain_run import retrain_model
    from retrain_lib.store import registry
    from retrain_lib.store.audit import Ledger

    settings = platform
    first = retrain_model(MODEL, "2026-01-30", settings=settings, actor="race/setup")
    assert first.outcome == "deployed", first
    snap, trained = first.snapshot, first.trained
    client = registry.get_client(settings.tracking_uri)
    ledger = Ledger.from_settings(settings)
    promoted: list[str] = []
    reevaluations = 0

    for trial in range(TRIALS):
        champion = registry.aliases(client, MODEL)["champion"]
        evaluation = evaluate_candidate(MODEL, snap, trained, settings=settings)
        assert evaluation.champion_version == champion
        # two fresh versions of the same trained model, as two retrain runs would register
        candidates = [
            str(client.create_model_version(MODEL, trained.model_uri, run_id=trained.run_id).version) for _ in range(2)
        ]
        barrier = threading.Barrier(2)
        results: dict[str, dict] = {}
        errors: list[BaseException] = []

        def promote(
            version: str, barrier=barrier, results=results, errors=errors, evaluation=evaluation, trial=trial
        ) -> None:
            try:
                barrier.wait(timeout=60)
                results[version] = deploy_candidate(
                    MODEL,
                    Registered(version=version, run_id=trained.run_id),
                    evaluation,
                    settings=settings,
                    as_of="2026-01-30",
                    actor=f"race/{trial}/{version}",
                    reason=f"trial {trial}",
                    snap=snap,
                    trained=trained,
                )
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=promote, args=(v,)) for v in candidates]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert not errors, errors
        # exactly one promoted on the original evidence; the other had to look again
        direct = [v for v, r in results.items() if r.moves and not r.reevaluated]
        assert len(direct) == 1, results
        again = [v for v, r in results.items() if r.reevaluated]
        assert len(again) == 1, results
        assert results[again[0]].reevaluated[0]["champion_was"] == champion
        assert results[again[0]].reevaluated[0]["champion_now"] == direct[0]
        reevaluations += 1
        promoted += [v for v in (direct[0], again[0]) if results[v].moves]
        current = registry.aliases(client, MODEL)
        assert current["champion"] == promoted[-1]

    # the ledger tells the whole story, with no gap and no fork
    promotions = [r for r in ledger.records(MODEL) if r["event"] == "promote"]
    chain = [(r["before"], r["after"]) for r in promotions]
    for (_, after), (before, _) in zip(chain, chain[1:]):
        assert before == after, chain  # no lost update
    afters = [after for _, after in chain]
    assert len(afters) == len(set(afters)), chain  # no version promoted twice
    assert afters[1:] == promoted
    final = registry.aliases(client, MODEL)
    assert final["champion"] == afters[-1] and final["previous-champion"] == chain[-1][0]
    assert ledger.verify() == []
    assert reevaluations == TRIALS
