"""The steps the DAGs run, one module per phase: monitor facts and the pure ``decide``, the
monitor run, snapshot, training run, evaluation, registration, approval, promotion and
rollback, rollout, the retrain as one call, and the Slack alerts about them."""
