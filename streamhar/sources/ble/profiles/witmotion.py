"""WitMotion WT901BLECL / BWT901BLE (Bluetooth 4.0/5.0 9-axis attitude sensors).

GATT (WitMotion's own SDK, github.com/WITMOTION/WitBluetooth_BWT901BLE5_0,
`Python/BWT901BLE5.0_python_sdk/device_model.py`):

| role | UUID | properties |
|---|---|---|
| service | `0000ffe5-0000-1000-8000-00805f9a34fb` | |
| data (sensor → host) | `0000ffe4-0000-1000-8000-00805f9a34fb` | notify |
| command (host → sensor) | `0000ffe9-0000-1000-8000-00805f9a34fb` | write, write without response |

**Data** (WT901BLECL datasheet v20-0707 §6.1.1): the sensor streams 20-byte packets
`0x55 0x61` + 9 × int16 LE: acceleration x, y, z (value / 32768 · 16 g), angular velocity x, y, z
(/ 32768 · 2000 °/s), angle roll, pitch, yaw (/ 32768 · 180 °). No checksum, no counter, no time
stamp. A notification may carry a packet split or several packets (the vendor SDK buffers bytes
and resynchronises on `0x55 0x61`), so decoding is a byte-stream parser. `0x55 0x71` packets
(20 bytes: start register u16 LE + 8 registers int16 LE) answer register reads.

**Commands** (5 bytes, `FF AA register value-low value-high`; WIT standard protocol, vendor
`REG.h`): unlock `FF AA 69 88 B5` (writes allowed for 10 s), return rate `FF AA 03 RATE 00`
(RATE 0x01 0.2 Hz, 0x02 0.5, 0x03 1, 0x04 2, 0x05 5, 0x06 10 (default), 0x07 20, 0x08 50,
0x09 100, 0x0B 200 Hz; the WT901BLECL datasheet lists up to 50 Hz), save `FF AA 00 00 00`, read
register `FF AA 27 REG 00` (answered by `0x55 0x71`). Start = unlock, set the rate, save (the
vendor SDK's `writeReg` sequence, 100 ms apart), enable notifications, then read register 0x03
back to confirm the rate; stop = disable notifications (the sensor streams whenever they are on).

**Units** → SI: acceleration g × 9.80665 → m/s² (the datasheet's own formula uses g = 9.8);
°/s × π/180 → rad/s; angles ° × π/180 → rad (optional channels `angle.x/y/z`). Resolution:
16/32768 g (0.0048 m/s²), 2000/32768 °/s, 180/32768 °.

**Time and loss — the honest caveat**: the protocol has **no device time stamp and no packet
counter**. Samples are placed on the host clock by their arrival, and a lost notification can only
be inferred from arrival timing against the configured rate. `ArrivalCounter` numbers packets from
the lower envelope of their arrival times and hands that number to the time line as the packet
counter: connection-event batching, jitter and a stall followed by a burst are not counted; a loss
is counted about one second after it happened; a link whose latency grows for good by a period or
more cannot be told from lost packets and is counted as such.
"""
from __future__ import annotations

import asyncio
import math
import struct
import time
from typing import Callable

import numpy as np

from streamhar.sources.ble.profile import (STANDARD_GRAVITY, Frame, NotificationsRefused, Profile, StreamSpec,
                                           imu_axes, uuid_str)
from streamhar.sources.ble.registry import register_profile
from streamhar.sources.ble.timeline import ArrivalCounter

SERVICE = "0000ffe5-0000-1000-8000-00805f9a34fb"
DATA_CHAR = "0000ffe4-0000-1000-8000-00805f9a34fb"
COMMAND_CHAR = "0000ffe9-0000-1000-8000-00805f9a34fb"

HEADER = 0x55
FLAG_DATA, FLAG_REGISTERS = 0x61, 0x71
PACKET = 20
ACC_G, GYRO_DPS, ANGLE_DEG = 16.0 / 32768, 2000.0 / 32768, 180.0 / 32768   # per LSB
DEG = math.pi / 180.0

REG_SAVE, REG_RRATE, REG_READADDR, REG_KEY = 0x00, 0x03, 0x27, 0x69
KEY_UNLOCK = 0xB588
RATE_CODES = {0.2: 0x01, 0.5: 0x02, 1.0: 0x03, 2.0: 0x04, 5.0: 0x05, 10.0: 0x06, 20.0: 0x07,
              50.0: 0x08, 100.0: 0x09, 200.0: 0x0B}
