"""Fitting a model config's scikit-learn pipeline, in-process or in a child process with a
timeout.

The estimator comes from an import path restricted to allowed module prefixes (default
``sklearn.``, :func:`~retrain_lib.learn.estimator_import.load_estimator_class`); preprocessing
follows the declared feature types (:func:`~retrain_lib.learn.training_pipeline.build_pipeline`).

:func:`fit` trains and says what happened (:class:`TrainingInfo`); :func:`train_model`
returns only the pipeline. Options of ``training:`` in a model config:

* ``recency`` -- recent rows weigh more (:func:`~retrain_lib.learn.training_data.sample_weights`),
  passed to the estimator's ``fit`` as ``sample_weight``;
* ``timeout_minutes`` -- the fit runs in a child process (``spawn`` start method: the parent
  may run threads, so no plain ``fork``) that is killed when the time is up. The limit
  includes the child's start-up: a fresh interpreter importing numpy, pandas and
  scikit-learn (about 5-8 s on a busy 2-core machine) plus, as multiprocessing does, the
  parent's ``__main__`` script (under the ``airflow`` console script that imports Airflow;
  ``python -m airflow`` avoids it). Predictions equal those of an in-process fit;
* ``recency`` with ``warm_start``: the weights apply to the new rows the fit continues on;
* ``warm_start`` / ``warm_start_extra`` -- continue from the champion's fitted pipeline
  (:func:`~retrain_lib.learn.warm_start.warm_start_plan`).
  Reproducibility: a warm-started model depends on its parent version as well as on its
  data and config; :attr:`TrainingInfo.warm_started_from` records the parent.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import ConfigError, DataError, TrainingError
from retrain_lib.learn.estimator_import import accepts_sample_weight, load_estimator_class
from retrain_lib.learn.training_data import recent_share, sample_weights, xy
from retrain_lib.learn.training_pipeline import build_pipeline
from retrain_lib.learn.warm_start import warm_start_plan

log = logging.getLogger(__name__)

START_METHOD: Final = "spawn"
"""Start method of the child process of a fit with a timeout (``spawn`` or ``forkserver``)."""


@dataclass(frozen=True)
class TrainingInfo:
    """What :func:`fit` did.

    Attributes:
        estimator: import path of the estimator.
        rows: training rows.
        duration_s: wall-clock seconds of the fit (with the child-process overhead if any).
        weighted_rows_share: share of rows in the recent window (``recency.days``, else one
            ``half_life_days``); None without recency weighting.
        recent_weight_share: share of the total sample weight those rows carry; None without
            recency weighting.
        warm_started_from: the parent the model continues (``init_model_ref`` or
            ``"init_model"``); None when trained from scratch.
        timeout_s: the time limit of the fit; None = in-process without limit.
        child_process: whether the fit ran in a child process.
        notes: human-readable notes (warm start outcome, ...), also logged.
    """

    estimator: str
    rows: int
    duration_s: float
    weighted_rows_share: float | None = None
    recent_weight_share: float | None = None
    warm_started_from: str | None = None
    timeout_s: float | None = None
    child_process: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["notes"] = list(self.notes)
        return out


def _thread_limits() -> dict[str, int]:
    """The parent's thread counts per API (openmp, blas), to reproduce them in the child."""
    from threadpoolctl import threadpool_info

    limits: dict[str, int] = {}
    for lib in threadpool_info():
        api, n = lib.get("user_api"), lib.get("num_threads")
        if api and n:
            limits[api] = min(limits.get(api, n), n)
    return limits


def _child_fit(conn, target, args, kwargs, seed, limits) -> None:
    """Runs in the child process: fit ``target`` and send it back (or the error)."""
    try:
        from threadpoolctl import threadpool_limits

        np.random.seed(seed)
        with threadpool_limits(limits=limits or None):
            target.fit(*args, **kwargs)
        conn.send(("ok", target))
    except BaseException as exc:  # reported to the parent, which raises
        try:
            conn.send(("error", type(exc).__name__, str(exc), isinstance(exc, ValueError)))
        except Exception:  # e.g. the parent is gone
            pass
    finally:
        conn.close()


def _kill(proc) -> None:
    if proc.is_alive():
        proc.kill()
    proc.join(5)


