"""Host side of a BLE wearable: what a device profile is (the base every profile implements).

A `Profile` turns one wearable's public GATT protocol into timestamped SI samples:

* **matching** — `name` (the registry key used in `ble:PROFILE:…`), `service_uuids` (the GATT
  service(s) the device must expose; a scan also matches them against advertised UUIDs) and
  `name_patterns` (fnmatch patterns on the advertised local name, for devices such as Polar that do
  not advertise their data service). `matches(name, uuids)` decides what `devices scan` prints.
* **streaming** — on a connected `bleak.BleakClient`: `setup(client)` checks the services
  (`WrongProfile` otherwise), reads what the device says about itself and settles `rate` and
  `streams`; `start(client, on_frame)` subscribes and sends the start command(s); `stop(client)`
  undoes it (tolerating a client that is already gone). Each notification goes through `decode`.
* **decoding** — `decode(char_uuid, data) -> list[Frame]`: bytes → SI samples of one `StreamSpec`,
  plus the raw device time stamp (`device_ticks`, which sample it stamps: `stamp` "first" or
  "last") and the packet counter where the protocol has one. Pure but for multi-packet state,
  which `reset()` clears (the source calls it after every reconnect).
* **clock** — `tick_hz` and `wrap_bits` of the device's time stamp counter (for
  `streamhar.sources.clock.DeviceClock`), `counter_bits` of its packet counter.

A profile may deliver several streams (Polar sends ACC and GYRO as separate frames with their own
time stamps): `streams` lists them in channel order; `channels` concatenates their channels, named
`{placement}.{suffix}` with SI units (`SI_UNITS`: m/s^2, rad/s, uT). The source merges streams by
device time. One profile object serves one device connection; register the class in
`registry.PROFILES` with `@register_profile`.
"""
from __future__ import annotations

import abc
import fnmatch
from dataclasses import dataclass
from typing import Callable, ClassVar, Iterable, Sequence

import numpy as np

from streamhar.errors import UsageError
from streamhar.recording import Channel
from streamhar.sources.ble.errors import (BleError, DeviceLost, DeviceNotFound, NotificationsRefused,
                                          WrongProfile)

__all__ = ["SI_UNITS", "STANDARD_GRAVITY", "Frame", "Profile", "StreamSpec", "imu_axes", "uuid_str",
           "BleError", "DeviceLost", "DeviceNotFound", "NotificationsRefused", "WrongProfile"]

# What every profile delivers, whatever the device sends.
SI_UNITS = {"acc": "m/s^2", "gyro": "rad/s", "mag": "uT"}
STANDARD_GRAVITY = 9.80665   # m/s^2 per g (CGPM)


def imu_axes(*quantities: str) -> tuple[tuple[str, str], ...]:
    """Channel suffixes + SI units for x, y, z of each quantity: imu_axes("acc", "gyro")."""
    return tuple((f"{q}.{a}", SI_UNITS[q]) for q in quantities for a in "xyz")


def uuid_str(uuid) -> str:
    """A UUID as bleak writes it: lowercase 128-bit with dashes (16-bit ones expanded)."""
    s = str(uuid).lower()
    if len(s) == 4:
        return f"0000{s}-0000-1000-8000-00805f9b34fb"
    return s


@dataclass(frozen=True)
class StreamSpec:
    """One measurement stream of a device: the columns one kind of frame fills."""
    key: str                                  # e.g. "imu", "acc", "gyro": `Frame.stream` refers to it
    channels: tuple[tuple[str, str], ...]     # (suffix, SI unit) per column, e.g. imu_axes("acc")
    rate: float                               # samples per second (device time)

    @property
    def width(self) -> int:
        return len(self.channels)


@dataclass(frozen=True)
class Frame:
    """One decoded notification (or a complete multi-packet record): consecutive samples of one stream."""
    stream: str                  # StreamSpec.key
    samples: np.ndarray          # float32 [n, width], SI units, columns in StreamSpec.channels order
    device_ticks: int | None     # device time stamp as sent (wrapped); None: the protocol sends none
    stamp: str = "first"         # which sample device_ticks belongs to: "first" or "last" (Polar)
    counter: int | None = None   # packet sequence number as sent (wraps at 2**counter_bits); None: none

    def __len__(self) -> int:
        return int(self.samples.shape[0])


