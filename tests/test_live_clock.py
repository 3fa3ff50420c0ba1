"""Device time → host time (sources/clock.py) and the live chunk maker (sources/live.py)."""
from __future__ import annotations

import numpy as np
import pytest

from streamhar.sources.clock import DeviceClock
from streamhar.sources.live import ChunkMaker


def simulate(clock, drift_ppm, seconds, period_s=0.02, delay_s=0.002, jitter_s=0.004, wrap=None, seed=0):
    """A device whose counter runs `drift_ppm` slow/fast against the host; frames arrive after a
    fixed delay plus random jitter. Returns the true host times of the frames' device stamps."""
    rng = np.random.default_rng(seed)
    true = []
    for k in range(int(seconds / period_s)):
        d_s = k * period_s
        ticks = round(d_s * clock.tick_hz)
        host = 1000.0 + d_s * (1 + drift_ppm * 1e-6)
        true.append(host)
        raw = ticks % wrap if wrap else ticks
        clock.observe(clock.unwrap(raw), host + delay_s + rng.exponential(jitter_s))
    return np.array(true)


@pytest.mark.parametrize("drift_ppm", [-200.0, 0.0, 80.0])
def test_drift_and_offset_follow_the_lower_envelope(drift_ppm):
    clock = DeviceClock(1e6)
    true = simulate(clock, drift_ppm, 120)
    assert abs(clock.drift_ppm - drift_ppm) < 10
    # Mapped times sit within the fixed transit delay (+ a little) of the truth, never after arrival.
    last_ticks = round((len(true) - 1) * 0.02 * 1e6)
    err = clock.to_host(last_ticks) - true[-1]
    assert 0.0 <= err < 0.0035


def test_unwrap_across_a_u32_microsecond_wrap():
    clock = DeviceClock(1e6, wrap_bits=32)
    start = (1 << 32) - 3_000_000          # 3 s before the counter wraps
    ticks = [(start + k * 500_000) % (1 << 32) for k in range(12)]
    unwrapped = [clock.unwrap(t) for t in ticks]
    assert np.all(np.diff(unwrapped) == 500_000)
    assert unwrapped[-1] > 1 << 32


def test_no_wrap_for_64_bit_counters_and_reset_forgets():
    clock = DeviceClock(1e9, wrap_bits=None)
    assert clock.unwrap(1 << 40) == 1 << 40
    clock.observe(1 << 40, 50.0)
    assert clock.to_host(1 << 40) == pytest.approx(50.0)
    clock.reset()
    with pytest.raises(RuntimeError):
        clock.to_host(0)


def test_chunk_maker_numbers_sessions_and_keeps_time_increasing():
    mk = ChunkMaker("ble:x", 2)
    a = mk.make(np.array([1.0, 1.01]), np.zeros((2, 2)))
    b = mk.make(np.array([1.005, 1.03]), np.ones((2, 2)))    # a clock re-estimate moved time back
    assert a.first_of_recording and not b.first_of_recording and (a.seq, b.seq) == (0, 1)
    assert b.timestamps[0] > a.timestamps[-1] and np.all(np.diff(b.timestamps) > 0)
    assert mk.clock_steps == 1 and (b.labels == -1).all()
    mk.restart()
    c = mk.make(np.array([2.0]), np.ones((1, 2)))
    assert c.first_of_recording and c.recording_id != a.recording_id and c.seq == 2
    with pytest.raises(ValueError, match=r"expected \[n, 2\]"):
        mk.make(np.array([3.0]), np.ones((1, 3)))
