"""The data registry (retrain_lib.store.lineage): training sets versioned with git + DVC in a tmp
state directory, read back by rev from the remote, tampering detected, concurrent writers.

Expected md5s are computed here with hashlib from the bytes on disk, and commits are counted
with git itself, independently of the code under test."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retrain_lib.core.errors import ConfigError, DataError
from retrain_lib.core.settings import load_settings
from retrain_lib.store import lineage

PATH = "models/churn_risk/training.parquet"


@pytest.fixture
def settings(retrain_cfg_config_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    for var in ("RETRAIN_DATA_ROOT", "RETRAIN_DVC_REMOTE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    return load_settings(retrain_cfg_config_dir)


def make_frame(n: int = 500, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    spend = rng.gamma(2.0, 30.0, n)
    spend[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i:05d}" for i in range(n)],
            "event_time": pd.Timestamp("2026-01-01") + pd.to_timedelta(rng.integers(0, 28 * 86_400, n), unit="s"),
            "tenure": rng.integers(0, 120, n),
            "monthly_spend": spend,
            "plan": rng.choice(["basic", "plus", "pro"], n),
            "churned": rng.integers(0, 2, n).astype(float),
            "__label_known": rng.random(n) > 0.2,
        }
    )


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("customer_id").reset_index(drop=True)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def remote_object(settings, md5: str) -> Path:
    return settings.state_dir / "dvc-remote" / "files" / "md5" / md5[:2] / md5[2:]


def snapshot(settings, frame, as_of="2026-01-29", fingerprint="fp0", model="churn_risk"):
    return lineage.snapshot_training_set(settings, model, frame, as_of=as_of, fingerprint=fingerprint)


def test_defaults_live_in_the_state_dir(settings):
    reg = lineage.data_registry(settings)
    assert reg.repo == settings.state_dir / "data-registry"
    assert reg.remote == str(settings.state_dir / "dvc-remote")
    assert reg.lock_path == settings.state_dir / "data-registry.lock"


def test_snapshot_then_load_returns_an_equal_frame(settings):
    frame = make_frame()
    snap = snapshot(settings, frame, fingerprint="abc123")
    repo = settings.state_dir / "data-registry"

    assert set(snap) == {"path", "md5", "rev", "remote"}
    assert snap["path"] == PATH and snap["remote"] == str(settings.state_dir / "dvc-remote")
    assert snap["md5"] == md5_of(repo / PATH)  # DVC's hash is the md5 of the bytes written
    assert md5_of(remote_object(settings, snap["md5"])) == snap["md5"]  # pushed
    assert snap["rev"] == git(repo, "rev-parse", "HEAD")
    assert f"md5: {snap['md5']}" in git(repo, "show", f"{snap['rev']}:{PATH}.dvc")
    message = git(repo, "log", "-1", "--format=%B", snap["rev"])
    assert "churn_risk" in message and "2026-01-29" in message and "abc123" in message
    assert git(repo, "config", "user.name") == "retrain data registry"  # the registry's own identity

    back = lineage.load_training_set(settings, snap["path"], snap["rev"], snap["md5"])
    pd.testing.assert_frame_equal(by_id(back), by_id(frame))  # values and dtypes, NaN included


def test_same_data_gives_the_same_bytes_in_any_row_order_and_any_registry(settings, tmp_path, monkeypatch):
    frame = make_frame()
    first = snapshot(settings, frame)
    again = snapshot(settings, frame.sample(frac=1.0, random_state=3))  # rows shuffled: same data
    repo = settings.state_dir / "data-registry"
    assert again == first
    assert git(repo, "log", "--format=%H", "--", f"{PATH}.dvc").splitlines() == [first["rev"]]  # one commit

    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "elsewhere"))
    other = load_settings(settings.config_dir)
    time.sleep(1.1)  # a timestamp in the file would now differ
    assert snapshot(other, frame)["md5"] == first["md5"]


def test_new_content_makes_a_new_rev_and_every_rev_stays_readable(settings):
    old = make_frame(seed=0)
    new = old.copy()
    new.loc[7, "monthly_spend"] = 12345.0
    first = snapshot(settings, old, as_of="2026-01-29")
    second = snapshot(settings, new, as_of="2026-02-05", fingerprint="fp1")
    repo = settings.state_dir / "data-registry"

    assert second["rev"] != first["rev"] and second["md5"] != first["md5"]
    assert git(repo, "log", "--format=%H", "--", f"{PATH}.dvc").splitlines() == [second["rev"], first["rev"]]
    # Back to the old data: recorded again (a new commit), since the registry holds the new data now.
    third = snapshot(settings, old, as_of="2026-02-12")
    assert third["md5"] == first["md5"] and third["rev"] not in (first["rev"], second["rev"])

    pd.testing.assert_frame_equal(
        by_id(lineage.load_training_set(settings, PATH, first["rev"], first["md5"])), by_id(old)
    )
    pd.testing.assert_frame_equal(
        by_id(lineage.load_training_set(settings, PATH, second["rev"], second["md5"])), by_id(new)
    )


def test_load_reads_from_the_remote_when_the_local_cache_is_gone(settings):
    frame = make_frame()
    snap = snapshot(settings, frame)
    repo = settings.state_dir / "data-registry"
    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / PATH).unlink()  # and the working copy
    tmp_before = set(os.listdir("/tmp"))

    back = lineage.load_training_set(settings, snap["path"], snap["rev"], snap["md5"])

    pd.testing.assert_frame_equal(by_id(back), by_id(frame))
    assert not [p for p in set(os.listdir("/tmp")) - tmp_before if "dvc" in p]  # no clone left behind


def _tamper(target: Path, data: bytes) -> None:
    target.chmod(0o644)  # DVC stores objects read-only
    target.write_bytes(data)


def test_tampered_remote_object_is_refused(settings, tmp_path):
    snap = snapshot(settings, make_frame())
    shutil.rmtree(settings.state_dir / "data-registry" / ".dvc" / "cache")
    forged = tmp_path / "forged.parquet"
    other = make_frame(seed=1)
    other.to_parquet(forged)  # a plausible file with other rows
    _tamper(remote_object(settings, snap["md5"]), forged.read_bytes())

    with pytest.raises(DataError) as err:
        lineage.load_training_set(settings, snap["path"], snap["rev"], snap["md5"])
    assert str(err.value).startswith(f"data of churn_risk at DVC rev {snap['rev']} ")
    assert f"has md5 {md5_of(forged)}, expected {snap['md5']}: the data registry was tampered with or corrupted" in str(
        err.value
    )


def test_tampered_local_cache_is_refused(settings):
    snap = snapshot(settings, make_frame())
    cached = (
        settings.state_dir / "data-registry" / ".dvc" / "cache" / "files" / "md5" / snap["md5"][:2] / snap["md5"][2:]
    )
    _tamper(cached, cached.read_bytes()[:-10] + b"0123456789")

    with pytest.raises(DataError, match="tampered with or corrupted"):
        lineage.load_training_set(settings, snap["path"], snap["rev"], snap["md5"])


def test_missing_data_and_bad_references_are_data_errors(settings):
    snap = snapshot(settings, make_frame())
    with pytest.raises(DataError, match=f"{PATH} at DVC rev {'0' * 40}"):
        lineage.load_training_set(settings, PATH, "0" * 40, snap["md5"])
    with pytest.raises(DataError, match=f"has md5 {snap['md5']}, expected {'f' * 32}"):
        lineage.load_training_set(settings, PATH, snap["rev"], "f" * 32)  # the tag lies
    with pytest.raises(DataError, match="models/<model>/training.parquet"):
        lineage.load_training_set(settings, "../../etc/passwd", snap["rev"], snap["md5"])

    shutil.rmtree(settings.state_dir / "data-registry" / ".dvc" / "cache")
    remote_object(settings, snap["md5"]).unlink()
    with pytest.raises(DataError, match=f"{PATH} at DVC rev {snap['rev']} is not in the data registry"):
        lineage.load_training_set(settings, snap["path"], snap["rev"], snap["md5"])


def test_bad_model_name_is_refused_before_any_write(settings):
    with pytest.raises(ValueError, match="The 'model' parameter of training_set_path"):
        lineage.snapshot_training_set(settings, "../escape", make_frame(), as_of="2026-01-29", fingerprint="x")
    assert not (settings.state_dir / "data-registry").exists()


def test_remote_from_environment_and_s3_settings(settings, monkeypatch, tmp_path):
    monkeypatch.setenv("RETRAIN_DVC_REMOTE", str(tmp_path / "shared-remote"))
    assert lineage.data_registry(settings).remote == str(tmp_path / "shared-remote")

    monkeypatch.setenv("RETRAIN_DVC_REMOTE", "s3://ml-data/registry")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-write-me")
    import importlib.util

    if importlib.util.find_spec("dvc_s3") is None:
        with pytest.raises(ConfigError, match=r"needs the dvc-s3 package; install 'dvc\[s3\]'"):
            lineage.data_registry(settings)
    else:
        reg = lineage.data_registry(settings)
        assert reg.remote_config == {"url": "s3://ml-data/registry", "endpointurl": "http://minio:9000"}
        assert "do-not-write-me" not in json.dumps(reg.dvc_config())

    monkeypatch.setenv("RETRAIN_DVC_REMOTE", "gs://bucket/x")
    with pytest.raises(ConfigError, match="not supported"):
        lineage.data_registry(settings)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"remote": "s3://AKIA:secret@bucket/x"}, "credentials come from the environment"),
        ({"remtoe": "/data/remote"}, "did you mean 'remote'"),
    ],
)
def test_platform_yaml_dvc_section_is_checked(retrain_cfg_config_dir, section, message):
    import yaml

    platform = retrain_cfg_config_dir / "platform.yaml"
    data = yaml.safe_load(platform.read_text())
    data["dvc"] = section
    platform.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message):
        load_settings(retrain_cfg_config_dir)


CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import pandas as pd
    from retrain_lib.store import lineage
    from retrain_lib.core.settings import load_settings
    import dvc.repo  # the slow import, before the start signal
    config_dir, work, model, own, shared, rounds = sys.argv[1:]
    settings = load_settings(config_dir)
    work = Path(work)
    own, shared = pd.read_parquet(own), pd.read_parquet(shared)
    (work / f"ready-{model}").touch()
    while not (work / "go").exists():
        time.sleep(0.01)
    out = []
    for k in range(int(rounds)):
        frame = own.copy()
        frame.loc[0, "tenure"] = 1000 + k  # new data every round: a new commit every round
        for name, data in ((model, frame), ("shared", shared)):
            out.append(lineage.snapshot_training_set(settings, name, data, as_of=f"2026-02-{k + 1:02d}",
                                                     fingerprint=f"{name}-{k}"))
    print(json.dumps(out))
""")
ROUNDS = 4


