"""An emulated board speaking the streamhar generic profile (see `profiles.generic_format`).

Streams one IMU of a recording (by default every quantity it has: acc, gyro and, where
recorded, mag) quantized with fixed scales: acc ±16 g, gyro ±2000 dps, mag ±4900 µT over int16 — the full-scale ranges of common
MEMS IMUs, wide enough that USC-HAD and DSADS never saturate.
"""
from __future__ import annotations

import math
import struct

import numpy as np

from streamhar.sources.ble.emulators.base import Emulator, StreamPlan
from streamhar.sources.ble.profiles import generic_format as fmt
from streamhar.sources.ble.registry import register_emulator

SCALES = {"acc": 16 * 9.80665 / 32768, "gyro": 2000 * math.pi / 180 / 32768, "mag": 4900 / 32768}
UNITS = {"acc": "m/s^2", "gyro": "rad/s", "mag": "uT"}


@register_emulator
class GenericEmulator(Emulator):
    profile = "generic"
    default_name = "shg-imu"
    tick_hz = 1e6

    def __init__(self, recording, *, quantities=None, rate: float | None = None,
                 rates=(25.0, 50.0, 100.0, 200.0), spp: int = 10, **kwargs):
        super().__init__(recording, **kwargs)
        # default: every quantity the recorded IMU has (a DSADS IMU has a magnetometer too)
        self.quantities = tuple(quantities) if quantities is not None else \
            tuple(q for q in SCALES if q not in self.data.missing)
        self.rate = float(rate or self.data.rate)
        self.rates = tuple(sorted(set(rates) | {self.rate}))
        self.spp = spp
        self.scales = np.repeat([SCALES[q] for q in self.quantities], 3)
        self.info = fmt.Info(self.rate, self.rates, spp,
                             tuple((f"{q}.{a}", UNITS[q], SCALES[q]) for q in self.quantities for a in "xyz"))
        self.clipped = 0
        self.state = (0, round(self.rate), spp)

    def build_services(self) -> list:
        from bumble.gatt import Characteristic, CharacteristicValue, Service
        P = Characteristic.Properties
        self.data_char = Characteristic(fmt.DATA, P.NOTIFY, Characteristic.READABLE, b"")
        control = Characteristic(fmt.CONTROL, P.READ | P.WRITE, Characteristic.READABLE | Characteristic.WRITEABLE,
                                 CharacteristicValue(read=lambda _c: struct.pack("<BHB", *self.state),
                                                     write=self._on_control))
        info = Characteristic(fmt.INFO, P.READ, Characteristic.READABLE, self.info.text().encode())
        return [Service(fmt.SERVICE, [self.data_char, control, info])]

    def _on_control(self, connection, value: bytes) -> None:
        from bumble import att
        if value[:1] == bytes([fmt.OP_STOP]):
            self.stop_stream("imu")
            self.state = (0, self.state[1], self.state[2])
            return
        if len(value) != 4 or value[0] != fmt.OP_START:
            raise att.ATT_Error(att.ErrorCode.VALUE_NOT_ALLOWED)
        _, rate, spp = struct.unpack("<BHB", value)
        rate = float(rate or self.rate)
        if rate not in self.rates:
            raise att.ATT_Error(att.ErrorCode.VALUE_NOT_ALLOWED)
        # As many samples as fit in one notification at the negotiated MTU.
        fit = max(1, (connection.att_mtu - 3 - fmt.HEADER.size) // (2 * len(self.scales)))
        spp = min(spp or self.spp, fit)
        self.state = (1, round(rate), spp)
        self.start_stream(StreamPlan("imu", rate, self.quantities, spp, self._encoder()))

    def _encoder(self):
        seq = 0

        def encode(block: np.ndarray, k0: int, ticks: np.ndarray):
            nonlocal seq
            raw, clipped = fmt.quantize(block, self.scales)
            self.clipped += clipped
            packet = fmt.encode_packet(seq, int(ticks[0]), raw)
            seq += 1
            return [(self.data_char, packet)]

        return encode
