"""Vendor wearable profiles: Movesense (GSP), WitMotion WT901BLECL, Nordic Thingy:52.

First the codecs against the vendors' documents (byte examples where the documents give them,
round trips, full-scale boundaries, wrong lengths), then each emulated device end to end over the
simulated BLE world (Bumble behind bleak's public API): scanned and matched to its profile,
connected, started, a few seconds of real USC-HAD / DSADS data in real time, checked value by
value against the recording within the device format's quantization with zero loss; then a few
packets are lost on purpose and the source's time line must count exactly those (from Movesense's
time stamps; from arrival timing for the two protocols that have neither time stamp nor counter);
stopped.
"""
from __future__ import annotations

import asyncio
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from streamhar.errors import UsageError
from streamhar.sources.ble.profile import STANDARD_GRAVITY, WrongProfile
from streamhar.sources.ble.profiles import movesense as gsp
from streamhar.sources.ble.profiles import thingy52 as thingy
from streamhar.sources.ble.profiles import witmotion as wit

DEG = math.pi / 180


# ================================================================================== Movesense codec


def test_movesense_commands_are_the_vendor_clients_bytes():
    # Movesense's python client: bytearray([1, 99]) + "/Meas/IMU9/104" to subscribe, [2, 99] to stop.
    assert gsp.encode_command(gsp.SUBSCRIBE, 99, gsp.imu_path("IMU9", 104).encode()) == \
        bytes([1, 99]) + b"/Meas/IMU9/104"
    assert gsp.encode_command(gsp.UNSUBSCRIBE, 99) == b"\x02\x63"
    assert gsp.encode_command(gsp.HELLO, 1) == b"\x00\x01"
    with pytest.raises(gsp.GspError, match="reference 0"):
        gsp.encode_command(gsp.HELLO, 0)
    cmd = gsp.decode_command(bytes([1, 99]) + b"/Meas/IMU6/52")
    assert (cmd.command, cmd.reference, cmd.payload) == (1, 99, b"/Meas/IMU6/52")
    with pytest.raises(gsp.GspError, match="expected ≥ 2"):
        gsp.decode_command(b"\x01")


def test_movesense_paths():
    assert gsp.parse_imu_path("/Meas/IMU9/104") == ("IMU9", 104.0)
    assert gsp.parse_imu_path("Meas/IMU6/13\x00") == ("IMU6", 13.0)
    with pytest.raises(gsp.GspError, match="expected /Meas/IMU6/<rate>"):
        gsp.parse_imu_path("/Meas/Acc/13")


def test_movesense_imu9_sizes_match_the_hardware():
    rng = np.random.default_rng(1)
    # 52 Hz: 4 samples, a 148-byte body (u32 + 36 float32), one notification.
    parts = gsp.encode_imu(99, 1000, *(rng.normal(size=(4, 3)) for _ in range(3)))
    assert [len(p) for p in parts] == [2 + 148]
    # 104 Hz: 8 samples, 292 bytes: DATA fills the firmware's 158-byte buffer, DATA_PART2 the rest.
    acc, gyro, mag = rng.normal(size=(8, 3)) * 9, rng.normal(size=(8, 3)) * 300, rng.normal(size=(8, 3)) * 40
    parts = gsp.encode_imu(99, 4321, acc, gyro, mag)
    assert [p[:2] for p in parts] == [b"\x02\x63", b"\x03\x63"] and [len(p) for p in parts] == [158, 138]
    body = parts[0][2:] + parts[1][2:]
    assert struct.unpack_from("<I", body)[0] == 4321
    # array-major: all acc triples, then all gyro, then all magn (float32 LE)
    assert np.array_equal(np.frombuffer(body, "<f4", 24, 4).reshape(8, 3), acc.astype(np.float32))
    assert np.array_equal(np.frombuffer(body, "<f4", 24, 4 + 96).reshape(8, 3), gyro.astype(np.float32))

    prof = gsp.MovesenseProfile(kind="IMU9", rate=104)
    assert prof.decode(gsp.DATA_CHAR, parts[0]) == []                 # waits for its second part
    (frame,) = prof.decode(gsp.DATA_CHAR, parts[1])
    assert frame.device_ticks == 4321 and frame.stamp == "first" and frame.samples.shape == (8, 9)
    np.testing.assert_array_equal(frame.samples[:, 0:3], acc.astype(np.float32))
    np.testing.assert_allclose(frame.samples[:, 3:6], gyro.astype(np.float32) * DEG, rtol=1e-6)
    np.testing.assert_array_equal(frame.samples[:, 6:9], mag.astype(np.float32))
    assert [c.name for c in prof.channels][:4] == ["wrist.acc.x", "wrist.acc.y", "wrist.acc.z", "wrist.gyro.x"]
    assert {c.unit for c in prof.channels} == {"m/s^2", "rad/s", "uT"}


