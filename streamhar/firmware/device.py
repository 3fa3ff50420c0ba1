"""Talking to a board that runs the device firmware (firmware/app/device_main.c) over a serial
port — a real UART (pyserial) or QEMU's emulated one on a pseudo-terminal, which pyserial opens
the same way. One request at a time (docs/PROTOCOL.md: a board has one receive buffer): send a
frame, wait for the reply that names its seq; unsolicited frames (the boot VERSION, streams) and
ERROR replies are kept, not lost, in the order they arrived: the frames that came before a reply
are in `unsolicited` when the request returns, those after it are handed out by the next
`receive` (so `len(dev.unsolicited)` right after a request says where its reply fell in a stream).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from streamhar.errors import StreamharError
from streamhar.firmware import protocol as p


class DeviceError(StreamharError):
    """The device refused a request (an ERROR frame), or did not answer in time."""

    def __init__(self, message: str, error: p.ErrorReport | None = None):
        super().__init__(message)
        self.error = error


class DeviceRestarted(DeviceError):
    """A boot VERSION arrived while waiting for a reply: the device (re)started, and a request
    that reached it before it was ready is gone (an STM32 UART drops bytes until it is enabled)."""


@dataclass
class Inference:
    predicted: int
    path: int                 # ResultPath: 0 narrow, 1 escalated, 2 full
    margin: int
    logits: np.ndarray        # int32 [K]
    instructions: int | None  # None where the board cannot count


class Device:
    """`port`: a pyserial-like object (read(n) with a timeout, write(b)), e.g. serial.Serial."""

    def __init__(self, port, name: str = "the device", timeout_s: float = 10.0):
        self.port, self.name, self.timeout_s = port, name, timeout_s
        self.decoder = p.FrameDecoder("host")
        self.seq = 0
        self.unsolicited: list[p.Received] = []
        self._pending: deque[p.Received] = deque()   # decoded, not yet handed out

    @classmethod
    def open(cls, path: str, baud: int = 115200, timeout_s: float = 10.0) -> "Device":
        import serial

        try:
            port = serial.Serial(path, baudrate=baud, timeout=0.05)
        except (serial.SerialException, OSError) as e:
            raise DeviceError(f"cannot open serial port {path}: {e}") from None
        return cls(port, path, timeout_s)

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> "Device":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- raw

    def send_raw(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def send(self, message) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFFFF
        self.send_raw(p.encode(message, seq))
        return seq

    def receive(self, timeout_s: float | None = None) -> list[p.Received]:
        """Whatever whole frames arrive within the timeout (at least one, or [] at the timeout)."""
        if self._pending:
            got = list(self._pending)
            self._pending.clear()
            return got
        end = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while time.monotonic() < end:
            data = self.port.read(4096)
            if data:
                got = self.decoder.feed(data)
                if got:
                    return got
        return []

    def reply_to(self, seq: int, timeout_s: float | None = None) -> p.Received:
        """The frame answering request `seq`: a reply whose ref_seq is seq, or an ERROR for it.
        DeviceRestarted when a boot VERSION comes first (it is kept in `unsolicited`)."""
        end = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise DeviceError(f"{self.name}: no answer to request seq {seq} within "
                                  f"{self.timeout_s if timeout_s is None else timeout_s:g} s")
            got = self.receive(left)
            for i, r in enumerate(got):
                boot = isinstance(r.message, p.Version) and r.message.boot
                if boot or (getattr(r.message, "ref_seq", None) == seq and r.message.TYPE < 0x80):
                    self._pending.extendleft(reversed(got[i + 1:]))   # after it: not ours yet
                    if not boot:
                        return r
                    self.unsolicited.append(r)
                    raise DeviceRestarted(f"{self.name} restarted (boot VERSION) while request seq {seq} "
                                          "was waiting for its reply")
                self.unsolicited.append(r)

    def request(self, message, expect: type, timeout_s: float | None = None):
        seq = self.send(message)
        try:
            r = self.reply_to(seq, timeout_s)
        except DeviceRestarted:    # the device started after (or while) we sent: once more
            seq = self.send(message)
            r = self.reply_to(seq, timeout_s)
        if isinstance(r.message, p.ErrorReport):
            raise DeviceError(f"{self.name} refused {type(message).__name__} (seq {seq}): {r.message.describe()}",
                              r.message)
        if not isinstance(r.message, expect):
            raise DeviceError(f"{self.name}: expected {expect.__name__} for seq {seq}, got {type(r.message).__name__}")
        return r.message

    # ---------------------------------------------------------------- requests

    def version(self, timeout_s: float | None = None) -> p.Version:
        return self.request(p.VersionRequest(), p.Version, timeout_s)

    def infer(self, window: np.ndarray, mode: p.InferMode = p.InferMode.CASCADE, model_id: int = 0) -> Inference:
        req = p.InferRequest.from_array(np.ascontiguousarray(window, np.int8), mode, model_id)
        r = self.request(req, p.InferResult).result
        return Inference(r.predicted, int(r.path), r.margin, np.asarray(r.logits, np.int32), r.instructions)

    def set_threshold(self, threshold: int) -> int:
        return self.request(p.SetThreshold(int(threshold)), p.Ack).value

    def stats(self, reset: bool = False) -> dict[str, int]:
        return self.request(p.StatsRequest(reset=reset), p.Stats).named()

    def sensor(self) -> p.SensorInfo:
        """What the device's sensor streams (source 0: it has none)."""
        return self.request(p.SensorRequest(), p.SensorInfo)

    def set_stream(self, flags: p.StreamFlag | int) -> int:
        """(Re)starts the streams named by `flags` (0 stops them); returns the flags in force."""
        return self.request(p.SetStream(p.StreamFlag(flags)), p.Ack).value

