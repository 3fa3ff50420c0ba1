#!/usr/bin/env python3
"""Inference speed, side by side in one run: fp32 torch vs numpy integer engine vs host C library
vs the cascade, at batch 1 (per-window latency) and batch 256 (throughput).

    python tools/bench_infer.py [bundled:usc-had bundled:dsads] [--repeats 200]

The fp32 model is a HARNet of the same shape with fp32 weights and ReLU (eager, CPU, one thread,
`torch.no_grad`, eval mode). Real validation windows are used so the cascade escalates as it
would. Prints a Markdown block for docs/BENCHMARKS.md; figures are medians, ratios are against
fp32 torch in the same run. The runtimes take turns in blocks of 10 calls (round robin), so a
slow spell of this shared machine hits all of them alike instead of one row.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import statistics
import time

import torch

from streamhar.datasets.paths import resolve_data_dir
from streamhar.inference import IntegerEngine, export_bundle
from streamhar.inference.cascade import Cascade, operating_curve
from streamhar.models.bundle import load_bundle
from streamhar.models.cost import macs
from streamhar.models.data import bundle_split
from streamhar.models.har_cnn import HARNet


def median_seconds_round_robin(fns: list, repeats: int, block: int = 10) -> list[float]:
    """Median wall time of each callable fn(r) over `repeats` calls. The callables take turns in
    blocks of `block` consecutive calls (warm caches within a block, as a pipeline stage that
    runs one model has; turns, so a slow spell of the machine hits every callable alike)."""
    for fn in fns:
        fn(0)                                       # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for start in range(0, repeats, block):
        for fn, ts in zip(fns, times):
            for r in range(start, min(start + block, repeats)):
                t = time.perf_counter()
                fn(r)
                ts.append(time.perf_counter() - t)
    return [statistics.median(ts) for ts in times]


def suggested_threshold(engine, x_int, split, bundle, cost) -> int:
    """The cheapest threshold within 0.5 point of the full width's macro-F1 (as `streamhar sweep`)."""
    small, full = bundle.config.widths[0], bundle.config.widths[-1]
    curve = operating_curve(engine.run(x_int, small), engine.run(x_int, full), split.windows.y,
                            bundle.class_names, cost[small], cost[full])
    return curve["suggested"]["threshold"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="*", default=["bundled:usc-had", "bundled:dsads"])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threshold", type=int, help="cascade threshold (default: the model's stored default, "
                        "else the one `streamhar sweep` suggests)")
    parser.add_argument("--data-dir", default=os.environ.get("STREAMHAR_DATA"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    data_dir = resolve_data_dir(args.data_dir)
    try:
        from streamhar.inference.host_c import HostCEngine
    except ImportError:
        HostCEngine = None

    print(f"### Inference — {datetime.date.today().isoformat()}\n")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores (benchmark on 1 thread), Python "
          f"{platform.python_version()}, torch {torch.__version__}. Command: `python tools/bench_infer.py "
          f"{' '.join(args.bundles)} --repeats {args.repeats}`.\n")
    print("| model | runtime | batch 1: ms/window | × vs fp32 torch | batch 256: windows/s | × vs fp32 torch |")
    print("|---|---|---:|---:|---:|---:|")
    for name in args.bundles:
        bundle = load_bundle(name)
        split = bundle_split(bundle, data_dir, "validation")
        x_float = torch.from_numpy(bundle.normalize(split.windows.x))
        fp32 = HARNet(dataclasses.replace(bundle.config, weight_quant="fp32", fc_weight_quant="fp32",
                                          act_quant="fp32", layer_weight_quant=())).eval()
        engine = IntegerEngine(export_bundle(bundle), name=name)
        x_int = engine.quantize(split.windows.x)
        cost = {w: macs(bundle.config, w) for w in bundle.config.widths}
        stored = engine.model.info.get("cascade", {}).get("threshold")
        threshold = (args.threshold if args.threshold is not None else stored if stored is not None
                     else suggested_threshold(engine, x_int, split, bundle, cost))
        cascade = Cascade(engine, cost, threshold)
        # Batch 1: repeat r runs window r (mod N) in every runtime, so the cascade escalates on
        # the windows it would escalate on; batch 256: the first 256 windows.
        n256 = min(256, len(x_int))
        b1 = lambda r: slice(r % len(x_int), r % len(x_int) + 1)
        b256 = lambda r: slice(0, n256)
        runtimes = [("fp32 torch (eager)", lambda s: fp32(x_float[s], 1.0))]
        runtimes.append(("int numpy engine", lambda s: engine.run(x_int[s], 1.0)))
        if HostCEngine is not None:
            host = HostCEngine(engine.model)
            host_cascade = Cascade(host, cost, threshold)
            runtimes.append((f"host C library ({host.simd})", lambda s: host.run(x_int[s], 1.0)))
        runtimes.append((f"cascade numpy (threshold {threshold})", lambda s: cascade.process(x_int[s])))
        if HostCEngine is not None:
            runtimes.append((f"cascade host C (threshold {threshold})", lambda s: host_cascade.process(x_int[s])))
        with torch.no_grad():
            t1s = median_seconds_round_robin([lambda r, fn=fn: fn(b1(r)) for _, fn in runtimes], args.repeats)
            t256s = median_seconds_round_robin([lambda r, fn=fn: fn(b256(r)) for _, fn in runtimes],
                                               max(3, args.repeats // 20), block=1)
        for (label, _), t1, t256 in zip(runtimes, t1s, t256s):
            print(f"| {name} | {label} | {t1 * 1e3:.3f} | {t1s[0] / t1:.2f} | {n256 / t256:,.0f} | "
                  f"{t256s[0] / t256:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
