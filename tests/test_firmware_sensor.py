"""Sensor mode of the device firmware (firmware/app/device_stream.c, firmware/sensor/) in QEMU on both
boards, spoken to over the emulated UART like a real board: SENSOR describes the compiled-in
recording; SAMPLES streams it sample for sample (first_index continuous, nothing lost, across the
recording's loop point); the device-tier cascade reports every window as DEVICE_RESULT or
UNCERTAIN exactly as the numpy reference decides (ops.quantize_raw_i16 → IntegerEngine at the
narrow width → margin against the threshold), UNCERTAIN's int8 window bit for bit, and the host's
full width on those windows answers what the Python cascade answers; SET_THRESHOLD while
streaming moves the split; every request is answered while streaming; SET_STREAM 0 stops; STATS
counts; at the real rate (QEMU without -icount) samples keep the device clock's pace. On the host:
the generator's data and input stage, and the recording sensor's clock, FIFO and loop logic
compiled with a fake clock. Streams run in FAST mode on short recordings to keep this quick."""
from __future__ import annotations

import ctypes as C
import re
import subprocess
import time
from dataclasses import dataclass

import numpy as np
import pytest

from streamhar.firmware import protocol as p
from streamhar.firmware import toolchain
from streamhar.firmware.device import Device, DeviceError
from streamhar.firmware.emulated import EmulatedBoard
from streamhar.firmware.generate import load_model
from streamhar.firmware.image import build_image_with_model, build_sensor_image_with_model
from streamhar.firmware.sensor import generate_sensor
from streamhar.inference import IntegerEngine, ops
from streamhar.inference.cascade import Cascade
from streamhar.inference.host_c import FIRMWARE

BOARDS = ["stm32f4", "riscv32"]
USC = "replay:usc-had:12"
USC_SECONDS = 12                       # 1200 samples: the stream loops after 24 windows
ALL = p.StreamFlag.SAMPLES | p.StreamFlag.RESULTS | p.StreamFlag.UNCERTAIN


# ------------------------------------------------------------------ helpers

@dataclass
class Reply:
    message: object


class Session:
    """A device and everything it sent, in arrival order: stream frames, and a Reply marker
    where each request's reply fell among them."""

    def __init__(self, dev: Device):
        dev.receive(0.3)                                   # whatever an earlier test left behind
        dev.unsolicited.clear()
        self.dev, self.log = dev, []

    def request(self, call, *args):
        before = len(self.dev.unsolicited)
        out = call(*args)
        self.log += [r.message for r in self.dev.unsolicited[before:]]   # sent before the reply
        self.log.append(Reply(out))
        return out

    def pump(self, done, timeout_s: float = 60):
        """Receives until done(self.log) or the timeout (a failure)."""
        end = time.monotonic() + timeout_s
        while not done(self.log):
            assert time.monotonic() < end, f"stream stalled: {summary(self.log)}"
            self.log += [r.message for r in self.dev.receive(0.2)]

    def quiet(self, seconds: float) -> list:
        """What arrives within `seconds` (after a stop: nothing)."""
        got, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            got += [r.message for r in self.dev.receive(0.1)]
        return got


def of(log, kind) -> list:
    return [m for m in log if isinstance(m, kind)]


def windows(log) -> list:
    return [m for m in log if isinstance(m, (p.DeviceResult, p.Uncertain))]


def summary(log) -> dict:
    kinds: dict[str, int] = {}
    for m in log:
        name = type(m.message if isinstance(m, Reply) else m).__name__
        kinds[name] = kinds.get(name, 0) + 1
    return kinds


def samples_of(log) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first_index, t_first_us per frame, every sample [n, C]) of the SAMPLES frames in log."""
    frames = of(log, p.Samples)
    assert frames, summary(log)
    return (np.array([f.first_index for f in frames]), np.array([f.t_first_us for f in frames], np.int64),
            np.concatenate([f.array() for f in frames]))


@dataclass
class Reference:
    """The numpy reference of the device-tier cascade for one sensor image."""
    model: object
    image: object

    @property
    def sensor(self):
        return self.image.sensor

    def narrow(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(windows int8 [n, C, L], narrow logits, classes, margins) of windows 0 … n − 1."""
        x = self.sensor.windows(n)
        logits = IntegerEngine(self.model).run(x, self.model.widths[self.image.model.small])
        cls, margin = ops.argmax_margin(logits)
        return x, logits, cls, margin


