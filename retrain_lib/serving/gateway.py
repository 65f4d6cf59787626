"""The serving gateway: answers predictions from ``champion``/``challenger`` per the
registry's rollout state, logs each one durably before answering, accepts late labels.

Routes (JSON in and out; all but ``/health`` need ``Authorization: Bearer <token>`` when the
app has a token):

* ``POST /v1/models/{name}/predict`` body ``{"records": [{feature: value, ...}, ...]}`` or
  ``{"record": {...}}``; optional ``"entity"`` (a list as long as ``records``, or one value
  with ``record``) used as sticky routing key when the record lacks the sticky column.
  Records carry every feature of the model config (numeric: number or null; categorical:
  string or null) and may carry the config's ``data.id_column``; anything else is an error.
  Answer ``{"model", "predictions": [{"request_id", "version", "arm", "prediction"}]}``;
  each prediction is committed to the prediction log before the answer is sent.
  Errors: 404 unknown model, 413 body larger than ``max_body_bytes``, 422 invalid body
  (``{"detail": [{"index", "field", "reason"}, ...]}``, nothing logged), 503 no champion
  loaded or the log could not commit.
* ``POST /v1/models/{name}/feedback`` body ``{"labels": [{"request_id", "label"}]}``: stores
  the labels of known requests; 200 ``{"stored": n}``, or 404 ``{"stored": n, "unknown": [...]}``
  when some ids are unknown (the known ones are stored).
* ``GET /health``: loaded versions and rollout state per model; 503 while a model has no
  champion loaded.
* ``GET /metrics``: Prometheus text format.

A refresher thread polls each registered model (aliases and ``rollout.*`` tags, one registry
call per model) every ``refresh_s`` seconds, loads and warms new versions off the request
path and swaps an immutable :class:`Deployment` reference, so requests never wait for a load
and never see half a change. With a registry in a local SQLite file (the embedded store) a
poll first asks SQLite whether anything was committed since the last one
(:class:`RegistryChangeProbe`, about 0.03 ms) and skips the registry calls when nothing was:
each costs about 3 ms of CPU with the GIL held in MLflow's SQLAlchemy store, which requests
arriving meanwhile would wait for (``benchmarks/gateway_bench.py`` measures both). A full
poll still runs at least every ``FULL_REFRESH_S``.

Hot path: a model that is ``Pipeline([ColumnTransformer(imputers, scalers, one-hot), estimator])``
is scored without pandas (:class:`FastScorer`: the fitted transforms on a numpy row, then the
fitted estimator), checked against the pipeline itself when the version loads; other models
(or ``RETRAIN_GATEWAY_FAST_PATH=0``) go through the pipeline on a DataFrame. A single record
on the fast path is scored on the event loop (it takes about a millisecond, less than a
thread handoff costs under load). Batches and pipeline-path predictions run in a small
prediction thread pool (1 OpenMP thread each).

Logging: with the embedded SQLite log, a request's rows are made durable by one append to
the process's prediction-log journal (see :mod:`retrain_lib.serving.predlog`) before the
answer, and reach the database within a second, off the request path; with PostgreSQL the
request waits for the group-commit writer (one queue put and one future settled on the loop).
"""

# No `from __future__ import annotations`: FastAPI resolves the `Request` annotations of the
# routes defined inside create_app() at runtime.
import asyncio
import concurrent.futures
import hmac
import logging
import math
import os
import queue
import sqlite3
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from retrain_lib.errors import ConfigError
from retrain_lib.serving import routing

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_RECORDS = 10_000
FULL_REFRESH_S = 30.0  # a full registry poll at least this often, whatever RegistryChangeProbe says