def test_movesense_timestamp_wraps_and_bad_records_are_errors():
    (p,) = gsp.encode_imu(99, (1 << 32) + 5, np.zeros((2, 3)), np.zeros((2, 3)))
    assert struct.unpack_from("<I", p, 2)[0] == 5
    prof = gsp.MovesenseProfile(kind="IMU6", rate=104)              # 8 samples: 196-byte body, 2 parts
    parts = gsp.encode_imu(99, 7, np.ones((8, 3)), np.ones((8, 3)))
    with pytest.raises(gsp.GspError, match="DATA_PART2 without its DATA"):
        prof.decode(gsp.DATA_CHAR, parts[1])
    prof.decode(gsp.DATA_CHAR, parts[0])
    prof.decode(gsp.DATA_CHAR, parts[0])                            # the first one's part 2 was lost
    assert prof.incomplete_records == 1
    with pytest.raises(gsp.GspError, match="expected 196"):
        prof.decode(gsp.DATA_CHAR, parts[1] + b"\0")
    with pytest.raises(gsp.GspError, match="reference 7, expected 99"):
        prof.decode(gsp.DATA_CHAR, bytes([2, 7]) + parts[0][2:])
    with pytest.raises(gsp.GspError, match="notification type 9"):
        prof.decode(gsp.DATA_CHAR, b"\x09\x63")
    with pytest.raises(gsp.GspError, match="expected 4 \\+ n·24"):
        gsp.decode_imu_body(b"\0" * 27, "IMU6")
    with pytest.raises(gsp.GspError, match="does not fit DATA \\+ DATA_PART2"):
        gsp.encode_imu(99, 0, *(np.zeros((16, 3)) for _ in range(3)))   # 208 Hz IMU9
    with pytest.raises(UsageError, match="offers 13, 26, 52, 104"):
        gsp.MovesenseProfile(rate=100)


def test_movesense_hello_and_results():
    hello = gsp.Hello(1, "220330000101", "Movesense MD", "", "app", "2.3.1")
    data = gsp.encode_hello(5, hello)
    assert data[:3] == b"\x01\x05\x01" and gsp.decode_hello(data[2:]) == hello
    assert gsp.decode_hello(b"Hello").version == 0                    # the sample firmware's answer
    assert gsp.encode_result(99, 200) == b"\x01\x63\xc8\x00"
    prof = gsp.MovesenseProfile()
    assert prof.decode(gsp.DATA_CHAR, gsp.encode_result(99, 200)) == []   # results are not frames


# ================================================================================== WitMotion codec


def test_witmotion_commands_are_the_datasheets_bytes():
    assert wit.unlock() == bytes.fromhex("ffaa6988b5")
    assert wit.save() == bytes.fromhex("ffaa000000")
    assert wit.set_rate(1) == bytes.fromhex("ffaa030300")              # "FF AA 03 03 00": 1 Hz
    assert wit.set_rate(10) == bytes.fromhex("ffaa030600")            # the default
    assert wit.set_rate(50) == bytes.fromhex("ffaa030800")
    assert wit.set_rate(200) == bytes.fromhex("ffaa030b00")           # 0x0A is 125 Hz, WT931 only
    assert wit.read_register(0x3A) == bytes.fromhex("ffaa273a00")     # "Read Magnetic Field"
    with pytest.raises(wit.WitError, match="rate 25 Hz"):
        wit.set_rate(25)
    assert wit.decode_command(bytes.fromhex("ffaa030800")) == (0x03, 0x08)
    with pytest.raises(wit.WitError, match="expected 5 bytes FF AA"):
        wit.decode_command(bytes.fromhex("ffab030800"))


def test_witmotion_register_packet_of_the_datasheet():
    # WT901BLECL datasheet §6.1.2.1: "55 71 3A 00 68 01 69 00 7A 00 …" is x = 360, y = 105, z = 122.
    packet = bytes.fromhex("55713a00" "6801" "6900" "7a00") + bytes(10)
    start, regs = wit.decode_registers(packet)
    assert start == 0x3A and regs[:3] == (360, 105, 122)
    assert wit.encode_registers(0x3A, [360, 105, 122]) == packet


