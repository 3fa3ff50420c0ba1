"""Finding and connecting to one wearable (bleak; a simulated world's backend when given).

`find_device` scans until an advertiser matches the address or the name (exact, or the prefix of
a shortened advertised name) and raises `DeviceNotFound` naming everything it did see.
`connect` uses bleak-retry-connector's `establish_connection` (retries with back-off, BlueZ
cache handling on real adapters) and reports failures as `DeviceNotFound`.
"""
from __future__ import annotations

import asyncio

from bleak import BleakClient, BleakScanner

from streamhar.sources.ble.errors import DeviceNotFound


def _matches(target: str, is_address: bool, device, adv) -> bool:
    if is_address:
        return device.address.upper() == target.upper()
    name = adv.local_name or device.name or ""
    return name == target or (bool(name) and len(name) < len(target) and target.startswith(name)
                              and _shortened(adv))


def _shortened(adv) -> bool:
    # Only a name the advertiser marked as shortened (AD type 0x08) may match as a prefix.
    from bumble.core import AdvertisingData as AD
    raw = getattr(adv, "platform_data", ())
    data = getattr(raw[0], "data", None) if raw else None
    return data is not None and any(k == AD.SHORTENED_LOCAL_NAME for k, _ in data.ad_structures)


def adapter_problem(exc: Exception) -> str:
    """An OS-level scan failure in words a user can act on."""
    return (f"no usable Bluetooth adapter ({type(exc).__name__}: {exc}); is an adapter present, powered on and "
            f"(on Linux) BlueZ running? Without hardware add ?simulate=replay:DATASET:SELECTOR to the spec")


async def find_device(target: str, is_address: bool, timeout: float, what: str, scanner_kwargs: dict | None = None):
    """The BLEDevice advertising as `target`; `DeviceNotFound` after `timeout` seconds."""
    seen: dict[str, str] = {}
    found = asyncio.get_running_loop().create_future()

    def on_adv(device, adv) -> None:
        seen[device.address] = adv.local_name or device.name or "?"
        if not found.done() and _matches(target, is_address, device, adv):
            found.set_result(device)

    scanner = BleakScanner(on_adv, **(scanner_kwargs or {}))
    try:
        await scanner.start()
    except Exception as exc:   # no adapter, no BlueZ, Bluetooth off
        raise DeviceNotFound(f"{what}: cannot scan for {target!r}: {adapter_problem(exc)}") from exc
    try:
        return await asyncio.wait_for(asyncio.shield(found), timeout)
    except asyncio.TimeoutError:
        listing = ", ".join(f"{n} ({a})" for a, n in sorted(seen.items(), key=lambda x: x[1])) or "no device at all"
        kind = "address" if is_address else "name"
        raise DeviceNotFound(f"{what}: no device with {kind} {target!r} advertised within {timeout:.3g} s; "
                             f"seen: {listing}") from None
    finally:
        await scanner.stop()


async def connect(device, what: str, disconnected_callback=None, client_kwargs: dict | None = None,
                  attempts: int = 3) -> BleakClient:
    from bleak_retry_connector import establish_connection
    try:
        return await establish_connection(BleakClient, device, device.name or device.address,
                                          disconnected_callback=disconnected_callback, max_attempts=attempts,
                                          **(client_kwargs or {}))
    except Exception as exc:   # BleakNotFoundError, BleakConnectionError, BleakAbortedError …
        raise DeviceNotFound(f"{what}: found {device.name or '?'} ({device.address}) but could not "
                             f"connect: {exc}") from exc
