"""A source from its spec and options: the pipeline's source stage opens sources here.

`open_source(cfg, speed, loop, data_dir)` gives a live source for `serial:PORT[?…]` and
`ble:PROFILE:ADDRESS_OR_NAME[?…]` (streamhar/sources/live.py), or a `ReplaySource` for `replay:NAME[:SELECTOR]`,
restricted to `cfg.channels` (fnmatch patterns over channel names, e.g. "T.*" for DSADS's torso
IMU) so one data set can be replayed as several sources. `late_start(chunks, start)` drops the
first `start` seconds of a chunk stream, keeping timestamps (a source that starts late) and
numbering the remaining chunks 0, 1, 2, … as a source that began there would.

`inject_faults(chunks, drop, nan)` damages a replay the way real sensors do, to test what the
pipeline does with it (as `tc netem` does for networks): `drop` = [[from_s, to_s], …] removes the
samples in those stretches of stream time (a dropout: the timestamps jump), `nan` = [[from_s,
to_s], …] turns every value in them into NaN (a sensor reporting garbage). Times are seconds after
the source's first sample.
"""
from __future__ import annotations

import dataclasses
import fnmatch
from typing import Iterator

import numpy as np

from streamhar.errors import UsageError
from streamhar.sources.chunk import Chunk
from streamhar.sources.replay import ReplaySource, parse_replay_spec


LIVE_KINDS = ("serial", "ble")


def is_live(spec: str) -> bool:
    return spec.split(":", 1)[0] in LIVE_KINDS


def open_source(cfg, speed: float | None, loop: bool, data_dir):
    """A `ReplaySource`, or a live source (`serial:` / `ble:`, streamhar/sources/live.py) already
    connected, so that its channels and rate are known before the pipeline starts."""
    kind = cfg.spec.split(":", 1)[0]
    if kind == "serial":
        from streamhar.sources.serial_source import SerialSource
        return SerialSource.from_spec(cfg.spec, stream=cfg.name or cfg.spec)
    if kind == "ble":
        from streamhar.sources.ble.source import BleSource
        return BleSource(cfg.spec, stream=cfg.name or cfg.spec, data_dir=data_dir or None)
    if kind != "replay":
        raise UsageError(f"source {cfg.spec!r}: expected replay:NAME[:SELECTOR], serial:PORT[?baud=N] "
                         "or ble:PROFILE:ADDRESS_OR_NAME")
    from streamhar.datasets import get_dataset
    from streamhar.datasets.paths import resolve_data_dir

    spec = parse_replay_spec(cfg.spec)
    options = {"task": cfg.task} if cfg.task else {}
    recordings = get_dataset(spec.dataset).load_selection(resolve_data_dir(data_dir or None), spec.selector,
                                                          **options)
    if cfg.channels:
        names = recordings[0].channel_names
        cols = [i for i, n in enumerate(names) if any(fnmatch.fnmatchcase(n, p) for p in cfg.channels)]
        if not cols:
            raise UsageError(f"source {cfg.spec!r}: no channel matches {cfg.channels}; channels are "
                             f"{', '.join(names[:8])}, …")
        recordings = [dataclasses.replace(r, samples=np.ascontiguousarray(r.samples[:, cols]),
                                          channels=tuple(r.channels[i] for i in cols)) for r in recordings]
    # Paced, chunks of 0.1 s (a BLE notification burst); unpaced, 1 s: per-message costs, not
    # samples, bound the throughput of a replay at full speed.
    chunk = cfg.chunk or (max(1, round(recordings[0].rate)) if speed is None else None)
    return ReplaySource(recordings, stream=cfg.name or cfg.spec, chunk_size=chunk, speed=speed, loop=loop)


def late_start(chunks: Iterator[Chunk], start: float) -> Iterator[Chunk]:
    """The chunks from stream time `start` on (seconds after the first sample), renumbered from 0."""
    if start <= 0:
        yield from chunks
        return
    t0, seq, first_pending = None, 0, True
    for c in chunks:
        if t0 is None:
            t0 = float(c.timestamps[0])
        keep = c.timestamps >= t0 + start
        if not keep.any():
            continue
        if not keep.all():
            i = int(np.argmax(keep))
            c = dataclasses.replace(c, timestamps=c.timestamps[i:], samples=c.samples[i:], labels=c.labels[i:])
        yield dataclasses.replace(c, seq=seq, first_of_recording=c.first_of_recording or first_pending)
        seq += 1
        first_pending = False


def inject_faults(chunks: Iterator[Chunk], drop=(), nan=()) -> Iterator[Chunk]:
    if not drop and not nan:
        yield from chunks
        return
    for spans, what in ((drop, "drop"), (nan, "nan")):
        for span in spans:
            if len(span) != 2 or not span[0] < span[1]:
                raise UsageError(f"source fault {what} = {span!r}: expected [from_s, to_s] with from_s < to_s")
    t0, seq, pending_first = None, 0, False
    for c in chunks:
        t0 = float(c.timestamps[0]) if t0 is None else t0
        rel = c.timestamps - t0
        keep = np.ones(len(c), bool)
        for a, b in drop:
            keep &= ~((rel >= a) & (rel < b))
        pending_first = pending_first or c.first_of_recording
        if not keep.any():
            continue
        x = c.samples[keep]
        for a, b in nan:
            hit = (rel[keep] >= a) & (rel[keep] < b)
            if hit.any():
                x[hit] = np.nan
        yield dataclasses.replace(c, seq=seq, timestamps=c.timestamps[keep], samples=x, labels=c.labels[keep],
                                  first_of_recording=pending_first)
        seq += 1
        pending_first = False
