"""The Airflow face of ``retrain_lib``: the DAG factory and thin task wrappers.

Nothing heavy is imported at module level: DAG parsing must stay fast. Task bodies import
the lifecycle step modules of ``retrain_lib`` (``monitor_run``, ``snapshot``, ``training_run``,
``evaluation``, ``registration``, ``approval_steps``, ``promotion``; through them MLflow,
scikit-learn, pandas) when they run.
"""
