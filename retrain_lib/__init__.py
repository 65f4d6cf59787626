"""Domain library of the retraining platform."""
