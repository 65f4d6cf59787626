"""Importing the estimator class a model config names (:func:`load_estimator_class`),
restricted to allowed module prefixes (default ``sklearn.``): a YAML file never names an
arbitrary callable. :func:`check_training_config` checks the ``training`` section against
the class (:func:`accepts_sample_weight`). Unlike :mod:`retrain_lib.core.estimators`, which reads
source without importing, this imports the class for real."""

from __future__ import annotations

import importlib
import inspect

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import ConfigError
from retrain_lib.core.estimators import EXAMPLE, IMPORT_PATH, module_allowed


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
    if not isinstance(path, str) or not IMPORT_PATH.fullmatch(path):
        raise _estimator_error(str(path), "is not an import path", f"write module.Class, {EXAMPLE}")
    module_name, _, attr = path.rpartition(".")
    if not module_allowed(module_name, prefixes):
        raise _estimator_error(path, f"is outside the allowed modules {prefixes}", allowed_fix)
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise _estimator_error(path, f"cannot be imported: {exc}", f"check the spelling, {EXAMPLE}") from exc
    if not inspect.isclass(cls):
        kind = "a function" if callable(cls) else f"a {type(cls).__name__}"
        raise _estimator_error(
            path, f"is not a scikit-learn estimator class (it is {kind})", f"name an estimator class, {EXAMPLE}"
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
            f"name an estimator class, {EXAMPLE}",
        )
    if inspect.isabstract(cls):
        raise _estimator_error(
            path,
            "is not a scikit-learn estimator class (it is abstract)",
            f"name a concrete estimator class, {EXAMPLE}",
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
