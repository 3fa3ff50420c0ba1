"""Evaluation: the metrics HAR papers report, at window and at sample level."""
