"""How ``make demo`` runs DAGs: ``dag.test()`` in the demo's process, recorded the way the
Airflow UI expects to find a run.

``dag.test()`` runs every task in the calling process (``run_task_in_process``). Two things
the scheduler's runs have are then missing, and this module adds them:

* **Run times.** ``dag.test()`` records the logical date as the run's start date; for a
  simulated past day the UI then shows durations like "292d 19h". :func:`run_dag` sets the
  start date to the wall-clock time the run began (the end date already is one).
* **Task logs.** No supervisor writes the task's log file, so the UI's Logs tab has nothing.
  While :func:`task_logs` is active, each task's stdout and stderr (file descriptors 1 and 2:
  Airflow's structlog output, the stdlib handlers, prints) go to the file the api-server reads
  for that try, ``<base_log_folder>/dag_id=.../run_id=.../task_id=.../attempt=N.log``,
  rendered by Airflow's own ``FileTaskHandler`` from the run's log template. With
  ``[logging] json_logs`` on (the demo sets it), each line is a JSON object (timestamp,
  level, event, logger) as in a supervised task's log, so the UI shows levels and times.

:func:`task_logs` wraps ``airflow.sdk.definitions.dag._run_task``, a private helper of
``dag.test()`` in Airflow 3.3. If a later Airflow drops it, the runs go on without task logs
and a warning says so (``tests/e2e/test_demo.py`` then fails on the missing files).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# Loggers a task's log shows at INFO (the demo keeps them at ERROR between tasks).
TASK_LOGGERS = ("retrain_lib", "retrain_airflow", "airflow.task")


@contextlib.contextmanager
def _fds_to(path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 appended to ``path`` for the duration (threads included)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with open(path, "ab") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


@contextlib.contextmanager
def _levels(names: tuple[str, ...], level: int) -> Iterator[None]:
    loggers = [logging.getLogger(n) for n in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, old in zip(loggers, before, strict=True):
            lg.setLevel(old)


@contextlib.contextmanager
def task_logs(base_log_folder: str | os.PathLike | None = None) -> Iterator[None]:
    """Write the log of every task ``dag.test()`` runs in this process (while active) to the
    file the api-server serves for that task try. ``base_log_folder`` defaults to Airflow's
    ``[logging] base_log_folder``."""
    import airflow.sdk.definitions.dag as sdk_dag
    from airflow.utils.log.file_task_handler import FileTaskHandler

    original = getattr(sdk_dag, "_run_task", None)
    if original is None:
        log.warning("this Airflow has no airflow.sdk.definitions.dag._run_task: dag.test() runs get no task logs")
        yield
        return
    if base_log_folder is None:
        from airflow.configuration import conf

        base_log_folder = conf.get("logging", "base_log_folder")
    files = FileTaskHandler(base_log_folder=os.fspath(base_log_folder))

    def run_task(*, ti, task, **kwargs):
        path = Path(base_log_folder) / files._render_filename(ti, ti.try_number)
        with _fds_to(path), _levels(TASK_LOGGERS, logging.INFO):
            return original(ti=ti, task=task, **kwargs)

    sdk_dag._run_task = run_task
    try:
        yield
    finally:
        sdk_dag._run_task = original


def run_dag(dag, *, logical_date: dt.datetime, conf: dict | None = None):
    """``dag.test()`` for ``logical_date`` with ``conf``; the run's start date is then set to
    the wall-clock time it began (``dag.test()`` records the logical date there). Returns the
    run (check its ``state``: ``dag.test()`` does not raise when a task fails).

    The values of the DAG's params are restored afterwards: tasks run in this process, and
    Airflow resolves a run's conf into the DAG's own ``Param`` objects, so a later run without
    that key would silently inherit it (a retrain for today would reuse an earlier ``as_of``)."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    holders = [dag.params, *(task.params for task in dag.tasks if task.params)]
    saved = [(param, param.value) for holder in holders for param in map(holder.get_param, list(holder))]
    began = dt.datetime.now(dt.UTC)
    try:
        run = dag.test(logical_date=logical_date, run_conf=conf)
    finally:
        for param, value in saved:
            param.value = value
    with create_session() as session:
        row = session.get(DagRun, run.id)
        if row is not None:
            row.start_date = began
    run.start_date = began
    return run


def drop_unstarted_guard_runs() -> list[str]:
    """Deletes the ``<model>__guard`` runs the demo's promotions and rollbacks queued, and
    returns their ids. The demo replays its days in minutes; a guard watches a new champion's
    live traffic for ``guard.minutes`` (hours), which no simulated day has. Left queued, they
    would start the moment ``make up`` starts the scheduler and watch whichever champion is
    current then."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        queued = (
            session.query(DagRun)
            .filter(DagRun.dag_id.like("%\\_\\_guard", escape="\\"), DagRun.start_date.is_(None))
            .all()
        )
        dropped = [f"{run.dag_id}/{run.run_id}" for run in queued]
        for run in queued:
            session.delete(run)
    return dropped
