"""The UART device protocol (docs/PROTOCOL.md), host side. Its twin for the firmware is
firmware/protocol/har_proto.c; tests/test_protocol.py checks that both decode the same bytes to
the same messages and errors, and build the same bytes.

A frame on the wire is `00 | COBS(body) | 00` with body = type u8 | seq u16 | payload | CRC-16
(CCITT-FALSE over type, seq and payload), little-endian throughout. `encode(message, seq)` makes
one; `FrameDecoder.feed(data)` turns any byte stream (garbage, torn frames, corrupted frames
included) into the valid messages it holds and counts what it had to drop, never raising.
`decode_frame` decodes exactly one frame and raises `ProtocolError` saying what was wrong.
"""
from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from typing import Callable, ClassVar, Literal, NamedTuple, Self, Union

import numpy as np

from streamhar.errors import StreamharError

PROTOCOL_VERSION = 1
MAX_PAYLOAD = 6144                       # a 45 × 125 int8 window with its 16-byte header (5,641) fits
HEADER_BYTES, CRC_BYTES = 3, 2           # type + seq; CRC
MAX_BODY = HEADER_BYTES + MAX_PAYLOAD + CRC_BYTES
MAX_WIRE = MAX_BODY + MAX_BODY // 254 + 1 + 2   # COBS overhead plus both delimiters
MAX_WIDTHS, MAX_BOARD, MAX_COUNTERS = 8, 32, 32
MAX_SENSOR_CHANNELS, MAX_SENSOR_NAME, MAX_SENSOR_UNIT = 64, 16, 8
_FLOAT_EXPONENT = 0x7F800000             # a float32's exponent bits: all ones = infinity or NaN

Receiver = Literal["device", "host", "any"]


class MsgType(IntEnum):
    """0x01–0x3F host → device, 0x40–0x7F device → host replies, 0x80–0xBF device → host
    streams; 0x00 and 0xC0–0xFF are reserved."""
    VERSION_REQ = 0x01
    INFER_REQ = 0x02
    SET_THRESHOLD = 0x03
    STATS_REQ = 0x04
    SET_STREAM = 0x05
    SENSOR_REQ = 0x06
    VERSION = 0x41
    INFER_RESULT = 0x42
    ACK = 0x43
    STATS = 0x44
    SENSOR = 0x45
    ERROR = 0x7F
    SAMPLES = 0x80
    UNCERTAIN = 0x81
    DEVICE_RESULT = 0x82


class ErrorCode(IntEnum):
    CRC = 1            # detail: received CRC << 16 | computed CRC
    COBS = 2           # the frame ended inside a COBS run; detail: body bytes decoded
    SHORT = 3          # body shorter than type + seq + CRC; detail: body bytes
    OVERLONG = 4       # payload larger than the receiver accepts; detail: the largest it accepts
    UNKNOWN_TYPE = 5   # detail: 0 unknown, 1 a type of the other direction
    BAD_LENGTH = 6     # detail: the payload length the layout requires
    BAD_VALUE = 7      # detail: payload offset of the offending field
    BAD_STATE = 8      # a valid request the device cannot serve now (sent by the device's application)


class InferMode(IntEnum):
    CASCADE = 0        # narrow width first, the full width when margin <= threshold
    NARROW = 1
    FULL = 2


class ResultPath(IntEnum):
    NARROW = 0         # the narrow width answered
    ESCALATED = 1      # the narrow width was unsure; the full width answered
    FULL = 2           # only the full width ran


class StreamFlag(IntFlag):
    SAMPLES = 1        # raw sensor samples (SAMPLES)
    RESULTS = 2        # windows the device committed (DEVICE_RESULT)
    UNCERTAIN = 4      # windows it did not, with their samples (UNCERTAIN)
    FAST = 8           # a recording-backed sensor replays as fast as the link drains (tests, benchmarks)


STREAM_FLAGS = int(StreamFlag.SAMPLES | StreamFlag.RESULTS | StreamFlag.UNCERTAIN | StreamFlag.FAST)


class SensorSource(IntEnum):
    """SENSOR's `source`: where a device's samples come from."""
    NONE = 0           # no sensor: SET_STREAM is refused (BAD_STATE)
    IMU = 1            # an IMU driver (a real board; firmware/sensor/har_sensor.h is the hook)
    RECORDING = 2      # a recording compiled into the image (QEMU, demos, tests)


# STATS counters in order; the first nine are a receiver's counters (FrameDecoder.counters).
STATS_COUNTERS = ("frames_ok", "crc_errors", "cobs_errors", "short_frames", "overlong_frames",
                  "unknown_types", "bad_payloads", "dropped_bytes", "seq_gaps",
                  "frames_sent", "inferences", "escalations", "samples_dropped")

_REQUESTS = {MsgType.VERSION_REQ, MsgType.INFER_REQ, MsgType.SET_THRESHOLD, MsgType.STATS_REQ,
             MsgType.SET_STREAM, MsgType.SENSOR_REQ}


class ProtocolError(StreamharError):
    """A frame or message that breaks the protocol; `code` is the ERROR code a device answers
    with, `ref_type`/`ref_seq` the offending frame's header (0 when it was not decoded)."""

    def __init__(self, code: ErrorCode, message: str, ref_type: int = 0, ref_seq: int = 0, detail: int = 0):
        super().__init__(message)
        self.code, self.ref_type, self.ref_seq, self.detail = ErrorCode(code), ref_type, ref_seq, detail


# ------------------------------------------------------------------ CRC and COBS

