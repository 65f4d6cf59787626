"""The columns to compare two tables on when no model config names the features: shared
columns less identifiers and timestamps, split into numeric and categorical (:func:`select_features`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

_ID_NAMES = ("id", "uuid", "guid")
_ID_SUFFIXES = ("_id", "-id", ".id", " id", "_uuid", "_guid")
_MIN_ROWS_FOR_UNIQUE = 20  # fewer rows than this prove nothing by being all different


@dataclass(frozen=True)
class FeatureSelection:
    """The columns two tables are compared on, when no model config names the features.

    ``shared`` are the columns both have; ``left_out`` maps the shared columns that are not
    features (identifiers, timestamps, ``exclude``) to why; ``numeric`` and ``categorical``
    are the rest, by dtype.
    """

    shared: list[str]
    numeric: list[str]
    categorical: list[str]
    left_out: dict[str, str]
    reference_columns: int
    current_columns: int

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical

    @property
    def shared_fraction(self) -> float:
        """Shared columns over the columns of the wider table (1.0: the same columns)."""
        widest = max(self.reference_columns, self.current_columns)
        return len(self.shared) / widest if widest else 0.0


def _looks_like_timestamps(values: pd.Series) -> bool:
    sample = values.dropna().head(50)
    if sample.empty or not all(isinstance(v, str) for v in sample):
        return False
    if not all(any(ch.isdigit() for ch in v) and ("-" in v or ":" in v or "/" in v) for v in sample):
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="ISO8601", utc=True)
    return bool(parsed.notna().all())


def _not_a_feature(name: str, reference: pd.Series, current: pd.Series) -> str | None:
    """Why a column is an identifier or a timestamp rather than a feature; None for a feature."""
    lowered = str(name).lower()
    if lowered in _ID_NAMES or lowered.endswith(_ID_SUFFIXES) or (str(name).endswith("Id") and len(str(name)) > 2):
        return "id: named like one"
    for s in (reference, current):
        if pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
            return "timestamp: datetime column"
    if _looks_like_timestamps(reference) and _looks_like_timestamps(current):
        return "timestamp: ISO date/time text"
    if min(len(reference), len(current)) >= _MIN_ROWS_FOR_UNIQUE:
        unique = all(s.notna().all() and s.is_unique for s in (reference, current))
        if unique and not pd.api.types.is_numeric_dtype(reference) and not pd.api.types.is_bool_dtype(reference):
            return "id: a different value in every row"
        if (
            unique
            and pd.api.types.is_integer_dtype(reference)
            and all(s.is_monotonic_increasing for s in (reference, current))
        ):
            return "id: an increasing integer in every row"
    return None


def select_features(reference: pd.DataFrame, current: pd.DataFrame, *, exclude=(), keep=()) -> FeatureSelection:
    """The columns to score when comparing ``reference`` and ``current`` without a model
    config: the shared ones, less identifiers (named ``id``/``*_id``, a different text value
    in every row, an increasing integer counter), timestamps (datetime dtype, ISO date/time
    text) and ``exclude``; ``keep`` names columns to score even so. Numeric columns (not bool)
    are numeric features, the others categorical.

    >>> ref = pd.DataFrame({"order_id": range(30), "amount": [1.0] * 30, "shop": ["a"] * 30})
    >>> sel = select_features(ref, ref)
    >>> sel.numeric, sel.categorical, sel.left_out
    (['amount'], ['shop'], {'order_id': 'id: named like one'})
    """
    excluded, kept = set(exclude or ()), set(keep or ())
    shared = [c for c in reference.columns if c in current.columns]
    left_out: dict[str, str] = {}
    features = []
    for c in shared:
        why = "excluded" if c in excluded else None if c in kept else _not_a_feature(c, reference[c], current[c])
        if why:
            left_out[c] = why
        else:
            features.append(c)
    numeric = [
        c
        for c in features
        if pd.api.types.is_numeric_dtype(reference[c]) and not pd.api.types.is_bool_dtype(reference[c])
    ]
    categorical = [c for c in features if c not in numeric]
    return FeatureSelection(shared, numeric, categorical, left_out, len(reference.columns), len(current.columns))
