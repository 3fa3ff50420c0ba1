"""Nordic Thingy:52 — raw motion data of the Thingy Motion Service (firmware v2.x).

GATT (Nordic's "Nordic Thingy:52 Firmware architecture" page, nordicsemiconductor.github.io/
Nordic-Thingy52-FW/documentation/firmware_architecture.html, and the firmware's `ble_tms.c`):
base UUID `EF68xxxx-9B35-4933-9B10-52FFA9740042`.

| role | UUID | properties | bytes |
|---|---|---|---|
| Thingy Motion Service | `ef680400-9b35-4933-9b10-52ffa9740042` | | |
| configuration | `ef680401-…` | read, write | 9 |
| raw data | `ef680406-…` | notify | 18 |

A Thingy advertises its full name ("Thingy" by default) and the Thingy configuration service
`ef680100-…` (`m_ble.c`); a scan matches either, or the motion service.

**Configuration** (LE): `u16` step counter interval ms (100–5000), `u16` temperature
compensation interval ms (100–5000), `u16` magnetometer compensation interval ms (100–1000),
`u16` motion processing unit frequency Hz (5–200), `u8` wake-on-motion (0/1). The firmware
(`ble_tms.c` `on_authorize_req`) refuses a write of another length or with a field out of range
(ATT error 0x03 write not permitted); its default is 1000, 500, 500, 10 Hz, 1 (`m_motion.h`).
Start = read the configuration, write it back with the motion frequency set to the rate, enable
notifications on raw data (the firmware turns the raw feature on with the CCCD); stop = disable
them.

**Raw data** (18 bytes, LE int16): accelerometer x, y, z in g, Q6.10 (value / 1024); gyroscope
x, y, z in °/s, Q11.5 (/ 32); compass x, y, z in µT, Q12.4 (/ 16). The firmware
(`m_motion.c`, `DRV_MOTION_EVT_RAW`) gets 16Q16 values, clamps the integer part to
[−2^(b−1), 2^(b−1) − 1] (b = 6, 11, 12 integer bits: ±32 g, ±1024 °/s, ±2048 µT, the top clamp
landing on 31, 1023, 2047 exactly) and shifts right (rounding toward −∞), so a decoded value is
at most one LSB (1/1024 g, 1/32 °/s, 1/16 µT) below the measured one.

**Units** → SI: g × 9.80665 → m/s²; °/s × π/180 → rad/s; µT as sent.

**Time and loss — the honest caveat**: a raw notification carries **no time stamp and no
counter**. Samples are placed on the host clock by their arrival, and a lost notification can only
be inferred from arrival timing against the configured motion frequency: `ArrivalCounter` (in
`timeline.py`, shared with WitMotion, the other such protocol) numbers notifications from the lower
envelope of their arrival times and hands that number to the time line as the packet counter —
batching, jitter and stall-then-burst are not counted, a loss is counted about one second after it
happened, and a link whose latency grows for good by a period or more is counted as a loss.
"""
from __future__ import annotations

import math
import struct
import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from streamhar.errors import UsageError
from streamhar.sources.ble.profile import (STANDARD_GRAVITY, Frame, NotificationsRefused, Profile, StreamSpec,
                                           imu_axes, uuid_str)
from streamhar.sources.ble.registry import register_profile
from streamhar.sources.ble.timeline import ArrivalCounter


def _uuid(short: int) -> str:
    return f"ef68{short:04x}-9b35-4933-9b10-52ffa9740042"


MOTION_SERVICE = _uuid(0x0400)
CONFIG_CHAR = _uuid(0x0401)
RAW_CHAR = _uuid(0x0406)
CONFIGURATION_SERVICE = _uuid(0x0100)      # what a Thingy advertises (the Thingy configuration service)
FW_VERSION_CHAR = _uuid(0x0107)            # in the configuration service: u8 major, minor, patch

RAW_SIZE, CONFIG_SIZE = 18, 9
INTEGER_BITS = (6, 6, 6, 11, 11, 11, 12, 12, 12)       # acc Q6.10, gyro Q11.5, compass Q12.4
FRACTION_BITS = tuple(16 - b for b in INTEGER_BITS)
LSB = np.array([2.0 ** -f for f in FRACTION_BITS])      # g, °/s, µT per count
FREQ_RANGE = (5, 200)
DEG = math.pi / 180.0


class ThingyError(ValueError):
    """Bytes that break the Thingy motion service's formats (the message says what was expected)."""


