"""Movesense (Suunto/Movesense MD, Flash, …) over the GATT SensorData Protocol (GSP, version 1).

GATT (Movesense's "GATT SensorData Protocol specification", movesense.com/docs/esw/
gatt_sensordata_protocol, revised from Movesense document GD-77 v1.0):

| role | UUID | properties |
|---|---|---|
| GSP service | `34802252-7185-4d5d-b431-630e7050e8f0` | |
| command (host → sensor) | `34800001-7185-4d5d-b431-630e7050e8f0` | write |
| response/data (sensor → host) | `34800002-7185-4d5d-b431-630e7050e8f0` | notify |

The sensor advertises its name ("Movesense <serial>") and 16-bit services, not the 128-bit GSP
service (an advertisement has no room for both), so a scan matches on the name.

**Commands** (one write): `command u8, reference u8 (client-chosen, not 0), payload`.
HELLO 0 (no payload); SUBSCRIBE 1 (payload: the Whiteboard resource path as UTF-8, e.g.
`/Meas/IMU6/104`; the firmware NUL-terminates it itself); UNSUBSCRIBE 2 (no payload; the reference
of the SUBSCRIBE). Source: the spec above and the firmware sample `gatt_sensordata_app`
(`GATTSensorDataClient.cpp`, movesense-device-lib) whose `handleIncomingCommand` reads
`cmd = data[0]`, `reference = data[1]`, path = `data[2:]`.

**Notifications**: `response u8, reference u8, body`. COMMAND_RESULT 1: body = u16 LE HTTP-style
status (+ data), except for HELLO whose body is `protocol version u8` then NUL-separated strings
(serial, product, DFU MAC, app name, app version; as Movesense's python-datalogger-tool reads it)
— the sample app answers plain "Hello", which is also accepted. DATA 2: body = the resource's
binary notification. DATA_PART2 3: the rest of a body that did not fit in one notification (the
firmware's buffer is MTU − 3 = 158 bytes); the host concatenates DATA + DATA_PART2 bodies.

**IMU bodies** (`/Meas/IMU6/{rate}`, `/Meas/IMU9/{rate}`, fields in the API's order, LE, no
padding, no array counts): `Timestamp u32` (ms, local time of the **first** sample), then
`ArrayAcc` n × (x, y, z float32, m/s²), `ArrayGyro` n × float32 triples (°/s), and for IMU9
`ArrayMagn` n × float32 triples (µT) — array-major ("Timestamp: local timestamp of first
measurement", Movesense API `meas_imu`). n is rate/13: 4 samples at 52 Hz (a hardware capture of
IMU9/52 is a 148-byte body), 8 at 104 Hz (IMU9: 292 bytes, so DATA + DATA_PART2; Movesense's
python client joins the two parts and reads 8 samples for IMU9/104). This profile supports 13,
26, 52 and 104 Hz, where a body fits in at most the two parts the protocol defines.

**Units** → SI: acc m/s² as sent; gyro °/s × π/180 → rad/s; magn µT as sent (no quantization
beyond float32). **Time**: the u32 ms counter (wraps after 49.7 days) is mapped to host time by
`DeviceClock`. **Loss**: there is no packet counter; a lost notification shows as a jump of the
first-sample time stamp by more than one packet's n/rate (a lost DATA_PART2 drops its record: the
half left pending is counted in `incomplete_records`).
"""
from __future__ import annotations

import asyncio
import math
import re
import struct
from dataclasses import dataclass
from typing import Callable

import numpy as np

from streamhar.sources.ble.profile import (Frame, NotificationsRefused, Profile, StreamSpec, imu_axes,
                                           uuid_str)
from streamhar.sources.ble.registry import register_profile

SERVICE = "34802252-7185-4d5d-b431-630e7050e8f0"
COMMAND_CHAR = "34800001-7185-4d5d-b431-630e7050e8f0"
DATA_CHAR = "34800002-7185-4d5d-b431-630e7050e8f0"

HELLO, SUBSCRIBE, UNSUBSCRIBE = 0, 1, 2                 # commands
COMMAND_RESULT, DATA, DATA_PART2 = 1, 2, 3             # notification types
RATES = (13.0, 26.0, 52.0, 104.0)                      # IMU rates whose bodies fit in ≤ 2 parts
MAX_NOTIFICATION = 158                                 # firmware data buffer: MTU 161 − 3
KINDS = {"IMU6": ("acc", "gyro"), "IMU9": ("acc", "gyro", "mag")}
DEG = math.pi / 180.0

_PATH = re.compile(r"^/?Meas/(IMU6|IMU9)/(\d+)\x00?$")


class GspError(ValueError):
    """Bytes that break the GATT SensorData Protocol (the message says what was expected)."""


# ---------------------------------------------------------------------------------- commands


def encode_command(command: int, reference: int, payload: bytes = b"") -> bytes:
    if not 1 <= reference <= 255:
        raise GspError(f"Movesense GSP: reference {reference} outside 1–255 (0 means 'none' to the firmware)")
    return bytes([command, reference]) + payload


