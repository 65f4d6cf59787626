"""Warm start (``training.warm_start``): continue the champion's fitted pipeline instead of
training from scratch (:func:`warm_start_plan`), when its estimator and features allow."""

from __future__ import annotations

import copy

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import ConfigError
from retrain_lib.learn.training_pipeline import feature_columns


def _is_hist_gradient_boosting(estimator) -> bool:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    return isinstance(estimator, (HistGradientBoostingClassifier, HistGradientBoostingRegressor))


def _fitted_columns(pre) -> dict[str, list[str]]:
    return {name: list(cols) for name, _, cols in getattr(pre, "transformers", []) if name != "remainder"}


def warm_start_plan(cfg: ModelConfig, cls, init_model):
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
    before, now = _fitted_columns(pre), feature_columns(cfg)
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