def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR):
    crc16(b"123456789") == 0x29B1. binascii.crc_hqx is this CRC with a free initial value."""
    return binascii.crc_hqx(data, crc)


def cobs_encode(data: bytes) -> bytes:
    """Consistent Overhead Byte Stuffing as Cheshire & Baker's reference encoder: every run of up
    to 254 non-zero bytes gets a length code; a body ending in a full run ends with code 01."""
    out = bytearray()
    for part in bytes(data).split(b"\0"):
        while len(part) >= 254:
            out += b"\xff" + part[:254]
            part = part[254:]
        out.append(len(part) + 1)
        out += part
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """The inverse of cobs_encode (also accepts a full final run without the trailing 01)."""
    out, i = bytearray(), 0
    if 0 in data:
        raise ProtocolError(ErrorCode.COBS, f"COBS data holds a 0x00 at byte {bytes(data).index(0)}; "
                                            "expected none (0x00 only delimits frames)")
    while i < len(data):
        code = data[i]
        if i + code > len(data):
            raise ProtocolError(ErrorCode.COBS, f"COBS run at byte {i} announces {code - 1} bytes, "
                                                f"only {len(data) - i - 1} follow (torn frame)")
        out += data[i + 1:i + code]
        i += code
        if code != 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


# ------------------------------------------------------------------ field checks

_RANGES = {"u8": (0, 0xFF), "u16": (0, 0xFFFF), "u32": (0, 0xFFFF_FFFF), "u64": (0, 2**64 - 1),
           "i32": (-2**31, 2**31 - 1), "i64": (-2**63, 2**63 - 1)}


def _check(owner: object, name: str, value: int, kind: str) -> int:
    lo, hi = _RANGES[kind]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ProtocolError(ErrorCode.BAD_VALUE, f"{type(owner).__name__}.{name}: expected an integer "
                                                 f"in {lo}..{hi} ({kind}), got {value!r}")
    return int(value)


def _set(owner: object, name: str, value) -> None:
    object.__setattr__(owner, name, value)   # frozen dataclasses normalise their fields here


def _int8_bytes(owner: object, samples, channels: int, window: int) -> bytes:
    data = bytes(samples)
    if len(data) != channels * window:
        raise ProtocolError(ErrorCode.BAD_LENGTH, f"{type(owner).__name__}.samples: expected "
                                                  f"in_channels·window = {channels}·{window} = "
                                                  f"{channels * window} int8 bytes, got {len(data)}")
    return data


# ------------------------------------------------------------------ messages

@dataclass(frozen=True)
class Result:
    """The result block of INFER_RESULT, DEVICE_RESULT and UNCERTAIN."""
    predicted: int
    path: ResultPath
    margin: int                     # top-1 − top-2 integer logit of the width that decided
    logits: tuple[int, ...]         # of the answering width
    cycles: int | None = None       # of the whole inference; None: not measured
    instructions: int | None = None

    LENGTH: ClassVar[int] = 28

    def __post_init__(self):
        _set(self, "logits", tuple(_check(self, "logits", v, "i32") for v in self.logits))
        if not 1 <= len(self.logits) <= 255:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"Result.logits: expected 1..255 classes, got {len(self.logits)}")
        if not 0 <= _check(self, "predicted", self.predicted, "u8") < len(self.logits):
            raise ProtocolError(ErrorCode.BAD_VALUE, f"Result.predicted: expected a class index "
                                                     f"below {len(self.logits)}, got {self.predicted}")
        if self.path not in ResultPath.__members__.values():
            raise ProtocolError(ErrorCode.BAD_VALUE, f"Result.path: expected 0..2 (ResultPath), got {self.path!r}")
        _set(self, "path", ResultPath(self.path))
        _set(self, "margin", _check(self, "margin", self.margin, "i64"))
        for name in ("cycles", "instructions"):
            if getattr(self, name) is not None:
                _set(self, name, _check(self, name, getattr(self, name), "u64"))

    @property
    def have(self) -> int:
        return (self.cycles is not None) | (self.instructions is not None) << 1

    def pack(self) -> bytes:
        return (struct.pack("<BBBBqQQ", self.predicted, self.path, len(self.logits), self.have, self.margin,
                            self.cycles or 0, self.instructions or 0)
                + struct.pack(f"<{len(self.logits)}i", *self.logits))

    @classmethod
    def unpack(cls, p: bytes, o: int) -> Result:
        predicted, path, n, have, margin, cycles, instructions = struct.unpack_from("<BBBBqQQ", p, o)
        return cls(predicted, ResultPath(path), margin, struct.unpack_from(f"<{n}i", p, o + cls.LENGTH),
                   cycles if have & 1 else None, instructions if have & 2 else None)


@dataclass(frozen=True)
class _EmptyRequest:
    """A request that is all in its type: no fields, an empty payload (har_proto.c checks its
    length is 0). Subclasses set TYPE and stay frozen dataclasses, so equality, hashing and repr
    still tell the message types apart."""
    TYPE: ClassVar[MsgType]

    def payload(self) -> bytes:
        return b""

    @classmethod
    def from_payload(cls, p: bytes) -> Self:
        return cls()


@dataclass(frozen=True)
class VersionRequest(_EmptyRequest):
    TYPE: ClassVar[MsgType] = MsgType.VERSION_REQ


@dataclass(frozen=True)
class InferRequest:
    """One int8 window [in_channels][window] to classify; `from_array`/`array` convert.
    `model_id`: the model the host expects (VERSION's model_id, the CRC-32 at the end of the
    .shm); a device running another one answers ERROR BAD_STATE. 0: any model (not checked)."""
    mode: InferMode
    in_channels: int
    window: int
    samples: bytes
    model_id: int = 0

    TYPE: ClassVar[MsgType] = MsgType.INFER_REQ
    HEADER: ClassVar[int] = 16      # samples start 8-aligned in the device's buffer
    FIXED: ClassVar[str] = "<BBHHHII"   # mode, 0, in_channels, window, 0, model_id, 0: 16 bytes

    def __post_init__(self):
        if self.mode not in InferMode.__members__.values():
            raise ProtocolError(ErrorCode.BAD_VALUE, f"InferRequest.mode: expected 0..2 (InferMode), got {self.mode!r}")
        _set(self, "mode", InferMode(self.mode))
        _check(self, "in_channels", self.in_channels, "u16")
        _check(self, "window", self.window, "u16")
        _set(self, "model_id", _check(self, "model_id", self.model_id, "u32"))
        _set(self, "samples", _int8_bytes(self, self.samples, self.in_channels, self.window))
        if self.HEADER + len(self.samples) > MAX_PAYLOAD:
            raise ProtocolError(ErrorCode.OVERLONG, f"InferRequest: {self.in_channels}×{self.window} samples need "
                                                    f"{self.HEADER + len(self.samples)} payload bytes; at most {MAX_PAYLOAD}")

    @classmethod
    def from_array(cls, x: np.ndarray, mode: InferMode = InferMode.CASCADE, model_id: int = 0) -> InferRequest:
        x = np.asarray(x)
        if x.ndim != 2 or x.dtype != np.int8:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"InferRequest: expected an int8 array [C, L], got {x.dtype} {x.shape}")
        return cls(mode, x.shape[0], x.shape[1], np.ascontiguousarray(x).tobytes(), model_id)

    def array(self) -> np.ndarray:
        return np.frombuffer(self.samples, np.int8).reshape(self.in_channels, self.window)

    def payload(self) -> bytes:
        return struct.pack(self.FIXED, self.mode, 0, self.in_channels, self.window, 0, self.model_id, 0) + self.samples

    @classmethod
    def from_payload(cls, p: bytes) -> InferRequest:
        mode, _, c, l, _, model_id, _ = struct.unpack_from(cls.FIXED, p)
        return cls(InferMode(mode), c, l, p[cls.HEADER:], model_id)


@dataclass(frozen=True)
class SetThreshold:
    """Escalate when the narrow margin <= threshold (−1: never). Any i64 goes on the wire; a
    device answers one below −1 with ERROR BAD_VALUE (detail 0) and keeps its threshold."""
    threshold: int
    TYPE: ClassVar[MsgType] = MsgType.SET_THRESHOLD

    def __post_init__(self):
        _set(self, "threshold", _check(self, "threshold", self.threshold, "i64"))

    def payload(self) -> bytes:
        return struct.pack("<q", self.threshold)

    @classmethod
    def from_payload(cls, p: bytes) -> SetThreshold:
        return cls(struct.unpack("<q", p)[0])


@dataclass(frozen=True)
class StatsRequest:
    reset: bool = False             # zero the device's counters after replying
    TYPE: ClassVar[MsgType] = MsgType.STATS_REQ

    def payload(self) -> bytes:
        return bytes([1 if self.reset else 0])

    @classmethod
    def from_payload(cls, p: bytes) -> StatsRequest:
        return cls(bool(p[0]))


@dataclass(frozen=True)
class SetStream:
    """Starts (or restarts: sample and window numbers from 0) the streams named by `flags`;
    0 stops them. A device without a sensor answers ERROR BAD_STATE, an IMU-driver device
    answers FAST with ERROR BAD_VALUE."""
    flags: StreamFlag = StreamFlag(0)
    TYPE: ClassVar[MsgType] = MsgType.SET_STREAM

    def __post_init__(self):
        if _check(self, "flags", self.flags, "u8") & ~STREAM_FLAGS:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"SetStream.flags: expected bits of StreamFlag "
                                                     f"(0..{STREAM_FLAGS}), got {self.flags}")
        _set(self, "flags", StreamFlag(self.flags))

    def payload(self) -> bytes:
        return bytes([self.flags])

    @classmethod
    def from_payload(cls, p: bytes) -> SetStream:
        return cls(StreamFlag(p[0]))


@dataclass(frozen=True)
class SensorRequest(_EmptyRequest):
    """Asks what the device's sensor streams: answered by SENSOR (SensorInfo)."""
    TYPE: ClassVar[MsgType] = MsgType.SENSOR_REQ