def check_windows(ref: Reference, got: list, threshold: int) -> tuple[int, int]:
    """Every reported window equals the reference; returns (committed, uncertain)."""
    n = max(w.window_id for w in got) + 1
    x, logits, cls, margin = ref.narrow(n)
    model, img = ref.model, ref.image
    engine = IntegerEngine(model)
    full = model.widths[img.model.full]
    cascade = Cascade(engine, {w: 0 for w in model.widths}, threshold, model.widths[img.model.small], full)
    committed = uncertain = 0
    for w in got:
        k, r = w.window_id, w.result
        why = f"window {k}: {r}"
        assert (r.predicted, r.path, r.margin) == (cls[k], p.ResultPath.NARROW, margin[k]), why
        assert r.logits == tuple(logits[k].tolist()), why
        assert isinstance(w, p.Uncertain) == (margin[k] <= threshold), why
        if isinstance(w, p.Uncertain):
            uncertain += 1
            assert np.array_equal(w.array(), x[k]), why                    # bit for bit
            host = int(np.argmax(engine.run(w.array(), full)))
            assert host == cascade.process(x[k][None]).classes[0], why     # the host tier answers
        else:
            committed += 1
    return committed, uncertain


def check_t_last(ref: Reference, got: list, t0: int) -> None:
    period = 10 ** 9 // ref.sensor.rate_mhz
    for w in got:
        last = w.window_id * ref.sensor.stride + ref.sensor.window - 1
        assert w.t_last_us == (t0 + last * period) & 0xFFFF_FFFF, (w.window_id, w.t_last_us, t0)


# ------------------------------------------------------------------ the boards in QEMU

@pytest.fixture(scope="module")
def usc_model():
    return load_model("bundled:usc-had")[0]


@pytest.fixture(scope="module", params=BOARDS)
def board(request, usc_model, tmp_path_factory, data_dir):
    """A USC-HAD sensor image running in QEMU without -icount, and the reference for it."""
    name = request.param
    img = build_sensor_image_with_model(name, "bundled:usc-had", USC, tmp_path_factory.mktemp(f"sensor-{name}"),
                                        seconds=USC_SECONDS, data_dir=data_dir, model=usc_model)
    ref = Reference(usc_model, img)
    with EmulatedBoard(name, img.elf, icount=False) as emu, Device.open(emu.port, timeout_s=20) as dev:
        yield name, dev, ref
        dev.set_stream(0)
        assert emu.running, emu.stop()


def test_sensor_reports_the_compiled_recording(board):
    name, dev, ref = board
    s = dev.sensor()
    assert s.source == p.SensorSource.RECORDING and s.rate_mhz == 100_000 and s.rate_hz == 100
    assert s.stride == ref.sensor.stride == 50 and s.channels == ref.sensor.channels
    assert [c.name for c in s.channels] == ref.model.info["channels"]
    assert [c.unit for c in s.channels] == ["g"] * 3 + ["dps"] * 3
    assert np.array_equal(s.scales(), ref.sensor.scales)
    v = dev.version()
    assert (v.model_id, v.board, v.window, v.in_channels) == (ref.image.model.model_id, name, 200, 6)