def test_witmotion_data_scales_and_saturation():
    words = [2048, -1024, 0, 16384, 0, -32768, -16384, 8192, 32767]      # 1 g, -0.5 g, …
    packet = b"\x55\x61" + struct.pack("<9h", *words)
    v = wit.decode_data(packet)
    np.testing.assert_allclose(v, [1, -0.5, 0, 1000, 0, -2000, -90, 45, 180 * 32767 / 32768])
    assert wit.encode_data(v[0:3], v[3:6], v[6:9]) == packet
    sat = np.frombuffer(wit.encode_data([20, -20, 16], [2500, -2500, 0], [0, 0, 0])[2:], "<i2")
    assert list(sat[:5]) == [32767, -32768, 32767, 32767, -32768]     # saturates at ±full scale
    (frame,) = wit.WitMotionProfile(rate=50).decode(wit.DATA_CHAR, packet)
    np.testing.assert_allclose(frame.samples[0], np.r_[v[0:3] * STANDARD_GRAVITY, v[3:6] * DEG], rtol=1e-6)
    assert frame.device_ticks is None                                  # no time stamp on the wire
    with pytest.raises(wit.WitError, match="expected 20 bytes starting 55 61"):
        wit.decode_data(packet[:19])


def test_witmotion_stream_parser_reassembles_and_resynchronises():
    rng = np.random.default_rng(2)
    packets = [wit.encode_data(*rng.uniform(-3, 3, (3, 3))) for _ in range(4)]
    prof = wit.WitMotionProfile(rate=50, angles=True)
    stream = b"".join(packets)
    # a packet split over two notifications, two packets in one, junk between packets
    frames = prof.decode(wit.DATA_CHAR, stream[:7]) + prof.decode(wit.DATA_CHAR, stream[7:40]) + \
        prof.decode(wit.DATA_CHAR, b"\x01\x02" + stream[40:])
    got = np.concatenate([f.samples for f in frames])
    want = np.array([wit.decode_data(p) for p in packets])
    np.testing.assert_allclose(got, np.c_[want[:, 0:3] * STANDARD_GRAVITY, want[:, 3:] * DEG], rtol=1e-6)
    assert prof.corrupt == 1 and "skipped 2 bytes" in prof.last_corrupt
    assert [c.name for c in prof.channels][-1] == "wrist.angle.z" and prof.channels[-1].unit == "rad"


# ================================================================================== Thingy:52 codec


def test_thingy_raw_capture_from_nordic_devzone():
    # A Thingy lying on a table (DevZone thread 47415): acc x, y, z = FAFF F4FF F603.
    raw = bytes.fromhex("faff" "f4ff" "f603") + bytes(12)
    v = thingy.decode_raw(raw)
    np.testing.assert_allclose(v[:3], [-6 / 1024, -12 / 1024, 1014 / 1024])   # Q6.10: ≈ (0, 0, 0.99) g
    (frame,) = thingy.Thingy52Profile(rate=25).decode(thingy.RAW_CHAR, raw)
    np.testing.assert_allclose(frame.samples[0, :3], v[:3] * STANDARD_GRAVITY, rtol=1e-6)
    with pytest.raises(thingy.ThingyError, match="17 bytes, expected 18"):
        thingy.decode_raw(raw[:17])


def test_thingy_quantization_is_the_firmwares():
    rng = np.random.default_rng(3)
    lsb = thingy.LSB
    for _ in range(200):
        v = np.r_[rng.uniform(-20, 20, 3), rng.uniform(-900, 900, 3), rng.uniform(-500, 500, 3)]
        d = thingy.decode_raw(thingy.encode_raw(v[0:3], v[3:6], v[6:9]))
        # the sensor's 16Q16 value (v to 2^-17), then truncation toward −∞: at most 1 LSB below
        assert np.all(d <= v + 2.0 ** -17) and np.all(v - d < lsb + 2.0 ** -17)
    assert thingy.decode_raw(thingy.encode_raw([0, 0, 1], [1.5, 0, 0], [10, -10.03, 0]))[7] == -10.0625
    # the firmware clamps the integer part to [−2^(b−1), 2^(b−1) − 1]
    d = thingy.decode_raw(thingy.encode_raw([40, -40, 31.5], [5000, -5000, 0], [3000, -3000, 0]))
    assert list(d) == [31, -32, 31, 1023, -1024, 0, 2047, -2048, 0]


