"""Serving: the gateway that answers predictions from the registry's ``champion`` and
``challenger`` (shadow or canary), its durable prediction log and a replay client.

Modules: :mod:`~retrain_lib.serving.routing` (rollout-state contract, deterministic routing);
the prediction log: :mod:`~retrain_lib.serving.predlog` (group-commit writer),
:mod:`~retrain_lib.serving.predlog_store` (tables, URLs, engines),
:mod:`~retrain_lib.serving.predlog_journal` (SQLite journal and its recovery),
:mod:`~retrain_lib.serving.predlog_read` (read API); the gateway:
:mod:`~retrain_lib.serving.gateway` (the FastAPI app and its routes),
:mod:`~retrain_lib.serving.service` (the service behind them),
:mod:`~retrain_lib.serving.payloads` (request parsing, replies),
:mod:`~retrain_lib.serving.schema` (record checks), :mod:`~retrain_lib.serving.deployment`
(loaded versions), :mod:`~retrain_lib.serving.fast_path` (pandas-free scoring),
:mod:`~retrain_lib.serving.refresher` (registry polling), :mod:`~retrain_lib.serving.shadow`
(shadow scoring), :mod:`~retrain_lib.serving.gateway_metrics` (Prometheus metrics);
:mod:`~retrain_lib.serving.replay` (send recorded partitions to a gateway). Heavy libraries
are imported lazily.
"""
