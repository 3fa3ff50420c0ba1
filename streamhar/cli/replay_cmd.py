"""`streamhar replay SOURCE`: replay a recording as a live stream, with a compact live view."""
from __future__ import annotations

import argparse
import json
import sys
import time

from streamhar.cli.main import add_data_dir_option
from streamhar.datasets import get_dataset
from streamhar.datasets.paths import resolve_data_dir
from streamhar.errors import UsageError
from streamhar.sinks.stream_stats import StreamStats
from streamhar.sources.replay import ReplaySource, parse_replay_spec


def register(sub) -> None:
    p = sub.add_parser("replay", help="replay a data set recording at real-time pace or faster",
                       description="Replay recordings in order as timestamped chunks. SOURCE is "
                                   "replay:NAME[:SELECTOR], e.g. replay:dsads:p6, replay:usc-had:12, "
                                   "replay:usc-had:11/a3t2, replay:dsads:validation.")
    p.add_argument("source", help="replay:NAME[:SELECTOR]")
    p.add_argument("--speed", default="1", type=parse_speed,
                   help="multiple of real time (1 = wall clock, 20 = twenty times faster) or 'max' (unpaced)")
    p.add_argument("--loop", action="store_true", help="start again from the first recording at the end")
    p.add_argument("--chunk", type=int, default=None, metavar="N",
                   help="samples per chunk (default: 0.1 s worth of samples)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S wall seconds")
    p.add_argument("--quiet", action="store_true", help="no live view, only the summary")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_data_dir_option(p)
    p.set_defaults(func=cmd_replay)


def parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'max'") from None
    if not speed > 0:
        raise argparse.ArgumentTypeError(f"speed must be positive, got {text}")
    return speed


def open_replay(spec_text: str, data_dir_option: str | None, **kwargs) -> ReplaySource:
    spec = parse_replay_spec(spec_text)
    dataset = get_dataset(spec.dataset)
    recordings = dataset.load_selection(resolve_data_dir(data_dir_option), spec.selector)
    return ReplaySource(recordings, stream=spec.text, **kwargs)


def cmd_replay(args) -> int:
    if args.chunk is not None and args.chunk < 1:
        raise UsageError(f"--chunk must be at least 1, got {args.chunk}")
    source = open_replay(args.source, args.data_dir, chunk_size=args.chunk, speed=args.speed, loop=args.loop)
    stats = StreamStats()
    view = LiveView(source, stats, enabled=not args.quiet)
    started = time.perf_counter()
    interrupted = stopped = False
    try:
        for chunk in source:
            now = time.perf_counter()
            stats.update(chunk, now)
            view.maybe_draw(now)
            if args.duration is not None and now - started >= args.duration:
                stopped = True
                break
    except KeyboardInterrupt:
        interrupted = True
    view.close()
    summary = stats.summary(args.speed)
    summary.update({
        "expected_samples": None if args.loop else source.total_samples,
        "complete": (not args.loop) and stats.samples == source.total_samples and stats.gaps == 0,
        "max_lag_ms": round(source.pacer.max_lag * 1e3, 3),
        "interrupted": interrupted,
        "stopped_by_duration": stopped,
    })
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(format_summary(summary, source))
    return 130 if interrupted else 0


def format_summary(s: dict, source: ReplaySource) -> str:
    speed = "max" if s["speed_requested"] is None else f"{s['speed_requested']:g}×"
    lines = [f"{s['stream']}: {s['samples']:,} samples in {s['chunks']:,} chunks from "
             f"{s['recordings']} recording(s), {len(source.channels)} channels at {source.rate:g} Hz"]
    if s["stopped_by_duration"] or s["interrupted"]:
        why = "--duration" if s["stopped_by_duration"] else "Ctrl-C"
        lines.append(f"  stopped by {why} after {s['samples']:,} of "
                     f"{s['expected_samples'] or source.total_samples:,} samples, sequence gaps: {s['sequence_gaps']}")
    elif s["expected_samples"] is not None:
        verdict = "every sample replayed" if s["complete"] else \
            f"INCOMPLETE: {s['expected_samples'] - s['samples']:,} samples not replayed"
        lines.append(f"  {verdict} ({s['expected_samples']:,} expected), sequence gaps: {s['sequence_gaps']}")
    if s["wall_seconds"]:
        lines.append(f"  {s['stream_seconds']:.2f} s of data in {s['wall_seconds']:.3f} s wall: "
                     f"{s['samples_per_second']:,.0f} samples/s, {s['realtime_factor']:,.2f}× real time "
                     f"(requested {speed})")
    if s["pace_error"] is not None:
        lines.append(f"  pace error {s['pace_error'] * 100:+.3f} %, worst lag {s['max_lag_ms']:.2f} ms")
    return "\n".join(lines)


class LiveView:
    """One status line: on a terminal redrawn in place 4× a second, in a log one line per 5 s."""

    def __init__(self, source: ReplaySource, stats: StreamStats, enabled: bool = True):
        self.source, self.stats = source, stats
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self.interval = 0.25 if self.tty else 5.0
        self._last = 0.0

    def maybe_draw(self, now: float) -> None:
        if not self.enabled or now - self._last < self.interval:
            return
        self._last = now
        s = self.stats
        label = self.source.class_names[s.last_label] if s.last_label >= 0 else "-"
        rate = f"{s.rate:,.0f}/s" if s.wall_span > 0 else "-"
        line = (f"{s.stream}  t={s.last_stream_t:8.1f} s  {s.samples:>10,} samples  {rate:>12}  "
                f"{s.realtime_factor if s.wall_span > 0 else 0:7.1f}× rt  "
                f"rec {s.recordings[-1]:<10} now: {label}")
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + line[:200])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