def _text(owner: object, name: str, value, limit: int) -> str:
    if not isinstance(value, str) or len(value) > limit or not all(" " <= ch <= "~" for ch in value):
        raise ProtocolError(ErrorCode.BAD_VALUE, f"{type(owner).__name__}.{name}: expected at most {limit} printable "
                                                 f"ASCII characters, got {value!r}")
    return value


@dataclass(frozen=True)
class SensorChannel:
    """One sensor channel: a raw int16 sample × `scale` is the value in `unit`. The scale travels
    as an IEEE float32 (it is rounded to one here) and must be finite."""
    name: str                       # at most 16 printable ASCII characters, e.g. "hip.acc.x"
    unit: str                       # at most 8, e.g. "g", "m/s^2"
    scale: float

    def __post_init__(self):
        _text(self, "name", self.name, MAX_SENSOR_NAME)
        _text(self, "unit", self.unit, MAX_SENSOR_UNIT)
        try:
            if isinstance(self.scale, bool):
                raise TypeError
            bits = struct.unpack("<I", struct.pack("<f", self.scale))[0]
        except (OverflowError, TypeError, struct.error):
            raise ProtocolError(ErrorCode.BAD_VALUE, f"SensorChannel.scale: expected a number within float32's "
                                                     f"range, got {self.scale!r}") from None
        if bits & _FLOAT_EXPONENT == _FLOAT_EXPONENT:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"SensorChannel.scale: expected a finite number, got {self.scale!r}")
        _set(self, "scale", struct.unpack("<f", struct.pack("<I", bits))[0])

    @property
    def scale_bits(self) -> int:
        """The scale's IEEE 754 binary32 bits, as on the wire."""
        return struct.unpack("<I", struct.pack("<f", self.scale))[0]

    def pack(self) -> bytes:
        name, unit = self.name.encode("ascii"), self.unit.encode("ascii")
        return struct.pack("<fB", self.scale, len(name)) + name + bytes([len(unit)]) + unit


