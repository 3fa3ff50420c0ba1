"""Pacing a stream to the wall clock, at a chosen multiple of real time.

The schedule is absolute (release time = start + stream time / speed), so sleep overshoot never
accumulates: a late chunk is released at once and the next one is back on schedule.
"""
from __future__ import annotations

import time
from typing import Callable


class Pacer:
    def __init__(self, speed: float | None, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep):
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive or None (unpaced), got {speed}")
        self.speed = speed
        self.clock = clock
        self.sleep = sleep
        self._start_wall: float | None = None
        self._start_stream = 0.0
        self.max_lag = 0.0     # worst lateness seen, in wall seconds

    def wait_until(self, stream_time: float) -> None:
        """Block until `stream_time` (seconds) is due; returns at once when unpaced."""
        if self.speed is None:
            return
        now = self.clock()
        if self._start_wall is None:
            self._start_wall, self._start_stream = now, stream_time
            return
        due = self._start_wall + (stream_time - self._start_stream) / self.speed
        if due > now:
            self.sleep(due - now)
        else:
            self.max_lag = max(self.max_lag, now - due)
