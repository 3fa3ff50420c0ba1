"""The four stage processes: each a loop that decodes, calls a pure stage object, encodes, sends.

    source  →(chunks: PUSH→PULL)→  window  →(windows: PUSH→PULL)→  infer ×N  →(predictions: PUSH→PULL)→  sink

The pure steps live with their data: `sources/` (chunks), `windowing/stage.py` (WindowStage),
`inference/stage.py` (InferStage), `sinks/` (metrics, view, JSON lines). Here only the edges:
sockets, flow control (pipeline/flow.py), end of stream and status reports.

Device-tier sources (serial `stream=cascade|both`, pipeline/device_tier.py): the source also
sends its device's windows ("device" messages), the window stage passes them through numbered
(`DevicePassThrough`) instead of windowing that source's samples, and the inference stage answers
only the uncertain ones, with the full width; `threshold` commands reach the device.

End of stream: a source sends an "end" message whose seq is how many chunks it sent; the window
stage, once every source has ended, flushes and sends "end" with the number of window messages;
an inference worker forwards it; the sink finishes when it holds every window message before that
number (in bounded mode: or when the missing ones are overdue — they were dropped, and counted,
upstream). Inference workers then idle until stopped (several share one stream, and any of them
may receive the end), so the supervisor stops them once the sink is done.
"""
from __future__ import annotations

import time
from importlib import import_module

import numpy as np
import zmq

from streamhar.pipeline.flow import Inlet, Outlet, data_socket
from streamhar.pipeline.realtime import (LATENCY_PATH, RealtimeError, enter_realtime, settle_priority,
                                         start_io_threads)
from streamhar.pipeline.runner import StageRunner
from streamhar.transport import messages as m

OVERDUE_S = 1.0    # bounded mode: a missing window message this long after the end is written off
# The window stage sends the windows of every chunk already waiting in its input as one message
# (up to this many windows): at real-time pace nothing waits, so each window leaves at once; when
# the pipeline runs behind (a replay at full speed), messages grow and per-message costs shrink.
COALESCE = 64
# Chunks the window stage holds while some source has not spoken yet (it needs every source's
# channels before it can cut a window); past this the silent source is an error, not a leak.
HOLD_LIMIT = 20000


def _runs(outbox: list) -> list[list]:
    """Consecutive (batch, sent) pairs of the same recording, with windows, grouped."""
    groups: list[list] = []
    for b, t in outbox:
        if not len(b):
            continue
        if groups and groups[-1][-1][0].recording_id == b.recording_id:
            groups[-1].append((b, t))
        else:
            groups.append([(b, t)])
    return groups


def _concat(batches: list):
    if len(batches) == 1:
        return batches[0]
    from streamhar.windowing.stage import WindowBatch
    cat = lambda k: np.concatenate([getattr(b, k) for b in batches])
    return WindowBatch(cat("x"), cat("labels"), cat("t_first"), cat("t_last"), batches[0].recording_id, cat("seq"))


