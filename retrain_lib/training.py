"""Training a scikit-learn pipeline from a model config.

The estimator comes from an import path restricted to allowed module prefixes (default
``sklearn.``) and must be a class that follows the estimator API: a YAML file never names
an arbitrary callable. Preprocessing follows the declared feature types.

:func:`fit` trains and says what happened (:class:`TrainingInfo`); :func:`train_model`
returns only the pipeline. Options of ``training:`` in a model config:

* ``recency`` -- recent rows weigh more (:func:`sample_weights`), passed to the estimator's
  ``fit`` as ``sample_weight``;
* ``timeout_minutes`` -- the fit runs in a child process (``spawn`` start method: the parent
  may run threads, so no plain ``fork``) that is killed when the time is up. The limit
  includes the child's start-up: a fresh interpreter importing numpy, pandas and
  scikit-learn (about 5-8 s on a busy 2-core machine) plus, as multiprocessing does, the
  parent's ``__main__`` script (under the ``airflow`` console script that imports Airflow;
  ``python -m airflow`` avoids it). Predictions equal those of an in-process fit;
* ``recency`` with ``warm_start``: the weights apply to the new rows the fit continues on;
* ``warm_start`` / ``warm_start_extra`` -- continue from the champion's fitted pipeline.
  Reproducibility: a warm-started model depends on its parent version as well as on its
  data and config; :attr:`TrainingInfo.warm_started_from` records the parent.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib
import inspect
import logging
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from retrain_lib.config import ModelConfig
from retrain_lib.errors import ConfigError, DataError, TrainingError
from retrain_lib.estimators import module_allowed

log = logging.getLogger(__name__)

# module.Class, no private or dunder part (``sklearn.__class__`` is not an estimator)
_IMPORT_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")
_EXAMPLE = "e.g. 'sklearn.ensemble.RandomForestClassifier'"
START_METHOD = "spawn"
"""Start method of the child process of a fit with a timeout (``spawn`` or ``forkserver``)."""


# -----------------------------------------------------------------------------------------
# Estimator import path
# -----------------------------------------------------------------------------------------


def _estimator_error(path: str, reason: str, fix: str) -> ConfigError:
    return ConfigError(f"training.estimator {path!r} {reason}; {fix}")


def load_estimator_class(path: str, allowed_prefixes=("sklearn.",)):
    """Import an estimator class by dotted path, refusing anything outside ``allowed_prefixes``.

    The module is checked *before* it is imported, so a config can never cause the import of
    a module outside the prefixes. The attribute must be a (non-abstract) class with ``fit``
    and ``get_params`` defined in an allowed module: a function (``os.system``,
    ``sklearn.utils.all_estimators``) or a class an allowed module merely re-exports from
    elsewhere (``sklearn.base.defaultdict``) is refused.

    Raises:
        ConfigError: naming ``training.estimator``, the value, the reason and the fix.

    >>> load_estimator_class("sklearn.linear_model.LogisticRegression").__name__
    'LogisticRegression'
    """
    prefixes = list(allowed_prefixes)
    allowed_fix = "use a scikit-learn estimator class, or add its module to allowed_estimator_prefixes in platform.yaml"
    if not isinstance(path, str) or not _IMPORT_PATH.fullmatch(path):
        raise _estimator_error(str(path), "is not an import path", f"write module.Class, {_EXAMPLE}")
    module_name, _, attr = path.rpartition(".")
    if not module_allowed(module_name, prefixes):
        raise _estimator_error(path, f"is outside the allowed modules {prefixes}", allowed_fix)
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise _estimator_error(path, f"cannot be imported: {exc}", f"check the spelling, {_EXAMPLE}") from exc
    if not inspect.isclass(cls):
        kind = "a function" if callable(cls) else f"a {type(cls).__name__}"
        raise _estimator_error(
            path, f"is not a scikit-learn estimator class (it is {kind})", f"name an estimator class, {_EXAMPLE}"
        )
    if not module_allowed(cls.__module__, prefixes):
        raise _estimator_error(
            path,
            f"is outside the allowed modules {prefixes}: it is {cls.__module__}.{cls.__qualname__} "
            f"re-exported by {module_name}",
            allowed_fix,
        )
    if not (callable(getattr(cls, "fit", None)) and callable(getattr(cls, "get_params", None))):
        raise _estimator_error(
            path,
            "is not a scikit-learn estimator class (it has no fit/get_params)",
            f"name an estimator class, {_EXAMPLE}",
        )
    if inspect.isabstract(cls):
        raise _estimator_error(
            path,
            "is not a scikit-learn estimator class (it is abstract)",
            f"name a concrete estimator class, {_EXAMPLE}",
        )
    return cls


def accepts_sample_weight(cls) -> bool:
    """Whether ``cls.fit`` takes a ``sample_weight`` argument."""
    try:
        params = inspect.signature(cls.fit).parameters
    except (TypeError, ValueError):
        return False
    return "sample_weight" in params


def check_training_config(cfg: ModelConfig, allowed_prefixes=("sklearn.",)) -> list[tuple[tuple, str, str]]:
    """Problems of ``cfg.training`` that need the estimator class: ``(location, reason, fix)``
    each, the shape of :meth:`ModelConfig.cross_field_problems`.

    Imports the estimator (scikit-learn), so call it from ``config check`` / CI, not at DAG
    parse time. Finds: an estimator outside the prefixes or not an estimator class, params
    the class does not take, ``recency`` with an estimator whose ``fit`` has no
    ``sample_weight``, ``warm_start`` with an estimator without a ``warm_start`` parameter.
    """
    t = cfg.training
    try:
        cls = load_estimator_class(t.estimator, allowed_prefixes)
    except ConfigError as exc:
        reason, _, fix = str(exc).removeprefix(f"training.estimator {t.estimator!r} ").partition("; ")
        return [(("training", "estimator"), f"{t.estimator!r} {reason}", fix)]
    problems: list[tuple[tuple, str, str]] = []
    try:
        names = set(cls().get_params())
    except TypeError:
        names = set()
    unknown = sorted(set(t.params) - names)
    if names and unknown:
        problems.append(
            (
                ("training", "params"),
                f"{', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not a parameter of {cls.__name__}",
                f"use some of: {', '.join(sorted(names))}",
            )
        )
    if t.recency is not None and not accepts_sample_weight(cls):
        problems.append(
            (
                ("training", "recency"),
                f"{cls.__name__}.fit does not accept sample_weight, so recent rows cannot weigh more",
                "remove recency or use an estimator whose fit takes sample_weight",
            )
        )
    if t.warm_start and "warm_start" not in names:
        problems.append(
            (
                ("training", "warm_start"),
                f"{cls.__name__} has no warm_start parameter",
                "remove warm_start or use an estimator that has one (e.g. HistGradientBoostingClassifier, "
                "RandomForestClassifier)",
            )
        )
    return problems


# -----------------------------------------------------------------------------------------
# Pipeline
# -----------------------------------------------------------------------------------------


def _estimator(cfg: ModelConfig, cls):
    params = dict(cfg.training.params)
    if "random_state" in cls().get_params() and "random_state" not in params:
        params["random_state"] = cfg.training.seed
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"training.params do not fit {cfg.training.estimator}: {exc}") from exc


def _feature_columns(cfg: ModelConfig) -> dict[str, list[str]]:
    cols = {"numeric": list(cfg.features.numeric), "categorical": list(cfg.features.categorical)}
    return {k: v for k, v in cols.items() if v}


def build_pipeline(cfg: ModelConfig, allowed_prefixes=("sklearn.",)):
    """Preprocessing by feature type followed by the configured estimator.

    Numeric features: median imputation and standard scaling; categorical: constant
    imputation and one-hot encoding (unknown categories ignored). The seed becomes the
    estimator's ``random_state`` unless ``training.params`` sets one.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    estimator = _estimator(cfg, load_estimator_class(cfg.training.estimator, allowed_prefixes))
    transformers = []
    if cfg.features.numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median")),
                        ("scale", StandardScaler()),
                    ]
                ),
                list(cfg.features.numeric),
            )
        )
    if cfg.features.categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value="__missing__")),
                        ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
                    ]
                ),
                list(cfg.features.categorical),
            )
        )
    pre = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", pre), ("model", estimator)])


