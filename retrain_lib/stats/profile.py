"""Feature profiles: what a drift check needs of a sample, without the sample.

A :class:`Profile` holds, per numeric feature, the counts of its values in the buckets of a
:class:`ProfileSpec` (the reference's quantile edges, the same buckets as the exact path of
:mod:`retrain_lib.stats.drift_methods`: ``(-inf, e1), [e1, e2), ..., [e_last, inf]`` over the
non-missing values, +-inf included) plus a quantile summary (an Apache DataSketches KLL
sketch of the finite values, or, from a database, the values at evenly spaced ranks), and per
categorical feature the count of each category. Missing values (NaN/None) are counted apart.

Profiles of partitions merge (:meth:`Profile.merge`): counts add, KLL sketches merge. So a
reference profile is computed once at training time and stored with the version, and a
current window's profile is the merge of its partitions' profiles, each computed once.

:func:`spec_from_frame` derives the buckets from a reference sample, :func:`profile_frame`
profiles an in-memory frame on given buckets (the oracle the streaming, SQL and mapped paths
are tested against).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

DEFAULT_KLL_K = 200  # DataSketches' default: normalised rank error about 1.65% (single-sided, 99% confidence)
PROFILE_FORMAT = 1


@dataclass(frozen=True)
class ProfileSpec:
    """The buckets a profile counts in: per numeric feature the inner edges of the reference
    quantile buckets (``bins`` buckets, equal edges collapsed), and the categorical features.
    Two profiles can be merged or compared only on the same spec."""

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    edges: dict[str, tuple[float, ...]]
    bins: int = 10
    kll_k: int = DEFAULT_KLL_K

    def key(self) -> str:
        """A stable digest of the spec: the cache key part that says which buckets were used."""
        import hashlib
        import json

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "edges": {k: [float(x) for x in v] for k, v in self.edges.items()},
            "bins": self.bins,
            "kll_k": self.kll_k,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileSpec:
        return cls(
            numeric=tuple(data["numeric"]),
            categorical=tuple(data["categorical"]),
            edges={k: tuple(float(x) for x in v) for k, v in data["edges"].items()},
            bins=int(data["bins"]),
            kll_k=int(data["kll_k"]),
        )


@dataclass(frozen=True)
class NumericProfile:
    """One numeric feature: ``counts`` per bucket of the spec's edges (``len(edges) + 1``) over
    the non-missing values, ``missing`` NaN/None values, ``rows`` in all. The quantile
    summary is ``sketch`` (a serialised KLL doubles sketch of the finite values) or ``grid``
    (the finite values at ranks ``0, 1/m, ..., 1``, e.g. from a database's percentile_disc).

    Optional (defaults for builders that do not know them): ``neg_inf``/``pos_inf`` count the
    infinite values among the non-missing ones (the KS statistic places them exactly);
    ``mean`` and ``m2`` (sum of squared deviations from the mean) of the finite values give
    the reference standard deviation that Wasserstein is divided by."""

    counts: tuple[int, ...]
    missing: int
    rows: int
    sketch: bytes | None = None
    grid: tuple[float, ...] | None = None
    neg_inf: int = 0
    pos_inf: int = 0
    mean: float | None = None
    m2: float | None = None

    @property
    def valid(self) -> int:
        """Non-missing values (+-inf included): the sample the distribution tests see."""
        return int(sum(self.counts))

    @property
    def finite(self) -> int:
        """Finite values: the sample the quantile summary and the moments describe."""
        return self.valid - self.neg_inf - self.pos_inf

    @property
    def std(self) -> float | None:
        """Population standard deviation of the finite values (``np.std``), if the moments are known."""
        n = self.finite
        if self.m2 is None or n == 0:
            return None
        return math.sqrt(max(self.m2, 0.0) / n)


@dataclass(frozen=True)
class CategoricalProfile:
    """One categorical feature: count per category (as text) of the non-missing values."""

    counts: dict[str, int]
    missing: int
    rows: int


@dataclass(frozen=True)
class Profile:
    """Every feature of one sample on one spec. ``sources`` names what was read (partition
    files with their content digests, or a table and its time range)."""

    spec: ProfileSpec
    rows: int
    numeric: dict[str, NumericProfile]
    categorical: dict[str, CategoricalProfile]
    sources: tuple[str, ...] = field(default_factory=tuple)

    def merge(self, other: Profile) -> Profile:
        """This profile and ``other`` as one sample (counts add, sketches merge)."""
        if self.spec != other.spec:
            raise ValueError("cannot merge profiles computed on different buckets (their specs differ)")
        numeric = {name: _merge_numeric(p, other.numeric[name]) for name, p in self.numeric.items()}
        categorical = {}
        for name, c in self.categorical.items():
            o = other.categorical[name]
            counts = dict(c.counts)
            for k, v in o.counts.items():
                counts[k] = counts.get(k, 0) + v
            categorical[name] = CategoricalProfile(counts, c.missing + o.missing, c.rows + o.rows)
        return Profile(self.spec, self.rows + other.rows, numeric, categorical, self.sources + other.sources)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "spec": self.spec.to_dict(),
            "rows": self.rows,
            "numeric": {
                name: {
                    "counts": list(p.counts),
                    "missing": p.missing,
                    "rows": p.rows,
                    "sketch": base64.b64encode(p.sketch).decode() if p.sketch is not None else None,
                    "grid": list(p.grid) if p.grid is not None else None,
                    "neg_inf": p.neg_inf,
                    "pos_inf": p.pos_inf,
                    "mean": p.mean,
                    "m2": p.m2,
                }
                for name, p in self.numeric.items()
            },
            "categorical": {
                name: {"counts": dict(c.counts), "missing": c.missing, "rows": c.rows}
                for name, c in self.categorical.items()
            },
            "sources": list(self.sources),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        if data.get("format") != PROFILE_FORMAT:
            raise ValueError(f"profile format {data.get('format')!r} is not {PROFILE_FORMAT}; recompute the profile")
        numeric = {
            name: NumericProfile(
                counts=tuple(int(x) for x in p["counts"]),
                missing=int(p["missing"]),
                rows=int(p["rows"]),
                sketch=base64.b64decode(p["sketch"]) if p.get("sketch") else None,
                grid=tuple(float(x) for x in p["grid"]) if p.get("grid") is not None else None,
                neg_inf=int(p.get("neg_inf", 0)),
                pos_inf=int(p.get("pos_inf", 0)),
                mean=float(p["mean"]) if p.get("mean") is not None else None,
                m2=float(p["m2"]) if p.get("m2") is not None else None,
            )
            for name, p in data["numeric"].items()
        }
        categorical = {
            name: CategoricalProfile(
                {str(k): int(v) for k, v in c["counts"].items()}, int(c["missing"]), int(c["rows"])
            )
            for name, c in data["categorical"].items()
        }
        return cls(
            ProfileSpec.from_dict(data["spec"]), int(data["rows"]), numeric, categorical, tuple(data.get("sources", ()))
        )


def kll_sketch(k: int):
    import datasketches

    return datasketches.kll_doubles_sketch(k)


def load_sketch(blob: bytes):
    import datasketches

    return datasketches.kll_doubles_sketch.deserialize(blob)


def _merge_numeric(a: NumericProfile, b: NumericProfile) -> NumericProfile:
    if a.grid is not None or b.grid is not None:
        raise ValueError("a rank-grid summary (from a database) covers one query and cannot be merged")
    sketch = None
    if a.sketch is not None and b.sketch is not None:
        merged = load_sketch(a.sketch)
        merged.merge(load_sketch(b.sketch))
        sketch = merged.serialize()
    counts = tuple(int(x) + int(y) for x, y in zip(a.counts, b.counts, strict=True))
    mean, m2 = merge_moments((a.finite, a.mean, a.m2), (b.finite, b.mean, b.m2))
    return NumericProfile(
        counts,
        a.missing + b.missing,
        a.rows + b.rows,
        sketch,
        None,
        a.neg_inf + b.neg_inf,
        a.pos_inf + b.pos_inf,
        mean,
        m2,
    )


def merge_moments(
    a: tuple[int, float | None, float | None], b: tuple[int, float | None, float | None]
) -> tuple[float | None, float | None]:
    """Mean and sum of squared deviations of two samples ``(n, mean, m2)`` as one (Chan et al.);
    ``(None, None)`` when a non-empty side lacks them."""
    (na, ma, sa), (nb, mb, sb) = a, b
    if na == 0:
        return (mb, sb) if nb else (0.0, 0.0)
    if nb == 0:
        return ma, sa
    if ma is None or sa is None or mb is None or sb is None:
        return None, None
    n = na + nb
    delta = mb - ma
    return ma + delta * nb / n, sa + sb + delta * delta * na * nb / n


def inner_quantile_edges(values: np.ndarray, bins: int) -> tuple[float, ...]:
    """The inner edges of the reference quantile buckets of ``values``: ``np.quantile`` of the
    finite values at ``1/bins, ..., (bins-1)/bins``, equal edges collapsed (as
    :func:`retrain_lib.stats.drift_stats.quantile_edges`)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return ()
    return tuple(float(x) for x in np.unique(np.quantile(v, np.linspace(0, 1, bins + 1)[1:-1])))


def spec_from_frame(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str], *, bins: int = 10, kll_k: int = DEFAULT_KLL_K
) -> ProfileSpec:
    """The buckets of a reference sample."""
    edges = {
        c: inner_quantile_edges(pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float), bins) for c in numeric
    }
    return ProfileSpec(tuple(numeric), tuple(categorical), edges, bins, kll_k)


