"""Windowing: the one window definition (sliding.py) and the streaming stage (stage.py: channel
mapping, alignment of several sources (align.py), resampling (resample.py), normalization)."""
