"""Sinks: where results leave the pipeline (terminal views, files, sockets)."""
