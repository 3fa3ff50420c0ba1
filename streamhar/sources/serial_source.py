"""A board that runs the device firmware, streaming over a serial port: `serial:PORT[?OPTIONS]`.

    serial:/dev/ttyACM0
    serial:/dev/serial/by-id/usb-…?baud=921600&stream=both&at=RA&threshold=121082

Options: `baud` (115200), `stream` = samples (raw sensor samples → chunks), cascade (the device's
own narrow-width results → device windows) or both; `at` = the sensor's placement: channels the
device names `acc.x` … `mag.z` (or `PLACE.acc.x` …) become `AT.acc.x` …, as the data sets and
bundles name them (default: the device's names as they are); `threshold` = the device-tier
cascade threshold to set (default: the device's own); `timeout` = seconds to wait for each
handshake reply (3); `give_up` = seconds of reconnecting before giving up (30); `fast` = 1 asks a
recording-backed sensor to replay as fast as the link drains (tests and benchmarks).

Opening speaks docs/PROTOCOL.md: VERSION_REQ → VERSION (model id, boot), SENSOR_REQ → SENSOR
(rate, channels, units, scales), SET_THRESHOLD if asked, SET_STREAM → ACK. Units pass through
as the device gives them; windowing converts to the model's.

API (a live source, streamhar/sources/live.py):
- `SerialSource(port, baud=…, mode="samples"|"cascade"|"both", at=…, threshold=…, timeout_s=…,
  give_up_s=…, fast=…, stream=NAME, on_window=…)` or `SerialSource.from_spec("serial:…",
  stream=NAME)` opens the port and handshakes; attributes `stream` (the name), `rate`, `channels`,
  `class_names` (), `version` (protocol.Version), `sensor` (protocol.SensorInfo).
- `chunks(stop)`: `Chunk`s of raw × scale (float32) on the host clock; device windows go to the
  `on_window` callback (if any) as they arrive.
- `events(stop)`: the same stream with the `DeviceWindow`s in arrival order among the chunks —
  for a consumer that wants both on one thread.
- `counters()`: see COUNTERS below; `close()`: stops the device's streams and closes the port.
- `set_threshold(n)`: the device-tier threshold while streaming (from the streaming thread);
  `threshold_from_window` then says from which window id on the device decided with it;
  `samples_stream_bytes(n)`: what n samples cost as SAMPLES frames (what the cascade saves).

Faults and what they count (none raises): garbage, torn, corrupted and overlong frames are
dropped by the `FrameDecoder` and counted by kind (`garbage_bytes` = wire bytes of refused
frames); device frames lost on the way show as `seq_gaps`; samples lost as `first_index` gaps
(`lost_samples`, exact even across lost frames, and the chunk timestamps jump so windowing sees
the hole); window ids likewise (`windows_lost`). An unsolicited boot VERSION (the device reset)
re-configures the device, restarts the clock and starts a new recording. A read error or a
vanished port path closes the port and reconnects with exponential backoff (0.05 s doubling to
1 s); samples the device counted during the outage are `lost_samples`. Only after `give_up_s`
without the device, or when another device answers, does it raise a `StreamharError`.

Host time: a frame's device time (µs, u32, wraps) is mapped by `DeviceClock`, observed with the
arrival of each frame's last sample; `drift_ppm` is its estimate. With `fast` the device stamps
samples as at the real rate but sends them faster, so device time runs ahead of the host's: the
clock is fixed by the first frame (timestamps = its arrival + device time since), no drift fit.

A reconnect keeps a stream the device is still sending (SET_STREAM would restart its
numbering): the numbering continues and the samples sent into the outage are `lost_samples`.
A device that stopped streaming is started again (`index_restarts`); one whose clock restarted
meanwhile rebooted unseen (`device_resets`): its clock is learnt anew.
"""
from __future__ import annotations

import math
import os
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, fields
from typing import Callable, Iterator

import numpy as np

from streamhar.errors import StreamharError, UsageError
from streamhar.firmware import protocol as p
from streamhar.recording import Channel
from streamhar.sources.chunk import Chunk
from streamhar.sources.clock import DeviceClock
from streamhar.sources.live import ChunkMaker

