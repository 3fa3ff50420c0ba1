"""`streamhar run`: start every stage as a child process, watch them, show the live view, summarize.

The supervisor binds three sockets of its own — control (PUB: start, threshold), status (PULL:
every stage's counters ≈ 4×/s) and ctl (REP: `streamhar ctl`) — and by default puts the data
endpoints on ipc sockets in a private folder (a pipeline file may name tcp endpoints instead).
Each stage runs `python -m streamhar stage KIND --config <that folder>/pipeline.json --supervised`
with its stderr in `<folder>/KIND.log`.

Start: the sources wait until every stage reported "ready", so nothing is sent into a pipeline
that is still importing. Stop: at the end of the data the stream drains on its own (pipeline/
stages.py) and the inference workers are stopped once the sink is done. Ctrl-C stops the sources
first (the rest drains, the summary is complete); a second Ctrl-C stops every stage at once.

A stage that fails (an exception, a signal, an exit before its job is done) **stops the
pipeline**: its traceback (from its status report, else the end of its log) is printed, the other
stages are stopped (SIGTERM, then SIGKILL after 5 s) and `streamhar run` exits with status 1.
We stop rather than restart: a restarted stage has lost its state (windows half filled, the
sink's running metrics), so a restart would break the guarantee that streaming gives the offline
answer; a user who wants a service that outlives failures runs the stages under systemd or
similar, one `streamhar stage` each.
"""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from streamhar.errors import StreamharError
from streamhar.pipeline.config import PipelineConfig

READY_TIMEOUT_S = 180.0
KILL_AFTER_S = 5.0


class PipelineFailed(StreamharError):
    pass


