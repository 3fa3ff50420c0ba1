"""A fault-injecting serial relay: a bad cable, on purpose.

It sits between a device's serial port (`upstream`: QEMU's UART pty, a USB-serial adapter) and a
new pseudo-terminal that a host opens through a stable path (`link`: a symlink, as udev's
/dev/serial/by-id/… links are), and passes bytes both ways. On request it damages the device →
host direction, one fault per SAMPLES frame with a clean one in between (so every fault is its
own seq gap):

- `garbage(n)`: n random non-zero bytes between two frames (line noise; one refused frame);
- `corrupt()`: one payload byte of a SAMPLES frame changed, its CRC kept (a CRC error);
- `drop()`: a SAMPLES frame left out (a seq gap);
- `tear()`: a SAMPLES frame cut short (a torn frame, then a seq gap);
- `unplug()` / `replug()`: the host's pty closed and the link removed (reads fail, the path is
  gone), later a new pty behind the same link; device frames meanwhile are discarded, and so
  are those until the host speaks on the new pty (a host that opens a port flushes what it
  holds, so frames written before that are lost like those sent into a pulled cable).

`counters` says exactly what the host should count: `refused` (by the host decoder's counter
names, from running a fresh `FrameDecoder` over each damaged frame), `refused_bytes`,
`lost_samples` (samples in frames dropped, damaged or discarded while unplugged), `seq_gaps`, and
how many of each fault. Frames are forwarded whole, so an unplug never tears one by itself.
"""
from __future__ import annotations

import fcntl
import os
import queue
import select
import struct
import termios
import threading
import tty
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamhar.firmware import protocol as p


@dataclass
class RelayCounters:
    frames: int = 0                   # device frames seen
    forwarded: int = 0                # device frames passed on intact
    garbage_bursts: int = 0
    corrupted: int = 0
    dropped: int = 0
    torn: int = 0
    unplugs: int = 0
    replugs: int = 0
    outage_frames: int = 0            # device frames discarded while unplugged (or before the host spoke again)
    unheard_frames: int = 0           # device frames before the host first spoke (not lost: never expected)
    lost_samples: int = 0             # samples in dropped, corrupted, torn or discarded SAMPLES frames
    seq_gaps: int = 0                 # frame seq gaps the host should see (not across an unplug)
    refused_bytes: int = 0            # wire bytes of every frame the host decoder will refuse
    refused: dict[str, int] = field(default_factory=dict)   # decoder counter → refusals expected