def test_thingy_configuration():
    default = thingy.MotionConfig()
    assert default.encode() == bytes.fromhex("e803" "f401" "f401" "0a00" "01")    # m_motion.h defaults
    assert thingy.MotionConfig.decode(bytes.fromhex("e803f401f4011900" "00")).motion_freq_hz == 25
    with pytest.raises(thingy.ThingyError, match="motion_freq_hz = 300 \\(allowed 5–200\\)"):
        thingy.MotionConfig(motion_freq_hz=300).encode()
    with pytest.raises(thingy.ThingyError, match="8 bytes, expected 9"):
        thingy.MotionConfig.decode(bytes(8))
    with pytest.raises(UsageError, match="whole number of Hz in 5–200"):
        thingy.Thingy52Profile(rate=250)
    with pytest.raises(UsageError, match="whole number of Hz"):
        thingy.Thingy52Profile(rate=12.5)


# ================================================================================== loss from arrival timing


def _arrivals(rate: float, n: int, *, ci: float = 0.030, ppm: float = 0.0, seed: int = 4) -> np.ndarray:
    """When packets of a clockless sensor reach the host: sent every 1/rate (crystal off by `ppm`),
    delivered at the next connection event (every `ci` s), plus up to 3 ms of scheduling jitter."""
    rng = np.random.default_rng(seed)
    sent = np.arange(n) / rate * (1 + ppm * 1e-6)
    return np.ceil((sent + 1e-4) / ci) * ci + rng.uniform(0, 0.003, n) + 100.0


def test_arrival_counter_counts_losses_but_not_batching_bursts_or_drift():
    rate = 50.0
    t = _arrivals(rate, 1000)
    c = wit.ArrivalCounter(rate)
    assert [c.next(a) for a in t] == list(range(1000)) and c.lost == 0       # 30 ms batching: no loss
    for ppm in (-400, 400):                                                  # crystal drift, 20 s
        c = wit.ArrivalCounter(rate)
        assert [c.next(a) for a in _arrivals(rate, 1000, ppm=ppm)] == list(range(1000)) and c.lost == 0
    for a, b in ((300, 330), (300, 380)):                                    # 0.6 s and 1.6 s stalls, then bursts
        stalled = t.copy()
        stalled[a:b] = stalled[b]
        c = wit.ArrivalCounter(rate)
        assert [c.next(x) for x in stalled] == list(range(1000)) and c.lost == 0
    keep = np.r_[0:200, 203:1000]                                            # 3 packets lost
    c = wit.ArrivalCounter(rate)
    numbers = [c.next(a) for a in t[keep]]
    assert c.lost == 3 and numbers[-1] == 999
    jump = int(np.flatnonzero(np.diff(numbers) > 1)[0])                      # counted about 1 s later
    assert np.diff(numbers)[jump] == 4 and 0.9 <= t[keep][jump + 1] - t[200] <= 1.2
    c.reset()                                       # a reconnect: new history, the numbering goes on
    assert c.next(t[-1] + 5.0) == 1000 and c.lost == 3


# ================================================================================== end to end

def _recording(data_dir: Path, dataset: str, rec_id: str):
    from streamhar.datasets import get_dataset
    ds = get_dataset(dataset)
    root = ds.root(data_dir)
    (ref,) = [r for r in ds.index(root) if r.id == rec_id]
    return ds.load(root, ref)


@pytest.fixture(scope="module")
def world():
    from streamhar.sources.ble.world import BleWorld
    w = BleWorld()
    yield w
    w.close()


