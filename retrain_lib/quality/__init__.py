"""What a candidate or a batch must pass: data validation (Great Expectations), the gates and
their kinds, approval rules, and the model card that records the verdicts."""
