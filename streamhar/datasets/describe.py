"""Facts about a data set as found in a data folder: what `streamhar data info` shows."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from streamhar.datasets.base import Dataset, natural_key


def describe(dataset: Dataset, data_dir: Path,
             progress: Callable[[Iterable], Iterable] = lambda refs: refs) -> dict:
    """Subjects, recordings, channels, rate, classes with counts and durations, total duration.

    Loads every recording (through `progress`, e.g. a progress bar) because the counts must
    be the data's, not the documentation's.
    """
    root = dataset.root(data_dir)
    refs = dataset.index(root)
    counts = np.zeros(len(dataset.class_names), dtype=np.int64)
    samples_by_subject: Counter[str] = Counter()
    recordings_by_subject: Counter[str] = Counter()
    total_samples = 0
    total_seconds = 0.0
    repairs: Counter[str] = Counter()
    for ref in progress(refs):
        rec = dataset.load(root, ref)
        counts += rec.class_counts()
        samples_by_subject[rec.subject] += len(rec)
        recordings_by_subject[rec.subject] += 1
        total_samples += len(rec)
        total_seconds += rec.duration
        repairs.update(rec.repairs)
    subjects = sorted(recordings_by_subject, key=natural_key)
    return {
        "name": dataset.name,
        "title": dataset.title,
        "root": str(root),
        "rate_hz": dataset.rate,
        "channels": [{"name": c.name, "unit": c.unit, "group": c.group} for c in dataset.channels],
        "sensor_groups": list(dict.fromkeys(c.group for c in dataset.channels)),
        "splits": {k: list(v) for k, v in dataset.splits.items()},
        "subjects": [{"id": s, "recordings": recordings_by_subject[s], "samples": samples_by_subject[s]}
                     for s in subjects],
        "recordings": len(refs),
        "samples": total_samples,
        "duration_s": round(total_seconds, 3),
        "classes": [{"index": i, "name": name, "samples": int(n), "duration_s": round(n / dataset.rate, 2)}
                    for i, (name, n) in enumerate(zip(dataset.class_names, counts))],
        "repairs": dict(repairs),
    }
