"""Unit tests of retrain_lib.store.data (with data written by retrain_lib.tools.simulate).

Expectations are checked against the partition files read directly with pandas, not
through the loader under test.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from retrain_lib.core.config import load_model_config
from retrain_lib.core.errors import DataError
from retrain_lib.stats.drift import compute_feature_drift
from retrain_lib.store.data import (
    available_days,
    day_range,
    fingerprint_files,
    list_partitions,
    load_window,
    partition_cache,
    resolve_dir,
    window_fingerprint,
    write_partition,
)
from retrain_lib.tools.simulate import simulate

START = dt.date(2026, 1, 1)
DAYS = 20
ROWS = 200
DRIFT_DAY = 11  # 1-based: 2026-01-11
MODELS = Path(__file__).resolve().parents[2] / "configs" / "models"


def D(i: int) -> dt.date:
    """Day ``i`` of the simulation, 0-based."""
    return START + dt.timedelta(days=i)


@pytest.fixture(scope="module")
def credit_cfg():
    return load_model_config(MODELS / "credit_default.yaml")


@pytest.fixture(scope="module")
def demand_cfg():
    return load_model_config(MODELS / "daily_demand.yaml")


@pytest.fixture(scope="module")
def credit_root(tmp_path_factory, credit_cfg):
    """Covariate drift from day 11. Read-only: tests that modify files make a copy."""
    root = tmp_path_factory.mktemp("credit")
    res = simulate(
        credit_cfg, root, days=DAYS, rows_per_day=ROWS, seed=3, drift_day=DRIFT_DAY, drift_kind="covariate", start=START
    )
    return root, res


@pytest.fixture
def credit_copy(tmp_path, credit_root):
    root, _ = credit_root
    dst = tmp_path / "data"
    shutil.copytree(root, dst)
    return dst


def _day_of_id(ids: pd.Series) -> pd.Series:
    return pd.to_datetime(ids.str.slice(0, 8), format="%Y%m%d").dt.date


# -----------------------------------------------------------------------------------------
# Layout written by simulate
# -----------------------------------------------------------------------------------------


def test_one_feature_file_per_day(credit_root, credit_cfg):
    root, res = credit_root
    feat_dir = root / credit_cfg.data.path
    names = sorted(p.name for p in feat_dir.iterdir() if p.is_file())
    assert names == [f"{D(i).isoformat()}.parquet" for i in range(DAYS)]
    assert res.feature_files == DAYS and res.days == DAYS and res.start == START
    assert res.drift_start == D(DRIFT_DAY - 1)
    total = 0
    for i in range(DAYS):
        df = pd.read_parquet(feat_dir / f"{D(i).isoformat()}.parquet")
        total += len(df)
        assert 100 < len(df) < 300
        assert list(df.columns) == [
            credit_cfg.data.id_column,
            credit_cfg.data.timestamp_column,
            *credit_cfg.features.all,
        ]
        assert credit_cfg.features.target not in df.columns  # labels live elsewhere
        assert (pd.to_datetime(df["event_time"]).dt.date == D(i)).all()
        assert (_day_of_id(df["application_id"]) == D(i)).all()
        assert df["application_id"].is_unique
    assert total == res.rows
    assert available_days(credit_cfg, root) == [D(i) for i in range(DAYS)]


def test_labels_of_day_d_sit_in_partition_d_plus_delay(credit_root, credit_cfg):
    root, res = credit_root
    delay = credit_cfg.data.label_delay_days
    assert delay == 7
    label_dir = root / credit_cfg.data.labels_path
    files = sorted(label_dir.glob("*.parquet"))
    assert [f.stem for f in files] == [(D(i) + dt.timedelta(days=delay)).isoformat() for i in range(DAYS)]
    assert res.label_files == DAYS
    seen = set()
    for f in files:
        labels = pd.read_parquet(f)
        arrival = dt.date.fromisoformat(f.stem)
        assert set(labels.columns) == {"application_id", "defaulted"}
        assert (_day_of_id(labels["application_id"]) == arrival - dt.timedelta(days=delay)).all()
        events = pd.read_parquet(
            root / credit_cfg.data.path / f"{(arrival - dt.timedelta(days=delay)).isoformat()}.parquet"
        )
        assert set(labels["application_id"]) == set(events["application_id"])
        assert set(labels["defaulted"].unique()) <= {0, 1}
        seen |= set(labels["application_id"])
    assert len(seen) == res.rows


# -----------------------------------------------------------------------------------------
# load_window: no peeking at labels from the future
# -----------------------------------------------------------------------------------------


def _labels_arrived_by(root: Path, cfg, as_of: dt.date) -> pd.DataFrame:
    """All labels whose partition date is <= as_of, read directly from the files."""
    frames = [
        pd.read_parquet(p)
        for p in sorted((root / cfg.data.labels_path).glob("*.parquet"))
        if dt.date.fromisoformat(p.stem) <= as_of
    ]
    if not frames:
        return pd.DataFrame(columns=["application_id", "defaulted"])
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("as_of_offset", [0, 3, 7, 8, 12, 19, 26, 30])
def test_load_window_never_exposes_future_labels(credit_root, credit_cfg, as_of_offset):
    root, _ = credit_root
    as_of = D(as_of_offset)
    start, end = D(0), D(DAYS - 1)
    w = load_window(credit_cfg, root, start, end, as_of=as_of)
    f = w.frame
    # events: only days up to as_of (and within the window)
    event_days = pd.to_datetime(f["event_time"]).dt.date
    assert event_days.max() <= min(as_of, end)
    assert set(event_days) == {D(i) for i in range(DAYS) if D(i) <= as_of}
    # labels: exactly those that had arrived by as_of, with their values
    arrived = _labels_arrived_by(root, credit_cfg, as_of).set_index("application_id")["defaulted"]
    known = f[f["__label_known"]]
    assert known["application_id"].isin(arrived.index).all()
    expected_known = set(f["application_id"]) & set(arrived.index)
    assert set(known["application_id"]) == expected_known
    np.testing.assert_array_equal(known["defaulted"].to_numpy(), arrived.loc[known["application_id"]].to_numpy())
    assert f.loc[~f["__label_known"], "defaulted"].isna().all()
    # and in terms of days: events of day d are labelled iff d + 7 <= as_of
    labelled_days = set(pd.to_datetime(known["event_time"]).dt.date)
    assert labelled_days == {d for d in set(event_days) if d + dt.timedelta(days=7) <= as_of}
    assert w.labelled.equals(known)


def test_window_bounds_and_defaults(credit_root, credit_cfg):
    root, _ = credit_root
    w = load_window(credit_cfg, root, D(5), D(9))
    assert w.as_of == D(9) and w.start == D(5) and w.end == D(9)
    assert set(pd.to_datetime(w.frame["event_time"]).dt.date) == {D(i) for i in range(5, 10)}
    assert not w.frame["__label_known"].any()  # as_of = end: none of the labels has arrived
    # labels are only taken from partitions that arrived on/after the window start
    w = load_window(credit_cfg, root, D(5), D(9), as_of=D(14))
    known_days = set(pd.to_datetime(w.labelled["event_time"]).dt.date)
    assert known_days == {D(5), D(6), D(7)}
    with pytest.raises(DataError, match="after its end"):
        load_window(credit_cfg, root, D(9), D(5))
    with pytest.raises(
        DataError,
        match=r"no parquet partitions.*has the data pipeline written them, "
        r"and is data.path right\?$",
    ) as err:
        load_window(credit_cfg, root, D(40), D(45))
    assert "simulate" not in str(err.value)  # no demo-only advice in what a production alert quotes
    empty = load_window(credit_cfg, root, D(40), D(45), require_rows=False)
    assert empty.frame.empty and empty.files == ()
    assert day_range(D(9), 5) == (D(5), D(9))


def test_target_in_feature_partitions_masked_by_delay(tmp_path, credit_cfg):
    """Without labels_path the target is read from the events and hidden until the delay passed."""
    data = credit_cfg.data.model_copy(update={"labels_path": None, "label_delay_days": 3})
    cfg = credit_cfg.model_copy(update={"data": data})
    simulate(cfg, tmp_path, days=8, rows_per_day=50, seed=1, start=START)
    assert not (tmp_path / "credit_default" / "labels").exists()
    for off in (0, 2, 3, 5, 7, 12):
        w = load_window(cfg, tmp_path, D(0), D(7), as_of=D(off))
        days = pd.to_datetime(w.frame["event_time"]).dt.date
        assert (w.frame["__label_known"] == (days + dt.timedelta(days=3) <= D(off))).all()
        assert w.frame.loc[~w.frame["__label_known"], "defaulted"].isna().all()
        raw = pd.concat(
            [
                pd.read_parquet(p)
                for p in sorted((tmp_path / "credit_default").glob("*.parquet"))
                if dt.date.fromisoformat(p.stem) <= D(off)
            ],
            ignore_index=True,
        )
        merged = w.labelled.merge(raw, on="application_id", suffixes=("", "_raw"))
        assert len(merged) == len(w.labelled)
        assert (merged["defaulted"] == merged["defaulted_raw"]).all()


# -----------------------------------------------------------------------------------------
# Paths, fingerprints, schema errors
# -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["..", "../x", "a/../../x", "credit/../../../etc", "/etc", "/"])
def test_resolve_dir_refuses_escapes(tmp_path, bad):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(DataError, match="outside the data root"):
        resolve_dir(root, bad)


def test_resolve_dir_accepts_paths_inside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert resolve_dir(root, "a/b") == (root / "a" / "b").resolve()
    assert resolve_dir(root, "a/../b") == (root / "b").resolve()
    assert resolve_dir(root, ".") == root.resolve()


def test_resolve_dir_refuses_symlink_out_of_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(DataError, match="outside the data root"):
        resolve_dir(root, "link/x")


def test_fingerprint_changes_when_a_file_changes(credit_copy, credit_cfg):
    w1 = load_window(credit_cfg, credit_copy, D(0), D(9), as_of=D(12))
    fp = w1.fingerprint
    assert len(fp) == 16
    assert load_window(credit_cfg, credit_copy, D(0), D(9), as_of=D(12)).fingerprint == fp  # stable
    feat = credit_copy / "credit_default" / f"{D(4).isoformat()}.parquet"
    original = feat.read_bytes()
    df = pd.read_parquet(feat)
    df.loc[0, "age"] = df.loc[0, "age"] + 1
    write_partition(df, feat, "parquet")
    fp2 = load_window(credit_cfg, credit_copy, D(0), D(9), as_of=D(12)).fingerprint
    assert fp2 != fp
    feat.write_bytes(original)
    assert load_window(credit_cfg, credit_copy, D(0), D(9), as_of=D(12)).fingerprint == fp
    # a label file of the window is part of the fingerprint too
    lab = credit_copy / "credit_default" / "labels" / f"{D(8).isoformat()}.parquet"
    assert lab in w1.files
    labels = pd.read_parquet(lab)
    labels.loc[0, "defaulted"] = 1 - labels.loc[0, "defaulted"]
    write_partition(labels, lab, "parquet")
    assert load_window(credit_cfg, credit_copy, D(0), D(9), as_of=D(12)).fingerprint != fp
    # a different window has another fingerprint
    assert load_window(credit_cfg, credit_copy, D(0), D(8), as_of=D(12)).fingerprint != fp


@pytest.mark.parametrize("window", [(0, 9, 12), (0, 9, 5), (3, 3, 3), (15, 19, 30), (25, 27, 30)])
def test_window_fingerprint_equals_the_loaded_windows(credit_root, credit_cfg, window):
    root, _ = credit_root
    start, end, as_of = (D(i) for i in window)
    try:
        expected = load_window(credit_cfg, root, start, end, as_of=as_of).fingerprint
    except DataError:
        expected = None  # no partition in the window
    assert window_fingerprint(credit_cfg, root, start, end, as_of=as_of) == expected


def test_partition_cache_serves_repeated_reads_and_rereads_an_edited_file(credit_copy, credit_cfg):
    with partition_cache() as cache:
        first = load_window(credit_cfg, credit_copy, D(0), D(9), as_of=D(12))
        misses = cache.misses
        again = load_window(credit_cfg, credit_copy, D(0), D(9), as_of=D(12))
        assert cache.misses == misses and cache.hits >= misses  # every file came from memory
        pd.testing.assert_frame_equal(first.frame, again.frame)
        again.frame.loc[0, "age"] = -1.0  # a caller's frame is its own: the cached partition is untouched
        assert load_window(credit_cfg, credit_copy, D(0), D(9), as_of=D(12)).frame.loc[0, "age"] != -1.0
        feat = credit_copy / "credit_default" / f"{D(4).isoformat()}.parquet"
        df = pd.read_parquet(feat)
        df["age"] = 99.0
        write_partition(df, feat, "parquet")
        os.utime(feat, ns=(0, 0))  # even with an old modification time: the size differs
        edited = load_window(credit_cfg, credit_copy, D(4), D(4), as_of=D(12))
        assert (edited.frame["age"] == 99.0).all()


def test_fingerprint_files_content_hash(tmp_path):
    import hashlib

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"hello")
    b.write_bytes(b"world")
    expected = hashlib.sha256(b"a.bin" + b"hello" + b"b.bin" + b"world").hexdigest()[:16]
    assert fingerprint_files([b, a]) == expected


@pytest.mark.parametrize("all_days", [True, False])
def test_missing_column_raises_naming_it(credit_copy, credit_cfg, all_days):
    feat_dir = credit_copy / "credit_default"
    days = range(10) if all_days else [4]
    for i in days:
        p = feat_dir / f"{D(i).isoformat()}.parquet"
        write_partition(pd.read_parquet(p).drop(columns=["debt_to_income"]), p, "parquet")
    # a single file without the column must not be filled with NaN silently
    with pytest.raises(DataError, match=r"lack column\(s\) \['debt_to_income'\]"):
        load_window(credit_cfg, credit_copy, D(0), D(9))


def test_label_partition_without_target_raises(credit_copy, credit_cfg):
    lab = credit_copy / "credit_default" / "labels" / f"{D(9).isoformat()}.parquet"
    write_partition(pd.read_parquet(lab).drop(columns=["defaulted"]), lab, "parquet")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['defaulted'\]"):
        load_window(credit_cfg, credit_copy, D(0), D(9), as_of=D(12))


def test_unreadable_partition_raises_data_error(credit_copy, credit_cfg):
    (credit_copy / "credit_default" / f"{D(3).isoformat()}.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read partition"):
        load_window(credit_cfg, credit_copy, D(0), D(9))


def test_list_partitions_ignores_other_files(tmp_path):
    (tmp_path / "2026-01-01.parquet").write_bytes(b"")
    (tmp_path / "2026-01-02.csv").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    (tmp_path / "2026-01-03.parquet.tmp").write_bytes(b"")
    (tmp_path / "2026-01-04.parquet").mkdir()
    assert list(list_partitions(tmp_path, "parquet")) == [dt.date(2026, 1, 1)]
    assert list(list_partitions(tmp_path, "csv")) == [dt.date(2026, 1, 2)]
    assert list_partitions(tmp_path / "nope", "csv") == {}


# -----------------------------------------------------------------------------------------
# Simulated drift
# -----------------------------------------------------------------------------------------


def test_covariate_drift_shifts_means_in_drift_days_only(credit_root, credit_cfg):
    root, _ = credit_root
    feat_dir = root / credit_cfg.data.path
    for i in range(DAYS):
        df = pd.read_parquet(feat_dir / f"{D(i).isoformat()}.parquet")
        drifted = i >= DRIFT_DAY - 1
        # Beta(3.5, 2) has mean 0.636, Beta(2, 3) 0.4; standard error per day about 0.015.
        assert abs(df["credit_utilization"].mean() - (3.5 / 5.5 if drifted else 0.4)) < 0.06, i
        # Poisson(1.0) vs Poisson(0.5) late payments
        assert abs(df["num_late_payments"].mean() - (1.0 if drifted else 0.5)) < 0.25, i
        # log income shifts by -0.3
        assert abs(np.log(df["income"].dropna()).mean() - (np.log(52_000) - (0.3 if drifted else 0))) < 0.12, i
        # age is not part of the covariate shift
        assert abs(df["age"].mean() - 42) < 3.5, i
    pre = load_window(credit_cfg, root, D(0), D(9)).frame
    post = load_window(credit_cfg, root, D(10), D(19)).frame
    assert compute_feature_drift(
        "u", pre["credit_utilization"], post["credit_utilization"], method="psi", kind="numeric"
    ).drifted
    assert not compute_feature_drift("a", pre["age"], post["age"], method="psi", kind="numeric").drifted
    first_half = load_window(credit_cfg, root, D(0), D(4)).frame
    assert (
        compute_feature_drift(
            "u", pre["credit_utilization"], first_half["credit_utilization"], method="psi", kind="numeric"
        ).score
        < 0.1
    )


def test_no_drift_kind_none_and_days_validation(tmp_path, credit_cfg):
    from retrain_lib.core.errors import ConfigError

    res = simulate(credit_cfg, tmp_path, days=2, rows_per_day=20, drift_day=1, drift_kind="none")
    assert res.drift_start is None
    with pytest.raises(ConfigError, match="drift kind"):
        simulate(credit_cfg, tmp_path, days=2, drift_kind="sudden")
    with pytest.raises(ConfigError, match="at least 1"):
        simulate(credit_cfg, tmp_path, days=0)


def test_concept_drift_keeps_features_but_changes_target_relation(tmp_path, credit_cfg):
    simulate(
        credit_cfg,
        tmp_path,
        days=DAYS,
        rows_per_day=ROWS,
        seed=5,
        drift_day=DRIFT_DAY,
        drift_kind="concept",
        start=START,
    )
    late = D(DAYS + 10)  # every label has arrived
    pre = load_window(credit_cfg, tmp_path, D(0), D(9), as_of=late).frame
    post = load_window(credit_cfg, tmp_path, D(10), D(19), as_of=late).frame
    assert pre["__label_known"].all() and post["__label_known"].all()
    for c in credit_cfg.features.numeric:
        assert compute_feature_drift(c, pre[c], post[c], method="psi", kind="numeric").score < 0.1, c
    for c in credit_cfg.features.categorical:
        assert compute_feature_drift(c, pre[c], post[c], method="psi", kind="categorical").score < 0.05, c
    # The relation changes: utilisation stops predicting default, loan size starts to.
    auc = {
        name: (roc_auc_score(pre["defaulted"], pre[name]), roc_auc_score(post["defaulted"], post[name]))
        for name in ("credit_utilization", "loan_amount")
    }
    assert auc["credit_utilization"][0] - auc["credit_utilization"][1] > 0.07, auc
    assert auc["loan_amount"][1] - auc["loan_amount"][0] > 0.07, auc


# -----------------------------------------------------------------------------------------
# CSV
# -----------------------------------------------------------------------------------------


def test_csv_format_round_trip(tmp_path, demand_cfg):
    assert demand_cfg.data.format == "csv" and demand_cfg.data.label_delay_days == 1
    res = simulate(demand_cfg, tmp_path, days=6, rows_per_day=80, seed=2, start=START)
    feat_dir = tmp_path / "daily_demand"
    assert sorted(p.name for p in feat_dir.glob("*.csv")) == [f"{D(i).isoformat()}.csv" for i in range(6)]
    assert sorted(p.name for p in (feat_dir / "labels").glob("*.csv")) == [
        f"{D(i).isoformat()}.csv" for i in range(1, 7)
    ]
    assert res.label_files == 6
    w = load_window(demand_cfg, tmp_path, D(0), D(5), as_of=D(4))
    f = w.frame
    assert len(f) == sum(len(pd.read_csv(feat_dir / f"{D(i).isoformat()}.csv")) for i in range(5))
    assert pd.api.types.is_datetime64_any_dtype(f["event_time"])
    assert f["record_id"].map(type).eq(str).all()
    assert set(f["store_type"]) <= {"small", "medium", "large"} and set(f["promo"]) <= {"yes", "no"}
    days = f["event_time"].dt.date
    assert (f["__label_known"] == (days <= D(3))).all()
    labels = pd.concat([pd.read_csv(feat_dir / "labels" / f"{D(i).isoformat()}.csv") for i in range(1, 5)])
    known = f[f["__label_known"]].merge(labels, on="record_id", suffixes=("", "_file"))
    assert len(known) == f["__label_known"].sum()
    np.testing.assert_allclose(known["units_sold"], known["units_sold_file"])
    assert all(p.suffix == ".csv" for p in w.files)
