"""What people run beside the DAGs: the backtester (replay, policies, reports, dry run,
threshold calibration), the simulator and its scenarios, ``reproduce``, and fleet status."""