CODE_RATES = {v: k for k, v in RATE_CODES.items()}


class WitError(ValueError):
    """Bytes that break the WIT protocol (the message says what was expected)."""


# ---------------------------------------------------------------------------------- commands


def encode_command(register: int, value: int) -> bytes:
    if not 0 <= register <= 0xFF or not 0 <= value <= 0xFFFF:
        raise WitError(f"WitMotion: register {register:#x} = {value:#x}, expected a byte and a u16")
    return bytes([0xFF, 0xAA, register]) + struct.pack("<H", value)


def unlock() -> bytes:
    return encode_command(REG_KEY, KEY_UNLOCK)


def save() -> bytes:
    return encode_command(REG_SAVE, 0)


def set_rate(rate: float) -> bytes:
    if rate not in RATE_CODES:
        raise WitError(f"WitMotion: rate {rate:g} Hz, expected one of {', '.join(f'{r:g}' for r in RATE_CODES)}")
    return encode_command(REG_RRATE, RATE_CODES[rate])


def read_register(register: int) -> bytes:
    return encode_command(REG_READADDR, register)


def decode_command(data: bytes) -> tuple[int, int]:
    """A 5-byte command (the sensor's side) → (register, value)."""
    if len(data) != 5 or data[0] != 0xFF or data[1] != 0xAA:
        raise WitError(f"WitMotion: command {bytes(data).hex(' ')}, expected 5 bytes FF AA register value-lo value-hi")
    return data[2], struct.unpack_from("<H", data, 3)[0]


# ---------------------------------------------------------------------------------- packets


def _to_int16(values: np.ndarray, lsb: float) -> np.ndarray:
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) / lsb), -32768, 32767).astype("<i2")


def encode_data(acc_g, gyro_dps, angle_deg) -> bytes:
    """One 0x55 0x61 packet from acc (g), gyro (°/s), angle (°), each 3 values (saturating)."""
    words = np.concatenate([_to_int16(acc_g, ACC_G), _to_int16(gyro_dps, GYRO_DPS), _to_int16(angle_deg, ANGLE_DEG)])
    if words.shape != (9,):
        raise WitError(f"WitMotion: {words.shape[0]} values for a data packet, expected 3 + 3 + 3")
    return bytes([HEADER, FLAG_DATA]) + words.tobytes()


def decode_data(packet: bytes) -> np.ndarray:
    """A 0x55 0x61 packet → float64 [9]: acc (g), gyro (°/s), angle (°)."""
    if len(packet) != PACKET or packet[0] != HEADER or packet[1] != FLAG_DATA:
        raise WitError(f"WitMotion: data packet {bytes(packet[:4]).hex(' ')}… of {len(packet)} bytes, "
                       f"expected {PACKET} bytes starting 55 61")
    w = np.frombuffer(packet, dtype="<i2", offset=2).astype(np.float64)
    return np.concatenate([w[0:3] * ACC_G, w[3:6] * GYRO_DPS, w[6:9] * ANGLE_DEG])


def encode_registers(start: int, values) -> bytes:
    """A 0x55 0x71 register answer: start register + 8 register values (int16/u16, LE)."""
    vals = [int(v) & 0xFFFF for v in values][:8]
    vals += [0] * (8 - len(vals))
    return bytes([HEADER, FLAG_REGISTERS]) + struct.pack("<H8H", start, *vals)


def decode_registers(packet: bytes) -> tuple[int, tuple[int, ...]]:
    if len(packet) != PACKET or packet[0] != HEADER or packet[1] != FLAG_REGISTERS:
        raise WitError(f"WitMotion: register packet of {len(packet)} bytes, expected {PACKET} starting 55 71")
    start, *vals = struct.unpack_from("<H8H", packet, 2)
    return start, tuple(vals)


class PacketStream:
    """Byte-stream parser: notifications in, whole 20-byte packets out (resynchronising on 0x55)."""

    def __init__(self):
        self.buf = bytearray()
        self.skipped = 0                  # bytes thrown away while looking for a packet start

    def reset(self) -> None:
        self.buf.clear()

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while len(self.buf) >= 2:
            if self.buf[0] != HEADER or self.buf[1] not in (FLAG_DATA, FLAG_REGISTERS):
                self.buf.pop(0)
                self.skipped += 1
                continue
            if len(self.buf) < PACKET:
                break
            out.append(bytes(self.buf[:PACKET]))
            del self.buf[:PACKET]
        return out


