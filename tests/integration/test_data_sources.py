"""S3 and SQL data sources: the same window as from local files, and the monitor and retrain
DAGs (``dag.test()``) working end to end on each. S3 is a moto server over real HTTP;
SQL is the machine's PostgreSQL, in a database created and dropped by the test."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_data(tmp_path_factory):
    """Simulated credit data as local files: the ground truth the other sources must match."""
    from retrain_lib.core.config import load_model_config
    from retrain_lib.tools.simulate import simulate

    root = tmp_path_factory.mktemp("local")
    cfg = load_model_config(REPO / "configs" / "models" / "credit_default.yaml")
    simulate(cfg, root, days=32, rows_per_day=500, seed=21)
    return cfg, root


@pytest.fixture
def env_restore():
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _config_dir(tmp_path: Path, data: dict, platform: dict | None = None) -> Path:
    cfg_dir = tmp_path / "configs"
    (cfg_dir / "models").mkdir(parents=True)
    model = yaml.safe_load((REPO / "configs" / "models" / "credit_default.yaml").read_text())
    model["data"] = {**{k: v for k, v in model["data"].items() if k not in ("path", "labels_path", "format")}, **data}
    (cfg_dir / "models" / "credit_default.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    (cfg_dir / "platform.yaml").write_text(yaml.safe_dump(platform or {}))
    return cfg_dir


def _same_frame(a: pd.DataFrame, b: pd.DataFrame, id_col: str) -> None:
    cols = sorted(a.columns)
    assert sorted(b.columns) == cols
    a = a[cols].sort_values(id_col).reset_index(drop=True)
    b = b[cols].sort_values(id_col).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def _run_lifecycle(cfg_dir: Path, state: Path) -> None:
    """Monitor (no champion yet -> retrain requested), then the retrain it triggered."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from retrain_lib.core.settings import load_settings
    from retrain_lib.store import registry

    os.environ.update(RETRAIN_CONFIG_DIR=str(cfg_dir), RETRAIN_HOME=str(state), RETRAIN_STRICT="1")
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    logical = dt.datetime(2026, 1, 29, 6, tzinfo=dt.UTC)
    run = bag.dags["credit_default__monitor"].test(logical_date=logical)
    assert run.state == "success"
    with create_session() as session:
        triggered = session.query(DagRun).filter(DagRun.run_id == f"requested__{run.run_id}").one()
        conf, when = dict(triggered.conf), triggered.logical_date
    run = bag.dags["credit_default__retrain"].test(logical_date=when, run_conf=conf)
    assert run.state == "success"
    settings = load_settings(cfg_dir)
    client = registry.get_client(settings.tracking_uri)
    assert registry.aliases(client, "credit_default").get("champion") == "1"
    version = client.get_model_version("credit_default", "1")
    assert version.tags["data.end"] == "2026-01-29" and version.tags["data.fingerprint"]


# -----------------------------------------------------------------------------------------
# S3
# -----------------------------------------------------------------------------------------


@pytest.fixture
def s3_server(env_restore):
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def _upload(endpoint: str, bucket: str, root: Path, prefix: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint)
    s3.create_bucket(Bucket=bucket)
    for f in (root / "credit_default").rglob("*.parquet"):
        key = f"{prefix}/{f.relative_to(root / 'credit_default')}"
        s3.upload_file(str(f), bucket, key)


def test_s3_window_equals_local_and_the_dags_run_on_it(clear_dag_runs, s3_server, local_data, tmp_path):
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.data import load_window

    cfg_local, root = local_data
    _upload(s3_server, "ml-data", root, "models/credit")
    cfg_dir = _config_dir(
        tmp_path,
        {"source": "s3", "bucket": "ml-data", "path": "models/credit", "labels_path": "models/credit/labels"},
        {"s3": {"endpoint_url": s3_server}},
    )
    settings = load_settings(cfg_dir)
    from retrain_lib.core.config import load_model_config

    cfg_s3 = load_model_config(cfg_dir / "models" / "credit_default.yaml")
    start, end, as_of = dt.date(2026, 1, 10), dt.date(2026, 1, 20), dt.date(2026, 1, 24)
    from_s3 = load_window(cfg_s3, settings, start, end, as_of=as_of)
    from_disk = load_window(cfg_local, root, start, end, as_of=as_of)
    _same_frame(from_s3.frame, from_disk.frame, "application_id")
    assert from_s3.labelled.shape == from_disk.labelled.shape
    assert all(str(f).startswith("s3://ml-data/models/credit/") for f in from_s3.files)
    assert from_s3.fingerprint == load_window(cfg_s3, settings, start, end, as_of=as_of).fingerprint

    _run_lifecycle(cfg_dir, tmp_path / "state")


