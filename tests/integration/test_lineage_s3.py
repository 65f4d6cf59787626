"""The data registry (retrain_lib.store.lineage) on an S3 remote: a moto server over real HTTP on a
free port, the remote ``s3://<bucket>/dvc`` and its endpoint from platform.yaml ``s3.endpoint_url``,
credentials from the environment only.

The pushed object is checked with boto3 in the bucket itself, expected md5s are computed here
with hashlib, and the registry's files are searched byte by byte for the planted credentials."""

from __future__ import annotations

import hashlib
import io
import shutil
import socket
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from retrain_lib.core.errors import DataError
from retrain_lib.core.settings import load_settings
from retrain_lib.store import lineage

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PATH = "models/churn_risk/training.parquet"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch, tmp_path):
    """A moto S3 server on a free port; planted, unique credentials in the environment only."""
    from moto.server import ThreadedMotoServer

    secrets = {
        "AWS_ACCESS_KEY_ID": f"AKIAPLANTED{uuid.uuid4().hex[:12].upper()}",
        "AWS_SECRET_ACCESS_KEY": f"planted-secret-{uuid.uuid4().hex}",
    }
    for var, value in secrets.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # No ~/.aws files: the environment is the only source of credentials.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "RETRAIN_DVC_REMOTE", "RETRAIN_DATA_ROOT"):
        monkeypatch.delenv(var, raising=False)

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", secrets
    finally:
        server.stop()


@pytest.fixture
def bucket_settings(s3_endpoint, monkeypatch, tmp_path):
    """A bucket on the moto server and settings whose DVC remote is ``s3://<bucket>/dvc``."""
    import boto3

    endpoint, secrets = s3_endpoint
    bucket = f"registry-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)

    cfg_dir = tmp_path / "configs"
    shutil.copytree(REPO / "configs", cfg_dir)
    platform = yaml.safe_load((cfg_dir / "platform.yaml").read_text())
    platform["s3"] = {**(platform.get("s3") or {}), "endpoint_url": endpoint}
    platform["dvc"] = {**(platform.get("dvc") or {}), "remote": f"s3://{bucket}/dvc"}
    (cfg_dir / "platform.yaml").write_text(yaml.safe_dump(platform))
    monkeypatch.setenv("RETRAIN_HOME", str(tmp_path / "state"))
    return load_settings(cfg_dir), s3, bucket, secrets


def make_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
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


def test_snapshot_to_s3_reads_back_by_rev_refuses_tampering_and_writes_no_credential(bucket_settings):
    settings, s3, bucket, secrets = bucket_settings
    frame = make_frame()
    repo = settings.state_dir / "data-registry"

    snap = lineage.snapshot_training_set(settings, "churn_risk", frame, as_of="2026-01-29", fingerprint="fp-s3")

    assert snap["path"] == PATH and snap["remote"] == f"s3://{bucket}/dvc"
    assert snap["md5"] == hashlib.md5((repo / PATH).read_bytes()).hexdigest()
    assert not (settings.state_dir / "dvc-remote").exists()  # nothing went to the local default remote

    # Pushed: the object is in the bucket, at DVC's content-addressed key, with the snapshot's bytes.
    key = f"dvc/files/md5/{snap['md5'][:2]}/{snap['md5'][2:]}"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="dvc/").get("Contents", [])]
    assert keys == [key]
    pushed = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert hashlib.md5(pushed).hexdigest() == snap["md5"]
    # Same data again: the same snapshot, no new commit, no new object.
    assert (
        lineage.snapshot_training_set(
            settings, "churn_risk", frame.sample(frac=1.0, random_state=3), as_of="2026-01-29", fingerprint="fp-s3"
        )
        == snap
    )
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="dvc/")["Contents"]] == [key]

    # Read back by rev from the bucket alone: no local cache, no working copy.
    shutil.rmtree(repo / ".dvc" / "cache")
    (repo / PATH).unlink()
    back = lineage.load_training_set(settings, snap["path"], snap["rev"], snap["md5"])
    pd.testing.assert_frame_equal(by_id(back), by_id(frame))

    # Tampered in the bucket: other (plausible) bytes at the same key are refused.
    shutil.rmtree(repo / ".dvc" / "cache", ignore_errors=True)
    forged = io.BytesIO()
    make_frame(seed=1).to_parquet(forged)
    s3.put_object(Bucket=bucket, Key=key, Body=forged.getvalue())
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == forged.getvalue()
    with pytest.raises(DataError) as err:
        lineage.load_training_set(settings, snap["path"], snap["rev"], snap["md5"])
    assert str(err.value).startswith(f"data of churn_risk at DVC rev {snap['rev']} ")
    assert (
        f"has md5 {hashlib.md5(forged.getvalue()).hexdigest()}, expected {snap['md5']}: "
        "the data registry was tampered with or corrupted"
    ) in str(err.value)

    # No credential in any file of the registry (.git and .dvc included) or anywhere in the state dir.
    config_local = (repo / ".dvc" / "config.local").read_text()
    assert f"url = s3://{bucket}/dvc" in config_local and "endpointurl = http://127.0.0.1:" in config_local
    files = [p for p in settings.state_dir.rglob("*") if p.is_file()]
    assert {repo / ".dvc" / "config", repo / ".dvc" / "config.local", repo / ".git" / "config"} <= set(files)
    assert any(repo / ".git" in p.parents for p in files if p.parent.name != ".git")  # objects, refs, ...
    for secret in secrets.values():
        leaked = [str(p) for p in files if secret.encode() in p.read_bytes()]
        assert leaked == [], f"credential written to {leaked}"
