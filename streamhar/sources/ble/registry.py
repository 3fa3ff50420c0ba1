"""The profile and emulator registries: `PROFILES` / `EMULATORS`, keyed by profile name.

Modules register with the decorators; `load_builtin()` imports the shipped modules (call it
before looking a name up: `get_profile`/`get_emulator` do).
"""
from __future__ import annotations

import importlib

from streamhar.errors import UsageError

PROFILES: dict[str, type] = {}     # name → Profile subclass
EMULATORS: dict[str, type] = {}    # name → Emulator subclass

BUILTIN = ("generic", "polar", "movesense", "witmotion", "thingy52")
_loaded = False


def register_profile(cls):
    PROFILES[cls.name] = cls
    return cls


def register_emulator(cls):
    EMULATORS[cls.profile] = cls
    return cls


def load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in BUILTIN:
        for kind in ("profiles", "emulators"):
            name = f"streamhar.sources.ble.{kind}.{mod}"
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:    # a module that exists but fails to import is a bug: show it
                    raise


def get_profile(name: str) -> type:
    load_builtin()
    if name not in PROFILES:
        raise UsageError(f"ble:{name}: unknown BLE profile; known: {', '.join(sorted(PROFILES))}")
    return PROFILES[name]


def get_emulator(name: str) -> type:
    load_builtin()
    if name not in EMULATORS:
        raise UsageError(f"ble:{name}: no emulator for this profile; emulated: {', '.join(sorted(EMULATORS))}")
    return EMULATORS[name]
