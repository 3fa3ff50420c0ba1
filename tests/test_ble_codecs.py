"""BLE protocol bytes and host bookkeeping, no radio: PMD and generic codecs both ways, the time
line (wraps, loss, last-sample stamps), stream merging and the `ble:` spec."""
from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from streamhar.errors import UsageError
from streamhar.sources.ble.emulators.base import SensorData
from streamhar.sources.ble.emulators.polar import PolarEmulator
from streamhar.sources.ble.merge import StreamMerger
from streamhar.sources.ble.profile import Frame
from streamhar.sources.ble.profiles import generic_format as fmt
from streamhar.sources.ble.profiles import polar_pmd as pmd
from streamhar.sources.ble.profiles.polar import decode_values
from streamhar.sources.ble.spec import parse_ble_spec
from streamhar.sources.ble.timeline import DeviceTimeline

G = 9.80665

# ---------------------------------------------------------------------------------- Polar PMD

# A delta frame body written by hand from the specification: reference sample x=1000, y=-2, z=5
# (int16 LE), one block of 4-bit deltas for 2 samples: (+1, −1, 0) and (−8, +7, +2), packed LSB first.
DELTA_BODY = bytes.fromhex("e803feff0500" "0402" "f18027")
DELTA_VALUES = [[1000, -2, 5], [1001, -3, 5], [993, 4, 7]]


def test_pmd_delta_frame_decodes_the_specified_bytes():
    assert pmd.decode_delta(DELTA_BODY, 3, 16).tolist() == DELTA_VALUES


def test_pmd_delta_encoder_writes_the_specified_bytes():
    assert pmd.encode_delta(np.array(DELTA_VALUES), 16) == DELTA_BODY


def test_pmd_delta_round_trips_both_ways():
    rng = np.random.default_rng(7)
    for trial in range(300):
        step = [1, 3, 120, 20000][trial % 4]
        v = np.clip(np.cumsum(rng.integers(-step, step + 1, size=(int(rng.integers(1, 40)), 3)), axis=0),
                    -32768, 32767)
        body = pmd.encode_delta(v, 16, block=int(rng.integers(1, 256)))
        assert np.array_equal(pmd.decode_delta(body, 3, 16), v)
        assert pmd.encode_delta(pmd.decode_delta(body, 3, 16), 16, block=255) == pmd.encode_delta(v, 16)


def test_pmd_delta_rejects_truncated_blocks():
    with pytest.raises(ValueError):
        pmd.decode_delta(DELTA_BODY[:-1], 3, 16)
    with pytest.raises(ValueError):
        pmd.decode_delta(DELTA_BODY[:4], 3, 16)


def test_pmd_raw_acc_frame_is_mg_with_the_last_sample_stamped():
    ts = 599_616_000_123_456_789
    frame = bytes([pmd.ACC]) + struct.pack("<Q", ts) + bytes([0x01]) + struct.pack("<6h", 1000, -20, 3, 0, 1, -1)
    f = pmd.parse_frame(frame)
    assert (f.mtype, f.timestamp_ns, f.frame_type, f.compressed) == (pmd.ACC, ts, 1, False)
    assert np.allclose(decode_values(f, 1.0), np.array([[1000, -20, 3], [0, 1, -1]]) * G / 1000, atol=1e-6)
    assert f.encode() == frame


def test_pmd_gyro_delta_frame_uses_the_factor():
    f = pmd.DataFrame(pmd.GYRO, 1, 0, True, DELTA_BODY)
    assert pmd.parse_frame(f.encode()) == f and f.encode()[9] == 0x80
    want = np.array(DELTA_VALUES) * 0.0625 * math.pi / 180
    assert np.allclose(decode_values(f, 0.0625), want, atol=1e-7)
    with pytest.raises(ValueError):                    # raw GYRO frames are not in the specification
        decode_values(pmd.DataFrame(pmd.GYRO, 1, 0, False, b"\0" * 6), 1.0)


