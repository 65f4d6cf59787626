"""Training: estimator checks and import, the scikit-learn pipeline, training data and
weights, warm starts, and candidates trained on several windows."""
