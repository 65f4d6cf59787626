"""The scoring fast path: records of a ``Pipeline([ColumnTransformer(imputers, scalers,
one-hot), estimator])`` model scored without pandas (:class:`FastScorer`), built and checked
against the pipeline itself by :func:`compile_fast` when a version loads. Other models
(or ``RETRAIN_GATEWAY_FAST_PATH=0``) are scored through the pipeline on a DataFrame."""

import logging

from retrain_lib.core.metrics import predict_scores
from retrain_lib.serving.schema import FeatureSchema, warm_row

log = logging.getLogger(__name__)

FAST_PATH_ENV = "RETRAIN_GATEWAY_FAST_PATH"  # "0": always score through the pipeline


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


def _fast_steps(trans, kind: str) -> list:  # noqa: C901 - one branch per supported sklearn transformer
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


def _probe_records(schema: FeatureSchema, model) -> list[dict]:
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
    rows = [warm_row(schema), {c: None for c in schema.columns}]
    for i in range(24):
        row: dict[str, object] = {}
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


def compile_fast(model, schema: FeatureSchema, task: str) -> "FastScorer | None":
    """A :class:`FastScorer` equivalent to ``model`` on records of ``schema``, or None when the
    model has a step it does not reproduce or it disagrees with the pipeline on probe rows."""
    import numpy as np
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

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
