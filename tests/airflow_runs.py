"""What a ``dag.test()`` run left in the metadata DB (shared by the integration tests,
which import it by name: pytest imports from ``tests/``, the folder of the top-level conftest)."""

from __future__ import annotations


def task_states(dag_id: str, run_id: str) -> dict[str, str]:
    """Task id -> state of one DAG run."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id).all()
        return {ti.task_id: str(ti.state.value if hasattr(ti.state, "value") else ti.state) for ti in tis}


def triggered_retrain(model: str, monitor_run_id: str):
    """``(logical_date, conf)`` of the retrain run a monitor run triggered, or ``None``."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = (
            session.query(DagRun)
            .filter(DagRun.dag_id == f"{model}__retrain", DagRun.run_id == f"requested__{monitor_run_id}")
            .one_or_none()
        )
        return None if run is None else (run.logical_date, dict(run.conf or {}))


def xcom_return(dag_id: str, run_id: str, task_id: str):
    """What one task of a run returned (its ``return_value`` XCom), or ``None``."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key="return_value")
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)
