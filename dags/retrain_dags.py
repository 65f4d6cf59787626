"""Airflow DAG factory: every ``configs/models/<model>.yaml`` becomes ``<model>__monitor``,
``<model>__retrain`` and ``<model>__rollout``.

Kept thin on purpose: parsing imports only Airflow, PyYAML and pydantic. See
``plugins/retrain_airflow/factory.py`` (and the ``*_dag.py`` builders beside it).
"""

from retrain_airflow.factory import build_all

globals().update(build_all())
