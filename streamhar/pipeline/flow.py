"""Flow control between stages: lossless (backpressure) or bounded latency (drop oldest), counted.

Lossless (replays): every data socket has a high-water mark; a PUSH that reaches it blocks, so a
slow stage fills its input queue, then its upstream's output queue, … and finally slows the
source. Nothing is dropped. Sends wait in slices of 100 ms so a stop request still gets through.

Bounded (live sources): a thread drains the input socket as fast as messages come into an
in-process queue of `queue` messages; when it is full the *oldest* data message is dropped
(end-of-stream markers never are) and counted, so a slow stage works on recent data and the
delay stays bounded. A send that finds the next stage's queue full (HWM) drops that message,
counted too. Every drop is counted in messages and in items (samples, windows).

End-of-stream markers are never dropped (bounded) nor given up on a stop request (lossless) while
a receiver is connected: without its end a downstream stage would wait for ever. On ipc endpoints
(`streamhar run`'s default) a sender that has sent its end also keeps its connection open until
every receiver has closed its side (it has read everything) or a stop request comes after the
end: libzmq (4.3.5) discards what is still in a unix socket's buffer when the sender disconnects
while the receiver is at its high-water mark (the hang-up ends the connection before the rest is
read; tcp does not lose it), so a source that exits as soon as it has sent its last chunk would
lose the tail of its stream — and its end — whenever its receiver runs behind. So on ipc the
window stage, too, waits for the inference workers to be stopped. Connections are counted from
socket monitor events.
"""
from __future__ import annotations

import collections
import threading
import time
import weakref

import orjson
import zmq
from zmq.utils.monitor import recv_monitor_message

from streamhar.errors import StreamharError

SLICE_MS = 100


def items_of(frames) -> tuple[str, int]:
    """(kind, number of samples/windows) of a message from its header, without decoding arrays."""
    try:
        h = orjson.loads(getattr(frames[1], "buffer", frames[1]))
        arrays = h.get("arrays") or []
        return h.get("kind", "?"), int(arrays[0]["shape"][0]) if arrays and arrays[0]["shape"] else 0
    except (ValueError, KeyError, IndexError, TypeError):
        return "?", 0


def is_end(frames) -> bool:
    """Whether a message is an end-of-stream marker (its topic is "end/STREAM")."""
    return bytes(getattr(frames[0], "buffer", frames[0]))[:4] == b"end/"


class Peers:
    """How many receivers a sending data socket is connected to, from its monitor events."""

    EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED

    def __init__(self, sock: zmq.Socket, hold: bool):
        self.monitor = sock.get_monitor_socket(self.EVENTS)     # before bind/connect: no event missed
        self.count = 0
        self.hold = hold          # keep the connection after the end until the receivers close theirs

    def update(self) -> int:
        while True:
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return self.count
            except zmq.ZMQError:          # the socket is closing
                return 0
            if event in (zmq.EVENT_CONNECTED, zmq.EVENT_ACCEPTED):
                self.count += 1
            elif event == zmq.EVENT_DISCONNECTED:
                self.count = max(0, self.count - 1)


_PEERS: "weakref.WeakKeyDictionary[zmq.Socket, Peers]" = weakref.WeakKeyDictionary()


class Outlet:
    """The sending side of a data socket."""

    def __init__(self, sock: zmq.Socket, mode: str, stopping=lambda: False):
        self.sock, self.mode, self.stopping = sock, mode, stopping
        self.sent = 0
        self.dropped = 0          # messages
        self.dropped_items = 0    # samples or windows in them
        self.blocked_s = 0.0      # time spent waiting for downstream (backpressure)
        if mode == "lossless":
            sock.setsockopt(zmq.SNDTIMEO, SLICE_MS)

    def send(self, frames) -> bool:
        """True when handed to ZeroMQ; False when dropped (bounded) or stopping (lossless).
        An end marker is sent in either mode as long as a receiver is connected, then held (see above)."""
        if is_end(frames):
            return self._send_end(frames)
        if self.mode == "bounded":
            try:
                self.sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
            except zmq.Again:
                self.dropped += 1
                self.dropped_items += items_of(frames)[1]
                return False
            self.sent += 1
            return True
        t0 = None
        while True:
            try:
                self.sock.send_multipart(frames, copy=False)
                break
            except zmq.Again:
                t0 = t0 or time.monotonic()
                if self.stopping():
                    return False
        if t0 is not None:
            self.blocked_s += time.monotonic() - t0
        self.sent += 1
        return True

    def stats(self) -> dict:
        return {"sent": self.sent, "dropped": self.dropped, "dropped_items": self.dropped_items,
                "blocked_s": round(self.blocked_s, 3)}

    def _send_end(self, frames) -> bool:
        peers = _PEERS.get(self.sock)
        stopped_before = self.stopping()
        connected = (lambda: peers.update() > 0) if peers is not None else (lambda: not self.stopping())
        t0 = time.monotonic()
        while True:
            try:
                self.sock.send_multipart(frames, copy=False, flags=zmq.NOBLOCK)
                break
            except zmq.Again:
                if self.stopping() and not connected():      # nobody left to receive it
                    return False
                time.sleep(SLICE_MS / 1000 / 10)
        self.blocked_s += time.monotonic() - t0
        self.sent += 1
        if peers is not None and peers.hold:
            # a stop request before the end (Ctrl-C: sources end their streams) does not release it
            while peers.update() > 0 and (stopped_before or not self.stopping()):
                time.sleep(SLICE_MS / 1000 / 2)
        return True


