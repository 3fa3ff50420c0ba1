#!/usr/bin/env python3
"""Benchmark of the replay source: unpaced throughput and wall-clock pacing accuracy.

Runs the real `streamhar replay` command in child processes, one after another in one run, and
prints a Markdown block for docs/BENCHMARKS.md (date, machine, command, figures).

    python tools/bench_replay.py [--data-dir DIR] [--paced-seconds 30]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys


def replay(*args: str, data_dir: str | None) -> dict:
    cmd = [sys.executable, "-m", "streamhar", "replay", *args, "--json", "--quiet"]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("STREAMHAR_DATA"))
    parser.add_argument("--paced-seconds", type=float, default=30.0)
    args = parser.parse_args()

    rows = []
    for source in ("replay:usc-had:11", "replay:dsads:p6"):
        s = replay(source, "--speed", "max", data_dir=args.data_dir)
        rows.append((source, "max", s))
    for speed in ("1", "20"):
        s = replay("replay:usc-had:11", "--speed", speed, "--duration", str(args.paced_seconds),
                   data_dir=args.data_dir)
        rows.append(("replay:usc-had:11", speed, s))

    print(f"### Replay source — {datetime.date.today().isoformat()}\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{platform.platform()}. Command: `python tools/bench_replay.py --paced-seconds "
          f"{args.paced_seconds:g}`.\n")
    print("| source | speed | samples | complete | wall s | samples/s | × real time | pace error | worst lag |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for source, speed, s in rows:
        pace = "—" if s["pace_error"] is None else f"{s['pace_error'] * 100:+.3f} %"
        complete = "—" if s["expected_samples"] is None or speed != "max" else ("yes" if s["complete"] else "NO")
        print(f"| {source} | {speed} | {s['samples']:,} | {complete} | {s['wall_seconds']:.3f} | "
              f"{s['samples_per_second']:,.0f} | {s['realtime_factor']:,.2f} | {pace} | {s['max_lag_ms']:.2f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