class SerialRelay:
    def __init__(self, upstream: str, link: str | Path, seed: int = 0):
        self.upstream, self.link = upstream, Path(link)
        self.counters = RelayCounters()
        self._rng = np.random.default_rng(seed)
        self._up = os.open(upstream, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._up)                 # no echo, no CR/LF translation, no ^S/^Q: 8-bit clean
        self._master = self._slave = None
        self._host_spoke = False             # since the last plug
        self._up_alive = True
        self._to_host = bytearray()
        self._to_device = bytearray()
        self._frame = bytearray()
        self._synced = False                 # until the first 0x00 we may be inside a frame
        self._faults: list[tuple[str, int]] = []
        self._clean_since_fault = True
        self._commands: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._plug()
        self._thread = threading.Thread(target=self._run, name=f"serial-relay {self.link}", daemon=True)
        self._thread.start()

    # ---------------------------------------------------------------- faults (any thread)

    def garbage(self, n: int = 64) -> None:
        self._call("fault", ("garbage", n))

    def corrupt(self) -> None:
        self._call("fault", ("corrupt", 0))

    def drop(self) -> None:
        self._call("fault", ("drop", 0))

    def tear(self) -> None:
        self._call("fault", ("tear", 0))

    def unplug(self) -> None:
        """Closes the host's pty once what it holds has been read (so nothing in flight is lost
        silently), and removes the link."""
        self._call("unplug", None)

    def replug(self) -> None:
        self._call("replug", None)

    @property
    def pending_faults(self) -> int:
        return self._call("pending", None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._unplug_now()
        os.close(self._up)

    def __enter__(self) -> SerialRelay:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- the relay thread

    def _call(self, what: str, arg):
        done: queue.Queue = queue.Queue()
        self._commands.put((what, arg, done))
        return done.get(timeout=10)

    def _plug(self) -> None:
        self._host_spoke = False
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)              # raw before the host opens it: bytes pass unchanged
        os.set_blocking(self._master, False)
        tmp = self.link.with_name(self.link.name + ".new")
        tmp.unlink(missing_ok=True)
        os.symlink(os.ttyname(self._slave), tmp)
        os.replace(tmp, self.link)           # atomic: the link is never half there

    def _unplug_now(self) -> None:
        self.link.unlink(missing_ok=True)
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None
        self._to_host.clear()

    def _host_unread(self) -> int:
        return struct.unpack("i", fcntl.ioctl(self._slave, termios.FIONREAD, b"\0\0\0\0"))[0]

    def _command(self, what: str, arg, done: queue.Queue) -> None:
        if what == "fault":
            self._faults.append(arg)
        elif what == "pending":
            done.put(len(self._faults))
            return
        elif what == "unplug" and self._master is not None:
            # ≤ 1 s for the host to read what it was sent. FIONREAD = 0 can be early (the kernel
            # moves bytes to the reader's queue from a work queue), so it must stay 0 for 30 ms.
            quiet = 0
            for _ in range(200):
                self._flush_to_host()
                quiet = quiet + 1 if not self._to_host and self._host_unread() == 0 else 0
                if quiet >= 6:
                    break
                select.select([], [], [], 0.005)
            self._unplug_now()
            self.counters.unplugs += 1
        elif what == "replug" and self._master is None:
            self._plug()
            self.counters.replugs += 1
        done.put(None)

    def _run(self) -> None:
        while not self._stop.is_set():
            while not self._commands.empty():
                self._command(*self._commands.get())
            up = [self._up] if self._up_alive else []
            fds = up + ([self._master] if self._master is not None else [])
            wfds = ([self._master] if self._master is not None and self._to_host else []) + \
                (up if self._to_device else [])
            try:
                r, w, _ = select.select(fds, wfds, [], 0.01)
            except (OSError, ValueError):
                continue
            if self._up in r:
                try:
                    data = os.read(self._up, 65536)
                except BlockingIOError:
                    data = None
                except OSError:               # EIO: the device side is gone (QEMU exited)
                    data = b""
                if data == b"":
                    self._up_alive = False    # stop polling a dead fd (it stays "readable")
                elif data:
                    self._from_device(data)
            if self._master is not None and self._master in r:
                try:
                    data = os.read(self._master, 65536)
                    self._host_spoke = self._host_spoke or bool(data)
                    self._to_device += data   # host → device passes unharmed
                except (BlockingIOError, OSError):
                    pass                      # EIO: the host has not opened the pty (yet)
            if self._to_device and self._up_alive:
                try:
                    del self._to_device[:os.write(self._up, self._to_device)]
                except (BlockingIOError, OSError):
                    pass
            if self._master is not None and self._master in w:
                self._flush_to_host()

    def _flush_to_host(self) -> None:
        if self._master is None or not self._to_host:
            return
        try:
            n = os.write(self._master, self._to_host)
            del self._to_host[:n]
        except (BlockingIOError, OSError):
            pass

    # ---------------------------------------------------------------- frames

    def _from_device(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            zero = data.find(0, pos)
            if zero < 0:
                self._frame += data[pos:]
                return
            self._frame += data[pos:zero]
            pos = zero + 1
            if self._frame and self._synced:
                self._device_frame(bytes(self._frame))
            self._synced = True              # what came before the first 0x00 was half a frame
            self._frame.clear()

    def _device_frame(self, wire: bytes) -> None:
        """`wire`: one frame's COBS bytes, without delimiters."""
        c = self.counters
        c.frames += 1
        samples = _samples_in(wire)
        if self._master is None or not self._host_spoke:   # the device talks to nobody
            if c.unplugs == 0:
                c.unheard_frames += 1
            else:
                c.outage_frames += 1
                c.lost_samples += samples or 0
            return
        if samples is not None and self._faults and self._clean_since_fault:
            kind, n = self._faults.pop(0)
            self._clean_since_fault = False
            if kind == "garbage":
                self._garbage(n)
            else:
                c.lost_samples += samples
                c.seq_gaps += 1
                if kind == "drop":
                    c.dropped += 1
                    return
                wire = self._corrupted(wire) if kind == "corrupt" else self._torn(wire)
                self._to_host += b"\0" + wire  # the next frame's leading 0x00 ends it
                self._flush_to_host()
                return
        elif samples is not None:
            self._clean_since_fault = True
        c.forwarded += 1
        self._to_host += b"\0" + wire + b"\0"
        self._flush_to_host()

    def _expect_refusal(self, wire: bytes) -> None:
        d = p.FrameDecoder("host")
        events = d.events(wire + b"\0")
        if len(events) != 1 or not isinstance(events[0], p.Fault):
            raise RuntimeError(f"serial relay: a damaged frame should be refused once, the decoder gave {events}")
        for f in ("crc_errors", "cobs_errors", "short_frames", "overlong_frames", "unknown_types", "bad_payloads"):
            if getattr(d.counters, f):
                self.counters.refused[f] = self.counters.refused.get(f, 0) + getattr(d.counters, f)
        self.counters.refused_bytes += d.counters.dropped_bytes

    def _garbage(self, n: int) -> None:
        while True:                          # random bytes that happen to be a valid frame: draw again
            g = self._rng.integers(1, 256, max(1, n), dtype=np.uint8).tobytes()
            if not p.FrameDecoder("host").feed(g + b"\0"):
                break
        self._expect_refusal(g)
        self.counters.garbage_bursts += 1
        self._to_host += b"\0" + g            # ended by the next frame's leading 0x00

    def _corrupted(self, wire: bytes) -> bytes:
        body = bytearray(p.cobs_decode(wire))
        i = int(self._rng.integers(p.HEADER_BYTES, len(body) - p.CRC_BYTES))
        body[i] ^= int(self._rng.integers(1, 256))   # CRC-16 catches every single-byte error
        out = p.cobs_encode(bytes(body))
        self._expect_refusal(out)
        self.counters.corrupted += 1
        return out

    def _torn(self, wire: bytes) -> bytes:
        cut = int(self._rng.integers(1, len(wire)))
        out = wire[:cut]
        self._expect_refusal(out)
        self.counters.torn += 1
        return out


def _samples_in(wire: bytes) -> int | None:
    """n_samples of a SAMPLES frame, None for any other (or undecodable) frame."""
    try:
        r = p.decode_frame(wire, "host")
    except p.ProtocolError:
        return None
    return r.message.n_samples if isinstance(r.message, p.Samples) else None