def imu_path(kind: str, rate: float) -> str:
    if kind not in KINDS:
        raise GspError(f"Movesense GSP: IMU kind {kind!r}, expected one of {', '.join(KINDS)}")
    return f"/Meas/{kind}/{int(rate)}"


def parse_imu_path(path: str) -> tuple[str, float]:
    """'/Meas/IMU6/104' (leading slash and trailing NUL optional) → ('IMU6', 104.0)."""
    m = _PATH.match(path)
    if not m:
        raise GspError(f"Movesense GSP: resource path {path!r}, expected /Meas/IMU6/<rate> or /Meas/IMU9/<rate>")
    return m[1], float(m[2])


@dataclass(frozen=True)
class Command:
    command: int
    reference: int
    payload: bytes


def decode_command(data: bytes) -> Command:
    """A write to the command characteristic (the sensor's side)."""
    if len(data) < 2:
        raise GspError(f"Movesense GSP: command of {len(data)} bytes, expected ≥ 2 (command, reference)")
    if data[1] == 0:
        raise GspError("Movesense GSP: command with reference 0, expected 1–255")
    return Command(data[0], data[1], bytes(data[2:]))


# ---------------------------------------------------------------------------------- responses


@dataclass(frozen=True)
class Hello:
    version: int
    serial: str = ""
    product: str = ""
    dfu_mac: str = ""
    app_name: str = ""
    app_version: str = ""


def encode_hello(reference: int, hello: Hello) -> bytes:
    strings = (hello.serial, hello.product, hello.dfu_mac, hello.app_name, hello.app_version)
    return bytes([COMMAND_RESULT, reference, hello.version]) + b"".join(s.encode() + b"\0" for s in strings)


def decode_hello(body: bytes) -> Hello:
    if body.startswith(b"Hello"):        # gatt_sensordata_app sample firmware: no version, no strings
        return Hello(0, app_name="gatt_sensordata_app")
    if not body:
        raise GspError("Movesense GSP: empty HELLO response, expected protocol version + identity strings")
    fields = [s.decode("utf-8", "replace") for s in body[1:].split(b"\0")] + [""] * 5
    return Hello(body[0], *fields[:5])


def encode_result(reference: int, status: int, data: bytes = b"") -> bytes:
    return bytes([COMMAND_RESULT, reference]) + struct.pack("<H", status) + data


def split_notification(data: bytes) -> tuple[int, int, bytes]:
    """(response type, reference, body) of a notification."""
    if len(data) < 2:
        raise GspError(f"Movesense GSP: notification of {len(data)} bytes, expected ≥ 2 (type, reference)")
    if data[0] not in (COMMAND_RESULT, DATA, DATA_PART2):
        raise GspError(f"Movesense GSP: notification type {data[0]}, expected 1 (result), 2 (data) or 3 (data part 2)")
    return data[0], data[1], bytes(data[2:])


# ---------------------------------------------------------------------------------- IMU data


def samples_per_packet(rate: float) -> int:
    if rate not in RATES:
        raise GspError(f"Movesense GSP: IMU rate {rate:g} Hz, expected one of {', '.join(f'{r:g}' for r in RATES)}")
    return int(rate) // 13


def body_size(kind: str, n: int) -> int:
    return 4 + 12 * len(KINDS[kind]) * n


def encode_imu(reference: int, timestamp_ms: int, acc, gyro, mag=None,
               max_notification: int = MAX_NOTIFICATION) -> list[bytes]:
    """One IMU record → its notifications: DATA, plus DATA_PART2 for what does not fit.
    acc in m/s², gyro in °/s, mag in µT, each [n, 3]; the time stamp wraps at 2**32 ms."""
    arrays = [np.asarray(a, dtype="<f4").reshape(-1, 3) for a in (acc, gyro, mag) if a is not None]
    if len({len(a) for a in arrays}) != 1 or not len(arrays[0]):
        raise GspError(f"Movesense GSP: IMU arrays of {[len(a) for a in arrays]} samples, expected equal and ≥ 1")
    body = struct.pack("<I", int(timestamp_ms) % (1 << 32)) + b"".join(a.tobytes() for a in arrays)
    room = max_notification - 2
    if len(body) > 2 * room:
        raise GspError(f"Movesense GSP: IMU body of {len(body)} bytes does not fit DATA + DATA_PART2 "
                       f"({2 * room} bytes at {max_notification}-byte notifications)")
    parts = [bytes([DATA, reference]) + body[:room]]
    if len(body) > room:
        parts.append(bytes([DATA_PART2, reference]) + body[room:])
    return parts


def decode_imu_body(body: bytes, kind: str) -> tuple[int, np.ndarray]:
    """A complete IMU body → (time stamp ms, float64 [n, 3·q] in the wire's units: m/s², °/s, µT)."""
    q = len(KINDS[kind])
    size = len(body) - 4
    if size <= 0 or size % (12 * q):
        raise GspError(f"Movesense GSP: {kind} body of {len(body)} bytes, expected 4 + n·{12 * q} "
                       f"(u32 time stamp, then {q} arrays of n float32 triples)")
    n = size // (12 * q)
    values = np.frombuffer(body, dtype="<f4", offset=4).astype(np.float64).reshape(q, n, 3)
    return struct.unpack_from("<I", body)[0], np.concatenate(list(values), axis=1)