async def _session(world, emulator, profile, seconds: float, drop: int, after_s: float):
    """Scan, match, connect, start, stream `seconds` (then check zero loss at a quiet moment),
    lose `drop` packets on purpose and stream `after_s` more, stop. Returns the frames with their
    arrival times, the number of frames before the drop, and the emulator's stream plan."""
    from bleak import BleakClient, BleakScanner
    from streamhar.sources.ble.registry import PROFILES, load_builtin

    load_builtin()
    found = await BleakScanner.discover(timeout=0.4, return_adv=True, **world.scanner_kwargs())
    device, adv = found[emulator.address]
    matching = [name for name, cls in PROFILES.items() if cls.matches(adv.local_name, adv.service_uuids)]
    assert matching == [profile.name], (adv.local_name, adv.service_uuids, matching)

    async def all_arrived() -> int:
        """At a quiet moment between packets every sample the sensor sent has arrived."""
        for _ in range(100):
            received = sum(len(f) for _, f in frames)
            if received == emulator.sent_samples:
                break
            await asyncio.sleep(0.005)
        assert received == emulator.sent_samples
        return received

    loop = asyncio.get_running_loop()
    frames = []
    async with BleakClient(device, **world.client_kwargs()) as client:
        await profile.setup(client)
        await profile.start(client, lambda f: frames.append((loop.time(), f)))
        await asyncio.sleep(seconds)
        plan = next(iter(emulator.streams.values()))
        await all_arrived()
        assert emulator.dropped_samples == 0
        n_before = len(frames)
        emulator.drop_next(drop)
        await asyncio.sleep(after_s)
        await all_arrived()
        await profile.stop(client)
        await asyncio.sleep(0.2)
        assert not emulator.streams, "the device still streams after stop"
        n_after_stop = len(frames)
        await asyncio.sleep(0.2)
        assert len(frames) == n_after_stop
    return frames, n_before, plan


def _timeline_losses(profile, frames) -> int:
    """The samples the source's time line counts as lost in these frames."""
    from streamhar.sources.ble.timeline import DeviceTimeline
    tl = DeviceTimeline(profile.tick_hz, profile.wrap_bits, profile.counter_bits,
                        {s.key: s.rate for s in profile.streams})
    for arrival, f in frames:
        tl.frame(f, arrival)
    assert tl.samples == sum(len(f) for _, f in frames)
    return tl.samples_lost


def test_movesense_streams_dsads_imu9_at_104_hz(world, data_dir):
    from streamhar.sources.ble.emulators.movesense import MovesenseEmulator
    from streamhar.sources.clock import DeviceClock

    rec = _recording(data_dir, "dsads", "p1/a12")                       # running, torso IMU
    emu = world.add(MovesenseEmulator(rec, group="T", start=300))
    prof = gsp.MovesenseProfile(kind="IMU9", rate=104, placement="T", device=emu.name)
    frames, n_before, plan = world.run(_session(world, emu, prof, 2.5, drop=2, after_s=0.6), 30)

    assert _timeline_losses(prof, frames) == 16 == emu.dropped_samples       # 2 records of 8, by time stamp
    frames = frames[:n_before]
    assert prof.hello.serial == "220330000101" and prof.hello.version == 1
    assert prof.subscribe_status == 200
    cmds = [(c.command, c.reference, c.payload) for c in emu.commands]
    assert cmds == [(0, 0x64, b""), (1, 0x63, b"/Meas/IMU9/104"), (2, 0x63, b"")]
    n = 8
    assert len(frames) >= 2.5 * 104 / n - 3 and all(len(f) == n for _, f in frames)
    # Device time: consecutive records, the first-sample stamps are the sensor's ms clock exactly.
    ks = plan.first_k + n * np.arange(len(frames))
    assert [f.device_ticks for _, f in frames] == list(emu.ticks(ks, 104.0) % (1 << 32))
    # Values: the recording (DSADS at 25 Hz held at 104 Hz), float32 on the wire.
    got = np.concatenate([f.samples for _, f in frames])
    want = emu.data.block(("acc", "gyro", "mag"), 104.0, plan.first_k, len(got), emu.start)
    np.testing.assert_allclose(got, want, rtol=2e-7, atol=1e-6)
    assert np.abs(want[:, 6:9]).max() > 10                               # a.u. → µT really reached the wire
    # Mapped to host time: spacing from the device clock, never later than the arrival.
    clock = DeviceClock(prof.tick_hz, prof.wrap_bits)
    ticks = [clock.unwrap(f.device_ticks) for _, f in frames]
    arrivals = np.array([a for a, _ in frames])
    for t, a in zip(ticks, arrivals):
        clock.observe(t, a)
    mapped = clock.to_host(np.array(ticks))
    np.testing.assert_allclose(np.diff(mapped), n / 104, atol=1.5e-3)
    assert np.all(mapped <= arrivals + 1e-9) and np.min(arrivals - mapped) < 1e-6