class Supervisor:
    def __init__(self, cfg: PipelineConfig, title: str = ""):
        from streamhar.pipeline.device_tier import device_sources
        self.cfg = cfg
        self.title = title
        self.devices = device_sources(cfg)      # device-tier sources (a UsageError now, not in a child)
        self.dir = Path(tempfile.mkdtemp(prefix="streamhar-run-"))
        ep = cfg.endpoints
        for key in ("chunks", "windows", "predictions", "control", "status", "ctl"):
            if not getattr(ep, key):
                setattr(ep, key, f"ipc://{self.dir}/{key}")
        self.ctx = zmq.Context()
        self.control = self._bind(zmq.PUB, ep.control)
        self.status = self._bind(zmq.PULL, ep.status)
        self.ctl = self._bind(zmq.REP, ep.ctl)
        (self.dir / "pipeline.json").write_text(cfg.to_json())
        from streamhar.pipeline.control import register
        self.registered = register(ep.ctl)
        self.procs: dict[str, subprocess.Popen] = {}
        self.reports: dict[str, dict] = {}
        self.events: list[dict] = []
        self.interrupts = 0
        self.failure: dict | None = None

    def _bind(self, kind: int, endpoint: str) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as e:
            raise StreamharError(f"cannot bind {endpoint}: {e}") from None
        return sock

    # -- children ----------------------------------------------------------------------------
    def stage_names(self) -> list[tuple[str, str, int]]:
        cfg = self.cfg
        return ([("sink", "sink", 0)] + [(f"infer-{i}", "infer", i) for i in range(cfg.workers)]
                + [("window", "window", 0)] + [(f"source-{i}", "source", i) for i in range(len(cfg.sources))])

    def start(self) -> None:
        for name, kind, index in self.stage_names():
            cmd = [sys.executable, "-m", "streamhar", "stage", kind, "--config", str(self.dir / "pipeline.json"),
                   "--supervised", "--index", str(index)]
            log = open(self.dir / f"{name}.log", "wb")
            self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items()}

    def _signal(self, names, sig) -> None:
        for n in names:
            p = self.procs[n]
            if p.poll() is None:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass

    def stop_all(self) -> None:
        self._signal(self.procs, signal.SIGTERM)
        deadline = time.monotonic() + KILL_AFTER_S
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs.values()):
            self.receive(50)
        self._signal(self.procs, signal.SIGKILL)
        for p in self.procs.values():
            p.wait()
        self.receive(0)

    # -- reports -----------------------------------------------------------------------------
    def receive(self, timeout_ms: int) -> None:
        """Status reports and ctl requests that arrived within timeout_ms."""
        poller = zmq.Poller()
        poller.register(self.status, zmq.POLLIN)
        poller.register(self.ctl, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        while self.status in events:
            try:
                rep = json.loads(self.status.recv(zmq.NOBLOCK))
            except zmq.Again:
                break
            if rep.get("event"):
                self.events.append({"stage": rep["stage"], **rep["event"]})
            if rep.get("stats") or rep.get("state") != "running":
                prev = self.reports.get(rep["stage"], {})
                self.reports[rep["stage"]] = {**prev, **rep, "stats": rep.get("stats") or prev.get("stats", {})}
        if self.ctl in events:
            self._handle_ctl()

    def _handle_ctl(self) -> None:
        from streamhar.pipeline.threshold import device_threshold, parse_threshold
        try:
            req = json.loads(self.ctl.recv())
            if req.get("cmd") == "threshold":
                kind, value = parse_threshold(req["value"], 0)       # validate before broadcasting
                if self.devices:     # the devices decide the split: refuse what they cannot take
                    device_threshold(req["value"], 0, f"the device of {self.devices[0]}")
                # infer workers and device-tier sources (SET_THRESHOLD to their device) both listen
                self.control.send(json.dumps({"cmd": "threshold", "value": str(req["value"])}).encode())
                reply = {"ok": True, "threshold": str(req["value"]), "kind": kind, "workers": self.cfg.workers,
                         "devices": len(self.devices)}
            elif req.get("cmd") == "status":
                reply = {"ok": True, "stages": {n: r.get("state") for n, r in self.reports.items()},
                         "snapshot": self.snapshot()}
            else:
                reply = {"ok": False, "error": f"unknown command {req.get('cmd')!r}; known: threshold, status"}
        except (ValueError, KeyError, StreamharError) as e:
            reply = {"ok": False, "error": str(e)}
        self.ctl.send(json.dumps(reply, default=str).encode())

    def state(self, name: str) -> str:
        return self.reports.get(name, {}).get("state", "starting")

    def check_children(self) -> None:
        """A child that exited with an error, or without finishing, fails the pipeline."""
        for name, p in self.procs.items():
            rc = p.poll()
            if rc is None or self.failure is not None:
                continue
            if rc != 0 or self.state(name) not in ("done", "failed") and not name.startswith("infer"):
                self.receive(200)           # its last report may still be on the way
                rep = self.reports.get(name, {})
                how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
                detail = rep.get("traceback") or self._log_tail(name)
                self.failure = {"stage": name, "how": how, "error": rep.get("error"), "traceback": detail}

    def _log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- live numbers ------------------------------------------------------------------------
    def snapshot(self) -> dict:
        sink = self.reports.get("sink", {}).get("stats", {})
        snap = dict(sink.get("snapshot") or {})
        snap["title"] = self.title
        snap["threshold"] = _threshold_text(sink.get("threshold"))
        snap["stages"] = {n: stage_drops(n, r.get("stats", {})) for n, r in sorted(self.reports.items())}
        radio = device_radio([r.get("stats", {}) for n, r in self.reports.items() if n.startswith("source")])
        if radio:
            snap["radio"] = radio
        return snap

    def close(self) -> None:
        self.registered.unlink(missing_ok=True)
        self.ctx.destroy(linger=0)
        shutil.rmtree(self.dir, ignore_errors=True)


def stage_drops(name: str, s: dict) -> dict:
    """Messages/items dropped and sequence gaps a stage saw, from its status counters."""
    dropped = sum(int(s.get(k, {}).get("dropped_items", 0)) for k in ("input", "output"))
    dropped += int(s.get("dropped_items", 0))                    # a source's send drops
    gaps = int(s.get("missing", 0))                               # the sink's written-off messages
    gaps += sum(int(v.get("missing", 0)) for v in (s.get("sequence") or {}).values())
    out = {"dropped": dropped, "gaps": gaps}
    if "windows_dropped" in s:
        out["windows_lost"] = int(s["windows_dropped"])
    return out


def device_radio(sources: list[dict]) -> dict | None:
    """The device-tier sources' radio bytes, summed: received vs the SAMPLES stream they replaced."""
    radios = [s["radio"] for s in sources if s.get("radio")]
    if not radios:
        return None
    out = {k: sum(int(r.get(k) or 0) for r in radios)
           for k in ("bytes", "samples_covered", "samples_stream_bytes", "saved_bytes")}
    out["saved_fraction"] = (round(out["saved_bytes"] / out["samples_stream_bytes"], 4)
                             if out["samples_stream_bytes"] else None)
    return out


def _threshold_text(t: dict | None) -> str:
    if not t:
        return ""
    if t.get("tier") == "device":
        return f"device margin≤{t['value']}"
    return f"p≤{t['value']:g}" if t.get("kind") == "prob" else f"margin≤{t['value']}"


def run_pipeline(cfg: PipelineConfig, *, title: str = "", view=None, on_started=None) -> tuple[int, dict]:
    """Runs the pipeline to its end; (exit status, summary). `view` draws snapshots (LiveView)."""
    from streamhar.pipeline.wakeup import IdlePoller, hold_cpu_dma_latency
    dma = poller = None
    wakeup: dict = {}
    if cfg.realtime:
        from streamhar.pipeline.realtime import check_allowed, latency_cpu
        check_allowed(cfg.realtime_cpu)     # one clear error here, not one per stage
    sup = Supervisor(cfg, title)
    old = signal.signal(signal.SIGINT, lambda *_: setattr(sup, "interrupts", sup.interrupts + 1))
    started = time.monotonic()
    try:
        if cfg.realtime:
            dma, wakeup["cpu_dma_latency"] = hold_cpu_dma_latency()
        if cfg.idle_poll:
            poller = IdlePoller(latency_cpu(cfg.realtime_cpu))
        sup.start()
        if on_started:
            on_started(sup)
        rc = _supervise(sup, view)
    finally:
        signal.signal(signal.SIGINT, old)
        if any(p.poll() is None for p in sup.procs.values()):
            sup.stop_all()
        if view is not None:
            view.close()
        if poller is not None:
            wakeup["idle_poll"] = poller.stop()
        if dma is not None:
            dma.close()
    from streamhar.pipeline.summary import build_summary
    summary = build_summary(sup, time.monotonic() - started, wakeup or None)
    sup.close()
    return rc, summary


def _supervise(sup: Supervisor, view) -> int:
    sources = [n for n in sup.procs if n.startswith("source")]
    t0 = time.monotonic()
    # 1. every stage ready, then start the sources
    while not all(sup.state(n) in ("ready", "running", "done") for n in sup.procs):
        sup.receive(100)
        sup.check_children()
        if sup.failure or sup.interrupts:
            return _fail(sup) if sup.failure else _interrupted(sup)
        if time.monotonic() - t0 > READY_TIMEOUT_S:
            late = [n for n in sup.procs if sup.state(n) == "starting"]
            sup.failure = {"stage": ", ".join(late), "how": f"was not ready after {READY_TIMEOUT_S:.0f} s",
                           "traceback": "\n".join(sup._log_tail(n) for n in late)}
            return _fail(sup)
    stopping_sources = False
    while True:
        if any(sup.state(n) == "ready" for n in sources):
            sup.control.send(b'{"cmd": "start"}')       # repeated until heard (PUB drops before subscribe)
        sup.receive(50)
        sup.check_children()
        if sup.failure:
            return _fail(sup)
        if sup.interrupts >= 2:
            return _interrupted(sup)
        if sup.interrupts == 1 and not stopping_sources:
            stopping_sources = True
            sup._signal(sources, signal.SIGTERM)         # drain: the sources end their streams
        if view is not None:
            view.draw(sup.snapshot(), time.monotonic())
        if sup.procs["sink"].poll() == 0 and sup.state("sink") == "done":
            workers = [n for n in sup.procs if n.startswith("infer")]
            sup._signal(workers, signal.SIGTERM)
            deadline = time.monotonic() + KILL_AFTER_S
            while any(sup.procs[n].poll() is None for n in sup.procs) and time.monotonic() < deadline:
                sup.receive(50)
            sup.check_children()
            if sup.failure:
                return _fail(sup)
            if view is not None:
                view.draw(sup.snapshot(), time.monotonic(), force=True)
            return 130 if sup.interrupts else 0


def _fail(sup: Supervisor) -> int:
    sup.stop_all()
    return 1


def _interrupted(sup: Supervisor) -> int:
    sup.stop_all()
    return 130

