"""The embedded SQLite MLflow store is created once under a lock and survives a migration
that was cut short (alembic's batch tables left behind)."""

from __future__ import annotations

import sqlite3

from retrain_lib.store import registry


def test_an_interrupted_store_migration_is_resumed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    registry.get_client(uri).search_experiments()
    con = sqlite3.connect(tmp_path / "mlflow" / "mlflow.db")
    con.execute('CREATE TABLE "_alembic_tmp_latest_metrics" (x INTEGER)')  # what a killed migration leaves
    con.commit()
    con.close()
    registry._READY.discard(uri)  # a new process
    client = registry.get_client(uri)
    client.create_experiment("after")
    con = sqlite3.connect(tmp_path / "mlflow" / "mlflow.db")
    left = con.execute("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp_%'").fetchall()
    con.close()
    assert left == []
    assert client.get_experiment_by_name("after") is not None
