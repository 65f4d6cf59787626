"""The Airflow face of ``retrain_lib``: the DAG factory and thin task wrappers.

Nothing heavy is imported at module level: DAG parsing must stay fast. Task bodies import
``retrain_lib.lifecycle`` (and through it MLflow, scikit-learn, pandas) when they run.
"""