def test_concurrent_snapshots_from_two_processes_all_land(settings, tmp_path):
    frames = {name: make_frame(seed=seed) for name, seed in (("alpha", 1), ("beta", 2), ("shared", 3))}
    for name, frame in frames.items():
        frame.to_parquet(tmp_path / f"{name}.parquet")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "RETRAIN_HOME": str(settings.state_dir)}
    procs = {
        model: subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(settings.config_dir),
                str(tmp_path),
                model,
                str(tmp_path / f"{model}.parquet"),
                str(tmp_path / "shared.parquet"),
                str(ROUNDS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for model in ("alpha", "beta")
    }
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"ready-{model}").exists() for model in procs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values()), [
            p.communicate() for p in procs.values() if p.poll() is not None
        ]
        time.sleep(0.05)
    (tmp_path / "go").touch()  # both start writing at the same moment
    results = {}
    for model, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results[model] = json.loads(out)

    repo = settings.state_dir / "data-registry"
    assert git(repo, "status", "--porcelain") == ""  # nothing half-done
    subprocess.run(["git", "-C", str(repo), "fsck", "--strict"], check=True, capture_output=True)
    shared = [snap for model in results for snap in results[model] if snap["path"] == "models/shared/training.parquet"]
    assert len(shared) == 2 * ROUNDS and all(snap == shared[0] for snap in shared)  # recorded once, by either
    assert git(repo, "log", "--format=%H", "--", "models/shared/training.parquet.dvc").splitlines() == [
        shared[0]["rev"]
    ]
    for model in procs:
        own = [snap for snap in results[model] if snap["path"] == f"models/{model}/training.parquet"]
        commits = git(repo, "log", "--format=%H", "--", f"models/{model}/training.parquet.dvc").splitlines()
        assert commits == [snap["rev"] for snap in reversed(own)]  # every round landed, in order
        for k, snap in enumerate(own):
            expected = frames[model].copy()
            expected.loc[0, "tenure"] = 1000 + k
            pd.testing.assert_frame_equal(
                by_id(lineage.load_training_set(settings, snap["path"], snap["rev"], snap["md5"])), by_id(expected)
            )
    pd.testing.assert_frame_equal(
        by_id(lineage.load_training_set(settings, shared[0]["path"], shared[0]["rev"], shared[0]["md5"])),
        by_id(frames["shared"]),
    )