@dataclass(frozen=True)
class SensorInfo:
    """SENSOR: what the device's sensor streams. `source`: SensorSource (0 none: rate 0, no
    channels); `rate_mhz`: sample rate in millihertz; `stride`: the device-tier cascade's window
    stride in samples (0: the device runs no cascade of its own); `channels` in the order of
    SAMPLES' columns."""
    ref_seq: int
    rate_mhz: int
    source: SensorSource
    stride: int
    channels: tuple[SensorChannel, ...] = ()
    TYPE: ClassVar[MsgType] = MsgType.SENSOR
    FIXED: ClassVar[str] = "<HIBHB"   # 10 bytes, then the channels

    def __post_init__(self):
        for name, kind in (("ref_seq", "u16"), ("rate_mhz", "u32"), ("stride", "u16")):
            _set(self, name, _check(self, name, getattr(self, name), kind))
        if self.source not in SensorSource.__members__.values():
            raise ProtocolError(ErrorCode.BAD_VALUE, f"SensorInfo.source: expected 0..2 (SensorSource), got {self.source!r}")
        _set(self, "source", SensorSource(self.source))
        _set(self, "channels", tuple(self.channels))
        if len(self.channels) > MAX_SENSOR_CHANNELS or not all(isinstance(c, SensorChannel) for c in self.channels):
            raise ProtocolError(ErrorCode.BAD_VALUE, f"SensorInfo.channels: expected at most {MAX_SENSOR_CHANNELS} "
                                                     f"SensorChannel, got {len(self.channels)}")

    @property
    def rate_hz(self) -> float:
        return self.rate_mhz / 1000

    def scales(self) -> np.ndarray:
        """float32 [channels]: raw int16 × scales = values in each channel's unit."""
        return np.array([c.scale for c in self.channels], np.float32)

    def payload(self) -> bytes:
        return (struct.pack(self.FIXED, self.ref_seq, self.rate_mhz, self.source, self.stride, len(self.channels))
                + b"".join(c.pack() for c in self.channels))

    @classmethod
    def from_payload(cls, p: bytes) -> SensorInfo:
        ref_seq, rate_mhz, source, stride, n = struct.unpack_from(cls.FIXED, p)
        o, channels = struct.calcsize(cls.FIXED), []
        for _ in range(n):
            scale, name_len = struct.unpack_from("<fB", p, o)
            name = p[o + 5:o + 5 + name_len].decode("ascii")
            o += 5 + name_len
            unit = p[o + 1:o + 1 + p[o]].decode("ascii")
            o += 1 + p[o]
            channels.append(SensorChannel(name, unit, scale))
        return cls(ref_seq, rate_mhz, SensorSource(source), stride, tuple(channels))


@dataclass(frozen=True)
class Version:
    """What the device runs. `boot`: sent unsolicited after a reset (its seq restarts at 0)."""
    ref_seq: int
    firmware: int                   # major << 16 | minor << 8 | patch
    model_id: int                   # CRC-32 stored at the end of the .shm (generate.model_id); 0: none
    max_payload: int
    n_classes: int
    in_channels: int
    window: int
    widths: tuple[int, ...]         # per mille: 250 = width 0.25
    small: int                      # width index the cascade runs first
    full: int                       # width index it escalates to
    threshold: int
    board: str
    boot: bool = False
    protocol: int = PROTOCOL_VERSION

    TYPE: ClassVar[MsgType] = MsgType.VERSION
    FIXED: ClassVar[str] = "<HBBIIHBHHBBBqB"      # 31 bytes, then widths u16[], then board

    def __post_init__(self):
        for name, kind in (("ref_seq", "u16"), ("protocol", "u8"), ("firmware", "u32"), ("model_id", "u32"),
                           ("max_payload", "u16"), ("n_classes", "u8"), ("in_channels", "u16"),
                           ("window", "u16"), ("small", "u8"), ("full", "u8"), ("threshold", "i64")):
            _set(self, name, _check(self, name, getattr(self, name), kind))
        _set(self, "widths", tuple(_check(self, "widths", w, "u16") for w in self.widths))
        if len(self.widths) > MAX_WIDTHS:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"Version.widths: expected at most {MAX_WIDTHS}, got {len(self.widths)}")
        if len(self.board) > MAX_BOARD or not all(" " <= ch <= "~" for ch in self.board):
            raise ProtocolError(ErrorCode.BAD_VALUE, f"Version.board: expected at most {MAX_BOARD} printable "
                                                     f"ASCII characters, got {self.board!r}")
        _set(self, "boot", bool(self.boot))

    @property
    def firmware_str(self) -> str:
        return f"{self.firmware >> 16}.{self.firmware >> 8 & 0xFF}.{self.firmware & 0xFF}"

    def payload(self) -> bytes:
        return (struct.pack(self.FIXED, self.ref_seq, int(self.boot), self.protocol, self.firmware, self.model_id,
                            self.max_payload, self.n_classes, self.in_channels, self.window, len(self.widths),
                            self.small, self.full, self.threshold, len(self.board))
                + struct.pack(f"<{len(self.widths)}H", *self.widths) + self.board.encode("ascii"))

    @classmethod
    def from_payload(cls, p: bytes) -> Version:
        (ref_seq, flags, protocol, firmware, model_id, max_payload, n_classes, in_channels, window, n_widths,
         small, full, threshold, _) = struct.unpack_from(cls.FIXED, p)
        o = struct.calcsize(cls.FIXED)
        return cls(ref_seq, firmware, model_id, max_payload, n_classes, in_channels, window,
                   struct.unpack_from(f"<{n_widths}H", p, o), small, full, threshold,
                   p[o + 2 * n_widths:].decode("ascii"), bool(flags & 1), protocol)


@dataclass(frozen=True)
class InferResult:
    ref_seq: int                    # the INFER_REQ answered
    result: Result
    TYPE: ClassVar[MsgType] = MsgType.INFER_RESULT

    def __post_init__(self):
        _check(self, "ref_seq", self.ref_seq, "u16")

    def payload(self) -> bytes:
        return struct.pack("<H", self.ref_seq) + self.result.pack()

    @classmethod
    def from_payload(cls, p: bytes) -> InferResult:
        return cls(struct.unpack_from("<H", p)[0], Result.unpack(p, 2))


