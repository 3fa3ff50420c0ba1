"""Alignment of several sources on the model's sample grid, and the windows over them.

Every source delivers samples already placed on the grid (integer index k, time k / rate) in
*runs*: contiguous stretches of one recording with no gap. A run ends when its source restarts
(gap, new recording) or at the end of the stream. A *combined run* is a stretch where every source
has a run without a break; windows are cut from combined runs only, so no window straddles a gap or
a recording boundary of any source. Windows start at the combined run's first index (its anchor)
and every `stride` after, exactly as `sliding.window_starts` does for one recording.

Sources may arrive in any interleaving and be far apart in time: each source's samples are held
until every source has covered them. Samples no window can use any more (before a common start,
where another source has no data, the tail of a run shorter than a window) are trimmed and counted
as dropped; those that were in at least one window are counted as windowed, so after `flush`,
windowed + dropped = the grid samples each source delivered. Memory grows with the time skew
between sources (a source that never sends data holds the others' samples until `flush`).
"""
from __future__ import annotations

import math

import numpy as np


class Run:
    """Grid-aligned samples of one source: indices base … end, stored in a growable buffer."""

    def __init__(self, k0: int, n_channels: int, recording_id: str):
        self.base = k0
        self.n = 0
        self.off = 0
        self.data = np.empty((256, n_channels), np.float32)
        self.labels = np.empty(256, np.int16)
        self.recording_id = recording_id
        self.closed = False
        self.ended_by: str | None = None     # "gap", "recording" or "end" once closed

    @property
    def end(self) -> int:
        """Index of the last sample ever appended (k0 − 1 while empty); trimming keeps it."""
        return self.base + self.n - 1

    def append(self, values: np.ndarray, labels: np.ndarray) -> None:
        m = len(values)
        if self.off + self.n + m > len(self.data):
            # Compact to the front, and grow when that is not enough: amortized O(1) per sample.
            cap = max(len(self.data), 2 * (self.n + m))
            data = np.empty((cap, self.data.shape[1]), np.float32)
            lab = np.empty(cap, np.int16)
            data[:self.n] = self.data[self.off:self.off + self.n]
            lab[:self.n] = self.labels[self.off:self.off + self.n]
            self.data, self.labels, self.off = data, lab, 0
        self.data[self.off + self.n:self.off + self.n + m] = values
        self.labels[self.off + self.n:self.off + self.n + m] = labels
        self.n += m

    def trim(self, k: int) -> tuple[int, int]:
        """Forget the samples below index k; returns the removed index range [lo, hi)."""
        m = min(max(k - self.base, 0), self.n)
        lo = self.base
        self.off += m
        self.base += m
        self.n -= m
        return lo, lo + m


