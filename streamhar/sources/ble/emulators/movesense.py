"""An emulated Movesense sensor speaking the GATT SensorData Protocol (see `profiles/movesense.py`).

What it does, as the firmware's `gatt_sensordata_app` / GSP does: HELLO → a COMMAND_RESULT with
protocol version 1 and the identity strings; SUBSCRIBE `/Meas/IMU6/{rate}` or `/Meas/IMU9/{rate}`
→ status 200, then one record of rate/13 samples per notification (DATA, plus DATA_PART2 when
the body exceeds the firmware's 158-byte buffer), time-stamped with the sensor's ms clock at the
first sample; UNSUBSCRIBE with the subscription's reference → status 200 and silence. Commands
are answered after the write completes, as the firmware handles them asynchronously.

Emulator limits (answers a real sensor would not give): one IMU subscription at a time (a second
gets 507, the firmware's "no free slot" answer); rates 208–1666 Hz get 501 (their bodies need more
than the two parts this emulator's reading of the protocol has); other paths get 404.
Values are the recording's, in the wire's units (acc m/s², gyro °/s, magn µT, float32); a
recording without a magnetometer sends zeros for IMU9's magn.
"""
from __future__ import annotations

import asyncio

import numpy as np

from streamhar.sources.ble.emulators.base import Emulator, StreamPlan
from streamhar.sources.ble.profiles import movesense as gsp
from streamhar.sources.ble.registry import register_emulator

ALL_IMU_RATES = (13.0, 26.0, 52.0, 104.0, 208.0, 416.0, 833.0, 1666.0)   # what a real sensor offers


@register_emulator
class MovesenseEmulator(Emulator):
    profile = "movesense"
    default_name = "Movesense 220330000101"
    tick_hz = 1000.0                     # the IMU time stamp counts milliseconds

    def __init__(self, recording, **kw):
        kw.setdefault("clock_ticks0", 3_600_000)      # an hour of uptime: time stamps do not start at 0
        super().__init__(recording, **kw)
        serial = self.name.split()[-1]
        self.hello = gsp.Hello(1, serial=serial, product="Movesense MD", dfu_mac="",
                               app_name="streamhar-emulator", app_version="2.3.1")
        self.subscription: tuple[int, str, float] | None = None   # (reference, kind, rate)
        self.commands: list[gsp.Command] = []                      # every command received (for tests)

    def build_services(self) -> list:
        from bumble.gatt import Characteristic, CharacteristicValue, Service

        self.data_char = Characteristic(gsp.DATA_CHAR, Characteristic.Properties.NOTIFY,
                                        Characteristic.Permissions.READABLE, b"")
        self.command_char = Characteristic(gsp.COMMAND_CHAR, Characteristic.Properties.WRITE,
                                           Characteristic.Permissions.WRITEABLE,
                                           CharacteristicValue(write=self._on_write))
        return [Service(gsp.SERVICE, [self.command_char, self.data_char])]

    def advertised_uuids(self) -> list[str]:
        return []                        # a Movesense advertises its name, not the GSP service

    def on_disconnection(self, connection) -> None:
        self.subscription = None         # the firmware unsubscribes everything when the link drops

    # ------------------------------------------------------------------ commands

    def _on_write(self, _connection, value: bytes) -> None:
        try:
            cmd = gsp.decode_command(bytes(value))
        except gsp.GspError:
            return                       # the firmware ignores what it cannot parse
        self.commands.append(cmd)
        # Answer after the write response, as the firmware's asynchronous handling does.
        asyncio.get_running_loop().create_task(self._handle(cmd))

    async def _handle(self, cmd: gsp.Command) -> None:
        if cmd.command == gsp.HELLO:
            await self.notify(self.data_char, gsp.encode_hello(cmd.reference, self.hello))
        elif cmd.command == gsp.SUBSCRIBE:
            await self.notify(self.data_char, gsp.encode_result(cmd.reference, self._subscribe(cmd)))
        elif cmd.command == gsp.UNSUBSCRIBE:
            ok = self.subscription is not None and self.subscription[0] == cmd.reference
            if ok:
                self.stop_stream("imu")
                self.subscription = None
            await self.notify(self.data_char, gsp.encode_result(cmd.reference, 200 if ok else 404))

    def _subscribe(self, cmd: gsp.Command) -> int:
        try:
            kind, rate = gsp.parse_imu_path(cmd.payload.decode("utf-8", "replace"))
        except gsp.GspError:
            return 404
        if rate not in ALL_IMU_RATES:
            return 404
        if rate not in gsp.RATES:
            return 501
        if self.subscription is not None:
            return 507
        self.subscription = (cmd.reference, kind, rate)
        quantities = gsp.KINDS[kind]
        reference = cmd.reference

        def encode(block: np.ndarray, _k0: int, ticks: np.ndarray):
            acc, gyro = block[:, 0:3], block[:, 3:6] / gsp.DEG          # rad/s → °/s on the wire
            mag = block[:, 6:9] if len(quantities) == 3 else None
            return [(self.data_char, p) for p in gsp.encode_imu(reference, int(ticks[0]), acc, gyro, mag)]

        self.start_stream(StreamPlan("imu", rate, quantities, gsp.samples_per_packet(rate), encode))
        return 200
