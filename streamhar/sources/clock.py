"""Device time → host time, with the device clock's drift estimated.

A live device stamps its samples with its own counter: our firmware in µs (u32, wraps after
71.6 min), Movesense in ms (u32), Polar in ns (u64, the *last* sample of a frame), the generic
BLE profile in µs. The host needs them on its own clock (`time.monotonic()`, the same in every
process of a pipeline) so that several devices can be aligned and latency measured.

Model: host = offset + (1 + drift) · device_seconds. A frame's arrival time is its mapped device
time plus a transit delay that is never negative and often close to its minimum (radio slot,
UART, scheduler), so the estimate follows the *lower envelope* of the arrivals: per second of
device time the smallest residual arrival − device time is kept, the drift is the least-squares
slope through those minima (once they span `min_span_s`), and the offset is the smallest residual
under that slope. A mapped time is therefore never later than the frame's arrival, and jitter in
the delay does not move it.

`reset()` forgets everything: a device that rebooted or reconnected may restart its counter.
"""
from __future__ import annotations

import numpy as np


class DeviceClock:
    def __init__(self, tick_hz: float, wrap_bits: int | None = 32, min_span_s: float = 30.0,
                 keep_s: float = 600.0):
        if tick_hz <= 0:
            raise ValueError(f"tick_hz must be > 0, got {tick_hz}")
        self.tick_hz = float(tick_hz)
        self.wrap = None if wrap_bits is None else 1 << wrap_bits
        self.min_span_s = min_span_s
        self.keep_s = keep_s
        self.reset()

    def reset(self) -> None:
        self._last_raw: int | None = None
        self._epochs = 0                     # how many times the counter wrapped
        self._bins: dict[int, tuple[float, float]] = {}   # device second → (smallest host − device, its device time)
        self.drift = 0.0                     # (host rate / device rate) − 1
        self.offset: float | None = None     # host seconds at device time 0 (unwrapped)
        self.observations = 0

    # ------------------------------------------------------------------ device ticks

    def unwrap(self, ticks: int) -> int:
        """A device counter value as ticks since the first one seen, across wraps. Counters only
        move forward, so a value below the previous one means the counter wrapped."""
        ticks = int(ticks)
        if self.wrap is None:
            return ticks
        ticks %= self.wrap
        if self._last_raw is not None and ticks < self._last_raw and self._last_raw - ticks > self.wrap // 2:
            self._epochs += 1
        self._last_raw = ticks
        return ticks + self._epochs * self.wrap

    def seconds(self, unwrapped_ticks) -> float | np.ndarray:
        return np.asarray(unwrapped_ticks, dtype=np.float64) / self.tick_hz if np.ndim(unwrapped_ticks) \
            else float(unwrapped_ticks) / self.tick_hz

    # ------------------------------------------------------------------ estimation

    def observe(self, unwrapped_ticks: int, host_time: float) -> None:
        """A frame stamped `unwrapped_ticks` (see `unwrap`) arrived at `host_time`."""
        d = float(unwrapped_ticks) / self.tick_hz
        r = host_time - d
        b = int(d // 1.0)
        if b not in self._bins or r < self._bins[b][0]:
            self._bins[b] = (r, d)
        if len(self._bins) > self.keep_s + 2:
            for k in sorted(self._bins)[: len(self._bins) - int(self.keep_s)]:
                del self._bins[k]
        self.observations += 1
        self._fit(d, r)

    def _fit(self, d: float, r: float) -> None:
        pts = np.array(list(self._bins.values()), dtype=np.float64)   # [n, 2]: residual, device time
        if len(pts) >= 3 and pts[:, 1].max() - pts[:, 1].min() >= self.min_span_s:
            slope = float(np.polyfit(pts[:, 1], pts[:, 0], 1)[0])
            self.drift = slope
            self.offset = float((pts[:, 0] - slope * pts[:, 1]).min())
        else:
            cand = r - self.drift * d
            self.offset = cand if self.offset is None else min(self.offset, cand)

    @property
    def drift_ppm(self) -> float:
        return self.drift * 1e6

    # ------------------------------------------------------------------ mapping

    def to_host(self, unwrapped_ticks) -> float | np.ndarray:
        """Host time of a device time (ticks from `unwrap`); needs one `observe` first."""
        if self.offset is None:
            raise RuntimeError("DeviceClock.to_host before any observe()")
        d = self.seconds(unwrapped_ticks)
        return self.offset + (1.0 + self.drift) * d
