"""Parallel replay: :func:`run_policies` trains the first models (one per training window)
and replays every policy, in a process pool (``spawn``) when ``workers > 1``. The workers
share trained models through the :class:`~retrain_lib.tools.artifact_store.ArtifactStore`'s
directory."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.config_platform import PlatformConfig
from retrain_lib.store.data import cache_partitions
from retrain_lib.tools.artifact_store import ArtifactStore, artifact_key
from retrain_lib.tools.backtest_policies import Policy
from retrain_lib.tools.replay import PolicyRun, run_policy
from retrain_lib.tools.replay_context import ReplaySettings


def _worker_init() -> None:
    cache_partitions()
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # noqa: BLE001 - only a performance hint
        pass
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def _train_job(cfg_json: dict, data_root: str, platform_json: dict | None, as_of: str, cache: str) -> str:
    cfg = ModelConfig.model_validate(cfg_json)
    platform = PlatformConfig.model_validate(platform_json) if platform_json is not None else None
    store = ArtifactStore(Path(cache))
    art, _ = store.trained(cfg, ReplaySettings(Path(data_root), platform), dt.date.fromisoformat(as_of))
    return art.key


def _policy_job(
    policy: Policy,
    cfg_json: dict,
    data_root: str,
    platform_json: dict | None,
    days: list[str],
    cache: str,
    initial: tuple[dict, str] | None,
) -> PolicyRun:
    policy = Policy(
        policy.name,
        ModelConfig.model_validate(cfg_json),
        policy.monitor,
        policy.floor,
        policy.daily,
        policy.gates,
        policy.source,
    )
    platform = PlatformConfig.model_validate(platform_json) if platform_json is not None else None
    init = (ModelConfig.model_validate(initial[0]), dt.date.fromisoformat(initial[1])) if initial else None
    return run_policy(
        policy,
        ReplaySettings(Path(data_root), platform),
        ArtifactStore(Path(cache)),
        [dt.date.fromisoformat(d) for d in days],
        initial=init,
    )


def _pool(workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
    )


def run_policies(
    policies: list[Policy],
    settings: ReplaySettings,
    days: list[dt.date],
    *,
    cache_dir: Path,
    workers: int = 1,
    pretrain: Sequence[tuple[ModelConfig, dt.date]] = (),
    initial: tuple[ModelConfig, dt.date] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, PolicyRun]:
    """Train ``pretrain`` (config, day) models in parallel, then replay every policy (in
    parallel with ``workers > 1``). Models are shared through ``cache_dir``."""
    import contextlib

    store = ArtifactStore(cache_dir)
    say = progress or (lambda _m: None)
    todo = [(c, d) for c, d in pretrain if store.get(artifact_key(c, settings, d)) is None]
    platform_json = settings.platform.model_dump(mode="json") if settings.platform is not None else None
    parallel = workers > 1 and (len(todo) > 1 or len(policies) > 1)
    runs: dict[str, PolicyRun] = {}
    # One pool for both phases: its workers import scikit-learn and Great Expectations once.
    with _pool(workers) if parallel else contextlib.nullcontext() as pool:
        if todo:
            say(f"training {len(todo)} model(s) (one per training window) with {workers} worker(s)")
            _pretrain(pool, store, settings, todo, platform_json, cache_dir, say)
        say(
            f"replaying {len(days)} day(s) for {len(policies)} polic{'y' if len(policies) == 1 else 'ies'}: "
            + ", ".join(p.name for p in policies)
        )
        if pool is not None and len(policies) > 1:
            runs = _replay_in_pool(pool, policies, settings, days, platform_json, cache_dir, initial, say)
        else:
            for p in policies:
                runs[p.name] = run_policy(p, settings, store, days, initial=initial, progress=say)
                say(f"{p.name}: done in {runs[p.name].wall_s:.0f} s")
    return {p.name: runs[p.name] for p in policies}


def _pretrain(
    pool,
    store: ArtifactStore,
    settings: ReplaySettings,
    todo: list[tuple[ModelConfig, dt.date]],
    platform_json: dict | None,
    cache_dir: Path,
    say: Callable[[str], None],
) -> None:
    """Train the ``todo`` (config, day) models into the store (in ``pool`` if there is one
    and more than one model to train)."""
    if pool is not None and len(todo) > 1:
        from concurrent.futures import as_completed

        futures = [
            pool.submit(
                _train_job,
                c.model_dump(mode="json"),
                str(settings.data_root),
                platform_json,
                d.isoformat(),
                str(cache_dir),
            )
            for c, d in todo
        ]
        for i, fut in enumerate(as_completed(futures), 1):
            fut.result()
            if i % 5 == 0 or i == len(futures):
                say(f"trained {i}/{len(futures)}")
    else:
        for i, (c, d) in enumerate(todo, 1):
            store.trained(c, settings, d)
            if i % 5 == 0 or i == len(todo):
                say(f"trained {i}/{len(todo)}")


def _replay_in_pool(
    pool,
    policies: list[Policy],
    settings: ReplaySettings,
    days: list[dt.date],
    platform_json: dict | None,
    cache_dir: Path,
    initial: tuple[ModelConfig, dt.date] | None,
    say: Callable[[str], None],
) -> dict[str, PolicyRun]:
    """Replay each policy in a worker of ``pool``; the runs by policy name."""
    from concurrent.futures import as_completed

    init = (initial[0].model_dump(mode="json"), initial[1].isoformat()) if initial else None
    futures = {
        pool.submit(
            _policy_job,
            p,
            p.cfg.model_dump(mode="json"),
            str(settings.data_root),
            platform_json,
            [d.isoformat() for d in days],
            str(cache_dir),
            init,
        ): p.name
        for p in policies
    }
    runs: dict[str, PolicyRun] = {}
    for fut in as_completed(futures):
        name = futures[fut]
        runs[name] = fut.result()
        say(f"{name}: done in {runs[name].wall_s:.0f} s")
    return runs
