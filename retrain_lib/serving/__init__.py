"""Serving: the gateway that answers predictions from the registry's ``champion`` and
``challenger`` (shadow or canary), its durable prediction log and a replay client.

Modules: :mod:`~retrain_lib.serving.routing` (rollout-state contract, deterministic routing),
:mod:`~retrain_lib.serving.predlog` (prediction and feedback tables, group commit, read API),
:mod:`~retrain_lib.serving.gateway` (the FastAPI app), :mod:`~retrain_lib.serving.replay`
(send recorded partitions to a gateway). Heavy libraries are imported lazily.
"""