class NumericAccumulator:
    """Builds a :class:`NumericProfile` from values given in chunks (``add``), with memory of
    one chunk: bucket counts on ``inner`` edges, NaN count, +-inf counts, moments of the finite
    values (Chan's merge) and (``kll_k``) a KLL sketch of the finite values. One ``add`` of all
    values is :func:`numeric_profile`, so the streaming and in-memory paths share this code."""

    def __init__(self, inner: tuple[float, ...], kll_k: int | None):
        self.edges = np.asarray(inner, dtype=float)
        self.counts = np.zeros(self.edges.size + 1, dtype=np.int64)
        self.missing = 0
        self.rows = 0
        self.neg_inf = 0
        self.pos_inf = 0
        self.n_finite = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.sketch = kll_sketch(kll_k) if kll_k is not None else None

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=float)
        if v.size == 0:
            return
        finite_mask = np.isfinite(v)
        n_finite = int(np.count_nonzero(finite_mask))
        n_nan = int(np.count_nonzero(np.isnan(v))) if n_finite < v.size else 0
        n_valid = v.size - n_nan
        if self.edges.size <= 32:  # a few passes of comparisons beat a binary search per value
            below = [int(np.count_nonzero(v < e)) for e in self.edges]  # NaN compares False
            self.counts += np.diff(np.array([0, *below, n_valid], dtype=np.int64)).astype(np.int64)
        else:
            valid = v[~np.isnan(v)] if n_nan else v
            self.counts += np.bincount(np.searchsorted(self.edges, valid, side="right"), minlength=self.edges.size + 1)
        finite = v if n_finite == v.size else v[finite_mask]
        neg_inf = int(np.count_nonzero(v == -np.inf)) if n_finite < n_valid else 0
        self.missing += n_nan
        self.rows += int(v.size)
        self.neg_inf += neg_inf
        self.pos_inf += n_valid - n_finite - neg_inf
        if finite.size:
            mean = float(finite.mean())
            dev = finite - mean
            m2 = float(np.dot(dev, dev))
            merged = merge_moments((self.n_finite, self.mean, self.m2), (int(finite.size), mean, m2))
            self.mean, self.m2 = float(merged[0] or 0.0), float(merged[1] or 0.0)
            self.n_finite += int(finite.size)
            if self.sketch is not None:  # the binding takes writable float64 arrays only (not arrow's views)
                self.sketch.update(finite if finite.flags.writeable else finite.copy())

    def result(self) -> NumericProfile:
        return NumericProfile(
            tuple(int(x) for x in self.counts),
            self.missing,
            self.rows,
            self.sketch.serialize() if self.sketch is not None else None,
            None,
            self.neg_inf,
            self.pos_inf,
            self.mean,
            self.m2,
        )