def test_fast_stream_equals_the_recording_and_the_reference_cascade(board):
    name, dev, ref = board
    sensor, n_rec = ref.sensor, len(ref.sensor.samples)
    s = Session(dev)
    _, margin = ref.narrow(40)[2:]
    threshold = int(np.median(margin))                     # about half the windows each way
    assert s.request(dev.set_threshold, threshold) == threshold
    s.request(dev.stats, True)
    assert s.request(dev.set_stream, ALL | p.StreamFlag.FAST) == ALL | p.StreamFlag.FAST

    # requests are answered while streaming, among the stream frames
    s.pump(lambda log: len(windows(log)) >= 3)
    assert s.request(dev.version).model_id == ref.image.model.model_id
    assert s.request(dev.sensor).channels == sensor.channels
    x = ref.narrow(1)[0][0]
    got = s.request(dev.infer, x, p.InferMode.NARROW)
    assert got.margin == ref.narrow(1)[3][0] and got.path == p.ResultPath.NARROW
    mid = s.request(dev.stats)
    assert mid["samples_dropped"] == 0 and mid["crc_errors"] == 0

    # past the recording's end: the stream loops, numbers go on
    need = n_rec + 2 * sensor.window
    s.pump(lambda log: sum(f.n_samples for f in of(log, p.Samples)) >= need
           and max((w.window_id for w in windows(log)), default=0) * sensor.stride + sensor.window > n_rec + 100)
    assert s.request(dev.set_stream, 0) == 0
    after = s.quiet(0.5)
    assert not [m for m in after if m.TYPE >= 0x80], summary(after)       # stopped: nothing more streams
    stats = s.request(dev.stats)

    # SAMPLES: every sample of the recording, in order, none lost, through the loop point
    first, t_first, got_samples = samples_of(s.log)
    frames = of(s.log, p.Samples)
    assert first[0] == 0 and np.array_equal(first[1:], np.cumsum([f.n_samples for f in frames])[:-1])
    assert {f.n_samples for f in frames[:-1]} == {sensor.batch} and frames[0].rate_mhz == 100_000
    assert np.array_equal(got_samples, sensor.stream(0, len(got_samples))) and len(got_samples) >= need
    t0 = int(t_first[0])
    assert np.array_equal(t_first, (t0 + first * 10_000) & 0xFFFF_FFFF)    # real-rate timestamps

    # the device-tier cascade: every window once, each as the reference decides
    got = windows(s.log)
    ids = sorted(w.window_id for w in got)
    assert ids == list(range(len(ids))), ids
    committed, uncertain = check_windows(ref, got, threshold)
    assert committed >= 5 and uncertain >= 5, (committed, uncertain)
    assert any(w.window_id * sensor.stride + sensor.window > n_rec for w in got)   # straddles the loop
    check_t_last(ref, got, t0)

    # STATS: what the device counted is what arrived (the reset came before the start)
    assert stats["inferences"] == len(got) + 1 and stats["escalations"] == uncertain, stats
    assert stats["samples_dropped"] == 0 and stats["crc_errors"] == 0 and stats["seq_gaps"] == 0, stats
    assert dev.decoder.counters.seq_gaps == 0 and dev.decoder.counters.crc_errors == 0
    # after the reset's own reply: every frame logged but that reply, the two before it, and this one
    assert stats["frames_sent"] == len(s.log) - 3, (stats, summary(s.log))


def test_set_threshold_while_streaming_moves_the_split(board):
    name, dev, ref = board
    s = Session(dev)
    s.request(dev.set_stream, p.StreamFlag.RESULTS | p.StreamFlag.UNCERTAIN | p.StreamFlag.FAST)
    s.pump(lambda log: len(windows(log)) >= 2)
    s.request(dev.set_threshold, -1)                       # never escalate: no UNCERTAIN
    n = len(s.log)
    s.pump(lambda log: len(windows(log[n:])) >= 8)
    s.request(dev.set_threshold, 2 ** 40)                  # above every margin: all UNCERTAIN
    m = len(s.log)
    s.pump(lambda log: len(windows(log[m:])) >= 8)
    s.request(dev.set_stream, 0)
    never, always = windows(s.log[n:m]), windows(s.log[m:])
    assert never and all(isinstance(w, p.DeviceResult) for w in never), summary(s.log[n:m])
    assert always and all(isinstance(w, p.Uncertain) for w in always), summary(s.log[m:])
    check_windows(ref, never, -1)
    check_windows(ref, always, 2 ** 40)
    assert not of(s.log, p.Samples)                        # SAMPLES was not asked for
    dev.set_threshold(ref.image.model.threshold)


