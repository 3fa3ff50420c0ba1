"""`BleSource`: a BLE wearable as a live source (`ble:PROFILE:ADDRESS_OR_NAME[?…]`, see `spec.py`).

    src = BleSource("ble:polar:Polar H10 1A2B3C4D?at=chest")
    for chunk in src.chunks(stop): ...          # float32 SI samples on the host clock
    src.counters(); src.close()

Opening (the constructor) scans for the device, connects (bleak-retry-connector), runs the
profile's `setup` and `start` (frames before the first `chunks()` call are skipped and counted in
`frames_before_start`: a pipeline still starting must not get a burst of stale samples): afterwards `rate` and `channels` (`{placement}.{acc|gyro|mag}.{x|y|z}`,
SI units) are known. Errors name the device and what was expected: `DeviceNotFound` (with what the
scan did see), `WrongProfile` (service missing), `NotificationsRefused`.

The BLE side runs in an asyncio loop in a thread — the source's own, or the simulated world's —
and hands finished arrays to `chunks()` through a queue; `ChunkMaker` numbers the chunks and keeps
time increasing. Each notification is decoded by the profile, placed on the device's time line
(`timeline.py`: unwrap, loss and gap counting, `DeviceClock` drift/offset → `time.monotonic()`),
and merged across streams (`merge.py`, Polar ACC + GYRO). An unsolicited disconnect starts a
reconnect (scan, connect, setup, start — resubscribing) until `give_up` seconds pass; the next
chunk then starts a new recording and the gap is counted (`gap_samples`); giving up raises
`DeviceLost` from `chunks()`.

Simulation: with `simulate=replay:…` in the spec (or `world=` given), the wearable is an emulator
in a `BleWorld` (the process's shared one by default, `simulate.py`) reached through the Bumble
backend — the same code path as real hardware from bleak upwards. Several `ble:` sources in one
process work (each its own loop thread for real devices; simulated ones share the world's loop).
"""
from __future__ import annotations

import asyncio
import queue
import time
from typing import Callable, Iterator

import numpy as np

from streamhar.errors import StreamharError, UsageError
from streamhar.recording import Channel
from streamhar.sources.ble.connect import connect, find_device
from streamhar.sources.ble.errors import BleError, DeviceLost
from streamhar.sources.ble.merge import StreamMerger
from streamhar.sources.ble.profile import Frame
from streamhar.sources.ble.registry import get_profile
from streamhar.sources.ble.spec import BleSpec, parse_ble_spec
from streamhar.sources.ble.timeline import DeviceTimeline
from streamhar.sources.chunk import Chunk
from streamhar.sources.live import ChunkMaker

_RESTART = object()
CHUNK_S = 0.05          # the least a chunk holds (or waits for), seconds


def _join(held: list[tuple]) -> tuple:
    times = np.concatenate([h[0] for h in held])
    rows = np.concatenate([h[1] for h in held])
    truth = None if any(h[2] is None for h in held) else np.concatenate([h[2] for h in held])
    return times, rows, truth


