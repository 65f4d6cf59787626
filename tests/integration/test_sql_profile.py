"""Profiles pushed down to PostgreSQL (retrain_lib.store.sql_profile) equal the in-memory
profile (profile_frame) of the same rows: the machine's PostgreSQL, in a database created and
dropped by the test, holds generated rows with NULL, NaN, +-inf and values exactly on the
bucket edges; only aggregates come back (checked on every statement the engine runs)."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
TABLE = "profile_events"
START, END = dt.date(2026, 3, 3), dt.date(2026, 3, 7)
EDGES = {
    "x_float": (-1.0, 0.0, 0.1, 0.5, 2.0),  # 0.1: not a binary fraction, tied exactly in the data
    "x_int": (2.0, 5.0, 7.0),
    "x_numeric": (0.25, 1.5),
    "x_empty": (0.0,),  # only NULL / NaN in the window
}
# text with NULL; bigint; boolean with NULL; double with NULL, NaN, whole values and 1e15 (PostgreSQL
# writes '1e+15'); numeric(5, 2) (1.50 in the database, 1.5 in pandas)
CATEGORICAL = ("region", "code", "flag", "score", "grade")


def _model_config(tmp_path: Path, table: str = TABLE, timestamp: str = "ts"):
    from retrain_lib.core.config import load_model_config

    model = yaml.safe_load((REPO / "configs" / "models" / "credit_default.yaml").read_text())
    model["data"] = {"source": "sql", "table": table, "id_column": "application_id", "timestamp_column": timestamp}
    path = tmp_path / "credit_default.yaml"
    path.write_text(yaml.safe_dump(model, sort_keys=False))
    return load_model_config(path)


def _spec(numeric=tuple(EDGES), categorical=CATEGORICAL):
    from retrain_lib.stats.profile import ProfileSpec

    return ProfileSpec(tuple(numeric), tuple(categorical), {k: EDGES.get(k, (0.0,)) for k in numeric}, bins=10)


def _rows(n: int = 3000, seed: int = 5) -> list[dict]:
    """Rows over 2026-03-01..03-10 (the window is 03-03..03-07), None = NULL."""
    rng = np.random.default_rng(seed)
    specials = [None, math.nan, math.inf, -math.inf, *EDGES["x_float"]]
    base = dt.datetime(2026, 3, 1)
    rows = []
    for i in range(n):
        ts = base + dt.timedelta(seconds=int(rng.integers(0, 10 * 86400)))
        if i < 4:  # the window's boundaries: start 00:00 is in, end + 1 day 00:00 is out
            ts = [dt.datetime(2026, 3, 3), dt.datetime(2026, 3, 8), dt.datetime(2026, 3, 2, 23, 59, 59), base][i]
        r = rng.random()
        x_float = specials[int(rng.integers(len(specials)))] if r < 0.3 else float(np.round(rng.normal(0.3, 1.2), 3))
        x_int = None if rng.random() < 0.1 else int(rng.integers(0, 10))
        x_numeric = (
            None
            if rng.random() < 0.05
            else (math.nan if rng.random() < 0.05 else float(rng.choice([0.25, 1.5, 0.7, 3.0])))
        )
        x_empty = None if rng.random() < 0.5 else math.nan
        region = None if rng.random() < 0.1 else str(rng.choice(["north", "south", "east", "west", "Zone 9"]))
        code = int(rng.integers(0, 6))
        flag = None if rng.random() < 0.1 else bool(rng.random() < 0.4)
        score = [None, math.nan, 1.0, 2.5, 0.1, 3.0, 1e15][int(rng.integers(7))]
        grade = float(rng.choice([1.5, 3.0, 0.25]))
        rows.append(
            dict(
                id=i,
                ts=ts,
                x_float=x_float,
                x_int=x_int,
                x_numeric=x_numeric,
                x_empty=x_empty,
                region=region,
                code=code,
                flag=flag,
                score=score,
                grade=grade,
            )
        )
    return rows


def _frame(rows: list[dict]) -> pd.DataFrame:
    """The same rows in pandas (NULL and NaN both NaN/None, as a SQL read would give them)."""
    frame = pd.DataFrame(rows)
    for c in EDGES:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    frame["ts"] = pd.to_datetime(frame["ts"])
    return frame


def _window(frame: pd.DataFrame) -> pd.DataFrame:
    lo, hi = pd.Timestamp(START), pd.Timestamp(END) + pd.Timedelta(days=1)
    return frame[(frame["ts"] >= lo) & (frame["ts"] < hi)].reset_index(drop=True)


@pytest.fixture(scope="module")
def pg_rows():
    """A fresh database with the generated rows in TABLE (NaN stored as NaN, not NULL)."""
    import sqlalchemy as sa

    name = f"retrain_sqlprofile_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"{PG}/{name}"
    rows = _rows()
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, ts timestamp NOT NULL, x_float double precision, "
                    "x_int integer, x_numeric numeric(10, 3), x_empty double precision, region text, code bigint, "
                    "flag boolean, score double precision, grade numeric(5, 2))"
                )
            )
            conn.execute(
                sa.text(
                    f"INSERT INTO {TABLE} VALUES (:id, :ts, :x_float, :x_int, :x_numeric, :x_empty, :region, :code, "
                    ":flag, :score, :grade)"
                ),
                rows,
            )
            stored = conn.execute(
                sa.text(
                    f"SELECT count(*) FILTER (WHERE x_float = 'NaN'), count(*) FILTER (WHERE x_float IS NULL) FROM {TABLE}"
                )
            ).one()
        assert stored[0] > 0 and stored[1] > 0  # NaN and NULL both made it into the table
        engine.dispose()
        yield url, rows
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def statements():
    """(statement, rows returned) of every statement any SQLAlchemy engine runs meanwhile."""
    import sqlalchemy as sa

    seen: list[tuple[str, int]] = []

    def after(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, cursor.rowcount))

    sa.event.listen(sa.engine.Engine, "after_cursor_execute", after)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "after_cursor_execute", after)


def _assert_rank_grid(grid: tuple[float, ...], values: np.ndarray, m: int) -> None:
    """Each grid[j] is a finite value of the window whose rank interval is within 1/m of j/m."""
    finite = np.sort(values[np.isfinite(values)])
    n = finite.size
    assert len(grid) == m + 1
    assert grid[0] == finite[0] and grid[-1] == finite[-1]
    assert all(a <= b for a, b in zip(grid, grid[1:], strict=False))
    for j, g in enumerate(grid):
        assert g in set(finite.tolist())
        below = np.searchsorted(finite, g, side="left") / n  # share of values < g
        at_or_below = np.searchsorted(finite, g, side="right") / n  # share <= g
        p = j / m
        assert below - 1 / m <= p <= at_or_below + 1 / m, (j, g, below, at_or_below)


@pytest.mark.parametrize("grid_points", [1000, 20])
def test_pushdown_profile_equals_profile_frame_and_reads_no_rows(
    pg_rows, tmp_path, monkeypatch, statements, grid_points
):
    from retrain_lib.stats.profile import profile_frame
    from retrain_lib.store.sql_profile import profile_sql

    url, rows = pg_rows
    monkeypatch.setenv("RETRAIN_SQL_URL", url)
    cfg = _model_config(tmp_path)
    spec = _spec()
    frame = _frame(rows)
    window = _window(frame)
    assert 0 < len(window) < len(frame)  # rows outside the window exist and must be left out

    got = profile_sql(cfg, spec, START, END, grid_points=grid_points)
    want = profile_frame(window, spec, sketch=False)

    assert got.rows == want.rows == len(window)
    assert got.sources == (f"sql:{TABLE}:2026-03-03..2026-03-07",)
    for name in spec.numeric:
        g, w = got.numeric[name], want.numeric[name]
        assert (g.counts, g.missing, g.rows) == (w.counts, w.missing, w.rows), name
        assert (g.neg_inf, g.pos_inf) == (w.neg_inf, w.pos_inf), name
        assert len(g.counts) == len(EDGES[name]) + 1
        # Moments of the finite values: the same up to the summation order.
        assert g.mean == pytest.approx(w.mean, rel=1e-9, abs=1e-12), name
        assert g.m2 == pytest.approx(w.m2, rel=1e-9, abs=1e-9), name
    # The edge cases are really exercised: ties on every edge, infinities in the outer buckets.
    xf = window["x_float"].to_numpy()
    assert all((xf == e).sum() > 0 for e in EDGES["x_float"])
    assert np.isinf(xf).sum() > 0 and got.numeric["x_float"].missing > 0
    assert got.numeric["x_empty"].counts == (0, 0) and got.numeric["x_empty"].missing == len(window)
    for name in spec.categorical:
        g, w = got.categorical[name], want.categorical[name]
        assert (g.counts, g.missing, g.rows) == (w.counts, w.missing, w.rows), name
    assert got.categorical["region"].missing > 0
    # The keys are pandas' for each column type, whatever the database writes.
    assert set(got.categorical["flag"].counts) == {"True", "False"} and got.categorical["flag"].missing > 0
    assert {"1", "2.5", "0.1", "1000000000000000"} <= set(got.categorical["score"].counts)
    assert set(got.categorical["grade"].counts) == {"1.5", "3", "0.25"}

    for name in ("x_float", "x_int", "x_numeric"):
        grid = got.numeric[name].grid
        assert grid is not None
        _assert_rank_grid(grid, window[name].to_numpy(), grid_points)
    assert got.numeric["x_empty"].grid == ()

    # Only aggregates travel: a handful of statements, none returning more than the distinct categories.
    profile_statements = [(s, n) for s, n in statements if TABLE in s]
    assert 1 <= len(profile_statements) <= 3, [s for s, _ in profile_statements]
    categories = sum(len(c.counts) + 1 for c in want.categorical.values())
    assert all(n <= categories for _, n in statements), [(s[:80], n) for s, n in statements]
    assert all("count(" in s.lower() for s, _ in profile_statements)


def test_many_features_are_profiled_in_one_scan_per_chunk(pg_rows, tmp_path, monkeypatch, statements):
    """60 numeric features (the same columns under many names via a view) in one statement."""
    import sqlalchemy as sa

    from retrain_lib.stats.profile import ProfileSpec, profile_frame
    from retrain_lib.store.sql_profile import profile_sql

    url, rows = pg_rows
    names = [f"f{i}" for i in range(60)]
    sources = ["x_float", "x_int", "x_numeric"]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        cols = ", ".join(f"{sources[i % 3]} AS {n}" for i, n in enumerate(names))
        conn.execute(
            sa.text(
                f"CREATE OR REPLACE VIEW wide_events AS SELECT id, ts, {cols}, {', '.join(CATEGORICAL)} FROM {TABLE}"
            )
        )
    engine.dispose()
    monkeypatch.setenv("RETRAIN_SQL_URL", url)
    spec = ProfileSpec(tuple(names), CATEGORICAL, {n: EDGES[sources[i % 3]] for i, n in enumerate(names)})
    window = _window(_frame(rows))
    for i, n in enumerate(names):
        window[n] = window[sources[i % 3]]
    statements.clear()
    got = profile_sql(_model_config(tmp_path, table="wide_events"), spec, START, END, grid_points=100)
    want = profile_frame(window, spec, sketch=False)
    for n in names:
        assert (got.numeric[n].counts, got.numeric[n].missing) == (want.numeric[n].counts, want.numeric[n].missing)
    # One numeric statement (one scan) for all 60 features, one for the categorical ones.
    assert len([s for s, _ in statements if "wide_events" in s]) == 2


def test_unknown_column_and_table_are_clear_data_errors(pg_rows, tmp_path, monkeypatch):
    from retrain_lib.core.errors import DataError
    from retrain_lib.store.sql_profile import profile_sql

    url, _ = pg_rows
    monkeypatch.setenv("RETRAIN_SQL_URL", url)
    cfg = _model_config(tmp_path)
    with pytest.raises(
        DataError, match=rf"credit_default.*{TABLE}.*'income_typo' \(numeric feature\).*present:.*x_float"
    ):
        profile_sql(cfg, _spec(numeric=("x_float", "income_typo")), START, END)
    with pytest.raises(DataError, match=r"'segment' \(categorical feature\)"):
        profile_sql(cfg, _spec(categorical=("region", "segment")), START, END)
    with pytest.raises(DataError, match=r"'event_time' \(data.timestamp_column\)"):
        profile_sql(_model_config(tmp_path, timestamp="event_time"), _spec(), START, END)
    with pytest.raises(DataError, match=r"credit_default.*'no_such_table' does not exist.*data.table"):
        profile_sql(_model_config(tmp_path, table="no_such_table"), _spec(), START, END)
    with pytest.raises(DataError, match=r"'region' \(TEXT\).*not numeric"):
        profile_sql(cfg, _spec(numeric=("x_float", "region")), START, END)


def test_other_dialects_count_without_a_grid_and_say_why(tmp_path, monkeypatch):
    """SQLite: binned counts through the generic path; a rank grid is refused with the reason."""
    import sqlalchemy as sa

    from retrain_lib.core.errors import DataError
    from retrain_lib.stats.profile import profile_frame
    from retrain_lib.store.sql_profile import profile_sql

    def no_nan(value):  # SQLite stores NaN as NULL: keep the comparison about the same rows
        return None if isinstance(value, float) and math.isnan(value) else value

    rows = [{k: no_nan(v) for k, v in r.items()} for r in _rows(800, seed=9)]
    url = f"sqlite:///{tmp_path / 'events.db'}"
    table = sa.Table(
        TABLE,
        sa.MetaData(),
        sa.Column("id", sa.Integer),
        sa.Column("ts", sa.DateTime),  # stored as SQLAlchemy's text form, as the window's bounds are bound
        *(sa.Column(c, sa.Float) for c in EDGES),
        sa.Column("region", sa.Text),
        sa.Column("code", sa.Integer),
        sa.Column("flag", sa.Boolean),  # stored as 1/0
        sa.Column("score", sa.Float),  # SQLite writes 3.0 as '3.0' and 1e15 as '1.0e+15'
        sa.Column("grade", sa.Float),
    )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(sa.insert(table), rows)
    engine.dispose()
    monkeypatch.setenv("RETRAIN_SQL_URL", url)
    cfg, spec = _model_config(tmp_path), _spec()
    got = profile_sql(cfg, spec, START, END, grid_points=0)
    want = profile_frame(_window(_frame(rows)), spec, sketch=False)
    assert got.rows == want.rows > 0
    for name in spec.numeric:
        assert (got.numeric[name].counts, got.numeric[name].missing) == (
            want.numeric[name].counts,
            want.numeric[name].missing,
        )
        assert got.numeric[name].grid is None
        assert (got.numeric[name].neg_inf, got.numeric[name].pos_inf) == (
            want.numeric[name].neg_inf,
            want.numeric[name].pos_inf,
        )
    for name in spec.categorical:
        assert got.categorical[name] == want.categorical[name]
    assert set(got.categorical["flag"].counts) == {"True", "False"}
    with pytest.raises(DataError, match="PostgreSQL.*sqlite.*grid_points=0"):
        profile_sql(cfg, spec, START, END)


def test_drift_scores_from_the_pushed_down_profile_equal_the_in_memory_ones(pg_rows, tmp_path, monkeypatch):
    """compare_profiles on profile_sql's profile gives the binned scores of profile_frame's, and a
    KS statistic from the rank grid within the stated bound of the exact two-sample KS."""
    from scipy.stats import ks_2samp

    from retrain_lib.stats.profile import profile_frame
    from retrain_lib.stats.profile_drift import compare_profiles
    from retrain_lib.store.sql_profile import profile_sql

    url, rows = pg_rows
    monkeypatch.setenv("RETRAIN_SQL_URL", url)
    spec = _spec()
    reference_frame = _frame(_rows(2500, seed=11))
    reference = profile_frame(reference_frame, spec)
    window = _window(_frame(rows))
    from_sql = profile_sql(_model_config(tmp_path), spec, START, END, grid_points=200)
    in_memory = profile_frame(window, spec)
    numeric = ["x_float", "x_int", "x_numeric"]
    for method in ("psi", "js", "missing_share"):
        for categorical_method in ("psi", "js", "chi2", "linf", "unseen"):
            kw = dict(method=method, categorical_method=categorical_method, numeric=numeric)
            a = compare_profiles(reference, from_sql, **kw)
            b = compare_profiles(reference, in_memory, **kw)
            assert [(f.name, f.method) for f in a.features] == [(f.name, f.method) for f in b.features]
            np.testing.assert_allclose([f.score for f in a.features], [f.score for f in b.features], rtol=0, atol=1e-12)
            assert [f.drifted for f in a.features] == [f.drifted for f in b.features]
    report = compare_profiles(reference, from_sql, method="ks", numeric=numeric, categorical=[])
    bounds = report.extra["sketch"]["features"]
    for f in report.features:
        ref_values = reference_frame[f.name].dropna().to_numpy()
        cur_values = window[f.name].dropna().to_numpy()
        exact = ks_2samp(ref_values, cur_values).statistic
        assert abs(f.score - exact) <= bounds[f.name]["error_bound"] + 1e-12, (f.name, f.score, exact)
        assert bounds[f.name]["summary"] and bounds[f.name]["error_bound"] > 0


def test_an_empty_window_is_a_profile_of_no_rows(pg_rows, tmp_path, monkeypatch):
    from retrain_lib.stats.profile import profile_frame
    from retrain_lib.store.sql_profile import profile_sql

    url, rows = pg_rows
    monkeypatch.setenv("RETRAIN_SQL_URL", url)
    spec = _spec()
    got = profile_sql(_model_config(tmp_path), spec, dt.date(2026, 4, 1), dt.date(2026, 4, 2))
    want = profile_frame(_frame(rows).iloc[0:0], spec, sketch=False)
    assert got.rows == want.rows == 0
    for name in spec.numeric:
        g, w = got.numeric[name], want.numeric[name]
        assert (g.counts, g.missing, g.neg_inf, g.pos_inf, g.mean, g.m2) == (
            w.counts,
            w.missing,
            w.neg_inf,
            w.pos_inf,
            w.mean,
            w.m2,
        )
        assert g.grid == ()
    assert all(got.categorical[c] == want.categorical[c] for c in spec.categorical)
