"""Feature profiles of a SQL window, computed by the database: only counts and summaries travel.

:func:`profile_sql` is :func:`retrain_lib.stats.profile.profile_frame` for a ``data.source: sql``
model, without reading rows: the window ``start <= timestamp < end + 1 day`` (the rows
:func:`retrain_lib.store.data.load_window` would read) is aggregated in the database with
SQLAlchemy expressions, and the result is a :class:`~retrain_lib.stats.profile.Profile` whose
counts equal ``profile_frame``'s on the same rows.

What each statement computes:

- **Numeric features, one scan for all of them** (per chunk of at most 1,500 result columns,
  i.e. one scan for up to about 90 features on 10 buckets with a grid): an inner select gives each
  feature's value as ``DOUBLE PRECISION`` and its bucket index, ``CASE WHEN v IS NULL OR v is
  NaN THEN -1 WHEN v < e1 THEN 0 ... WHEN v < e_k THEN k-1 ELSE k END``; the outer select
  counts each index with ``COUNT(CASE WHEN b = i THEN 1 END)``, and the -inf and +inf values
  apart (``neg_inf``, ``pos_inf``). This is ``profile_frame``'s convention exactly: bucket ``i`` holds ``e_{i-1} <= v < e_i``, -inf and +inf are values and
  land in the outer buckets, NULL and NaN are missing. PostgreSQL's float ``'NaN'`` equals
  itself and sorts above ``'Infinity'``, so it is tested for explicitly (``v = 'NaN'``; other
  dialects ``v <> v``) before any comparison with an edge.
- **Quantile summary (PostgreSQL)**: in the same scan, ``percentile_disc(ARRAY[0, 1/m, ...,
  1]) WITHIN GROUP (ORDER BY v) FILTER (WHERE -inf < v < inf)``: the finite values at ranks
  ``j/m`` (``grid``, ``m = grid_points``). ``percentile_disc(p)`` is an exact order
  statistic (the first value whose cumulative share reaches ``p``), so a quantile, or a CDF
  value, read off the grid is within ``1/m`` in rank of the exact one: the error bound of a
  KS statistic computed from it. An empty set of finite values gives ``grid == ()``. The
  moments of the finite values come with it (``mean = AVG(v)``, ``m2 = VAR_POP(v) * n``), for
  Wasserstein's scale (to float rounding of the database's summation order; ``None`` without
  a grid). Other dialects have no such aggregate: ask for ``grid_points=0`` (KS and Wasserstein are then
  unavailable for the window) or a :class:`DataError` says so.
- **Categorical features**: counts per value as text and the NULLs as missing. PostgreSQL: one
  scan for all of them (``unnest(ARRAY[c1::text, ...]) WITH ORDINALITY`` joined laterally,
  grouped by feature and value); other dialects: one ``GROUP BY`` per feature. Only distinct
  values travel. The text is the key ``profile_frame`` gives the value pandas reads
  (:func:`~retrain_lib.stats.profile.category_key`), by the column's type in the catalogue:
  text and integers as the database writes them, booleans ``True``/``False``, NUMERIC, REAL and
  DOUBLE values (float64 in pandas) cast to DOUBLE PRECISION in SQL and re-keyed in Python
  (``1.50`` -> ``'1.5'``, ``3.0`` -> ``'3'``, ``1e+15`` -> ``'1000000000000000'``).

Before them, the table's column types are read from the catalogue (the category keys above,
and a missing column is named before any statement fails on it). On PostgreSQL every
statement runs in one read-only REPEATABLE READ transaction, so the counts of all chunks
describe one snapshot of the table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from retrain_lib.core.config import ModelConfig
from retrain_lib.core.errors import DataError
from retrain_lib.stats.profile import CategoricalProfile, NumericProfile, Profile, ProfileSpec, category_key
from retrain_lib.store.data import sql_engine, sql_table

MAX_RESULT_COLUMNS = 1500  # per statement: PostgreSQL allows 1,664 target columns
MISSING = -1  # the bucket index of NULL and NaN
QUANTILE_DIALECTS = ("postgresql",)


def profile_sql(
    cfg: ModelConfig,
    spec: ProfileSpec,
    start: dt.date,
    end: dt.date,
    *,
    platform: Any = None,
    grid_points: int = 1000,
) -> Profile:
    """The profile on ``spec`` of the rows of ``cfg``'s table with ``start <= timestamp < end + 1
    day``, computed by the database (see the module docstring for the statements).

    ``grid_points`` (``m``): each numeric feature's ``grid`` holds its finite values at ranks
    ``0, 1/m, ..., 1`` (rank error ``1/m``); 0 leaves the grid out (``grid=None``), which any
    dialect supports; a grid needs PostgreSQL. ``platform`` supplies the connection URL's
    environment variable (as for :func:`~retrain_lib.store.data.load_window`). An empty window
    gives a profile of 0 rows. A table or column that does not exist raises a
    :class:`DataError` naming the model, the table and the column(s).
    """
    if cfg.data.source != "sql":
        raise DataError(
            f"profile_sql profiles a sql source; model {cfg.name!r} reads from {cfg.data.source!r} "
            "(profile its partitions instead)"
        )
    if start > end:
        raise DataError(f"window start {start} is after its end {end}")
    if grid_points < 0:
        raise ValueError(f"grid_points must be >= 0, got {grid_points}")
    engine = sql_engine(platform)
    try:
        return _profile(engine, cfg, spec, start, end, grid_points)
    finally:
        engine.dispose()


def _profile(
    engine: Any, cfg: ModelConfig, spec: ProfileSpec, start: dt.date, end: dt.date, grid_points: int
) -> Profile:
    import sqlalchemy as sa

    dialect = engine.dialect.name
    if grid_points and dialect not in QUANTILE_DIALECTS:
        raise DataError(
            f"model {cfg.name!r}: quantile summaries (for KS and Wasserstein) are pushed down only to "
            f"PostgreSQL (percentile_disc), and table {cfg.data.table!r} is in a {dialect} database; "
            "pass grid_points=0 to profile the binned counts without them (KS and Wasserstein are then "
            "unavailable for this window), or read the window with load_window"
        )
    missing_edges = [c for c in spec.numeric if c not in spec.edges]
    if missing_edges:
        raise ValueError(f"the profile spec has no bucket edges for numeric feature(s) {missing_edges}")
    lo = dt.datetime.combine(start, dt.time())
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time())
    ts = cfg.data.timestamp_column
    t = sql_table(cfg.data.table, *dict.fromkeys((ts, *spec.numeric, *spec.categorical)))
    window = sa.and_(t.c[ts] >= lo, t.c[ts] < hi)
    postgres = dialect == "postgresql"
    try:
        with engine.connect() as conn:
            if postgres:
                conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                types = _column_types(conn, cfg.data.table or "")
                absent = _absent_columns(cfg, spec, types) if types else None
                if absent is not None:  # said before any statement fails on it
                    raise absent
                rows, numeric = _numeric(conn, t, window, spec, grid_points, postgres)
                kinds = {c: _category_kind(types.get(c)) for c in spec.categorical}
                if postgres:
                    categorical = _categorical_unnest(conn, t, window, kinds, rows)
                else:
                    categorical = {
                        c: _categorical_group_by(conn, t, window, c, kinds[c], rows) for c in spec.categorical
                    }
    except sa.exc.DBAPIError as exc:
        raise _explain(engine, cfg, spec, exc) from exc
    return Profile(spec, rows, numeric, categorical, (f"sql:{cfg.data.table}:{start.isoformat()}..{end.isoformat()}",))


# -----------------------------------------------------------------------------------------
# Numeric features: bucket counts and rank grids, one scan per chunk of features
# -----------------------------------------------------------------------------------------


def _numeric_chunks(spec: ProfileSpec, with_grid: bool) -> Iterator[list[str]]:
    """Features in groups whose statement stays under :data:`MAX_RESULT_COLUMNS` result
    columns (buckets, missing, +-inf and, with a grid, grid and moments each; two inner columns
    each); at least one group,
    possibly empty, so the row count is always queried."""
    chunk: list[str] = []
    width = 1  # COUNT(*)
    for name in spec.numeric:
        cost = len(spec.edges[name]) + 4 + (3 if with_grid else 0)
        if chunk and (width + cost > MAX_RESULT_COLUMNS or 2 * (len(chunk) + 1) > MAX_RESULT_COLUMNS):
            yield chunk
            chunk, width = [], 1
        chunk.append(name)
        width += cost
    yield chunk


def _is_nan(value: Any, postgres: bool) -> Any:
    import sqlalchemy as sa

    if postgres:  # 'NaN'::float8 = 'NaN'::float8 is true in PostgreSQL (and NaN sorts last)
        return value == sa.literal(math.nan, sa.Double)
    return value != value  # IEEE: NaN is the only value unequal to itself


def _bucket_index(value: Any, edges: Sequence[float], postgres: bool) -> Any:
    """``CASE``: -1 for NULL/NaN, else the number of edges ``<= value`` (``np.searchsorted(edges,
    value, side="right")``, profile_frame's bucket)."""
    import sqlalchemy as sa

    whens: list[tuple[Any, Any]] = [
        (sa.or_(value.is_(None), _is_nan(value, postgres)), sa.literal_column(str(MISSING)))
    ]
    whens += [(value < sa.literal(float(e), sa.Double), sa.literal_column(str(i))) for i, e in enumerate(edges)]
    return sa.case(*whens, else_=sa.literal_column(str(len(edges))))


def _numeric_statement(
    t: Any, window: Any, spec: ProfileSpec, names: list[str], ranks: list[float] | None, postgres: bool
):
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql as pg

    inner_cols: list[Any] = [sa.literal_column("1").label("one")]
    for i, name in enumerate(names):
        value = sa.cast(t.c[name], sa.Double)
        inner_cols.append(value.label(f"v{i}"))
        inner_cols.append(_bucket_index(value, spec.edges[name], postgres).label(f"b{i}"))
    inner = sa.select(*inner_cols).select_from(t).where(window).subquery("w")
    cols: list[Any] = [sa.func.count().label("rows")]
    ranks_param = sa.bindparam("ranks", ranks, type_=pg.ARRAY(sa.Double)) if ranks is not None else None
    for i, name in enumerate(names):
        b, v = inner.c[f"b{i}"], inner.c[f"v{i}"]
        one: Any = sa.literal_column("1")
        for j in range(MISSING, len(spec.edges[name]) + 1):
            cols.append(sa.func.count(sa.case((b == sa.literal_column(str(j)), one))))
        neg_inf, pos_inf = sa.literal(-math.inf, sa.Double), sa.literal(math.inf, sa.Double)
        cols.append(sa.func.count(sa.case((v == neg_inf, one))))
        cols.append(sa.func.count(sa.case((v == pos_inf, one))))
        if ranks_param is not None:
            # v < +inf also drops NaN, which sorts above +inf in PostgreSQL; NULLs are ignored.
            finite = sa.and_(v > neg_inf, v < pos_inf)
            cols.append(sa.func.percentile_disc(ranks_param).within_group(v).filter(finite))
            cols.append(sa.func.avg(v).filter(finite))
            cols.append(sa.func.var_pop(v).filter(finite))
    return sa.select(*cols).select_from(inner)


def _numeric(
    conn: Any, t: Any, window: Any, spec: ProfileSpec, grid_points: int, postgres: bool
) -> tuple[int, dict[str, NumericProfile]]:
    ranks = [j / grid_points for j in range(grid_points + 1)] if grid_points else None
    rows: int | None = None
    out: dict[str, NumericProfile] = {}
    for names in _numeric_chunks(spec, ranks is not None):
        result = conn.execute(_numeric_statement(t, window, spec, names, ranks, postgres)).one()
        chunk_rows = int(result[0])
        if rows is not None and chunk_rows != rows:
            raise DataError(
                f"the window's row count changed between statements ({rows} then {chunk_rows}): the table "
                "is being written; profile a window that is complete, or retry"
            )
        rows = chunk_rows
        at = 1
        for name in names:
            k = len(spec.edges[name]) + 1
            missing = int(result[at])
            counts = tuple(int(x) for x in result[at + 1 : at + 1 + k])
            neg_inf, pos_inf = int(result[at + 1 + k]), int(result[at + 2 + k])
            at += 3 + k
            grid: tuple[float, ...] | None = None
            mean: float | None = None
            m2: float | None = None
            if ranks is not None:
                values, avg, var = result[at : at + 3]
                at += 3
                grid = tuple(float(x) for x in values) if values is not None else ()
                finite = sum(counts) - neg_inf - pos_inf
                # As NumericAccumulator: 0.0 and 0.0 when there is no finite value.
                mean = float(avg) if avg is not None else 0.0
                m2 = float(var) * finite if var is not None else 0.0
            out[name] = NumericProfile(counts, missing, chunk_rows, None, grid, neg_inf, pos_inf, mean, m2)
    assert rows is not None  # _numeric_chunks yields at least one chunk
    return rows, out


# -----------------------------------------------------------------------------------------
# Categorical features: counts per value (as text)
# -----------------------------------------------------------------------------------------


def _categorical_unnest(
    conn: Any, t: Any, window: Any, kinds: dict[str, str], rows: int
) -> dict[str, CategoricalProfile]:
    """PostgreSQL: one scan for all categorical features, grouped by (feature, value)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql as pg

    names = list(kinds)
    if not names:
        return {}
    pairs = (
        sa.func.unnest(pg.array([_category_text(t.c[n], kinds[n]) for n in names]))
        .table_valued("value", with_ordinality="feature")
        .render_derived()
    )
    statement = (
        sa.select(pairs.c.feature, pairs.c.value, sa.func.count())
        .select_from(t)
        .join(pairs, sa.true())
        .where(window)
        .group_by(pairs.c.feature, pairs.c.value)
    )
    counts: dict[str, dict[str, int]] = {n: {} for n in names}
    missing = dict.fromkeys(names, 0)
    for feature, value, count in conn.execute(statement):
        name = names[int(feature) - 1]  # WITH ORDINALITY counts from 1
        key = None if value is None else _category_key(str(value), kinds[name])
        if key is None:
            missing[name] += int(count)
        else:
            counts[name][key] = counts[name].get(key, 0) + int(count)
    return {n: CategoricalProfile(counts[n], missing[n], rows) for n in names}


def _categorical_group_by(conn: Any, t: Any, window: Any, name: str, kind: str, rows: int) -> CategoricalProfile:
    """Any dialect: one ``GROUP BY`` of one feature."""
    import sqlalchemy as sa

    value = _category_text(t.c[name], kind).label("value")
    statement = sa.select(value, sa.func.count()).select_from(t).where(window).group_by(value)
    counts: dict[str, int] = {}
    missing = 0
    for v, count in conn.execute(statement):
        key = None if v is None else _category_key(str(v), kind)
        if key is None:
            missing += int(count)
        else:
            counts[key] = counts.get(key, 0) + int(count)
    return CategoricalProfile(counts, missing, rows)


def _column_types(conn: Any, table: str) -> dict[str, Any]:
    """The table's column types from the database's catalogue ({} when it cannot be read: the
    category text is then the plain text cast)."""
    import sqlalchemy as sa

    schema, _, name = table.rpartition(".")
    try:
        return {c["name"]: c["type"] for c in sa.inspect(conn).get_columns(name, schema=schema or None)}
    except (sa.exc.NoSuchTableError, NotImplementedError):
        return {}


def _category_kind(column_type: Any) -> str:
    """How pandas reads a column of this type: ``"bool"``, ``"float"`` (NUMERIC, REAL, DOUBLE:
    float64) or ``"text"`` (text, integers, anything else or unknown)."""
    import sqlalchemy as sa

    if isinstance(column_type, sa.Boolean):
        return "bool"
    if isinstance(column_type, sa.Numeric | sa.Float):  # Float is no Numeric in SQLAlchemy 2.1
        return "float"
    return "text"


def _category_text(column: Any, kind: str) -> Any:
    """The SQL text of a categorical value: floats through DOUBLE PRECISION (as pandas reads
    NUMERIC and REAL), everything else cast to TEXT."""
    import sqlalchemy as sa

    if kind == "float":
        return sa.cast(sa.cast(column, sa.Double), sa.Text)
    return sa.cast(column, sa.Text)


def _category_key(text: str, kind: str) -> str | None:
    """The database's text of a value as ``profile_frame``'s key of the value pandas reads
    (:func:`~retrain_lib.stats.profile.category_key`): floats re-parsed (PostgreSQL writes the
    shortest round-trip digits, so ``float`` gives the same double back; ``'1e+15'`` and
    SQLite's ``'3.0'`` become ``'1000000000000000'`` and ``'3'``; NaN is missing, ``None``, as
    for pandas), booleans ``True``/``False``."""
    if kind == "float":
        value = float(text)
        return None if math.isnan(value) else category_key(value)
    if kind == "bool":
        return {"true": "True", "t": "True", "1": "True", "false": "False", "f": "False", "0": "False"}.get(
            text.lower(), text
        )
    return text


# -----------------------------------------------------------------------------------------
# Errors
# -----------------------------------------------------------------------------------------


def _explain(engine: Any, cfg: ModelConfig, spec: ProfileSpec, exc: Exception) -> DataError:
    """A failed query as a DataError naming the model, the table and, when the database's
    catalogue tells, the missing table or column(s)."""
    import sqlalchemy as sa

    table = cfg.data.table or ""
    schema, _, name = table.rpartition(".")
    text = str(getattr(exc, "orig", None) or exc).strip()
    reason = text.splitlines()[0] if text else type(exc).__name__
    try:
        inspector = sa.inspect(engine)
        if not inspector.has_table(name, schema=schema or None):
            return DataError(
                f"profiling model {cfg.name!r}: table {table!r} does not exist in the database ({reason}); "
                "check data.table in its config and the connection URL's database and schema"
            )
        columns = {c["name"]: c for c in inspector.get_columns(name, schema=schema or None)}
    except Exception:  # the catalogue is unreadable too (e.g. the connection is gone): say what failed
        columns = None
    if columns is not None:
        absent = _absent_columns(cfg, spec, columns)
        if absent is not None:
            return absent
        not_numeric = [f"{c!r} ({columns[c]['type']})" for c in spec.numeric if not _numeric_type(columns[c]["type"])]
        if not_numeric:
            return DataError(
                f"profiling model {cfg.name!r}: numeric feature column(s) {', '.join(not_numeric)} of table "
                f"{table!r} are not numeric ({reason}); check the column types or list them as categorical"
            )
    return DataError(
        f"profiling model {cfg.name!r} on table {table!r} failed: {reason}; check the table and column "
        "names in its config and the connection to the database"
    )


def _absent_columns(cfg: ModelConfig, spec: ProfileSpec, columns: Iterable[str]) -> DataError | None:
    """The error naming the columns the profile needs that the table lacks (None: all there)."""
    present = set(columns)
    wanted = {cfg.data.timestamp_column: "data.timestamp_column"}
    wanted.update({c: "numeric feature" for c in spec.numeric})
    wanted.update({c: "categorical feature" for c in spec.categorical})
    absent = [f"{c!r} ({role})" for c, role in wanted.items() if c not in present]
    if not absent:
        return None
    return DataError(
        f"profiling model {cfg.name!r}: table {cfg.data.table!r} has no column(s) {', '.join(absent)}; "
        f"present: {sorted(present)}; check the feature names and data.timestamp_column in its "
        "config against the table's schema"
    )


def _numeric_type(column_type: Any) -> bool:
    try:
        return column_type.python_type in (int, float) or column_type.python_type.__name__ == "Decimal"
    except NotImplementedError:
        return True  # unknown to SQLAlchemy: do not guess
