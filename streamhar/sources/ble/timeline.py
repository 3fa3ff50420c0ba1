"""A device's time line: frames → per-sample device ticks → host time, with every loss counted.

For each stream (rate known) the timeline expects the next sample at `next` ticks; a frame whose
first sample comes later reveals a gap of round(Δ / period) samples. Gaps between packets are
radio losses (`samples_lost`; `packets_lost` from the packet counter where the protocol has one,
else gap / frame size); the gap across a disconnect is reported apart (`gap_samples`) after a
plausibility check: if the device's clock moved by as much as the host's (±1 s + 5 %), it kept
running and the gap is exact; otherwise the device restarted its clock, the timeline starts over
and the gap is estimated from host time (`gaps_estimated`). Profiles without time stamps get a
synthetic sample counter (tick = one sample), so only their packet counter (if any) shows loss.
Profiles with neither (WitMotion, Thingy:52) number their packets with `ArrivalCounter` below,
which infers losses from arrival timing, and declare that number as a 32-bit packet counter.

Host times come from `streamhar.sources.clock.DeviceClock` (lower envelope of arrival − device
time, drift fitted): ticks are handed to it relative to the first frame's, to keep the numbers
small (Polar's are ns since 2000).
"""
from __future__ import annotations

from collections import deque
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


# ---------------------------------------------------------------------------------- loss from arrival timing
# Here, beside the synthetic sample counter, because it is the same problem one step further:
# profiles without device time *and* without a packet counter (WitMotion, Thingy:52) all need it.
# A profile runs it in `decode` and hands its number to `frame` as `Frame.counter` (declaring
# `counter_bits = 32`). It is not DeviceTimeline's own answer for `tick_hz = None` because a
# clockless protocol may still send a real packet counter, which must win over arrival guesses.


class ArrivalCounter:
    """Packet numbers from arrival times, for protocols with neither time stamp nor counter.

    Packet i of a stream at `rate` arrives at base + i/rate + delay, the delay never negative but
    varying: connection events batch notifications, the host schedules late. Numbered
    consecutively, packets keep `arrival − number/rate` (their residual) on a lower envelope; a
    lost packet lifts every later residual by one period for good, while batching, jitter or a
    stall followed by a burst leave packets on the envelope. So the smallest residual of the last
    `window_s` is watched, once arrivals span that window: when it has risen by ≥ 0.7 period, that
    many packets (rounded) were lost and the numbering jumps ahead (the jump is what the time line
    counts as loss). A slow rise is crystal drift and moves the envelope (up to `drift_ppm`).

    Caveats, inherent to the wire: a loss is seen `window_s` after it happened, and a delay that
    grows for good by a period or more (a link that stays slower) reads as a loss.
    """

    def __init__(self, rate: float, window_s: float = 1.0, drift_ppm: float = 500.0):
        self.period, self.window_s, self.drift = 1.0 / rate, window_s, drift_ppm * 1e-6
        self.number = -1
        self.lost = 0                               # packets counted as lost, over all connections
        self.reset()

    def reset(self) -> None:
        """Forget the arrival history (after a reconnect). The numbering goes on where it was: a
        packet counter that never runs backwards is what the time line expects (it estimates the
        gap across a reconnect itself, from host time)."""
        self.base: float | None = None              # lower envelope of the residuals
        self.since: float | None = None             # arrival at which `base` was last checked
        self.recent: deque[tuple[float, float]] = deque()

    def next(self, arrival: float) -> int:
        self.number += 1
        r = arrival - self.number * self.period
        self.recent.append((arrival, r))
        while self.recent[0][0] < arrival - self.window_s:
            self.recent.popleft()
        if self.base is None or r < self.base:
            self.base = r
        if self.since is None:
            self.since = arrival
        elif arrival - self.recent[0][0] >= 0.9 * self.window_s:
            # Arrivals span the window (after a long stall the burst alone proves nothing: its
            # last packets are on time, and the ones after it will show that).
            rise = min(x for _, x in self.recent) - self.base
            if rise >= 0.7 * self.period:
                m = round(rise / self.period)
                self.number += m
                self.lost += m
                self.recent = deque((a, x - m * self.period) for a, x in self.recent)
            elif rise > 0:                           # drift: let the envelope follow, slowly
                self.base += min(rise, self.drift * (arrival - self.since))
            self.since = arrival
        return self.number
