"""What a record sent to the gateway must look like: a model's feature schema (from its
config), the checks of incoming records, and the DataFrame the pipeline path scores."""

import math
from dataclasses import dataclass
from typing import Any


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


def warm_row(schema: FeatureSchema) -> dict:
    """A valid record of ``schema`` (zeros and empty strings): the first, slow call of a newly
    loaded model is paid with it, and the fast path is checked on it."""
    return {**{c: 0.0 for c in schema.numeric}, **{c: "" for c in schema.categorical}}
