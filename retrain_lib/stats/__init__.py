"""Statistics, pure functions of frames and arrays: drift methods and scores, threshold
calibration, live performance, change detection, the paired gain test, rollout statistics."""
