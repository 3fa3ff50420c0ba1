"""A simulated BLE world: one asyncio loop, one in-memory Bumble link, emulated wearables and a central.

    world = BleWorld()                                   # starts its loop thread
    emu = world.add(GenericEmulator(recording))          # powers on, advertises
    async def main():
        async with BleakClient(emu.address, **world.client_kwargs()) as client: ...
    world.run(main())                                    # bleak code runs in the world's loop
    world.close()

Every device is a Bumble `Device` with its own virtual `Controller` on the shared `LocalLink` (the
pattern of `bumble.testing`): peripherals are `emulators.base.Emulator`s, and one central serves
every bleak client and scanner of the world (`bumble_backend`). Bumble objects belong to the loop
they were made in, so everything — emulators, scans, connections, the `BleSource`s of a simulated
demo — runs in `world.loop` (`world.run(coro)` from other threads; inside the loop use the
`async_*` methods). A world lives in one process; sources in different processes each simulate
their own world.
"""
from __future__ import annotations

import itertools

from streamhar.sources.ble.loop import LoopThread

_ids = itertools.count(1)


class BleWorld:
    def __init__(self, loop: LoopThread | None = None):
        self.thread = loop or LoopThread("ble-world")
        self.loop = self.thread.loop
        self.link = None
        self.central = None                       # bumble Device, made on first use
        self.peripherals: dict[str, object] = {}  # address (upper case) → Emulator
        self._n = 0
        self.world_id = next(_ids)

    # ------------------------------------------------------------------ from other threads

    def run(self, coro, timeout: float | None = None):
        return self.thread.run(coro, timeout)

    def add(self, emulator):
        """Power on `emulator` in this world and start its advertising; returns it."""
        return self.run(self.async_add(emulator), 30)

    def close(self) -> None:
        self.thread.close()

    def __enter__(self) -> "BleWorld":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ inside the loop

    def _next_address(self) -> str:
        # Random static addresses (two top bits set), unique per world and device.
        self._n += 1
        return f"F{self.world_id % 16:X}:5B:{self._n >> 8 & 0xFF:02X}:{self._n & 0xFF:02X}:00:C1"

    async def _device(self, name: str, address: str):
        from bumble.controller import Controller
        from bumble.device import Device
        from bumble.hci import Address
        from bumble.host import Host
        from bumble.link import LocalLink
        from bumble.transport.common import AsyncPipeSink

        if self.link is None:
            self.link = LocalLink()
        controller = Controller(name, link=self.link, public_address=address)
        device = Device(name=name, address=Address(address, Address.RANDOM_DEVICE_ADDRESS),
                        host=Host(controller, AsyncPipeSink(controller)))
        await device.power_on()
        return device

    async def async_add(self, emulator):
        emulator.address = (emulator.address or self._next_address()).upper()
        if emulator.address in self.peripherals:
            raise ValueError(f"address {emulator.address} already used in this BLE world")
        device = await self._device(emulator.name, emulator.address)
        await emulator.attach(device)
        self.peripherals[emulator.address] = emulator
        return emulator

    async def async_central(self):
        """The world's central (one Bumble device for every client and scanner)."""
        if self.central is None:
            self.central = await self._device("streamhar-central", self._next_address())
        return self.central

    # ------------------------------------------------------------------ bleak

    def client_kwargs(self) -> dict:
        """Keyword arguments that make `BleakClient` / `establish_connection` use this world."""
        from streamhar.sources.ble.bumble_backend import BumbleClient
        return {"backend": BumbleClient, "world": self}

    def scanner_kwargs(self) -> dict:
        from streamhar.sources.ble.bumble_backend import BumbleScanner
        return {"backend": BumbleScanner, "world": self}