STREAMS = {"samples": p.StreamFlag.SAMPLES,
           "cascade": p.StreamFlag.RESULTS | p.StreamFlag.UNCERTAIN,
           "both": p.StreamFlag.SAMPLES | p.StreamFlag.RESULTS | p.StreamFlag.UNCERTAIN}
READ_S = 0.05                        # one port read waits at most this long: stop() is seen promptly
BACKOFF_FIRST_S, BACKOFF_MAX_S = 0.05, 1.0
_AXIS = re.compile(r"(?:[A-Za-z0-9_-]+\.)?((?:acc|gyro|mag)\.[xyz])")   # [placement.]quantity.axis
_PLACEMENT = re.compile(r"[A-Za-z0-9_-]+")
_WRAP = 1 << 32


class SerialSourceError(StreamharError):
    """The serial device cannot be used (absent, not our protocol, no sensor, gone for good)."""


class PortAbsent(SerialSourceError):
    """The port cannot be opened (no such path, permission): while reconnecting, try again."""


class _LinkDown(Exception):
    """The port failed mid-session (read/write error, path gone, no reply): reconnect."""


class _Stopped(Exception):
    """stop() became true while waiting for the device."""


# ------------------------------------------------------------------ the spec

@dataclass(frozen=True)
class SerialSpec:
    port: str
    baud: int = 115200
    stream: str = "samples"
    at: str | None = None
    threshold: int | None = None
    timeout_s: float = 3.0
    give_up_s: float = 30.0
    fast: bool = False


_KEYS = {"baud": "baud", "stream": "stream", "at": "at", "threshold": "threshold", "timeout": "timeout_s",
         "give_up": "give_up_s", "fast": "fast"}


def parse_serial_spec(spec: str) -> SerialSpec:
    """`serial:PORT[?baud=N&stream=samples|cascade|both&at=PLACEMENT&threshold=N&timeout=S&give_up=S&fast=0|1]`."""
    form = "serial:PORT[?baud=115200&stream=samples|cascade|both&at=PLACEMENT&threshold=N&timeout=S]"
    if not spec.startswith("serial:") or len(spec) == len("serial:") or spec[len("serial:")] == "?":
        raise UsageError(f"source {spec!r}: expected {form}, e.g. serial:/dev/ttyACM0?baud=921600")
    port, _, query = spec[len("serial:"):].partition("?")
    values: dict[str, object] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if key not in _KEYS or not eq:
            raise UsageError(f"source {spec!r}: unknown option {item!r}; expected key=value with key one of "
                             f"{', '.join(_KEYS)}")
        values[_KEYS[key]] = _option(spec, key, value)
    return SerialSpec(port, **values)


def _option(spec: str, key: str, value: str):
    def bad(expected: str):
        return UsageError(f"source {spec!r}: option {key}={value!r}: expected {expected}")

    try:
        if key == "baud":
            if int(value) <= 0:
                raise ValueError
            return int(value)
        if key in ("timeout", "give_up"):
            if not float(value) > 0:
                raise ValueError
            return float(value)
        if key == "threshold":
            if int(value) < -1:
                raise ValueError
            return int(value)
    except ValueError:
        raise bad({"baud": "a positive integer (bits/s)", "threshold": "an integer ≥ -1 (-1: never escalate)"}
                  .get(key, "a positive number of seconds")) from None
    if key == "stream":
        if value not in STREAMS:
            raise bad(" or ".join(STREAMS))
        return value
    if key == "at":
        if not _PLACEMENT.fullmatch(value):
            raise bad("a placement name of letters, digits, _ or -, e.g. RA or wrist")
        return value
    if value not in ("0", "1"):
        raise bad("0 or 1")
    return value == "1"


def channels_for(device: tuple, at: str | None) -> tuple[Channel, ...]:
    """The device's channels (name, unit) as the pipeline names them: `AT.acc.x` for the acc /
    gyro / mag axes when a placement is given (replacing one the device named, e.g. hip.acc.x),
    the device's own names otherwise."""
    out = []
    for c in device:
        m = _AXIS.fullmatch(c.name)
        if at and m:
            out.append(Channel(f"{at}.{m.group(1)}", c.unit, at))
        else:
            parts = c.name.split(".")
            out.append(Channel(c.name, c.unit, parts[0] if len(parts) == 3 else (at or "")))
    return tuple(out)


