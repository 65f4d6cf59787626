"""Reproduce a registered model version from its recorded lineage, in one call.

A model version (and its training run) records where its training set is in the data registry
(tags :data:`~retrain_lib.store.lineage.DVC_PATH_TAG`, ``DVC_REV_TAG``, ``DVC_MD5_TAG``), the config it
was trained with (run artifact ``config/model.json``), the day it was trained for
(``retrain.as_of``) and, when warm-started, its parent (``training.warm_start_from``, a
``models:/`` URI). :func:`reproduce` fetches that exact data through DVC, splits and trains
again, and compares the new model with the registered one on the holdout: metrics and every
prediction.

Example::

    >>> res = reproduce("credit_default", "3")  # doctest: +SKIP
    >>> res["identical"], res["max_abs_prediction_diff"]  # doctest: +SKIP
    (True, 0.0)

From the command line: ``retrain reproduce credit_default 3 --format json`` (exit 0 identical,
1 different, 2 unknown model/version or tampered data).
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import logging
import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from retrain_lib.core import provenance
from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import ConfigError, RegistryError
from retrain_lib.core.metrics import evaluate, predict_scores
from retrain_lib.core.settings import load_settings
from retrain_lib.learn.training import train_model
from retrain_lib.learn.training_data import split_frame, xy
from retrain_lib.store import lineage, registry

if TYPE_CHECKING:
    from retrain_lib.core.settings import Settings

log = logging.getLogger(__name__)

AS_OF_TAG = "retrain.as_of"
WARM_START_TAG = "training.warm_start_from"
CONFIG_ARTIFACT = "config/model.json"
_MODELS_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w\-]+))")


def reproduce(
    model: str, version: str | int, settings: Settings | None = None, *, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Retrain ``model`` version ``version`` from its recorded data and config; compare.

    ``progress`` is called with a short message before each slow step (the CLI prints them).

    Returns:
        ``{"model", "version", "identical", "metrics": {"recorded", "reproduced", "logged"},
        "max_abs_prediction_diff", "rows": {"train", "holdout"}, "data": {"path", "rev", "md5"},
        "config_hash": {"recorded", "logged_config"}, "git_commit": {"recorded", "current"},
        "lock_hash": {"recorded", "current"}, "seed", "as_of", "warm_start_from"}``.
        ``metrics.recorded`` and ``metrics.reproduced`` are recomputed now on the same holdout
        rows (``logged`` is what the training run logged). ``identical`` is true when every
        holdout prediction is exactly equal (max diff 0.0) and so are the metrics.

    Raises:
        RegistryError: no such model or version, or it lacks the lineage tags.
        DataError: the training set cannot be read or its md5 differs from the recorded one.
        ConfigError: the logged config is missing or no longer valid.
    """
    import numpy as np

    settings = settings or load_settings()
    say = progress or (lambda _message: None)
    version = str(version)
    if not re.fullmatch(r"[1-9]\d{0,8}", version):
        raise RegistryError(
            f"The 'version' parameter of reproduce must be a model version number such as '3'. Got {version!r} instead."
        )
    say(f"reading the lineage of {model} version {version} from the MLflow registry")
    client = registry.get_client(settings.tracking_uri, settings.registry_uri)
    mv = _model_version(client, model, version)
    if not mv.run_id:
        raise RegistryError(f"version {version} of {model} has no MLflow run; nothing to reproduce it from")
    run = client.get_run(mv.run_id)
    tags = {**run.data.tags, **mv.tags}  # the version's tags win over its run's
    missing = [t for t in lineage.DVC_TAGS if not tags.get(t)]
    if missing:
        raise RegistryError(
            f"version {version} of {model} (run {mv.run_id}) lacks the tag(s) {missing}: it was "
            "trained before its training set was versioned in the data registry, so it cannot be "
            "reproduced"
        )
    data = {"path": tags[lineage.DVC_PATH_TAG], "rev": tags[lineage.DVC_REV_TAG], "md5": tags[lineage.DVC_MD5_TAG]}
    cfg = _logged_config(client, mv.run_id, model, version)
    as_of = tags.get(AS_OF_TAG) or tags.get("trained_as_of")

    say(f"fetching the training set {data['path']} at data registry rev {data['rev']}")
    frame = lineage.load_training_set(settings, data["path"], data["rev"], data["md5"])
    labelled = frame[frame[lineage.LABEL_KNOWN_COLUMN].astype(bool)] if lineage.LABEL_KNOWN_COLUMN in frame else frame
    split = split_frame(cfg, labelled)

    parent = tags.get(WARM_START_TAG)
    kwargs = _train_kwargs(client, model, version, parent, as_of)
    say(f"retraining {cfg.training.estimator.rpartition('.')[2]} on {len(split.train)} rows (seed {cfg.training.seed})")
    reproduced = train_model(cfg, split.train, settings.platform.allowed_estimator_prefixes, **kwargs)
    say(f"loading the registered model {model} version {version}")
    recorded = _load_model(client, f"models:/{model}/{version}")
    say(f"comparing predictions and metrics on {len(split.holdout)} holdout rows")

    X, y = xy(cfg, split.holdout)
    recorded_scores = np.asarray(predict_scores(recorded, X, cfg.task), dtype=float)
    reproduced_scores = np.asarray(predict_scores(reproduced, X, cfg.task), dtype=float)
    max_diff = max_abs_diff(recorded_scores, reproduced_scores)
    recorded_metrics = evaluate(recorded, X, y, cfg.task)
    reproduced_metrics = evaluate(reproduced, X, y, cfg.task)
    identical = max_diff == 0.0 and _same_metrics(recorded_metrics, reproduced_metrics)
    result = {
        "model": model,
        "version": version,
        "identical": identical,
        "metrics": {
            "recorded": _json_floats(recorded_metrics),
            "reproduced": _json_floats(reproduced_metrics),
            "logged": {
                k[len("holdout.") :]: v for k, v in sorted(run.data.metrics.items()) if k.startswith("holdout.")
            },
        },
        "max_abs_prediction_diff": max_diff if math.isfinite(max_diff) else None,
        "rows": {"train": int(len(split.train)), "holdout": int(len(split.holdout))},
        "data": data,
        "config_hash": {"recorded": tags.get("config.hash"), "logged_config": cfg.config_hash()},
        "git_commit": {"recorded": tags.get("git.commit"), "current": provenance.git_commit()},
        "lock_hash": {"recorded": tags.get("lock.hash"), "current": provenance.lock_hash()},
        "seed": cfg.training.seed,
        "as_of": as_of,
        "warm_start_from": parent,
    }
    log.info("reproduced %s version %s: identical=%s, max |diff| %s", model, version, identical, max_diff)
    return result


