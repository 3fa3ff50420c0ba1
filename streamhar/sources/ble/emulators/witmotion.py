"""An emulated WitMotion WT901BLECL (see `profiles/witmotion.py` for the protocol and its sources).

As the sensor does: it streams one 20-byte `0x55 0x61` packet per sample whenever notifications
are on, at the return rate (default 10 Hz); `FF AA 69 88 B5` unlocks register writes for 10 s;
`FF AA 03 RATE 00` (unlocked) changes the rate at once; `FF AA 00 00 00` saves (a no-op here);
`FF AA 27 REG 00` is answered with a `0x55 0x71` packet holding registers REG…REG+7 (reads need no
unlock). Writes while locked, unknown registers and malformed commands are ignored, as the device
gives no error channel.

Values: acceleration and angular rate are the recording's (in g and °/s, int16 with the device's
scales, saturating). The angle triple is the sensor's fused attitude, which the recordings do not
have: the emulator sends roll = atan2(ay, az), pitch = atan2(−ax, √(ay² + az²)) from the recorded
accelerometer (a static tilt estimate) and yaw 0.
"""
from __future__ import annotations

import asyncio
import math

import numpy as np

from streamhar.sources.ble.emulators.base import Emulator, StreamPlan
from streamhar.sources.ble.profile import STANDARD_GRAVITY
from streamhar.sources.ble.profiles import witmotion as wit
from streamhar.sources.ble.registry import register_emulator

UNLOCK_S = 10.0                           # "Unlock (useful for 10 seconds)"


def tilt_degrees(acc: np.ndarray) -> np.ndarray:
    """Roll, pitch (from gravity) and yaw 0, in degrees, for accelerations [n, 3]."""
    ax, ay, az = acc[:, 0], acc[:, 1], acc[:, 2]
    roll = np.degrees(np.arctan2(ay, az))
    pitch = np.degrees(np.arctan2(-ax, np.hypot(ay, az)))
    return np.stack([roll, pitch, np.zeros_like(roll)], axis=1)


@register_emulator
class WitMotionEmulator(Emulator):
    profile = "witmotion"
    default_name = "WT901BLE67"
    notified_stream = "imu"               # the sensor streams whenever notifications are on

    def __init__(self, recording, **kw):
        super().__init__(recording, **kw)
        self.registers = {wit.REG_RRATE: wit.RATE_CODES[10.0]}
        self.unlocked_until = -math.inf
        self.commands: list[tuple[int, int]] = []     # every command received (for tests)

    @property
    def rate(self) -> float:
        return wit.CODE_RATES[self.registers[wit.REG_RRATE]]

    def build_services(self) -> list:
        from bumble.gatt import Characteristic, CharacteristicValue, Service

        self.data_char = Characteristic(wit.DATA_CHAR, Characteristic.Properties.NOTIFY,
                                        Characteristic.Permissions.READABLE, b"")
        self.data_char.on(self.data_char.EVENT_SUBSCRIPTION, self._on_subscription)
        self.command_char = Characteristic(
            wit.COMMAND_CHAR, Characteristic.Properties.WRITE | Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.Permissions.WRITEABLE, CharacteristicValue(write=self._on_write))
        return [Service(wit.SERVICE, [self.data_char, self.command_char])]

    # ------------------------------------------------------------------ streaming

    def start_notified_stream(self) -> None:
        def encode(block: np.ndarray, _k0: int, _ticks: np.ndarray):
            acc_g, gyro_dps = block[:, 0:3] / STANDARD_GRAVITY, np.degrees(block[:, 3:6])
            return [(self.data_char, wit.encode_data(a, g, t))
                    for a, g, t in zip(acc_g, gyro_dps, tilt_degrees(acc_g))]

        self.start_stream(StreamPlan(self.notified_stream, self.rate, ("acc", "gyro"), 1, encode))

    # ------------------------------------------------------------------ commands

    def _on_write(self, _connection, value: bytes) -> None:
        try:
            register, word = wit.decode_command(bytes(value))
        except wit.WitError:
            return
        self.commands.append((register, word))
        now = asyncio.get_running_loop().time()
        if register == wit.REG_READADDR:
            values = [self.registers.get(word + i, 0) for i in range(8)]
            asyncio.get_running_loop().create_task(self.notify(self.data_char, wit.encode_registers(word, values)))
        elif register == wit.REG_KEY:
            self.unlocked_until = now + UNLOCK_S if word == wit.KEY_UNLOCK else -math.inf
        elif register == wit.REG_RRATE and now < self.unlocked_until and word in wit.CODE_RATES:
            self.registers[wit.REG_RRATE] = word
            if self.notified_stream in self.streams:
                self.start_notified_stream()   # the new rate applies at once
