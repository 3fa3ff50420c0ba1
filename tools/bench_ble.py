#!/usr/bin/env python3
"""Benchmark of the BLE source over the emulated stack (Bumble in-memory link, bleak backend).

Three figures, each against the targets of issue 7, printed as a Markdown block for
docs/BENCHMARKS.md:

1. loss: an emulated generic-profile wearable streams USC-HAD (100 Hz × 6 channels) for
   `--seconds` (default 600) into a `BleSource`; every sample received is compared with the
   recording, and packets/samples lost are counted (target: zero loss);
2. reconnect: `--disconnects` unsolicited disconnects, each timed from the disconnect to data
   flowing again, with the gap the source reports checked against the emulator's truth
   (target: ≤ 2 s, gap exact);
3. alignment: two wearables (different power-on times and clocks, one 30 ppm fast) worn at once
   see the same motion; the host time stamps of equal recording samples are compared
   (target: within one sample period).

    python tools/bench_ble.py [--seconds 600] [--disconnects 5] [--data-dir DIR] [--json]
"""
from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from streamhar.datasets import get_dataset  # noqa: E402
from streamhar.datasets.paths import resolve_data_dir  # noqa: E402
from streamhar.sources.ble.emulators.generic import SCALES, GenericEmulator  # noqa: E402
from streamhar.sources.ble.source import BleSource  # noqa: E402
from streamhar.sources.ble.world import BleWorld  # noqa: E402

G = 9.80665


def si(rec, k):
    x = rec.samples[k % len(rec)].astype(np.float64)
    return np.concatenate([x[:, :3] * G, x[:, 3:6] * math.pi / 180], axis=1)


def drain(src, seconds, until=None):
    t0 = time.monotonic()
    return list(src.chunks(lambda: time.monotonic() - t0 > seconds or (until is not None and until())))


def bench_loss(world, rec, seconds: float) -> dict:
    emu = world.add(GenericEmulator(rec, name="bench-loss"))
    tol = np.repeat([SCALES["acc"], SCALES["gyro"]], 3) / 2 + 1e-5
    n = bad = 0
    with BleSource(f"ble:generic:{emu.name}", world=world) as src:
        k = emu.streams["imu"].first_k
        t0 = time.monotonic()
        for chunk in src.chunks(lambda: time.monotonic() - t0 > seconds):
            want = si(rec, k + n + np.arange(len(chunk)))
            bad += int((np.abs(chunk.samples - want) > tol).any(axis=1).sum())
            n += len(chunk)
        c = src.counters()
    return {"seconds": round(time.monotonic() - t0, 1), "samples": n, "expected_rate_hz": 100,
            "received_rate_hz": round(n / seconds, 2), "packets_lost": c["packets_lost"],
            "samples_lost": c["samples_lost"], "mismatched_samples": bad, "sent_samples": emu.sent_samples,
            "drift_ppm": c["drift_ppm"]}


def bench_reconnect(world, rec, times: int) -> dict:
    emu = world.add(GenericEmulator(rec, name="bench-reconnect"))
    rows, seen = [], []
    with BleSource(f"ble:generic:{emu.name}?give_up=10", world=world) as src:
        for i in range(times):
            first_k = emu.streams["imu"].first_k
            seen += drain(src, 0.5)
            rid = seen[-1].recording_id
            world.run(emu.force_disconnect())
            seen += drain(src, 5.0, until=lambda: src.counters()["reconnects"] > i)
            resumed_k = emu.streams["imu"].first_k
            seen += drain(src, 0.3)           # the gap is known once the first frame after it arrives
            received = sum(len(c) for c in seen if c.recording_id == rid)
            c = src.counters()
            truth = resumed_k - (first_k + received)   # samples measured but never sent
            rows.append({"reconnect_s": c["reconnect_s"], "gap_reported": c["last_gap_samples"], "gap_truth": truth})
    return {"disconnects": times, "reconnect_s_max": max(r["reconnect_s"] for r in rows),
            "reconnect_s_mean": round(sum(r["reconnect_s"] for r in rows) / times, 4),
            "gaps_exact": all(r["gap_reported"] == r["gap_truth"] for r in rows), "runs": rows}


