"""Airflow local settings of the platform's image (``$AIRFLOW_HOME/config/``, on Airflow's
import path): every Airflow process imports this module once, when it imports Airflow.

It imports the DAG factory, so the DAG processor has it before it forks the process that
parses each model's file (``dags/models/<model>.py``): Airflow pre-imports only the
``airflow.*`` modules a DAG file names (``parsing_pre_import_modules``), and without this
every file's process imported the factory and the config schema again, about 0.2-0.4 s of
each file's parse (``benchmarks/fleet_bench.py``: ``parse_s`` against
``parse_s_factory_preimported``). Cluster policies (``dag_policy``, ``task_policy``) may be
added below.
"""

import logging

try:
    import retrain_airflow.factory  # noqa: F401 - imported for the DAG processor's forks
except Exception:  # Airflow must start anyway; each DAG file imports it again and reports why
    logging.getLogger(__name__).exception("could not pre-import retrain_airflow.factory")
