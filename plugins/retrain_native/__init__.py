"""docker-compose.yaml's production topology started natively on this machine, without Docker
(Airflow with Celery workers on PostgreSQL and Redis, MLflow, S3 through moto): the compose
file read as ``docker compose`` reads it (:mod:`retrain_native.compose`), the services as
processes (:mod:`retrain_native.topology`) and the host name each worker reports
(:mod:`retrain_native.hostname`). Used by ``tests/production`` and ``benchmarks/fleet_bench.py``.

A package of its own, installed alongside ``retrain_airflow`` (which never imports it).
"""