# ------------------------------------------------------------------ what the source gives

@dataclass(frozen=True)
class DeviceWindow:
    """A window the device ran its narrow width on (stream=cascade|both). `uncertain`: the device
    did not commit it (margin ≤ threshold); `samples` is then its int8 window [C, L] for the
    host's full width, else None."""
    window_id: int
    t_last: float                 # host time (time.monotonic()) of the window's last sample
    result: p.Result
    samples: np.ndarray | None

    @property
    def uncertain(self) -> bool:
        return self.samples is not None


# Counters (all ints except the *_s and drift_ppm floats):
COUNTERS = (
    "frames",            # device frames decoded and accepted
    "samples_received",  # samples in the chunks made (not "samples": the source stage counts those it sent)
    "lost_samples",      # samples the device numbered but we never got (first_index gaps, outages)
    "sample_gaps",       # how many such gaps
    "index_restarts",    # first_index went back (the device restarted its stream): new recording
    "seq_gaps",          # device frames lost in transit (frame seq gaps; a device reset is not one)
    "crc_errors", "cobs_errors", "short_frames", "overlong_frames", "unknown_types", "bad_payloads",
    "garbage_bytes",     # wire bytes of every refused frame (garbage, torn, corrupted)
    "foreign_frames",    # SAMPLES frames whose channel count is not the sensor's (dropped)
    "device_errors",     # ERROR frames the device sent outside a request
    "device_resets",     # boot VERSIONs (re-configured), or a device clock restarted during an outage
    "disconnects", "reconnects",
    "reconnect_s", "reconnect_max_s",   # time spent reconnecting: total, longest outage
    "device_results", "uncertain_windows", "window_gaps", "windows_lost",
    "rx_bytes",          # wire bytes read from the port (every frame, refused ones too): the radio's cost
    "clock_steps",       # chunk timestamps nudged forward (ChunkMaker)
    "drift_ppm",         # device clock drift estimate (DeviceClock)
)


