"""A chunk: the unit of data a source emits — consecutive samples of one recording."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    stream: str               # the source spec it came from, e.g. "replay:usc-had:11"
    seq: int                  # 0, 1, 2, … per stream: a receiver detects gaps by it
    recording_id: str         # recording the samples belong to; chunks never span recordings
    timestamps: np.ndarray    # float64 [n], stream time in seconds, strictly increasing across chunks
    samples: np.ndarray       # float32 [n, C]
    labels: np.ndarray        # int16 [n] ground truth (-1 where the source has none)
    first_of_recording: bool  # windowing restarts here: no window may straddle two recordings

    def __len__(self) -> int:
        return self.samples.shape[0]
