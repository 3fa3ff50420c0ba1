"""An emulated Nordic Thingy:52 motion service (see `profiles/thingy52.py` for the formats and sources).

As the firmware does: the configuration characteristic reads the 9-byte motion configuration
(default 1000 ms, 500 ms, 500 ms, 10 Hz, wake-on-motion 1) and accepts a write only if it is
9 bytes with every field in range, else ATT error 0x03 "write not permitted" (`ble_tms.c`
`on_authorize_req`); enabling notifications on raw data starts one 18-byte notification per
sample at the motion processing frequency, disabling them stops it; a configuration written while
streaming applies at once.

Values: the recording's accelerometer (g), gyroscope (°/s) and magnetometer (µT) in the firmware's
Q6.10 / Q11.5 / Q12.4 with its clamping and truncation. DSADS reports its magnetometer in Xsens
"a.u." (the field normalised to the Earth field at calibration); it reaches the emulator in µT
through `streamhar.windowing.units` (1 a.u. = 50 µT, `EARTH_FIELD_UT`), the one convention the
project uses both ways, so a replayed a.u. comes back exact to the compass's 1/16 µT. A recording
without a magnetometer sends compass zeros.
"""
from __future__ import annotations

import numpy as np

from streamhar.sources.ble.emulators.base import Emulator, StreamPlan
from streamhar.sources.ble.profile import STANDARD_GRAVITY
from streamhar.sources.ble.profiles import thingy52 as thingy
from streamhar.sources.ble.registry import register_emulator


@register_emulator
class Thingy52Emulator(Emulator):
    profile = "thingy52"
    default_name = "Thingy"
    notified_stream = "raw"               # raw data streams while its notifications are on

    def __init__(self, recording, **kw):
        super().__init__(recording, **kw)
        self.config = thingy.MotionConfig()
        self.config_writes: list[bytes] = []      # every write attempt (for tests)

    def build_services(self) -> list:
        from bumble.gatt import Characteristic, CharacteristicValue, Service

        self.config_char = Characteristic(
            thingy.CONFIG_CHAR, Characteristic.Properties.READ | Characteristic.Properties.WRITE,
            Characteristic.Permissions.READABLE | Characteristic.Permissions.WRITEABLE,
            CharacteristicValue(read=lambda _c: self.config.encode(), write=self._on_config))
        self.raw_char = Characteristic(thingy.RAW_CHAR, Characteristic.Properties.NOTIFY,
                                       Characteristic.Permissions.READABLE, b"")
        self.raw_char.on(self.raw_char.EVENT_SUBSCRIPTION, self._on_subscription)
        # The Thingy configuration service, which a Thingy advertises (m_ble.c); here only its
        # firmware version characteristic (0107: major, minor, patch).
        version = Characteristic(thingy.FW_VERSION_CHAR, Characteristic.Properties.READ,
                                 Characteristic.Permissions.READABLE, bytes([2, 2, 0]))
        return [Service(thingy.MOTION_SERVICE, [self.config_char, self.raw_char]),
                Service(thingy.CONFIGURATION_SERVICE, [version])]

    def advertised_uuids(self) -> list[str]:
        return [thingy.CONFIGURATION_SERVICE]

    def _on_config(self, _connection, value: bytes) -> None:
        from bumble.att import ATT_Error, ErrorCode

        self.config_writes.append(bytes(value))
        try:
            config = thingy.MotionConfig.decode(bytes(value))
        except thingy.ThingyError:
            raise ATT_Error(ErrorCode.WRITE_NOT_PERMITTED) from None
        if config.problems():
            raise ATT_Error(ErrorCode.WRITE_NOT_PERMITTED)
        self.config = config
        if self.notified_stream in self.streams:
            self.start_notified_stream()

    def start_notified_stream(self) -> None:
        def encode(block: np.ndarray, _k0: int, _ticks: np.ndarray):
            return [(self.raw_char, thingy.encode_raw(row[0:3] / STANDARD_GRAVITY, np.degrees(row[3:6]), row[6:9]))
                    for row in block]

        self.start_stream(StreamPlan(self.notified_stream, float(self.config.motion_freq_hz), ("acc", "gyro", "mag"),
                                     1, encode))
