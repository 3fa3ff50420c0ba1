"""The serial live source (streamhar/sources/serial_source.py) over real pseudo-terminals with
pyserial: against a scripted board (frames built by protocol.encode, written into a pty) for the
exact cases — fuzzed garbage and torn frames between valid ones in random splits, every fault the
relay (streamhar/sources/serial_relay.py) injects counted exactly, unplug/replug, giving up,
stop() while reconnecting, a device reset, device-tier windows — and against the real sensor
firmware in QEMU on both boards: lossless streaming, samples equal to the compiled recording,
faults and unplug/replug through the relay, the clock drift estimate."""
from __future__ import annotations

import fcntl
import os
import struct
import termios
import threading
import time
import tty

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from streamhar.errors import StreamharError, UsageError
from streamhar.firmware import protocol as p
from streamhar.sources.chunk import Chunk
from streamhar.sources.serial_relay import SerialRelay
from streamhar.sources.serial_source import (DeviceWindow, SerialSource, SerialSourceError, channels_for,
                                             parse_serial_spec)

MASK32 = 0xFFFF_FFFF
CHANNELS = (p.SensorChannel("acc.x", "m/s^2", 0.00048828125), p.SensorChannel("acc.y", "m/s^2", 0.00048828125),
            p.SensorChannel("acc.z", "m/s^2", 0.00048828125), p.SensorChannel("gyro.x", "rad/s", 0.001),
            p.SensorChannel("gyro.y", "rad/s", 0.001), p.SensorChannel("temp", "C", 1.0))
SCALE = np.array([c.scale for c in CHANNELS], np.float32)
INV37 = pow(37, -1, 65536)


def raw(first: int, n: int, c: int = len(CHANNELS)) -> np.ndarray:
    """The scripted board's samples: a function of the running sample number, so a receiver can
    tell which samples it got (index mod 65536 = (x[:, 0] + 32768) · 37⁻¹)."""
    i = np.arange(first, first + n, dtype=np.int64)[:, None]
    return ((i * 37 + np.arange(c) * 1009) % 65536 - 32768).astype(np.int16)


def index_of(x: np.ndarray) -> np.ndarray:
    """Running sample numbers (mod 65536) of scaled samples from `raw`."""
    v = np.round(x[:, 0] / SCALE[0]).astype(np.int64)
    return (v + 32768) * INV37 % 65536