# ---------------------------------------------------------------------------------- host profile


@register_profile
class WitMotionProfile(Profile):
    name = "witmotion"
    title = "WitMotion WT901BLECL / BWT901BLE (0x55 0x61 packets)"
    service_uuids = (SERVICE,)
    name_patterns = ("WT901BLE*", "BWT901*")
    tick_hz = None                 # no device time stamp: arrival time is all there is
    wrap_bits = None
    counter_bits = 32              # not on the wire: `ArrivalCounter` numbers packets by arrival
    rates = tuple(RATE_CODES)
    default_rate = 50.0

    COMMAND_GAP_S = 0.1            # the vendor SDK waits 100 ms between unlock, write and save
    RESPONSE_TIMEOUT_S = 2.0

    def __init__(self, *, angles: bool = False, **kw):
        self.angles = angles
        super().__init__(**kw)
        self.packets = PacketStream()
        self.arrivals = ArrivalCounter(self.rate)
        self._registers: asyncio.Future | None = None

    def default_streams(self) -> tuple[StreamSpec, ...]:
        channels = imu_axes("acc", "gyro")
        if self.angles:
            channels += tuple((f"angle.{a}", "rad") for a in "xyz")
        return (StreamSpec("imu", channels, self.rate),)

    def decode(self, char_uuid: str, data: bytes) -> list[Frame]:
        arrival = time.monotonic()
        before = self.packets.skipped
        frames = []
        for packet in self.packets.feed(data):
            if packet[1] == FLAG_REGISTERS:
                if self._registers is not None and not self._registers.done():
                    self._registers.set_result(decode_registers(packet))
                continue
            v = decode_data(packet)
            si = np.concatenate([v[0:3] * STANDARD_GRAVITY, v[3:6] * DEG] + ([v[6:9] * DEG] if self.angles else []))
            frames.append(Frame("imu", si.astype(np.float32).reshape(1, -1), None,
                                counter=self.arrivals.next(arrival) % (1 << 32)))
        if self.packets.skipped > before:         # resynchronised: some bytes were not a packet
            self.corrupt += 1
            self.last_corrupt = f"WitMotion: skipped {self.packets.skipped - before} bytes not starting 55 61/55 71"
        return frames

    def reset(self) -> None:
        self.packets.reset()
        self.arrivals.reset()

    async def _write(self, client, data: bytes) -> None:
        await client.write_gatt_char(uuid_str(COMMAND_CHAR), data, response=True)

    async def start(self, client, on_frame: Callable[[Frame], None]) -> None:
        self.require_characteristic(client, COMMAND_CHAR)
        self.reset()
        # Set the rate before enabling notifications, so that every packet comes at the new rate.
        for command in (unlock(), set_rate(self.rate), save()):
            await self._write(client, command)
            await asyncio.sleep(self.COMMAND_GAP_S)
        await self.subscribe(client, DATA_CHAR, on_frame)
        self._registers = asyncio.get_running_loop().create_future()
        await self._write(client, read_register(REG_RRATE))
        try:
            start, values = await asyncio.wait_for(self._registers, self.RESPONSE_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise NotificationsRefused(f"{self.who(client)}: WitMotion did not answer the read of register "
                                       f"0x03 (return rate) within {self.RESPONSE_TIMEOUT_S:g} s") from None
        finally:
            self._registers = None
        if start != REG_RRATE or values[0] != RATE_CODES[self.rate]:
            got = CODE_RATES.get(values[0]) if start == REG_RRATE else None
            raise NotificationsRefused(f"{self.who(client)}: WitMotion kept return rate "
                                       f"{f'{got:g} Hz' if got else f'code {values[0]:#04x} (register {start:#04x})'}"
                                       f" after being set to {self.rate:g} Hz (code {RATE_CODES[self.rate]:#04x})")

    async def stop(self, client) -> None:
        try:
            await client.stop_notify(uuid_str(DATA_CHAR))
        except Exception:          # the link may already be gone: stopping must not raise
            pass