def numeric_profile(values: np.ndarray, inner: tuple[float, ...], kll_k: int | None) -> NumericProfile:
    """Counts of ``values`` on ``inner`` edges, its missing values and (``kll_k``) a KLL sketch."""
    acc = NumericAccumulator(inner, kll_k)
    acc.add(values)
    return acc.result()


def category_key(value: Any) -> str:
    """A category as text: ``str(value)``, except that an integral float is spelled as an
    integer (``1.0`` -> ``"1"``), as pandas' grouping (``1 == 1.0``) and a database's text
    cast do, so that an integer column read with and without missing values (float then)
    gives the same keys."""
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def categorical_profile(values: pd.Series) -> CategoricalProfile:
    """Count per category (as text, :func:`category_key`) of the non-missing values of ``values``."""
    s = pd.Series(values)
    missing = int(s.isna().sum())
    counts: dict[str, int] = {}
    for k, v in s.dropna().value_counts(sort=False).items():
        if not v:  # a category dtype lists categories that do not occur
            continue
        key = category_key(k)
        counts[key] = counts.get(key, 0) + int(v)
    return CategoricalProfile(counts, missing, int(s.size))


def profile_frame(
    frame: pd.DataFrame, spec: ProfileSpec, *, sources: tuple[str, ...] = (), sketch: bool = True
) -> Profile:
    """The profile of an in-memory frame on ``spec``'s buckets."""
    numeric = {
        c: numeric_profile(
            pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float),
            spec.edges[c],
            spec.kll_k if sketch else None,
        )
        for c in spec.numeric
    }
    categorical = {c: categorical_profile(frame[c]) for c in spec.categorical}
    return Profile(spec, len(frame), numeric, categorical, sources)


def with_sources(profile: Profile, sources: tuple[str, ...]) -> Profile:
    return replace(profile, sources=sources)
