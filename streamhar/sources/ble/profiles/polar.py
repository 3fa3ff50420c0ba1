"""Host side of Polar's PMD streaming (`ble:polar:…`): Polar H10 (ACC) and Verity Sense (ACC + GYRO).

Bytes in `polar_pmd` (Polar Measurement Data Specification). Sequence: `setup` reads the control
point's feature bits (ACC, and GYRO on a Verity Sense) and asks each stream's available settings
(GET_MEASUREMENT_SETTINGS); `start` subscribes to control point indications and data
notifications, then sends REQUEST_MEASUREMENT_START per stream with rate, 16-bit resolution and
the widest range, and keeps the FACTOR each start response returns. Frames are stamped with the
u64 ns time of their LAST sample (`stamp="last"`); PMD has no packet counter, so lost frames show
as gaps in the time stamps. ACC arrives in mG, GYRO in deg/s; both leave here in SI.
"""
from __future__ import annotations

import asyncio
import math

import numpy as np

from streamhar.errors import UsageError
from streamhar.sources.ble.profile import (STANDARD_GRAVITY, Frame, NotificationsRefused, Profile, StreamSpec,
                                           WrongProfile, imu_axes)
from streamhar.sources.ble.profiles import polar_pmd as pmd
from streamhar.sources.ble.registry import register_profile

MG = STANDARD_GRAVITY / 1000.0      # m/s^2 per mG
DPS = math.pi / 180.0               # rad/s per deg/s
_KEYS = {pmd.ACC: "acc", pmd.GYRO: "gyro"}
_SCALE = {pmd.ACC: MG, pmd.GYRO: DPS}