class Inlet:
    """The receiving side of a data socket; `get(timeout_ms)` → frames or None."""

    def __init__(self, ctx: zmq.Context, kind: int, endpoint: str, bind: bool, mode: str, hwm: int, queue: int):
        self.mode = mode
        self.received = 0
        self.dropped = 0
        self.dropped_items = 0
        self.error: BaseException | None = None
        if mode == "lossless":
            self.sock = _socket(ctx, kind, endpoint, bind, hwm)
            self.poller = zmq.Poller()
            self.poller.register(self.sock, zmq.POLLIN)
            return
        self._q: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._queue, self._stop = queue, threading.Event()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._drain, args=(ctx, kind, endpoint, bind, hwm, ready),
                                        daemon=True, name=f"inlet {endpoint}")
        self._thread.start()
        ready.wait(5)
        if self.error:
            raise self.error

    def _drain(self, ctx, kind, endpoint, bind, hwm, ready) -> None:
        try:
            sock = _socket(ctx, kind, endpoint, bind, hwm)
        except BaseException as e:      # reported by the constructor
            self.error = e
            ready.set()
            return
        ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(SLICE_MS):
                continue
            frames = sock.recv_multipart(copy=False)
            with self._cv:
                self._q.append(frames)
                if len(self._q) > self._queue:
                    self._drop_oldest()
                self._cv.notify()
        sock.close(linger=0)

    def _drop_oldest(self) -> None:
        for i, frames in enumerate(self._q):
            kind, n = items_of(frames)
            if kind != "end":
                del self._q[i]
                self.dropped += 1
                self.dropped_items += n
                return

    def get(self, timeout_ms: int = SLICE_MS):
        if self.mode == "lossless":
            if not self.poller.poll(timeout_ms):
                return None
            self.received += 1
            return self.sock.recv_multipart(copy=False)
        with self._cv:
            if not self._q and not self._cv.wait_for(lambda: bool(self._q), timeout_ms / 1000):
                return None
            self.received += 1
            return self._q.popleft()

    def ready(self) -> bool:
        """Whether a message is waiting right now (no wait; the socket's ZMQ_EVENTS, no poll call)."""
        if self.mode == "lossless":
            return bool(self.sock.get(zmq.EVENTS) & zmq.POLLIN)
        return bool(self._q)

    def pending(self) -> int:
        return len(self._q) if self.mode == "bounded" else 0

    def close(self) -> None:
        if self.mode == "lossless":
            self.sock.close(linger=0)
        else:
            self._stop.set()
            self._thread.join(2)

    def stats(self) -> dict:
        return {"received": self.received, "dropped": self.dropped, "dropped_items": self.dropped_items}


def _socket(ctx: zmq.Context, kind: int, endpoint: str, bind: bool, hwm: int, linger: int = 1000) -> zmq.Socket:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.LINGER, linger)
    if kind == zmq.PUSH:
        _PEERS[sock] = Peers(sock, hold=endpoint.startswith("ipc://"))
    try:
        (sock.bind if bind else sock.connect)(endpoint)
    except zmq.ZMQError as e:
        sock.close(linger=0)
        raise EndpointError(f"cannot {'bind' if bind else 'connect'} {endpoint}: {e}") from None
    return sock


def data_socket(ctx: zmq.Context, kind: int, endpoint: str, bind: bool, hwm: int, mode: str) -> zmq.Socket:
    """A sending data socket; lossless ones linger until their queue is delivered (no loss at exit)."""
    return _socket(ctx, kind, endpoint, bind, hwm, -1 if mode == "lossless" else 1000)


class EndpointError(StreamharError):
    """An endpoint that cannot be bound (in use, bad address) or connected."""