@dataclass(frozen=True)
class Ack:
    """A setting took effect: `value` is the value now in force (threshold, stream flags)."""
    ref_seq: int
    ref_type: int
    value: int
    TYPE: ClassVar[MsgType] = MsgType.ACK

    def __post_init__(self):
        for name, kind in (("ref_seq", "u16"), ("ref_type", "u8"), ("value", "i64")):
            _set(self, name, _check(self, name, getattr(self, name), kind))

    def payload(self) -> bytes:
        return struct.pack("<HBq", self.ref_seq, self.ref_type, self.value)

    @classmethod
    def from_payload(cls, p: bytes) -> Ack:
        return cls(*struct.unpack("<HBq", p))


@dataclass(frozen=True)
class Stats:
    """Counters in STATS_COUNTERS order (a device may send fewer or, in later versions, more)."""
    ref_seq: int
    values: tuple[int, ...]
    TYPE: ClassVar[MsgType] = MsgType.STATS

    def __post_init__(self):
        _check(self, "ref_seq", self.ref_seq, "u16")
        _set(self, "values", tuple(_check(self, "values", v, "u32") for v in self.values))
        if len(self.values) > MAX_COUNTERS:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"Stats.values: expected at most {MAX_COUNTERS}, got {len(self.values)}")

    def named(self) -> dict[str, int]:
        return dict(zip(STATS_COUNTERS, self.values))

    def payload(self) -> bytes:
        return struct.pack(f"<HB{len(self.values)}I", self.ref_seq, len(self.values), *self.values)

    @classmethod
    def from_payload(cls, p: bytes) -> Stats:
        return cls(struct.unpack_from("<H", p)[0], struct.unpack_from(f"<{p[2]}I", p, 3))


@dataclass(frozen=True)
class ErrorReport:
    """ERROR: the device refused a frame (it never answers an ERROR, nor does the host)."""
    ref_seq: int
    code: int                       # ErrorCode; a newer device may send codes this one lacks
    ref_type: int
    detail: int
    TYPE: ClassVar[MsgType] = MsgType.ERROR

    def __post_init__(self):
        for name, kind in (("ref_seq", "u16"), ("code", "u8"), ("ref_type", "u8"), ("detail", "u32")):
            _set(self, name, _check(self, name, getattr(self, name), kind))

    def describe(self) -> str:
        code = ErrorCode(self.code).name if self.code in ErrorCode.__members__.values() else f"code {self.code}"
        what = MsgType(self.ref_type).name if self.ref_type in MsgType.__members__.values() else f"type {self.ref_type:#04x}"
        return f"device refused frame seq {self.ref_seq} ({what}): {code}, detail {self.detail}"

    def payload(self) -> bytes:
        return struct.pack("<HBBI", self.ref_seq, self.code, self.ref_type, self.detail)

    @classmethod
    def from_payload(cls, p: bytes) -> ErrorReport:
        return cls(*struct.unpack("<HBBI", p))


@dataclass(frozen=True)
class Samples:
    """Raw sensor samples, int16 [n_samples][channels] time-major; `first_index` counts samples
    since streaming started, so a receiver sees lost samples even across lost frames."""
    t_first_us: int
    first_index: int
    rate_mhz: int                   # sample rate in millihertz (25 Hz = 25000)
    channels: int
    n_samples: int
    samples: bytes                  # little-endian int16
    TYPE: ClassVar[MsgType] = MsgType.SAMPLES
    FIXED: ClassVar[str] = "<IIIBH"   # 15 bytes

    def __post_init__(self):
        for name, kind in (("t_first_us", "u32"), ("first_index", "u32"), ("rate_mhz", "u32"),
                           ("channels", "u8"), ("n_samples", "u16")):
            _set(self, name, _check(self, name, getattr(self, name), kind))
        _set(self, "samples", bytes(self.samples))
        if len(self.samples) != 2 * self.channels * self.n_samples:
            raise ProtocolError(ErrorCode.BAD_LENGTH, f"Samples.samples: expected 2·channels·n_samples = "
                                                      f"{2 * self.channels * self.n_samples} bytes, got {len(self.samples)}")
        if 15 + len(self.samples) > MAX_PAYLOAD:
            raise ProtocolError(ErrorCode.OVERLONG, f"Samples: {self.n_samples}×{self.channels} samples need "
                                                    f"{15 + len(self.samples)} payload bytes; at most {MAX_PAYLOAD}")

    @classmethod
    def from_array(cls, x: np.ndarray, t_first_us: int, first_index: int, rate_mhz: int) -> Samples:
        x = np.asarray(x)
        if x.ndim != 2 or x.dtype != np.int16:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"Samples: expected an int16 array [n, C], got {x.dtype} {x.shape}")
        return cls(t_first_us, first_index, rate_mhz, x.shape[1], x.shape[0], x.astype("<i2").tobytes())

    def array(self) -> np.ndarray:
        return np.frombuffer(self.samples, "<i2").reshape(self.n_samples, self.channels)

    def payload(self) -> bytes:
        return struct.pack(self.FIXED, self.t_first_us, self.first_index, self.rate_mhz, self.channels,
                           self.n_samples) + self.samples

    @classmethod
    def from_payload(cls, p: bytes) -> Samples:
        return cls(*struct.unpack_from(cls.FIXED, p), p[15:])


