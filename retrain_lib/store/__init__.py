"""Where state lives: the data windows (parquet, S3, SQL), the DVC data registry, the MLflow
registry (and a light reader of it), the hash-chained decision ledger, reports, a model's context."""
