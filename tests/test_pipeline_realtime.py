"""`streamhar run --realtime`: the latency path on one core at real-time priority, downstream first.

The real pipeline (processes, ZeroMQ, real data), with what each stage reports about itself: its
scheduling class as the kernel has it (`os.sched_getscheduler` inside the stage) and how many
start-up objects it moved out of the garbage collector's sight. Needs root, CAP_SYS_NICE or an
rtprio limit, as the feature does; CI runs as root (it apt-gets its compilers).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from streamhar.errors import UsageError
from streamhar.pipeline.config import PipelineConfig, SourceConfig
from streamhar.pipeline.realtime import IO_PRIORITY, PRIORITY
from tests.conftest import REPO

FIFO = re.compile(r"SCHED_FIFO (\d+) on CPU (\d+)$")


def test_realtime_puts_source_window_and_inference_on_one_core_downstream_first(tmp_path, data_dir):
    summary, jsonl = tmp_path / "summary.json", tmp_path / "w.jsonl"
    run = subprocess.run([sys.executable, "-m", "streamhar", "run", "--source", "replay:usc-had:11", "--speed", "20",
                          "--duration", "6", "--realtime", "--no-view", "--jsonl", str(jsonl), "--summary-json",
                          str(summary), "--data-dir", str(data_dir.resolve())],
                         cwd=REPO, text=True, capture_output=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    s = json.loads(summary.read_text())
    assert s["realtime"] and s["dropped"] == 0 and s["gaps"] == 0 and s["windows"] > 20
    assert ", realtime)" in run.stdout
    stages = s["stages"]
    placed = {n: FIFO.match(stages[n]["scheduling"] or "") for n in ("source-0", "window", "infer-0")}
    assert all(placed.values()), {n: stages[n]["scheduling"] for n in stages}
    assert len({m.group(2) for m in placed.values()}) == 1                    # one core
    prio = {n: int(m.group(1)) for n, m in placed.items()}
    assert prio == {"source-0": PRIORITY["source"], "window": PRIORITY["window"], "infer-0": PRIORITY["infer"]}
    assert prio["source-0"] < prio["window"] < prio["infer-0"] < IO_PRIORITY   # downstream preempts upstream
    assert stages["sink"]["scheduling"] == "normal"
    # every stage froze what it built while starting (the inference stage: numpy, the model, …)
    assert all(stages[n]["gc_frozen"] > 10_000 for n in stages), {n: stages[n]["gc_frozen"] for n in stages}
    assert len(jsonl.read_text().splitlines()) == s["windows"]


def test_without_realtime_every_stage_stays_in_the_normal_class(tmp_path, data_dir):
    summary = tmp_path / "summary.json"
    run = subprocess.run([sys.executable, "-m", "streamhar", "run", "--source", "replay:usc-had:11", "--speed", "max",
                          "--duration", "3", "--no-view", "--summary-json", str(summary),
                          "--data-dir", str(data_dir.resolve())], cwd=REPO, text=True, capture_output=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    s = json.loads(summary.read_text())
    assert not s["realtime"] and {v["scheduling"] for v in s["stages"].values()} == {"normal"}


def test_realtime_at_speed_max_is_refused_with_the_reason():
    cfg = PipelineConfig(sources=[SourceConfig(spec="replay:usc-had:11")], speed=None, realtime=True)
    with pytest.raises(UsageError, match="real-time pace"):
        cfg.validate()
    # a live source has no speed to speak of: allowed
    PipelineConfig(sources=[SourceConfig(spec="serial:/dev/ttyACM0")], speed=None, realtime=True).validate()


def test_a_core_this_process_may_not_use_is_refused_naming_the_allowed_ones():
    import os

    from streamhar.pipeline.realtime import RealtimeError, latency_cpu
    allowed = sorted(os.sched_getaffinity(0))
    assert latency_cpu() == allowed[-1] and latency_cpu(allowed[0]) == allowed[0]
    with pytest.raises(RealtimeError, match=r"realtime_cpu = 4096: .* CPU\(s\) " + ", ".join(map(str, allowed))):
        latency_cpu(4096)


def _dma_latency() -> int | None:
    import struct
    try:
        with open("/dev/cpu_dma_latency", "rb") as f:
            return struct.unpack("i", f.read(4))[0]
    except OSError:
        return None


def test_idle_poll_keeps_the_latency_core_busy_below_every_stage_and_holds_pm_qos(tmp_path, data_dir):
    import os
    import time
    summary = tmp_path / "summary.json"
    before = _dma_latency()
    run = subprocess.Popen([sys.executable, "-m", "streamhar", "run", "--source", "replay:usc-had:11", "--speed", "20",
                            "--duration", "6", "--idle-poll", "--no-view", "--summary-json", str(summary),
                            "--data-dir", str(data_dir.resolve())], cwd=REPO, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    seen = set()
    while run.poll() is None:            # the PM QoS request, as the kernel aggregates it, during the run
        seen.add(_dma_latency())
        time.sleep(0.2)
    out = run.stdout.read()
    assert run.returncode == 0, out
    s = json.loads(summary.read_text())
    assert s["realtime"] and s["dropped"] == 0 and s["gaps"] == 0 and s["windows"] > 20
    core = FIFO.match(s["stages"]["window"]["scheduling"]).group(2)
    poll = s["wakeup"]["idle_poll"]
    assert poll["scheduling"] == f"SCHED_IDLE on CPU {core}" and poll["cpu"] == int(core)
    # it spun through the core's idle time: at 20× the stages need a small part of the core
    assert poll["cpu_seconds"] > 2.0, poll
    assert f"idle poll on CPU {core} (SCHED_IDLE" in out
    assert not os.path.exists(f"/proc/{poll['pid']}") or open(f"/proc/{poll['pid']}/stat").read().split()[2] == "Z"
    if before is not None and os.access("/dev/cpu_dma_latency", os.W_OK):
        assert s["wakeup"]["cpu_dma_latency"] == "held at 0 µs" and 0 in seen
        assert _dma_latency() == before                    # released with the run
    else:
        assert s["wakeup"]["cpu_dma_latency"].startswith("not held (/dev/cpu_dma_latency")


def test_the_idle_poller_ends_when_its_parent_is_killed():
    import os
    import signal
    import time
    parent = subprocess.Popen([sys.executable, "-c", "import time\nfrom streamhar.pipeline.wakeup import IdlePoller\n"
                               "print(IdlePoller(0).proc.pid, flush=True)\ntime.sleep(120)"],
                              cwd=REPO, text=True, stdout=subprocess.PIPE)
    pid = int(parent.stdout.readline())
    time.sleep(0.5)
    assert open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "R"     # spinning
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        if state in ("gone", "Z", "X"):
            break
        time.sleep(0.1)
    assert state in ("gone", "Z", "X"), state


def test_idle_poll_without_realtime_is_refused():
    cfg = PipelineConfig(sources=[SourceConfig(spec="replay:usc-had:11")], idle_poll=True)
    with pytest.raises(UsageError, match="set realtime = true too"):
        cfg.validate()
    PipelineConfig(sources=[SourceConfig(spec="replay:usc-had:11")], idle_poll=True, realtime=True).validate()