class Profile(abc.ABC):
    # -- identity and matching (class attributes every profile sets)
    name: ClassVar[str]                          # registry key, e.g. "generic", "polar"
    title: ClassVar[str] = ""                    # for people, e.g. "Polar H10 / Verity Sense (PMD)"
    service_uuids: ClassVar[tuple[str, ...]] = ()   # lowercase 128-bit; the first is the data service
    name_patterns: ClassVar[tuple[str, ...]] = ()   # fnmatch on the advertised name, e.g. "Polar *"
    # -- device clock and counters
    tick_hz: ClassVar[float | None] = None       # time stamp ticks per second; None: no time stamps
    wrap_bits: ClassVar[int | None] = 32         # time stamp counter width; None: does not wrap (u64)
    counter_bits: ClassVar[int | None] = None    # packet counter width; None: no packet counter
    # -- rates
    rates: ClassVar[tuple[float, ...]] = ()      # supported sample rates; () = any / told by the device
    default_rate: ClassVar[float] = 100.0

    def __init__(self, *, rate: float | None = None, placement: str = "wrist", device: str = ""):
        self.rate = float(rate or self.default_rate)
        if self.rates and self.rate not in self.rates:
            raise UsageError(f"ble:{self.name}: rate {rate:g} Hz not supported; the device offers "
                             f"{', '.join(f'{r:g}' for r in self.rates)} Hz")
        self.placement = placement
        self.device = device                     # name or address, for error messages
        self.streams: tuple[StreamSpec, ...] = self.default_streams()

    # ------------------------------------------------------------------ description

    @abc.abstractmethod
    def default_streams(self) -> tuple[StreamSpec, ...]:
        """The streams at `self.rate` before talking to the device (`setup` may refine them)."""

    @property
    def channels(self) -> tuple[Channel, ...]:
        return tuple(Channel(f"{self.placement}.{suffix}", unit, self.placement)
                     for s in self.streams for suffix, unit in s.channels)

    def stream(self, key: str) -> StreamSpec:
        for s in self.streams:
            if s.key == key:
                return s
        raise KeyError(key)

    @classmethod
    def matches(cls, name: str | None, service_uuids: Iterable[str]) -> bool:
        """Whether an advertiser looks like this profile's device (used by `devices scan`)."""
        uuids = {uuid_str(u) for u in service_uuids}
        if any(u in uuids for u in cls.service_uuids):
            return True
        return bool(name) and any(fnmatch.fnmatchcase(name, p) for p in cls.name_patterns)

    # ------------------------------------------------------------------ on a connected client

    async def setup(self, client) -> None:
        """Check the device has this profile's services (else `WrongProfile`); subclasses also
        read device info and settle `self.rate` / `self.streams` here. Called after each connect."""
        self.require_services(client)

    @abc.abstractmethod
    async def start(self, client, on_frame: Callable[[Frame], None]) -> None:
        """Subscribe (see `subscribe`) and start streaming; every decoded frame goes to `on_frame`
        (called in the client's event loop). Refusals raise `NotificationsRefused`."""

    @abc.abstractmethod
    async def stop(self, client) -> None:
        """Stop streaming and unsubscribe; must not raise when the link is already gone."""

    @abc.abstractmethod
    def decode(self, char_uuid: str, data: bytes) -> list[Frame]:
        """One notification's bytes → frames (usually one; [] for a part of a multi-packet record).
        Raises ValueError for bytes that break the protocol (the source counts them as corrupt)."""

    def reset(self) -> None:
        """Forget decoding state (partial multi-packet records) — after a reconnect."""

    # ------------------------------------------------------------------ helpers for subclasses

    def who(self, client=None) -> str:
        return self.device or (getattr(client, "address", None) or "?")

    def require_services(self, client, uuids: Sequence[str] | None = None) -> None:
        """Raise `WrongProfile` naming what is missing and what the device does offer."""
        have = {uuid_str(s.uuid) for s in client.services} if client.services is not None else set()
        missing = [u for u in (self.service_uuids if uuids is None else uuids) if uuid_str(u) not in have]
        if missing:
            raise WrongProfile(f"{self.who(client)}: not a {self.name!r} device — GATT service "
                               f"{', '.join(missing)} missing (it offers {', '.join(sorted(have)) or 'none'})")

    def require_characteristic(self, client, uuid: str):
        char = client.services.get_characteristic(uuid_str(uuid)) if client.services is not None else None
        if char is None:
            raise WrongProfile(f"{self.who(client)}: not a {self.name!r} device — characteristic {uuid} missing")
        return char

    async def subscribe(self, client, uuid: str, on_frame: Callable[[Frame], None] | None = None,
                        raw: Callable[[bytes], None] | None = None) -> None:
        """Enable notifications/indications on `uuid`; each value is decoded and handed to
        `on_frame` (or given raw to `raw`, e.g. a control point's responses). A refusal becomes
        `NotificationsRefused` naming the device and characteristic."""
        char = self.require_characteristic(client, uuid)
        key = uuid_str(uuid)

        def handler(_char, data: bytearray) -> None:
            if raw is not None:
                raw(bytes(data))
                return
            try:
                frames = self.decode(key, bytes(data))
            except ValueError as exc:
                self.corrupt += 1
                self.last_corrupt = str(exc)
                return
            for f in frames:
                on_frame(f)

        try:
            await client.start_notify(char, handler)
        except Exception as exc:   # bleak raises BleakError or a backend-specific error
            raise NotificationsRefused(f"{self.who(client)}: notifications on {self.name} characteristic "
                                       f"{key} refused ({exc})") from exc

    corrupt: int = 0               # frames `decode` rejected (counted by `subscribe`'s handler)
    last_corrupt: str = ""