def test_pmd_commands_and_responses():
    start = pmd.command(pmd.START, pmd.ACC, {pmd.SAMPLE_RATE: 100, pmd.RESOLUTION: 16, pmd.RANGE: 8})
    assert start == bytes.fromhex("0202" "00016400" "01011000" "02010800")
    assert pmd.parse_command(start) == (pmd.START, pmd.ACC, {pmd.SAMPLE_RATE: 100, pmd.RESOLUTION: 16, pmd.RANGE: 8})
    get = bytes.fromhex("f001020000" "0004190032006400c800" "01011000" "0203020004000800")
    r = pmd.parse_response(get)
    assert (r.op, r.mtype, r.ok, r.more) == (pmd.GET_SETTINGS, pmd.ACC, True, False)
    assert pmd.parse_settings(r.params) == {pmd.SAMPLE_RATE: [25, 50, 100, 200], pmd.RESOLUTION: [16],
                                            pmd.RANGE: [2, 4, 8]}
    assert r.encode() == get
    err = pmd.parse_response(bytes.fromhex("f0020208"))
    assert not err.ok and err.error == "ERROR_INVALID_SAMPLE_RATE"
    factor = pmd.encode_settings({pmd.FACTOR: [0.244140625]})
    assert factor == bytes([5, 1]) + struct.pack("<f", 0.244140625)
    assert pmd.parse_settings(factor) == {pmd.FACTOR: [0.244140625]}
    assert pmd.parse_features(pmd.features({pmd.ECG, pmd.ACC})) == {pmd.ECG, pmd.ACC}


def test_polar_emulator_answers_settings_byte_exactly():
    still = SensorData(100.0, {q: np.zeros((10, 3)) for q in ("acc", "gyro", "mag")}, "chest", "zeros")
    h10 = PolarEmulator(still)
    assert h10._handle(None, bytes([pmd.GET_SETTINGS, pmd.ACC])).encode() == \
        bytes.fromhex("f001020000" "0004190032006400c800" "01011000" "0203020004000800")
    assert h10._handle(None, bytes([pmd.GET_SETTINGS, pmd.GYRO])).status == 2     # no gyro on an H10
    assert h10._handle(None, bytes([pmd.GET_SETTINGS, pmd.ECG])).status == 3      # ECG not emulated
    assert h10._handle(None, bytes([9, pmd.ACC])).status == 1                    # invalid op code


# ---------------------------------------------------------------------------------- generic profile


def test_generic_packet_bytes():
    raw = np.array([[1, -1]], np.int16)
    pkt = fmt.encode_packet(0x0102, 0x0A0B0C0D, raw)
    assert pkt == bytes.fromhex("0201" "0d0c0b0a" "01" "0100" "ffff")
    seq, t, got = fmt.decode_packet(pkt, 2)
    assert (seq, t, got.tolist()) == (0x0102, 0x0A0B0C0D, [[1, -1]])
    with pytest.raises(ValueError):
        fmt.decode_packet(pkt[:-1], 2)
    with pytest.raises(ValueError):
        fmt.decode_packet(pkt, 3)


def test_generic_info_round_trip_and_errors():
    info = fmt.Info(100.0, (50.0, 100.0), 10, (("acc.x", "g", 1 / 4096), ("gyro.z", "dps", 0.0625)))
    text = info.text()
    assert text.startswith("shg/1 rate=100 rates=50,100 spp=10 ch=acc.x:g:")
    assert fmt.Info.parse(text.encode()) == info
    for bad in (b"xyz rate=1 ch=a:b:1", b"shg/1 rate=100", b"shg/1 rate=0 ch=acc.x:g:1", b"shg/1 rate=1 ch=acc.x"):
        with pytest.raises(ValueError):
            fmt.Info.parse(bad)


def test_generic_quantize_saturates_and_counts():
    q, clipped = fmt.quantize(np.array([[1.0, 1e9, -1e9]]), np.array([0.5, 1.0, 1.0]))
    assert q.tolist() == [[2, 32767, -32768]] and clipped == 2


# ---------------------------------------------------------------------------------- time line


