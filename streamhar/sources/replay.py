"""Replay of recorded data sets as a live-like stream.

`ReplaySource` turns recordings into chunks in recording order. `chunks()` is the pure part: the
same recordings give the same chunks, bit for bit. Iterating the source paces them to the wall
clock (`speed` × real time; `None` = as fast as possible). A chunk is released when its last
sample would have been measured, as a sensor delivers data. Recordings follow each other on one
stream clock (the next starts one sample period after the previous ends), and with `loop` the
whole selection repeats, the clock still running forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

from streamhar.errors import UsageError
from streamhar.recording import Channel, Recording
from streamhar.sources.chunk import Chunk
from streamhar.sources.pacing import Pacer


@dataclass(frozen=True)
class ReplaySpec:
    dataset: str
    selector: str | None

    @property
    def text(self) -> str:
        return f"replay:{self.dataset}" + (f":{self.selector}" if self.selector else "")


def parse_replay_spec(spec: str) -> ReplaySpec:
    """`replay:NAME[:SELECTOR]`, e.g. `replay:dsads:p6`, `replay:usc-had:12`, `replay:opportunity`."""
    parts = spec.split(":", 2)
    if parts[0] != "replay" or len(parts) < 2 or not parts[1]:
        raise UsageError(f"source {spec!r}: expected replay:NAME[:SELECTOR], e.g. replay:usc-had:11")
    return ReplaySpec(parts[1], parts[2] if len(parts) > 2 and parts[2] else None)


class ReplaySource:
    def __init__(self, recordings: Sequence[Recording], *, stream: str = "replay",
                 chunk_size: int | None = None, speed: float | None = None, loop: bool = False):
        if not recordings:
            raise UsageError(f"{stream}: nothing to replay (no recording selected)")
        first = recordings[0]
        for rec in recordings[1:]:
            if rec.channel_names != first.channel_names or rec.rate != first.rate:
                raise UsageError(f"{stream}: recording {rec.id} has other channels or rate than {first.id}")
        self.recordings = list(recordings)
        self.stream = stream
        self.rate = first.rate
        self.channels: tuple[Channel, ...] = first.channels
        self.class_names = first.class_names
        # Default: 0.1 s of data per chunk, the granularity of a BLE notification burst.
        self.chunk_size = chunk_size or max(1, round(self.rate / 10))
        if self.chunk_size < 1:
            raise UsageError(f"chunk size must be ≥ 1, got {chunk_size}")
        self.speed = speed
        self.loop = loop

    @property
    def total_samples(self) -> int:
        return sum(len(r) for r in self.recordings)

    def chunks(self) -> Iterator[Chunk]:
        """All chunks in order, unpaced; endless when looping."""
        seq = 0
        offset = 0.0
        period = 1.0 / self.rate
        while True:
            for rec in self.recordings:
                t = rec.timestamps - rec.timestamps[0] + offset
                for start in range(0, len(rec), self.chunk_size):
                    stop = min(start + self.chunk_size, len(rec))
                    yield Chunk(self.stream, seq, rec.id, t[start:stop], rec.samples[start:stop],
                                rec.labels[start:stop], first_of_recording=start == 0)
                    seq += 1
                offset = float(t[-1]) + period
            if not self.loop:
                return

    def __iter__(self) -> Iterator[Chunk]:
        pacer = Pacer(self.speed)
        self.pacer = pacer
        for chunk in self.chunks():
            pacer.wait_until(float(chunk.timestamps[-1]))
            yield chunk