def test_samples_at_the_real_rate_keep_the_device_clock(board):
    name, dev, ref = board
    s = Session(dev)
    arrivals: list[tuple[float, p.Samples]] = []
    s.request(dev.set_stream, p.StreamFlag.SAMPLES)        # no FAST: 100 Hz of the device clock
    t_start = time.monotonic()
    while time.monotonic() - t_start < 3.0:
        for r in dev.receive(0.1):
            if isinstance(r.message, p.Samples):
                arrivals.append((time.monotonic(), r.message))
    s.request(dev.set_stream, 0)
    wall = time.monotonic() - t_start
    first = np.array([m.first_index for _, m in arrivals])
    t_first = np.array([m.t_first_us for _, m in arrivals], np.int64)
    assert first[0] == 0 and np.all(np.diff(first) == ref.sensor.batch)
    got = first[-1] + arrivals[-1][1].n_samples
    assert 0.8 * 100 * wall <= got <= 1.1 * 100 * wall, (got, wall)
    assert np.array_equal(t_first - t_first[0], first * 10_000)                 # one period per sample
    # each frame left when its last sample was measured: host arrival minus device time is flat
    lag = np.array([a for a, _ in arrivals]) - (t_first - t_first[0]) / 1e6
    assert lag.max() - lag.min() < 0.5, lag
    assert dev.stats()["samples_dropped"] == 0


# ------------------------------------------------------------------ DSADS, and the boards' limits

def test_dsads_device_tier_windows_on_stm32f4_and_riscv32_refuses_the_ram(tmp_path, data_dir):
    model = load_model("bundled:dsads")[0]
    with pytest.raises(toolchain.FirmwareBuildError, match=r"does not fit riscv32's 16 KB of RAM: sensor mode adds "
                                                           r"the device-tier window \(45 × 125 = 5,625 B int8\)"):
        build_sensor_image_with_model("riscv32", "bundled:dsads", "replay:dsads:p6/a01", tmp_path / "rv", seconds=12,
                                      data_dir=data_dir, model=model)
    img = build_sensor_image_with_model("stm32f4", "bundled:dsads", "replay:dsads:p6/a01", tmp_path / "st", seconds=12,
                                        data_dir=data_dir, model=model)
    ref = Reference(model, img)
    threshold = int(np.median(ref.narrow(6)[3]))
    with EmulatedBoard("stm32f4", img.elf, icount=False) as emu, Device.open(emu.port, timeout_s=20) as dev:
        s = Session(dev)
        assert s.request(dev.sensor).stride == 125 and len(s.log[-1].message.channels) == 45
        s.request(dev.set_threshold, threshold)
        s.request(dev.set_stream, ALL | p.StreamFlag.FAST)
        s.pump(lambda log: len(windows(log)) >= 5)
        s.request(dev.set_stream, 0)
    first, t_first, got_samples = samples_of(s.log)
    assert np.array_equal(got_samples, img.sensor.stream(0, len(got_samples)))   # 300 samples, then loops
    committed, uncertain = check_windows(ref, windows(s.log), threshold)
    assert committed and uncertain, (committed, uncertain)
    check_t_last(ref, windows(s.log), int(t_first[0]))


def test_an_image_without_a_sensor_says_so(tmp_path, usc_model):
    elf, _ = build_image_with_model("stm32f4", "bundled:usc-had", tmp_path, "device", usc_model)
    with EmulatedBoard("stm32f4", elf) as emu, Device.open(emu.port, timeout_s=20) as dev:
        assert dev.sensor() == p.SensorInfo(dev.seq - 1, 0, p.SensorSource.NONE, 0, ())
        with pytest.raises(DeviceError) as err:
            dev.set_stream(p.StreamFlag.SAMPLES)
        assert (err.value.error.code, err.value.error.detail) == (p.ErrorCode.BAD_STATE, 0)
        assert dev.stats()["samples_dropped"] == 0 and dev.version().window == 200


# ------------------------------------------------------------------ on the host: generator and sensor logic

def _compile_sensor(gen_dir, tmp_path, board_shim: str):
    shim = tmp_path / "clock.c"
    shim.write_text(board_shim)
    lib = tmp_path / "libsensor.so"
    cmd = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-DBOARD_STM32F4=1",
           f"-I{gen_dir}", f"-I{FIRMWARE / 'sensor'}", f"-I{FIRMWARE / 'boards'}", "-o", str(lib),
           str(gen_dir / "har_sensor_data.c"), str(FIRMWARE / "sensor" / "sensor_recording.c"), str(shim)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return C.CDLL(str(lib))


