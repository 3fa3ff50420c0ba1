"""ZeroMQ transport between pipeline stages: the message schema (messages.py)."""