def run_source(r: StageRunner, index: int) -> dict:
    from streamhar.pipeline.device_tier import DeviceWindowSender, is_device_tier, stored_threshold, with_threshold
    from streamhar.sources.chunk import Chunk
    from streamhar.sources.open import inject_faults, late_start, open_source
    from streamhar.sources.pacing import Pacer

    cfg, sc = r.cfg, r.cfg.sources[index]
    device = is_device_tier(sc.spec)       # its device runs the narrow width: it sends windows too
    default = stored_threshold(cfg.bundle) if device else None
    if device:
        sc = with_threshold(sc, cfg.threshold, default if default is not None else -1)
    src = open_source(sc, cfg.speed, cfg.loop, cfg.data_dir)
    live = getattr(src, "live", False)   # a device paces itself: no pacer, and it must be closed
    sender = DeviceWindowSender(src, default) if device else None
    if sender is not None:
        r.on("threshold", lambda cmd: sender.set_threshold(cmd["value"]))
    names, units = [c.name for c in src.channels], [c.unit for c in src.channels]
    out = Outlet(data_socket(r.ctx, zmq.PUSH, cfg.endpoints.chunks, False, cfg.hwm, cfg.mode), cfg.mode,
                 lambda: r.stopping)
    stats = {"stream": src.stream, "samples": 0, "chunks": 0, "stream_s": 0.0, "first_sent": None,
             "last_sent": None, "rate": src.rate, "channels": len(names)}

    def report() -> dict:
        counters = src.counters() if live else {}
        extra = sender.stats(counters) if sender is not None else {}
        return {**stats, **out.stats(), **counters, **extra}

    r.ready(report())
    r.wait_for_start()
    if sc.delay > 0:
        time.sleep(sc.delay)
    pacer = Pacer(None if live else cfg.speed)
    t_first = None
    started = time.monotonic()
    seq = 0

    def stop() -> bool:
        # control commands run here, between the source's reads: a device threshold is set
        # from the thread that reads the device (SerialSource.set_threshold)
        r.poll_control()
        return r.stopping or bool(cfg.duration and time.monotonic() - started >= cfg.duration)

    def sent(now: float) -> None:
        stats["first_sent"] = stats["first_sent"] or now
        stats["last_sent"] = now
        r.report(report)

    try:
        if sender is not None:
            items = src.events(stop)            # chunks (stream=both) and device windows, as they arrive
        else:
            items = inject_faults(late_start(src.chunks(stop) if live else src.chunks(), sc.start), sc.drop, sc.nan)
        for item in items:
            if stop():
                break
            if not isinstance(item, Chunk):                 # a DeviceWindow (device-tier sources only)
                now = time.monotonic()
                out.send(sender.frames(item, now))          # a drop shows as a gap in its seq
                stats["stream_s"] = max(stats["stream_s"], sender.stream_s)
                sent(now)
                continue
            chunk = item
            pacer.wait_until(float(chunk.timestamps[-1]))
            now = time.monotonic()
            if out.send(m.encode_chunk(chunk, names, units, src.rate, sent=now)):
                stats["samples"] += len(chunk)
            stats["chunks"] += 1
            seq = chunk.seq + 1
            t_first = float(chunk.timestamps[0]) if t_first is None else t_first
            stats["stream_s"] = float(chunk.timestamps[-1]) - t_first + 1.0 / src.rate
            sent(now)
    finally:
        if live:
            src.close()
    device_end = {} if sender is None else {"device_seq": sender.seq, "device_windows": sender.windows}
    out.send(m.encode_end("samples", src.stream, seq, samples=stats["samples"], **device_end))
    stats["max_lag_ms"] = round(pacer.max_lag * 1e3, 3)
    return report()


