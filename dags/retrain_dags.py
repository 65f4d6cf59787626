"""Airflow DAG factory: every ``configs/models/<model>.yaml`` becomes ``<model>__monitor``,
``<model>__retrain``, ``<model>__rollout`` (and its health report and guard DAGs).

A model with a generated file ``dags/models/<model>.py`` (``retrain dags sync``) gets its DAGs
from that file, parsed on its own; this file builds the DAGs of the models that have none yet,
so a fresh checkout and a config added since the last sync still get their DAGs.

Kept thin on purpose: parsing imports only Airflow, PyYAML and pydantic. See
``plugins/retrain_airflow/factory.py`` (and the ``*_dag.py`` builders beside it).
"""

from pathlib import Path

from retrain_airflow.factory import build_unsynced

globals().update(build_unsynced(Path(__file__).resolve().parent / "models"))