def test_witmotion_streams_usc_had_at_50_hz(world, data_dir):
    from streamhar.sources.ble.emulators.witmotion import WitMotionEmulator

    rec = _recording(data_dir, "usc-had", "1/a6t1")                     # running forward, hip
    emu = world.add(WitMotionEmulator(rec, start=200))
    prof = wit.WitMotionProfile(rate=50, angles=True, placement="hip", device=emu.name)
    frames, n_before, plan = world.run(_session(world, emu, prof, 2.5, drop=3, after_s=1.6), 30)

    # no time stamp, no counter: the loss is inferred from arrival timing, about 1 s late
    assert prof.arrivals.lost == 3 == emu.dropped_samples and _timeline_losses(prof, frames) == 3
    frames = frames[:n_before]
    # unlock, rate 50 Hz, save, then the read-back of register 0x03 — the vendor SDK's order
    assert emu.commands == [(0x69, 0xB588), (0x03, 0x08), (0x00, 0), (0x27, 0x03)]
    assert emu.rate == 50 and plan.rate == 50 and all(len(f) == 1 for _, f in frames)
    assert len(frames) >= 2.5 * 50 - 5
    got = np.concatenate([f.samples for _, f in frames])
    want = emu.data.block(("acc", "gyro"), 50.0, plan.first_k, len(got), emu.start)   # every 2nd USC-HAD row
    lsb = np.r_[[wit.ACC_G * STANDARD_GRAVITY] * 3, [wit.GYRO_DPS * DEG] * 3]
    assert np.all(np.abs(got[:, :6] - want) <= lsb / 2 + 1e-5 * np.abs(want) + 1e-6)
    ax, ay, az = want[:, 0], want[:, 1], want[:, 2]                     # the emulator's tilt angles
    tilt = np.c_[np.arctan2(ay, az), np.arctan2(-ax, np.hypot(ay, az)), np.zeros(len(want))]
    np.testing.assert_allclose(got[:, 6:9], tilt, atol=wit.ANGLE_DEG * DEG)
    # No device clock: the arrival rhythm is the configured rate.
    assert np.median(np.diff([a for a, _ in frames])) == pytest.approx(1 / 50, rel=0.25)


def test_thingy52_streams_dsads_at_25_hz(world, data_dir):
    from bleak import BleakClient
    from streamhar.sources.ble.emulators.thingy52 import Thingy52Emulator

    rec = _recording(data_dir, "dsads", "p1/a12")                       # running, left leg
    emu = world.add(Thingy52Emulator(rec, group="LL", start=100))
    prof = thingy.Thingy52Profile(rate=25, placement="LL", device=emu.name)
    frames, n_before, plan = world.run(_session(world, emu, prof, 3.0, drop=2, after_s=1.6), 30)

    assert prof.arrivals.lost == 2 == emu.dropped_samples and _timeline_losses(prof, frames) == 2
    frames = frames[:n_before]

    assert emu.config == thingy.MotionConfig(motion_freq_hz=25) and prof.config == emu.config
    assert plan.rate == 25 and len(frames) >= 3.0 * 25 - 3
    got = np.concatenate([f.samples for _, f in frames]).astype(np.float64)
    want = emu.data.block(("acc", "gyro", "mag"), 25.0, plan.first_k, len(got), emu.start)   # DSADS row by row
    lsb = thingy.LSB * np.repeat([STANDARD_GRAVITY, DEG, 1.0], 3)
    diff, eps = want - got, 2.0 ** -17 * lsb / thingy.LSB + 1e-6 * np.abs(want)   # 16Q16 rounding, float32
    assert np.all(diff >= -eps) and np.all(diff < lsb + eps)             # truncation: 0 ≤ diff < 1 LSB
    assert np.median(np.diff([a for a, _ in frames])) == pytest.approx(1 / 25, rel=0.25)

    async def refused():
        async with BleakClient(emu.address, **world.client_kwargs()) as client:
            with pytest.raises(Exception, match="WRITE_NOT_PERMITTED|write not permitted|0x03"):
                await client.write_gatt_char(thingy.CONFIG_CHAR, struct.pack("<HHHHB", 1000, 500, 500, 300, 1),
                                             response=True)
            with pytest.raises(WrongProfile, match="not a 'movesense' device"):
                gsp.MovesenseProfile(device=emu.name).require_services(client)
    world.run(refused(), 30)
    assert emu.config.motion_freq_hz == 25 and len(emu.config_writes) == 2
