"""The common recording model: what every data-set loader and every source returns.

A recording is one continuous capture: monotonic float64 timestamps in seconds, float32 samples
`[T, C]`, one `Channel` per column (name `GROUP.quantity.axis`, unit, sensor group), a nominal sample
rate, and integer labels `[T]` indexing `class_names`. Data sets with several label tracks
(OPPORTUNITY: locomotion and gestures) keep the others in `label_tracks`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class Channel:
    name: str    # e.g. "RA.acc.x": sensor group, quantity, axis
    unit: str    # e.g. "m/s^2", "g", "dps", "milli g"
    group: str   # e.g. "RA" (right arm): the sensor the channel comes from

    @property
    def quantity(self) -> str:
        parts = self.name.split(".")
        return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True)
class LabelTrack:
    labels: np.ndarray            # int16 [T], indices into class_names
    class_names: tuple[str, ...]


@dataclass
class Recording:
    dataset: str
    id: str                        # unique within the data set, e.g. "p6/a05", "11/a3t2", "S2-ADL4"
    subject: str                   # e.g. "p6", "11", "S2"
    session: str                   # e.g. "a05", "a3t2", "ADL4"
    timestamps: np.ndarray         # float64 [T], seconds, strictly increasing
    samples: np.ndarray            # float32 [T, C]
    channels: tuple[Channel, ...]
    rate: float                    # nominal sample rate, Hz
    labels: np.ndarray             # int16 [T]
    class_names: tuple[str, ...]
    label_tracks: Mapping[str, LabelTrack] = field(default_factory=dict)
    source_files: tuple[str, ...] = ()
    # Facts the loader counted while repairing data (e.g. {"nan_filled": 12}): never silent.
    repairs: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t, s, y = self.timestamps, self.samples, self.labels
        if s.ndim != 2 or s.shape[1] != len(self.channels):
            raise ValueError(f"{self.id}: samples {s.shape} do not match {len(self.channels)} channels")
        if t.shape != (s.shape[0],) or y.shape != (s.shape[0],):
            raise ValueError(f"{self.id}: timestamps {t.shape} / labels {y.shape} do not match {s.shape[0]} samples")
        if len(t) > 1 and not np.all(np.diff(t) > 0):
            raise ValueError(f"{self.id}: timestamps are not strictly increasing")

    def __len__(self) -> int:
        return self.samples.shape[0]

    @property
    def duration(self) -> float:
        """Seconds covered, counting the last sample's period."""
        return len(self) / self.rate

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.class_names))


def imu_channels(groups: list[str] | tuple[str, ...], quantities: list[tuple[str, str]]) -> tuple[Channel, ...]:
    """Channels for IMUs laid out group by group, each quantity as x, y, z.

    `quantities` pairs a quantity name with its unit, e.g. [("acc", "m/s^2"), ("gyro", "rad/s")].
    """
    return tuple(
        Channel(f"{g}.{q}.{axis}", unit, g)
        for g in groups for q, unit in quantities for axis in "xyz"
    )
