#!/usr/bin/env python3
"""The Python work on one window's latency path, step by step, in one process (no sockets).

    python tools/bench_window_path.py [--dataset usc-had] [--windows 300] [--gap 0]

For each chunk of a real replay (at `--speed 1` chunking: a tenth of a second of samples), the
steps a window crosses between the source and the inference stage's send: encode the chunk,
decode it and window it, encode the windows, decode them and infer, encode the prediction.
Timed only for chunks that complete a window. `--gap S` sleeps S seconds before each chunk, as
the pipeline idles between chunks at real-time pace (the steps then run cold). Prints p50/p90
per step and the total, in µs.
"""
from __future__ import annotations

import argparse
import gc
import os
import time

import numpy as np

SOURCES = {"usc-had": "replay:usc-had:validation", "dsads": "replay:dsads:p6"}


def main() -> int:
    from streamhar.datasets.paths import resolve_data_dir
    from streamhar.inference.stage import InferStage
    from streamhar.models.bundle import load_bundle
    from streamhar.pipeline.config import SourceConfig
    from streamhar.sources.open import open_source
    from streamhar.transport import messages as m
    from streamhar.windowing.stage import SourceInfo, WindowStage

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=list(SOURCES), default="usc-had")
    ap.add_argument("--windows", type=int, default=300)
    ap.add_argument("--gap", type=float, default=0.0)
    ap.add_argument("--data-dir", default=os.environ.get("STREAMHAR_DATA"))
    args = ap.parse_args()

    bundle = f"bundled:{args.dataset}"
    src = open_source(SourceConfig(spec=SOURCES[args.dataset]), 1.0, False, str(resolve_data_dir(args.data_dir)))
    names, units = [c.name for c in src.channels], [c.unit for c in src.channels]
    window = WindowStage(load_bundle(bundle), [SourceInfo.of(src)])
    infer = InferStage.from_bundle(bundle)
    gc.collect()
    gc.freeze()                        # as a pipeline stage does before it reports ready
    steps = ("encode chunk", "decode + window", "encode windows", "decode + infer", "encode prediction")
    times: dict[str, list[float]] = {s: [] for s in steps}
    n = 0
    for chunk in src.chunks():
        if args.gap:
            time.sleep(args.gap)
        t0 = time.perf_counter()
        frames = m.encode_chunk(chunk, names, units, src.rate, sent=time.monotonic())
        t1 = time.perf_counter()
        batches = window.process(m.decode_chunk(m.decode(frames)))
        t2 = time.perf_counter()
        if not batches:
            continue
        b = batches[0]
        wframes = m.encode_windows(b, n, np.zeros(len(b)))
        t3 = time.perf_counter()
        pred = infer.process(m.decode_windows(m.decode(wframes)))
        t4 = time.perf_counter()
        m.encode_predictions(pred, n, np.zeros(len(pred)), infer.class_names, worker=0,
                             threshold=infer.describe_threshold())
        t5 = time.perf_counter()
        for s, a, z in zip(steps, (t0, t1, t2, t3, t4), (t1, t2, t3, t4, t5)):
            times[s].append((z - a) * 1e6)
        n += 1
        if n >= args.windows:
            break
    print(f"{args.dataset}, {n} windows, gap {args.gap:g} s before each chunk:")
    print("| step | p50 µs | p90 µs |\n|---|---:|---:|")
    for s, v in times.items():
        print(f"| {s} | {np.percentile(v, 50):.0f} | {np.percentile(v, 90):.0f} |")
    total = np.sum([times[s] for s in steps], axis=0)
    print(f"| **total** | **{np.percentile(total, 50):.0f}** | {np.percentile(total, 90):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