def test_generated_sensor_data_and_the_recording_sensor_on_the_host(usc_model, tmp_path, data_dir):
    gen = generate_sensor(usc_model, USC, tmp_path / "gen", seconds=3, data_dir=data_dir)
    text = gen.source.read_text()
    assert text.startswith("/* Generated by `streamhar firmware build --sensor` from replay:usc-had:12 (300 samples")
    assert not re.search(r"\)\s*\{", text), "generated C holds data, not functions"
    macros = dict(re.findall(r"#define (HAR_SENSOR_\w+)\s+(\w+)", gen.header.read_text()))
    assert macros["HAR_SENSOR_STRIDE"] == "50u" and macros["HAR_SENSOR_BATCH"] == "10u"
    assert macros["HAR_SENSOR_FIFO"] == "100u" and macros["HAR_SENSOR_SAMPLES"] == "300u"

    # the recording: the first 3 s of the replay, int16 within ±32767, scale covering the range
    from streamhar.firmware.sensor import load_recording
    rec = load_recording(USC, data_dir)[0]
    x = rec.samples[:300]
    assert np.allclose(gen.samples * gen.scales, x, atol=gen.scales.max())
    assert np.abs(gen.samples).max(axis=0).tolist() == [32767] * 6

    # the input stage equals the float path (IntegerEngine.quantize of raw × scale) here
    codes = gen.stage(gen.samples)
    float_path = IntegerEngine(usc_model).quantize((gen.samples * gen.scales).T)
    assert np.abs(codes.astype(int) - float_path).max() <= 1 and (codes != float_path).mean() < 0.001
    assert (gen.stage.shift >= 1).all() and (gen.stage.shift <= 62).all() and (np.abs(gen.stage.m) < 2 ** 30).all()

    # the recording sensor with a fake clock: pacing, timestamps, FIFO overrun, loop, 32-bit wrap
    lib = _compile_sensor(gen.header.parent, tmp_path, "#include <stdint.h>\nuint32_t fake_now;\n"
                                                       "uint32_t board_time_us(void) { return fake_now; }\n")
    now = C.c_uint32.in_dll(lib, "fake_now")
    sample, t_us, index = (C.c_int16 * 6)(), C.c_uint32(), C.c_uint32()

    def poll():
        if lib.har_sensor_poll(sample, C.byref(t_us), C.byref(index)):
            return index.value, t_us.value, list(sample)
        return None

    now.value = 0xFFFF_FFFF - 25_000                      # the device clock wraps 2.5 samples in
    start = now.value
    assert lib.har_sensor_start(0) == 0
    got = poll()
    assert got == (0, start, gen.samples[0].tolist()) and poll() is None
    now.value = (start + 49_999) & 0xFFFF_FFFF             # samples 1..4 are due, 5 is not yet
    got = [poll() for _ in range(5)]
    assert [g[0] for g in got[:4]] == [1, 2, 3, 4] and got[4] is None
    assert [g[1] for g in got[:4]] == [(start + k * 10_000) & 0xFFFF_FFFF for k in (1, 2, 3, 4)]
    now.value = (start + 2_000_000) & 0xFFFF_FFFF          # 2 s later: 197 due, the FIFO holds 100
    got = poll()
    assert got[0] == 101 and lib.har_sensor_dropped() == 96 and got[2] == gen.samples[101].tolist()
    while (g := poll()) is not None:
        got = g
    assert got[0] == 200
    now.value = (start + 3_500_000) & 0xFFFF_FFFF
    for _ in range(100):
        got = poll()
    assert got[0] == 350 and got[2] == gen.samples[50].tolist()      # the recording looped at 300
    lib.har_sensor_stop()
    assert poll() is None
    assert lib.har_sensor_start(1) == 0                  # FAST: every poll a sample, real-rate times
    got = [poll() for _ in range(305)]
    assert [g[0] for g in got] == list(range(305)) and got[304][2] == gen.samples[4].tolist()
    assert got[304][1] == (now.value + 304 * 10_000) & 0xFFFF_FFFF and lib.har_sensor_dropped() == 96 + 50
