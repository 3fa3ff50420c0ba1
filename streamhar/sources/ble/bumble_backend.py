"""A bleak backend over a Bumble central: unmodified bleak code talks to emulated wearables.

    async with BleakClient(address, backend=BumbleClient, world=world) as client: ...
    BleakScanner(backend=BumbleScanner, world=world)
    await establish_connection(BleakClient, ble_device, name, backend=BumbleClient)

(`world.client_kwargs()` / `world.scanner_kwargs()` give those keywords.) bleak hands unknown
keyword arguments through to the backend class, which is how `world=` arrives; a `BLEDevice`
found by `BumbleScanner` carries its world in `details`, so `establish_connection` and
`BleakClient(ble_device, backend=BumbleClient)` need no `world=`. The central is the world's one
Bumble device (`BleWorld.async_central`); connections are serialized because a Bumble central
allows one pending LE connection at a time. Everything runs in the world's loop.

Mapping: bleak characteristic handles are Bumble value handles; UUIDs are lowercase 128-bit
strings (Bumble prints upper-case, 16-bit ones short); ATT errors become `BleakError`s naming the
ATT error, as the OS backends report them.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Callable

from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakDeviceNotFoundError, BleakError
from bleak.uuids import normalize_uuid_str

log = logging.getLogger(__name__)

_PROPS = {0x01: "broadcast", 0x02: "read", 0x04: "write-without-response", 0x08: "write", 0x10: "notify",
          0x20: "indicate", 0x40: "authenticated-signed-writes", 0x80: "extended-properties"}
_MTU = 247            # what phones and BlueZ typically negotiate; wearables accept it


@dataclass(frozen=True)
class BumbleDetails:
    """`BLEDevice.details` of a device found in a simulated world."""
    world: Any
    address: str


def _uuid(bumble_uuid) -> str:
    return normalize_uuid_str(bumble_uuid.to_hex_str("-"))


def _world(kwargs: dict, device: BLEDevice | str):
    world = kwargs.get("world") or (device.details.world if isinstance(device, BLEDevice)
                                    and isinstance(device.details, BumbleDetails) else None)
    if world is None:
        raise BleakError("the Bumble backend needs world=BleWorld (or a BLEDevice found by BumbleScanner)")
    return world


def advertisement_data(adv) -> tuple[str | None, AdvertisementData]:
    """A Bumble advertisement (advertising data + scan response merged) as bleak's AdvertisementData."""
    from bumble.core import AdvertisingData as AD
    name, uuids, manufacturer, service_data, tx = None, [], {}, {}, None
    uuid16 = (AD.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, AD.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS)
    uuid128 = (AD.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, AD.INCOMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS)
    for kind, value in adv.data.ad_structures:
        if kind == AD.COMPLETE_LOCAL_NAME or (kind == AD.SHORTENED_LOCAL_NAME and name is None):
            name = value.decode("utf-8", "replace")
        elif kind in uuid16:
            uuids += [normalize_uuid_str(f"{int.from_bytes(value[i:i + 2], 'little'):04x}")
                      for i in range(0, len(value) - 1, 2)]
        elif kind in uuid128:
            for i in range(0, len(value) - 15, 16):
                h = value[i:i + 16][::-1].hex()    # little-endian on air
                uuids.append(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
        elif kind == AD.MANUFACTURER_SPECIFIC_DATA and len(value) >= 2:
            manufacturer[int.from_bytes(value[:2], "little")] = bytes(value[2:])
        elif kind == AD.SERVICE_DATA_16_BIT_UUID and len(value) >= 2:
            service_data[normalize_uuid_str(f"{int.from_bytes(value[:2], 'little'):04x}")] = bytes(value[2:])
        elif kind == AD.TX_POWER_LEVEL and value:
            tx = int.from_bytes(value[:1], "little", signed=True)
    uuids = list(dict.fromkeys(uuids))    # the emulated controller repeats data in the scan response
    return name, AdvertisementData(name, manufacturer, service_data, uuids, tx, adv.rssi, (adv,))


class BumbleScanner(BaseBleakScanner):
    def __init__(self, detection_callback, service_uuids, scanning_mode="active", *, world=None, **kwargs):
        super().__init__(detection_callback, service_uuids)
        if world is None:
            raise BleakError("the Bumble backend needs world=BleWorld")
        self.world = world
        self.active = scanning_mode != "passive"
        self._central = None

    def _on_advertisement(self, adv) -> None:
        name, data = advertisement_data(adv)
        if not self.is_allowed_uuid(data.service_uuids):
            return
        address = str(adv.address).split("/")[0].upper()   # Bumble appends "/P" for public addresses
        device = self.create_or_update_device(address, address, name, BumbleDetails(self.world, address), data)
        self.call_detection_callbacks(device, data)

    async def start(self) -> None:
        self.seen_devices = {}
        self._central = await self.world.async_central()
        self._central.on(self._central.EVENT_ADVERTISEMENT, self._on_advertisement)
        # Several scanners may share the world's central: scan while any of them runs.
        self.world._scanners = getattr(self.world, "_scanners", 0) + 1
        if not self._central.scanning:
            await self._central.start_scanning(active=self.active, filter_duplicates=False)

    async def stop(self) -> None:
        if self._central is None:
            return
        self._central.remove_listener(self._central.EVENT_ADVERTISEMENT, self._on_advertisement)
        self.world._scanners -= 1
        if self.world._scanners == 0 and self._central.scanning:
            await self._central.stop_scanning()
        self._central = None


class BumbleClient(BaseBleakClient):
    def __init__(self, address_or_ble_device: BLEDevice | str, *, disconnected_callback=None, timeout: float = 10.0,
                 services=None, world=None, **kwargs):
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        self.world = _world({"world": world}, address_or_ble_device)
        self.address = self.address.upper()
        self._name = address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        self._connection = None
        self._peer = None
        self._leaving = False                      # we asked for the disconnect: no callback
        self._subscribers: dict[int, Callable] = {}

    # ------------------------------------------------------------------ connection

    @property
    def name(self) -> str:
        emu = self.world.peripherals.get(self.address)
        return self._name or (emu.name if emu is not None else self.address)

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection is not None else 23

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool = False, **kwargs: Any) -> None:
        from bumble.device import Peer
        from bumble.hci import Address

        central = await self.world.async_central()
        if self.address not in self.world.peripherals:
            raise BleakDeviceNotFoundError(self.address, f"device {self.address} not found in the BLE world")
        lock = self.world.__dict__.setdefault("_connect_lock", asyncio.Lock())
        async with lock:
            try:
                conn = await central.connect(Address(self.address, Address.RANDOM_DEVICE_ADDRESS),
                                             timeout=self._timeout)
            except Exception as exc:   # Bumble's TimeoutError / HCI errors
                raise BleakError(f"{self.address}: connection failed ({exc!r})") from exc
        self._connection, self._leaving = conn, False
        conn.on(conn.EVENT_DISCONNECTION, self._on_disconnection)
        try:
            await conn.gatt_client.request_mtu(_MTU)
            self._peer = Peer(conn)
            self.services = await self._discover()
        except Exception:
            await self.disconnect()
            raise

    async def _discover(self) -> BleakGATTServiceCollection:
        peer = self._peer
        await peer.discover_services()
        collection = BleakGATTServiceCollection()
        mtu = self.mtu_size
        for svc in peer.services:
            await svc.discover_characteristics()
            bsvc = BleakGATTService(svc, svc.handle, _uuid(svc.uuid))
            collection.add_service(bsvc)
            for ch in svc.characteristics:
                await ch.discover_descriptors()
                props = [n for bit, n in _PROPS.items() if ch.properties & bit]
                bch = BleakGATTCharacteristic(ch, ch.handle, _uuid(ch.uuid), props, lambda: mtu - 3, bsvc)
                collection.add_characteristic(bch)
                for d in ch.descriptors:
                    collection.add_descriptor(BleakGATTDescriptor(d, d.handle, _uuid(d.type), bch))
        return collection

    def _on_disconnection(self, *_reason) -> None:
        self._connection, self._peer = None, None
        self._subscribers.clear()
        if not self._leaving and self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        conn = self._connection
        if conn is None:
            return
        self._leaving = True
        try:
            await conn.disconnect()
        except Exception as exc:   # already gone: the link is down either way
            log.debug("%s: disconnect: %r", self.address, exc)
        self._connection, self._peer = None, None

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not emulated (no emulated wearable needs it)")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not emulated")

    # ------------------------------------------------------------------ I/O

    def _require(self) -> None:
        if self._connection is None:
            raise BleakError(f"{self.address}: not connected")

    async def _att(self, what: str, coro):
        try:
            return await coro
        except Exception as exc:   # bumble.att.ATT_Error, ProtocolError, TimeoutError …
            raise BleakError(f"{self.address}: {what} failed: {exc}") from exc

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs) -> bytearray:
        self._require()
        return bytearray(await self._att(f"read {characteristic.uuid}", characteristic.obj.read_value()))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs) -> bytearray:
        self._require()
        return bytearray(await self._att(f"read descriptor {descriptor.handle}",
                                         self._peer.gatt_client.read_value(descriptor.obj)))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data, response: bool) -> None:
        self._require()
        await self._att(f"write {characteristic.uuid}",
                        characteristic.obj.write_value(bytes(data), with_response=response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data) -> None:
        self._require()
        await self._att(f"write descriptor {descriptor.handle}",
                        self._peer.gatt_client.write_value(descriptor.obj, bytes(data), with_response=True))

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs) -> None:
        self._require()

        def subscriber(value: bytes) -> None:
            callback(bytearray(value))

        self._subscribers[characteristic.handle] = subscriber
        try:
            await self._att(f"enabling notifications on {characteristic.uuid}",
                            self._peer.gatt_client.subscribe(characteristic.obj, subscriber, prefer_notify=True))
        except BleakError:
            self._subscribers.pop(characteristic.handle, None)
            # Bumble registered the subscriber before the CCCD write failed: take it out again.
            self._peer.gatt_client.notification_subscribers.pop(characteristic.handle, None)
            self._peer.gatt_client.indication_subscribers.pop(characteristic.handle, None)
            raise

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._require()
        subscriber = self._subscribers.pop(characteristic.handle, None)
        await self._att(f"disabling notifications on {characteristic.uuid}",
                        self._peer.gatt_client.unsubscribe(characteristic.obj, subscriber))