# -----------------------------------------------------------------------------------------
# Models
# -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSchema:
    """What a record of a model must look like (from its config)."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    optional: tuple[str, ...]  # accepted, not passed to the model (the entity id column)

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)

    @classmethod
    def from_config(cls, cfg) -> "FeatureSchema":
        optional = tuple(c for c in (cfg.data.id_column,) if c and c not in cfg.features.all)
        return cls(tuple(cfg.features.numeric), tuple(cfg.features.categorical), optional)

    def check(self, records: list) -> list[dict[str, Any]]:
        """Every problem of every record: ``{"index", "field", "reason"}``."""
        problems = []
        allowed = set(self.columns) | set(self.optional)
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                problems.append(
                    {"index": i, "field": None, "reason": f"a record must be an object, got {type(rec).__name__}"}
                )
                continue
            for name in self.numeric:
                if name not in rec:
                    problems.append({"index": i, "field": name, "reason": "missing (numeric feature)"})
                    continue
                v = rec[name]
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                    problems.append(
                        {
                            "index": i,
                            "field": name,
                            "reason": f"must be a number or null, got {type(v).__name__} {v!r:.40}",
                        }
                    )
                elif isinstance(v, float) and not math.isfinite(v):
                    problems.append({"index": i, "field": name, "reason": "must be finite"})
            for name in self.categorical:
                if name not in rec:
                    problems.append({"index": i, "field": name, "reason": "missing (categorical feature)"})
                elif rec[name] is not None and not isinstance(rec[name], str):
                    problems.append(
                        {
                            "index": i,
                            "field": name,
                            "reason": f"must be a string or null, got {type(rec[name]).__name__} {rec[name]!r:.40}",
                        }
                    )
            for name in rec:
                if name not in allowed:
                    problems.append(
                        {
                            "index": i,
                            "field": name,
                            "reason": f"unexpected field; the model takes {', '.join(self.columns)}",
                        }
                    )
        return problems

    def frame(self, records: list[dict]):
        """A DataFrame of the feature columns with the training dtypes (float64, object),
        built column-wise without per-row pandas work."""
        import numpy as np
        import pandas as pd

        n = len(records)
        nan = float("nan")
        data = {}
        for c in self.numeric:
            data[c] = np.fromiter((nan if r[c] is None else r[c] for r in records), dtype=np.float64, count=n)
        for c in self.categorical:  # null is missing (NaN), as training sees it
            col = np.empty(n, dtype=object)
            col[:] = [nan if r[c] is None else r[c] for r in records]
            data[c] = col
        return pd.DataFrame(data, copy=False)


@dataclass(frozen=True)
class LoadedModel:
    version: str
    model: Any
    task: str
    schema: FeatureSchema | None = None
    fast: "FastScorer | None" = None  # same answers as the pipeline, without pandas (see compile_fast)

    def predict(self, frame) -> list[float]:
        from retrain_lib.metrics import predict_scores

        return [float(x) for x in predict_scores(self.model, frame, self.task)]

    def score(self, records: list[dict]) -> list[float]:
        """Scores of valid records (see :meth:`FeatureSchema.check`)."""
        if self.fast is not None:
            return self.fast(records)
        return self.predict(self.schema.frame(records))


@dataclass(frozen=True)
class Deployment:
    """What answers requests of one model right now (swapped whole, never mutated)."""

    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    rollout: routing.RolloutState = routing.RolloutState()
    since: float = 0.0

    @property
    def key(self) -> tuple:
        return (self.champion and self.champion.version, self.challenger and self.challenger.version, self.rollout)


@dataclass
class ModelSlot:
    name: str
    cfg: Any
    ctx: Any  # lifecycle.ModelContext
    schema: FeatureSchema
    deployment: Deployment = field(default_factory=Deployment)
    cache: dict[str, LoadedModel] = field(default_factory=dict)
    last_refresh: float = 0.0
    error: str | None = None


def _warm_row(schema: FeatureSchema) -> dict:
    return {**{c: 0.0 for c in schema.numeric}, **{c: "" for c in schema.categorical}}


# -----------------------------------------------------------------------------------------
# Fast path: score records without pandas
# -----------------------------------------------------------------------------------------


class _Unsupported(Exception):
    """The model has a step the fast path does not reproduce (use the pipeline)."""


def _is_nan(v) -> bool:
    return isinstance(v, float) and v != v


class FastScorer:
    """Scores records like ``predict_scores(pipeline, schema.frame(records), task)`` without
    pandas, for ``Pipeline([ColumnTransformer([...]), estimator])`` models whose column
    transformers are (pipelines of) ``SimpleImputer``, ``StandardScaler`` and
    ``OneHotEncoder`` or ``"passthrough"``: the same arithmetic on the fitted attributes, then
    the fitted estimator itself on the numpy matrix. :func:`compile_fast` builds one only for
    models it can reproduce and checks it against the pipeline before it is used.
    """

    def __init__(self, blocks: list, width: int, estimator, task: str):
        self.blocks = blocks  # (kind, columns, out slice, steps)
        self.width = width
        self.estimator = estimator
        self.task = task

    def transform(self, records: list[dict]):
        import numpy as np

        n = len(records)
        out = np.empty((n, self.width), dtype=np.float64)
        nan = float("nan")
        for kind, cols, sl, steps in self.blocks:
            if kind == "numeric":
                x = np.array([[nan if r[c] is None else r[c] for c in cols] for r in records], dtype=np.float64)
                for op, a, b in steps:
                    if op == "impute":
                        mask = np.isnan(x)
                        if mask.any():
                            x = np.where(mask, a, x)
                    elif op == "scale":
                        if a is not None:
                            x = x - a
                        if b is not None:
                            x = x / b
                out[:, sl] = x
            else:  # categorical: impute (object values), then one-hot
                block = out[:, sl]
                block.fill(0.0)
                for i, r in enumerate(records):
                    for j, c in enumerate(cols):
                        v = r[c]
                        for op, a, b in steps:
                            if op == "impute":
                                if v is None or (a is not None and _is_nan(v)):
                                    v = b[j]
                            else:  # onehot: (offsets, index per category)
                                k = b[j].get(v) if isinstance(v, str) else None
                                if k is not None:
                                    block[i, a[j] + k] = 1.0
        return out

    def __call__(self, records: list[dict]) -> list[float]:
        x = self.transform(records)
        if self.task == "classification":
            return self.estimator.predict_proba(x)[:, 1].tolist()
        return [float(v) for v in self.estimator.predict(x)]


def _fast_steps(trans, kind: str) -> list:
    import numpy as np
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if isinstance(trans, str):
        if trans == "passthrough" and kind == "numeric":
            return []
        raise _Unsupported(f"transformer {trans!r}")
    steps = [s for _, s in trans.steps] if isinstance(trans, Pipeline) else [trans]
    out: list = []
    onehot = False
    for step in steps:
        if step is None or step == "passthrough":
            continue
        if onehot:
            raise _Unsupported("a step after OneHotEncoder")
        if isinstance(step, SimpleImputer):
            if step.add_indicator or step.__class__ is not SimpleImputer:
                raise _Unsupported("SimpleImputer with indicator")
            mv = step.missing_values
            stats = step.statistics_
            if kind == "numeric":
                if not (isinstance(mv, float) and np.isnan(mv)):
                    raise _Unsupported("numeric missing_values other than NaN")
                stats = np.asarray(stats, dtype=np.float64)
                if np.isnan(stats).any():
                    raise _Unsupported("an all-missing column at fit")
                out.append(("impute", stats, None))
            else:
                if mv is None:
                    nan_mode = None
                elif isinstance(mv, float) and np.isnan(mv):
                    nan_mode = "nan"
                else:
                    raise _Unsupported("categorical missing_values other than NaN/None")
                fills = list(stats)
                if any(not isinstance(f, str) for f in fills):
                    raise _Unsupported("non-string categorical fill values")
                out.append(("impute", nan_mode, fills))
        elif isinstance(step, StandardScaler) and kind == "numeric" and step.__class__ is StandardScaler:
            mean = step.mean_ if step.with_mean else None
            scale = step.scale_ if step.with_std else None
            out.append(
                (
                    "scale",
                    None if mean is None else np.asarray(mean, dtype=np.float64),
                    None if scale is None else np.asarray(scale, dtype=np.float64),
                )
            )
        elif isinstance(step, OneHotEncoder) and kind == "categorical" and step.__class__ is OneHotEncoder:
            if (
                step.handle_unknown not in ("ignore", "infrequent_if_exist")
                or step.drop_idx_ is not None
                or getattr(step, "_infrequent_enabled", False)
                or step.sparse_output
                or np.dtype(step.dtype) != np.float64
            ):
                raise _Unsupported("OneHotEncoder options")
            offsets, index = [], []
            pos = 0
            for cats in step.categories_:
                if not all(isinstance(c, str) for c in cats):
                    raise _Unsupported("non-string categories")
                offsets.append(pos)
                index.append({c: k for k, c in enumerate(cats)})
                pos += len(cats)
            out.append(("onehot", offsets, index))
            onehot = True
        else:
            raise _Unsupported(f"step {type(step).__name__}")
    if kind == "categorical" and not onehot:
        raise _Unsupported("categorical columns not one-hot encoded")
    return out


def _block_width(kind: str, cols, steps) -> int:
    if kind == "numeric":
        return len(cols)
    _, offsets, index = steps[-1]
    return offsets[-1] + len(index[-1]) if offsets else 0


def _probe_records(schema: "FeatureSchema", model) -> list[dict]:
    """Rows that walk every fitted category, an unknown one, missing values and numbers
    around the fitted statistics, to compare the fast path with the pipeline."""
    import numpy as np

    rng = np.random.default_rng(0)
    cats: dict[str, list] = {c: [] for c in schema.categorical}
    for _, trans, cols in model[0].transformers_:
        steps = [s for _, s in trans.steps] if hasattr(trans, "steps") else [trans]
        for step in steps:
            for c, values in zip(cols if isinstance(cols, list) else [], getattr(step, "categories_", [])):
                if c in cats:
                    cats[c] += [v for v in values if isinstance(v, str)]
    rows = [_warm_row(schema), {c: None for c in schema.columns}]
    for i in range(24):
        row = {}
        for c in schema.numeric:
            r = rng.random()
            if r < 0.15:
                row[c] = None
            elif r < 0.3:
                row[c] = int(rng.integers(0, 100))
            else:
                row[c] = float(rng.normal(0, 1) * 10.0 ** int(rng.integers(-2, 6)))
        for c in schema.categorical:
            pool = [*cats[c], None, "__no_such_category__", "__missing__", ""]
            row[c] = pool[i % len(pool)] if i < 12 else pool[int(rng.integers(0, len(pool)))]
        rows.append(row)
    return rows


def compile_fast(model, schema: "FeatureSchema", task: str) -> "FastScorer | None":
    """A :class:`FastScorer` equivalent to ``model`` on records of ``schema``, or None when the
    model has a step it does not reproduce or it disagrees with the pipeline on probe rows."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    from retrain_lib.metrics import predict_scores

    try:
        if not isinstance(model, Pipeline) or len(model.steps) != 2 or not isinstance(model[0], ColumnTransformer):
            raise _Unsupported("not Pipeline([ColumnTransformer, estimator])")
        ct, est = model[0], model[-1]
        if getattr(ct, "sparse_output_", False) or getattr(est, "feature_names_in_", None) is not None:
            raise _Unsupported("sparse or named-column output")
        if getattr(ct, "_sklearn_output_config", {}).get("transform") not in (None, "default"):
            raise _Unsupported("set_output")
        numeric, categorical = set(schema.numeric), set(schema.categorical)
        blocks, width = [], 0
        for name, trans, cols in ct.transformers_:
            if isinstance(trans, str) and trans == "drop":
                continue
            if not isinstance(cols, list) or not all(isinstance(c, str) for c in cols):
                raise _Unsupported(f"column spec of {name!r}")
            if not cols:
                continue
            if set(cols) <= numeric:
                kind = "numeric"
            elif set(cols) <= categorical:
                kind = "categorical"
            else:
                raise _Unsupported(f"columns of {name!r} mix kinds or are not features")
            steps = _fast_steps(trans, kind)
            sl = ct.output_indices_[name]
            if sl.stop - sl.start != _block_width(kind, cols, steps):
                raise _Unsupported(f"output width of {name!r}")
            blocks.append((kind, tuple(cols), sl, steps))
            width = max(width, sl.stop)
        if width != getattr(est, "n_features_in_", width):
            raise _Unsupported("estimator input width")
        fast = FastScorer(blocks, width, est, task)
        probes = _probe_records(schema, model)
        want = np.asarray(predict_scores(model, schema.frame(probes), task), dtype=np.float64)
        got = np.asarray(fast(probes), dtype=np.float64)
        single = np.asarray([fast([r])[0] for r in probes[:8]], dtype=np.float64)
        if not (
            np.allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True)
            and np.allclose(single, want[:8], rtol=1e-9, atol=1e-12, equal_nan=True)
        ):
            raise _Unsupported(f"disagrees with the pipeline (max diff {np.nanmax(np.abs(got - want)):.3g})")
        return fast
    except _Unsupported as exc:
        log.info("scoring without the fast path (%s)", exc)
        return None
    except Exception as exc:  # noqa: BLE001 - the pipeline still works; only the shortcut is off
        log.warning("fast path check failed, scoring with the pipeline: %s: %s", type(exc).__name__, exc)
        return None


