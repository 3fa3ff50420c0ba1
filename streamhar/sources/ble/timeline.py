"""A device's time line: frames → per-sample device ticks → host time, with every loss counted.

For each stream (rate known) the timeline expects the next sample at `next` ticks; a frame whose
first sample comes later reveals a gap of round(Δ / period) samples. Gaps between packets are
radio losses (`samples_lost`; `packets_lost` from the packet counter where the protocol has one,
else gap / frame size); the gap across a disconnect is reported apart (`gap_samples`) after a
plausibility check: if the device's clock moved by as much as the host's (±1 s + 5 %), it kept
running and the gap is exact; otherwise the device restarted its clock, the timeline starts over
and the gap is estimated from host time (`gaps_estimated`). Profiles without time stamps get a
synthetic sample counter (tick = one sample), so only their packet counter (if any) shows loss.

Host times come from `streamhar.sources.clock.DeviceClock` (lower envelope of arrival − device
time, drift fitted): ticks are handed to it relative to the first frame's, to keep the numbers
small (Polar's are ns since 2000).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamhar.sources.ble.profile import Frame
from streamhar.sources.clock import DeviceClock


@dataclass
class _Stream:
    rate: float
    period: float                      # ticks per sample
    next: float | None = None          # expected ticks of the next sample (unwrapped)
    counter: int | None = None
    arrival: float | None = None
    resuming: bool = False             # the next frame is the first after a reconnect


class DeviceTimeline:
    def __init__(self, tick_hz: float | None, wrap_bits: int | None, counter_bits: int | None,
                 rates: dict[str, float]):
        self.synthetic = tick_hz is None
        self.tick_hz = float(tick_hz or next(iter(rates.values())))
        self.wrap_bits = None if self.synthetic else wrap_bits
        self.counter_mod = None if counter_bits is None else 1 << counter_bits
        self.streams = {k: _Stream(r, self.tick_hz / r) for k, r in rates.items()}
        self.clock = DeviceClock(self.tick_hz, self.wrap_bits)
        self.base: int | None = None
        self.samples = self.packets = 0
        self.packets_lost = self.samples_lost = 0
        self.gap_samples = self.last_gap_samples = 0
        self.gaps_estimated = self.overlaps = self.clock_restarts = 0

    def resume(self) -> None:
        """A reconnect happened: the next frame of each stream closes a disconnect gap."""
        for s in self.streams.values():
            s.resuming = s.next is not None
        self.last_gap_samples = 0

    def _restart_clock(self) -> None:
        self.clock.reset()
        self.base = None
        for s in self.streams.values():
            s.next = None
            s.counter = None

    def frame(self, f: Frame, arrival: float) -> tuple[np.ndarray, np.ndarray]:
        """(unwrapped device ticks [n] int64, host times [n] float64) of the frame's samples."""
        s = self.streams[f.stream]
        n = len(f)
        resumed = s.resuming   # the first frame after a reconnect: its counter may have restarted
        if self.synthetic:
            u0 = s.next if s.next is not None else 0.0
            if s.resuming and s.arrival is not None:   # no clock: the gap can only be estimated
                gap = max(0, round((arrival - s.arrival) * s.rate) - n)
                self._gap(gap, estimated=True)
                u0 += gap * s.period
                s.next, s.resuming = u0, False
        else:
            raw = int(f.device_ticks)
            u = self.clock.unwrap(raw)
            if s.resuming and s.next is not None and s.arrival is not None:
                u0 = u if f.stamp == "first" else u - (n - 1) * s.period
                dev_s, host_s = (u0 - s.next) / self.tick_hz, arrival - s.arrival
                if abs(dev_s - host_s) > 1.0 + 0.05 * host_s:
                    self.clock_restarts += 1
                    gap = max(0, round(host_s * s.rate) - n)
                    self._restart_clock()
                    u = self.clock.unwrap(raw)
                    self._gap(gap, estimated=True)
                    s.resuming = False
            u0 = u if f.stamp == "first" else u - (n - 1) * s.period
        if s.next is not None:
            gap = round((u0 - s.next) / s.period)
            if s.resuming:
                self._gap(max(gap, 0))
            elif gap > 0:
                self.samples_lost += gap
                if self.counter_mod is None or f.counter is None or s.counter is None:
                    self.packets_lost += max(1, round(gap / n))
            elif gap < 0:
                self.overlaps += 1
        if f.counter is not None and s.counter is not None and not resumed and self.counter_mod:
            missed = (f.counter - s.counter - 1) % self.counter_mod
            self.packets_lost += missed
            if self.synthetic and missed:          # no time stamps: the counter is all we have
                self.samples_lost += missed * n
                u0 += missed * n * s.period
        s.resuming = False
        s.counter, s.arrival = f.counter, arrival
        ticks = np.rint(u0 + np.arange(n) * s.period).astype(np.int64)
        s.next = u0 + n * s.period
        if self.base is None:
            self.base = int(ticks[0])
        rel = ticks - self.base
        self.clock.observe(int(rel[-1]), arrival)
        self.samples += n
        self.packets += 1
        return ticks, np.asarray(self.clock.to_host(rel), dtype=np.float64)

    def host_times(self, ticks: np.ndarray) -> np.ndarray:
        return np.asarray(self.clock.to_host(ticks - (self.base or 0)), dtype=np.float64)

    def _gap(self, gap: int, estimated: bool = False) -> None:
        self.gap_samples += gap
        self.last_gap_samples += gap
        self.gaps_estimated += estimated