# ---------------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class MotionConfig:
    step_interval_ms: int = 1000
    temp_comp_interval_ms: int = 500
    mag_comp_interval_ms: int = 500
    motion_freq_hz: int = 10
    wake_on_motion: int = 1

    RANGES = {"step_interval_ms": (100, 5000), "temp_comp_interval_ms": (100, 5000),
              "mag_comp_interval_ms": (100, 1000), "motion_freq_hz": FREQ_RANGE, "wake_on_motion": (0, 1)}

    def problems(self) -> list[str]:
        """Fields the firmware would refuse, each with its allowed range."""
        return [f"{k} = {getattr(self, k)} (allowed {lo}–{hi})" for k, (lo, hi) in self.RANGES.items()
                if not lo <= getattr(self, k) <= hi]

    def encode(self) -> bytes:
        bad = self.problems()
        if bad:
            raise ThingyError(f"Thingy:52 motion configuration out of range: {'; '.join(bad)}")
        return struct.pack("<HHHHB", self.step_interval_ms, self.temp_comp_interval_ms,
                           self.mag_comp_interval_ms, self.motion_freq_hz, self.wake_on_motion)

    @classmethod
    def decode(cls, data: bytes) -> "MotionConfig":
        if len(data) != CONFIG_SIZE:
            raise ThingyError(f"Thingy:52 motion configuration of {len(data)} bytes, expected {CONFIG_SIZE} (u16 step, "
                              f"u16 temperature, u16 magnetometer interval, u16 frequency, u8 wake-on-motion)")
        return cls(*struct.unpack("<HHHHB", data))


# ---------------------------------------------------------------------------------- raw data


def encode_raw(acc_g, gyro_dps, mag_ut) -> bytes:
    """One raw-data notification, quantized as the firmware does: 16Q16, integer part clamped,
    arithmetic shift right (toward −∞)."""
    v = np.concatenate([np.asarray(x, dtype=np.float64).reshape(3) for x in (acc_g, gyro_dps, mag_ut)])
    q16 = np.rint(v * 65536.0).astype(np.int64)
    ints = np.array(INTEGER_BITS)
    upper, lower = (1 << (ints - 1)) - 1, -(1 << (ints - 1))
    whole = q16 >> 16
    q16 = np.where(whole >= upper, upper << 16, np.where(whole < lower, lower << 16, q16))
    return (q16 >> ints).astype("<i2").tobytes()


def decode_raw(data: bytes) -> np.ndarray:
    """18 bytes → float64 [9]: acc (g), gyro (°/s), compass (µT)."""
    if len(data) != RAW_SIZE:
        raise ThingyError(f"Thingy:52 raw motion notification of {len(data)} bytes, expected {RAW_SIZE} "
                          f"(9 × int16: acc Q6.10 g, gyro Q11.5 °/s, compass Q12.4 µT)")
    return np.frombuffer(data, dtype="<i2").astype(np.float64) * LSB


# ---------------------------------------------------------------------------------- host profile


@register_profile
class Thingy52Profile(Profile):
    name = "thingy52"
    title = "Nordic Thingy:52 (Thingy Motion Service, raw data)"
    service_uuids = (MOTION_SERVICE,)
    name_patterns = ("Thingy*",)
    tick_hz = None                 # no device time stamp: arrival time is all there is
    wrap_bits = None
    counter_bits = 32              # not on the wire: `ArrivalCounter` numbers packets by arrival
    rates = ()                     # any whole number of Hz in 5–200 (checked below)
    default_rate = 100.0

    def __init__(self, **kw):
        super().__init__(**kw)
        if self.rate != int(self.rate) or not FREQ_RANGE[0] <= self.rate <= FREQ_RANGE[1]:
            raise UsageError(f"ble:thingy52: rate {self.rate:g} Hz not supported; the Thingy:52 motion "
                             f"processing frequency is a whole number of Hz in {FREQ_RANGE[0]}–{FREQ_RANGE[1]}")
        self.config: MotionConfig | None = None
        self.arrivals = ArrivalCounter(self.rate)

    @classmethod
    def matches(cls, name, service_uuids) -> bool:
        uuids = {uuid_str(u) for u in service_uuids}
        return CONFIGURATION_SERVICE in uuids or super().matches(name, uuids)

    def default_streams(self) -> tuple[StreamSpec, ...]:
        return (StreamSpec("imu", imu_axes("acc", "gyro", "mag"), self.rate),)

    def decode(self, char_uuid: str, data: bytes) -> list[Frame]:
        arrival = time.monotonic()
        v = decode_raw(data)
        si = np.concatenate([v[0:3] * STANDARD_GRAVITY, v[3:6] * DEG, v[6:9]])
        return [Frame("imu", si.astype(np.float32).reshape(1, 9), None,
                      counter=self.arrivals.next(arrival) % (1 << 32))]

    def reset(self) -> None:
        self.arrivals.reset()

    async def start(self, client, on_frame: Callable[[Frame], None]) -> None:
        self.require_characteristic(client, CONFIG_CHAR)
        self.reset()
        current = MotionConfig.decode(bytes(await client.read_gatt_char(uuid_str(CONFIG_CHAR))))
        wanted = replace(current, motion_freq_hz=int(self.rate))
        try:
            await client.write_gatt_char(uuid_str(CONFIG_CHAR), wanted.encode(), response=True)
        except ThingyError as exc:
            raise NotificationsRefused(f"{self.who(client)}: {exc}") from None
        except Exception as exc:   # bleak/ATT error: the firmware refused the configuration
            raise NotificationsRefused(f"{self.who(client)}: Thingy:52 refused the motion configuration "
                                       f"{wanted} ({exc})") from exc
        self.config = wanted
        await self.subscribe(client, RAW_CHAR, on_frame)

    async def stop(self, client) -> None:
        try:
            await client.stop_notify(uuid_str(RAW_CHAR))
        except Exception:          # the link may already be gone: stopping must not raise
            pass
