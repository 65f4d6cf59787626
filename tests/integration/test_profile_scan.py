"""Profiles of parquet partitions read in record batches (retrain_lib.store.profile_scan), from
local files and from S3 (a moto server over real HTTP): the same profiles and scores as each
other and as the in-memory oracle (profile_frame), cached by content so that a daily check
reads only the new day."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from retrain_lib.stats.profile import Profile, profile_frame, spec_from_frame
from retrain_lib.stats.profile_drift import compare_profiles
from retrain_lib.store.profile_scan import S3Options, ScanStats, profile_partition, profile_window

NUM = ["x", "n_int", "f32"]
CAT = ["c", "code"]
KLL_K = 10_000  # more than the window's rows: the sketches keep every value, so profiles are deterministic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _day(rng: np.random.Generator, n: int, shift: float, with_nulls: bool) -> pa.Table:
    x = rng.normal(shift, 1, n)
    x[rng.random(n) < 0.05] = np.nan
    x[rng.integers(0, n, 2)] = np.inf
    n_int = rng.integers(0, 50, n)
    code = rng.integers(0, 3 + int(shift > 0), n)  # integer categories; a new one when shifted
    c = rng.choice(["red", "green", "blue"], n).astype(object)
    c[rng.random(n) < 0.04] = None
    return pa.table(
        {
            "x": pa.array(x, from_pandas=False),  # NaN stays a float NaN, not a null
            "n_int": pa.array(n_int, mask=(rng.random(n) < 0.1) if with_nulls else None),
            "f32": pa.array(rng.exponential(2, n).astype(np.float32)),
            "c": pa.array(c, pa.string()),
            "code": pa.array(code, mask=(rng.random(n) < 0.05) if with_nulls else None),
            "unused": pa.array(rng.random(n)),
        }
    )


@pytest.fixture(scope="module")
def window(tmp_path_factory):
    """Three daily partitions (several row groups each; day 2 has nulls in its integer columns)."""
    root = tmp_path_factory.mktemp("partitions")
    rng = np.random.default_rng(11)
    paths = []
    for d in range(3):
        path = root / f"2026-03-0{d + 1}.parquet"
        pq.write_table(_day(rng, 1500, 0.2 * d, with_nulls=d == 1), path, row_group_size=400)
        paths.append(path)
    ref = pd.read_parquet(paths[0])
    spec = spec_from_frame(ref, NUM, CAT, kll_k=KLL_K)
    return paths, spec


@pytest.fixture
def s3_server():
    from moto.server import ThreadedMotoServer

    saved = dict(os.environ)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(
        AWS_ACCESS_KEY_ID="profile-scan-key",
        AWS_SECRET_ACCESS_KEY="profile-scan-secret",
        AWS_DEFAULT_REGION="us-east-1",
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def _upload(endpoint: str, paths: list[Path], bucket: str, prefix: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    uris = []
    for p in paths:
        s3.upload_file(str(p), bucket, f"{prefix}/{p.name}")
        uris.append(f"s3://{bucket}/{prefix}/{p.name}")
    return uris


def _sketch_items(blob: bytes | None) -> list[tuple[float, int]]:
    from retrain_lib.stats.profile import load_sketch

    assert blob is not None
    sk = load_sketch(blob)
    assert not sk.is_estimation_mode()
    return sorted(sk)


def _without_sources(p: Profile) -> dict:
    d = p.to_dict()
    d.pop("sources")
    return d


def test_streamed_profile_equals_the_in_memory_oracle(window, tmp_path):
    paths, spec = window
    stats = ScanStats()
    got = profile_window(paths, spec, tmp_path / "cache", batch_rows=256, stats=stats)
    oracle = profile_frame(pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True), spec)
    assert stats.files_opened == 3 and stats.rows_read == 4500
    assert stats.batches_read >= 3 * int(np.ceil(1500 / 256))  # read in batches, not whole files
    a, b = got.to_dict(), oracle.to_dict()
    for name in NUM:
        for key in ("counts", "missing", "rows", "neg_inf", "pos_inf"):
            assert a["numeric"][name][key] == b["numeric"][name][key], (name, key)
        assert _sketch_items(got.numeric[name].sketch) == _sketch_items(oracle.numeric[name].sketch)
        assert a["numeric"][name]["mean"] == pytest.approx(b["numeric"][name]["mean"], rel=1e-12)
        assert a["numeric"][name]["m2"] == pytest.approx(b["numeric"][name]["m2"], rel=1e-9)
    # integer categories spelled alike with and without nulls (pandas reads day 2's as floats)
    assert a["categorical"] == b["categorical"]
    assert set(a["categorical"]["code"]["counts"]) == {"0", "1", "2", "3"}
    assert got.numeric["x"].pos_inf == 6 and got.numeric["x"].missing > 0
    assert [s.split("#")[0] for s in got.sources] == [str(p) for p in paths]


def test_local_and_s3_give_identical_profiles_and_scores(window, tmp_path, s3_server):
    paths, spec = window
    uris = _upload(s3_server, paths, "ml-data", "models/credit/current")
    options = S3Options(endpoint_url=s3_server, region="us-east-1")
    local_stats, s3_stats = ScanStats(), ScanStats()
    local = profile_window(paths, spec, tmp_path / "local", batch_rows=300, stats=local_stats)
    remote = profile_window(uris, spec, tmp_path / "s3", batch_rows=300, s3=options, stats=s3_stats)
    assert s3_stats.files_opened == 3 and s3_stats.bytes_hashed == 0  # the ETag, not the bytes
    assert _without_sources(local) == _without_sources(remote)
    assert all(s.startswith("s3://ml-data/models/credit/current/") and "#etag:" in s for s in remote.sources)

    reference = profile_partition(paths[0], spec)
    for method, cat in (("psi", "chi2"), ("ks", "unseen"), ("wasserstein", "linf")):
        a = compare_profiles(reference, local, method=method, categorical_method=cat)
        b = compare_profiles(reference, remote, method=method, categorical_method=cat)
        assert a.to_dict() == b.to_dict()
    assert any(
        f.name == "code" and f.drifted
        for f in compare_profiles(reference, remote, categorical_method="unseen").features
    )

    # cached: a second check over S3 reads no object again
    again = ScanStats()
    cached = profile_window(uris, spec, tmp_path / "s3", s3=options, stats=again)
    assert (again.files_opened, again.cache_hits, again.cache_misses) == (0, 3, 0)
    assert _without_sources(cached) == _without_sources(remote)


def test_a_daily_check_reads_only_the_new_day(window, tmp_path):
    paths, spec = window
    cache = tmp_path / "cache"
    first = ScanStats()
    profile_window(paths[:2], spec, cache, stats=first)
    assert (first.files_opened, first.cache_misses) == (2, 2)
    daily = ScanStats()
    full = profile_window(paths, spec, cache, stats=daily)
    assert (daily.files_opened, daily.cache_hits, daily.cache_misses) == (1, 2, 1)
    assert daily.bytes_hashed == paths[2].stat().st_size  # only the new file's md5 was computed
    assert full.rows == 4500

    nothing = ScanStats()
    assert profile_window(paths, spec, cache, stats=nothing) == full
    assert (nothing.files_opened, nothing.bytes_hashed, nothing.rows_read) == (0, 0, 0)

    # a partition rewritten with other content is profiled again (its digest changed)
    changed = tmp_path / paths[1].name
    table = pq.read_table(paths[1])
    pq.write_table(table.slice(0, 1000), changed)
    redo = ScanStats()
    again = profile_window([paths[0], changed, paths[2]], spec, cache, stats=redo)
    assert (redo.files_opened, redo.cache_hits) == (1, 2)
    assert again.rows == 4000


def test_worker_processes_give_the_same_profile(window, tmp_path):
    paths, spec = window
    one = profile_window(paths, spec, None)
    stats = ScanStats()
    two = profile_window(paths, spec, None, workers=2, stats=stats)
    assert two == one
    assert stats.files_opened == 3 and 1 <= len(stats.peak_rss_mb) <= 2


def test_a_partition_without_a_needed_column_is_refused(window, tmp_path):
    paths, spec = window
    bad = tmp_path / "bad.parquet"
    pq.write_table(pq.read_table(paths[0]).drop(["f32"]), bad)
    with pytest.raises(ValueError, match="f32"):
        profile_partition(bad, spec)
