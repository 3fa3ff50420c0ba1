"""Polar Measurement Data (PMD) protocol: the bytes, both ways (host decoder and emulator encoder).

Source: Polar's "Polar Measurement Data Specification" (polar-ble-sdk,
technical_documentation/Polar_Measurement_Data_Specification.pdf) and the SDK's documented
behaviour (TimeSystemExplained.md for the time base). All integers little-endian.

* Service FB005C80-02E7-F387-1CAD-8ACD2D8DF0C8; control point …5C81 (read, write, indicate); data
  …5C82 (notify).
* Reading the control point: 0x0F, then a feature bit field (bit n = measurement type n available).
* Commands written to the control point: [op code, measurement type, settings…] with op codes
  GET_MEASUREMENT_SETTINGS 1, REQUEST_MEASUREMENT_START 2, STOP_MEASUREMENT 3; measurement types
  ECG 0, PPG 1, ACC 2, PPI 3, GYRO 5, MAG 6. A setting is [type, count, count × value] with types
  SAMPLE_RATE 0 (u16 Hz), RESOLUTION 1 (u16 bits), RANGE 2 (u16, g or deg/s), RANGE_MILLIUNIT 3
  (u32), CHANNELS 4 (u8), FACTOR 5 (float32); a start command carries one value per setting.
* Responses are indicated on the control point: 0xF0, op code, measurement type, status (0 =
  success, `ERRORS` otherwise), "more" flag, parameters (settings TLVs: the available settings for
  GET, the FACTOR in use for START).
* A data frame: u8 measurement type, u64 time stamp in ns since 2000-01-01T00:00:00Z of the
  frame's LAST sample, u8 frame type (bit 7: delta compressed; bits 0–6: type number), samples.
  Raw ACC frames: type 0/1/2 = int8/int16/int24 x, y, z per sample, in mG (Polar H10).
  Delta-compressed frames (Verity Sense ACC type 1 and GYRO type 0, int16 resolution): a reference
  sample (channels × ceil(resolution/8) bytes, signed), then blocks of [u8 delta bit width, u8
  sample count, sample count × channels deltas of that width, two's complement, packed LSB first,
  padded to whole bytes]; each sample is the previous one plus its delta, and the values times the
  stream's FACTOR are mG (ACC) or deg/s (GYRO).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

SERVICE = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
CONTROL = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
DATA = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

GET_SETTINGS, START, STOP = 1, 2, 3
FEATURES_BYTE, RESPONSE_BYTE = 0x0F, 0xF0
ECG, PPG, ACC, PPI, GYRO, MAG = 0, 1, 2, 3, 5, 6
TYPE_NAMES = {ECG: "ECG", PPG: "PPG", ACC: "ACC", PPI: "PPI", GYRO: "GYRO", MAG: "MAG"}
SAMPLE_RATE, RESOLUTION, RANGE, RANGE_MILLIUNIT, CHANNELS, FACTOR = 0, 1, 2, 3, 4, 5
_FIELD = {SAMPLE_RATE: "<H", RESOLUTION: "<H", RANGE: "<H", RANGE_MILLIUNIT: "<I", CHANNELS: "<B", FACTOR: "<f"}
ERRORS = {0: "SUCCESS", 1: "ERROR_INVALID_OP_CODE", 2: "ERROR_INVALID_MEASUREMENT_TYPE", 3: "ERROR_NOT_SUPPORTED",
          4: "ERROR_INVALID_LENGTH", 5: "ERROR_INVALID_PARAMETER", 6: "ERROR_ALREADY_IN_STATE",
          7: "ERROR_INVALID_RESOLUTION", 8: "ERROR_INVALID_SAMPLE_RATE", 9: "ERROR_INVALID_RANGE",
          10: "ERROR_INVALID_MTU", 11: "ERROR_INVALID_NUMBER_OF_CHANNELS", 12: "ERROR_INVALID_STATE",
          13: "ERROR_DEVICE_IN_CHARGER", 14: "ERROR_DISK_FULL"}
SUCCESS, ALREADY_IN_STATE = 0, 6
DELTA_BIT = 0x80
EPOCH_2000_UNIX_NS = 946_684_800_000_000_000   # 2000-01-01 − 1970-01-01 in ns
FRAME_HEADER = struct.Struct("<BQB")            # measurement type, time stamp ns, frame type


# ---------------------------------------------------------------------------------- settings


def encode_settings(settings: dict[int, list]) -> bytes:
    out = bytearray()
    for kind, values in settings.items():
        out += bytes([kind, len(values)])
        for v in values:
            out += struct.pack(_FIELD[kind], v)
    return bytes(out)


def parse_settings(data: bytes) -> dict[int, list]:
    """Settings TLVs → {type: [values]}; ValueError on a truncated or unknown setting."""
    out: dict[int, list] = {}
    i = 0
    while i < len(data):
        if i + 2 > len(data) or data[i] not in _FIELD:
            raise ValueError(f"PMD settings: bad setting at byte {i} of {data.hex()}")
        kind, count = data[i], data[i + 1]
        size = struct.calcsize(_FIELD[kind])
        i += 2
        if i + size * count > len(data):
            raise ValueError(f"PMD settings: setting {kind} truncated in {data.hex()}")
        out[kind] = [struct.unpack_from(_FIELD[kind], data, i + j * size)[0] for j in range(count)]
        i += size * count
    return out


def command(op: int, mtype: int, settings: dict[int, int] | None = None) -> bytes:
    return bytes([op, mtype]) + encode_settings({k: [v] for k, v in (settings or {}).items()})


def parse_command(data: bytes) -> tuple[int, int, dict[int, int]]:
    if len(data) < 2:
        raise ValueError("PMD command shorter than 2 bytes")
    return data[0], data[1], {k: v[0] for k, v in parse_settings(data[2:]).items() if v}


@dataclass(frozen=True)
class Response:
    op: int
    mtype: int
    status: int
    more: bool = False
    params: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == SUCCESS

    @property
    def error(self) -> str:
        return ERRORS.get(self.status, f"error {self.status}")

    def encode(self) -> bytes:
        return bytes([RESPONSE_BYTE, self.op, self.mtype, self.status, int(self.more)]) + self.params


def parse_response(data: bytes) -> Response:
    if len(data) < 4 or data[0] != RESPONSE_BYTE:
        raise ValueError(f"not a PMD control point response: {data[:8].hex()}")
    more = len(data) > 4 and data[4] != 0
    return Response(data[1], data[2], data[3], more, bytes(data[5:]) if data[3] == SUCCESS else b"")


def features(types: set[int]) -> bytes:
    return bytes([FEATURES_BYTE, sum(1 << t for t in types if t < 8), 0])


def parse_features(data: bytes) -> set[int]:
    if len(data) < 2 or data[0] != FEATURES_BYTE:
        raise ValueError(f"PMD control point read {data[:4].hex()}: expected 0f + feature bits")
    return {t for t in range(8) if data[1] >> t & 1}


# ---------------------------------------------------------------------------------- data frames


@dataclass(frozen=True)
class DataFrame:
    mtype: int
    timestamp_ns: int        # of the LAST sample
    frame_type: int          # 0–127
    compressed: bool
    body: bytes = field(repr=False)

    def encode(self) -> bytes:
        kind = self.frame_type | (DELTA_BIT if self.compressed else 0)
        return FRAME_HEADER.pack(self.mtype, self.timestamp_ns, kind) + self.body


def parse_frame(data: bytes) -> DataFrame:
    if len(data) < FRAME_HEADER.size:
        raise ValueError(f"PMD data frame of {len(data)} bytes, shorter than its 10-byte header")
    mtype, ts, ft = FRAME_HEADER.unpack_from(data)
    return DataFrame(mtype, ts, ft & 0x7F, bool(ft & DELTA_BIT), bytes(data[FRAME_HEADER.size:]))


def encode_raw(values: np.ndarray, nbytes: int) -> bytes:
    """int [n, C] → little-endian signed `nbytes`-byte fields, sample-major."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if nbytes in (1, 2, 4):
        return v.astype(f"<i{nbytes}").tobytes()
    return b"".join(int(x).to_bytes(nbytes, "little", signed=True) for x in v)