@register_profile
class PolarProfile(Profile):
    name = "polar"
    title = "Polar H10 / Verity Sense (PMD: ACC, GYRO)"
    service_uuids = (pmd.SERVICE,)
    name_patterns = ("Polar H10 *", "Polar Sense *", "Polar H9 *", "Polar OH1 *")
    tick_hz = 1e9
    wrap_bits = None                # u64 ns: never wraps
    counter_bits = None
    default_rate = 100.0

    def __init__(self, *, rate: float | None = None, placement: str = "chest", device: str = "",
                 gyro: bool = True):
        self._asked_rate = rate
        self.want_gyro = gyro
        self.types: list[int] = [pmd.ACC]
        self.settings: dict[int, dict[int, int]] = {}    # type → chosen settings
        self.factors: dict[int, float] = {pmd.ACC: 1.0, pmd.GYRO: 1.0}
        self._responses: asyncio.Queue | None = None
        super().__init__(rate=rate, placement=placement, device=device)

    def default_streams(self) -> tuple[StreamSpec, ...]:
        return tuple(StreamSpec(_KEYS[t], imu_axes(_KEYS[t]), self.rate) for t in self.types)

    # ------------------------------------------------------------------ control point

    def _on_response(self, data: bytes) -> None:
        if self._responses is not None:
            self._responses.put_nowait(data)

    async def _request(self, client, op: int, mtype: int, settings: dict[int, int] | None = None) -> pmd.Response:
        """Write a command and wait for its indicated response (5 s, as the SDK allows)."""
        while not self._responses.empty():
            self._responses.get_nowait()
        try:
            await client.write_gatt_char(pmd.CONTROL, pmd.command(op, mtype, settings), response=True)
            while True:
                r = pmd.parse_response(await asyncio.wait_for(self._responses.get(), 5.0))
                if r.op == op and r.mtype == mtype:
                    return r
        except (asyncio.TimeoutError, ValueError) as exc:
            raise NotificationsRefused(f"{self.who(client)}: no valid PMD response to op {op} "
                                       f"{pmd.TYPE_NAMES.get(mtype, mtype)} ({exc or 'timeout'})") from None

    async def _open_control(self, client) -> None:
        self._responses = asyncio.Queue()
        await self.subscribe(client, pmd.CONTROL, raw=self._on_response)

    # ------------------------------------------------------------------ session

    async def setup(self, client) -> None:
        await super().setup(client)
        self.require_characteristic(client, pmd.DATA)
        try:
            have = pmd.parse_features(bytes(await client.read_gatt_char(pmd.CONTROL)))
        except ValueError as exc:
            raise WrongProfile(f"{self.who(client)}: PMD control point: {exc}") from None
        if pmd.ACC not in have:
            raise WrongProfile(f"{self.who(client)}: this Polar device offers no ACC stream "
                               f"(features {sorted(pmd.TYPE_NAMES.get(t, t) for t in have)})")
        types = [pmd.ACC] + ([pmd.GYRO] if self.want_gyro and pmd.GYRO in have else [])
        await self._open_control(client)
        available = {}
        for t in types:
            r = await self._request(client, pmd.GET_SETTINGS, t)
            if not r.ok:
                raise WrongProfile(f"{self.who(client)}: PMD settings of {pmd.TYPE_NAMES[t]} refused: {r.error}")
            available[t] = pmd.parse_settings(r.params)
        # One rate for every stream (merged sample by sample): the asked one, else the default
        # if offered, else the fastest ≤ default, else the slowest offered.
        common = set.intersection(*(set(a.get(pmd.SAMPLE_RATE, [])) for a in available.values()))
        if not common:
            raise WrongProfile(f"{self.who(client)}: ACC and GYRO share no sample rate "
                               f"({ {pmd.TYPE_NAMES[t]: a.get(pmd.SAMPLE_RATE) for t, a in available.items()} })")
        if self._asked_rate:
            if self._asked_rate not in common:
                raise UsageError(f"{self.who(client)}: rate {self._asked_rate:g} Hz not offered; this Polar "
                                 f"device streams at {', '.join(str(r) for r in sorted(common))} Hz")
            rate = int(self._asked_rate)
        else:
            below = [r for r in common if r <= self.default_rate]
            rate = max(below) if below else min(common)
        self.rate = float(rate)
        self.types = types
        self.settings = {t: {k: max(v) for k, v in a.items() if k in (pmd.RESOLUTION, pmd.RANGE, pmd.CHANNELS)}
                         | {pmd.SAMPLE_RATE: rate} for t, a in available.items()}
        self.streams = self.default_streams()

    async def start(self, client, on_frame) -> None:
        if self._responses is None:     # setup (run after every connect) normally opened it
            await self._open_control(client)
        await self.subscribe(client, pmd.DATA, on_frame)
        for t in self.types:
            r = await self._request(client, pmd.START, t, self.settings.get(t, {pmd.SAMPLE_RATE: int(self.rate)}))
            if r.status == pmd.ALREADY_IN_STATE:
                continue            # still streaming from before a reconnect: fine
            if not r.ok:
                raise NotificationsRefused(f"{self.who(client)}: PMD start of {pmd.TYPE_NAMES[t]} at "
                                           f"{self.rate:g} Hz refused: {r.error}")
            factor = pmd.parse_settings(r.params).get(pmd.FACTOR)
            self.factors[t] = float(factor[0]) if factor else 1.0

    async def stop(self, client) -> None:
        for t in self.types:
            try:
                await self._request(client, pmd.STOP, t)
            except Exception:   # link gone: Polar sensors stop streaming on disconnect
                pass
        for uuid in (pmd.DATA, pmd.CONTROL):
            try:
                await client.stop_notify(uuid)
            except Exception:
                pass
        self._responses = None

    # ------------------------------------------------------------------ frames

    def decode(self, char_uuid: str, data: bytes) -> list[Frame]:
        f = pmd.parse_frame(data)
        if f.mtype not in _KEYS or f.mtype not in self.types:
            return []       # a stream we did not start (ECG, PPG …)
        return [Frame(_KEYS[f.mtype], decode_values(f, self.factors.get(f.mtype, 1.0)), f.timestamp_ns, "last")]


def decode_values(f: pmd.DataFrame, factor: float) -> np.ndarray:
    """A PMD ACC/GYRO frame's samples in SI (float32 [n, 3]); ValueError for unknown frame types."""
    if f.mtype == pmd.ACC and not f.compressed and f.frame_type in (0, 1, 2):
        native = decode_raw_acc(f)                                  # mG
    elif f.mtype == pmd.ACC and f.compressed and f.frame_type == 1:
        native = pmd.decode_delta(f.body, 3, 16) * (factor if factor != 1.0 else 1.0)
    elif f.mtype == pmd.ACC and f.compressed and f.frame_type == 0:
        native = pmd.decode_delta(f.body, 3, 16) * factor * 1000.0  # this type is in G × factor
    elif f.mtype == pmd.GYRO and f.compressed and f.frame_type == 0:
        native = pmd.decode_delta(f.body, 3, 16) * factor           # deg/s
    else:
        raise ValueError(f"PMD {pmd.TYPE_NAMES.get(f.mtype, f.mtype)} frame type {f.frame_type}"
                         f"{' (delta)' if f.compressed else ''} not supported")
    return (native * _SCALE[f.mtype]).astype(np.float32)


def decode_raw_acc(f: pmd.DataFrame) -> np.ndarray:
    return pmd.decode_raw(f.body, 3, f.frame_type + 1).astype(np.float64)