def _fit_in_child(cfg: ModelConfig, target, args, kwargs, timeout_s: float, rows: int):
    """Fit ``target`` in a child process; kill it after ``timeout_s`` seconds."""
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context(START_METHOD)
    log.info(
        "fitting %s for %s in a child process (%s) with a timeout of %g s",
        cfg.training.estimator,
        cfg.name,
        START_METHOD,
        timeout_s,
    )
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_child_fit,
        name=f"train-{cfg.name}",
        args=(sender, target, args, kwargs, cfg.training.seed, _thread_limits()),
    )
    deadline = time.monotonic() + timeout_s
    try:
        proc.start()
        sender.close()  # the child holds the only write end: its death means EOF here
        ready = wait([receiver], timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            _kill(proc)
            minutes = timeout_s / 60
            raise TrainingError(
                f"training of {cfg.name!r} ({cfg.training.estimator} on {rows} rows) exceeded its timeout of "
                f"{minutes:g} minutes ({timeout_s:g} s) and was stopped; raise training.timeout_minutes or reduce "
                "the work: fewer iterations/trees in training.params or a shorter windows.training_days"
            )
        try:
            message = receiver.recv()
        except EOFError:
            proc.join(5)
            raise TrainingError(
                f"training of {cfg.name!r} ({cfg.training.estimator}) died in its child process "
                f"(exit code {proc.exitcode}) without a result; it may have run out of memory, "
                "check the worker's resources"
            ) from None
        proc.join(max(1.0, deadline - time.monotonic()))
    finally:
        _kill(proc)
        receiver.close()
    if message[0] == "ok":
        return message[1]
    _, kind, text, _ = message
    raise TrainingError(f"fitting {cfg.training.estimator} failed: {kind}: {text}")


def _fit_target(cfg: ModelConfig, target, args, kwargs, timeout_s: float | None, rows: int):
    if timeout_s is None:
        np.random.seed(cfg.training.seed)
        try:
            return target.fit(*args, **kwargs)
        except ValueError as exc:
            raise TrainingError(f"fitting {cfg.training.estimator} failed: {exc}") from exc
    return _fit_in_child(cfg, target, args, kwargs, timeout_s, rows)


def fit(
    cfg: ModelConfig,
    train: pd.DataFrame,
    allowed_prefixes=("sklearn.",),
    *,
    as_of=None,
    init_model=None,
    init_model_ref: str | None = None,
    timeout_s: float | None = None,
):
    """Fit the configured pipeline on ``train``; returns ``(pipeline, TrainingInfo)``.

    Args:
        cfg: the model config (``training`` section: estimator, params, seed, recency,
            timeout_minutes, warm_start, warm_start_extra).
        train: labelled training rows.
        allowed_prefixes: modules the estimator may come from (platform.yaml).
        as_of: anchor of the recency window (a date: the end of that day); default: the
            latest timestamp in ``train``. Only used with ``training.recency``.
        init_model: the champion's fitted pipeline; continued when ``training.warm_start``
            is set and possible, else ignored (the reason is in ``info.notes``).
        init_model_ref: how to name the parent in ``info.warm_started_from`` (e.g.
            ``"models:/credit_default/7"``).
        timeout_s: time limit in seconds; default ``training.timeout_minutes``. With a limit
            the fit runs in a child process and is killed when the time is up.

    Raises:
        ConfigError: bad estimator/params, or recency with an estimator without
            ``sample_weight``.
        DataError: a single class in classification training data; missing timestamps
            with recency weighting.
        TrainingError: the fit failed, died or exceeded the timeout.

    A warm-started pipeline reuses the champion's fitted preprocessing (medians, scaling,
    categories) unchanged, so categories first seen since the champion are ignored until
    a from-scratch retrain; and it depends on its parent version (reproducible only from it).

    Example::

        pipeline, info = fit(cfg, split.train, as_of=dt.date(2026, 3, 1))
        info.duration_s, info.weighted_rows_share, info.warm_started_from
    """
    t = cfg.training
    if timeout_s is None and t.timeout_minutes is not None:
        timeout_s = t.timeout_minutes * 60
    if timeout_s is not None and not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
        raise ValueError(
            f"The 'timeout_s' parameter of fit must be a positive number or None. Got {timeout_s!r} instead."
        )
    cls = load_estimator_class(t.estimator, allowed_prefixes)
    if t.recency is not None and not accepts_sample_weight(cls):
        raise ConfigError(
            f"training.recency needs an estimator whose fit accepts sample_weight and "
            f"{t.estimator}.fit does not; remove training.recency or choose another estimator"
        )
    X, y = xy(cfg, train)
    if cfg.task == "classification" and len(np.unique(y)) < 2:
        raise DataError(f"training data of {cfg.name!r} holds a single class; cannot train a classifier")
    weights = sample_weights(cfg, train, as_of)
    recent_rows, recent_weight = recent_share(cfg, train, as_of, weights)

    notes: list[str] = []
    pre = model = None
    if t.warm_start and init_model is not None:
        pre, model, note = warm_start_plan(cfg, cls, init_model)
        notes.append(note)
        log.info("%s: %s", cfg.name, note)
    elif t.warm_start:
        notes.append("no champion to continue: trained from scratch")
        log.info("%s: warm_start is set but there is no champion; training from scratch", cfg.name)

    started = time.monotonic()
    if model is not None:
        from sklearn.pipeline import Pipeline

        assert pre is not None  # warm_start_plan gives both or neither
        kwargs = {} if weights is None else {"sample_weight": weights}
        fitted = _fit_target(cfg, model, (pre.transform(X), y), kwargs, timeout_s, len(train))
        pipeline = Pipeline([("preprocess", pre), ("model", fitted)])
    else:
        kwargs = {} if weights is None else {"model__sample_weight": weights}
        pipeline = _fit_target(cfg, build_pipeline(cfg, allowed_prefixes), (X, y), kwargs, timeout_s, len(train))
    duration = time.monotonic() - started
    info = TrainingInfo(
        estimator=t.estimator,
        rows=len(train),
        duration_s=duration,
        weighted_rows_share=recent_rows,
        recent_weight_share=recent_weight,
        warm_started_from=(init_model_ref or "init_model") if model is not None else None,
        timeout_s=None if timeout_s is None else float(timeout_s),
        child_process=timeout_s is not None,
        notes=tuple(notes),
    )
    return pipeline, info


def train_model(
    cfg: ModelConfig,
    train: pd.DataFrame,
    allowed_prefixes=("sklearn.",),
    *,
    as_of=None,
    init_model=None,
    timeout_s: float | None = None,
):
    """Fit the configured pipeline on ``train``; returns the fitted pipeline (see :func:`fit`)."""
    pipeline, _ = fit(cfg, train, allowed_prefixes, as_of=as_of, init_model=init_model, timeout_s=timeout_s)
    return pipeline
