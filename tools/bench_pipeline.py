#!/usr/bin/env python3
"""End-to-end pipeline benchmark: `streamhar run` with every stage a process, on real data.

    python tools/bench_pipeline.py [--repeats 3] [--latency-seconds 600] [--parallel-latency]

1. Throughput at `--speed max`, lossless: samples/s, windows/s and × real time from the first
   chunk leaving the source to the last prediction reaching the sink, with sequence gaps and
   drops (must be 0). The data sets take turns (round robin, `--repeats` runs each) so a slow
   spell of this shared machine hits both; the median run is reported, with the slowest.
2. Latency at `--speed 1` for `--latency-seconds` (default 10 minutes): per window, from the
   source sending the chunk with the window's last sample to the inference stage sending its
   prediction (p50, p99, max); with `--realtime` (`--idle-poll`), as `streamhar run` runs with them. Beside it,
   before and after, the machine's floor: a bare ZeroMQ two-hop round trip with no work. `--parallel-latency` runs both data sets at once (harsher: four
   more processes on the same cores).

Prints a Markdown block for docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SOURCES = {"usc-had": "replay:usc-had:validation", "dsads": "replay:dsads:p6"}


def run(source: str, speed: str, extra: list[str], data_dir: str | None) -> subprocess.Popen:
    out = Path(tempfile.mkdtemp(prefix="bench-pipeline-")) / "summary.json"
    cmd = [sys.executable, "-m", "streamhar", "run", "--source", source, "--speed", speed, "--no-view",
           "--summary-json", str(out), *extra] + (["--data-dir", data_dir] if data_dir else [])
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    p.summary_path = out
    return p


def finish(p: subprocess.Popen) -> dict:
    text, _ = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"streamhar run failed ({p.returncode}):\n{text}")
    return json.loads(p.summary_path.read_text())


def zmq_floor(pings: int) -> str:
    """'p50 | p99 | max' of tools/bench_zmq_hop.py (pings every 0.1 s)."""
    out = subprocess.run([sys.executable, str(Path(__file__).with_name("bench_zmq_hop.py")), "--pings", str(pings),
                          "--interval", "0.1"], capture_output=True, text=True, check=True).stdout
    return " | ".join(cell.strip() for cell in out.strip().strip("|").split("|")[1:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=list(SOURCES), choices=list(SOURCES))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--latency-seconds", type=float, default=600.0)
    ap.add_argument("--parallel-latency", action="store_true")
    ap.add_argument("--realtime", action="store_true", help="latency runs with `streamhar run --realtime`")
    ap.add_argument("--idle-poll", action="store_true",
                    help="latency runs with `streamhar run --realtime --idle-poll` (implies --realtime)")
    ap.add_argument("--floor-pings", type=int, default=600,
                    help="bare ZeroMQ two-hop round trips (tools/bench_zmq_hop.py, every 0.1 s) before and after "
                         "the latency runs: this machine's floor at the time (0: skip)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--data-dir", default=os.environ.get("STREAMHAR_DATA"))
    args = ap.parse_args()

    print(f"### Pipeline — {datetime.date.today().isoformat()}\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; every stage a "
          f"process (source, window, infer ×1, sink) over ipc ZeroMQ sockets, lossless. Command: "
          f"`python tools/bench_pipeline.py {' '.join(sys.argv[1:])}`.\n")
    if not args.skip_throughput:
        runs: dict[str, list[dict]] = {d: [] for d in args.datasets}
        for _ in range(args.repeats):
            for d in args.datasets:
                runs[d].append(finish(run(SOURCES[d], "max", [], args.data_dir)))
        print("| data | source | samples | windows | samples/s | windows/s | × real time (median) | slowest run | "
              "gaps | drops |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for d, rs in runs.items():
            rs.sort(key=lambda s: s["throughput"]["realtime_factor"])
            mid, slow = rs[len(rs) // 2], rs[0]
            t = mid["throughput"]
            print(f"| {d} | `{SOURCES[d]}` | {mid['samples']:,} | {mid['windows']:,} | {t['samples_per_s']:,.0f} | "
                  f"{t['windows_per_s']:,.0f} | **{t['realtime_factor']:,.0f}×** | "
                  f"{slow['throughput']['realtime_factor']:,.0f}× | {max(r['gaps'] for r in rs)} | "
                  f"{max(r['dropped'] for r in rs)} |")
        print()
    if not args.skip_latency:
        secs = f"{args.latency_seconds:g}"
        procs = {}
        results = {}
        floor = [zmq_floor(args.floor_pings)] if args.floor_pings else []
        extra = ["--realtime"] if args.realtime or args.idle_poll else []
        extra += ["--idle-poll"] if args.idle_poll else []
        flags = "".join(f" {f}" for f in extra)
        for d in args.datasets:
            procs[d] = run(SOURCES[d], "1", ["--duration", secs, "--loop", *extra], args.data_dir)
            if not args.parallel_latency:
                results[d] = finish(procs.pop(d))
        for d, p in procs.items():
            results[d] = finish(p)
        if args.floor_pings:
            floor.append(zmq_floor(args.floor_pings))
        how = "at the same time" if args.parallel_latency else "one after the other"
        rt = f", `{flags.strip()}`" if flags else ""
        print(f"Latency at `--speed 1`{rt}, {secs} s per data set ({how}), source send → prediction sent:\n")
        print("| what | windows | p50 ms | p99 ms | max ms | gaps | drops |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        if floor:
            print(f"| bare ZeroMQ round trip, no work (2 hops), before | {args.floor_pings} pings | {floor[0]} | — | — |")
        for d, s in results.items():
            lat = s["latency_ms"]
            print(f"| {d}, `streamhar run --speed 1{flags}` | {s['windows']:,} | "
                  f"{lat['p50']:.2f} | {lat['p99']:.2f} | {lat['max']:.2f} | {s['gaps']} | {s['dropped']} |")
        if floor:
            print(f"| bare ZeroMQ round trip, no work (2 hops), after | {args.floor_pings} pings | {floor[1]} | — | — |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
