"""`simulate=replay:DATASET[:SELECTOR]`: an emulated wearable replaying a real recording.

`simulated_peripheral(spec, world, data_dir)` loads the selected recordings (concatenated, looped
forever by the emulator's sensor time line), builds the profile's emulator (`registry.EMULATORS`)
advertising under the spec's name or address, and adds it to `world`. Sources simulated in one
process share `shared_world()` — one loop thread, one link, one central, as one host adapter
serves several real wearables — so their clocks and timestamps are directly comparable; a source
in another process simulates its own world (time stamps still align: every world's host clock is
`time.monotonic()`).
"""
from __future__ import annotations

import threading

from streamhar.errors import UsageError
from streamhar.sources.ble.registry import get_emulator
from streamhar.sources.ble.spec import BleSpec

_shared = None
_lock = threading.Lock()


def shared_world():
    """The process's simulated BLE world (made on first use, lives until the process ends)."""
    global _shared
    with _lock:
        if _shared is None or _shared.loop.is_closed():
            from streamhar.sources.ble.world import BleWorld
            _shared = BleWorld()
        return _shared


def load_recordings(simulate: str, data_dir=None, what: str = "ble"):
    from streamhar.datasets import get_dataset
    from streamhar.datasets.paths import resolve_data_dir
    from streamhar.sources.replay import parse_replay_spec

    rs = parse_replay_spec(simulate)
    recs = get_dataset(rs.dataset).load_selection(resolve_data_dir(data_dir or None), rs.selector)
    if not recs:
        raise UsageError(f"{what}: simulate={simulate} selects no recording")
    return recs


def simulated_peripheral(spec: BleSpec, world, data_dir=None):
    """Add the emulated wearable `spec` describes to `world`; returns the emulator (already advertising)."""
    cls = get_emulator(spec.profile)
    for emu in world.peripherals.values():      # already simulated here (a second source on it)
        if (emu.address == spec.target.upper()) if spec.is_address else (emu.name == spec.target):
            return emu
    recs = load_recordings(spec.simulate, data_dir, spec.text)
    kwargs = {"address": spec.target} if spec.is_address else {"name": spec.target}
    if "group" in spec.options:
        kwargs["group"] = spec.options["group"]
    if "model" in spec.options:
        kwargs["model"] = spec.options["model"]
    if spec.rate and spec.profile == "generic":
        kwargs["rate"] = spec.rate
    try:
        emulator = cls(recs, **kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"source {spec.text!r}: cannot emulate it: {exc}") from None
    return world.add(emulator)