FAST_PATH_ENV = "RETRAIN_GATEWAY_FAST_PATH"  # "0": always score through the pipeline


def _load(slot: ModelSlot, version: str) -> LoadedModel:
    if version in slot.cache:
        return slot.cache[version]
    model = slot.ctx.mlflow().sklearn.load_model(f"models:/{slot.name}/{version}")
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
    warm = [_warm_row(slot.schema)]
    loaded.predict(slot.schema.frame(warm))  # first call is slow: pay it here
    loaded.score(warm)
    log.info("loaded version %s of %s (%s)", version, slot.name, "fast path" if fast else "pipeline path")
    slot.cache[str(version)] = loaded
    return loaded


class RegistryChangeProbe:
    """Whether a registry kept in a local SQLite file may have changed since the last call:
    ``PRAGMA data_version`` on this probe's own connection changes whenever another
    connection (any process) commits to the file. A replaced file (another inode), a missing
    file or any SQLite error counts as a change, so the caller falls back to a full poll.
    :meth:`for_uri` gives ``None`` for registries elsewhere (an MLflow server)."""

    def __init__(self, path: str):
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._seen: tuple[int, int, int] | None = None  # (st_dev, st_ino, data_version) at the last call

    @classmethod
    def for_uri(cls, uri: str | None) -> "RegistryChangeProbe | None":
        if not uri:
            return None
        from retrain_lib.serving.predlog import sqlite_file

        database = sqlite_file(uri)
        return cls(os.path.abspath(database)) if database else None

    def changed(self) -> bool:
        try:
            st = os.stat(self.path)
            if self._conn is None or self._seen is None or (st.st_dev, st.st_ino) != self._seen[:2]:
                self.close()
                # read-only, autocommit: it holds no lock between calls and never writes
                self._conn = sqlite3.connect(
                    f"file:{urllib.parse.quote(self.path)}?mode=ro",
                    uri=True,
                    isolation_level=None,
                    check_same_thread=False,
                )
            seen = (st.st_dev, st.st_ino, self._conn.execute("PRAGMA data_version").fetchone()[0])
        except (OSError, sqlite3.Error):
            self.close()
            return True
        changed, self._seen = seen != self._seen, seen
        return changed

    def close(self) -> None:
        conn, self._conn, self._seen = self._conn, None, None
        if conn is not None:
            conn.close()


