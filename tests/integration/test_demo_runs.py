"""``retrain_demo.runs.run_dag``: in-process ``dag.test()`` runs of one DAG object.

Airflow resolves a run's conf into the DAG's own ``Param`` objects when the task runs in the
same process; without a restore a later run that omits the key inherits the earlier run's
value (the demo's live retrain once trained as of a day three weeks before the one it was run
for)."""

from __future__ import annotations

import datetime as dt

import pytest
from airflow_runs import xcom_return

pytestmark = pytest.mark.slow

DAG_FILE = """
from airflow.sdk import DAG, Param, task

with DAG("demo_runs_params", schedule=None, params={"as_of": Param(None, type=["null", "string"])}):

    @task
    def record(params=None):
        return params["as_of"]

    record()
"""


def test_a_run_without_a_param_in_its_conf_gets_the_default_not_the_previous_run_s(airflow_db, tmp_path):
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from retrain_demo.runs import run_dag

    (tmp_path / "params_dag.py").write_text(DAG_FILE)
    bag = BundleDagBag(dag_folder=tmp_path, bundle_path=tmp_path, bundle_name="dags-folder")
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    dag = bag.dags["demo_runs_params"]
    try:
        first = run_dag(dag, logical_date=dt.datetime(2026, 1, 5, tzinfo=dt.UTC), conf={"as_of": "2026-01-05"})
        second = run_dag(dag, logical_date=dt.datetime(2026, 1, 6, tzinfo=dt.UTC))
        returned = [xcom_return(dag.dag_id, run.run_id, "record") for run in (first, second)]
    finally:  # the session's metadata DB is shared: leave no DAG of this test behind
        from airflow.api.common.delete_dag import delete_dag

        delete_dag(dag.dag_id)
    assert (first.state, second.state) == ("success", "success")
    assert returned == ["2026-01-05", None]
    assert dag.params["as_of"] is None