class ImuAssembler:
    """Joins DATA + DATA_PART2 of one subscription into complete IMU bodies."""

    def __init__(self, reference: int, kind: str, rate: float):
        self.reference, self.kind = reference, kind
        self.expected = body_size(kind, samples_per_packet(rate))
        self.pending: bytes | None = None
        self.incomplete = 0                  # first parts whose DATA_PART2 never came

    def reset(self) -> None:
        self.pending = None

    def feed(self, kind: int, reference: int, body: bytes) -> bytes | None:
        if reference != self.reference:
            raise GspError(f"Movesense GSP: data for reference {reference}, expected {self.reference}")
        if kind == DATA:
            if self.pending is not None:
                self.incomplete += 1
                self.pending = None
            if len(body) < self.expected:
                self.pending = body
                return None
            return body
        if self.pending is None:
            raise GspError("Movesense GSP: DATA_PART2 without its DATA (first part lost)")
        whole, self.pending = self.pending + body, None
        if len(whole) != self.expected:
            raise GspError(f"Movesense GSP: {self.kind} record of {len(whole)} bytes after DATA_PART2, "
                           f"expected {self.expected}")
        return whole


# ---------------------------------------------------------------------------------- host profile


@register_profile
class MovesenseProfile(Profile):
    name = "movesense"
    title = "Movesense (GATT SensorData Protocol, IMU6/IMU9)"
    service_uuids = (SERVICE,)
    name_patterns = ("Movesense*",)
    tick_hz = 1000.0
    wrap_bits = 32
    rates = RATES
    default_rate = 104.0

    DATA_REF, HELLO_REF = 0x63, 0x64
    RESPONSE_TIMEOUT_S = 2.0

    def __init__(self, *, kind: str = "IMU6", **kw):
        if kind not in KINDS:
            raise ValueError(f"ble:movesense: kind {kind!r}, expected IMU6 or IMU9")
        self.kind = kind
        super().__init__(**kw)
        self.hello: Hello | None = None
        self.subscribe_status: int | None = None
        self._assembler = ImuAssembler(self.DATA_REF, kind, self.rate)
        self._results: dict[int, asyncio.Future] = {}

    def default_streams(self) -> tuple[StreamSpec, ...]:
        return (StreamSpec("imu", imu_axes(*KINDS[self.kind]), self.rate),)

    @property
    def incomplete_records(self) -> int:
        return self._assembler.incomplete

    # -- decoding

    def decode(self, char_uuid: str, data: bytes) -> list[Frame]:
        kind, reference, body = split_notification(data)
        if kind == COMMAND_RESULT:
            fut = self._results.pop(reference, None)
            if fut is not None and not fut.done():
                fut.set_result(body)
            return []
        whole = self._assembler.feed(kind, reference, body)
        if whole is None:
            return []
        ticks, values = decode_imu_body(whole, self.kind)
        values[:, 3:6] *= DEG                     # gyro °/s → rad/s
        return [Frame("imu", values.astype(np.float32), ticks, "first")]

    def reset(self) -> None:
        self._assembler.reset()

    # -- streaming

    async def _command(self, client, command: int, reference: int, payload: bytes = b"") -> bytes | None:
        """Send a command and wait for its COMMAND_RESULT (None if none came: GSP responses are
        notifications, 'delivery not guaranteed' says the spec)."""
        fut = asyncio.get_running_loop().create_future()
        self._results[reference] = fut
        await client.write_gatt_char(uuid_str(COMMAND_CHAR), encode_command(command, reference, payload),
                                     response=True)
        try:
            return await asyncio.wait_for(fut, self.RESPONSE_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._results.pop(reference, None)
            return None

    async def start(self, client, on_frame: Callable[[Frame], None]) -> None:
        self.require_characteristic(client, COMMAND_CHAR)
        self.reset()
        await self.subscribe(client, DATA_CHAR, on_frame)
        body = await self._command(client, HELLO, self.HELLO_REF)
        if body is None:
            raise NotificationsRefused(f"{self.who(client)}: Movesense did not answer HELLO within "
                                       f"{self.RESPONSE_TIMEOUT_S:g} s (expected a GSP sensor)")
        self.hello = decode_hello(body)
        path = imu_path(self.kind, self.rate)
        body = await self._command(client, SUBSCRIBE, self.DATA_REF, path.encode())
        if body is not None and len(body) >= 2:
            self.subscribe_status = struct.unpack_from("<H", body)[0]
            if self.subscribe_status >= 400:
                raise NotificationsRefused(f"{self.who(client)}: Movesense refused SUBSCRIBE {path} with "
                                           f"status {self.subscribe_status} (expected 200)")

    async def stop(self, client) -> None:
        try:
            await client.write_gatt_char(uuid_str(COMMAND_CHAR), encode_command(UNSUBSCRIBE, self.DATA_REF),
                                         response=True)
            await client.stop_notify(uuid_str(DATA_CHAR))
        except Exception:       # the link may already be gone: stopping must not raise
            pass