class Aligner:
    def __init__(self, channel_rows: list[np.ndarray], length: int, stride: int, stats: list, n_out: int):
        self.rows = channel_rows          # per source: its rows in the window's channel order
        self.length = length
        self.stride = stride
        self.stats = stats                # per source SourceStats: windowed / dropped counters
        self.n_out = n_out
        self.windows_dropped = 0
        self.reset()

    def reset(self) -> None:
        self.runs: list[list[Run]] = [[] for _ in self.rows]
        self.cursor: int | None = None    # indices below are settled
        self.anchor: int | None = None    # first index of the current combined run
        self.cur: list[Run] = []          # each source's run holding the current combined run
        self.next = 0                     # next window start
        self.last_end: int | None = None  # last index of the last window emitted in this run
        self.gap_from: int | None = None  # next window start when a gap ended the previous run

    # -- input ------------------------------------------------------------------------------
    def close(self, s: int, ended_by: str) -> None:
        runs = self.runs[s]
        if runs and not runs[-1].closed:
            runs[-1].closed = True
            runs[-1].ended_by = ended_by

    def append(self, s: int, k0: int, recording_id: str, values: np.ndarray, labels: np.ndarray) -> int:
        """Append samples at k0 …; a closed (or no) last run starts a new one. Returns the index used."""
        runs = self.runs[s]
        if not runs or runs[-1].closed:
            if runs:
                k0 = max(k0, runs[-1].end + 1)   # jittery timestamps must not step back on the grid
            runs.append(Run(k0, values.shape[1], recording_id))
        else:
            k0 = runs[-1].end + 1
        runs[-1].append(values, labels)
        return k0

    def close_all(self, ended_by: str) -> None:
        for s in range(len(self.runs)):
            self.close(s, ended_by)

    # -- output -----------------------------------------------------------------------------
    def emit(self) -> list[tuple]:
        """Cut every window whose samples all sources have delivered: [(x, labels, starts, recording_id)]."""
        out = []
        L, S = self.length, self.stride
        while True:
            if self.anchor is None:
                a = self._find_anchor()
                if a is None:
                    break
                if self.gap_from is not None and a > self.gap_from:
                    # Windows the uninterrupted stride sequence would have completed: lost to the gap.
                    self.windows_dropped += math.ceil((a - self.gap_from) / S)
                self.gap_from = None
                self.anchor = self.next = a
                self.last_end = None
            end = min(r.end for r in self.cur)
            if end - L + 1 >= self.next:
                n = (end - L + 1 - self.next) // S + 1
                starts = self.next + S * np.arange(n, dtype=np.int64)
                out.append(self._cut(starts))
                self.next += n * S
                self.last_end = int(starts[-1]) + L - 1
            closing = [r for r in self.cur if r.closed and r.end == end]
            if not closing:
                # Keep what a later window of this run, or the next combined run, may need.
                self._trim(min(self.next, end + 1))
                break
            self._trim(end + 1)
            causes = {r.ended_by for r in closing}
            if "gap" in causes and "recording" not in causes:
                self.gap_from = self.next
            self.cursor = end + 1
            self.anchor = None
            self.last_end = None
        return out

    def drop_all(self) -> None:
        """End of stream: count every sample still held as dropped and start afresh."""
        self.anchor = None
        self.last_end = None
        self._trim(None)
        self.reset()

    def _find_anchor(self) -> int | None:
        """Lowest index ≥ cursor where every source has data; None while that is not known yet."""
        c = self.cursor if self.cursor is not None else -(2 ** 62)
        cur: list[Run] = []
        changed = True
        while changed:
            changed = False
            cur = []
            for runs in self.runs:
                run = next((r for r in runs if r.end >= c and r.n > 0), None)
                if run is None:
                    return None
                if run.base > c:
                    c = run.base
                    changed = True
                cur.append(run)
        self._trim(c)
        self.cur = cur
        return c

    def _cut(self, starts: np.ndarray) -> tuple:
        L, S = self.length, self.stride
        x = np.empty((len(starts), self.n_out, L), np.float32)
        for run, rows in zip(self.cur, self.rows):
            i0 = run.off + int(starts[0]) - run.base
            span = run.data[i0:i0 + int(starts[-1] - starts[0]) + L]
            x[:, rows, :] = np.lib.stride_tricks.sliding_window_view(span, L, axis=0)[::S]
        ref = self.cur[0]   # labels and recording id: the first source's
        labels = ref.labels[ref.off + (starts - ref.base) + L - 1].copy()
        return x, labels, starts, ref.recording_id

    def _trim(self, k: int | None) -> None:
        """Forget every sample below k (all when None), counting it as windowed or dropped."""
        for s, runs in enumerate(self.runs):
            while runs:
                r = runs[0]
                if k is None or (r.closed and r.end < k):
                    lo, hi = r.trim(r.end + 1)
                    self._count(s, lo, hi)
                    runs.pop(0)
                    continue
                lo, hi = r.trim(min(k, r.end + 1))
                self._count(s, lo, hi)
                break

    def _count(self, s: int, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        covered = 0
        if self.last_end is not None and self.anchor is not None:
            a, e = max(lo, self.anchor), min(hi - 1, self.last_end)
            if e >= a:
                if self.stride <= self.length:
                    covered = e - a + 1
                else:   # windows leave holes between them
                    covered = int(np.count_nonzero((np.arange(a, e + 1) - self.anchor) % self.stride < self.length))
        self.stats[s].samples_windowed += covered
        self.stats[s].samples_dropped += hi - lo - covered
