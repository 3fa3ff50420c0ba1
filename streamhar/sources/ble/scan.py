"""`streamhar devices scan`: nearby BLE advertisers and the profile that fits each.

A device fits a profile when it advertises one of the profile's service UUIDs or its name
matches one of the profile's name patterns (Polar sensors advertise only their name); otherwise
it is listed as "unknown". `simulated_world()` builds a world with one emulated wearable per
registered emulator (silent sensor data: scanning needs no recording) for `--simulate`.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from streamhar.sources.ble.registry import EMULATORS, PROFILES, load_builtin


@dataclass(frozen=True)
class Found:
    name: str
    address: str
    rssi: int
    profile: str            # registry key, or "unknown"
    service_uuids: tuple[str, ...] = ()


def fitting_profile(name: str | None, uuids) -> str:
    load_builtin()
    # Service UUIDs are the stronger evidence: check them for every profile before names.
    for cls in PROFILES.values():
        if cls.matches(None, uuids):
            return cls.name
    for cls in PROFILES.values():
        if cls.matches(name, ()):
            return cls.name
    return "unknown"


async def scan(timeout: float = 5.0, scanner_kwargs: dict | None = None) -> list[Found]:
    """Every advertiser seen within `timeout` seconds, strongest signal first."""
    from bleak import BleakScanner

    from streamhar.sources.ble.errors import BleError

    try:
        seen = await BleakScanner.discover(timeout=timeout, return_adv=True, **(scanner_kwargs or {}))
    except Exception as exc:   # no adapter / BlueZ / permission
        from streamhar.sources.ble.connect import adapter_problem
        raise BleError(f"BLE scan failed: {adapter_problem(exc).split('; ')[0]}; try --simulate to see emulated "
                       f"wearables") from exc
    found = []
    for device, adv in seen.values():
        name = adv.local_name or device.name or ""
        found.append(Found(name, device.address, adv.rssi, fitting_profile(name, adv.service_uuids),
                           tuple(adv.service_uuids)))
    return sorted(found, key=lambda f: (-f.rssi, f.name))


def simulated_world():
    """A world holding one emulated wearable per registered emulator (for `scan --simulate`)."""
    from streamhar.sources.ble.emulators.base import SensorData
    from streamhar.sources.ble.world import BleWorld

    load_builtin()
    still = SensorData(100.0, {q: np.zeros((100, 3)) for q in ("acc", "gyro", "mag")}, "wrist", "silence")
    world = BleWorld()
    for cls in EMULATORS.values():
        world.add(cls(still))
    return world


def scan_devices(timeout: float = 5.0, simulate: bool = False) -> list[Found]:
    if not simulate:
        return asyncio.run(scan(timeout))
    world = simulated_world()
    try:
        return world.run(scan(timeout, world.scanner_kwargs()), timeout + 10)
    finally:
        world.close()
