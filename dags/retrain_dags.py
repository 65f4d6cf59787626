"""Airflow DAG factory: every ``configs/models/<model>.yaml`` becomes ``<model>__monitor``
and ``<model>__retrain``.

Kept thin on purpose: parsing imports only Airflow, PyYAML and pydantic. See
``plugins/retrain_airflow/factory.py``.
"""

import sys
from pathlib import Path

# Airflow puts the plugins folder on sys.path; this keeps the file importable on its own
# (DagBag in tests, `python dags/retrain_dags.py`).
_PLUGINS = str(Path(__file__).resolve().parent.parent / "plugins")
if _PLUGINS not in sys.path:
    sys.path.append(_PLUGINS)

from retrain_airflow.factory import build_all  # noqa: E402

globals().update(build_all())
