"""How a stage process keeps its latency tail short: collector pauses out, and (asked for) real-time priority.

Two causes of a window's latency that have nothing to do with its work:

1. Python's cyclic garbage collector. A stage imports numpy, scipy and often torch before it
   handles any data: some 200,000 objects, which a full collection walks in ~140 ms on this
   project's reference machine, whenever one happens to be due while a window is in flight.
   `settle()` moves everything a stage built while starting into the collector's permanent
   generation (`gc.freeze()`, the fork-server recipe of CPython's docs), so the collections
   that still run see only what the stage allocates while streaming: microseconds.
2. The scheduler. With five or more processes (and their ZeroMQ I/O threads) on a few cores, a
   window that arrives while the sink or the supervisor holds the core waits for the end of its
   time slice; and a message that crosses from one core to another wakes the other core with
   an interrupt, which on a virtual machine costs a trip through the hypervisor (a bare two-hop
   ZeroMQ round trip here: p99 0.9–2.3 ms across cores, 0.5–0.6 ms on one). `realtime = true`
   (`streamhar run --realtime`) puts the stages on the latency path — sources, window,
   inference — and their ZeroMQ I/O threads on one core (`realtime_cpu`, default the highest),
   in the SCHED_FIFO class, ordered (PRIORITY) so that each preempts its upstream. At real-time
   pace they need a small part of that core; they are not meant for `--speed max`, which the
   configuration refuses. The sink and the supervisor stay in the normal class, on any core.
   Linux's real-time throttling (`sched_rt_runtime_us`, 95 % by default) still leaves the rest
   of the machine a share, should a stage ever spin.

SCHED_FIFO needs root, CAP_SYS_NICE or an rtprio limit (`ulimit -r`); without it the stage fails
at start with an error saying so, instead of running quietly without what was asked for.
"""
from __future__ import annotations

import gc
import os

from streamhar.errors import StreamharError

# Downstream preempts upstream: when a stage hands a window on, the next stage runs at once
# instead of waiting for the sender's bookkeeping (its status report, reading the next chunk).
# The ZeroMQ I/O threads, which carry every message between the stages, sit above all three.
# All low among real-time priorities: the kernel's own threads stay above.
PRIORITY = {"source": 10, "window": 11, "infer": 12}
IO_PRIORITY = 20
LATENCY_PATH = tuple(PRIORITY)


class RealtimeError(StreamharError):
    """Real-time scheduling was asked for and this process may not have it."""


def settle() -> int:
    """Call once a stage is set up, just before it reports ready (see 1. above); returns how many
    objects the collector will no longer walk."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def latency_cpu(requested: int = -1) -> int:
    """The core the latency path shares: `requested`, or (-1) the highest this process may use."""
    allowed = sorted(os.sched_getaffinity(0))
    if requested < 0:
        return allowed[-1]
    if requested not in allowed:
        raise RealtimeError(f"realtime_cpu = {requested}: this process may run on CPU(s) "
                            f"{', '.join(map(str, allowed))} only")
    return requested


def enter_realtime(stage: str, cpu: int = -1) -> None:
    """Step 1, before the stage's ZeroMQ context exists: the calling thread on one core at
    IO_PRIORITY, which the context's I/O threads inherit when `start_io_threads` creates them."""
    if not hasattr(os, "sched_setscheduler"):
        raise RealtimeError(f"stage {stage}: realtime = true needs Linux's SCHED_FIFO; this system has none")
    core = latency_cpu(cpu)
    os.sched_setaffinity(0, {core})
    _fifo(stage, IO_PRIORITY)


def start_io_threads(ctx) -> None:
    """libzmq starts a context's I/O threads with its first socket: make that happen now."""
    ctx.socket(1).close(linger=0)           # 1 = zmq.PAIR; no zmq import needed here


def settle_priority(kind: str, name: str) -> None:
    """Step 2, once the I/O threads run: the stage's own thread down to its place in the order."""
    _fifo(name, PRIORITY[kind])


def _fifo(stage: str, priority: int) -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError:
        raise RealtimeError(
            f"stage {stage}: realtime = true, but this user may not use SCHED_FIFO priority {priority}. "
            f"Run as root, grant CAP_SYS_NICE (setcap cap_sys_nice+ep on the Python binary), or raise the "
            f"rtprio limit (`ulimit -r {IO_PRIORITY}`, /etc/security/limits.conf); or run without --realtime"
        ) from None


def check_allowed(cpu: int = -1) -> None:
    """Before starting any stage: whether this user may use SCHED_FIFO (tried on a short-lived
    thread, so the caller keeps its own class); raises RealtimeError if not."""
    import threading

    failure: list[BaseException] = []

    def attempt() -> None:
        try:
            enter_realtime("(check)", cpu)
        except RealtimeError as e:
            failure.append(e)

    t = threading.Thread(target=attempt, name="realtime check")
    t.start()
    t.join()
    if failure:
        raise RealtimeError(str(failure[0]).replace("stage (check): ", "streamhar run: "))


def scheduling(pid: int = 0) -> str:
    """A process's scheduling class as the kernel has it (0: the caller), for status reports:
    "SCHED_FIFO 11 on CPU 1", "SCHED_IDLE on CPU 1" (wakeup.py's spinner) or "normal"."""
    if not hasattr(os, "sched_getscheduler"):
        return "unknown"
    policy = os.sched_getscheduler(pid)
    cores = ",".join(map(str, sorted(os.sched_getaffinity(pid))))
    if policy == getattr(os, "SCHED_FIFO", None):
        return f"SCHED_FIFO {os.sched_getparam(pid).sched_priority} on CPU {cores}"
    if policy == getattr(os, "SCHED_IDLE", None):
        return f"SCHED_IDLE on CPU {cores}"
    return "normal"