def refresh_slot(slot: ModelSlot, client) -> bool:
    """Poll the registry once for ``slot``; load and swap when something changed. True on a swap."""
    from mlflow.exceptions import MlflowException

    from retrain_lib.registry import CHALLENGER, CHAMPION, _not_found

    try:
        rm = client.get_registered_model(slot.name)
        found_aliases = {k: str(v) for k, v in (rm.aliases or {}).items()}
        state = routing.state_from_tags(rm.tags)
    except MlflowException as exc:
        if not _not_found(exc):
            raise
        found_aliases, state = {}, routing.RolloutState()
    champ_v, chall_v = found_aliases.get(CHAMPION), found_aliases.get(CHALLENGER)
    current = slot.deployment
    slot.last_refresh = time.time()
    if (champ_v, chall_v, state) == current.key:
        slot.error = None
        return False
    champion = _load(slot, champ_v) if champ_v else None
    challenger = _load(slot, chall_v) if chall_v else None
    slot.deployment = Deployment(champion, challenger, state, time.time())  # the atomic swap
    keep = {v for v in (champ_v, chall_v, current.key[0], current.key[1]) if v}
    for v in list(slot.cache):
        if v not in keep:
            slot.cache.pop(v, None)
    slot.error = None
    log.info("%s now serves champion %s, challenger %s, rollout %s", slot.name, champ_v, chall_v, state.to_dict())
    return True


