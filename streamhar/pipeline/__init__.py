"""The streaming pipeline: stages as processes over ZeroMQ, their supervisor, config and summary."""
