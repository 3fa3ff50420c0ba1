"""Emulated Polar H10 and Verity Sense speaking PMD (bytes in `profiles.polar_pmd`).

* `model="H10"`: advertises "Polar H10 XXXXXXXX"; features ECG + ACC; ACC at 25/50/100/200 Hz,
  16 bit, ±2/4/8 g, sent as raw frame type 1 (int16 mG per axis).
* `model="Verity Sense"`: advertises "Polar Sense XXXXXXXX"; features PPG, ACC, PPI, GYRO, MAG;
  ACC at 52 Hz ±8 g as delta frames type 1 and GYRO at 26–416 Hz ±250–2000 deg/s as delta frames
  type 0, each with the FACTOR its start response announces (range / 32768).
Time stamps are the sensor's ns since 2000-01-01 of each frame's last sample, from the H10's
default time (2019-01-01, `TimeSystemExplained.md`). Responses are indicated on the control point
after the write completes, as the sensors do; ECG/PPG/PPI/MAG answer ERROR_NOT_SUPPORTED here
(the emulation streams motion only).
"""
from __future__ import annotations

import asyncio

import numpy as np

from streamhar.sources.ble.emulators.base import Emulator, StreamPlan
from streamhar.sources.ble.profiles import polar_pmd as pmd
from streamhar.sources.ble.registry import register_emulator

MG = 9.80665 / 1000.0
DEG = np.pi / 180.0
DEFAULT_TIME_NS = 599_616_000_000_000_000        # 2019-01-01T00:00:00Z since 2000-01-01

MODELS = {
    "H10": {"prefix": "Polar H10", "features": {pmd.ECG, pmd.ACC},
            "streams": {pmd.ACC: {pmd.SAMPLE_RATE: [25, 50, 100, 200], pmd.RESOLUTION: [16], pmd.RANGE: [2, 4, 8]}},
            "delta": False},
    "Verity Sense": {"prefix": "Polar Sense", "features": {pmd.PPG, pmd.ACC, pmd.PPI, pmd.GYRO, pmd.MAG},
                     "streams": {pmd.ACC: {pmd.SAMPLE_RATE: [52], pmd.RESOLUTION: [16], pmd.RANGE: [8]},
                                 pmd.GYRO: {pmd.SAMPLE_RATE: [26, 52, 104, 208, 416], pmd.RESOLUTION: [16],
                                            pmd.RANGE: [250, 500, 1000, 2000]}},
                     "delta": True},
}


@register_emulator
class PolarEmulator(Emulator):
    profile = "polar"
    default_name = "Polar H10 1A2B3C4D"
    tick_hz = 1e9

    def __init__(self, recording, *, model: str = "H10", device_id: str = "1A2B3C4D",
                 frame_seconds: float = 0.2, **kwargs):
        if model not in MODELS:
            raise ValueError(f"Polar model {model!r}: emulated are {', '.join(MODELS)}")
        self.model = MODELS[model]
        kwargs.setdefault("name", f"{self.model['prefix']} {device_id}")
        kwargs.setdefault("clock_ticks0", DEFAULT_TIME_NS)
        super().__init__(recording, **kwargs)
        self.model_name = model
        self.frame_seconds = frame_seconds
        self.factors: dict[int, float] = {}

    def advertised_uuids(self) -> list[str]:
        return []    # Polar sensors advertise their name (and heart rate), not the PMD service

    def build_services(self) -> list:
        from bumble.gatt import Characteristic, CharacteristicValue, Service
        P = Characteristic.Properties
        self.control = Characteristic(pmd.CONTROL, P.READ | P.WRITE | P.INDICATE,
                                      Characteristic.READABLE | Characteristic.WRITEABLE,
                                      CharacteristicValue(read=lambda _c: pmd.features(self.model["features"]),
                                                          write=self._on_control))
        self.data_char = Characteristic(pmd.DATA, P.NOTIFY, Characteristic.READABLE, b"")
        return [Service(pmd.SERVICE, [self.control, self.data_char])]

    # ------------------------------------------------------------------ control point

    def _on_control(self, connection, value: bytes) -> None:
        response = self._handle(connection, bytes(value))
        # Answer after the write response, as an indication (the order the sensors use).
        asyncio.get_running_loop().call_soon(
            lambda: asyncio.ensure_future(self.indicate(self.control, response.encode())))

    def _handle(self, connection, value: bytes) -> pmd.Response:
        try:
            op, mtype, settings = pmd.parse_command(value)
        except ValueError:
            return pmd.Response(value[0] if value else 0, value[1] if len(value) > 1 else 0, 4)   # INVALID_LENGTH
        if op not in (pmd.GET_SETTINGS, pmd.START, pmd.STOP):
            return pmd.Response(op, mtype, 1)
        available = self.model["streams"].get(mtype)
        if available is None:
            return pmd.Response(op, mtype, 3 if mtype in self.model["features"] else 2)
        key = "acc" if mtype == pmd.ACC else "gyro"
        if op == pmd.GET_SETTINGS:
            return pmd.Response(op, mtype, pmd.SUCCESS, params=pmd.encode_settings(available))
        if op == pmd.STOP:
            if key not in self.streams:
                return pmd.Response(op, mtype, pmd.ALREADY_IN_STATE)
            self.stop_stream(key)
            return pmd.Response(op, mtype, pmd.SUCCESS)
        if key in self.streams:
            return pmd.Response(op, mtype, pmd.ALREADY_IN_STATE)
        rate = settings.get(pmd.SAMPLE_RATE)
        rng = settings.get(pmd.RANGE, max(available[pmd.RANGE]))
        if rate not in available[pmd.SAMPLE_RATE]:
            return pmd.Response(op, mtype, 8)
        if rng not in available[pmd.RANGE]:
            return pmd.Response(op, mtype, 9)
        if settings.get(pmd.RESOLUTION, 16) != 16:
            return pmd.Response(op, mtype, 7)
        delta = self.model["delta"]
        # Raw H10 frames carry mG directly (factor 1); delta frames carry int16 × range/32768.
        full = rng * (1000.0 if mtype == pmd.ACC else 1.0)
        factor = full / 32768.0 if delta else 1.0
        self.factors[mtype] = factor
        per = max(1, round(rate * self.frame_seconds))
        if not delta:   # raw int16 ACC: fit the negotiated MTU
            per = min(per, (connection.att_mtu - 3 - pmd.FRAME_HEADER.size) // 6)
        self.start_stream(StreamPlan(key, float(rate), (key,), per, self._encoder(mtype, factor, full, delta)))
        params = pmd.encode_settings({pmd.FACTOR: [factor]}) if delta else b""
        return pmd.Response(op, mtype, pmd.SUCCESS, params=params)

    def _encoder(self, mtype: int, factor: float, full: float, delta: bool):
        native = MG if mtype == pmd.ACC else DEG      # SI per mG / per deg/s

        def encode(block: np.ndarray, k0: int, ticks: np.ndarray):
            units = block / native                    # mG or deg/s
            units = np.clip(units, -full, full)       # the sensor saturates at its range
            if delta:
                raw = np.clip(np.round(units / factor), -32768, 32767).astype(np.int64)
                frame = pmd.DataFrame(mtype, int(ticks[-1]), 1 if mtype == pmd.ACC else 0, True,
                                      pmd.encode_delta(raw, 16))
            else:
                raw = np.clip(np.round(units), -32768, 32767).astype(np.int64)
                frame = pmd.DataFrame(mtype, int(ticks[-1]), 1, False, pmd.encode_raw(raw, 2))
            return [(self.data_char, frame.encode())]

        return encode
