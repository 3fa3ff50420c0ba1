"""Windowing: sliding windows, normalization, channel mapping (the pipeline stage arrives with issue 5)."""
