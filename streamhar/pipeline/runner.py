"""What every stage process shares: the ZeroMQ context, the control and status sockets, signals.

A stage process (`streamhar stage NAME`) is a loop around a pure stage object; this class keeps
the edges out of it:
- control (SUB, connects to the supervisor's PUB): JSON commands — "start" (a supervised source
  waits for it, so no data flows before every stage is ready), "threshold", "stop";
- status (PUSH, connects to the supervisor's PULL): JSON reports ≈ 4×/s and a final one, with the
  stage's counters, its state ("ready", "running", "done", "failed") and, on failure, the
  traceback;
- ready: once set up, a stage settles (pipeline/realtime.py: its start-up objects leave the
  garbage collector's sight) and reports its scheduling class with its "ready";
- SIGTERM (and Ctrl-C when not supervised) ask the loop to stop at the next message boundary.
Supervised stages ignore SIGINT: Ctrl-C reaches the whole process group, and the supervisor
stops the pipeline in order instead (sources first, so the rest drains).
"""
from __future__ import annotations

import json
import os
import signal
import time
import traceback

import zmq

from streamhar.pipeline.realtime import scheduling, settle

REPORT_EVERY = 0.25


class StageRunner:
    def __init__(self, name: str, cfg, supervised: bool):
        self.name, self.cfg, self.supervised = name, cfg, supervised
        self.ctx = zmq.Context()
        self.stopping = False
        self.started = not supervised
        self.handlers: dict = {}
        self._last_report = 0.0
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN if supervised else self._on_signal)
        self.control = self.status = None
        if cfg.endpoints.control:
            self.control = self.ctx.socket(zmq.SUB)
            self.control.setsockopt(zmq.SUBSCRIBE, b"")
            self.control.connect(cfg.endpoints.control)
        if cfg.endpoints.status:
            self.status = self.ctx.socket(zmq.PUSH)
            self.status.setsockopt(zmq.SNDHWM, 1000)
            self.status.setsockopt(zmq.LINGER, 2000)
            self.status.connect(cfg.endpoints.status)

    def _on_signal(self, signum, frame) -> None:
        self.stopping = True

    def on(self, command: str, handler) -> None:
        """handler(cmd: dict) -> dict | None, called from `poll_control`."""
        self.handlers[command] = handler

    def poll_control(self) -> None:
        while self.control is not None:
            try:
                cmd = json.loads(self.control.recv(zmq.NOBLOCK))
            except zmq.Again:
                return
            except ValueError:
                continue
            what = cmd.get("cmd")
            if what == "stop":
                self.stopping = True
            elif what == "start":
                self.started = True
            elif what in self.handlers:
                try:
                    result = self.handlers[what](cmd)
                    self.report({}, event={"cmd": what, "ok": True, "result": result})
                except Exception as e:            # a bad command must not kill the stage
                    self.report({}, event={"cmd": what, "ok": False, "error": str(e)})

    def messages(self, inlet, stats):
        """Report ready, then yield each decoded input message until stopped. Control and status
        are handled between messages, after the caller's work on one: never before a window."""
        from streamhar.transport.messages import decode
        self.ready(stats())
        while not self.stopping:
            frames = inlet.get()
            if frames is not None:
                yield decode(frames)
            self.poll_control()
            self.report(stats)

    def ready(self, stats: dict) -> None:
        """Set up: settle (pipeline/realtime.py) and tell the supervisor; data may come now."""
        frozen = settle()
        self.report(stats, state="ready", force=True, scheduling=scheduling(), gc_frozen=frozen)

    def wait_for_start(self) -> None:
        """Supervised: block until the supervisor says every stage is ready (or a stop)."""
        while not self.started and not self.stopping:
            self.poll_control()
            if self.control is not None:
                self.control.poll(50)
            else:
                break

    def report(self, stats, state: str = "running", force: bool = False, **extra) -> None:
        """stats: a dict, or a function giving one (called only when a report is due)."""
        now = time.monotonic()
        if not force and not extra and now - self._last_report < REPORT_EVERY:
            return
        self._last_report = now
        if self.status is None:
            return
        if callable(stats):
            stats = stats()
        msg = {"stage": self.name, "pid": os.getpid(), "state": state, "time": now, "stats": stats, **extra}
        try:
            self.status.send(json.dumps(msg, default=_plain).encode(), zmq.NOBLOCK)
        except zmq.Again:       # the supervisor is gone or stuck: status is advisory, data is not
            pass

    def fail(self, exc: BaseException, stats: dict) -> None:
        self.report(stats, state="failed", force=True, error=f"{type(exc).__name__}: {exc}",
                    traceback=traceback.format_exc())

    def close(self) -> None:
        """Data sockets keep their own linger (lossless: until delivered — the supervisor kills a
        stage whose downstream is gone); control and status give up after 2 s."""
        for sock in (self.control, self.status):
            if sock is not None:
                sock.close(linger=2000)
        self.ctx.destroy(linger=None)


def _plain(value):
    """numpy scalars and arrays in status reports."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