class BleSource:
    live = True
    class_names: tuple[str, ...] = ()

    def __init__(self, spec: str | BleSpec, *, world=None, data_dir=None, stream: str | None = None,
                 open_timeout: float = 60.0):
        self.spec = spec if isinstance(spec, BleSpec) else parse_ble_spec(spec)
        self.stream = stream or self.spec.text
        self.what = f"ble:{self.spec.profile}:{self.spec.target}"
        profile_cls = get_profile(self.spec.profile)
        self.emulator = None
        self.sim_first_sample: int | None = None   # simulation: the recorded sample first received
        self._own_loop = None
        placement = self.spec.placement
        if self.spec.simulate or world is not None:
            from streamhar.sources.ble.simulate import shared_world, simulated_peripheral
            world = world or shared_world()
            if self.spec.simulate:
                self.emulator = simulated_peripheral(self.spec, world, data_dir)
                placement = placement or self.emulator.data.group
            self.world = world
            self.loop_thread = world.thread
            self._client_kwargs, self._scanner_kwargs = world.client_kwargs(), world.scanner_kwargs()
        else:
            from streamhar.sources.ble.loop import LoopThread
            self.world = None
            self.loop_thread = self._own_loop = LoopThread(f"ble:{self.spec.target}")
            self._client_kwargs, self._scanner_kwargs = {}, {}
        kwargs = {"rate": self.spec.rate, "device": self.what, **self.spec.profile_options}
        if placement:
            kwargs["placement"] = placement
        try:
            self.profile = profile_cls(**kwargs)
        except (TypeError, ValueError) as exc:   # an option this profile does not have, or a bad value
            if self._own_loop is not None:
                self._own_loop.close()
            raise UsageError(f"source {self.spec.text!r}: {exc}") from None
        self._queue: queue.Queue = queue.Queue()
        self._client = None
        self._device = None
        self._closing = False
        # Streaming starts at open (so a refused subscription fails there), but frames count only
        # from the first chunks() call: a pipeline that takes seconds to start must not get a burst
        # of stale samples. Those skipped are counted, never expected downstream.
        self._delivering = False
        self.frames_before_start = 0
        self._reconnect_task: asyncio.Task | None = None
        self.disconnects = self.reconnects = 0
        self.reconnect_s = self.reconnect_s_max = 0.0
        self.errors = 0
        try:
            self.loop_thread.run(self._open(), open_timeout)
        except BaseException:
            self.close()
            raise
        self.rate: float = self.profile.rate
        self.channels: tuple[Channel, ...] = self.profile.channels
        if self.emulator is not None:
            self.class_names = self.emulator.data.class_names   # ground truth comes along (simulation)
        self._maker = ChunkMaker(self.stream, len(self.channels))

    # ------------------------------------------------------------------ in the BLE loop

    async def _open(self) -> None:
        await self._session(self.spec.scan_s)

    def _prepare(self) -> None:
        """Time line and merger, once `setup` settled the streams (before the first frame can come)."""
        p = self.profile
        self.timeline = DeviceTimeline(p.tick_hz, p.wrap_bits, p.counter_bits, {s.key: s.rate for s in p.streams})
        self.merger = StreamMerger([s.key for s in p.streams], [s.width for s in p.streams],
                                   self.timeline.tick_hz / p.rate)

    async def _session(self, scan_s: float) -> None:
        """Find, connect, set up and start streaming (first open and every reconnect)."""
        self._device = await find_device(self.spec.target, self.spec.is_address, scan_s, self.what,
                                         self._scanner_kwargs)
        client = await connect(self._device, self.what, self._on_disconnect, self._client_kwargs)
        try:
            await self.profile.setup(client)
            self.profile.reset()
            if getattr(self, "timeline", None) is None:
                self._prepare()
            self._client = client
            await self.profile.start(client, self._on_frame)
        except BaseException as exc:
            self._client = None
            await _quietly(client.disconnect())
            if isinstance(exc, Exception) and not isinstance(exc, StreamharError):   # BleakError, ATT …
                raise BleError(f"{self.what}: setting up the {self.profile.name} stream failed: {exc}") from exc
            raise

    def _on_frame(self, frame: Frame) -> None:
        arrival = time.monotonic()
        if not self._delivering:       # before the first chunks() call: the pipeline is not running yet
            self.frames_before_start += 1
            return
        try:
            ticks, _ = self.timeline.frame(frame, arrival)
            ticks, rows = self.merger.push(frame.stream, ticks, frame.samples)
            if len(ticks):
                truth = self._truth(ticks)
                self._queue.put((self.timeline.host_times(ticks), rows, truth))
        except Exception as exc:   # a bug, not a radio fault: stop the stream loudly
            self.errors += 1
            self._queue.put(StreamharError(f"{self.what}: frame handling failed: {exc!r}"))

    def _truth(self, ticks: np.ndarray) -> np.ndarray | None:
        """Simulation only: the emulator's ground truth for these samples (out of band, so a demo
        can score itself). Profiles without device time stamps number samples themselves, so
        their ticks are not the emulator's and no truth is given."""
        if self.emulator is None or self.timeline.synthetic:
            return None
        if self.sim_first_sample is None:
            self.sim_first_sample = int(self.emulator.recorded_index(ticks[:1], self.profile.rate)[0])
        return self.emulator.labels_at(ticks, self.profile.rate)

    def _on_disconnect(self, _client) -> None:
        if self._closing:
            return
        self.disconnects += 1
        self._client = None
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(time.monotonic()))

    async def _reconnect(self, since: float) -> None:
        deadline = since + self.spec.give_up_s
        last: Exception | None = None
        while not self._closing and time.monotonic() < deadline:
            try:
                self.timeline.resume()
                self.merger.reset()
                await self._session(max(0.5, min(5.0, deadline - time.monotonic())))
            except Exception as exc:          # not found yet, dropped again, refused while it boots: retry
                last = exc
                await asyncio.sleep(0.2)
                continue
            took = time.monotonic() - since
            self.reconnects += 1
            self.reconnect_s, self.reconnect_s_max = took, max(self.reconnect_s_max, took)
            self._queue.put(_RESTART)
            return
        if not self._closing:
            self._queue.put(DeviceLost(f"{self.what}: disconnected and not back within "
                                       f"{self.spec.give_up_s:g} s (last error: {last})"))

    async def _close(self) -> None:
        if self._reconnect_task is not None and not self._reconnect_task.done():
            self._reconnect_task.cancel()
        client, self._client = self._client, None
        if client is not None:
            await _quietly(self.profile.stop(client))
            await _quietly(client.disconnect())

    # ------------------------------------------------------------------ consumer side

    def chunks(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Chunk]:
        """Chunks of at least CHUNK_S of samples (or what came within CHUNK_S): wearables that
        notify one sample at a time (WitMotion, Thingy:52) would otherwise cost the pipeline one
        message per sample."""
        want = max(1, round(self.rate * CHUNK_S))
        self._delivering = True
        held: list[tuple] = []
        since = 0.0
        while not stop() and not self._closing:
            try:
                item = self._queue.get(timeout=0.02)
            except queue.Empty:
                item = None
            if item is not None and not isinstance(item, tuple):   # a restart or an error: flush first
                if held:
                    yield self._maker.make(*_join(held))
                    held = []
                if item is _RESTART:
                    self._maker.restart()
                    continue
                raise item
            if item is not None:
                if not held:
                    since = time.monotonic()
                held.append(item)
            if held and (sum(len(h[0]) for h in held) >= want or time.monotonic() - since >= CHUNK_S):
                yield self._maker.make(*_join(held))
                held = []

    def counters(self) -> dict[str, int | float]:
        t = getattr(self, "timeline", None)
        out = {"frames_before_start": self.frames_before_start,
               "disconnects": self.disconnects, "reconnects": self.reconnects,
               "reconnect_s": round(self.reconnect_s, 4), "reconnect_s_max": round(self.reconnect_s_max, 4),
               "errors": self.errors, "corrupt": getattr(self.profile, "corrupt", 0)}
        if t is not None:
            out |= {"packets": t.packets, "samples": t.samples, "packets_lost": t.packets_lost,
                    "samples_lost": t.samples_lost, "gap_samples": t.gap_samples,
                    "last_gap_samples": t.last_gap_samples, "gaps_estimated": t.gaps_estimated,
                    "overlaps": t.overlaps, "clock_restarts": t.clock_restarts,
                    "drift_ppm": round(t.clock.drift_ppm, 2), "nan_rows": self.merger.nan_rows,
                    "orphans": self.merger.orphans, "skipped_start": self.merger.skipped_start}
        if hasattr(self, "_maker"):
            out["clock_steps"] = self._maker.clock_steps
        if self.sim_first_sample is not None:
            out["sim_first_sample"] = self.sim_first_sample
        return out

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            if not self.loop_thread.loop.is_closed():
                self.loop_thread.run(self._close(), 10)
        except Exception:   # closing a source must not raise; the link is gone either way
            pass
        if self._own_loop is not None:
            self._own_loop.close()

    def __enter__(self) -> "BleSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


async def _quietly(coro) -> None:
    try:
        await asyncio.wait_for(coro, 5.0)
    except Exception:
        pass