def test_timeline_unwraps_u32_microseconds_and_counts_a_gap():
    tl = DeviceTimeline(1e6, 32, 16, {"imu": 100.0})
    t0 = 2**32 - 25_000                                   # wraps inside the third packet
    stamps = [t0 + i * 100_000 for i in (0, 1, 2, 4)]     # packet 3 (seq 3) lost
    times = []
    for seq, (i, ts) in enumerate(zip((0, 1, 2, 4), stamps)):
        f = Frame("imu", np.zeros((10, 6), np.float32), ts % 2**32, "first", i)
        ticks, host = tl.frame(f, 100.0 + i * 0.1 + 0.1)
        times.append(host)
        assert ticks[0] == t0 + i * 100_000
    assert tl.packets_lost == 1 and tl.samples_lost == 10 and tl.overlaps == 0
    host = np.concatenate(times)
    assert np.allclose(np.diff(host)[:29], 0.01) and np.isclose(host[30] - host[29], 0.11)


def test_timeline_last_sample_stamp_and_disconnect_gap():
    tl = DeviceTimeline(1e9, None, None, {"acc": 100.0})
    last = 10**17
    _, h1 = tl.frame(Frame("acc", np.zeros((20, 3), np.float32), last, "last"), 50.0)
    assert np.isclose(h1[-1], 50.0) and np.isclose(h1[0], 50.0 - 0.19)
    tl.resume()                                           # a reconnect: 150 samples never sent
    later = last + (150 + 20) * 10_000_000
    _, h2 = tl.frame(Frame("acc", np.zeros((20, 3), np.float32), later, "last"), 51.7)
    assert tl.gap_samples == tl.last_gap_samples == 150 and tl.samples_lost == 0 and tl.gaps_estimated == 0
    assert np.isclose(h2[0] - h1[-1], 1.51)


def test_timeline_detects_a_restarted_device_clock():
    tl = DeviceTimeline(1e6, 32, 16, {"imu": 100.0})
    tl.frame(Frame("imu", np.zeros((10, 6), np.float32), 900_000_000, "first", 0), 10.0)
    tl.resume()
    tl.frame(Frame("imu", np.zeros((10, 6), np.float32), 5_000, "first", 0), 12.0)   # rebooted: clock ~0
    assert tl.clock_restarts == 1 and tl.gaps_estimated == 1 and tl.gap_samples == 190


def test_merger_pairs_streams_by_device_time_and_counts_a_lost_frame():
    m = StreamMerger(["acc", "gyro"], [3, 3], period_ticks=10)
    acc = lambda i: (np.arange(i, i + 5) * 10, np.full((5, 3), 1.0))   # noqa: E731
    gyro = lambda i: (np.arange(i, i + 5) * 10 + 2, np.full((5, 3), 2.0))   # noqa: E731  (2 ticks later)
    out = [m.push("acc", *acc(0)), m.push("gyro", *gyro(1))]   # gyro starts one sample later
    out += [m.push("acc", *acc(5)), m.push("gyro", *gyro(6))]
    for i in range(10, 80, 5):                                 # the gyro frame at 11 is lost
        out.append(m.push("acc", *acc(i)))
        if i != 10:
            out.append(m.push("gyro", *gyro(i + 1)))
    ticks = np.concatenate([o[0] for o in out])
    rows = np.concatenate([o[1] for o in out])
    assert ticks[0] == 10 and np.array_equal(np.diff(ticks), np.full(len(ticks) - 1, 10))
    assert m.skipped_start == 1 and m.nan_rows == 5
    assert np.isnan(rows[:, 3]).sum() == 5 and (rows[~np.isnan(rows[:, 3]), 3] == 2).all()


# ---------------------------------------------------------------------------------- spec


def test_ble_spec_parsing():
    s = parse_ble_spec("ble:generic:F1:5B:00:01:00:C1?at=hip&rate=100&simulate=replay:usc-had:12")
    assert (s.profile, s.target, s.is_address, s.placement, s.rate, s.simulate) == \
        ("generic", "F1:5B:00:01:00:C1", True, "hip", 100.0, "replay:usc-had:12")
    s = parse_ble_spec("ble:polar:Polar H10 1A2B3C4D")
    assert s.target == "Polar H10 1A2B3C4D" and not s.is_address and s.give_up_s == 30
    for bad in ("ble:polar", "ble::x", "ble:generic:x?colour=red", "ble:generic:x?rate=-3"):
        with pytest.raises(UsageError):
            parse_ble_spec(bad).rate
