"""What every live source (serial device, BLE wearable) gives the pipeline.

A live source is opened (connected, its channels and rate known) before the pipeline starts,
then `chunks(stop)` yields chunks as data arrives, on the host clock (`time.monotonic()` seconds,
device time mapped by `clock.DeviceClock`), until `stop()` is true or `close()` is called. It
never paces (the device does) and never raises for a fault it can recover from: a lost frame, a
corrupted one, a disconnect are counted in `counters()` and streaming goes on after a reconnect.
A fault it cannot recover from (device gone for longer than `give_up_s`, wrong profile) raises a
`StreamharError` naming the device and what was expected.

`ChunkMaker` numbers chunks and keeps a stream's timestamps strictly increasing: a device clock
re-estimate may move a mapped time back by a little, and windowing refuses time going backwards.
After a reconnect the next chunk starts a new recording (`first_of_recording`), so no window
straddles the disconnect.
"""
from __future__ import annotations

from typing import Callable, Iterator, Protocol

import numpy as np

from streamhar.recording import Channel
from streamhar.sources.chunk import Chunk


class LiveSource(Protocol):
    live: bool                       # True: the pipeline does not pace it; bounded mode by default
    stream: str
    rate: float                      # nominal sample rate, Hz
    channels: tuple[Channel, ...]    # names and SI units, as the bundles name them
    class_names: tuple[str, ...]     # () : live sources have no ground truth

    def chunks(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Chunk]: ...

    def counters(self) -> dict[str, int | float]: ...

    def close(self) -> None: ...


class ChunkMaker:
    def __init__(self, stream: str, n_channels: int):
        self.stream, self.n_channels = stream, n_channels
        self.seq = 0
        self.session = 0
        self._new_session = True
        self._last_t: float | None = None
        self.clock_steps = 0         # timestamps nudged forward to stay increasing

    def restart(self) -> None:
        """The next chunk begins a new recording (after a reconnect or a device reset)."""
        self._new_session = True

    def make(self, timestamps: np.ndarray, samples: np.ndarray, labels: np.ndarray | None = None) -> Chunk:
        t = np.asarray(timestamps, dtype=np.float64).copy()
        x = np.ascontiguousarray(samples, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_channels or len(t) != len(x):
            raise ValueError(f"{self.stream}: chunk of {x.shape} samples with {len(t)} timestamps; "
                             f"expected [n, {self.n_channels}]")
        if self._new_session:
            self.session += 1
        if self._last_t is not None and len(t) and t[0] <= self._last_t:
            self.clock_steps += 1
            t += self._last_t - t[0] + 1e-6
        if (np.diff(t) <= 0).any():  # rare: push each late stamp just past its predecessor
            self.clock_steps += 1
            for i in range(1, len(t)):
                t[i] = max(t[i], t[i - 1] + 1e-6)
        chunk = Chunk(self.stream, self.seq, f"{self.stream}#{self.session}", t, x,
                      np.full(len(t), -1, np.int16) if labels is None else np.asarray(labels, np.int16),
                      first_of_recording=self._new_session)
        self.seq += 1
        self._new_session = False
        if len(t):
            self._last_t = float(t[-1])
        return chunk
