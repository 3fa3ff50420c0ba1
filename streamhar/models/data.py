"""From a data set to the arrays training and evaluation use: windows, labels, normalization."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from typing import TYPE_CHECKING

from streamhar.datasets import get_dataset
from streamhar.recording import Recording
from streamhar.windowing.sliding import WindowSet, make_windows

if TYPE_CHECKING:
    from streamhar.models.bundle import Bundle


def normalization_stats(recordings: list[Recording]) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over every sample of the training recordings."""
    stacked = np.concatenate([r.samples for r in recordings]).astype(np.float64)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


@dataclass
class SplitData:
    recordings: list[Recording]
    windows: WindowSet


def load_split(dataset_name: str, data_dir: Path, selector: str, window: int, stride: int,
               task: str | None = None) -> SplitData:
    """Recordings of `selector` and their windows, channels in the data set's order."""
    dataset = get_dataset(dataset_name)
    options = {"task": task} if task else {}
    recordings = dataset.load_selection(data_dir, selector, **options)
    return SplitData(recordings, make_windows(recordings, window, stride))


def bundle_split(bundle: "Bundle", data_dir: Path, selector: str) -> SplitData:
    """Recordings of `selector` windowed as `bundle` expects: its data set, task, window, stride,
    and its channels picked by name (a clear error naming any channel or unit that does not fit)."""
    from streamhar.models.bundle import check_channels
    meta = bundle.meta
    options = {"task": meta["task"]} if meta.get("task") else {}
    recordings = get_dataset(meta["dataset"]).load_selection(data_dir, selector, **options)
    first = recordings[0]
    index = check_channels(bundle, list(first.channel_names), [c.unit for c in first.channels],
                           f"{meta['dataset']} recording {first.id}")
    return SplitData(recordings, make_windows(recordings, meta["window"], meta["stride"], index))


def sensor_groups(recording: Recording) -> tuple[tuple[int, ...], ...]:
    """Channel indices per sensor group, in first-appearance order (for late/dynamic fusion)."""
    groups: dict[str, list[int]] = {}
    for i, ch in enumerate(recording.channels):
        groups.setdefault(ch.group, []).append(i)
    return tuple(tuple(v) for v in groups.values())
