"""``make demo``: the platform's DAGs run day by day on simulated data through embedded Airflow
(:mod:`retrain_demo.demo`, the driver; :mod:`retrain_demo.runs`, how it runs a DAG;
:mod:`retrain_demo.live`, the gateway, canary and rollback part), and the embedded Airflow
environment the tests and benchmarks share (:func:`retrain_demo.demo.airflow_env`).

A package of its own, installed alongside ``retrain_airflow`` (which never imports it): the
plugin Airflow loads holds only what the DAGs and the UI need.
"""