@dataclass(frozen=True)
class DeviceResult:
    """Device-tier cascade: a window the device committed on its own (the narrow answer)."""
    window_id: int
    t_last_us: int
    result: Result
    TYPE: ClassVar[MsgType] = MsgType.DEVICE_RESULT

    def __post_init__(self):
        _check(self, "window_id", self.window_id, "u32")
        _check(self, "t_last_us", self.t_last_us, "u32")

    def payload(self) -> bytes:
        return struct.pack("<II", self.window_id, self.t_last_us) + self.result.pack()

    @classmethod
    def from_payload(cls, p: bytes) -> DeviceResult:
        return cls(*struct.unpack_from("<II", p), Result.unpack(p, 8))


@dataclass(frozen=True)
class Uncertain:
    """Device-tier cascade: a window the device did not commit (margin <= threshold), with its
    narrow result and its int8 samples [in_channels][window] for the host's full width."""
    window_id: int
    t_last_us: int
    result: Result
    in_channels: int
    window: int
    samples: bytes
    TYPE: ClassVar[MsgType] = MsgType.UNCERTAIN

    def __post_init__(self):
        for name, kind in (("window_id", "u32"), ("t_last_us", "u32"), ("in_channels", "u16"), ("window", "u16")):
            _check(self, name, getattr(self, name), kind)
        _set(self, "samples", _int8_bytes(self, self.samples, self.in_channels, self.window))
        size = 8 + len(self.result.pack()) + 4 + len(self.samples)
        if size > MAX_PAYLOAD:
            raise ProtocolError(ErrorCode.OVERLONG, f"Uncertain: needs {size} payload bytes; at most {MAX_PAYLOAD}")

    def array(self) -> np.ndarray:
        return np.frombuffer(self.samples, np.int8).reshape(self.in_channels, self.window)

    def payload(self) -> bytes:
        return (struct.pack("<II", self.window_id, self.t_last_us) + self.result.pack()
                + struct.pack("<HH", self.in_channels, self.window) + self.samples)

    @classmethod
    def from_payload(cls, p: bytes) -> Uncertain:
        result = Result.unpack(p, 8)
        o = 8 + Result.LENGTH + 4 * len(result.logits)
        c, l = struct.unpack_from("<HH", p, o)
        return cls(*struct.unpack_from("<II", p), result, c, l, p[o + 4:])


Message = Union[VersionRequest, InferRequest, SetThreshold, StatsRequest, SetStream, SensorRequest, Version,
                InferResult, Ack, Stats, SensorInfo, ErrorReport, Samples, DeviceResult, Uncertain]
MESSAGES: dict[MsgType, type] = {cls.TYPE: cls for cls in Message.__args__}


# ------------------------------------------------------------------ payload layout checks

class _Refusal(NamedTuple):
    code: ErrorCode
    detail: int
    why: str


def _length(need: int, got: int, how: str = "") -> _Refusal:
    return _Refusal(ErrorCode.BAD_LENGTH, need, f"expected {how}{need} bytes, got {got}")


def _value(offset: int, what: str, expectation: str) -> _Refusal:
    return _Refusal(ErrorCode.BAD_VALUE, offset, f"byte {offset} ({what}): expected {expectation}")


def _check_result(p: bytes, o: int) -> _Refusal | None:
    if p[o] >= p[o + 2]:
        return _value(o, "predicted", f"a class below n_classes = {p[o + 2]}, got {p[o]}")
    if p[o + 1] > ResultPath.FULL:
        return _value(o + 1, "path", f"0..2, got {p[o + 1]}")
    return None


def _fixed(need: int, p: bytes) -> _Refusal | None:
    return None if len(p) == need else _length(need, len(p))


def _printable(p: bytes, start: int, n: int, what: str) -> _Refusal | None:
    for i in range(start, start + n):
        if not 0x20 <= p[i] <= 0x7E:
            return _value(i, what, f"printable ASCII, got {p[i]:#04x}")
    return None


def _check_sensor(p: bytes) -> _Refusal | None:
    """har_proto.c check_sensor: the fixed part, then the chain of channel records (each cut short
    asks for the bytes up to its next length field), the total length, then the text."""
    n = len(p)
    if n < 10:
        return _length(10, n, "at least ")
    if p[6] > SensorSource.RECORDING:
        return _value(6, "source", f"0..2, got {p[6]}")
    if p[9] > MAX_SENSOR_CHANNELS:
        return _value(9, "n_channels", f"at most {MAX_SENSOR_CHANNELS}, got {p[9]}")
    o = 10
    for i in range(p[9]):
        if n < o + 5:
            return _length(o + 5, n, f"at least (channel {i}: scale, name_len) ")
        if struct.unpack_from("<I", p, o)[0] & _FLOAT_EXPONENT == _FLOAT_EXPONENT:
            return _value(o, f"channel {i} scale", "a finite float32")
        if p[o + 4] > MAX_SENSOR_NAME:
            return _value(o + 4, f"channel {i} name_len", f"at most {MAX_SENSOR_NAME}, got {p[o + 4]}")
        o += 5 + p[o + 4]
        if n < o + 1:
            return _length(o + 1, n, f"at least (channel {i}: name, unit_len) ")
        if p[o] > MAX_SENSOR_UNIT:
            return _value(o, f"channel {i} unit_len", f"at most {MAX_SENSOR_UNIT}, got {p[o]}")
        o += 1 + p[o]
    if n != o:
        return _length(o, n, f"{p[9]} channel records: ")
    o = 10
    for i in range(p[9]):
        o += 4
        if bad := _printable(p, o + 1, p[o], f"channel {i} name"):
            return bad
        o += 1 + p[o]
        if bad := _printable(p, o + 1, p[o], f"channel {i} unit"):
            return bad
        o += 1 + p[o]
    return None


