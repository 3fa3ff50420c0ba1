"""Merging a device's separate streams (Polar ACC and GYRO frames) into rows, by device time.

Streams of one device share its clock and rate, so each sample sits on a grid of sample periods:
grid index = round((ticks − origin) / period). A row is emitted for each index of the first
(primary) stream once every other stream has delivered that index or later, or once the primary
is `max_wait` samples ahead (the other stream lost a frame): the missing columns are NaN and
counted in `nan_rows`. Samples of other streams whose index the primary never had are dropped
and counted in `orphans`. Streams are started one after the other, so rows begin at the first
index every stream has (earlier primary samples are dropped, counted in `skipped_start`).
"""
from __future__ import annotations

import numpy as np


class StreamMerger:
    def __init__(self, keys: list[str], widths: list[int], period_ticks: float, max_wait: int = 50):
        self.keys, self.widths = keys, widths
        self.period = float(period_ticks)
        self.max_wait = max_wait
        self.reset()

    def reset(self) -> None:
        self.origin: int | None = None
        self.pending = {k: {} for k in self.keys}          # grid index → values row
        self.latest = {k: None for k in self.keys}         # highest index seen per stream
        self.first = {k: None for k in self.keys}          # first index seen per stream
        self.skipped_start = getattr(self, "skipped_start", 0)
        self.nan_rows = getattr(self, "nan_rows", 0)
        self.orphans = getattr(self, "orphans", 0)

    def push(self, key: str, ticks: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add samples (ticks int64 [n], values [n, w]); returns the rows now complete:
        (ticks [m], values [m, Σw])."""
        if len(self.keys) == 1:
            return ticks, values
        if self.origin is None:
            self.origin = int(ticks[0])
        idx = np.rint((ticks - self.origin) / self.period).astype(np.int64)
        rows = self.pending[key]
        for i, v in zip(idx.tolist(), values):
            rows[i] = v
        self.latest[key] = max(self.latest[key] if self.latest[key] is not None else idx[-1], int(idx[-1]))
        if self.first[key] is None:
            self.first[key] = int(idx[0])
        return self._emit()

    def _emit(self) -> tuple[np.ndarray, np.ndarray]:
        primary = self.keys[0]
        top = self.latest[primary]
        if top is None or any(f is None for f in self.first.values()):
            return np.empty(0, np.int64), np.empty((0, sum(self.widths)), np.float32)
        begin = max(self.first.values())
        early = [i for i in self.pending[primary] if i < begin]
        for i in early:
            del self.pending[primary][i]
        self.skipped_start += len(early)
        others = [self.latest[k] for k in self.keys[1:]]
        ready = min([top] + [o if o is not None else -(1 << 62) for o in others])
        ready = max(ready, top - self.max_wait)             # do not wait forever for a lost frame
        out_i = sorted(i for i in self.pending[primary] if i <= ready)
        if not out_i:
            return np.empty(0, np.int64), np.empty((0, sum(self.widths)), np.float32)
        out = np.empty((len(out_i), sum(self.widths)), np.float32)
        for r, i in enumerate(out_i):
            col, missing = 0, False
            for k, w in zip(self.keys, self.widths):
                v = self.pending[k].pop(i, None)
                if v is None:
                    out[r, col:col + w] = np.nan
                    missing = True
                else:
                    out[r, col:col + w] = v
                col += w
            self.nan_rows += missing
        for k in self.keys[1:]:                             # other-stream samples the primary never had
            stale = [i for i in self.pending[k] if i <= out_i[-1]]
            for i in stale:
                del self.pending[k][i]
            self.orphans += len(stale)
        ticks = self.origin + np.rint(np.asarray(out_i) * self.period).astype(np.int64)
        return ticks, out