# -----------------------------------------------------------------------------------------
# Split
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame


def split_frame(cfg: ModelConfig, frame: pd.DataFrame) -> Split:
    """Deterministic train/holdout split of labelled rows.

    ``time``: the most recent ``holdout_fraction`` of rows (by timestamp) is held out, as in
    production where a model predicts the future. ``random``/``stratified``: seeded shuffles,
    stratified keeps the class balance in both parts.
    """
    target = cfg.features.target
    labelled = frame[frame[target].notna()]
    if len(labelled) < 20:
        raise DataError(f"only {len(labelled)} labelled rows for model {cfg.name!r}; need at least 20 to train")
    sp = cfg.training.split
    ts = cfg.data.timestamp_column
    if sp.method == "time":
        ordered = labelled.sort_values([ts, cfg.data.id_column], kind="mergesort")
        cut = int(round(len(ordered) * (1 - sp.holdout_fraction)))
        return Split(ordered.iloc[:cut], ordered.iloc[cut:])
    from sklearn.model_selection import train_test_split

    ordered = labelled.sort_values(cfg.data.id_column, kind="mergesort")
    strat = ordered[target] if sp.method == "stratified" else None
    train, hold = train_test_split(
        ordered, test_size=sp.holdout_fraction, random_state=cfg.training.seed, stratify=strat
    )
    return Split(train, hold)