def run_window(r: StageRunner) -> dict:
    from streamhar.models.bundle import load_bundle
    from streamhar.pipeline.device_tier import device_sources
    from streamhar.windowing.stage import DevicePassThrough, SourceInfo, WindowStage

    cfg = r.cfg
    bundle = load_bundle(cfg.bundle)
    inlet = Inlet(r.ctx, zmq.PULL, cfg.endpoints.chunks, True, cfg.mode, cfg.hwm, cfg.queue)
    out = Outlet(data_socket(r.ctx, zmq.PUSH, cfg.endpoints.windows, True, cfg.hwm, cfg.mode), cfg.mode,
                 lambda: r.stopping)
    names = [s.name for s in cfg.sources]
    # Per source: windows from its samples (here), or from its device (passed through), never both.
    devices = device_sources(cfg)
    expected = [n for n in names if n not in devices]
    passthrough = DevicePassThrough(len(bundle.meta["channels"]), int(bundle.meta["window"]), devices)
    book, tracker = m.ChannelBook(), m.SequenceTracker()
    infos: dict[str, SourceInfo] = {}
    ids: dict[str, str] = {}            # each source's channels_id, checked on every chunk
    held: list[m.Message] = []          # chunks of sources that spoke before every source announced itself
    stage: WindowStage | None = None
    device_next: dict[str, int] = {}    # per device source: windows sent before its next message
    ended: set[str] = set()
    seq = 0

    def stats() -> dict:
        s = {"windows_sent": seq, "input": inlet.stats(), "output": out.stats(), "held": len(held),
             "sequence": tracker.totals()}
        windows, dropped = passthrough.windows_out, passthrough.windows_lost
        if stage is not None:
            st = stage.stats
            windows += st.windows_out
            dropped += st.windows_dropped
            s["sources"] = {k: vars(v) for k, v in st.sources.items()}
        if devices:
            s["device_sources"] = {k: vars(v) for k, v in passthrough.sources.items()}
        if stage is not None or devices:
            s.update(windows=windows, windows_dropped=dropped)
        return s

    outbox: list = []       # (WindowBatch, src_sent) not sent yet

    def feed(msg: m.Message) -> None:
        sent = msg.header.get("sent", time.monotonic())
        outbox.extend((b, sent) for b in stage.process(m.decode_chunk(msg)))

    def send_outbox() -> None:
        """One message per run of windows of one recording (see COALESCE)."""
        nonlocal seq
        for group in _runs(outbox):
            batch = _concat([b for b, _ in group])
            sent = (np.full(len(batch), group[0][1]) if len(group) == 1
                    else np.concatenate([np.full(len(b), t) for b, t in group]))
            out.send(m.encode_windows(batch, seq, sent))
            seq += 1
        outbox.clear()

    def pass_device(msg: m.Message) -> None:
        """A device's windows: numbered and sent on at once (one message in, one out)."""
        nonlocal seq
        tracker.observe(msg)
        batch = m.decode_device(msg)
        before = int(msg.header.get("count_before", device_next.get(msg.stream, 0)))
        dropped = max(0, before - device_next.get(msg.stream, 0))      # in messages dropped on the way
        passthrough.process(batch, msg.stream, dropped, f"device message of stream {msg.stream!r}, seq {msg.seq}")
        device_next[msg.stream] = before + len(batch)
        sent = np.full(len(batch), msg.header.get("sent", time.monotonic()))
        fields = {k: msg.header[k] for k in ("device_threshold", "model_id") if k in msg.header}
        out.send(m.encode_device_windows(batch, seq, sent, source=msg.stream, **fields))
        seq += 1

    for msg in r.messages(inlet, stats):
        if msg.stream not in names:
            raise m.MessageError(f"{msg.kind} message from stream {msg.stream!r}, seq {msg.seq}: not a source of "
                                 f"this pipeline ({', '.join(names)})")
        if msg.kind == "end":
            tracker.finish("samples", msg.stream, msg.seq)
            if "device_seq" in msg.header:
                tracker.finish("device", msg.stream, int(msg.header["device_seq"]))
            ended.add(msg.stream)
            if ended == set(names):
                break
            continue
        if msg.stream in devices:
            if msg.kind == "device":
                send_outbox()                   # nothing is held here; keeps the order if ever mixed
                pass_device(msg)
            else:                               # stream=both: its samples are counted, not windowed
                tracker.observe(msg)
                passthrough.ignore_samples(msg.stream, len(msg.arrays.get("timestamps", ())))
            continue
        if msg.kind != "samples":
            raise m.MessageError(f"{msg.kind} message from stream {msg.stream!r}, seq {msg.seq}: a source the "
                                 "host windows sends samples (device windows come from stream=cascade|both sources)")
        if msg.stream not in infos:
            names_, units = book.learn(msg)
            infos[msg.stream] = SourceInfo(msg.stream, tuple(names_), tuple(units), float(msg.header["rate"]))
            ids[msg.stream] = m.channels_id(names_, units)
        elif msg.header.get("channels_id") != ids[msg.stream]:
            raise m.MessageError(f"samples message of stream {msg.stream!r}, seq {msg.seq}: its channels changed "
                                 f"(channels_id {msg.header.get('channels_id')!r}); a source keeps its channels")
        # Counted on arrival, held or not: a source's end may come while its chunks are still held
        # (it ended before another source spoke), and its sequence must be complete by then.
        tracker.observe(msg)
        if stage is None:
            held.append(msg)
            if len(held) > HOLD_LIMIT:
                silent = [n for n in expected if n not in infos]
                raise m.MessageError(f"window stage: {len(held)} chunks held waiting for source(s) "
                                     f"{', '.join(silent)} that sent nothing yet; is it running and "
                                     f"connected to {cfg.endpoints.chunks}?")
            if len(infos) == len(expected):
                stage = WindowStage(bundle, [infos[n] for n in expected])
                for h in held:
                    feed(h)
                held.clear()
        else:
            feed(msg)
        if not inlet.ready() or sum(len(b) for b, _ in outbox) >= COALESCE:
            send_outbox()
    if stage is not None:
        stage.flush()
    send_outbox()
    made = (int(stage.stats.windows_out) if stage else 0) + passthrough.windows_out
    out.send(m.encode_end("windows", "windows", seq, windows=made))
    inlet.close()
    return stats()


