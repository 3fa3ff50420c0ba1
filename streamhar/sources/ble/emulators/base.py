"""Peripheral side: the base of every emulated wearable (a Bumble GATT peripheral).

An `Emulator` is a wearable in a `world.BleWorld` (Bumble's in-memory link): it advertises a
local name and its service UUID(s), exposes its profile's GATT service (`build_services`),
answers control writes (the subclass's `CharacteristicValue` write handlers), and streams a real
`Recording` through the profile's encoder at the real rate.

**The sensor timeline.** The emulated sensor runs from power-on whether or not anybody listens,
as a real one does: sample `k` of a stream at `rate` Hz is measured at device time `k / rate`
seconds, i.e. device ticks `clock_ticks0 + round(k / rate · tick_hz)`, and at host time
`boot + k / rate / (1 + drift_ppm·1e-6)` (a device whose crystal runs fast by `drift_ppm`). Its
value is recording sample `(start + floor(k · rec_rate / rate)) mod T` in SI units (`SensorData`):
a stream at the recording's rate replays it sample for sample; at another rate the nearest earlier
sample is held. So a host can check every value it receives, and a gap (dropped packet,
disconnect) is exactly the samples `k` that were measured but not delivered.

**Streaming.** A subclass's control-write handler calls `start_stream(StreamPlan(...))` when the
host sends its start command and `stop_stream(key)` on stop; the base then sends one packet per
`per_packet` samples, when its last sample has been measured (absolute schedule: no drift),
through `plan.encode(block_si, k0, ticks) -> [(characteristic, payload), …]`. Devices that stream
exactly while notifications are on (no start command: WitMotion, Thingy:52) set `notified_stream`,
implement `start_notified_stream()` and hand the base's `_on_subscription` to their data
characteristic. Like real wearables, streams stop when the link drops; the host must start them
again after reconnecting.

**Test hooks.** `drop_next(n, stream)` skips the next n packets (counted in `dropped_packets` /
`dropped_samples`), `force_disconnect()` ends the link from the peripheral's side (an unsolicited
disconnect for the host) and re-advertises (or, with `readvertise=False`, stays silent until
`come_back()`), `refuse_notifications=True` makes every NOTIFY characteristic's CCCD answer
"insufficient authentication" (a device that wants pairing).
Register a subclass with `registry.register_emulator`; `profile` names its host `Profile`.
"""
from __future__ import annotations

import abc
import asyncio
import collections
import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

import numpy as np

from streamhar.recording import Recording
from streamhar.windowing import units

SI_UNITS = {"acc": "m/s^2", "gyro": "rad/s", "mag": "uT"}


# ---------------------------------------------------------------------------------- recorded data


