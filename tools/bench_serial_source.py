#!/usr/bin/env python3
"""Serial live source benchmark: the sensor firmware in QEMU → fault relay → SerialSource.

    python tools/bench_serial_source.py [--board stm32f4] [--duration 600] [--real-rate]
                                        [--mode samples|both] [--fault-every 30] [--json-out PATH]

Builds the sensor image (bundled:usc-had playing replay:usc-had:12 by default), starts it in
QEMU without -icount, puts the fault-injecting relay (streamhar/sources/serial_relay.py) between
its UART pty and the port the source opens, and streams for `--duration` seconds — by default at
the firmware's full rate (FAST: the recording replays as fast as the link drains; `--real-rate`
plays it at its own rate, which is what the drift estimate needs). Every `--fault-every` seconds
the relay injects the next fault of a cycle: a garbage burst, a corrupted frame, a dropped frame,
a torn frame, an overlong burst, an unplug/replug. Every chunk is checked against the compiled
recording. Reports frames, samples, lost samples (and how many of them the relay did not cause:
the target is 0), each fault injected against what the source counted, reconnect times, drift.
Exit status 0 when every count matches and nothing else was lost.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from streamhar.firmware.emulated import EmulatedBoard
from streamhar.firmware.image import build_sensor_image_with_model
from streamhar.sources.serial_relay import SerialRelay
from streamhar.sources.serial_source import SerialSource

FAULTS = ("garbage", "corrupt", "drop", "tear", "overlong", "unplug")
REFUSALS = ("crc_errors", "cobs_errors", "short_frames", "overlong_frames", "unknown_types", "bad_payloads")


def inject(relay: SerialRelay, every: float, until: float, stop: threading.Event, done: dict) -> None:
    """The fault cycle, one every `every` seconds, until stop; none in the last 3 s (the source
    must have recovered from the last one when the run ends, for the counts to be complete)."""
    k = 0
    while every > 0 and not stop.wait(every) and time.monotonic() < until - 3:
        kind = FAULTS[k % len(FAULTS)]
        {"garbage": lambda: relay.garbage(200), "corrupt": relay.corrupt, "drop": relay.drop, "tear": relay.tear,
         "overlong": lambda: relay.garbage(7000), "unplug": relay.unplug}[kind]()
        if kind == "unplug":
            stop.wait(0.5)
            relay.replug()
        done[kind] = done.get(kind, 0) + 1
        k += 1


class RecordingCheck:
    """Each chunk must be the compiled recording at the position the previous chunk and the
    source's lost-sample count predict."""

    def __init__(self, img):
        self.rec = img.sensor.samples
        self.scale = np.array([c.scale for c in img.sensor.channels], np.float32)
        self.pos, self.lost, self.restarts, self.mismatched = 0, 0, 0, 0

    def __call__(self, chunk, counters: dict) -> None:
        restarts = counters["index_restarts"] + counters["device_resets"]
        if restarts != self.restarts:                 # the device's numbering began again
            self.pos, self.restarts = 0, restarts
        self.pos += counters["lost_samples"] - self.lost
        self.lost = counters["lost_samples"]
        idx = (self.pos + np.arange(len(chunk))) % len(self.rec)
        if not np.array_equal(chunk.samples, self.rec[idx].astype(np.float32) * self.scale):
            self.mismatched += 1
        self.pos += len(chunk)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="stm32f4", choices=("stm32f4", "riscv32"))
    ap.add_argument("--bundle", default="bundled:usc-had")
    ap.add_argument("--sensor", default="replay:usc-had:12", help="the recording compiled in as the sensor")
    ap.add_argument("--compiled-seconds", type=float, default=12, help="seconds of it compiled in (the sensor loops)")
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--real-rate", action="store_true", help="play at the recording's rate (default: FAST)")
    ap.add_argument("--mode", default="samples", choices=("samples", "both"))
    ap.add_argument("--fault-every", type=float, default=30, help="seconds between faults (0: none)")
    ap.add_argument("--data-dir")
    ap.add_argument("--json-out")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-serial-") as tmp:
        t = time.monotonic()
        img = build_sensor_image_with_model(args.board, args.bundle, args.sensor, Path(tmp) / "image",
                                            seconds=args.compiled_seconds, data_dir=args.data_dir)
        print(f"built the {args.board} sensor image in {time.monotonic() - t:.1f} s", file=sys.stderr)
        with EmulatedBoard(args.board, img.elf, icount=False) as emu, \
                SerialRelay(emu.port, Path(tmp) / "usb-streamhar-if00") as relay:
            src = SerialSource(str(relay.link), mode=args.mode, fast=not args.real_rate, give_up_s=30)
            check, injected, stop = RecordingCheck(img), {}, threading.Event()
            t0 = time.monotonic()
            injector = threading.Thread(target=inject, args=(relay, args.fault_every, t0 + args.duration, stop, injected),
                                        daemon=True)
            injector.start()
            next_report = t0 + 10
            try:
                for chunk in src.chunks(lambda: time.monotonic() - t0 >= args.duration):
                    check(chunk, src.counters())
                    if time.monotonic() >= next_report:
                        c = src.counters()
                        print(f"{time.monotonic() - t0:6.0f} s  {c['samples_received']:>9,} samples  lost {c['lost_samples']:,}  "
                              f"reconnects {c['reconnects']}", file=sys.stderr)
                        next_report += 10
            finally:
                stop.set()
                injector.join(5)
                src.close()
            elapsed = time.monotonic() - t0
            time.sleep(0.2)
            r = relay.counters
    c = src.counters()
    refused = {k: (c[k], r.refused.get(k, 0)) for k in REFUSALS}
    report = {
        "board": args.board, "mode": args.mode, "fast": not args.real_rate, "duration_s": round(elapsed, 1),
        "frames": c["frames"], "samples": c["samples_received"],
        "samples_per_s": round(c["samples_received"] / elapsed, 1), "device_windows": c["device_results"] + c["uncertain_windows"],
        "lost_samples": c["lost_samples"], "lost_by_faults": r.lost_samples,
        "unexpected_lost": c["lost_samples"] - r.lost_samples, "windows_lost": c["windows_lost"],
        "faults_injected": injected, "seq_gaps": [c["seq_gaps"], r.seq_gaps],
        "refused_source_vs_relay": refused, "garbage_bytes": [c["garbage_bytes"], r.refused_bytes],
        "disconnects": c["disconnects"], "reconnects": c["reconnects"],
        "reconnect_s_total": round(c["reconnect_s"], 3), "reconnect_s_max": round(c["reconnect_max_s"], 3),
        "drift_ppm": None if not args.real_rate else round(c["drift_ppm"], 1),
        "mismatched_chunks": check.mismatched, "clock_steps": c["clock_steps"],
    }
    ok = (report["unexpected_lost"] == 0 and check.mismatched == 0 and c["seq_gaps"] == r.seq_gaps
          and all(a == b for a, b in refused.values()) and c["garbage_bytes"] == r.refused_bytes
          and c["reconnects"] == c["disconnects"] == r.unplugs)
    report["verdict"] = "PASS" if ok else "FAIL"
    print(json.dumps(report, indent=1))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
