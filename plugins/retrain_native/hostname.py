"""The host name a task reports, when several "hosts" share one machine.

In docker-compose every Celery worker is a container with a host name of its own, and Airflow
records it on each task instance (``task_instance.hostname``). The native topology runs its
workers side by side on one machine, so each gets the name its container would have had,
through Airflow's ``[core] hostname_callable`` (see ``retrain_native.topology.WORKER_EXTRAS``)."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("RETRAIN_NATIVE_HOSTNAME") or socket.getfqdn()