def run_infer(r: StageRunner, worker: int) -> dict:
    from streamhar.inference.stage import InferStage
    # decode_windows needs the window stage's module: import it before "ready" (it pulls in
    # scipy.signal; imported on first use it stalled the first windows by ~1 s)
    import_module("streamhar.windowing.stage")

    cfg = r.cfg
    stage = InferStage.from_bundle(cfg.bundle, threshold=cfg.threshold or None, engine=cfg.engine)
    r.on("threshold", lambda cmd: stage.set_threshold(cmd["value"]))
    inlet = Inlet(r.ctx, zmq.PULL, cfg.endpoints.windows, False, cfg.mode, cfg.hwm, cfg.queue)
    out = Outlet(data_socket(r.ctx, zmq.PUSH, cfg.endpoints.predictions, False, cfg.hwm, cfg.mode), cfg.mode,
                 lambda: r.stopping)
    busy = 0.0

    def stats() -> dict:
        return {**stage.stats(), "worker": worker, "busy_s": round(busy, 3), "input": inlet.stats(),
                "output": out.stats()}

    for msg in r.messages(inlet, stats):
        if msg.kind == "end":
            out.send(m.encode_end("predictions", "predictions", msg.seq, windows=msg.header.get("windows", 0)))
            continue
        t0 = time.monotonic()
        device = msg.header.get("tier") == "device"
        pred = stage.process(m.decode_windows(msg), msg.header.get("model_id") if device else None)
        # The threshold that decided: the device's for device-tier windows, else this worker's.
        threshold = (stage.describe_device_threshold(msg.header.get("device_threshold")) if device
                     else stage.describe_threshold())
        # Class names on every message (a few hundred bytes per up to 64 windows): a sink that
        # (re)starts while workers run must not depend on a worker's first message.
        latency = np.empty(len(pred), np.float64)
        frames = m.encode_predictions(pred, msg.seq, latency, stage.class_names, worker=worker,
                                      threshold=threshold)
        # Stamped after encoding, as the message leaves: the frames hold `latency`'s memory, not a copy.
        now = time.monotonic()
        latency[:] = now - msg.arrays["src_sent"]
        busy += now - t0
        out.send(frames)
    inlet.close()
    # A worker runs until told to stop; what it could not deliver by then (its sink gone) is
    # given up after 2 s instead of blocking the exit for ever.
    out.sock.setsockopt(zmq.LINGER, 2000)
    return stats()


