"""Sliding windows over a recording: the one definition training, evaluation and streaming share.

A window of `length` samples starts every `stride` samples; windows never cross recordings and a
tail shorter than `length` gives no window. A window's label is the label of its **last** sample —
what a streaming system knows when the window completes (the DeepConvLSTM convention).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from streamhar.recording import Recording


def window_starts(n_samples: int, length: int, stride: int) -> np.ndarray:
    if length < 1 or stride < 1:
        raise ValueError(f"window length and stride must be ≥ 1, got {length}, {stride}")
    if n_samples < length:
        return np.empty(0, dtype=np.int64)
    return np.arange(0, n_samples - length + 1, stride, dtype=np.int64)


@dataclass
class WindowSet:
    x: np.ndarray            # float32 [N, C, L]: channels first, as Conv1d wants them
    y: np.ndarray            # int64 [N], label of each window's last sample
    recording: np.ndarray    # int32 [N], index into `recording_ids`
    end: np.ndarray          # int64 [N], index (within its recording) of each window's last sample
    recording_ids: list[str]
    subjects: list[str]      # per recording

    def __len__(self) -> int:
        return len(self.y)


def make_windows(recordings: Sequence[Recording], length: int, stride: int,
                 channel_index: Sequence[int] | None = None) -> WindowSet:
    """Windows of every recording, in order; `channel_index` picks and orders the channels."""
    xs, ys, recs, ends = [], [], [], []
    for i, rec in enumerate(recordings):
        starts = window_starts(len(rec), length, stride)
        if len(starts) == 0:
            continue
        samples = rec.samples if channel_index is None else rec.samples[:, channel_index]
        view = np.lib.stride_tricks.sliding_window_view(samples, length, axis=0)  # [T-L+1, C, L]
        xs.append(np.ascontiguousarray(view[starts], dtype=np.float32))
        ys.append(rec.labels[starts + length - 1].astype(np.int64))
        recs.append(np.full(len(starts), i, dtype=np.int32))
        ends.append(starts + length - 1)
    n_channels = len(channel_index) if channel_index is not None else \
        (recordings[0].samples.shape[1] if recordings else 0)
    if not xs:
        return WindowSet(np.empty((0, n_channels, length), np.float32), np.empty(0, np.int64),
                         np.empty(0, np.int32), np.empty(0, np.int64),
                         [r.id for r in recordings], [r.subject for r in recordings])
    return WindowSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(recs), np.concatenate(ends),
                     [r.id for r in recordings], [r.subject for r in recordings])