def feature_frame(cfg: ModelConfig, frame: pd.DataFrame) -> pd.DataFrame:
    """The feature columns of ``frame``; a missing categorical value (None, as parquet and JSON
    give it, or NaN) is NaN, so that the imputer turns it into ``__missing__``."""
    import numpy as np

    X = frame.reindex(columns=cfg.features.all)
    cats = [c for c in cfg.features.categorical if X[c].dtype == object and X[c].isna().any()]
    if cats:
        X = X.copy()
        for c in cats:
            X[c] = X[c].where(X[c].notna(), np.nan)
    return X


def xy(cfg: ModelConfig, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    X = feature_frame(cfg, frame)
    y = frame[cfg.features.target].to_numpy()
    if cfg.task == "classification":
        y = y.astype(int)
    return X, y


# -----------------------------------------------------------------------------------------
# Recency weights
# -----------------------------------------------------------------------------------------


def _ages_days(cfg: ModelConfig, frame: pd.DataFrame, as_of) -> np.ndarray:
    """Age of each row in days before the anchor: the end of the ``as_of`` day (a date), the
    ``as_of`` instant (a datetime) or, when None, the latest timestamp of ``frame``."""
    col = cfg.data.timestamp_column
    ts = pd.to_datetime(frame[col])
    if ts.isna().any():
        raise DataError(
            f"{int(ts.isna().sum())} training rows of {cfg.name!r} have no {col!r}; recency weighting "
            "(training.recency) needs every timestamp"
        )
    if as_of is None:
        anchor = ts.max()
    elif isinstance(as_of, dt.datetime):
        anchor = pd.Timestamp(as_of)
    elif isinstance(as_of, dt.date):
        anchor = pd.Timestamp(as_of) + pd.Timedelta(days=1)  # the end of the as_of day
    else:
        anchor = pd.Timestamp(as_of)
    tz = getattr(ts.dt, "tz", None)
    if tz is not None and anchor.tzinfo is None:
        anchor = anchor.tz_localize(tz)
    elif tz is None and anchor.tzinfo is not None:
        anchor = anchor.tz_convert("UTC").tz_localize(None)
    ages = (anchor - ts).dt.total_seconds().to_numpy(dtype=float) / 86400.0
    return np.clip(ages, 0.0, None)


def sample_weights(cfg: ModelConfig, frame: pd.DataFrame, as_of=None) -> np.ndarray | None:
    """Recency weights of ``frame``'s rows from ``training.recency``; None when it is not set.

    A row's age is measured back from the end of the ``as_of`` day (default: the latest
    timestamp in ``frame``). With ``{days, weight}`` rows at most ``days`` old weigh
    ``weight``, older rows 1; with ``half_life_days`` every row is multiplied by
    ``0.5 ** (age / half_life_days)``. The result is rescaled to average 1 (total weight =
    number of rows), so regularisation keeps the scale of unweighted training and only the
    relative weights matter.

    >>> # rows 0.5, 1.5, 10 and 20 days old with {days: 2, weight: 3}: raw 3, 3, 1, 1
    >>> # -> rescaled to average 1: 1.5, 1.5, 0.5, 0.5
    """
    rec = cfg.training.recency
    if rec is None:
        return None
    if len(frame) == 0:
        return np.ones(0)
    ages = _ages_days(cfg, frame, as_of)
    weights = np.ones(len(frame))
    if rec.days is not None:
        weights = np.where(ages <= rec.days, float(rec.weight), 1.0)
    if rec.half_life_days is not None:
        # relative to the youngest row (the rescaling below removes the common factor), so the
        # weights cannot all underflow to zero when as_of lies far after the data
        weights = weights * np.power(0.5, (ages - ages.min()) / rec.half_life_days)
    mean = float(weights.mean())
    if not mean > 0 or not math.isfinite(mean):
        raise DataError(
            f"recency weights of {cfg.name!r} underflow to zero (half_life_days "
            f"{rec.half_life_days} against rows up to {ages.max():.0f} days old); raise half_life_days"
        )
    return weights / mean


def _recent_share(cfg: ModelConfig, frame: pd.DataFrame, as_of, weights: np.ndarray | None):
    """(share of rows in the recent window, share of the total weight they carry)."""
    rec = cfg.training.recency
    if rec is None or weights is None or not len(weights):
        return None, None
    horizon = rec.days if rec.days is not None else rec.half_life_days
    recent = _ages_days(cfg, frame, as_of) <= horizon
    return float(recent.mean()), float(weights[recent].sum() / weights.sum())


# -----------------------------------------------------------------------------------------
# Warm start
# -----------------------------------------------------------------------------------------


def _is_hist_gradient_boosting(estimator) -> bool:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return isinstance(estimator, (HistGradientBoostingClassifier, HistGradientBoostingRegressor))


def _fitted_columns(pre) -> dict[str, list[str]]:
    return {name: list(cols) for name, _, cols in getattr(pre, "transformers", []) if name != "remainder"}


def _warm_start_plan(cfg: ModelConfig, cls, init_model):
    """``(fitted preprocess, estimator to continue, note)``, or ``(None, None, note)`` to train
    from scratch. Never modifies ``init_model``."""
    name = cls.__name__
    if "warm_start" not in cls().get_params():
        return None, None, f"{name} has no warm_start parameter: trained from scratch"
    steps = getattr(init_model, "named_steps", {})
    pre, old = steps.get("preprocess"), steps.get("model")
    if pre is None or old is None or not hasattr(pre, "transformers_"):
        return None, None, "the champion is not a fitted preprocess+model pipeline: trained from scratch"
    if type(old) is not cls:
        return (
            None,
            None,
            (f"the champion's estimator is {type(old).__name__}, the config asks for {name}: trained from scratch"),
        )
    before, now = _fitted_columns(pre), _feature_columns(cfg)
    if before != now:
        changes = []
        for kind in ("numeric", "categorical"):
            added = sorted(set(now.get(kind, [])) - set(before.get(kind, [])))
            removed = sorted(set(before.get(kind, [])) - set(now.get(kind, [])))
            changes += [f"{kind} +{c}" for c in added] + [f"{kind} -{c}" for c in removed]
        detail = ", ".join(changes) or "feature order"
        return None, None, f"the feature lists changed since the champion ({detail}): trained from scratch"
    model = copy.deepcopy(old)
    params = dict(cfg.training.params)
    if "random_state" in params or "random_state" in model.get_params():
        params.setdefault("random_state", cfg.training.seed)
    try:
        model.set_params(**params)
    except ValueError as exc:
        raise ConfigError(f"training.params do not fit {cfg.training.estimator}: {exc}") from exc
    extra = cfg.training.extra_iterations
    current = model.get_params()
    if "n_estimators" in current:
        grown = getattr(old, "n_estimators_", None)
        grown = int(grown) if grown is not None else len(getattr(old, "estimators_", []))
        model.set_params(warm_start=True, n_estimators=grown + extra)
        how = f"n_estimators {grown} -> {grown + extra}"
    elif _is_hist_gradient_boosting(old):
        grown = int(old.n_iter_)
        model.set_params(warm_start=True, max_iter=grown + extra)
        how = f"max_iter {grown} -> {grown + extra}"
    elif "max_iter" in current:  # a solver: warm_start starts from the champion's coefficients
        model.set_params(warm_start=True, max_iter=extra)
        how = f"from the champion's coefficients, at most {extra} iterations"
    else:
        model.set_params(warm_start=True)
        how = "from the champion's state"
    return copy.deepcopy(pre), model, f"warm-started {name} from the champion ({how}); preprocessing reused"


# -----------------------------------------------------------------------------------------
# Fit, in-process or in a child process with a timeout
# -----------------------------------------------------------------------------------------


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
    recent_rows, recent_weight = _recent_share(cfg, train, as_of, weights)

    notes: list[str] = []
    pre = model = None
    if t.warm_start and init_model is not None:
        pre, model, note = _warm_start_plan(cfg, cls, init_model)
        notes.append(note)
        log.info("%s: %s", cfg.name, note)
    elif t.warm_start:
        notes.append("no champion to continue: trained from scratch")
        log.info("%s: warm_start is set but there is no champion; training from scratch", cfg.name)

    started = time.monotonic()
    if model is not None:
        from sklearn.pipeline import Pipeline

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
