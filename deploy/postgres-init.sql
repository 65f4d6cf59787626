-- Runs once, when the postgres volume is first initialised (POSTGRES_DB=airflow exists already).
-- mlflow: the MLflow tracking server's backend store; retrain: the platform's decision ledger
-- (RETRAIN_DB_URL) and the gateway's prediction log (RETRAIN_PREDICTIONS_URL).
CREATE DATABASE mlflow;
CREATE DATABASE retrain;