# -----------------------------------------------------------------------------------------
# Metrics
# -----------------------------------------------------------------------------------------


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.hist: dict[str, list[int]] = {}
        self.hist_sum: dict[str, float] = {}
        self.shadow_dropped = 0
        self.shadow_failed = 0

    def request(self, model: str, arm: str, status: int, n: int = 1) -> None:
        with self._lock:
            key = (model, arm, str(status))
            self.requests[key] = self.requests.get(key, 0) + n

    def latency(self, model: str, seconds: float) -> None:
        with self._lock:
            counts = self.hist.setdefault(model, [0] * (len(LATENCY_BUCKETS) + 1))
            for i, b in enumerate(LATENCY_BUCKETS):
                if seconds <= b:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            self.hist_sum[model] = self.hist_sum.get(model, 0.0) + seconds

    def render(self, slots: dict[str, ModelSlot], log_depth: int, shadow_depth: int, journaled: int) -> str:
        def esc(v: str) -> str:
            return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        out = [
            "# HELP retrain_gateway_requests_total Predictions answered, by model, arm and HTTP status.",
            "# TYPE retrain_gateway_requests_total counter",
        ]
        with self._lock:
            for (m, arm, status), n in sorted(self.requests.items()):
                out.append(f'retrain_gateway_requests_total{{model="{esc(m)}",arm="{esc(arm)}",status="{status}"}} {n}')
            out += [
                "# HELP retrain_gateway_request_duration_seconds Predict request latency (receive to answer).",
                "# TYPE retrain_gateway_request_duration_seconds histogram",
            ]
            for m, counts in sorted(self.hist.items()):
                cum = 0
                for b, c in zip((*LATENCY_BUCKETS, "+Inf"), counts):
                    cum += c
                    out.append(f'retrain_gateway_request_duration_seconds_bucket{{model="{esc(m)}",le="{b}"}} {cum}')
                out.append(f'retrain_gateway_request_duration_seconds_sum{{model="{esc(m)}"}} {self.hist_sum[m]:.6f}')
                out.append(f'retrain_gateway_request_duration_seconds_count{{model="{esc(m)}"}} {cum}')
            dropped, failed = self.shadow_dropped, self.shadow_failed
        out += [
            "# HELP retrain_gateway_log_queue_depth Prediction-log items waiting for the writer.",
            "# TYPE retrain_gateway_log_queue_depth gauge",
            f"retrain_gateway_log_queue_depth {log_depth}",
            "# HELP retrain_gateway_log_journaled_rows Predictions in the journal, not yet in the database.",
            "# TYPE retrain_gateway_log_journaled_rows gauge",
            f"retrain_gateway_log_journaled_rows {journaled}",
            "# HELP retrain_gateway_shadow_queue_depth Shadow scorings waiting.",
            "# TYPE retrain_gateway_shadow_queue_depth gauge",
            f"retrain_gateway_shadow_queue_depth {shadow_depth}",
            "# HELP retrain_gateway_shadow_dropped_total Shadow scorings dropped (queue full) or failed.",
            "# TYPE retrain_gateway_shadow_dropped_total counter",
            f'retrain_gateway_shadow_dropped_total{{reason="queue_full"}} {dropped}',
            f'retrain_gateway_shadow_dropped_total{{reason="error"}} {failed}',
            "# HELP retrain_gateway_model_version Loaded model version per alias.",
            "# TYPE retrain_gateway_model_version gauge",
        ]
        for name, slot in sorted(slots.items()):
            d = slot.deployment
            for alias, lm in (("champion", d.champion), ("challenger", d.challenger)):
                if lm is not None and lm.version.isdigit():
                    out.append(f'retrain_gateway_model_version{{model="{esc(name)}",alias="{alias}"}} {lm.version}')
        out += [
            "# HELP retrain_gateway_canary_percent Share of requests routed to the challenger.",
            "# TYPE retrain_gateway_canary_percent gauge",
        ]
        for name, slot in sorted(slots.items()):
            d = slot.deployment
            pct = d.rollout.canary_percent if d.rollout.mode == "canary" else 0.0
            out.append(f'retrain_gateway_canary_percent{{model="{esc(name)}",mode="{d.rollout.mode}"}} {pct}')
        return "\n".join(out) + "\n"


# -----------------------------------------------------------------------------------------
# App
# -----------------------------------------------------------------------------------------


