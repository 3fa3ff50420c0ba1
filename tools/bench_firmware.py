#!/usr/bin/env python3
"""Firmware cost benchmark → the markdown tables of docs/BENCHMARKS.md ("Firmware").

    python tools/bench_firmware.py [--windows 100] [--json-out PATH]
    python tools/bench_firmware.py --from-json PATH     # tables from `streamhar firmware bench --json`

Runs `streamhar firmware bench` (streamhar/firmware/bench.py) on both boards and both bundled
models — exact executed-instruction counts under QEMU, the float32 baseline beside them — and
prints the whole-network table, the per-layer table and the targets with their verdicts.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import subprocess

from streamhar.firmware.bench import run_bench

BOARDS = ("stm32f4", "riscv32")
MODELS = ("bundled:usc-had", "bundled:dsads")
NAMES = {"stm32f4": "Cortex-M4", "riscv32": "RV32IMC"}


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--windows", type=int, default=100)
    ap.add_argument("--json-out", help="also write every report as JSON here")
    ap.add_argument("--data-dir")
    ap.add_argument("--from-json", help="render the tables of a saved `streamhar firmware bench --json` run")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            rows = json.load(f)
    else:
        rows = [r.as_dict() for r in (run_bench(b, m, args.data_dir, n=args.windows) for b in BOARDS for m in MODELS)]
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"{datetime.date.today()} · {platform.processor() or platform.machine()} · "
          f"{_version(['qemu-system-arm', '--version'])} · {_version(['arm-none-eabi-gcc', '--version'])} · "
          f"{_version(['riscv64-unknown-elf-gcc', '--version'])} · `python tools/bench_firmware.py "
          f"--windows {args.windows}`\n")
    print("| board · model | small | full | cascade (escalated) | saved vs full | float32 full | float32 / ternary |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        n, f, c = r["network"], r["float_network"], r["network"]["cascade"]
        print(f"| {NAMES[r['board']]} · {r['model'].split(':')[-1]} | {n['small']['mean']:,.0f} | {n['full']['mean']:,.0f} "
              f"| {c['mean']:,.0f} ({c['escalation_rate']:.0%}) | {r['cascade_saving']:.1%} | "
              f"{f['full']['mean']:,.0f} | {r['float_ratio']['full']:.2f}× |")
    print("\nConvolutions, instructions per MAC (ternary | float32), small width / full width:\n")
    print("| model · block | shape (full width) | " + " | ".join(f"{NAMES[b]} ternary | {NAMES[b]} float32"
                                                           for b in BOARDS) + " |")
    print("|---|---|" + "---:|" * 2 * len(BOARDS))
    for m in MODELS:
        by_board = {r["board"]: r for r in rows if r["model"] == m}
        first = by_board[BOARDS[0]]
        for layer in (l for l in first["layers"] if l["width"] == "full" and l["layer"] != "fc"):
            cells = []
            for b in BOARDS:
                pick = {l["width"]: l for l in by_board[b]["layers"] if l["layer"] == layer["layer"]}
                cells.append(f"{pick['small']['per_mac']:.2f} / {pick['full']['per_mac']:.2f}")
                cells.append(f"{pick['small']['float_per_mac']:.1f} / {pick['full']['float_per_mac']:.1f}")
            print(f"| {m.split(':')[-1]} {layer['layer']} | {layer['shape']} | " + " | ".join(cells) + " |")
    print("\nTargets:\n")
    for r in rows:
        bad = [t for t in r["targets"] if not t["ok"]]
        verdict = "all met" if not bad else "NOT met: " + "; ".join(t["name"] for t in bad)
        print(f"- {NAMES[r['board']]} · {r['model'].split(':')[-1]}: {len(r['targets'])} targets, {verdict}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