def _check_layout(t: MsgType, p: bytes) -> _Refusal | None:
    """firmware/protocol/har_proto.c check_layout, step for step (same order, same details):
    the fixed part's length, its fields, the total length, the variable part's fields."""
    n = len(p)
    if t in (MsgType.VERSION_REQ, MsgType.SENSOR_REQ, MsgType.SET_THRESHOLD, MsgType.ACK, MsgType.ERROR):
        return _fixed({MsgType.VERSION_REQ: 0, MsgType.SENSOR_REQ: 0, MsgType.SET_THRESHOLD: 8, MsgType.ACK: 11,
                       MsgType.ERROR: 8}[t], p)
    if t == MsgType.SENSOR:
        return _check_sensor(p)
    if t in (MsgType.STATS_REQ, MsgType.SET_STREAM):
        allowed = 1 if t == MsgType.STATS_REQ else STREAM_FLAGS
        return _fixed(1, p) or (_value(0, "flags", f"bits of {allowed:#x}, got {p[0]:#x}") if p[0] & ~allowed else None)
    if t == MsgType.INFER_REQ:
        h = InferRequest.HEADER
        if n < h:
            return _length(h, n, "at least ")
        if p[0] > InferMode.FULL:
            return _value(0, "mode", f"0..2, got {p[0]}")
        c, l = struct.unpack_from("<HH", p, 2)
        return None if n == h + c * l else _length(h + c * l, n, f"{h} + in_channels·window ({c}·{l}) = ")
    if t == MsgType.VERSION:
        if n < 31:
            return _length(31, n, "at least ")
        if p[19] > MAX_WIDTHS:
            return _value(19, "n_widths", f"at most {MAX_WIDTHS}, got {p[19]}")
        if p[30] > MAX_BOARD:
            return _value(30, "board_len", f"at most {MAX_BOARD}, got {p[30]}")
        need = 31 + 2 * p[19] + p[30]
        if n != need:
            return _length(need, n, f"31 + 2·n_widths ({p[19]}) + board_len ({p[30]}) = ")
        return _printable(p, 31 + 2 * p[19], p[30], "board")
    if t == MsgType.STATS:
        if n < 3:
            return _length(3, n, "at least ")
        if p[2] > MAX_COUNTERS:
            return _value(2, "n", f"at most {MAX_COUNTERS}, got {p[2]}")
        return None if n == 3 + 4 * p[2] else _length(3 + 4 * p[2], n, f"3 + 4·n ({p[2]}) = ")
    if t == MsgType.SAMPLES:
        if n < 15:
            return _length(15, n, "at least ")
        c, k = p[12], struct.unpack_from("<H", p, 13)[0]
        return None if n == 15 + 2 * c * k else _length(15 + 2 * c * k, n, f"15 + 2·channels·n_samples ({c}·{k}) = ")
    # the three with a result block: at 2 (INFER_RESULT) or 8 (DEVICE_RESULT, UNCERTAIN)
    o = 2 if t == MsgType.INFER_RESULT else 8
    if n < o + Result.LENGTH:
        return _length(o + Result.LENGTH, n, "at least ")
    if bad := _check_result(p, o):
        return bad
    need = o + Result.LENGTH + 4 * p[o + 2]
    if t != MsgType.UNCERTAIN:
        return None if n == need else _length(need, n, f"{o + Result.LENGTH} + 4·n_classes ({p[o + 2]}) = ")
    if n < need + 4:
        return _length(need + 4, n, f"at least {o + Result.LENGTH} + 4·n_classes ({p[o + 2]}) + 4 = ")
    c, l = struct.unpack_from("<HH", p, need)
    total = need + 4 + c * l
    return None if n == total else _length(total, n, f"{need + 4} + in_channels·window ({c}·{l}) = ")


def check_payload(type_: int, payload: bytes, receiver: Receiver = "any") -> tuple[ErrorCode, int, str] | None:
    """None if `receiver` accepts this type and payload, else (code, detail, why)."""
    if type_ not in MESSAGES:
        return ErrorCode.UNKNOWN_TYPE, 0, f"type {type_:#04x} is not a message of protocol version {PROTOCOL_VERSION}"
    t = MsgType(type_)
    if (receiver == "device") != (t in _REQUESTS) and receiver != "any":
        way = "host → device" if t in _REQUESTS else "device → host"
        return ErrorCode.UNKNOWN_TYPE, 1, f"{t.name} goes {way}; a {receiver} does not accept it"
    bad = _check_layout(t, payload)
    return None if bad is None else (bad.code, bad.detail, f"{t.name} payload: {bad.why}")


# ------------------------------------------------------------------ frames

def encode(message: Message, seq: int) -> bytes:
    """One complete frame: 00 | COBS(type, seq, payload, CRC) | 00."""
    seq = _check(message, "seq", seq, "u16")
    payload = message.payload()
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(ErrorCode.OVERLONG, f"{type(message).__name__}: payload of {len(payload)} bytes; "
                                                f"at most {MAX_PAYLOAD}")
    body = struct.pack("<BH", message.TYPE, seq) + payload
    return b"\0" + cobs_encode(body + struct.pack("<H", crc16(body))) + b"\0"


class Received(NamedTuple):
    seq: int
    message: Message


class Fault(NamedTuple):
    """A frame the decoder refused: what a device answers with (`report`), and why in words."""
    code: ErrorCode
    ref_type: int
    ref_seq: int
    detail: int
    why: str

    def report(self) -> ErrorReport:
        return ErrorReport(self.ref_seq, self.code, self.ref_type, self.detail)


@dataclass
class RxCounters:
    """A receiver's counters; every non-empty frame counts in exactly one of the first seven."""
    frames_ok: int = 0          # messages delivered
    crc_errors: int = 0
    cobs_errors: int = 0
    short_frames: int = 0
    overlong_frames: int = 0
    unknown_types: int = 0
    bad_payloads: int = 0
    dropped_bytes: int = 0      # wire bytes (delimiters excluded) of refused frames
    seq_gaps: int = 0           # CRC-valid frames whose seq is not the previous one's + 1

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))


_COUNTER_OF = {ErrorCode.CRC: "crc_errors", ErrorCode.COBS: "cobs_errors", ErrorCode.SHORT: "short_frames",
               ErrorCode.OVERLONG: "overlong_frames", ErrorCode.UNKNOWN_TYPE: "unknown_types",
               ErrorCode.BAD_LENGTH: "bad_payloads", ErrorCode.BAD_VALUE: "bad_payloads"}


