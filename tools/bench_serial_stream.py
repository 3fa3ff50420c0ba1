#!/usr/bin/env python3
"""Serial streaming benchmark: a sensor image in QEMU streams for a while; does every frame arrive?

    python tools/bench_serial_stream.py [--board stm32f4] [--duration 600] [--mode fast|real|both]
                                        [--bundle bundled:usc-had] [--sensor replay:usc-had:12]
                                        [--sensor-seconds 60] [--flags 7] [--json-out PATH]

Builds the sensor image (`streamhar firmware build --sensor`), starts it in QEMU without -icount
with its UART on a pty, opens the port with pyserial like a real one, sends SET_STREAM (all
streams; FAST: the full streaming rate, as fast as the link drains, 115200 8N1 modelled by the
device; real: the recording's own rate) and reads for --duration seconds, then stops the stream
and asks for STATS. Reports per board and mode: frames by type, samples, lost samples (gaps of
SAMPLES' first_index), lost windows (gaps of window_id), lost frames (the device's frames_sent
against the frames that arrived, and the decoder's sequence gaps), CRC and other receive errors,
bytes/s and samples/s on the wire, the device's samples_dropped. Exit status 1 when anything was
lost or corrupted. The issue's target: zero lost frames at the full streaming rate for 10 minutes.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

from streamhar.firmware import protocol as p
from streamhar.firmware.emulated import EmulatedBoard
from streamhar.firmware.image import build_sensor_image, sensor_image_dir

ALL = p.StreamFlag.SAMPLES | p.StreamFlag.RESULTS | p.StreamFlag.UNCERTAIN


class Link:
    """The host end of the UART: raw frames in, every one counted; no unbounded lists."""

    def __init__(self, port: str):
        import serial

        self.port = serial.Serial(port, baudrate=115200, timeout=0.05)
        self.decoder = p.FrameDecoder("host")
        self.seq = 0
        self.bytes = 0
        self.counting = False
        self.frames: dict[str, int] = {}
        self.samples = self.lost_samples = self.windows = self.lost_windows = 0
        self.uncertain = 0
        self._next_index = self._next_window = None

    def send(self, message) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) & 0xFFFF
        self.port.write(p.encode(message, seq))
        self.port.flush()
        return seq

    def _take(self, r: p.Received) -> None:
        m = r.message
        if not self.counting:
            return
        name = type(m).__name__
        self.frames[name] = self.frames.get(name, 0) + 1
        if isinstance(m, p.Samples):
            if self._next_index is not None and m.first_index != self._next_index:
                self.lost_samples += (m.first_index - self._next_index) & 0xFFFF_FFFF
            self._next_index = (m.first_index + m.n_samples) & 0xFFFF_FFFF
            self.samples += m.n_samples
        elif isinstance(m, (p.DeviceResult, p.Uncertain)):
            if self._next_window is not None and m.window_id != self._next_window:
                self.lost_windows += (m.window_id - self._next_window) & 0xFFFF_FFFF
            self._next_window = (m.window_id + 1) & 0xFFFF_FFFF
            self.windows += 1
            self.uncertain += isinstance(m, p.Uncertain)

    def _read(self) -> list[p.Received]:
        data = self.port.read(65536)
        self.bytes += len(data) if self.counting else 0
        return self.decoder.feed(data)

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for r in self._read():
                self._take(r)

    def request(self, message, timeout_s: float = 20.0):
        """Sends a request; reads (and counts) until its reply (a boot VERSION means: send again).
        Frames that came with the reply in the same read are counted too (they are not lost)."""
        seq = self.send(message)
        end = time.monotonic() + timeout_s
        reply = None
        while reply is None and time.monotonic() < end:
            for r in self._read():
                m = r.message
                if isinstance(m, p.Version) and m.boot:
                    seq = self.send(message)
                elif reply is None and m.TYPE < 0x80 and getattr(m, "ref_seq", None) == seq:
                    if isinstance(m, p.ErrorReport):
                        raise SystemExit(f"the device refused {type(message).__name__}: {m.describe()}")
                    reply = m
                    self._take(r)
                else:
                    self._take(r)
        if reply is None:
            raise SystemExit(f"no answer to {type(message).__name__} within {timeout_s} s")
        return reply


def run(board: str, elf: Path, mode: str, flags: int, duration: float) -> dict:
    with EmulatedBoard(board, elf, icount=False) as emu:
        link = Link(emu.port)
        try:
            sensor = link.request(p.SensorRequest())
            link.request(p.StatsRequest(reset=True))       # frames_sent counts from here
            link.counting = True
            want = p.StreamFlag(flags) | (p.StreamFlag.FAST if mode == "fast" else 0)
            t0 = time.monotonic()
            link.request(p.SetStream(want))
            link.pump(duration)
            link.request(p.SetStream(0))
            elapsed = time.monotonic() - t0
            link.pump(0.3)                                 # nothing streams after the stop's ACK
            link.counting = False
            received = sum(link.frames.values())           # every frame after the reset's reply
            stats = link.request(p.StatsRequest()).named()
        finally:
            link.port.close()
        if not emu.running:
            raise SystemExit(f"QEMU stopped: {emu.stop()[-500:]}")
    c = link.decoder.counters
    errors = c.crc_errors + c.cobs_errors + c.short_frames + c.overlong_frames + c.unknown_types + c.bad_payloads
    return {"board": board, "mode": mode, "flags": int(want), "seconds": round(elapsed, 2),
            "rate_hz": sensor.rate_hz, "frames": link.frames, "frames_received": received,
            "frames_sent": stats["frames_sent"], "lost_frames": stats["frames_sent"] - received,
            "seq_gaps": c.seq_gaps, "receive_errors": errors, "crc_errors": c.crc_errors,
            "samples": link.samples, "lost_samples": link.lost_samples, "windows": link.windows,
            "uncertain": link.uncertain, "lost_windows": link.lost_windows,
            "samples_dropped_on_device": stats["samples_dropped"],
            "bytes_per_s": round(link.bytes / elapsed), "samples_per_s": round(link.samples / elapsed, 1),
            "real_time_factor": round(link.samples / elapsed / sensor.rate_hz, 2)}


def verdict(r: dict) -> bool:
    return not (r["lost_frames"] or r["seq_gaps"] or r["receive_errors"] or r["lost_samples"] or r["lost_windows"]
                or r["samples_dropped_on_device"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", choices=("stm32f4", "riscv32"), action="append", help="repeatable (default: both)")
    ap.add_argument("--bundle", default="bundled:usc-had")
    ap.add_argument("--sensor", default="replay:usc-had:12", metavar="replay:DATASET[:SELECTOR]")
    ap.add_argument("--sensor-seconds", type=float, default=60)
    ap.add_argument("--duration", type=float, default=600, help="seconds of streaming per run (default 600)")
    ap.add_argument("--mode", choices=("fast", "real", "both"), default="fast",
                    help="fast: the full streaming rate (default); real: the recording's rate")
    ap.add_argument("--flags", type=int, default=int(ALL), help="SET_STREAM stream bits (default 7: all)")
    ap.add_argument("--out", type=Path, default=Path("build/firmware"), help="build folder")
    ap.add_argument("--data-dir")
    ap.add_argument("--json-out", help="also write the reports as JSON here")
    args = ap.parse_args()
    reports = []
    for board in args.board or ["stm32f4", "riscv32"]:
        elf = build_sensor_image(board, args.bundle, args.sensor,
                                 sensor_image_dir(board, args.bundle, args.sensor, args.sensor_seconds, args.out),
                                 seconds=args.sensor_seconds, data_dir=args.data_dir)
        for mode in (("fast", "real") if args.mode == "both" else (args.mode,)):
            r = run(board, elf, mode, args.flags & int(ALL), args.duration)
            reports.append(r)
            print(f"{board} {mode:4} {r['seconds']:7.1f} s: {r['frames_received']:,} frames "
                  f"({', '.join(f'{k} {v:,}' for k, v in sorted(r['frames'].items()))}), "
                  f"{r['samples']:,} samples ({r['samples_per_s']:g}/s, {r['real_time_factor']:g}× real time), "
                  f"{r['bytes_per_s']:,} B/s; lost frames {r['lost_frames']}, seq gaps {r['seq_gaps']}, "
                  f"receive errors {r['receive_errors']} (CRC {r['crc_errors']}), lost samples {r['lost_samples']}, "
                  f"lost windows {r['lost_windows']}, dropped on the device {r['samples_dropped_on_device']} — "
                  f"{'OK' if verdict(r) else 'LOSS'}", flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"date": str(datetime.date.today()), "args": vars(args) | {"out": str(args.out)},
                                                   "reports": reports}, indent=1))
    return 0 if all(verdict(r) for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
