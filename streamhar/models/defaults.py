"""Per-data-set defaults: window, strides, architecture. Chosen once, documented in docs/MODELS.md.

- DSADS: 5-s windows (125 samples at 25 Hz) as in the literature; validation windows do not
  overlap and fall exactly on the release's 5-s segments; training windows every 1 s.
- USC-HAD: 2-s windows (200 samples at 100 Hz), stride 0.5 s for training and validation.
- OPPORTUNITY: the DeepConvLSTM protocol, 24 samples (0.8 s at 30 Hz), stride 12.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetDefaults:
    window: int
    train_stride: int
    eval_stride: int
    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    pools: tuple[int, ...]


DEFAULTS = {
    "dsads": DatasetDefaults(125, 25, 125, (48, 64, 96, 128), (5, 5, 3, 3), (2, 2, 2, 2)),
    "usc-had": DatasetDefaults(200, 50, 50, (32, 64, 96, 128), (7, 5, 5, 3), (2, 2, 2, 2)),
    "opportunity": DatasetDefaults(24, 12, 12, (64, 64, 96, 128), (5, 5, 3, 3), (1, 2, 2, 1)),
}