class FrameDecoder:
    """Turns a byte stream into messages, resynchronizing on the next 0x00 after garbage, a torn,
    corrupted or overlong frame; counts each kind of refusal (`counters`) and never raises on
    input. `receiver`: "host" accepts device → host messages, "device" requests, "any" both.
    Decodes run by run (not byte by byte) so a 6 KB window costs a few dozen slices."""

    def __init__(self, receiver: Receiver = "host", max_payload: int = MAX_PAYLOAD,
                 on_fault: Callable[[Fault], None] | None = None):
        if receiver not in ("host", "device", "any"):
            raise ProtocolError(ErrorCode.BAD_VALUE, f"FrameDecoder: receiver must be 'host', 'device' or 'any', got {receiver!r}")
        if not 0 <= max_payload <= MAX_PAYLOAD:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"FrameDecoder: max_payload must be 0..{MAX_PAYLOAD}, got {max_payload}")
        self.receiver, self.max_payload, self.on_fault = receiver, max_payload, on_fault
        self.counters = RxCounters()
        self._limit = HEADER_BYTES + max_payload + CRC_BYTES     # longest body accepted
        self._next_seq: int | None = None
        self._discarding = False
        self._restart()

    def _restart(self) -> None:
        self._body = bytearray()
        self._code = 0          # 0: no COBS run yet in this frame
        self._left = 0          # bytes still due in the current run
        self._wire = 0          # wire bytes of this frame so far

    def feed(self, data: bytes) -> list[Received]:
        return [e for e in self.events(data) if isinstance(e, Received)]

    def events(self, data: bytes) -> list[Received | Fault]:
        """Messages and refusals in the order their frames ended."""
        data, out, pos = bytes(data), [], 0
        while pos < len(data):
            zero = data.find(0, pos)
            end = len(data) if zero < 0 else zero
            if end > pos:
                self._consume(data, pos, end, out)
            if zero < 0:
                break
            self._delimiter(out)
            pos = zero + 1
        return out

    def _consume(self, data: bytes, i: int, end: int, out: list) -> None:
        if self._discarding:
            self.counters.dropped_bytes += end - i
            return
        self._wire += end - i
        body = self._body
        while i < end:
            if self._left == 0:
                if self._code not in (0, 0xFF):          # the previous run stood for a 0x00
                    body.append(0)
                    if len(body) > self._limit:
                        return self._overlong(out)
                self._code = data[i]
                self._left = self._code - 1
                i += 1
            else:
                take = min(self._left, end - i)
                body += data[i:i + take]
                self._left -= take
                i += take
                if len(body) > self._limit:
                    return self._overlong(out)

    def _overlong(self, out: list) -> None:
        self._refuse(out, ErrorCode.OVERLONG, self.max_payload,
                     f"frame longer than {self._limit} body bytes (payload at most {self.max_payload})")
        self._discarding = True
        self._body = bytearray()             # the rest of the frame is counted, not kept

    def _delimiter(self, out: list) -> None:
        if self._discarding:
            self._discarding = False
        elif self._wire:                                  # runs of 0x00 are empty frames
            self._finish(out)
        self._restart()

    def _refuse(self, out: list, code: ErrorCode, detail: int, why: str) -> None:
        body = self._body
        ref_type, ref_seq = (body[0], body[1] | body[2] << 8) if len(body) >= HEADER_BYTES else (0, 0)
        setattr(self.counters, _COUNTER_OF[code], getattr(self.counters, _COUNTER_OF[code]) + 1)
        self.counters.dropped_bytes += self._wire
        fault = Fault(code, ref_type, ref_seq, detail, why)
        out.append(fault)
        if self.on_fault:
            self.on_fault(fault)

    def _finish(self, out: list) -> None:
        body = self._body
        if self._left:
            return self._refuse(out, ErrorCode.COBS, len(body), f"torn frame: the COBS run ends "
                                f"{self._left} bytes early (after {len(body)} body bytes)")
        if len(body) < HEADER_BYTES + CRC_BYTES:
            return self._refuse(out, ErrorCode.SHORT, len(body), f"frame of {len(body)} body bytes; "
                                f"expected at least {HEADER_BYTES + CRC_BYTES} (type, seq, CRC)")
        computed, received = crc16(bytes(body[:-CRC_BYTES])), body[-2] | body[-1] << 8
        if computed != received:
            return self._refuse(out, ErrorCode.CRC, received << 16 | computed,
                                f"CRC {received:#06x} received, {computed:#06x} computed")
        type_, seq = body[0], body[1] | body[2] << 8
        if self._next_seq is not None and seq != self._next_seq:
            self.counters.seq_gaps += 1
        self._next_seq = (seq + 1) & 0xFFFF
        payload = bytes(body[HEADER_BYTES:-CRC_BYTES])
        bad = check_payload(type_, payload, self.receiver)
        if bad:
            return self._refuse(out, *bad)
        self.counters.frames_ok += 1
        out.append(Received(seq, MESSAGES[MsgType(type_)].from_payload(payload)))


def decode_frame(frame: bytes, receiver: Receiver = "any", max_payload: int = MAX_PAYLOAD) -> Received:
    """Exactly one frame (its delimiters optional) → (seq, message); ProtocolError otherwise."""
    events = FrameDecoder(receiver, max_payload).events(bytes(frame).strip(b"\0") + b"\0")
    if len(events) != 1:
        raise ProtocolError(ErrorCode.SHORT if not events else ErrorCode.BAD_LENGTH,
                            f"expected exactly one frame, got {len(events)}")
    event = events[0]
    if isinstance(event, Fault):
        raise ProtocolError(event.code, event.why, event.ref_type, event.ref_seq, event.detail)
    return event
