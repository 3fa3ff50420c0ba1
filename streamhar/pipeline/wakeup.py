"""Keeping the latency core quick to wake while a `--realtime` pipeline runs.

At real-time pace the latency path is idle most of the time, and every chunk starts by waking it.
What that costs depends on how deeply the core slept:

- On bare metal, deep C-states (tens to hundreds of µs to leave). Linux's PM QoS interface keeps
  every core in shallow states while a process holds `/dev/cpu_dma_latency` open with 0 written
  to it; cyclictest does exactly this while it measures. `realtime = true` holds it for the run
  (root only; without the file or the right, the summary says so and the run goes on).
- On a virtual machine an idle vCPU halts into the hypervisor, which may run something else on
  the physical core; the wake-up then waits for the host's scheduler. Measured on this project's
  reference VM with cyclictest (SCHED_FIFO 90, 1 ms period, 60 s, CPU 1): wake-up p99 1.11 ms,
  62 wake-ups over 5 ms with the core idle; p99 0.12 ms, 16 over 5 ms with it kept busy.
  `idle_poll = true` (`streamhar run --idle-poll`) keeps it busy: a child process pinned to the
  latency core in SCHED_IDLE — below every other process — spins whenever nothing else there
  runs, and every stage preempts it at once. The price is that core's idle time (power, and the
  share of a shared host), so it is asked for, never implied.

The spinner ends with its parent: it checks, every few tens of milliseconds, that the process
that started it is still its parent, so a supervisor killed with SIGKILL leaves no core spinning.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys

from streamhar.pipeline.realtime import scheduling

DMA_LATENCY = "/dev/cpu_dma_latency"
_CHECK_EVERY = 1 << 20       # loop turns between parent checks (≈ 30 ms of spinning)


def hold_cpu_dma_latency(path: str = DMA_LATENCY):
    """(open file that holds the PM QoS request at 0 µs, or None, and a line for the summary)."""
    f = None
    try:
        f = open(path, "wb", buffering=0)
        f.write(struct.pack("i", 0))
    except OSError as e:
        if f is not None:
            f.close()
        return None, f"not held ({path}: {e.strerror or e})"
    return f, "held at 0 µs"


class IdlePoller:
    """The spinner child process on `cpu` (see above)."""

    def __init__(self, cpu: int):
        self.cpu = cpu
        self.proc = subprocess.Popen([sys.executable, "-m", "streamhar.pipeline.wakeup", str(cpu), str(os.getpid())],
                                     stdin=subprocess.DEVNULL)

    def cpu_seconds(self) -> float:
        """CPU time the spinner used so far (user + system, from /proc/PID/stat)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict:
        """Ends the spinner; what it was, as the kernel had it just before, and what it used."""
        used = self.cpu_seconds()
        try:
            policy = scheduling(self.proc.pid)
        except OSError:             # it ended on its own (its parent check) before this
            policy = ""
        self.proc.kill()
        self.proc.wait()
        return {"cpu": self.cpu, "pid": self.proc.pid, "scheduling": policy, "cpu_seconds": round(used, 2)}


def spin(cpu: int, parent: int) -> None:
    os.sched_setaffinity(0, {cpu})
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    turns = 0
    while True:
        turns += 1
        if not turns % _CHECK_EVERY and os.getppid() != parent:
            return


if __name__ == "__main__":
    spin(int(sys.argv[1]), int(sys.argv[2]))