class SerialSource:
    live = True
    class_names: tuple[str, ...] = ()

    def __init__(self, port: str, *, baud: int = 115200, mode: str = "samples", at: str | None = None,
                 threshold: int | None = None, timeout_s: float = 3.0, give_up_s: float = 30.0,
                 fast: bool = False, stream: str | None = None,
                 on_window: Callable[[DeviceWindow], None] | None = None, clock_span_s: float | None = None):
        """`clock_span_s`: seconds of device time before the clock fits a drift (DeviceClock's
        min_span_s; None: its default)."""
        if mode not in STREAMS:
            raise UsageError(f"serial:{port}: stream {mode!r}; expected {' or '.join(STREAMS)}")
        self.port_path, self.baud, self.mode, self.at = port, baud, mode, at
        self.threshold, self.timeout_s, self.give_up_s, self.fast = threshold, timeout_s, give_up_s, fast
        self.on_window = on_window
        self.flags = int(STREAMS[mode]) | (int(p.StreamFlag.FAST) if fast else 0)
        self.stream = stream or f"serial:{port}"
        self._port = None
        self._closed = False
        self._pending: deque[tuple[p.Received, float]] = deque()
        self._decoder: p.FrameDecoder | None = None
        self._lock = threading.Lock()
        self._rx_before = p.RxCounters()     # decoder counters of earlier connections
        self._n = {k: 0 for k in COUNTERS if k not in ("reconnect_s", "reconnect_max_s", "drift_ppm")}
        self._reconnect_s = self._reconnect_max_s = 0.0
        self._down_since = time.monotonic()  # when the link last went down
        self._reset_gaps = 0                 # seq gaps that were device resets, not losses
        self.clock = DeviceClock(1e6, wrap_bits=32, **({} if clock_span_s is None else {"min_span_s": clock_span_s}))
        self._resync = False                 # a reconnect happened: check the device clock
        self._last_seen: tuple[int, float] | None = None   # (device µs, arrival) of the newest timing frame
        self._next_index: int | None = None
        self._next_window: int | None = None
        self._reply_at = 0                   # where the last reply sat among the frames queued meanwhile
        self.threshold_from_window: int | None = None   # the first window the last set_threshold decided
        self._last_ticks: int | None = None  # unwrapped device time of the newest frame
        self._last_frame_s = 0.1             # seconds of samples in the latest SAMPLES frame
        self._started = False                # SET_STREAM sent (by the first events() call)
        self._connect(initial=True)          # raises SerialSourceError: nothing to stream from
        self.version: p.Version = self._version
        self.sensor = self._sensor
        self.rate = self.sensor.rate_mhz / 1000.0
        self.channels = channels_for(self.sensor.channels, at)
        self._scale = np.array([c.scale for c in self.sensor.channels], np.float32)
        self.maker = ChunkMaker(self.stream, len(self.channels))

    @classmethod
    def from_spec(cls, spec: str, stream: str | None = None,
                  on_window: Callable[[DeviceWindow], None] | None = None) -> SerialSource:
        """`stream`: the stream's name in the pipeline (default: the spec)."""
        s = parse_serial_spec(spec)
        return cls(s.port, baud=s.baud, mode=s.stream, at=s.at, threshold=s.threshold, timeout_s=s.timeout_s,
                   give_up_s=s.give_up_s, fast=s.fast, stream=stream or spec, on_window=on_window)

    # ---------------------------------------------------------------- the live-source API

    def chunks(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Chunk]:
        for e in self.events(stop):
            if isinstance(e, Chunk):
                yield e
            elif self.on_window is not None:
                self.on_window(e)

    def events(self, stop: Callable[[], bool] = lambda: False) -> Iterator[Chunk | DeviceWindow]:
        """Chunks and device windows as their frames arrive, until stop() or close(). The first
        call starts the device's streams (SET_STREAM)."""
        if not self._started and not self._closed and self._port is not None:
            try:
                self._configure(stop, restart_stream=True, threshold=False)
            except _LinkDown:
                self._drop_link()
            except _Stopped:
                return
        while not self._closed:
            try:
                while self._pending and not self._closed:
                    yield from self._dispatch(*self._pending.popleft(), stop)
                if stop() or self._closed:
                    return
                if self._port is None:
                    self._reconnect(stop)
                    continue
                self._read()
            except _LinkDown:
                if self._closed:              # close() from another thread pulled the port away
                    return
                self._drop_link()
            except _Stopped:
                return

    def counters(self) -> dict[str, int | float]:
        rx = self._rx()
        out = dict(self._n)
        for f in fields(rx):
            if f.name in ("crc_errors", "cobs_errors", "short_frames", "overlong_frames", "unknown_types",
                          "bad_payloads"):
                out[f.name] = getattr(rx, f.name)
        out["frames"] = rx.frames_ok
        out["garbage_bytes"] = rx.dropped_bytes
        out["seq_gaps"] = rx.seq_gaps - self._reset_gaps
        out["clock_steps"] = self.maker.clock_steps if hasattr(self, "maker") else 0
        out["reconnect_s"], out["reconnect_max_s"] = self._reconnect_s, self._reconnect_max_s
        out["drift_ppm"] = self.clock.drift_ppm
        return {k: out[k] for k in COUNTERS}

    def set_threshold(self, threshold: int) -> int:
        """Sets the device-tier cascade's threshold while streaming (SET_THRESHOLD); it is also
        what a reconnect or a device reset sets again. Call it from the thread that runs
        `events()`/`chunks()` (e.g. from their `stop` callback): the ACK is read among the stream's
        frames, which stay queued for `events()`. Returns the threshold now in force — the device's
        ACK, or, while the link is down, the one the reconnect will set."""
        threshold = int(threshold)
        if threshold < -1:
            raise UsageError(f"{self.stream}: threshold {threshold}: expected an integer ≥ -1 (-1: never escalate)")
        self.threshold = threshold
        self.threshold_from_window = None
        if self._port is None or self._closed:
            return threshold
        try:
            a = self._request(p.SetThreshold(threshold), p.Ack)
        except _LinkDown:
            self._drop_link()                 # events() reconnects, and _configure sends it then
            return threshold
        if isinstance(a, p.ErrorReport):
            raise SerialSourceError(f"{self.stream}: {self.port_path} refused threshold {threshold}: {a.describe()}")
        # The device sends in the order it decides: windows whose frames came before the ACK were
        # decided with the old threshold, every later one with this one.
        before = [r.message.window_id for r, _ in list(self._pending)[:self._reply_at]
                  if isinstance(r.message, (p.DeviceResult, p.Uncertain))]
        self.threshold_from_window = (before[-1] + 1) % _WRAP if before else self._next_window
        return int(a.value)

    def samples_stream_bytes(self, n_samples: int) -> int:
        """Wire bytes the SAMPLES stream would take for `n_samples` samples: frames of ⌈rate/10⌉
        samples, as streamhar's firmware batches them (firmware/sensor: sensor.py's `batch`), each
        frame as `protocol.encode` frames it. What a device-tier cascade saves is measured
        against this."""
        c = len(self.sensor.channels)
        per = min(max(1, math.ceil(self.rate / 10)), (p.MAX_PAYLOAD - 15) // (2 * c))

        def frame(n: int) -> int:            # 0x0101 samples: no zero byte, COBS's largest overhead
            return len(p.encode(p.Samples.from_array(np.full((n, c), 0x0101, np.int16), 0, 0,
                                                     self.sensor.rate_mhz), 0))

        full, rest = divmod(max(0, int(n_samples)), per)
        return full * frame(per) + (frame(rest) if rest else 0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._port is not None:
            try:                              # polite: a board left streaming floods the next user
                self._send(p.SetStream(p.StreamFlag(0)))
            except _LinkDown:
                pass
        self._close_port()

    def __enter__(self) -> SerialSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- the link

    def _rx(self) -> p.RxCounters:
        with self._lock:                      # counters() may run on another thread than events()
            d = self._decoder
            now = d.counters if d else p.RxCounters()
            return p.RxCounters(*(a + b for a, b in zip(self._rx_before.as_tuple(), now.as_tuple())))

    def _open_port(self) -> None:
        import serial

        try:
            self._port = serial.Serial(self.port_path, baudrate=self.baud, timeout=READ_S, write_timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as e:
            why = "no such port" if not os.path.exists(self.port_path) else str(e)
            raise PortAbsent(f"serial:{self.port_path}: cannot open {self.port_path}: {why} "
                             "(expected a serial device: is the board plugged in?)") from None
        # A new decoder per connection: a frame torn by the disconnect is not a line error, and the
        # device's frames sent while we were away are counted as lost samples, not seq gaps.
        self._decoder = p.FrameDecoder("host")
        self._seq = 0
        self._last_seq: int | None = None
        self._last_check = time.monotonic()

    def _close_port(self) -> None:
        if self._decoder is not None:
            total = self._rx()
            with self._lock:
                self._rx_before, self._decoder = total, None
        if self._port is not None:
            try:
                self._port.close()
            except Exception:                 # closing a port whose device vanished may fail too
                pass
            self._port = None

    def _drop_link(self) -> None:
        self._n["disconnects"] += 1
        self._close_port()
        self._down_since = time.monotonic()

    def _send(self, message) -> int:
        seq, self._seq = self._seq, (self._seq + 1) & 0xFFFF
        try:
            self._port.write(p.encode(message, seq))
            self._port.flush()
        except Exception as e:               # SerialException, OSError, write timeout: the port is gone
            raise _LinkDown(f"write failed: {e}") from None
        return seq

    def _read(self) -> None:
        """One read (≤ READ_S): decoded frames go to _pending with their arrival time."""
        try:
            data = self._port.read(self._port.in_waiting or 1)
        except Exception as e:               # SerialException/OSError: unplugged, device node gone
            raise _LinkDown(f"read failed: {e}") from None
        now = time.monotonic()
        self._n["rx_bytes"] += len(data)
        if not data and now - self._last_check > 0.5:
            self._last_check = now           # a udev link removed while the fd still "works"
            if not os.path.exists(self.port_path):
                raise _LinkDown(f"{self.port_path} vanished")
        for r in self._decoder.feed(data) if data else ():
            if r.message.TYPE == p.MsgType.VERSION and r.message.boot and r.seq == 0 \
                    and self._last_seq is not None and (self._last_seq + 1) & 0xFFFF != 0:
                self._reset_gaps += 1        # the decoder counted the reset's seq restart as a gap
            self._last_seq = r.seq
            self._pending.append((r, now))

    def _request(self, message, expect: type, stop: Callable[[], bool] | None = None):
        """Send one request and wait for its reply (matched by ref_seq); other frames stay pending.
        Returns the reply, or the device's ErrorReport for it; _LinkDown on timeout."""
        seq = self._send(message)
        end = time.monotonic() + self.timeout_s
        pos = len(self._pending)
        while time.monotonic() < end:
            if stop is not None and stop():
                raise _Stopped
            self._read()
            while pos < len(self._pending):
                r, _ = self._pending[pos]
                if getattr(r.message, "ref_seq", None) == seq and isinstance(r.message, (expect, p.ErrorReport)):
                    del self._pending[pos]
                    self._reply_at = pos          # frames queued before it arrived before the reply
                    return r.message
                pos += 1
        raise _LinkDown(f"no {expect.__name__} in answer to {type(message).__name__} within {self.timeout_s:g} s")

    def _connect(self, initial: bool = False, stop: Callable[[], bool] | None = None) -> None:
        """Open the port and handshake. Errors that retrying cannot fix raise SerialSourceError;
        on the first connect every error does (a source must open or fail clearly)."""
        self._open_port()
        try:
            self._version = self._hello(stop)
            sensor = self._request(p.SensorRequest(), p.SensorInfo, stop)
            if isinstance(sensor, p.ErrorReport) or sensor.source == p.SensorSource.NONE or not sensor.rate_mhz \
                    or not sensor.channels:
                why = (f"SENSOR_REQ refused: {sensor.describe()}" if isinstance(sensor, p.ErrorReport)
                       else f"SENSOR says source {sensor.source.name}, {sensor.rate_mhz} mHz, "
                            f"{len(sensor.channels)} channels")
                raise SerialSourceError(f"{self.stream}: the board on {self.port_path} has no sensor to stream "
                                        f"from ({why}); expected a sensor image (firmware with a sensor)")
            if not initial and (sensor.rate_mhz, sensor.channels) != (self.sensor.rate_mhz, self.sensor.channels):
                raise SerialSourceError(f"{self.stream}: after reconnecting, {self.port_path} has another sensor "
                                        f"({sensor.rate_mhz / 1000:g} Hz, {len(sensor.channels)} channels); "
                                        f"expected the one streamed before ({self.rate:g} Hz, "
                                        f"{len(self.channels)} channels)")
            self._sensor = sensor
            # The first connect only configures: streaming starts with the first events() call, so
            # a pipeline that takes seconds to start gets no burst of stale samples.
            restart = not initial and (not self._started or not self._stream_running(stop))
            self._configure(stop, restart_stream=restart)
        except _LinkDown as e:
            self._close_port()
            if initial:
                raise SerialSourceError(f"{self.stream}: {self.port_path} does not speak the streamhar device "
                                        f"protocol: {e} (expected a board running the device firmware)") from None
            raise
        except BaseException:
            self._close_port()
            raise

    def _hello(self, stop) -> p.Version:
        # A board that is still booting drops what it receives: ask again every 0.5 s.
        end = time.monotonic() + self.timeout_s
        saved, self.timeout_s = self.timeout_s, min(0.5, self.timeout_s)
        try:
            while True:
                try:
                    v = self._request(p.VersionRequest(), p.Version, stop)
                    break
                except _LinkDown:
                    if time.monotonic() >= end:
                        raise _LinkDown(f"no VERSION in answer to VERSION_REQ within {saved:g} s") from None
        finally:
            self.timeout_s = saved
        if isinstance(v, p.ErrorReport) or v.protocol != p.PROTOCOL_VERSION:
            got = v.describe() if isinstance(v, p.ErrorReport) else f"protocol version {v.protocol}"
            raise SerialSourceError(f"{self.stream}: {self.port_path} speaks {got}; expected protocol "
                                    f"version {p.PROTOCOL_VERSION}")
        if hasattr(self, "version") and v.model_id != self.version.model_id:
            raise SerialSourceError(f"{self.stream}: after reconnecting, {self.port_path} runs model "
                                    f"{v.model_id:#010x}; expected {self.version.model_id:#010x}: another device?")
        return v

    def _stream_running(self, stop) -> bool:
        """After a reconnect: is the device still streaming (a cable outage, not a reset)? Then
        SET_STREAM is not sent again — it would restart the sample numbering, and the samples
        lost in the outage could no longer be counted."""
        kinds = (p.Samples,) if self.flags & p.StreamFlag.SAMPLES else (p.DeviceResult, p.Uncertain)
        per_frame = (self._last_frame_s if self.flags & p.StreamFlag.SAMPLES
                     else self._sensor.stride / max(self._sensor.rate_hz, 1e-3))
        end = time.monotonic() + min(1.0, max(0.2, 2.5 * per_frame))
        pos = 0
        while True:
            for r, _ in list(self._pending)[pos:]:
                if isinstance(r.message, kinds):
                    return True
            pos = len(self._pending)
            if time.monotonic() >= end:
                return False
            if stop is not None and stop():
                raise _Stopped
            self._read()

    def _configure(self, stop, restart_stream: bool = True, threshold: bool = True) -> None:
        """Settings a reset undoes: the threshold, then the streams."""
        if threshold and self.threshold is not None:
            a = self._request(p.SetThreshold(self.threshold), p.Ack, stop)
            if isinstance(a, p.ErrorReport):
                raise SerialSourceError(f"{self.stream}: {self.port_path} refused threshold {self.threshold}: "
                                        f"{a.describe()}")
        if not restart_stream:
            return
        a = self._request(p.SetStream(self.flags), p.Ack, stop)
        if isinstance(a, p.ErrorReport):
            raise SerialSourceError(f"{self.stream}: {self.port_path} cannot stream {self.mode}"
                                    f"{' (fast)' if self.fast else ''} (SET_STREAM flags {self.flags:#x}): "
                                    f"{a.describe()}")
        self._started = True

    def _reconnect(self, stop: Callable[[], bool]) -> None:
        t0 = self._down_since
        delay, last = BACKOFF_FIRST_S, "no attempt yet"
        while True:
            try:
                self._connect(stop=stop)
                break
            except (PortAbsent, _LinkDown) as e:   # other SerialSourceErrors: another device, no retry helps
                last = str(e)
            waited = time.monotonic() - t0
            if waited >= self.give_up_s:
                raise SerialSourceError(f"{self.stream}: the device on {self.port_path} has been gone for "
                                        f"{waited:.1f} s (give_up = {self.give_up_s:g} s); last attempt: {last}")
            wake = time.monotonic() + delay
            while time.monotonic() < wake:
                if stop() or self._closed:
                    raise _Stopped
                time.sleep(min(READ_S, max(0.0, wake - time.monotonic())))
            delay = min(2 * delay, BACKOFF_MAX_S)
        took = time.monotonic() - t0
        self._n["reconnects"] += 1
        self._reconnect_s += took
        self._reconnect_max_s = max(self._reconnect_max_s, took)
        self.maker.restart()                  # no window may straddle the outage
        self._resync = True                   # the next timing frame checks the device clock

    # ---------------------------------------------------------------- frames

    def _dispatch(self, r: p.Received, arrival: float, stop) -> Iterator[Chunk | DeviceWindow]:
        m = r.message
        if isinstance(m, p.Samples):
            chunk = self._samples(m, arrival)
            if chunk is not None:
                yield chunk
        elif isinstance(m, (p.DeviceResult, p.Uncertain)):
            yield self._window(m, arrival)
        elif isinstance(m, p.Version) and m.boot:
            self._device_reset(stop)
        elif isinstance(m, p.ErrorReport):
            self._n["device_errors"] += 1
        # late replies (ACK, VERSION, STATS) to requests that timed out: nothing to do

    def _device_reset(self, stop) -> None:
        """The device rebooted: its settings, clock and sample numbering are back to their start."""
        self._n["device_resets"] += 1
        self.clock.reset()
        self._next_index = self._next_window = self._last_ticks = self._last_seen = None
        self.maker.restart()
        self._configure(stop)

    def _ticks(self, raw_us: int, advance: bool) -> int:
        """Unwrapped device µs. Frames in order use the clock's unwrap; a window's t_last may be
        older than the newest frame, so it is placed nearest to that frame's time instead."""
        if self._last_ticks is None or advance:
            self._last_ticks = self.clock.unwrap(raw_us)
            return self._last_ticks
        d = (raw_us - self._last_ticks) % _WRAP
        return self._last_ticks + (d - _WRAP if d >= _WRAP // 2 else d)

    def _timing_frame(self, raw_us: int, arrival: float) -> None:
        """Called with each frame the clock is observed with (device time of its newest sample).
        The first one after a reconnect decides whether the device kept its clock through the
        outage (a pulled cable) or restarted it (it rebooted unseen): its clock must have moved on
        as much as ours did between the last frame before and this one."""
        if self._resync and self._last_seen is not None and not self.fast:
            device_s = ((raw_us - self._last_seen[0]) % _WRAP) / 1e6
            host_s = arrival - self._last_seen[1]
            if abs(device_s - host_s) > 2.0 + 0.01 * host_s:
                self._n["device_resets"] += 1         # its boot VERSION went into the outage
                self.clock.reset()
                self._last_ticks = None
                self._next_index = self._next_window = None   # its numbering restarted with it
        self._resync = False
        self._last_seen = (raw_us, arrival)

    def _samples(self, m: p.Samples, arrival: float) -> Chunk | None:
        if m.channels != len(self.channels) or m.rate_mhz == 0:
            self._n["foreign_frames"] += 1
            return None
        period_us = 1e9 / m.rate_mhz
        if m.n_samples:
            self._timing_frame((m.t_first_us + round(period_us * (m.n_samples - 1))) % _WRAP, arrival)
        if self._next_index is not None:
            gap = (m.first_index - self._next_index) % _WRAP
            if 0 < gap < _WRAP // 2:
                self._n["lost_samples"] += gap
                self._n["sample_gaps"] += 1
            elif gap:                         # numbering went back: the stream restarted
                self._n["index_restarts"] += 1
                self.maker.restart()
        self._next_index = (m.first_index + m.n_samples) % _WRAP
        self._last_frame_s = m.n_samples * 1000.0 / m.rate_mhz
        t0 = self._ticks(m.t_first_us, advance=True)
        ticks = t0 + period_us * np.arange(m.n_samples)
        if m.n_samples and not (self.fast and self.clock.offset is not None):
            self.clock.observe(float(ticks[-1]), arrival)   # sent after its last sample was taken
        if not m.n_samples:
            return None
        x = m.array().astype(np.float32) * self._scale
        chunk = self.maker.make(self.clock.to_host(ticks), x)
        self._n["samples_received"] += m.n_samples
        return chunk

    def _window(self, m, arrival: float) -> DeviceWindow:
        uncertain = isinstance(m, p.Uncertain)
        self._n["uncertain_windows" if uncertain else "device_results"] += 1
        if self._next_window is not None and m.window_id != self._next_window:
            gap = (m.window_id - self._next_window) % _WRAP
            if gap < _WRAP // 2:
                self._n["window_gaps"] += 1
                self._n["windows_lost"] += gap
        self._next_window = (m.window_id + 1) % _WRAP
        # Without a sample stream the windows are the clock's only observations.
        samples_on = bool(self.flags & p.StreamFlag.SAMPLES)
        if not samples_on:
            self._timing_frame(m.t_last_us, arrival)
        ticks = self._ticks(m.t_last_us, advance=not samples_on)
        if self.clock.offset is None or not (samples_on or self.fast):
            self.clock.observe(ticks, arrival)
        return DeviceWindow(m.window_id, float(self.clock.to_host(ticks)), m.result,
                            m.array().copy() if uncertain else None)
