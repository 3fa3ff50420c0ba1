#!/usr/bin/env python3
"""The floor under pipeline latency on this machine: a bare ZeroMQ round trip between two processes.

    python tools/bench_zmq_hop.py [--pings 300] [--interval 0.05]

Process A sends a small message over ipc PUSH to process B, which sends it back; A measures the
round trip (two hops, the number of hops from a source to the inference stage), idling
`--interval` between pings as a pipeline at real-time pace does. Prints p50/p99/max in ms.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time

import numpy as np
import zmq


def echo(a_ep: str, b_ep: str, n: int) -> None:
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    a.connect(a_ep)
    b.connect(b_ep)
    for _ in range(n + 1):
        b.send(a.recv())
    ctx.destroy(linger=1000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pings", type=int, default=300)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="zmq-hop-")
    a_ep, b_ep = f"ipc://{d}/a", f"ipc://{d}/b"
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    a.bind(a_ep)
    b.bind(b_ep)
    p = mp.get_context("spawn").Process(target=echo, args=(a_ep, b_ep, args.pings))
    p.start()
    a.send(b"warm-up")
    b.recv()
    rtt = []
    for _ in range(args.pings):
        time.sleep(args.interval)
        t = time.monotonic()
        a.send(b"x" * 64)
        b.recv()
        rtt.append((time.monotonic() - t) * 1e3)
    p.join()
    ctx.destroy(linger=0)
    r = np.array(rtt)
    print(f"| ZeroMQ ipc round trip (2 hops), {args.pings} pings every {args.interval * 1e3:g} ms | "
          f"{np.percentile(r, 50):.2f} | {np.percentile(r, 99):.2f} | {r.max():.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