def decode_raw(body: bytes, channels: int, nbytes: int) -> np.ndarray:
    step = channels * nbytes
    if len(body) == 0 or len(body) % step:
        raise ValueError(f"PMD raw frame body of {len(body)} bytes is not a whole number of {step}-byte samples")
    if nbytes in (1, 2, 4):
        return np.frombuffer(body, f"<i{nbytes}").astype(np.int64).reshape(-1, channels)
    vals = [int.from_bytes(body[i:i + nbytes], "little", signed=True) for i in range(0, len(body), nbytes)]
    return np.asarray(vals, dtype=np.int64).reshape(-1, channels)


def _width(lo: int, hi: int) -> int:
    """Smallest two's complement bit width holding every value in [lo, hi] (at least 1)."""
    w = 1
    while lo < -(1 << (w - 1)) or hi > (1 << (w - 1)) - 1:
        w += 1
    return w


def encode_delta(values: np.ndarray, resolution: int, block: int = 255) -> bytes:
    """int [n, C] (n ≥ 1) → a delta-compressed body: reference sample, then blocks of at most
    `block` deltas, each block packed at the narrowest width that holds its deltas."""
    v = np.asarray(values, dtype=np.int64)
    n, c = v.shape
    out = bytearray(encode_raw(v[:1], (resolution + 7) // 8))
    d = np.diff(v, axis=0)
    for s in range(0, len(d), block):
        chunk = d[s:s + block]
        w = _width(int(chunk.min()), int(chunk.max()))
        mask, acc, pos = (1 << w) - 1, 0, 0
        for x in chunk.reshape(-1):
            acc |= (int(x) & mask) << pos
            pos += w
        out += bytes([w, len(chunk)]) + acc.to_bytes((pos + 7) // 8, "little")
    return bytes(out)


def decode_delta(body: bytes, channels: int, resolution: int) -> np.ndarray:
    ref_bytes = (resolution + 7) // 8
    if len(body) < channels * ref_bytes:
        raise ValueError(f"PMD delta frame of {len(body)} bytes, shorter than its reference sample")
    rows = [decode_raw(body[:channels * ref_bytes], channels, ref_bytes)[0].tolist()]
    i = channels * ref_bytes
    while i < len(body):
        if i + 2 > len(body):
            raise ValueError(f"PMD delta frame: block header truncated at byte {i}")
        w, count = body[i], body[i + 1]
        i += 2
        nbytes = (w * count * channels + 7) // 8
        if w == 0 or w > 32 or i + nbytes > len(body):
            raise ValueError(f"PMD delta frame: block of {count} × {w}-bit deltas does not fit at byte {i}")
        acc, mask, sign = int.from_bytes(body[i:i + nbytes], "little"), (1 << w) - 1, 1 << (w - 1)
        pos = 0
        for _ in range(count):
            prev = rows[-1]
            row = []
            for ch in range(channels):
                x = (acc >> pos) & mask
                pos += w
                row.append(prev[ch] + (x - (1 << w) if x & sign else x))
            rows.append(row)
        i += nbytes
    return np.asarray(rows, dtype=np.int64)
