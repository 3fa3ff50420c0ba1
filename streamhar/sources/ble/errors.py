"""The BLE errors a user can act on, each naming the device and what was expected.

All are `StreamharError`s, so the CLI prints them on one line and exits 2.
"""
from __future__ import annotations

from streamhar.errors import StreamharError


class BleError(StreamharError):
    """Base of every BLE fault the user has to fix (or wait out)."""


class DeviceNotFound(BleError):
    """No advertiser matched the name/address within the scan; the message lists what was seen."""


class WrongProfile(BleError):
    """The device is there but lacks the GATT service/characteristic its profile needs."""


class NotificationsRefused(BleError):
    """Subscribing (CCCD write) or the profile's start command was refused by the device."""


class DeviceLost(BleError):
    """The device disconnected and did not come back within the source's `give_up_s`."""
