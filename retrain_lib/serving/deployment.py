"""What answers a model's requests: a loaded model version (:class:`LoadedModel`), the
champion/challenger pair and rollout state serving right now (:class:`Deployment`, swapped
whole, never mutated), a served model's slot, and loading a version into it."""

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from retrain_lib.core.errors import ConfigError
from retrain_lib.core.metrics import predict_scores
from retrain_lib.serving import routing
from retrain_lib.serving.fast_path import FAST_PATH_ENV, FastScorer, compile_fast
from retrain_lib.serving.schema import FeatureSchema, warm_row
from retrain_lib.store.lifecycle_tags import LifecycleTags

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """One loaded version of a model: the fitted pipeline, and its fast path when it has one."""

    version: str
    model: Any
    task: str
    schema: FeatureSchema | None = None
    fast: FastScorer | None = None  # same answers as the pipeline, without pandas (see compile_fast)

    def predict(self, frame) -> list[float]:
        return [float(x) for x in predict_scores(self.model, frame, self.task)]

    def score(self, records: list[dict]) -> list[float]:
        """Scores of valid records (see :meth:`FeatureSchema.check`)."""
        if self.fast is not None:
            return self.fast(records)
        assert self.schema is not None  # load_version gives every loaded model its schema
        return self.predict(self.schema.frame(records))


@dataclass(frozen=True)
class Deployment:
    """What answers requests of one model right now (swapped whole, never mutated); ``retired``:
    the model's lifecycle tags when it is retired (nothing is loaded, requests get 410 Gone)."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    rollout: routing.RolloutState = routing.RolloutState()
    since: float = 0.0
    retired: LifecycleTags | None = None

    @property
    def key(self) -> tuple:
        return (
            self.champion and self.champion.version,
            self.challenger and self.challenger.version,
            self.rollout,
            self.retired,
        )


@dataclass
class ModelSlot:
    """A served model: its config, schema, current deployment, loaded versions and refresh state."""

    name: str
    cfg: Any
    ctx: Any  # model_context.ModelContext
    schema: FeatureSchema
    deployment: Deployment = field(default_factory=Deployment)
    cache: dict[str, LoadedModel] = field(default_factory=dict)
    last_refresh: float = 0.0
    error: str | None = None


def version_uri(name: str, source: str) -> str:
    """The model URI of ``source``: a registered version number (``models:/<name>/<version>``)
    or a model URI given whole (``models:/m-...``, ``runs:/<run>/model``: a candidate not
    registered yet, as the servability gate serves it)."""
    return f"models:/{name}/{source}" if str(source).isdigit() else str(source)


def load_version(slot: ModelSlot, version: str) -> LoadedModel:
    """Version ``version`` of the slot's model (a version number or a model URI, see
    :func:`version_uri`), loaded, checked against its config and warmed (from the slot's cache
    when it is there; added to it)."""
    if version in slot.cache:
        return slot.cache[version]
    model = slot.ctx.mlflow().sklearn.load_model(version_uri(slot.name, version))
    wanted = getattr(model, "feature_names_in_", None)
    if wanted is not None:
        missing = [c for c in wanted if c not in slot.schema.columns]
        if missing:
            raise ConfigError(
                f"version {version} of {slot.name!r} needs features {missing} that its config does not "
                "declare; fix features in the model config"
            )
    fast = None
    if os.environ.get(FAST_PATH_ENV, "1").strip() != "0":
        fast = compile_fast(model, slot.schema, slot.cfg.task)
    loaded = LoadedModel(str(version), model, slot.cfg.task, slot.schema, fast)
    warm = [warm_row(slot.schema)]
    loaded.predict(slot.schema.frame(warm))  # first call is slow: pay it here
    loaded.score(warm)
    log.info("loaded version %s of %s (%s)", version, slot.name, "fast path" if fast else "pipeline path")
    slot.cache[str(version)] = loaded
    return loaded


def score_records(dep: Deployment, records: list[dict], arms: list[str]) -> list[float]:
    """The answer of each record from the model of its arm."""
    assert dep.champion is not None  # the gateway answers 503 without one
    if all(a == routing.CHAMPION_ARM for a in arms):
        return dep.champion.score(records)
    outputs: list = [None] * len(records)
    for arm_name, lm in ((routing.CHAMPION_ARM, dep.champion), (routing.CHALLENGER_ARM, dep.challenger)):
        idx = [i for i, a in enumerate(arms) if a == arm_name]
        if idx:
            assert lm is not None  # routed to this arm: its model is loaded (_arms)
            for i, v in zip(idx, lm.score([records[i] for i in idx])):
                outputs[i] = v
    return outputs
