"""The `ble:` source spec: `ble:PROFILE:ADDRESS_OR_NAME[?OPTION=VALUE&…]`.

    ble:polar:Polar H10 1A2B3C4D?at=chest
    ble:generic:F1:5B:00:01:00:C1?rate=100
    ble:generic:shg-imu?at=hip&simulate=replay:usc-had:12

Options: `at` placement (channel prefix; default: the recording's sensor group when simulating,
else the profile's default), `rate` Hz, `simulate=replay:DATASET[:SELECTOR]` (an emulated
wearable replays that recording, see `simulate.py`), `model` (emulated model, e.g. Polar
`Verity Sense`), `group` (which IMU of the recording to emulate, e.g. DSADS `RA`), `give_up`
seconds without the device before a reconnect gives up (default 30), `scan` seconds to look
for the device (default 10). An address is six hex pairs (colons inside are kept); anything
else is an advertised name (matched exactly; a shortened advertised name matches its prefix).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from streamhar.errors import UsageError

OPTIONS = ("at", "rate", "simulate", "model", "group", "give_up", "scan")
# Options one profile understands, handed to its constructor: Movesense `kind=IMU6|IMU9`,
# WitMotion `angles=1` (also stream its fused roll/pitch/yaw).
PROFILE_OPTIONS = {"kind": str.upper, "angles": lambda v: v.lower() in ("1", "true", "yes", "on")}
_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f-]{36}$")   # MAC, or a macOS UUID


@dataclass(frozen=True)
class BleSpec:
    profile: str
    target: str                       # address or advertised name
    options: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def is_address(self) -> bool:
        return bool(_ADDRESS.match(self.target))

    @property
    def placement(self) -> str | None:
        return self.options.get("at")

    @property
    def rate(self) -> float | None:
        return _number(self, "rate")

    @property
    def simulate(self) -> str | None:
        return self.options.get("simulate")

    @property
    def profile_options(self) -> dict:
        return {k: PROFILE_OPTIONS[k](v) for k, v in self.options.items() if k in PROFILE_OPTIONS}

    @property
    def give_up_s(self) -> float:
        return _number(self, "give_up") or 30.0

    @property
    def scan_s(self) -> float:
        return _number(self, "scan") or 10.0


def _number(spec: BleSpec, key: str) -> float | None:
    if key not in spec.options:
        return None
    try:
        v = float(spec.options[key])
    except ValueError:
        v = -1
    if v <= 0:
        raise UsageError(f"source {spec.text!r}: {key}={spec.options[key]!r} is not a positive number")
    return v


def parse_ble_spec(text: str) -> BleSpec:
    head, _, query = text.partition("?")
    parts = head.split(":", 2)
    if len(parts) < 3 or parts[0] != "ble" or not parts[1] or not parts[2]:
        raise UsageError(f"source {text!r}: expected ble:PROFILE:ADDRESS_OR_NAME[?at=PLACEMENT&rate=HZ&"
                         f"simulate=replay:DATASET:SELECTOR], e.g. ble:polar:Polar H10 1A2B3C4D")
    options = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or (key not in OPTIONS and key not in PROFILE_OPTIONS):
            raise UsageError(f"source {text!r}: option {item!r} unknown; options are "
                             f"{', '.join(OPTIONS + tuple(PROFILE_OPTIONS))}")
        options[key] = unquote(value)
    return BleSpec(parts[1], unquote(parts[2]), options, text)