def max_abs_diff(recorded, reproduced) -> float:
    """The largest absolute difference of two score arrays (inf when their shapes differ; a
    NaN on both sides counts as equal, on one side as infinitely different)."""
    import numpy as np

    if recorded.shape != reproduced.shape:
        return math.inf
    if recorded.size == 0:
        return 0.0
    diff = np.abs(recorded - reproduced)
    both_nan = np.isnan(recorded) & np.isnan(reproduced)
    diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), math.inf, diff))
    return float(diff.max())


def _train_kwargs(client, model: str, version: str, parent: str | None, as_of) -> dict[str, Any]:
    """The keyword arguments the version was trained with: its warm-start parent and its day."""
    kwargs: dict[str, Any] = {}
    if parent:
        kwargs["init_model"] = _load_model(client, parent)
    if as_of:
        kwargs["as_of"] = dt.date.fromisoformat(str(as_of)[:10])
    accepted = inspect.signature(train_model).parameters
    if "init_model" in kwargs and "init_model" not in accepted:
        raise RegistryError(
            f"version {version} of {model} was warm-started from {parent}, but this platform's "
            "train_model takes no init_model: it cannot be reproduced here"
        )
    return {k: v for k, v in kwargs.items() if k in accepted}


def _model_version(client, model: str, version: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(model, version)
    except MlflowException as exc:
        if registry.is_not_found(exc):
            raise RegistryError(
                f"no version {version} of registered model {model!r} in the model registry; "
                "check the name and version in the MLflow UI"
            ) from exc
        raise


def _logged_config(client, run_id: str, model: str, version: str):
    """The ModelConfig the run logged (``config/model.json``), validated again."""
    import tempfile
    from pathlib import Path

    from mlflow.exceptions import MlflowException
    from pydantic import ValidationError

    with tempfile.TemporaryDirectory(prefix="retrain-reproduce-") as tmp:
        try:
            local = client.download_artifacts(run_id, CONFIG_ARTIFACT, tmp)
        except (MlflowException, OSError) as exc:
            raise ConfigError(
                f"run {run_id} of {model} version {version} has no {CONFIG_ARTIFACT} artifact: {exc}"
            ) from exc
        payload = json.loads(Path(local).read_text())
    try:
        return ModelConfig.model_validate(payload)
    except ValidationError:
        pass
    # The log is a full dump (defaults included); some validators refuse fields set explicitly
    # where a default is expected (e.g. 'bins' of a metric gate): validate what was not default.
    try:
        return ModelConfig.model_validate(_without_defaults(ModelConfig, payload))
    except ValidationError as exc:
        raise ConfigError(
            f"the config logged by run {run_id} ({model} version {version}) is not valid for this "
            f"version of the platform: {exc}"
        ) from exc


def _without_defaults(model_cls, data):
    """``data`` (a JSON dump of ``model_cls``) without the values equal to their field's default."""
    from pydantic import TypeAdapter

    if not isinstance(data, dict):
        return data
    out = {}
    for name, value in data.items():
        field = model_cls.model_fields.get(name)
        if field is None:
            out[name] = value
            continue
        if not field.is_required():
            try:
                default = TypeAdapter(field.annotation).dump_python(
                    field.get_default(call_default_factory=True), mode="json"
                )
            except Exception:  # noqa: BLE001 - a default that does not dump: keep the value
                default = object()
            if value == default:
                continue
        out[name] = _nested_without_defaults(field.annotation, value)
    return out


def _nested_without_defaults(annotation, value):
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _without_defaults(annotation, value)
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is list and args and isinstance(value, list):
        return [_nested_without_defaults(args[0], v) for v in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: _nested_without_defaults(args[1], v) for k, v in value.items()}
    models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    if len(models) == 1 and isinstance(value, dict):  # Optional[Model]
        return _without_defaults(models[0], value)
    return value


def _load_model(client, uri: str):
    """A registered model by ``models:/name/version`` or ``models:/name@alias``, loaded from its
    storage location (no global MLflow tracking state is touched)."""
    import mlflow.sklearn

    match = _MODELS_URI.fullmatch(uri)
    if match is None:
        raise RegistryError(
            f"{uri!r} is not a registered model URI such as 'models:/credit_default/3' or "
            "'models:/credit_default@champion'"
        )
    name = match["name"]
    if match["version"]:
        mv = _model_version(client, name, match["version"])
    else:
        mv = registry.get_alias_version(client, name, match["alias"])
        if mv is None:
            raise RegistryError(f"{uri}: registered model {name!r} has no alias {match['alias']!r}")
    return mlflow.sklearn.load_model(client.get_model_version_download_uri(name, mv.version))


def _same_metrics(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def _json_floats(metrics: dict) -> dict[str, float | None]:
    return {k: (None if v is None or math.isnan(float(v)) else float(v)) for k, v in sorted(metrics.items())}
