"""Host side of the streamhar generic BLE profile (`ble:generic:…`); layout in `generic_format`.

`setup` reads the info characteristic, so rate, channels, names, units and scales come from the
board itself; values are converted to SI (m/s^2, rad/s, uT) when the board declares another unit
of the same dimension. Packets carry a u16 sequence number (lost packets are counted by it) and
the µs time stamp of their first sample.
"""
from __future__ import annotations

import struct

import numpy as np

from streamhar.errors import UsageError
from streamhar.sources.ble.profile import (SI_UNITS, Frame, NotificationsRefused, Profile, StreamSpec, WrongProfile,
                                           imu_axes)
from streamhar.sources.ble.profiles import generic_format as fmt
from streamhar.sources.ble.registry import register_profile
from streamhar.windowing import units


@register_profile
class GenericProfile(Profile):
    name = "generic"
    title = "streamhar generic GATT profile (any Arduino / nRF board)"
    service_uuids = (fmt.SERVICE,)
    tick_hz = 1e6
    wrap_bits = 32
    counter_bits = 16
    default_rate = 100.0

    def __init__(self, *, rate: float | None = None, placement: str = "wrist", device: str = ""):
        self._asked_rate = rate
        self.info: fmt.Info | None = None
        self._factors = np.ones(6)
        super().__init__(rate=rate, placement=placement, device=device)

    def default_streams(self) -> tuple[StreamSpec, ...]:
        # Until the board's info is read: the usual 6-axis IMU.
        return (StreamSpec("imu", imu_axes("acc", "gyro"), self.rate),)

    async def setup(self, client) -> None:
        await super().setup(client)
        raw = await client.read_gatt_char(self.require_characteristic(client, fmt.INFO))
        try:
            info = fmt.Info.parse(bytes(raw))
        except ValueError as exc:
            raise WrongProfile(f"{self.who(client)}: generic info characteristic unreadable: {exc}") from None
        if self._asked_rate and self._asked_rate not in info.rates:
            raise UsageError(f"{self.who(client)}: rate {self._asked_rate:g} Hz not offered; the board offers "
                             f"{', '.join(f'{r:g}' for r in info.rates)} Hz")
        self.info = info
        self.rate = float(self._asked_rate or info.rate)
        chans, factors = [], []
        for name, unit, scale in info.channels:
            quantity = name.split(".")[0]
            si = SI_UNITS.get(quantity, unit)
            f = units.factor(unit, si)
            if f is None:
                raise WrongProfile(f"{self.who(client)}: channel {name} in {unit!r}, which has no conversion to {si}")
            chans.append((name, si))
            factors.append(scale * f)
        self._factors = np.asarray(factors)
        self.streams = (StreamSpec("imu", tuple(chans), self.rate),)

    async def start(self, client, on_frame) -> None:
        self.reset()
        await self.subscribe(client, fmt.DATA, on_frame)
        try:
            await client.write_gatt_char(fmt.CONTROL, struct.pack("<BHB", fmt.OP_START, round(self.rate), 0),
                                         response=True)
        except Exception as exc:   # BleakError carrying the ATT error
            raise NotificationsRefused(f"{self.who(client)}: generic start at {self.rate:g} Hz refused "
                                       f"({exc})") from exc

    async def stop(self, client) -> None:
        for step in (lambda: client.write_gatt_char(fmt.CONTROL, bytes([fmt.OP_STOP]), response=True),
                     lambda: client.stop_notify(fmt.DATA)):
            try:
                await step()
            except Exception:   # link already gone: the board stops streaming on disconnect anyway
                pass

    def decode(self, char_uuid: str, data: bytes) -> list[Frame]:
        seq, t_us, raw = fmt.decode_packet(data, len(self._factors))
        return [Frame("imu", (raw * self._factors).astype(np.float32), t_us, "first", seq)]