def bench_alignment(world, rec, seconds: float) -> dict:
    a = world.add(GenericEmulator(rec, name="bench-left"))
    time.sleep(0.137)
    b = world.add(GenericEmulator(rec, name="bench-right", clock_ticks0=2**32 - 2_000_000, drift_ppm=30))
    b.start = round((b.boot - a.boot) * 100)
    out = {}
    with BleSource(f"ble:generic:{a.name}?at=left", world=world) as sa, \
            BleSource(f"ble:generic:{b.name}?at=right", world=world) as sb:
        ka, kb = a.streams["imu"].first_k, b.streams["imu"].first_k
        threads = [threading.Thread(target=lambda s=s, key=key: out.__setitem__(key, drain(s, seconds)))
                   for s, key in ((sa, "a"), (sb, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ta = np.concatenate([c.timestamps for c in out["a"]])
    tb = np.concatenate([c.timestamps for c in out["b"]])
    ja, jb = ka + np.arange(len(ta)), b.start + kb + np.arange(len(tb))
    _, ia, ib = np.intersect1d(ja, jb, return_indices=True)
    err = np.abs(ta[ia] - tb[ib])
    # The first second is the clock estimate's warm-up: a first frame delayed by a busy host
    # (the second device's connection set-up runs in the same loop) maps late until the lower
    # envelope of arrivals finds the true offset. Reported apart.
    warm = ta[ia] - ta[0] >= 1.0
    return {"common_samples": int(len(ia)), "max_ms": round(float(err.max()) * 1e3, 3),
            "max_after_1s_ms": round(float(err[warm].max()) * 1e3, 3),
            "p50_ms": round(float(np.median(err)) * 1e3, 3), "sample_period_ms": 10.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the loss run (default 600)")
    parser.add_argument("--disconnects", type=int, default=5)
    parser.add_argument("--align-seconds", type=float, default=10.0)
    parser.add_argument("--data-dir", default=os.environ.get("STREAMHAR_DATA"))
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    args = parser.parse_args()
    # Bumble's emulated controller warns about packets for a link the test just cut: expected here.
    logging.getLogger("bumble").setLevel(logging.ERROR)

    rec = get_dataset("usc-had").load_selection(resolve_data_dir(args.data_dir), "12")[0]
    with BleWorld() as world:
        res = {"loss": bench_loss(world, rec, args.seconds),
               "reconnect": bench_reconnect(world, rec, args.disconnects),
               "alignment": bench_alignment(world, rec, args.align_seconds)}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    loss, rc, al = res["loss"], res["reconnect"], res["alignment"]
    print(f"### BLE source, emulated ({datetime.date.today()}, {platform.node()}, "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()})\n")
    print(f"`python tools/bench_ble.py --seconds {args.seconds:g} --disconnects {args.disconnects}`\n")
    print("| figure | result | target |\n|---|---|---|")
    print(f"| 100 Hz × 6 ch for {loss['seconds']} s | {loss['samples']} samples, {loss['packets_lost']} packets / "
          f"{loss['samples_lost']} samples lost, {loss['mismatched_samples']} differ from the recording | zero loss |")
    print(f"| reconnect after an unsolicited disconnect (×{rc['disconnects']}) | max {rc['reconnect_s_max']:.3f} s, "
          f"mean {rc['reconnect_s_mean']:.3f} s, gap exact: {rc['gaps_exact']} | ≤ 2 s, gap exact |")
    print(f"| two wearables, same motion | max {al['max_ms']} ms ({al['max_after_1s_ms']} ms after the first "
          f"second), median {al['p50_ms']} ms apart over {al['common_samples']} samples | < "
          f"{al['sample_period_ms']:g} ms (one period) |")
    ok = (loss["samples_lost"] == 0 and loss["mismatched_samples"] == 0 and rc["reconnect_s_max"] <= 2
          and rc["gaps_exact"] and al["max_after_1s_ms"] < al["sample_period_ms"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