@dataclass(frozen=True)
class SensorData:
    """One IMU of a recording in SI units: `si[q]` is float64 [T, 3] for q in acc / gyro / mag.
    A quantity the recording lacks is all zeros and listed in `missing`."""
    rate: float
    si: dict[str, np.ndarray]
    group: str
    source: str                    # "dataset recording-id(s)", for messages
    missing: tuple[str, ...] = ()
    # Ground truth per recorded sample (int16 [T], −1 unknown) and its class names: never sent over
    # the radio; a simulated source reads them out of band so a demo can score itself.
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()

    @classmethod
    def from_recordings(cls, recordings: Recording | Sequence[Recording], group: str | None = None) -> "SensorData":
        recs = [recordings] if isinstance(recordings, Recording) else list(recordings)
        if not recs:
            raise ValueError("no recording to emulate")
        first = recs[0]
        group = group or first.channels[0].group
        si, missing = {}, []
        for q, unit in SI_UNITS.items():
            cols = [i for i, c in enumerate(first.channels) if c.group == group and c.name.split(".")[1:2] == [q]]
            if len(cols) != 3:
                missing.append(q)
                si[q] = np.zeros((sum(len(r) for r in recs), 3))
                continue
            f = units.factor(first.channels[cols[0]].unit, unit)
            if f is None:
                raise ValueError(f"{first.id}: {q} unit {first.channels[cols[0]].unit!r} has no SI conversion")
            si[q] = np.concatenate([r.samples[:, cols].astype(np.float64) for r in recs]) * f
        if len(missing) == len(SI_UNITS):
            raise ValueError(f"{first.id}: no acc/gyro/mag channels in sensor group {group!r}")
        ids = ",".join(r.id for r in recs[:3]) + ("…" if len(recs) > 3 else "")
        labels = np.concatenate([np.asarray(r.labels, np.int16) for r in recs])
        return cls(float(first.rate), si, group, f"{first.dataset} {ids}", tuple(missing), labels,
                   tuple(first.class_names))

    def __len__(self) -> int:
        return len(next(iter(self.si.values())))

    def index(self, k: np.ndarray, rate: float, start: int = 0) -> np.ndarray:
        """Recorded sample shown as stream sample k at `rate` Hz (the nearest earlier one)."""
        k = np.asarray(k, dtype=np.int64)
        return (start + (k * self.rate // rate).astype(np.int64)) % len(self) if rate != self.rate \
            else (start + k) % len(self)

    def block(self, quantities: Sequence[str], rate: float, k0: int, n: int, start: int = 0) -> np.ndarray:
        """SI values [n, 3·len(quantities)] of stream samples k0 … k0+n-1 at `rate` Hz."""
        idx = self.index(np.arange(k0, k0 + n, dtype=np.int64), rate, start)
        return np.concatenate([self.si[q][idx] for q in quantities], axis=1)


# ---------------------------------------------------------------------------------- streams


@dataclass
class StreamPlan:
    """One running measurement stream of an emulated device."""
    key: str                                   # e.g. "imu", "acc", "gyro"
    rate: float                                # Hz (device time)
    quantities: tuple[str, ...]                # SensorData quantities, in column order
    per_packet: int                            # samples per notification
    # (SI block [n, 3·q], first sample index k0, device ticks [n] unwrapped) → [(characteristic, payload)]
    encode: Callable[[np.ndarray, int, np.ndarray], list[tuple[object, bytes]]]
    first_k: int = -1                          # set by start_stream: the first sample streamed
    next_k: int = -1                           # the next sample to send
    task: asyncio.Task | None = field(default=None, repr=False)


class Emulator(abc.ABC):
    profile: ClassVar[str]                     # registry key of the host Profile it speaks
    default_name: ClassVar[str] = "streamhar"  # advertised local name
    tick_hz: ClassVar[float] = 1e6             # device clock (same as the Profile's)

    def __init__(self, recording: Recording | Sequence[Recording] | SensorData, *, name: str | None = None,
                 address: str | None = None, group: str | None = None, start: int = 0, drift_ppm: float = 0.0,
                 clock_ticks0: int = 0, refuse_notifications: bool = False, advertising_interval_ms: float = 20.0):
        self.data = recording if isinstance(recording, SensorData) else SensorData.from_recordings(recording, group)
        self.name = name or self.default_name
        self.address = address                 # set by the world when None
        self.start = start                     # recording sample at device sample 0
        self.drift = drift_ppm * 1e-6
        self.clock_ticks0 = clock_ticks0
        self.refuse_notifications = refuse_notifications
        self.advertising_interval_ms = advertising_interval_ms
        self.device = None                     # bumble.device.Device once attached
        self.connection = None                 # the current central's connection
        self.boot: float | None = None         # loop time at power-on
        self.streams: dict[str, StreamPlan] = {}
        self._drop: dict[str | None, int] = {}
        # counters (tests compare the host's view with these)
        self.sent_packets = self.sent_samples = 0
        self.dropped_packets = self.dropped_samples = 0
        self.connections = self.disconnections = 0
        # (stream key, first sample k, n) of every packet delivered: the truth tests compare with
        self.sent_log: collections.deque = collections.deque(maxlen=200_000)

    # ------------------------------------------------------------------ for subclasses

    @abc.abstractmethod
    def build_services(self) -> list:
        """The GATT services (bumble.gatt.Service) with their characteristics; control
        characteristics use `bumble.gatt.CharacteristicValue(read=…, write=…)` handlers."""

    def advertised_uuids(self) -> list[str]:
        """Service UUIDs put in the advertisement (default: the first service's)."""
        return [str(self.services[0].uuid)]

    def on_connection(self, connection) -> None:
        """Hook: a central connected."""

    def on_disconnection(self, connection) -> None:
        """Hook: the link dropped (streams are already stopped)."""

    # Devices without a start command stream while the host has notifications on; their one
    # stream's key goes here (None: streams are started and stopped by control writes instead).
    notified_stream: ClassVar[str | None] = None

    def start_notified_stream(self) -> None:
        """Start (or restart, with the current settings) the `notified_stream` (call `start_stream`)."""
        raise NotImplementedError(f"{type(self).__name__}: notifications were enabled, but it does not "
                                  f"implement start_notified_stream")

    def _on_subscription(self, _bearer, notify: bool, _indicate: bool) -> None:
        """Bumble `EVENT_SUBSCRIPTION` handler for the data characteristic: the host enabling
        notifications starts `notified_stream`, disabling them stops it."""
        if notify:
            self.start_notified_stream()
        else:
            self.stop_stream(self.notified_stream)

    # ------------------------------------------------------------------ sensor timeline

    def now_k(self, rate: float) -> int:
        """The stream sample at `rate` that is measured next (not yet measured)."""
        elapsed = (asyncio.get_running_loop().time() - self.boot) * (1 + self.drift)
        return int(math.floor(elapsed * rate)) + 1

    def ticks(self, k: np.ndarray | int, rate: float) -> np.ndarray:
        """Unwrapped device ticks of stream samples k (the encoder wraps as its protocol does)."""
        return self.clock_ticks0 + np.round(np.asarray(k, dtype=np.float64) / rate * self.tick_hz).astype(np.int64)

    def recorded_index(self, ticks: np.ndarray, rate: float) -> np.ndarray:
        """The recorded samples a host received stamped `ticks` (unwrapped device ticks) in a
        stream at `rate` Hz showed — the out-of-band answer key of a simulation."""
        k = np.rint((np.asarray(ticks, np.float64) - self.clock_ticks0) * rate / self.tick_hz).astype(np.int64)
        return self.data.index(k, rate, self.start)

    def labels_at(self, ticks: np.ndarray, rate: float) -> np.ndarray:
        """Ground truth (int16, −1 unknown) of those samples."""
        if self.data.labels is None:
            return np.full(len(ticks), -1, np.int16)
        return self.data.labels[self.recorded_index(ticks, rate)]

    def host_time(self, k: float, rate: float) -> float:
        """Loop time at which stream sample k is measured."""
        return self.boot + k / rate / (1 + self.drift)

    # ------------------------------------------------------------------ streaming

    def start_stream(self, plan: StreamPlan) -> None:
        """Begin streaming `plan` from the next sample the sensor measures (call from a write handler)."""
        self.stop_stream(plan.key)
        plan.first_k = plan.next_k = self.now_k(plan.rate)
        plan.task = asyncio.get_running_loop().create_task(self._run(plan), name=f"{self.name}:{plan.key}")
        self.streams[plan.key] = plan

    def stop_stream(self, key: str) -> None:
        plan = self.streams.pop(key, None)
        if plan is not None and plan.task is not None and plan.task is not asyncio.current_task():
            plan.task.cancel()

    def stop_all(self) -> None:
        for key in list(self.streams):
            self.stop_stream(key)

    async def _run(self, plan: StreamPlan) -> None:
        loop = asyncio.get_running_loop()
        while self.connection is not None:
            k0, n = plan.next_k, plan.per_packet
            delay = self.host_time(k0 + n - 1, plan.rate) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            plan.next_k = k0 + n
            # Encode even a packet that will be lost: the device's state (sequence numbers) moves on
            # as it does when a packet is lost on air.
            block = self.data.block(plan.quantities, plan.rate, k0, n, self.start)
            packets = plan.encode(block, k0, self.ticks(np.arange(k0, k0 + n), plan.rate))
            if self._take_drop(plan.key):
                self.dropped_packets += 1
                self.dropped_samples += n
                continue
            for char, payload in packets:
                if self.connection is None:
                    return
                try:
                    await self.device.notify_subscriber(self.connection, char, payload)
                except Exception:   # the link dropped mid-send: the packet is lost, as on air
                    return
            self.sent_packets += 1
            self.sent_samples += n
            self.sent_log.append((plan.key, k0, n))

    async def notify(self, characteristic, payload: bytes) -> None:
        if self.connection is not None:
            await self.device.notify_subscriber(self.connection, characteristic, payload)

    async def indicate(self, characteristic, payload: bytes) -> None:
        if self.connection is not None:
            await self.device.indicate_subscriber(self.connection, characteristic, payload)

    # ------------------------------------------------------------------ test hooks

    def drop_next(self, n: int = 1, stream: str | None = None) -> None:
        """Do not send the next n packets (of `stream`, or of any stream)."""
        self._drop[stream] = self._drop.get(stream, 0) + n

    def _take_drop(self, key: str) -> bool:
        for k in (key, None):
            if self._drop.get(k, 0) > 0:
                self._drop[k] -= 1
                return True
        return False

    async def force_disconnect(self, readvertise: bool = True) -> None:
        """End the link from the peripheral (the host sees an unsolicited disconnect) and advertise
        again so that the host can reconnect — or, with `readvertise=False`, stay silent (a
        wearable that walked out of range or ran out of battery)."""
        self._silent = not readvertise
        if not readvertise and self.device is not None:
            await self.device.stop_advertising()
        if self.connection is not None:
            await self.connection.disconnect()

    async def come_back(self) -> None:
        """Advertise again after `force_disconnect(readvertise=False)`."""
        self._silent = False
        await self.advertise()

    # ------------------------------------------------------------------ wiring (called by the world)

    async def attach(self, device) -> None:
        """Install services on a powered Bumble device and start advertising."""
        from bumble import gatt

        self.device = device
        self.services = self.build_services()
        if self.refuse_notifications:
            for service in self.services:
                for char in service.characteristics:
                    if char.properties & gatt.Characteristic.Properties.NOTIFY:
                        char.descriptors = [*char.descriptors, _refusing_cccd()]
        device.add_services(self.services)
        device.on(device.EVENT_CONNECTION, self._on_connection)
        self.boot = asyncio.get_running_loop().time()
        self.advertising_data, self.scan_response_data = advertising_payloads(self.name, self.advertised_uuids())
        await self.advertise()

    async def advertise(self) -> None:
        ms = self.advertising_interval_ms
        await self.device.start_advertising(advertising_data=self.advertising_data,
                                            scan_response_data=self.scan_response_data,
                                            advertising_interval_min=ms, advertising_interval_max=ms)

    def _on_connection(self, connection) -> None:
        self.connection = connection
        self.connections += 1
        connection.on(connection.EVENT_DISCONNECTION, lambda *_: self._on_disconnection(connection))
        self.on_connection(connection)

    def _on_disconnection(self, connection) -> None:
        if self.connection is connection:
            self.connection = None
        self.disconnections += 1
        self.stop_all()
        self.on_disconnection(connection)
        if not getattr(self, "_silent", False):
            asyncio.get_running_loop().create_task(self._readvertise())

    async def _readvertise(self) -> None:
        try:
            await self.advertise()
        except Exception:   # powered off while the world shuts down: nothing to advertise to
            pass

    def counters(self) -> dict[str, int]:
        return {"sent_packets": self.sent_packets, "sent_samples": self.sent_samples,
                "dropped_packets": self.dropped_packets, "dropped_samples": self.dropped_samples,
                "connections": self.connections, "disconnections": self.disconnections}


def advertising_payloads(name: str, uuids: Sequence[str]) -> tuple[bytes, bytes]:
    """(advertising data, scan response) within legacy advertising's 31 bytes each: flags,
    the service UUIDs and as much of the name as fits (shortened-name type when cut) in the
    advertisement, the complete name in the scan response. (Bumble's emulated controller answers
    scans with the advertising data itself, so what a scan must see goes in the advertisement.)"""
    from bumble.core import UUID, AdvertisingData as AD

    by_size: dict[int, bytes] = {}
    for u in uuids:
        b = bytes(UUID(u))             # little-endian, as on air
        by_size[len(b)] = by_size.get(len(b), b"") + b
    kinds = {2: AD.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, 16: AD.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS}
    structs = [(AD.FLAGS, bytes([0x06]))] + [(kinds[n], b) for n, b in sorted(by_size.items())]
    used = sum(2 + len(v) for _, v in structs)
    if used + 3 > 31:                  # no room for even a short name: flags are the least useful
        structs, used = structs[1:], used - 3
    raw = name.encode()
    room = 31 - used - 2
    if room > 0:
        structs.append((AD.COMPLETE_LOCAL_NAME, raw) if len(raw) <= room else (AD.SHORTENED_LOCAL_NAME, raw[:room]))
    return bytes(AD(structs)), bytes(AD([(AD.COMPLETE_LOCAL_NAME, raw[:29])]))


def _refusing_cccd():
    """A CCCD whose writes fail as a device that wants pairing first answers them."""
    from bumble import att, gatt

    def refuse(_connection, _value):
        raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_AUTHENTICATION)

    return gatt.Descriptor(gatt.GATT_CLIENT_CHARACTERISTIC_CONFIGURATION_DESCRIPTOR,
                           att.Attribute.READABLE | att.Attribute.WRITEABLE,
                           gatt.CharacteristicValue(read=lambda _c: b"\x00\x00", write=refuse))