def _one_model_thread() -> None:
    """Cap OpenMP (a per-thread setting) to 1 thread in a prediction worker: a small predict
    is faster and steadier single-threaded, and the cap is paid once, not per call."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="openmp")
    except Exception:  # noqa: BLE001 - only a speed setting
        log.debug("could not cap OpenMP threads", exc_info=True)


def score_records(dep: Deployment, records: list[dict], arms: list[str]) -> list[float]:
    """The answer of each record from the model of its arm."""
    if all(a == routing.CHAMPION_ARM for a in arms):
        return dep.champion.score(records)
    outputs: list = [None] * len(records)
    for arm_name, lm in ((routing.CHAMPION_ARM, dep.champion), (routing.CHALLENGER_ARM, dep.challenger)):
        idx = [i for i, a in enumerate(arms) if a == arm_name]
        if idx:
            for i, v in zip(idx, lm.score([records[i] for i in idx])):
                outputs[i] = v
    return outputs


class _BadRequest(Exception):
    def __init__(self, status: int, detail):
        super().__init__(str(detail))
        self.status = status
        self.detail = detail


class Gateway:
    """The state behind the app: model slots, refresher, shadow worker, prediction log."""

    def __init__(
        self,
        settings,
        models: list[str] | None,
        *,
        refresh_s: float,
        log_url: str | None,
        log_predictions: bool,
        shadow_queue: int = 10_000,
        predict_threads: int = 2,
    ):
        from retrain_lib.model_context import ModelContext

        self.settings = settings
        names = models or sorted(p.stem for p in settings.models_dir.glob("*.yaml"))
        self.slots: dict[str, ModelSlot] = {}
        for name in names:
            path = settings.models_dir / f"{name}.yaml"
            if not path.is_file():
                raise ConfigError(
                    f"model {name!r} has no config {path}; pass models that exist in {settings.models_dir}"
                )
            ctx = ModelContext(name, settings)
            self.slots[name] = ModelSlot(name, ctx.cfg, ctx, FeatureSchema.from_config(ctx.cfg))
        self.refresh_s = refresh_s
        self.metrics = Metrics()
        self.log_url = None
        self.predlog = None
        if log_predictions:
            from retrain_lib.serving.predlog import resolve_url

            self.log_url = resolve_url(settings, log_url)
        self._stop = threading.Event()
        self._shadow: queue.Queue = queue.Queue(maxsize=shadow_queue)
        self._threads: list[threading.Thread] = []
        self._client = None
        self._probe = RegistryChangeProbe.for_uri(settings.registry_uri)
        self._last_full = -math.inf  # time.monotonic() of the last full poll
        # Batches and pipeline-path predictions run here, off the event loop (1 OpenMP thread each).
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, predict_threads), thread_name_prefix="gateway-predict", initializer=_one_model_thread
        )

    @property
    def client(self):
        if self._client is None:
            from retrain_lib.registry import get_client

            self._client = get_client(self.settings.tracking_uri, self.settings.registry_uri)
        return self._client

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if self.log_url is not None:
            from retrain_lib.serving.predlog import PredictionLog

            self.predlog = PredictionLog(self.log_url)
        self.refresh_all()
        for target, name in ((self._refresh_loop, "gateway-refresher"), (self._shadow_loop, "gateway-shadow")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._shadow.put(None)
        for t in self._threads:
            t.join(10)
        self.executor.shutdown(wait=True)
        if self._probe is not None:
            self._probe.close()
        if self.predlog is not None:
            self.predlog.close()

    def refresh_all(self) -> None:
        """Poll the registry for every model, unless the change probe says nothing was
        committed since the last full poll, that poll left no model in error and it is less
        than ``FULL_REFRESH_S`` old. The probe is read before the poll, so a change committed
        during a poll is seen by the next one."""
        if self._probe is not None:
            changed = self._probe.changed()
            if (
                not changed
                and time.monotonic() - self._last_full < FULL_REFRESH_S
                and all(slot.error is None for slot in self.slots.values())
            ):
                now = time.time()
                for slot in self.slots.values():
                    slot.last_refresh = now
                return
        self._last_full = time.monotonic()
        for slot in self.slots.values():
            try:
                refresh_slot(slot, self.client)
            except Exception as exc:  # noqa: BLE001 - keep serving what is loaded; retry next round
                slot.error = f"{type(exc).__name__}: {exc}"
                log.warning("refresh of %s failed (still serving %s): %s", slot.name, slot.deployment.key, exc)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            self.refresh_all()

    def _shadow_loop(self) -> None:
        from retrain_lib.serving.predlog import utcnow

        while True:
            item = self._shadow.get()
            if item is None:
                return
            name, challenger, records, request_ids, features = item
            error = None
            t0 = time.perf_counter()
            try:
                outputs = challenger.score(records)
            except Exception as exc:  # noqa: BLE001 - the shadow never affects answers; its errors are logged
                log.exception("shadow scoring of %s failed", name)
                error, outputs = f"{type(exc).__name__}: {exc}"[:300], [None] * len(records)
                with self.metrics._lock:
                    self.metrics.shadow_failed += 1
            ms = (time.perf_counter() - t0) * 1000 / max(len(request_ids), 1)
            if self.predlog is not None:
                now = utcnow()
                self.predlog.submit(
                    [
                        {
                            "request_id": f"{rid}:shadow",
                            "model": name,
                            "version": challenger.version,
                            "arm": routing.SHADOW_ARM,
                            "features": feats,
                            "output": out,
                            "latency_ms": ms,
                            "created_at": now,
                            "parent_id": rid,
                            "error": error,
                        }
                        for rid, feats, out in zip(request_ids, features, outputs)
                    ]
                )
            self.metrics.request(name, routing.SHADOW_ARM, 500 if error else 200, len(request_ids))

    # -- requests --------------------------------------------------------------------------

    def parse_predict(self, slot: ModelSlot, body: Any) -> tuple[list[dict], list]:
        if not isinstance(body, dict):
            raise _BadRequest(
                422,
                [
                    {
                        "index": None,
                        "field": None,
                        "reason": "the body must be a JSON object with 'records' (a list) or 'record' (an object)",
                    }
                ],
            )
        extra = [k for k in body if k not in ("records", "record", "entity")]
        problems = [
            {
                "index": None,
                "field": k,
                "reason": "unexpected top-level field; use 'records' or 'record' and optionally 'entity'",
            }
            for k in extra
        ]
        if ("records" in body) == ("record" in body):
            problems.append(
                {
                    "index": None,
                    "field": "records",
                    "reason": "give exactly one of 'records' (a list) or 'record' (an object)",
                }
            )
            raise _BadRequest(422, problems)
        if "record" in body:
            records = [body["record"]]
            entity = [body["entity"]] if "entity" in body else None
        else:
            records = body["records"]
            entity = body.get("entity")
            if not isinstance(records, list) or not records:
                raise _BadRequest(
                    422,
                    [*problems, {"index": None, "field": "records", "reason": "must be a non-empty list of objects"}],
                )
            if len(records) > MAX_RECORDS:
                raise _BadRequest(
                    413,
                    [
                        {
                            "index": None,
                            "field": "records",
                            "reason": f"{len(records)} records; at most {MAX_RECORDS} per request",
                        }
                    ],
                )
            if entity is not None and (not isinstance(entity, list) or len(entity) != len(records)):
                problems.append(
                    {
                        "index": None,
                        "field": "entity",
                        "reason": f"with 'records', 'entity' must be a list of {len(records)} values (one per record)",
                    }
                )
        if entity is not None:
            for i, e in enumerate(entity if isinstance(entity, list) else []):
                if e is not None and not isinstance(e, str | int):
                    problems.append({"index": i, "field": "entity", "reason": "must be a string, integer or null"})
        problems += slot.schema.check(records)
        if problems:
            raise _BadRequest(422, problems)
        return records, entity or [None] * len(records)


def create_app(
    settings,
    models: list[str] | None = None,
    *,
    auth_token: str | None = None,
    max_body_bytes: int = 1_000_000,
    refresh_s: float = 2.0,
    log_url: str | None = None,
    log_predictions: bool = True,
):
    """The gateway as a FastAPI app (models load at startup; see the module docstring).

    ``models``: names of model configs to serve (default: every config in
    ``settings.models_dir``). ``log_url``: the prediction log (default
    ``$RETRAIN_PREDICTIONS_URL`` or ``<state_dir>/predictions.db``). ``log_predictions=False``
    turns the log off (benchmarks only: nothing is recorded).

    Example::

        app = create_app(load_settings(), ["credit_default"], auth_token="s3cret")
        uvicorn.run(app, port=8000)
    """
    import contextlib

    import orjson
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    from retrain_lib.serving.predlog import new_request_id, utcnow

    gw = Gateway(settings, models, refresh_s=refresh_s, log_url=log_url, log_predictions=log_predictions)
    token = auth_token.encode() if auth_token else None

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await run_in_threadpool(gw.start)
        try:
            yield
        finally:
            await run_in_threadpool(gw.stop)

    app = FastAPI(title="retrain serving gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw

    def json_response(content, status: int = 200) -> Response:
        return Response(orjson.dumps(content), status_code=status, media_type="application/json")

    def unauthorized(request: Request) -> Response | None:
        if token is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            return JSONResponse(
                {"detail": "missing or wrong bearer token"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        return None

    async def read_json(request: Request):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_body_bytes:
            raise _BadRequest(413, f"body of {length} bytes is larger than the limit of {max_body_bytes}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body_bytes:
                raise _BadRequest(413, f"body larger than the limit of {max_body_bytes} bytes")
            chunks.append(chunk)
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise _BadRequest(
                422, [{"index": None, "field": None, "reason": f"body is not valid JSON: {exc}"}]
            ) from None

    def await_commit(rows) -> asyncio.Future:
        """A future settled on the event loop once the writer committed ``rows`` (or failed):
        one queue put to the writer and one wake-up of the loop per request."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()

        def settle(error):
            if fut.done():  # timed out meanwhile
                return
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)

        def done(error):
            loop.call_soon_threadsafe(settle, error)

        gw.predlog.submit(rows, done)
        return fut

    champion_arm = routing.CHAMPION_ARM

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, request: Request):
        t0 = time.perf_counter()
        denied = unauthorized(request)
        if denied is not None:
            gw.metrics.request(name if name in gw.slots else "_unknown", "none", 401)
            return denied
        slot = gw.slots.get(name)
        if slot is None:
            gw.metrics.request("_unknown", "none", 404)
            return json_response({"detail": f"unknown model {name!r}; served: {', '.join(sorted(gw.slots))}"}, 404)
        try:
            records, entity = gw.parse_predict(slot, await read_json(request))
        except _BadRequest as exc:
            gw.metrics.request(name, "none", exc.status)
            return json_response({"detail": exc.detail}, exc.status)
        dep = slot.deployment  # one read: the whole request sees one deployment
        if dep.champion is None:
            gw.metrics.request(name, "none", 503)
            return json_response(
                {
                    "detail": f"model {name!r} has no champion loaded "
                    f"({slot.error or 'no champion alias in the registry'})"
                },
                503,
            )
        state = dep.rollout
        sticky = state.sticky_key
        ids = [new_request_id() for _ in records]
        if state.mode == "canary" and dep.challenger is not None:
            arms = [
                routing.route(rec.get(sticky, ent) if sticky else ent, rid, state.canary_percent, "canary")
                for rec, ent, rid in zip(records, entity, ids)
            ]
        else:
            arms = [champion_arm] * len(records)
        # One record on the fast path takes well under a millisecond: answer it on the loop
        # (a thread handoff would cost more than it frees). Batches and the pandas pipeline
        # path run in the prediction pool so the loop keeps serving.
        error = None
        try:
            if len(records) == 1 and (dep.champion if arms[0] == champion_arm else dep.challenger).fast is not None:
                outputs = score_records(dep, records, arms)
            else:
                outputs = await asyncio.get_running_loop().run_in_executor(
                    gw.executor, score_records, dep, records, arms
                )
        except Exception as exc:  # noqa: BLE001 - a model that cannot score: logged, answered 500
            log.exception("%s: scoring failed", name)
            error = f"{type(exc).__name__}: {exc}"[:300]
            outputs = [None] * len(records)
        ms = (time.perf_counter() - t0) * 1000
        versions = [dep.champion.version if a == champion_arm else dep.challenger.version for a in arms]
        shadow = state.mode == "shadow" and dep.challenger is not None
        features = None
        if gw.predlog is not None or shadow:
            features = [orjson.dumps(r).decode() for r in records]
        if gw.predlog is not None:
            now = utcnow()
            rows = [
                {
                    "request_id": rid,
                    "model": name,
                    "version": v,
                    "arm": a,
                    "features": f,
                    "output": o,
                    "latency_ms": ms,
                    "created_at": now,
                    "parent_id": None,
                    "error": error,
                }
                for rid, v, a, f, o in zip(ids, versions, arms, features, outputs)
            ]
            try:
                # Durable before the answer: journaled here (SQLite, one file write), else
                # committed by the writer thread while this request waits.
                if not gw.predlog.append(rows):
                    async with asyncio.timeout(30):
                        await await_commit(rows)
            except Exception as exc:  # noqa: BLE001 - not logged = not acknowledged
                log.warning("prediction log commit failed: %s", exc)
                gw.metrics.request(name, "none", 503)
                return json_response(
                    {"detail": f"the prediction could not be logged ({type(exc).__name__}); retry"}, 503
                )
        if error is not None:
            for a in set(arms):
                gw.metrics.request(name, a, 500, arms.count(a))
            return json_response(
                {"detail": f"model {name!r} could not score the request ({error})", "request_ids": ids}, 500
            )
        if shadow:
            try:
                gw._shadow.put_nowait((name, dep.challenger, records, ids, features))
            except queue.Full:
                with gw.metrics._lock:
                    gw.metrics.shadow_dropped += 1
        if len(records) == 1:
            gw.metrics.request(name, arms[0], 200)
        else:
            for a in set(arms):
                gw.metrics.request(name, a, 200, arms.count(a))
        gw.metrics.latency(name, time.perf_counter() - t0)
        return json_response(
            {
                "model": name,
                "predictions": [
                    {"request_id": rid, "version": v, "arm": a, "prediction": o}
                    for rid, v, a, o in zip(ids, versions, arms, outputs)
                ],
            }
        )

    @app.post("/v1/models/{name}/feedback")
    async def post_feedback(name: str, request: Request):
        denied = unauthorized(request)
        if denied is not None:
            return denied
        if name not in gw.slots:
            return json_response({"detail": f"unknown model {name!r}; served: {', '.join(sorted(gw.slots))}"}, 404)
        if gw.predlog is None:
            return json_response({"detail": "this gateway runs without a prediction log"}, 503)
        try:
            body = await read_json(request)
        except _BadRequest as exc:
            return json_response({"detail": exc.detail}, exc.status)
        labels = body.get("labels") if isinstance(body, dict) else None
        if not isinstance(labels, list) or not labels:
            return json_response(
                {
                    "detail": [
                        {"index": None, "field": "labels", "reason": "must be a non-empty list of {request_id, label}"}
                    ]
                },
                422,
            )
        problems, pairs = [], []
        for i, item in enumerate(labels):
            if not isinstance(item, dict) or set(item) - {"request_id", "label"}:
                problems.append({"index": i, "field": None, "reason": "must be an object with request_id and label"})
                continue
            rid, label = item.get("request_id"), item.get("label")
            if not isinstance(rid, str) or not rid:
                problems.append({"index": i, "field": "request_id", "reason": "must be a non-empty string"})
            if isinstance(label, bool):
                label = int(label)
            if not isinstance(label, int | float) or not math.isfinite(label):
                problems.append({"index": i, "field": "label", "reason": "must be a finite number"})
            else:
                pairs.append((rid, float(label)))
        if problems:
            return json_response({"detail": problems}, 422)
        res = await run_in_threadpool(gw.predlog.add_feedback, name, pairs)
        if res.unknown:
            return json_response(
                {
                    "stored": len(res.stored),
                    "unknown": res.unknown,
                    "detail": f"{len(res.unknown)} request id(s) not in the prediction log of {name!r}",
                },
                404,
            )
        return json_response({"stored": len(res.stored)})

    @app.get("/health")
    async def health():
        out, ready = {}, True
        for name, slot in gw.slots.items():
            d = slot.deployment
            ready = ready and d.champion is not None
            out[name] = {
                "champion": d.champion and d.champion.version,
                "challenger": d.challenger and d.challenger.version,
                "rollout": d.rollout.to_dict(),
                "since": d.since,
                "last_refresh": slot.last_refresh,
                "error": slot.error,
            }
        return json_response(
            {"status": "ok" if ready else "degraded", "models": out, "prediction_log": gw.log_url is not None},
            200 if ready else 503,
        )

    @app.get("/metrics")
    async def metrics(request: Request):
        denied = unauthorized(request)
        if denied is not None:
            return denied
        plog = gw.predlog
        text = gw.metrics.render(gw.slots, plog.depth if plog else 0, gw._shadow.qsize(), plog.journaled if plog else 0)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def serve(
    settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    models: list[str] | None = None,
    auth_token: str | None = None,
    refresh_s: float = 2.0,
    log_url: str | None = None,
    log_predictions: bool = True,
    max_body_bytes: int = 1_000_000,
    model_threads: int | None = 1,
) -> None:
    """Run the gateway with uvicorn until SIGINT/SIGTERM.

    ``model_threads`` caps OpenMP/BLAS threads (``threadpoolctl``): a single-row predict is
    faster and far steadier with 1 thread than with threads that spin against each other.
    """
    import uvicorn

    if model_threads:
        # Before sklearn loads its OpenMP runtime (threadpoolctl only limits loaded libraries).
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, str(model_threads))
        import sklearn.ensemble  # noqa: F401 - load the OpenMP runtime now, then cap it
        from threadpoolctl import threadpool_limits

        threadpool_limits(model_threads)
    app = create_app(
        settings,
        models,
        auth_token=auth_token,
        max_body_bytes=max_body_bytes,
        refresh_s=refresh_s,
        log_url=log_url,
        log_predictions=log_predictions,
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