def eventually(cond, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True


def unread(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


# ------------------------------------------------------------------ a scripted board on a real pty

class FakeBoard:
    """Speaks the device side of the protocol on a pty with frames from protocol.encode: answers
    VERSION_REQ, SENSOR_REQ, SET_THRESHOLD and SET_STREAM, and (autostream) streams SAMPLES of
    `raw` at `rate_hz` and device-tier windows, stamped by a µs clock that starts near its wrap."""

    def __init__(self, rate_hz: float = 1000.0, per_frame: int = 20, sensor: bool = True, autostream: bool = True,
                 clock_start_us: int = MASK32 - 1_500_000, window: int = 40, stride: int = 20,
                 model_id: int = 0xC0FFEE01):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.rate_hz, self.per_frame, self.sensor, self.autostream = rate_hz, per_frame, sensor, autostream
        self.window, self.stride, self.model_id = window, stride, model_id
        self.rx = p.FrameDecoder("device")
        self.lock = threading.RLock()
        self.seq = self.flags = self.index = self.window_id = 0
        self.requests: list[p.MsgType] = []
        self.threshold = 100
        self.overrun = 0                       # bytes a full pty refused (a UART would lose them too)
        self._clock0, self._t0 = clock_start_us, time.monotonic()
        self._stream_t0 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now_us(self) -> float:
        return self._clock0 + (time.monotonic() - self._t0) * 1e6

    def frame(self, message) -> bytes:
        with self.lock:
            data = p.encode(message, self.seq)
            self.seq = (self.seq + 1) & 0xFFFF
            return data

    def write(self, data: bytes) -> None:
        """All of it, unless the host stops reading for 2 s (then the rest is lost, as a UART
        would lose it). A pty takes only what fits its buffers; FIONREAD = 0 on the reader's side
        does not mean they are empty (the kernel moves bytes to the reader's queue later)."""
        import select

        data, end = memoryview(data), time.monotonic() + 2.0
        with self.lock:
            while data and time.monotonic() < end:
                try:
                    data = data[os.write(self._master, data):]
                except BlockingIOError:
                    select.select([], [self._master], [], 0.05)
            self.overrun += len(data)

    def send(self, message) -> None:
        with self.lock:
            self.write(self.frame(message))

    def boot(self, clock_restarts: bool = False) -> None:
        """A reset: seq, streams and numbering (and with clock_restarts its µs clock) back to their
        start, then the unsolicited VERSION."""
        with self.lock:
            self.seq = self.flags = self.index = self.window_id = 0
            if clock_restarts:
                self._clock0, self._t0 = 123_456_789, time.monotonic()
            self.send(self._version(0, boot=True))

    def skip_window(self) -> None:
        with self.lock:
            self.window_id += 1

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(5)
        os.close(self._master)
        os.close(self._slave)

    def _version(self, ref_seq: int, boot: bool = False) -> p.Version:
        return p.Version(ref_seq, 0x000200, self.model_id, 6144, 3, len(CHANNELS), self.window, (250, 1000), 0, 1,
                         self.threshold, "fake-board", boot)

    def _serve(self, r: p.Received) -> None:
        m = r.message
        self.requests.append(m.TYPE)
        if isinstance(m, p.VersionRequest):
            self.send(self._version(r.seq))
        elif isinstance(m, p.SensorRequest):
            if not self.sensor:
                self.send(p.ErrorReport(r.seq, p.ErrorCode.BAD_STATE, m.TYPE, 0))
            else:
                self.send(p.SensorInfo(r.seq, round(self.rate_hz * 1000), 2, self.stride, CHANNELS))
        elif isinstance(m, p.SetThreshold):
            self.threshold = m.threshold
            self.send(p.Ack(r.seq, m.TYPE, m.threshold))
        elif isinstance(m, p.SetStream):
            if not self.flags and m.flags:      # streaming starts: numbering from 0
                self.index = self.window_id = 0
                self._stream_t0 = self.now_us()
            self.flags = int(m.flags)
            self.send(p.Ack(r.seq, m.TYPE, self.flags))

    def _emit(self) -> None:
        period = 1e6 / self.rate_hz
        while self.flags and self.autostream and \
                self._stream_t0 + (self.index + self.per_frame - 1) * period <= self.now_us():
            i, n = self.index, self.per_frame
            t_first = int(self._stream_t0 + i * period) & MASK32
            if self.flags & p.StreamFlag.SAMPLES:
                self.send(p.Samples.from_array(raw(i, n), t_first, i & MASK32, round(self.rate_hz * 1000)))
            self.index += n
            while self.flags & (p.StreamFlag.RESULTS | p.StreamFlag.UNCERTAIN) \
                    and self.window_id * self.stride + self.window <= self.index:
                w = self.window_id
                last = w * self.stride + self.window - 1
                t_last = int(self._stream_t0 + last * period) & MASK32
                result = p.Result(w % 3, p.ResultPath.NARROW, 1000 * w, (w, -w, 7))
                if w % 3 == 0:
                    x = (raw(last - self.window + 1, self.window, len(CHANNELS)).T >> 8).astype(np.int8)
                    self.send(p.Uncertain(w, t_last, result, len(CHANNELS), self.window, x.tobytes()))
                else:
                    self.send(p.DeviceResult(w, t_last, result))
                self.window_id += 1

    def _run(self) -> None:
        import select

        while not self._stop.is_set():
            r, _, _ = select.select([self._master], [], [], 0.002)
            with self.lock:
                if r:
                    try:
                        data = os.read(self._master, 4096)
                    except (BlockingIOError, OSError):
                        data = b""
                    for got in self.rx.feed(data):
                        self._serve(got)
                self._emit()


class Collector:
    """Runs a source's events() on a thread, as a pipeline stage would, until stop()."""

    def __init__(self, src: SerialSource):
        self.src, self.events, self.error = src, [], None
        self.stopping = False
        self.returned_at: float | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for e in self.src.events(lambda: self.stopping):
                self.events.append(e)
        except Exception as e:               # the test asserts on it
            self.error = e
        self.returned_at = time.monotonic()

    @property
    def chunks(self) -> list[Chunk]:
        return [e for e in list(self.events) if isinstance(e, Chunk)]

    def samples(self) -> int:
        return sum(len(c) for c in self.chunks)

    def wait(self, cond, timeout: float = 5.0, what: str = "") -> None:
        end = time.monotonic() + timeout
        while not cond():
            assert self.error is None, self.error
            assert time.monotonic() < end, f"timed out waiting for {what}; counters {self.src.counters()}"
            time.sleep(0.005)

    def stop(self) -> float:
        t = time.monotonic()
        self.stopping = True
        self._thread.join(5)
        assert not self._thread.is_alive(), "events() did not return after stop()"
        return self.returned_at - t


@pytest.fixture
def board():
    b = FakeBoard()
    yield b
    b.close()


def check_samples(chunks: list[Chunk], lost: int) -> int:
    """Every chunk holds `raw` samples exactly, in order; the holes between chunks add up to
    `lost`. Returns the samples received."""
    got, holes, prev = 0, 0, None
    for c in chunks:
        idx = index_of(c.samples)
        first = int(idx[0])
        want = raw(first, len(c)).astype(np.float32) * SCALE
        np.testing.assert_array_equal(c.samples, want)
        if prev is not None:
            holes += (first - prev) % 65536
        prev = (int(idx[-1]) + 1) % 65536
        got += len(c)
    assert holes == lost, (holes, lost)
    return got


# ------------------------------------------------------------------ spec and channels

def test_spec_parsing_and_its_errors():
    s = parse_serial_spec("serial:/dev/ttyACM0?baud=921600&stream=both&at=RA&threshold=-1&timeout=0.5&give_up=4&fast=1")
    assert (s.port, s.baud, s.stream, s.at, s.threshold, s.timeout_s, s.give_up_s, s.fast) == \
        ("/dev/ttyACM0", 921600, "both", "RA", -1, 0.5, 4.0, True)
    assert parse_serial_spec("serial:/tmp/x") == parse_serial_spec("serial:/tmp/x?")
    for bad, says in (("serial:", "expected serial:PORT"), ("serial:?baud=9600", "expected serial:PORT"),
                      ("serial:/dev/x?speed=9600", "unknown option 'speed=9600'"),
                      ("serial:/dev/x?baud=fast", "baud='fast': expected a positive integer"),
                      ("serial:/dev/x?stream=raw", "expected samples or cascade or both"),
                      ("serial:/dev/x?threshold=-2", "an integer ≥ -1"),
                      ("serial:/dev/x?at=right arm", "a placement name"),
                      ("serial:/dev/x?timeout=0", "a positive number of seconds"),
                      ("serial:/dev/x?fast=yes", "0 or 1")):
        with pytest.raises(UsageError, match=says.replace("?", r"\?").replace("(", r"\(")):
            parse_serial_spec(bad)


def test_channels_take_the_placement_and_keep_the_device_units():
    named = channels_for(CHANNELS, "RA")
    assert [c.name for c in named] == ["RA.acc.x", "RA.acc.y", "RA.acc.z", "RA.gyro.x", "RA.gyro.y", "temp"]
    assert [c.unit for c in named] == ["m/s^2"] * 3 + ["rad/s"] * 2 + ["C"]
    assert named[0].group == "RA" and named[0].quantity == "acc"
    assert [c.name for c in channels_for(CHANNELS, None)][:2] == ["acc.x", "acc.y"]


# ------------------------------------------------------------------ opening

def test_open_fails_clearly_for_a_missing_port_a_silent_one_and_a_board_without_sensor(tmp_path):
    with pytest.raises(SerialSourceError, match=f"cannot open {tmp_path}/ttyNone: no such port"):
        SerialSource(str(tmp_path / "ttyNone"))
    master, slave = os.openpty()               # a tty that never answers: not our protocol
    try:
        t = time.monotonic()
        with pytest.raises(SerialSourceError, match="does not speak the streamhar device protocol: no VERSION"):
            SerialSource(os.ttyname(slave), timeout_s=0.6)
        assert time.monotonic() - t < 2
    finally:
        os.close(master)
        os.close(slave)
    b = FakeBoard(sensor=False)
    try:
        with pytest.raises(SerialSourceError, match=f"the board on {b.path} has no sensor"):
            SerialSource(b.path)
    finally:
        b.close()


def test_open_handshakes_and_streams_with_the_device_rate_and_channels(board):
    with SerialSource.from_spec(f"serial:{board.path}?at=wrist&threshold=555", stream="wrist-imu") as src:
        assert (src.stream, src.rate, src.live, src.class_names) == ("wrist-imu", 1000.0, True, ())
        assert [c.name for c in src.channels][:3] == ["wrist.acc.x", "wrist.acc.y", "wrist.acc.z"]
        assert src.version.model_id == 0xC0FFEE01 and board.threshold == 555
        # Opening configures; streaming starts with the first chunks() call (no stale burst).
        assert eventually(lambda: board.requests[:3] == [p.MsgType.VERSION_REQ, p.MsgType.SENSOR_REQ,
                                                         p.MsgType.SET_THRESHOLD])
        time.sleep(0.2)
        assert p.MsgType.SET_STREAM not in board.requests and not board.flags
        got, t0 = [], time.monotonic()
        # ≥ 0.5 s and ≥ 300 samples (a loaded machine may take longer to get the stream going)
        for c in src.chunks(lambda: time.monotonic() - t0 > 0.5 and sum(map(len, got)) >= 300
                            or time.monotonic() - t0 > 10):
            got.append(c)
        assert board.requests[:4] == [p.MsgType.VERSION_REQ, p.MsgType.SENSOR_REQ, p.MsgType.SET_THRESHOLD,
                                      p.MsgType.SET_STREAM] and board.flags == p.StreamFlag.SAMPLES
        assert got[0].first_of_recording and not any(c.first_of_recording for c in got[1:])
        assert [c.seq for c in got] == list(range(len(got)))
        t = np.concatenate([c.timestamps for c in got])
        assert (np.diff(t) > 0).all() and t[-1] <= time.monotonic()
        assert abs(np.median(np.diff(t)) - 1e-3) < 1e-5             # the device's 1 kHz on the host clock
        assert check_samples(got, 0) >= 300
    assert eventually(lambda: board.flags == 0)                     # close() stopped the stream


# ------------------------------------------------------------------ fuzz: garbage never loses a frame

@pytest.fixture(scope="module")
def quiet_board_source():
    b = FakeBoard(autostream=False)
    src = SerialSource(b.path)
    col = Collector(src)
    state = {"index": 0}
    yield b, src, col, state
    col.stop()
    src.close()
    b.close()


garbage = st.one_of(st.binary(max_size=200), st.binary(min_size=1, max_size=40).map(lambda b: b.replace(b"\0", b"\1")),
                    st.integers(6200, 7000).map(lambda n: b"\x55" * n))         # overlong: past MAX_WIRE


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(parts=st.lists(st.tuples(garbage, st.integers(0, 40), st.integers(0, 3)), min_size=1, max_size=6),
       splits=st.lists(st.integers(1, 600), min_size=1, max_size=40), seed=st.integers(0, 2**32 - 1))
def test_fuzz_garbage_and_torn_frames_between_valid_frames_in_random_splits(quiet_board_source, parts, splits, seed):
    b, src, col, state = quiet_board_source
    rng = np.random.default_rng(seed)
    before, n_before = src.counters(), len(col.chunks)
    stream, want, junk = bytearray(), [], 0
    for g, n, torn in parts:
        if torn:                               # a torn frame: a strict prefix of a real one
            whole = p.encode(p.Samples.from_array(rng.integers(-2**15, 2**15, (5, len(CHANNELS)), dtype=np.int16),
                                                  0, 0, 1000), 0)
            g = g + whole[:int(rng.integers(1, len(whole) - 1))]
        stream += g
        junk += len(g) - g.count(0)
        x = rng.integers(-2**15, 2**15, (n, len(CHANNELS)), dtype=np.int16)
        stream += b.frame(p.Samples.from_array(x, int(b.now_us()) & MASK32, state["index"], 1_000_000))
        state["index"] += n
        if n:
            want.append(x)
    pos = 0
    for size in [*splits, len(stream)]:        # each piece is read before the next is written
        piece = stream[pos:pos + size]
        b.write(bytes(piece))
        pos += len(piece)
        end = time.monotonic() + 5
        while unread(b._slave) and time.monotonic() < end:
            time.sleep(0.0005)
        if pos >= len(stream):
            break
    total = sum(len(x) for x in want)
    col.wait(lambda: sum(len(c) for c in col.chunks[n_before:]) >= total
             and src.counters()["frames"] - before["frames"] >= len(parts), what="every valid frame")
    got = col.chunks[n_before:]
    if want:
        np.testing.assert_array_equal(np.concatenate([c.samples for c in got]),
                                      np.concatenate(want).astype(np.float32) * SCALE)
    after = src.counters()
    assert b.overrun == 0, b.overrun
    assert after["lost_samples"] == before["lost_samples"] and after["seq_gaps"] == before["seq_gaps"]
    assert after["garbage_bytes"] - before["garbage_bytes"] == junk
    assert after["frames"] - before["frames"] == len(parts)


# ------------------------------------------------------------------ faults through the relay

@pytest.fixture
def relayed(board, tmp_path):
    relay = SerialRelay(board.path, tmp_path / "ttyHAR0", seed=3)
    yield board, relay
    relay.close()


def test_every_injected_fault_is_counted_exactly_and_streaming_recovers(relayed):
    board, relay = relayed
    src = SerialSource(str(relay.link))
    col = Collector(src)
    try:
        col.wait(lambda: col.samples() > 100, what="streaming")
        for fault in (lambda: relay.garbage(300), relay.corrupt, relay.drop, relay.tear, lambda: relay.garbage(7000),
                      relay.corrupt, relay.drop, relay.tear, lambda: relay.garbage(1)):
            fault()
        col.wait(lambda: relay.pending_faults == 0, what="the relay to inject every fault")
        n = col.samples()
        col.wait(lambda: col.samples() > n + 100, what="streaming after the faults")
    finally:
        col.stop()
        src.close()
    c, r = src.counters(), relay.counters
    assert (r.garbage_bursts, r.corrupted, r.dropped, r.torn) == (3, 2, 2, 2)
    assert c["seq_gaps"] == r.seq_gaps == 6
    assert c["lost_samples"] == r.lost_samples == 6 * board.per_frame
    assert c["sample_gaps"] == 6
    assert c["garbage_bytes"] == r.refused_bytes
    assert c["crc_errors"] == r.refused.get("crc_errors", 0) >= 2
    assert c["overlong_frames"] == r.refused.get("overlong_frames", 0) == 1
    for k in ("cobs_errors", "short_frames", "unknown_types", "bad_payloads"):
        assert c[k] == r.refused.get(k, 0), k
    assert check_samples(col.chunks, c["lost_samples"]) == c["samples_received"]
    assert c["disconnects"] == 0 and c["device_resets"] == 0


def test_unplug_replug_reconnects_with_backoff_and_counts_the_gap(relayed):
    board, relay = relayed
    src = SerialSource(str(relay.link), give_up_s=10)
    col = Collector(src)
    try:
        col.wait(lambda: col.samples() > 100, what="streaming")
        relay.unplug()
        time.sleep(0.6)
        n = len(col.chunks)
        relay.replug()
        col.wait(lambda: len(col.chunks) > n + 10, what="streaming after the replug")
    finally:
        col.stop()
        src.close()
    c, r = src.counters(), relay.counters
    assert (c["disconnects"], c["reconnects"]) == (1, 1)
    assert 0.6 <= c["reconnect_s"] < 0.6 + 1.2, c["reconnect_s"]      # backoff ≤ 1 s after the replug
    assert c["lost_samples"] == r.lost_samples > 0.5 * board.rate_hz   # what the device streamed meanwhile
    assert c["seq_gaps"] == 0 and c["garbage_bytes"] == 0
    assert check_samples(col.chunks, c["lost_samples"]) == c["samples_received"]
    starts = [i for i, ch in enumerate(col.chunks) if ch.first_of_recording]
    assert len(starts) == 2                                          # a new recording after the outage
    assert col.chunks[starts[1]].recording_id != col.chunks[0].recording_id


def test_a_device_gone_for_good_raises_after_give_up_naming_the_port(relayed):
    board, relay = relayed
    src = SerialSource(str(relay.link), give_up_s=0.6)
    col = Collector(src)
    col.wait(lambda: col.samples() > 0, what="streaming")
    t = time.monotonic()
    relay.unplug()
    col.wait(lambda: col.returned_at is not None, what="giving up")
    assert isinstance(col.error, SerialSourceError) and isinstance(col.error, StreamharError)
    assert f"the device on {relay.link} has been gone for" in str(col.error) and "give_up = 0.6 s" in str(col.error)
    assert 0.6 <= col.returned_at - t < 2.0
    src.close()


def test_stop_returns_promptly_while_reconnecting(relayed):
    board, relay = relayed
    src = SerialSource(str(relay.link), give_up_s=30)
    col = Collector(src)
    col.wait(lambda: col.samples() > 0, what="streaming")
    relay.unplug()
    col.wait(lambda: src.counters()["disconnects"] == 1, what="the disconnect")
    time.sleep(0.3)                           # inside the backoff
    assert col.stop() <= 0.2
    src.close()


def test_a_device_reset_reconfigures_it_and_starts_a_new_recording(board):
    src = SerialSource(board.path, threshold=7)
    col = Collector(src)
    try:
        col.wait(lambda: col.samples() > 100, what="streaming")
        board.boot()                          # seq, numbering, streams back to 0: the host re-configures
        n = len(col.chunks)
        col.wait(lambda: len(col.chunks) > n + 10, what="streaming after the reset")
    finally:
        col.stop()
        src.close()
    c = src.counters()
    assert c["device_resets"] == 1 and c["seq_gaps"] == 0 and c["lost_samples"] == 0 and c["index_restarts"] == 0
    assert board.requests.count(p.MsgType.SET_THRESHOLD) == 2                 # again after the reset
    assert eventually(lambda: board.requests.count(p.MsgType.SET_STREAM) == 3)   # again, and close()'s
    assert sum(ch.first_of_recording for ch in col.chunks) == 2
    t = np.concatenate([ch.timestamps for ch in col.chunks])
    assert (np.diff(t) > 0).all()


def test_a_device_that_rebooted_while_unplugged_is_started_again_on_its_new_clock(relayed):
    board, relay = relayed
    src = SerialSource(str(relay.link), give_up_s=10)
    col = Collector(src)
    try:
        col.wait(lambda: col.samples() > 100, what="streaming")
        relay.unplug()
        board.boot(clock_restarts=True)       # its boot VERSION goes into the pulled cable
        relay.replug()
        col.wait(lambda: src.counters()["reconnects"] == 1, what="the reconnect")
        n = len(col.chunks)
        col.wait(lambda: len(col.chunks) > n + 10, what="streaming after the reconnect")
    finally:
        col.stop()
        src.close()
    c = src.counters()
    assert (c["device_resets"], c["disconnects"], c["reconnects"], c["seq_gaps"]) == (1, 1, 1, 0)
    assert board.requests.count(p.MsgType.SET_STREAM) >= 2             # streaming started again
    starts = [i for i, ch in enumerate(col.chunks) if ch.first_of_recording]
    assert len(starts) == 2 and index_of(col.chunks[starts[1]].samples)[0] == 0
    t = np.concatenate([ch.timestamps for ch in col.chunks])
    assert (np.diff(t) > 0).all() and t[-1] <= time.monotonic() and t[-1] > time.monotonic() - 1


def test_another_device_behind_the_port_after_a_reconnect_is_refused(tmp_path):
    first, second = FakeBoard(), FakeBoard(model_id=0xBADC0DE5)
    link = tmp_path / "ttyACM-har"
    link.symlink_to(first.path)
    src = SerialSource(str(link), give_up_s=5)
    col = Collector(src)
    try:
        col.wait(lambda: col.samples() > 0, what="streaming")
        tmp = tmp_path / "next"
        tmp.symlink_to(second.path)
        os.replace(tmp, link)                 # udev gives the name to another board …
        first.close()                         # … as the first one is pulled out
        col.wait(lambda: col.returned_at is not None, what="the refusal")
    finally:
        col.stop()
        src.close()
        first.close()
        second.close()
    assert isinstance(col.error, SerialSourceError)
    assert f"after reconnecting, {link} runs model 0xbadc0de5; expected 0xc0ffee01" in str(col.error)


def test_device_windows_arrive_in_order_with_host_times_and_gaps_counted(board):
    seen: list[DeviceWindow] = []
    src = SerialSource(board.path, mode="both", on_window=seen.append)
    got, t0, skipped = [], time.monotonic(), False
    for c in src.chunks(lambda: time.monotonic() - t0 > 0.4):
        got.append(c)
        if len(seen) >= 5 and not skipped:
            board.skip_window()
            skipped = True
    src.close()
    c = src.counters()
    ids = [w.window_id for w in seen]
    assert c["window_gaps"] == 1 and c["windows_lost"] == 1 and len(ids) == len(set(ids)) == ids[-1]
    assert c["uncertain_windows"] + c["device_results"] == len(seen) > 10
    for w in seen:
        assert w.uncertain == (w.window_id % 3 == 0) and w.result.predicted == w.window_id % 3
        if w.uncertain:
            last = w.window_id * board.stride + board.window - 1
            want = (raw(last - board.window + 1, board.window).T >> 8).astype(np.int8)
            np.testing.assert_array_equal(w.samples, want)
    # A window's time is its last sample's, mapped by the same clock (whose offset estimate can
    # improve between the two frames' arrivals: a loaded host delays some arrivals).
    t = np.concatenate([ch.timestamps for ch in got])
    last = np.array([w.window_id * board.stride + board.window - 1 for w in seen])
    err = np.array([t[i] - w.t_last for i, w in zip(last, seen) if i < len(t)])
    assert len(err) > 10 and np.abs(err).max() < 0.1, err
    assert (np.diff([w.t_last for w in seen]) > 0).all()


# ------------------------------------------------------------------ the real sensor firmware in QEMU

QEMU_BOARDS = ["stm32f4", "riscv32"]
USC = "replay:usc-had:12"                 # 12 s compiled in: 1200 samples, then the sensor loops


@pytest.fixture(scope="module")
def sensor_images(tmp_path_factory, data_dir):
    """Both boards' sensor images, cross-built side by side (the compiler is most of the cost)."""
    from concurrent.futures import ThreadPoolExecutor

    from streamhar.firmware.image import build_sensor_image_with_model

    def build(board):
        return build_sensor_image_with_model(board, "bundled:usc-had", USC, tmp_path_factory.mktemp(board),
                                             seconds=12, data_dir=data_dir)

    with ThreadPoolExecutor(len(QEMU_BOARDS)) as pool:
        return dict(zip(QEMU_BOARDS, pool.map(build, QEMU_BOARDS)))


@pytest.fixture(params=QEMU_BOARDS)
def sensor_image(request, sensor_images):
    return request.param, sensor_images[request.param]


def recording_at(img, chunk: Chunk) -> int:
    """Where in the compiled recording (sample number mod its length) a chunk's samples are."""
    rec = img.sensor.samples
    scale = np.array([c.scale for c in img.sensor.channels], np.float32)
    idx = (np.arange(len(rec))[:, None] + np.arange(len(chunk))[None, :]) % len(rec)
    hits = np.flatnonzero((rec[idx].astype(np.float32) * scale == chunk.samples[None]).all(axis=(1, 2)))
    assert len(hits) == 1, f"chunk {chunk.seq} found at {hits} in the recording"
    return int(hits[0])


def test_qemu_board_streams_the_compiled_recording_losslessly_with_its_windows(sensor_image):
    from streamhar.firmware.emulated import EmulatedBoard

    board, img = sensor_image
    windows: list[DeviceWindow] = []
    with EmulatedBoard(board, img.elf, icount=False) as emu:
        src = SerialSource(emu.port, mode="both", fast=True, at="wrist", on_window=windows.append)
        got, t0 = [], time.monotonic()
        for c in src.chunks(lambda: time.monotonic() - t0 > 2.0 and sum(map(len, got)) > 1300):
            got.append(c)
            assert time.monotonic() - t0 < 20, src.counters()
        src.close()
    c = src.counters()
    assert src.rate == img.sensor.rate_hz == 100.0
    assert [ch.name for ch in src.channels] == [f"wrist.{q}.{a}" for q in ("acc", "gyro") for a in "xyz"]
    assert [ch.unit for ch in src.channels] == [ch.unit for ch in img.sensor.channels]
    for k in ("lost_samples", "seq_gaps", "crc_errors", "cobs_errors", "short_frames", "overlong_frames",
              "unknown_types", "bad_payloads", "garbage_bytes", "windows_lost", "disconnects", "device_resets"):
        assert c[k] == 0, (k, c)
    x = np.concatenate([ch.samples for ch in got])            # every sample, across the loop point
    rec = img.sensor.samples
    want = rec[np.arange(len(x)) % len(rec)].astype(np.float32) * np.array([ch.scale for ch in img.sensor.channels],
                                                                           np.float32)
    np.testing.assert_array_equal(x, want)
    t = np.concatenate([ch.timestamps for ch in got])
    np.testing.assert_allclose(np.diff(t), 0.01, atol=2e-6)    # FAST: the device's own 100 Hz stamps
    assert [w.window_id for w in windows] == list(range(len(windows))) and len(windows) >= 20
    assert c["device_results"] + c["uncertain_windows"] == len(windows)
    ref = img.sensor.windows(len(windows))
    for w in windows:
        if w.uncertain:
            np.testing.assert_array_equal(w.samples, ref[w.window_id])


def test_qemu_board_faults_and_unplug_through_the_relay_are_counted_and_recovered(sensor_image, tmp_path):
    from streamhar.firmware.emulated import EmulatedBoard

    board, img = sensor_image
    with EmulatedBoard(board, img.elf, icount=False) as emu, \
            SerialRelay(emu.port, tmp_path / "usb-streamhar-if00", seed=11) as relay:
        # The real rate: 100 Hz, 10 samples a frame. The drift fit starts after 5 s of device time
        # (its default waits 30 s, too long for a test).
        src = SerialSource(str(relay.link), give_up_s=10, clock_span_s=5.0)
        col = Collector(src)
        t0 = time.monotonic()
        try:
            col.wait(lambda: col.samples() >= 50, what="streaming")
            for fault in (lambda: relay.garbage(300), relay.corrupt, relay.drop, relay.tear,
                          lambda: relay.garbage(7000), relay.corrupt, relay.drop, relay.tear):
                fault()
            col.wait(lambda: relay.pending_faults == 0, timeout=10, what="the relay to inject every fault")
            n = col.samples()
            col.wait(lambda: col.samples() >= n + 30, what="streaming after the faults")
            relay.unplug()
            time.sleep(0.5)
            relay.replug()
            col.wait(lambda: src.counters()["reconnects"] == 1, what="the reconnect")
            # The drift fit needs 5 s of lower-envelope points; on 2 busy cores its noise is
            # ±700 ppm after 7 s of streaming, ±300 ppm after 10 s.
            col.wait(lambda: time.monotonic() - t0 > 9.5, timeout=15, what="9.5 s of streaming")
        finally:
            col.stop()
            src.close()
    c, r = src.counters(), relay.counters
    assert (r.garbage_bursts, r.corrupted, r.dropped, r.torn, r.unplugs, r.replugs) == (2, 2, 2, 2, 1, 1)
    assert c["seq_gaps"] == r.seq_gaps == 6
    assert c["garbage_bytes"] == r.refused_bytes
    for k in ("crc_errors", "cobs_errors", "short_frames", "overlong_frames", "unknown_types", "bad_payloads"):
        assert c[k] == r.refused.get(k, 0), (k, c, r)
    assert c["crc_errors"] >= 2 and c["overlong_frames"] == 1
    assert (c["disconnects"], c["reconnects"], c["device_resets"], c["index_restarts"]) == (1, 1, 0, 0)
    assert c["reconnect_s"] < 0.5 + 1.5
    assert c["lost_samples"] == r.lost_samples > 6 * 10          # 6 damaged frames and the outage
    # every sample received is the recording's, and the holes between chunks are the lost ones
    rec_len = len(img.sensor.samples)
    at = [recording_at(img, ch) for ch in col.chunks]
    holes = sum((b - (a + len(ch))) % rec_len for a, b, ch in zip(at, at[1:], col.chunks))
    assert at[0] == 0 and holes == c["lost_samples"]
    assert sum(ch.first_of_recording for ch in col.chunks) == 2  # a new recording after the outage
    t = np.concatenate([ch.timestamps for ch in col.chunks])
    assert (np.diff(t) > 0).all() and t[-1] <= time.monotonic()
    assert abs(c["drift_ppm"]) < 1000 and c["drift_ppm"] != 0, c["drift_ppm"]
