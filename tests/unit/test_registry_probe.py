"""RegistryChangeProbe: which commits to a SQLite registry file it notices, and that it
never hides a change (a replaced or missing file, an error) from the gateway's refresher."""

from __future__ import annotations

import os
import sqlite3

import pytest

from retrain_lib.serving.refresher import RegistryChangeProbe


def _db(path, value: int) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
    con.execute("INSERT INTO t VALUES (?)", (value,))
    con.commit()
    con.close()


@pytest.fixture
def registry_db(tmp_path):
    """A SQLite file and a probe that has already seen it once (its first call is a change:
    it knows nothing yet)."""
    path = tmp_path / "registry.db"
    _db(path, 1)
    probe = RegistryChangeProbe(str(path))
    assert probe.changed()
    yield path, probe
    probe.close()


def test_a_commit_by_another_connection_is_a_change_and_a_read_is_not(registry_db):
    path, probe = registry_db
    assert not probe.changed()
    assert not probe.changed()

    other = sqlite3.connect(path)
    assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    assert not probe.changed(), "a read is not a change"
    other.execute("INSERT INTO t VALUES (2)")
    other.commit()
    assert probe.changed()
    assert not probe.changed()
    other.execute("INSERT INTO t VALUES (3)")
    other.rollback()
    assert not probe.changed(), "a rolled-back write is not a change"
    other.close()


def test_a_replaced_or_missing_file_counts_as_a_change(registry_db, tmp_path):
    path, probe = registry_db
    assert not probe.changed()

    _db(tmp_path / "new.db", 7)
    os.replace(tmp_path / "new.db", path)
    assert probe.changed(), "another file under the same name"
    assert not probe.changed()

    path.unlink()
    assert probe.changed() and probe.changed(), "no file: always poll"
    _db(path, 1)
    assert probe.changed()
    assert not probe.changed()


def test_only_a_local_sqlite_file_gets_a_probe(tmp_path):
    probe = RegistryChangeProbe.for_uri(f"sqlite:///{tmp_path}/mlflow.db")
    assert probe is not None and probe.path == str(tmp_path / "mlflow.db")
    for uri in ("http://mlflow:5000", "postgresql://u@h/db", "sqlite://", "sqlite:///:memory:", "", None):
        assert RegistryChangeProbe.for_uri(uri) is None, uri