def run_sink(r: StageRunner) -> dict:
    import_module("streamhar.inference.stage")            # for decode_predictions, before "ready"
    from streamhar.sinks.jsonl import JsonLinesWriter
    from streamhar.sinks.metrics import RunningMetrics

    cfg, sc = r.cfg, r.cfg.sink
    inlet = Inlet(r.ctx, zmq.PULL, cfg.endpoints.predictions, True, cfg.mode, cfg.hwm, cfg.queue)
    pub = None
    if sc.publish:
        pub = data_socket(r.ctx, zmq.PUB, sc.publish, True, cfg.hwm, "bounded")
    writer = JsonLinesWriter(sc.jsonl) if sc.jsonl else None
    metrics: RunningMetrics | None = None
    class_names: list[str] | None = None
    pending: dict[int, tuple] = {}
    state = {"next": 0, "end": None, "end_at": None, "gaps": 0, "missing": 0, "out_of_order": 0,
             "messages": 0, "windows": 0, "last_recv": None, "first_recv": None, "threshold": None}

    def stats() -> dict:
        s = {k: v for k, v in state.items() if k not in ("end_at",)}
        s.update(input=inlet.stats(), pending=len(pending))
        if metrics is not None:
            s["snapshot"] = metrics.snapshot(time.monotonic())
        return s

    def release() -> None:
        while state["next"] in pending:
            pred, latency, frames = pending.pop(state["next"])
            metrics.update(pred, latency, time.monotonic())
            if writer is not None:
                writer.write(pred, latency, class_names)
            if pub is not None:
                pub.send_multipart(frames, copy=False)
            state["windows"] += len(pred)
            state["next"] += 1

    def skip_missing() -> None:
        """Write off the lowest missing message(s): dropped upstream (bounded mode)."""
        target = min(pending) if pending else state["end"]
        if target is not None and target > state["next"]:
            state["gaps"] += 1
            state["missing"] += target - state["next"]
            state["next"] = target

    r.ready(stats())
    while not r.stopping:
        frames = inlet.get()
        r.poll_control()
        now = time.monotonic()
        if frames is not None:
            msg = m.decode(frames)
            if msg.kind == "end":
                state["end"], state["end_at"] = msg.seq, now
            else:
                pred, latency = m.decode_predictions(msg)
                if class_names is None:
                    if "class_names" not in msg.header:
                        raise m.MessageError(f"predictions seq {msg.seq}: class names not received yet")
                    class_names = list(msg.header["class_names"])
                    metrics = RunningMetrics(class_names)
                state["threshold"] = msg.header.get("threshold")
                state["messages"] += 1
                state["first_recv"] = state["first_recv"] or now
                state["last_recv"] = now
                if msg.seq < state["next"] or msg.seq in pending:
                    state["out_of_order"] += 1          # a duplicate or a message already written off
                else:
                    pending[msg.seq] = (pred, latency, frames)
                    release()
                    if cfg.mode == "bounded" and len(pending) > cfg.queue:
                        skip_missing()
                        release()
                if sc.throttle_ms > 0:
                    time.sleep(sc.throttle_ms / 1000 * len(pred))
        end = state["end"]
        if end is not None:
            if state["next"] >= end and not pending:
                break
            if cfg.mode == "bounded" and now - max(state["end_at"], state["last_recv"] or 0) > OVERDUE_S:
                skip_missing()
                release()
        r.report(stats)
    if writer is not None:
        writer.close()
    inlet.close()
    final = stats()
    final["summary"] = metrics.summary() if metrics is not None else None
    final["complete"] = state["end"] is not None and state["next"] >= state["end"]
    return final


STAGES = {"source": run_source, "window": run_window, "infer": run_infer, "sink": run_sink}


def stage_main(kind: str, cfg, supervised: bool, index: int = 0) -> int:
    """Run one stage to its end; 0 when it finished (or was stopped), 1 when it failed."""
    name = kind if kind in ("window", "sink") else f"{kind}-{index}"
    refused = None
    if cfg.realtime and kind in LATENCY_PATH:
        try:
            enter_realtime(name, cfg.realtime_cpu)   # before StageRunner: its ZeroMQ I/O threads inherit it
        except RealtimeError as e:      # reported through the runner, like any failure
            refused = e
    r = StageRunner(name, cfg, supervised)
    result: dict = {}
    try:
        if refused is not None:
            raise refused
        if cfg.realtime and kind in LATENCY_PATH:
            start_io_threads(r.ctx)
            settle_priority(kind, name)
        fn = STAGES[kind]
        result = fn(r, index) if kind in ("source", "infer") else fn(r)
        r.report(result, state="done", force=True, stopped=r.stopping)
        return 0
    except Exception as exc:
        r.fail(exc, result)
        if not supervised:
            raise
        import traceback
        traceback.print_exc()
        return 1
    finally:
        r.close()
