"""An asyncio loop running in a daemon thread, driven from synchronous code.

bleak and Bumble are asyncio libraries while the pipeline's source stage is a plain iterator:
`LoopThread.run(coro)` runs a coroutine in the loop and waits for its result, `submit` does not
wait. One loop serves every BLE object that must share it (a simulated world's devices and the
sources connected to them).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading


class LoopThread:
    def __init__(self, name: str = "ble-loop"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro) -> concurrent.futures.Future:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro, timeout: float | None = None):
        """Run `coro` in the loop and return its result (re-raising its exception)."""
        if self.in_loop:
            raise RuntimeError("LoopThread.run called from its own loop: await the coroutine instead")
        fut = self.submit(coro)
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise TimeoutError(f"BLE operation did not finish within {timeout:g} s") from None

    def call(self, fn, *args) -> None:
        """Call `fn(*args)` in the loop soon (thread-safe)."""
        self.loop.call_soon_threadsafe(fn, *args)

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def _cancel_all():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            try:
                self.submit(_cancel_all()).result(5)
            except Exception:
                pass
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()