def test_s3_missing_bucket_is_a_clear_data_error(s3_server, tmp_path):
    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.errors import DataError
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.data import load_window

    cfg_dir = _config_dir(
        tmp_path, {"source": "s3", "bucket": "no-such-bucket", "path": "x"}, {"s3": {"endpoint_url": s3_server}}
    )
    cfg = load_model_config(cfg_dir / "models" / "credit_default.yaml")
    with pytest.raises(DataError, match="no-such-bucket.*NoSuchBucket"):
        load_window(cfg, load_settings(cfg_dir), dt.date(2026, 1, 1), dt.date(2026, 1, 2))


# -----------------------------------------------------------------------------------------
# SQL (PostgreSQL)
# -----------------------------------------------------------------------------------------


@pytest.fixture
def pg_database(env_restore):
    import sqlalchemy as sa

    name = f"retrain_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{PG}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _load_into_postgres(url: str, root: Path) -> None:
    import sqlalchemy as sa

    events = pd.concat([pd.read_parquet(f) for f in sorted((root / "credit_default").glob("*.parquet"))])
    labels = []
    for f in sorted((root / "credit_default" / "labels").glob("*.parquet")):
        part = pd.read_parquet(f)
        part["arrived_at"] = pd.Timestamp(f.stem) + pd.Timedelta(hours=2)
        labels.append(part)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        events.to_sql("credit_events", conn, index=False)
        pd.concat(labels).to_sql("credit_labels", conn, index=False)
    engine.dispose()


def test_sql_window_equals_local_and_the_dags_run_on_it(clear_dag_runs, pg_database, local_data, tmp_path):
    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.data import available_days, load_window

    cfg_local, root = local_data
    _load_into_postgres(pg_database, root)
    os.environ["RETRAIN_TEST_PG_URL"] = pg_database
    cfg_dir = _config_dir(
        tmp_path,
        {
            "source": "sql",
            "table": "credit_events",
            "labels_table": "credit_labels",
            "labels_arrival_column": "arrived_at",
        },
        {"sql": {"url_env": "RETRAIN_TEST_PG_URL"}},
    )
    settings = load_settings(cfg_dir)
    cfg_sql = load_model_config(cfg_dir / "models" / "credit_default.yaml")
    assert available_days(cfg_sql, settings)[0] == dt.date(2026, 1, 1)
    start, end, as_of = dt.date(2026, 1, 10), dt.date(2026, 1, 20), dt.date(2026, 1, 24)
    from_sql = load_window(cfg_sql, settings, start, end, as_of=as_of)
    from_disk = load_window(cfg_local, root, start, end, as_of=as_of)
    _same_frame(from_sql.frame, from_disk.frame, "application_id")
    # Labels that arrived after as_of stay hidden.
    assert from_sql.labelled.shape[0] == from_disk.labelled.shape[0] < from_sql.frame.shape[0]

    _run_lifecycle(cfg_dir, tmp_path / "state")


def test_sql_without_url_names_the_variable(tmp_path, env_restore):
    from retrain_lib.core.config import load_model_config
    from retrain_lib.core.errors import DataError
    from retrain_lib.core.settings import load_settings
    from retrain_lib.store.data import load_window

    os.environ.pop("RETRAIN_SQL_URL", None)
    cfg_dir = _config_dir(tmp_path, {"source": "sql", "table": "events"})
    cfg = load_model_config(cfg_dir / "models" / "credit_default.yaml")
    with pytest.raises(DataError, match="RETRAIN_SQL_URL"):
        load_window(cfg, load_settings(cfg_dir), dt.date(2026, 1, 1), dt.date(2026, 1, 2))


def test_source_fields_are_checked_by_the_schema(tmp_path):
    from retrain_lib.core.config import check_model_file

    for data, words in (
        ({"source": "sql"}, "needs 'table'"),
        ({"source": "s3"}, "needs 'path'"),
        ({"source": "local", "path": "x", "table": "t"}, "only apply to source 'sql'"),
        ({"source": "sql", "table": "events; drop table x"}, "pattern"),
    ):
        d = tmp_path / uuid.uuid4().hex
        cfg_dir = _config_dir(d, data)
        _, problems = check_model_file(cfg_dir / "models" / "credit_default.yaml")
        assert problems and any(words in p.reason for p in problems), (data, [str(p) for p in problems])
    shutil.rmtree(tmp_path, ignore_errors=True)
