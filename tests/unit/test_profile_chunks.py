"""How the monitor DAG splits its current window into mapped profile tasks, and profiling some
days of it equals profiling those days in memory."""

from __future__ import annotations

import datetime as dt

import pytest
from platforms import credit_platform


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    def window(raw: dict) -> None:
        raw["windows"]["monitor_days"] = 5

    with credit_platform(tmp_path_factory.mktemp("chunks"), days=12, rows_per_day=80, seed=2, edit=window) as p:
        yield p


def test_chunks_cover_the_window_days_with_data_in_order(platform):
    from retrain_lib.pipeline.profiles import partition_chunks

    settings, cfg, _ = platform
    as_of = dt.date(2026, 1, 10)
    want = [(as_of - dt.timedelta(days=i)).isoformat() for i in range(4, -1, -1)]
    one_each = partition_chunks(cfg, settings, as_of, chunks=16)
    assert [c.days for c in one_each] == [(d,) for d in want]
    two = partition_chunks(cfg, settings, as_of, chunks=2)
    assert [list(c.days) for c in two] == [want[:3], want[3:]]
    # the window runs past the data: only days with a partition; before the data: nothing
    late = partition_chunks(cfg, settings, dt.date(2026, 1, 14), chunks=16)
    assert [c.days[0] for c in late] == ["2026-01-10", "2026-01-11", "2026-01-12"]
    assert partition_chunks(cfg, settings, dt.date(2025, 12, 1), chunks=4) == []


def test_profile_of_days_merges_to_the_window_profile(platform):
    from retrain_lib.pipeline.profiles import profile_days, profile_of_window
    from retrain_lib.store.data import load_window

    settings, cfg, _ = platform
    reference = load_window(cfg, settings, dt.date(2026, 1, 1), dt.date(2026, 1, 4))
    spec = profile_of_window(cfg, reference).spec
    as_of = dt.date(2026, 1, 9)
    days = ["2026-01-07", "2026-01-08", "2026-01-09"]
    part_a = profile_days(cfg, settings, spec, days[:1], as_of)
    part_b = profile_days(cfg, settings, spec, days[1:], as_of)
    whole = profile_of_window(cfg, load_window(cfg, settings, dt.date(2026, 1, 7), as_of, as_of=as_of), spec)
    merged = part_a.merge(part_b)
    assert merged.rows == whole.rows == part_a.rows + part_b.rows > 0
    assert merged.numeric.keys() == whole.numeric.keys()
    for name, p in whole.numeric.items():
        assert merged.numeric[name].counts == p.counts and merged.numeric[name].missing == p.missing
    assert merged.categorical == whole.categorical
