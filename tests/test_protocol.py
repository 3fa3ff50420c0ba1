"""The UART device protocol (docs/PROTOCOL.md): the Python implementation
(streamhar/firmware/protocol.py) round-trips every message, survives garbage, torn, corrupted and
overlong frames without losing the valid frames that follow, and counts each refusal; the C
implementation (firmware/protocol/har_proto.c, compiled here with gcc through
tests/protocol_c/driver.c) decodes every byte stream to the same messages, errors and counters,
and builds byte-identical frames. The C file also builds freestanding with no libc call."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from streamhar.errors import StreamharError
from streamhar.firmware.protocol import (
    MAX_PAYLOAD, MAX_WIRE, PROTOCOL_VERSION, STATS_COUNTERS, Ack, DeviceResult, ErrorCode, ErrorReport,
    FrameDecoder, InferMode, InferRequest, InferResult, MsgType, ProtocolError, Received, Result, ResultPath,
    Samples, SensorChannel, SensorInfo, SensorRequest, SensorSource, SetStream, SetThreshold, Stats, StatsRequest,
    StreamFlag, Uncertain, Version, VersionRequest, check_payload, cobs_decode, cobs_encode, crc16, decode_frame,
    encode)

REPO = Path(__file__).resolve().parents[1]
PROTO_DIR = REPO / "firmware" / "protocol"
DRIVER_SRC = REPO / "tests" / "protocol_c" / "driver.c"
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
ROLES = {"device": 0, "host": 1, "any": 2}


# ------------------------------------------------------------------ messages to test with

def raw_frame(type_: int, seq: int, payload: bytes, crc_delta: int = 0) -> bytes:
    """A frame with any type and payload (no validation); crc_delta spoils the CRC."""
    body = struct.pack("<BH", type_, seq) + payload
    return b"\0" + cobs_encode(body + struct.pack("<H", crc16(body) ^ crc_delta)) + b"\0"


def examples() -> list:
    """Every message type at least once, at the sizes the firmware sees (a DSADS window)."""
    rng = np.random.default_rng(6)
    window = rng.integers(-128, 128, (45, 125), dtype=np.int8)
    window[:, 60:70] = 0                                     # runs of 0x00: short COBS runs
    logits = tuple(int(v) for v in rng.integers(-2**31, 2**31, 19))
    result = Result(int(np.argmax(logits)), ResultPath.ESCALATED, 121082, logits, cycles=9_876_543, instructions=None)
    return [
        VersionRequest(),
        InferRequest.from_array(window, InferMode.CASCADE, model_id=0xDEADBEEF),
        InferRequest.from_array(rng.integers(-128, 128, (6, 200), dtype=np.int8), InferMode.FULL),   # any model
        SetThreshold(121082), SetThreshold(-1),
        StatsRequest(reset=True),
        SetStream(StreamFlag.SAMPLES | StreamFlag.UNCERTAIN),
        SetStream(StreamFlag.RESULTS | StreamFlag.FAST),
        SensorRequest(),
        SensorInfo(5, 25_000, SensorSource.RECORDING, 125,                 # DSADS: 45 channels
                   tuple(SensorChannel(f"{g}.{q}.{a}", u, float(rng.uniform(1e-5, 1e-2)))
                         for g in ("T", "RA", "LA", "RL", "LL") for q, u in (("acc", "m/s^2"), ("gyro", "rad/s"),
                                                                            ("mag", "a.u.")) for a in "xyz")),
        SensorInfo(6, 0, SensorSource.NONE, 0),                            # a board without a sensor
        Version(ref_seq=4, firmware=0x000102, model_id=0xDEADBEEF, max_payload=MAX_PAYLOAD, n_classes=19,
                in_channels=45, window=125, widths=(250, 500, 1000), small=0, full=2, threshold=121082,
                board="stm32f4-netduinoplus2", boot=True),
        InferResult(7, result),
        InferResult(8, Result(0, ResultPath.NARROW, 0, (5, 5), cycles=None, instructions=2**64 - 1)),
        Ack(9, MsgType.SET_THRESHOLD, -1),
        Stats(10, tuple(range(1, len(STATS_COUNTERS) + 1))),
        ErrorReport(11, ErrorCode.CRC, MsgType.INFER_REQ, 0x1234ABCD),
        Samples.from_array(rng.integers(-2**15, 2**15, (25, 6), dtype=np.int16), 123_456, 50_000, 25_000),
        Uncertain(12, 5_000_000, result, 45, 125, window.tobytes()),
        DeviceResult(13, 5_040_000, Result(2, ResultPath.NARROW, 400_000, logits[:12])),
    ]


EXAMPLES = examples()

u8, u16, u32 = st.integers(0, 0xFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF_FFFF)
i32, i64, u64 = st.integers(-2**31, 2**31 - 1), st.integers(-2**63, 2**63 - 1), st.integers(0, 2**64 - 1)


@st.composite
def results(draw):
    logits = draw(st.lists(i32, min_size=1, max_size=20))
    return Result(draw(st.integers(0, len(logits) - 1)), draw(st.sampled_from(ResultPath)), draw(i64),
                  tuple(logits), draw(st.none() | u64), draw(st.none() | u64))


@st.composite
def int8_windows(draw):
    c, l = draw(st.integers(0, 12)), draw(st.integers(0, 40))
    return c, l, draw(st.binary(min_size=c * l, max_size=c * l))


@st.composite
def versions(draw):
    return Version(draw(u16), draw(u32), draw(u32), draw(u16), draw(u8), draw(u16), draw(u16),
                   tuple(draw(st.lists(u16, max_size=8))), draw(u8), draw(u8), draw(i64),
                   draw(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=32)),
                   draw(st.booleans()), draw(u8))


text = lambda n: st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=n)
scales = st.floats(width=32, allow_nan=False, allow_infinity=False)


@st.composite
def sensor_infos(draw):
    channels = draw(st.lists(st.builds(SensorChannel, text(16), text(8), scales), max_size=8))
    return SensorInfo(draw(u16), draw(u32), draw(st.sampled_from(SensorSource)), draw(u16), tuple(channels))


@st.composite
def samples(draw):
    c, n = draw(st.integers(0, 8)), draw(st.integers(0, 30))
    return Samples(draw(u32), draw(u32), draw(u32), c, n, draw(st.binary(min_size=2 * c * n, max_size=2 * c * n)))


messages = st.one_of(
    st.just(VersionRequest()),
    st.builds(lambda m, w, i: InferRequest(m, *w, model_id=i), st.sampled_from(InferMode), int8_windows(),
              st.one_of(st.just(0), u32)),
    st.builds(SetThreshold, i64),
    st.builds(StatsRequest, st.booleans()),
    st.builds(SetStream, st.integers(0, 15)),
    st.just(SensorRequest()),
    sensor_infos(),
    versions(),
    st.builds(InferResult, u16, results()),
    st.builds(Ack, u16, u8, i64),
    st.builds(Stats, u16, st.lists(u32, max_size=32).map(tuple)),
    st.builds(ErrorReport, u16, u8, u8, u32),
    samples(),
    st.builds(lambda i, t, r, w: Uncertain(i, t, r, *w), u32, u32, results(), int8_windows()),
    st.builds(DeviceResult, u32, u32, results()),
)


def flat(m) -> list[int]:
    """A message as tests/protocol_c/driver.c prints and reads it: fields in layout order,
    arrays as their length then their items."""
    def result(r: Result) -> list[int]:
        n = len(r.logits)
        return [r.predicted, r.path, n, r.have, r.margin, r.cycles or 0, r.instructions or 0, n, *r.logits]

    def i8s(data: bytes) -> list[int]:
        return [len(data), *np.frombuffer(data, np.int8).tolist()]

    match m:
        case VersionRequest() | SensorRequest():
            return []
        case SensorInfo():
            out = [m.ref_seq, m.rate_mhz, m.source, m.stride, len(m.channels)]
            for c in m.channels:
                out += [c.scale_bits, len(c.name), *c.name.encode(), len(c.unit), *c.unit.encode()]
            return out
        case InferRequest():
            return [m.mode, m.in_channels, m.window, m.model_id, *i8s(m.samples)]
        case SetThreshold():
            return [m.threshold]
        case StatsRequest():
            return [int(m.reset)]
        case SetStream():
            return [m.flags]
        case Version():
            return [m.ref_seq, int(m.boot), m.protocol, m.firmware, m.model_id, m.max_payload, m.n_classes,
                    m.in_channels, m.window, m.small, m.full, m.threshold, len(m.widths), *m.widths,
                    len(m.board), *m.board.encode()]
        case InferResult():
            return [m.ref_seq, *result(m.result)]
        case Ack():
            return [m.ref_seq, m.ref_type, m.value]
        case Stats():
            return [m.ref_seq, len(m.values), *m.values]
        case ErrorReport():
            return [m.ref_seq, m.code, m.ref_type, m.detail]
        case Samples():
            return [m.t_first_us, m.first_index, m.rate_mhz, m.channels, m.n_samples,
                    m.channels * m.n_samples, *np.frombuffer(m.samples, "<i2").tolist()]
        case Uncertain():
            return [m.window_id, m.t_last_us, *result(m.result), m.in_channels, m.window, *i8s(m.samples)]
        case DeviceResult():
            return [m.window_id, m.t_last_us, *result(m.result)]
    raise AssertionError(m)


def event_lines(events: list, counters) -> list[list[int | str]]:
    """Python's events in the driver's line format."""
    lines = []
    for e in events:
        if isinstance(e, Received):
            lines.append(["M", int(e.message.TYPE), e.seq, *map(int, flat(e.message))])
        else:
            lines.append(["E", int(e.code), e.ref_type, e.ref_seq, e.detail])
    return lines + [["C", *counters.as_tuple()]]


# ------------------------------------------------------------------ CRC and COBS

def test_crc16_ccitt_false_check_value():
    assert crc16(b"123456789") == 0x29B1                   # the catalogue's check value
    assert crc16(b"") == 0xFFFF
    assert crc16(b"6789", crc16(b"12345")) == 0x29B1       # continues across calls


@pytest.mark.parametrize("data, encoded", [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255)) + b"\x01"),        # full run: Cheshire & Baker form
    (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255)) + b"\x01"),
    (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
])
def test_cobs_vectors(data, encoded):
    assert cobs_encode(data) == encoded
    assert cobs_decode(encoded) == data


def test_cobs_decode_accepts_a_full_final_run_without_its_trailing_code():
    assert cobs_decode(b"\xff" + bytes(range(1, 255))) == bytes(range(1, 255))
    with pytest.raises(ProtocolError, match="announces 4 bytes, only 2 follow"):
        cobs_decode(b"\x05\x01\x02")
    with pytest.raises(ProtocolError, match="0x00 at byte 1"):
        cobs_decode(b"\x02\x00")


@given(st.binary(max_size=700))
def test_cobs_round_trip_has_no_zero_and_bounded_overhead(data):
    encoded = cobs_encode(data)
    assert 0 not in encoded and cobs_decode(encoded) == data
    assert len(encoded) <= len(data) + len(data) // 254 + 1


# ------------------------------------------------------------------ messages round trip

@given(messages, u16)
def test_every_message_round_trips(message, seq):
    frame = encode(message, seq)
    assert frame[0] == 0 and frame[-1] == 0 and 0 not in frame[1:-1]
    assert len(frame) <= MAX_WIRE
    assert decode_frame(frame) == (seq, message)


def test_examples_cover_every_type_and_fit():
    assert {m.TYPE for m in EXAMPLES} == set(MsgType)
    for m in EXAMPLES:
        assert decode_frame(encode(m, 65535)) == (65535, m)
    assert len(EXAMPLES[1].payload()) == 16 + 45 * 125 == 5641      # a DSADS window …
    assert len(EXAMPLES[-2].payload()) == 8 + 28 + 19 * 4 + 4 + 45 * 125 <= MAX_PAYLOAD   # … and UNCERTAIN of one


def test_array_helpers_keep_shapes_and_values():
    x = np.arange(-60, 60, dtype=np.int8).reshape(8, 15)
    req = decode_frame(encode(InferRequest.from_array(x, InferMode.NARROW, model_id=0xFFFF_FFFF), 1)).message
    assert req.mode == InferMode.NARROW and np.array_equal(req.array(), x) and req.model_id == 0xFFFF_FFFF
    assert InferRequest.from_array(x).model_id == 0                  # default: any model
    s = np.array([[-32768, 32767], [1, -2], [300, -300]], np.int16)
    got = decode_frame(encode(Samples.from_array(s, 10, 20, 100_000), 2)).message
    assert np.array_equal(got.array(), s) and (got.channels, got.n_samples) == (2, 3)
    assert Version(0, 0x010203, 0, 0, 0, 0, 0, (), 0, 0, 0, "").firmware_str == "1.2.3"
    assert Stats(0, (5, 6, 7)).named() == {"frames_ok": 5, "crc_errors": 6, "cobs_errors": 7}


def test_infer_req_layout_puts_the_model_id_at_8_and_the_samples_at_16():
    x = np.array([[1, -1, 0], [-128, 127, 5]], np.int8)
    p = InferRequest.from_array(x, InferMode.FULL, model_id=0x12345678).payload()
    assert p[:16] == bytes([2, 0, 2, 0, 3, 0, 0, 0, 0x78, 0x56, 0x34, 0x12, 0, 0, 0, 0])
    assert p[16:] == x.tobytes() and len(p) == 16 + 2 * 3
    assert struct.unpack_from("<I", p, 8)[0] == 0x12345678
    assert InferRequest.from_array(x).payload()[8:16] == bytes(8)      # 0: any model
    # reserved bytes are ignored by receivers
    spoiled = bytearray(p)
    spoiled[1], spoiled[6], spoiled[7], spoiled[12:16] = 9, 9, 9, b"\x09\x09\x09\x09"
    got = decode_frame(raw_frame(MsgType.INFER_REQ, 3, bytes(spoiled)), "device").message
    assert got == InferRequest.from_array(x, InferMode.FULL, model_id=0x12345678)


def test_a_threshold_below_minus_one_passes_the_receiver():
    """The device application refuses it (ERROR BAD_VALUE, detail 0); the receiver does not, so a
    host can send it to test that."""
    for t in (-2, -(2**63)):
        assert check_payload(MsgType.SET_THRESHOLD, struct.pack("<q", t), "device") is None
        assert decode_frame(encode(SetThreshold(t), 4), "device") == (4, SetThreshold(t))


@pytest.mark.parametrize("make, pattern", [
    (lambda: SetThreshold(2**63), r"SetThreshold\.threshold: expected an integer in -9223372036854775808\.\.9223372036854775807"),
    (lambda: InferRequest(3, 1, 1, b"\0"), r"InferRequest\.mode: expected 0\.\.2"),
    (lambda: InferRequest(0, 2, 3, b"\0" * 5), r"in_channels·window = 2·3 = 6 int8 bytes, got 5"),
    (lambda: InferRequest.from_array(np.zeros((45, 137), np.int8)), r"6181 payload bytes; at most 6144"),
    (lambda: InferRequest(0, 1, 6129, bytes(6129)), r"6145 payload bytes; at most 6144"),
    (lambda: InferRequest(0, 1, 1, b"\0", model_id=2**32), r"InferRequest\.model_id: expected an integer in 0\.\.4294967295"),
    (lambda: InferRequest(0, 1, 1, b"\0", model_id=-1), r"InferRequest\.model_id: expected an integer in 0\.\.4294967295"),
    (lambda: InferRequest.from_array(np.zeros((4, 4), np.float32)), r"expected an int8 array \[C, L\]"),
    (lambda: Result(2, 0, 0, (1, 2)), r"Result\.predicted: expected a class index below 2, got 2"),
    (lambda: Result(0, 3, 0, (1,)), r"Result\.path: expected 0\.\.2"),
    (lambda: Result(0, 0, 0, ()), r"expected 1\.\.255 classes"),
    (lambda: SetStream(16), r"SetStream\.flags: expected bits of StreamFlag \(0\.\.15\)"),
    (lambda: SensorChannel("hip.acc.x.too.long", "g", 1.0), r"SensorChannel\.name: expected at most 16 printable"),
    (lambda: SensorChannel("x", "m/s^2/Hz2", 1.0), r"SensorChannel\.unit: expected at most 8 printable"),
    (lambda: SensorChannel("x", "\t", 1.0), r"SensorChannel\.unit: expected at most 8 printable"),
    (lambda: SensorChannel("x", "g", float("nan")), r"SensorChannel\.scale: expected a finite number"),
    (lambda: SensorChannel("x", "g", 1e39), r"SensorChannel\.scale: expected a number within float32's range"),
    (lambda: SensorChannel("x", "g", True), r"SensorChannel\.scale: expected a number"),
    (lambda: SensorInfo(0, 0, 3, 0), r"SensorInfo\.source: expected 0\.\.2"),
    (lambda: SensorInfo(0, 0, 2, 0, (SensorChannel("x", "g", 1.0),) * 65), r"SensorInfo\.channels: expected at most 64"),
    (lambda: Version(0, 0, 0, 0, 0, 0, 0, (1,) * 9, 0, 0, 0, "b"), r"Version\.widths: expected at most 8"),
    (lambda: Version(0, 0, 0, 0, 0, 0, 0, (), 0, 0, 0, "café"), r"Version\.board: expected at most 32 printable ASCII"),
    (lambda: Stats(0, (2**32,)), r"Stats\.values: expected an integer in 0\.\.4294967295"),
    (lambda: encode(VersionRequest(), 65536), r"VersionRequest\.seq: expected an integer in 0\.\.65535"),
])
def test_invalid_messages_are_refused_by_name(make, pattern):
    with pytest.raises(ProtocolError, match=pattern) as info:
        make()
    assert isinstance(info.value, StreamharError)


# ------------------------------------------------------------------ refusals, one by one

def refusal(frame: bytes, receiver="any", max_payload=MAX_PAYLOAD) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_frame(frame, receiver, max_payload)
    return info.value


def test_bad_crc_is_refused_with_both_crcs():
    body = struct.pack("<BHq", MsgType.SET_THRESHOLD, 5, 7)
    good = crc16(body)
    e = refusal(raw_frame(MsgType.SET_THRESHOLD, 5, struct.pack("<q", 7), crc_delta=0x0100))
    assert (e.code, e.ref_type, e.ref_seq, e.detail) == (ErrorCode.CRC, MsgType.SET_THRESHOLD, 5, (good ^ 0x0100) << 16 | good)
    assert re.search(r"CRC 0x[0-9a-f]{4} received, 0x[0-9a-f]{4} computed", str(e))


def test_torn_short_and_overlong_frames_are_refused():
    e = refusal(encode(SetThreshold(-1), 3)[:-4])         # cut inside its last COBS run
    assert e.code == ErrorCode.COBS and "torn frame" in str(e)
    e = refusal(b"\x03\x41\x42")                       # two body bytes: no room for seq and CRC
    assert (e.code, e.detail, e.ref_type) == (ErrorCode.SHORT, 2, 0) and "expected at least 5" in str(e)
    e = refusal(encode(InferRequest.from_array(np.ones((10, 10), np.int8)), 9), max_payload=100)
    assert (e.code, e.detail, e.ref_type, e.ref_seq) == (ErrorCode.OVERLONG, 100, MsgType.INFER_REQ, 9)


@pytest.mark.parametrize("type_, payload, receiver, code, detail, pattern", [
    (0x07, b"", "any", ErrorCode.UNKNOWN_TYPE, 0, r"type 0x07 is not a message of protocol version 1"),
    (0xC0, b"", "host", ErrorCode.UNKNOWN_TYPE, 0, r"type 0xc0"),
    (0x00, b"", "any", ErrorCode.UNKNOWN_TYPE, 0, r"type 0x00"),
    (MsgType.INFER_RESULT, b"", "device", ErrorCode.UNKNOWN_TYPE, 1, r"INFER_RESULT goes device → host; a device does not accept it"),
    (MsgType.VERSION_REQ, b"", "host", ErrorCode.UNKNOWN_TYPE, 1, r"VERSION_REQ goes host → device; a host"),
    (MsgType.VERSION_REQ, b"\0", "device", ErrorCode.BAD_LENGTH, 0, r"VERSION_REQ payload: expected 0 bytes, got 1"),
    (MsgType.INFER_REQ, struct.pack("<BBHHHII", 0, 0, 3, 4, 0, 7, 0) + bytes(11), "device", ErrorCode.BAD_LENGTH, 28,
     r"INFER_REQ payload: expected 16 \+ in_channels·window \(3·4\) = 28 bytes, got 27"),
    (MsgType.INFER_REQ, struct.pack("<BBHHH", 0, 0, 3, 4, 0) + bytes(12), "device", ErrorCode.BAD_LENGTH, 28,
     r"expected 16 \+ in_channels·window \(3·4\) = 28 bytes, got 20"),             # the old 8-byte header
    (MsgType.INFER_REQ, bytes(15), "device", ErrorCode.BAD_LENGTH, 16, r"expected at least 16 bytes, got 15"),
    (MsgType.INFER_REQ, struct.pack("<BBHHHII", 3, 0, 0, 0, 0, 0, 0), "device", ErrorCode.BAD_VALUE, 0, r"byte 0 \(mode\): expected 0\.\.2, got 3"),
    (MsgType.STATS_REQ, b"\x02", "device", ErrorCode.BAD_VALUE, 0, r"STATS_REQ payload: byte 0 \(flags\)"),
    (MsgType.SET_STREAM, b"\x10", "device", ErrorCode.BAD_VALUE, 0, r"SET_STREAM payload: byte 0 \(flags\): expected bits of 0xf, got 0x10"),
    (MsgType.SENSOR_REQ, b"\0", "device", ErrorCode.BAD_LENGTH, 0, r"SENSOR_REQ payload: expected 0 bytes, got 1"),
    (MsgType.SENSOR, bytes(9), "host", ErrorCode.BAD_LENGTH, 10, r"SENSOR payload: expected at least 10 bytes, got 9"),
    (MsgType.SENSOR, struct.pack("<HIBHB", 0, 0, 3, 0, 0), "host", ErrorCode.BAD_VALUE, 6, r"byte 6 \(source\): expected 0\.\.2, got 3"),
    (MsgType.SENSOR, struct.pack("<HIBHB", 0, 0, 2, 0, 65), "host", ErrorCode.BAD_VALUE, 9, r"\(n_channels\): expected at most 64"),
    (MsgType.SENSOR, struct.pack("<HIBHB", 0, 0, 2, 0, 2) + struct.pack("<fB", 1, 1) + b"x\x01g", "host",
     ErrorCode.BAD_LENGTH, 23, r"expected at least \(channel 1: scale, name_len\) 23 bytes, got 18"),
    (MsgType.SENSOR, struct.pack("<HIBHB", 0, 0, 2, 0, 1) + struct.pack("<fB", 1, 3) + b"xy", "host",
     ErrorCode.BAD_LENGTH, 19, r"expected at least \(channel 0: name, unit_len\) 19 bytes, got 17"),
    (MsgType.SENSOR, struct.pack("<HIBHB", 0, 0, 2, 0, 1) + struct.pack("<fB", 1, 17) + bytes(18), "host",
     ErrorCode.BAD_VALUE, 14, r"byte 14 \(channel 0 name_len\): expected at most 16, got 17"),
    (MsgType.SENSOR, struct.pack("<HIBHB", 0, 0, 2, 0, 1) + struct.pack("<fB", 1, 0) + b"\x09", "host",
     ErrorCode.BAD_VALUE, 15, r"byte 15 \(channel 0 unit_len\): expected at most 8, got 9"),
    (MsgType.SENSOR, struct.pack("<HIBHB", 0, 0, 2, 0, 1) + struct.pack("<fB", float("inf"), 0) + b"\0", "host",
     ErrorCode.BAD_VALUE, 10, r"byte 10 \(channel 0 scale\): expected a finite float32"),
    (MsgType.SENSOR, struct.pack("<HIBHB", 0, 0, 2, 0, 1) + struct.pack("<fB", 1, 1) + b"x\x01g\0", "host",
     ErrorCode.BAD_LENGTH, 18, r"expected 1 channel records: 18 bytes, got 19"),
    (MsgType.SENSOR, struct.pack("<HIBHB", 0, 0, 2, 0, 1) + struct.pack("<fB", 1, 1) + b"x\x02g\n", "host",
     ErrorCode.BAD_VALUE, 18, r"byte 18 \(channel 0 unit\): expected printable ASCII, got 0x0a"),
    (MsgType.SET_THRESHOLD, bytes(9), "device", ErrorCode.BAD_LENGTH, 8, r"expected 8 bytes, got 9"),
    (MsgType.INFER_RESULT, struct.pack("<HBBBBqQQ", 1, 2, 0, 2, 0, 0, 0, 0) + bytes(8), "host", ErrorCode.BAD_VALUE, 2,
     r"byte 2 \(predicted\): expected a class below n_classes = 2, got 2"),
    (MsgType.INFER_RESULT, struct.pack("<HBBBBqQQ", 1, 0, 3, 2, 0, 0, 0, 0) + bytes(8), "host", ErrorCode.BAD_VALUE, 3, r"\(path\)"),
    (MsgType.INFER_RESULT, struct.pack("<HBBBBqQQ", 1, 0, 0, 2, 0, 0, 0, 0) + bytes(7), "host", ErrorCode.BAD_LENGTH, 38,
     r"expected 30 \+ 4·n_classes \(2\) = 38 bytes, got 37"),
    (MsgType.VERSION, bytes(19) + b"\x09" + bytes(11), "host", ErrorCode.BAD_VALUE, 19, r"\(n_widths\): expected at most 8"),
    (MsgType.VERSION, bytes(30) + b"\x02" + b"a\x7f", "host", ErrorCode.BAD_VALUE, 32, r"byte 32 \(board\): expected printable ASCII, got 0x7f"),
    (MsgType.STATS, struct.pack("<HB", 0, 33), "host", ErrorCode.BAD_VALUE, 2, r"\(n\): expected at most 32"),
    (MsgType.SAMPLES, struct.pack("<IIIBH", 0, 0, 0, 2, 3) + bytes(11), "host", ErrorCode.BAD_LENGTH, 27,
     r"15 \+ 2·channels·n_samples \(2·3\) = 27"),
    (MsgType.UNCERTAIN, bytes(8) + struct.pack("<BBBBqQQ", 0, 0, 1, 0, 0, 0, 0) + bytes(4), "host", ErrorCode.BAD_LENGTH, 44,
     r"expected at least 36 \+ 4·n_classes \(1\) \+ 4 = 44 bytes, got 40"),
    (MsgType.ERROR, bytes(7), "host", ErrorCode.BAD_LENGTH, 8, r"ERROR payload: expected 8 bytes, got 7"),
])
def test_crc_valid_frames_with_a_bad_type_or_layout_name_what_was_expected(type_, payload, receiver, code, detail, pattern):
    e = refusal(raw_frame(type_, 77, payload), receiver)
    assert (e.code, e.detail, e.ref_type, e.ref_seq) == (code, detail, type_, 77)
    assert re.search(pattern, str(e)), str(e)
    assert check_payload(type_, payload, receiver)[:2] == (code, detail)


def test_decode_frame_wants_exactly_one_frame():
    with pytest.raises(ProtocolError, match="exactly one frame, got 0"):
        decode_frame(b"\0\0")
    with pytest.raises(ProtocolError, match="exactly one frame, got 2"):
        decode_frame(encode(VersionRequest(), 1) + encode(VersionRequest(), 2))


# ------------------------------------------------------------------ the stream decoder

def test_counters_errors_and_sequence_gaps():
    faults = []
    d = FrameDecoder("device", on_fault=faults.append)
    stream = (encode(SetThreshold(1), 0) + encode(SetThreshold(2), 1)
              + raw_frame(MsgType.SET_THRESHOLD, 2, bytes(8), crc_delta=1)      # CRC error: seq 2 is lost …
              + encode(SetThreshold(4), 3)                                     # … so seq 3 is a gap
              + encode(SetThreshold(5), 9)                                     # gap (5 frames missing)
              + encode(Ack(0, 0, 0), 10)                                       # wrong direction, in sequence
              + encode(SetThreshold(6), 65535) + encode(SetThreshold(7), 0)    # gap, then a wrap: no gap
              + b"\x05ab\0" + b"\x02X\0" + b"\0\0\0")                          # torn, short, empty frames
    got = d.feed(stream)
    assert [r.message.threshold for r in got] == [1, 2, 4, 5, 6, 7]
    c = d.counters
    assert (c.frames_ok, c.crc_errors, c.unknown_types, c.cobs_errors, c.short_frames, c.seq_gaps) == (6, 1, 1, 1, 1, 3)
    assert c.dropped_bytes == (len(raw_frame(3, 2, bytes(8))) - 2) + (len(encode(Ack(0, 0, 0), 10)) - 2) + 3 + 2
    assert [f.code for f in faults] == [ErrorCode.CRC, ErrorCode.UNKNOWN_TYPE, ErrorCode.COBS, ErrorCode.SHORT]
    assert faults[1].report() == ErrorReport(10, ErrorCode.UNKNOWN_TYPE, MsgType.ACK, 1)


def test_overlong_garbage_is_dropped_until_the_next_delimiter():
    d = FrameDecoder("host")
    junk = bytes(range(1, 256)) * 40                          # 10 KB with no 0x00
    got = d.events(junk[:3000]) + d.events(junk[3000:])
    assert [e.code for e in got] == [ErrorCode.OVERLONG] and len(d._body) == 0   # junk is not kept in memory
    got = d.events(junk + encode(Ack(1, 3, 4), 0))
    assert [type(e) for e in got] == [Received]                # the same frame, still being dropped
    assert d.counters.overlong_frames == 1 and d.counters.dropped_bytes == 2 * len(junk)


@st.composite
def noisy_streams(draw):
    """Valid frames with garbage, torn frames or nothing between them, cut into random chunks."""
    frames = draw(st.lists(st.tuples(messages, u16), min_size=1, max_size=6))
    junk = st.one_of(st.binary(max_size=80), st.binary(max_size=80).map(lambda b: b.replace(b"\0", b"")),
                     st.builds(lambda m, s, k: encode(m, s)[:k], messages, u16, st.integers(2, 40)))
    pieces = []
    for message, seq in frames:
        pieces += draw(st.lists(junk, max_size=2))
        pieces.append(encode(message, seq))
    data = b"".join(pieces)
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=5)))
    return frames, data, [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


def is_subsequence(want: list, got: list) -> bool:
    it = iter(got)
    return all(any(w == g for g in it) for w in want)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(noisy_streams())
def test_garbage_never_raises_and_never_costs_a_valid_frame(stream):
    frames, data, chunks = stream
    d = FrameDecoder("any")
    events = [e for chunk in chunks for e in d.events(chunk)]
    got = [e for e in events if isinstance(e, Received)]
    assert is_subsequence([Received(s, m) for m, s in frames], got)
    one_go = FrameDecoder("any")
    assert one_go.events(data) == events and one_go.counters == d.counters    # chunking changes nothing
    c = d.counters                                              # every frame counted exactly once
    assert len(events) == (c.frames_ok + c.crc_errors + c.cobs_errors + c.short_frames + c.overlong_frames
                           + c.unknown_types + c.bad_payloads)
    assert c.frames_ok == len(got)


@given(st.lists(st.tuples(messages, u16, st.integers(1, 10_000)), min_size=1, max_size=5))
def test_torn_frames_cost_one_refusal_each(torn_then_valid):
    d = FrameDecoder("any")
    stream, n_torn = b"", 0
    for message, seq, cut in torn_then_valid:
        frame = encode(message, seq)
        k = 2 + cut % (len(frame) - 2)                        # keeps 2 .. len-1 bytes: the end is lost
        stream += frame[:k] + encode(message, seq)
        n_torn += 1
    events = d.events(stream)
    valid = [Received(s, m) for m, s, _ in torn_then_valid]
    assert is_subsequence(valid, [e for e in events if isinstance(e, Received)])
    assert len(events) == len(valid) + n_torn                 # one event per torn frame


@given(messages, u16, st.data())
def test_every_single_bit_error_in_the_body_is_a_crc_error(message, seq, data):
    body = struct.pack("<BH", message.TYPE, seq) + message.payload()
    body += struct.pack("<H", crc16(body))
    bit = data.draw(st.integers(0, 8 * len(body) - 1))
    spoiled = bytearray(body)
    spoiled[bit // 8] ^= 1 << bit % 8
    d = FrameDecoder("any")
    assert d.feed(b"\0" + cobs_encode(bytes(spoiled)) + b"\0" + encode(message, seq)) == [Received(seq, message)]
    assert d.counters.crc_errors == 1 and d.counters.frames_ok == 1


def test_decoder_arguments_are_checked():
    with pytest.raises(ProtocolError, match="receiver must be 'host', 'device' or 'any'"):
        FrameDecoder("board")
    with pytest.raises(ProtocolError, match="max_payload must be 0..6144"):
        FrameDecoder(max_payload=7000)


# ------------------------------------------------------------------ C against Python

def cc() -> list[str]:
    return shlex.split(os.environ.get("CC", "gcc"))


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("protocol_c") / "driver"
    cmd = [*cc(), *STRICT, "-O2", "-I", str(PROTO_DIR), str(DRIVER_SRC), str(PROTO_DIR / "har_proto.c"), "-o", str(exe)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr}"
    return exe


def c_events(driver: Path, data: bytes, receiver: str, cap: int) -> list[list]:
    done = subprocess.run([str(driver), "rx", str(ROLES[receiver]), str(cap)], input=data, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    return [[w if w in ("M", "E", "C") else int(w) for w in line.split()] for line in done.stdout.decode().splitlines()]


def py_events(data: bytes, receiver: str, cap: int) -> list[list]:
    d = FrameDecoder(receiver, cap)
    return event_lines(d.events(data), d.counters)


def c_build(driver: Path, tmp_path: Path, frames: list[tuple], mode: str = "buffer", cap: int = 1 << 24):
    out = tmp_path / f"frames-{mode}.bin"
    spec = "".join(" ".join(map(str, [int(t), seq, *values])) + "\n" for t, seq, values in frames)
    done = subprocess.run([str(driver), "tx", mode, str(out), str(cap)], input=spec.encode(), capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
    return [int(n) for n in done.stdout.split()], out.read_bytes()


def noisy_stream(rng: np.random.Generator, n: int) -> bytes:
    """Every kind of trouble a UART brings, between valid frames of every type."""
    pieces, seq = [], 0
    kinds = ["valid", "garbage", "flip", "torn", "drop", "insert", "no_lead", "raw", "near", "overlong", "zeros"]
    for _ in range(n):
        message = EXAMPLES[rng.integers(len(EXAMPLES))]
        frame = bytearray(encode(message, seq))
        seq = (seq + 1 + (rng.integers(1, 500) if rng.random() < 0.05 else 0)) & 0xFFFF
        kind = kinds[rng.integers(len(kinds))]
        i = int(rng.integers(1, len(frame) - 1))
        if kind == "garbage":
            pieces.append(rng.bytes(int(rng.integers(0, 300))))
            continue
        if kind == "flip":
            frame[i] ^= 1 << int(rng.integers(8))
        elif kind == "torn":
            frame = frame[:i]
        elif kind == "drop":
            del frame[i]
        elif kind == "insert":
            frame.insert(i, int(rng.integers(256)))
        elif kind == "no_lead":
            frame = frame[1:]
        elif kind == "raw":                                   # any type, any payload, good CRC
            frame = raw_frame(int(rng.integers(256)), seq, rng.bytes(int(rng.integers(0, 60))))
        elif kind == "near":                                  # a valid payload one byte off or one field off
            p = bytearray(message.payload())
            if p and rng.random() < 0.5:
                p[int(rng.integers(len(p)))] = int(rng.integers(256))
            else:
                p = p + b"\x01" if rng.random() < 0.5 else p[:-1]
            frame = raw_frame(message.TYPE, seq, bytes(p))
        elif kind == "overlong":
            frame = raw_frame(MsgType.INFER_REQ, seq, rng.bytes(MAX_PAYLOAD + int(rng.integers(1, 400))))
        elif kind == "zeros":
            frame = bytes(int(rng.integers(1, 4)))
        pieces.append(bytes(frame))
    return b"".join(pieces)


@pytest.mark.parametrize("receiver, cap", [("any", MAX_PAYLOAD), ("device", MAX_PAYLOAD), ("host", MAX_PAYLOAD),
                                           ("device", 1300), ("any", 64), ("host", 0)])
def test_c_decodes_a_noisy_stream_exactly_like_python(driver, receiver, cap):
    data = noisy_stream(np.random.default_rng(cap + len(receiver)), 1200)
    want = py_events(data, receiver, cap)
    got = c_events(driver, data, receiver, cap)
    kinds = {line[0] if line[0] != "E" else ErrorCode(line[1]).name for line in want}
    assert len(got) == len(want) and got == want
    if cap == MAX_PAYLOAD and receiver == "any":             # the stream really held every case
        assert kinds >= {"M", "C", *(c.name for c in ErrorCode if c != ErrorCode.BAD_STATE)}, kinds
        assert {line[1] for line in want if line[0] == "M"} == set(MsgType)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(noisy_streams(), st.sampled_from(list(ROLES)), st.sampled_from([MAX_PAYLOAD, 200, 5]))
def test_c_decodes_fuzzed_streams_like_python(driver, stream, receiver, cap):
    _, data, _ = stream
    assert c_events(driver, data, receiver, cap) == py_events(data, receiver, cap)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(messages, u16), min_size=1, max_size=8))
def test_c_builds_the_bytes_python_builds(driver, tmp_path, frames):
    want = [encode(m, s) for m, s in frames]
    spec = [(m.TYPE, s, flat(m)) for m, s in frames]
    for mode in ("buffer", "stream"):
        sizes, data = c_build(driver, tmp_path, spec, mode)
        assert sizes == [len(f) for f in want] and data == b"".join(want), mode


def test_c_infer_req_layout_and_model_id_match_python(driver, tmp_path):
    """The C builder puts model_id at payload offset 8 and the samples at 16; the C parser reads
    model_id back and points samples at payload + 16 (the driver checks the pointer)."""
    x = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    msgs = [InferRequest.from_array(x, InferMode.CASCADE, model_id=0xA1B2C3D4),
            InferRequest.from_array(x, InferMode.NARROW, model_id=0xFFFF_FFFF),
            InferRequest.from_array(x, InferMode.FULL),
            InferRequest(InferMode.CASCADE, 1, 6128, bytes(range(1, 129)) * 47 + bytes(112), 5)]   # 6144 exactly
    sizes, data = c_build(driver, tmp_path, [(m.TYPE, i, flat(m)) for i, m in enumerate(msgs)])
    assert data == b"".join(encode(m, i) for i, m in enumerate(msgs)) and all(sizes)
    body = cobs_decode(encode(msgs[0], 0)[1:-1])
    assert body[3 + 8:3 + 12] == bytes([0xD4, 0xC3, 0xB2, 0xA1]) and body[3 + 16:-2] == x.tobytes()
    got = c_events(driver, data, "device", MAX_PAYLOAD)
    assert got == py_events(data, "device", MAX_PAYLOAD)
    assert [line[6] for line in got[:-1]] == [0xA1B2C3D4, 0xFFFF_FFFF, 0, 5]    # M type seq mode C L model_id


def test_c_receiver_passes_a_threshold_below_minus_one(driver):
    data = encode(SetThreshold(-2), 0) + encode(SetThreshold(-(2**63)), 1)
    assert c_events(driver, data, "device", MAX_PAYLOAD) == [
        ["M", MsgType.SET_THRESHOLD, 0, -2], ["M", MsgType.SET_THRESHOLD, 1, -(2**63)], ["C", 2, 0, 0, 0, 0, 0, 0, 0, 0]]


def test_c_builds_every_example_and_python_decodes_it(driver, tmp_path):
    sizes, data = c_build(driver, tmp_path, [(m.TYPE, i, flat(m)) for i, m in enumerate(EXAMPLES)], "stream")
    assert FrameDecoder("any").feed(data) == [Received(i, m) for i, m in enumerate(EXAMPLES)]
    assert sum(sizes) == len(data)


def test_c_buffer_keeps_whole_frames_only(driver, tmp_path):
    frames = [encode(m, i) for i, m in enumerate(EXAMPLES)]
    cap = 3000
    sizes, data = c_build(driver, tmp_path, [(m.TYPE, i, flat(m)) for i, m in enumerate(EXAMPLES)], "buffer", cap)
    kept, used = [], 0
    for f in frames:                                         # greedy: a frame that does not fit is skipped
        fits = used + len(f) <= cap
        kept += [f] if fits else []
        used += len(f) if fits else 0
    assert sizes == [len(f) if f in kept else 0 for f in frames]
    assert data == b"".join(kept) and 0 < len(kept) < len(frames)


@pytest.mark.parametrize("type_, values", [
    (MsgType.INFER_REQ, [3, 1, 1, 0, 1, 0]),                                       # mode 3
    (MsgType.INFER_REQ, [0, 45, 137, 0, 45 * 137, *([0] * (45 * 137))]),           # payload over 6144
    (MsgType.INFER_REQ, [0, 1, 6129, 7, 6129, *([1] * 6129)]),                     # 16 + 6129 = 6145
    (MsgType.STATS_REQ, [2]),
    (MsgType.SET_STREAM, [16]),
    (MsgType.SENSOR, [0, 0, 3, 0, 0]),                                              # source 3
    (MsgType.SENSOR, [0, 0, 2, 0, 65, *([0x3F800000, 1, 65, 1, 103] * 65)]),        # 65 channels
    (MsgType.SENSOR, [0, 0, 2, 0, 1, 0x3F800000, 17, *([65] * 17), 1, 103]),       # a name of 17
    (MsgType.SENSOR, [0, 0, 2, 0, 1, 0x3F800000, 1, 65, 9, *([103] * 9)]),         # a unit of 9
    (MsgType.SENSOR, [0, 0, 2, 0, 1, 0x3F800000, 1, 10, 1, 103]),                  # a name with a newline
    (MsgType.SENSOR, [0, 0, 2, 0, 1, 0x7FC00000, 1, 65, 1, 103]),                  # a NaN scale
    (MsgType.VERSION, [0] * 12 + [9, *range(9)] + [0]),                            # 9 widths
    (MsgType.VERSION, [0] * 12 + [0, 33, *([65] * 33)]),                           # board of 33
    (MsgType.VERSION, [0] * 12 + [0, 2, 65, 10]),                                  # board with a newline
    (MsgType.INFER_RESULT, [0, 2, 0, 2, 0, 0, 0, 0, 2, 1, 2]),                     # predicted >= n_classes
    (MsgType.DEVICE_RESULT, [0, 0, 0, 3, 1, 0, 0, 0, 0, 1, 1]),                    # path 3
    (MsgType.DEVICE_RESULT, [0, 0, 0, 0, 1, 4, 0, 0, 0, 1, 1]),                    # unknown 'have' bit
    (MsgType.STATS, [0, 33, *range(33)]),
    (MsgType.SAMPLES, [0, 0, 0, 2, 1533, 3066, *([0] * 3066)]),                    # 15 + 6132 > 6144
])
def test_c_builders_refuse_what_receivers_would_refuse(driver, tmp_path, type_, values):
    sizes, data = c_build(driver, tmp_path, [(type_, 0, values), (MsgType.VERSION_REQ, 1, [])])
    assert sizes == [0, len(encode(VersionRequest(), 1))] and data == encode(VersionRequest(), 1)


# ------------------------------------------------------------------ the C file is firmware-grade

def test_c_sources_include_nothing_but_stdint_and_stddef():
    for name in ("har_proto.h", "har_proto.c"):
        includes = re.findall(r'#include\s+[<"]([^>"]+)[>"]', (PROTO_DIR / name).read_text())
        assert set(includes) <= {"stdint.h", "stddef.h", "har_proto.h"}, (name, includes)


@pytest.mark.parametrize("target", ["host", "arm-none-eabi", "riscv64-unknown-elf"])
def test_c_builds_freestanding_with_no_library_calls(tmp_path, target):
    """-Wconversion and friends for portability; `nm -u` empty: no memcpy/memset a compiler might
    slip in, no libgcc helper (64-bit division) a 32-bit MCU would need."""
    arch = {"host": [], "arm-none-eabi": ["-mcpu=cortex-m4", "-mthumb"],
            "riscv64-unknown-elf": ["-march=rv32imc", "-mabi=ilp32"]}[target]
    gcc, nm = (cc(), ["nm"]) if target == "host" else ([f"{target}-gcc"], [f"{target}-nm"])
    # never a skip: CI installs the cross compilers (`streamhar firmware tools --install`)
    assert shutil.which(gcc[0]) and shutil.which(nm[0]), f"{gcc[0]} not installed (Debian: gcc-{target})"
    for opt in ("-O2", "-Os"):
        obj = tmp_path / f"har_proto{opt}.o"
        cmd = [*gcc, *STRICT, "-pedantic", "-Wconversion", "-Wsign-conversion", "-Wshadow", "-Wcast-align",
               "-ffreestanding", opt, *arch, "-c", str(PROTO_DIR / "har_proto.c"), "-o", str(obj)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr}"
        undefined = subprocess.run([*nm, "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split()
        assert undefined == [], (target, opt, undefined)


# ------------------------------------------------------------------ the specification's examples

DOC_EXAMPLES = [
    (VersionRequest(), 0),
    (SetThreshold(121082), 1),
    (Ack(1, MsgType.SET_THRESHOLD, 121082), 0),
    (InferRequest.from_array(np.array([[1, -1, 0, 2], [0, 0, 3, -128], [127, 5, 0, 1]], np.int8),
                             model_id=0xA1B2C3D4), 2),
    (InferResult(2, Result(1, ResultPath.NARROW, 42_000, (-5_000, 37_000, -5_000), cycles=1_234_567)), 1),
    (ErrorReport(2, ErrorCode.BAD_STATE, MsgType.INFER_REQ, 0x3C5D7E9F), 1),          # another model
    (ErrorReport(7, ErrorCode.CRC, MsgType.INFER_REQ, 0xBEEF1234), 2),
    (SensorRequest(), 3),
    (SensorInfo(3, 100_000, SensorSource.RECORDING, 50, (SensorChannel("hip.acc.x", "g", 2**-12),
                                                         SensorChannel("hip.gyro.x", "dps", 0.0625))), 3),
    (SetStream(StreamFlag.SAMPLES | StreamFlag.RESULTS | StreamFlag.UNCERTAIN | StreamFlag.FAST), 4),
]


def spaced_hex(data: bytes) -> str:
    return data.hex(" ").upper()


@pytest.mark.parametrize("message, seq", DOC_EXAMPLES)
def test_protocol_md_examples_are_what_the_code_sends(message, seq):
    doc = re.sub(r"\s+", " ", (REPO / "docs" / "PROTOCOL.md").read_text())
    assert spaced_hex(encode(message, seq)) in doc, spaced_hex(encode(message, seq))
    assert f"{crc16(b'123456789'):#06X}".replace("0X", "0x") in doc and PROTOCOL_VERSION == 1
