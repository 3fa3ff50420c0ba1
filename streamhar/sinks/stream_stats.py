"""Running statistics of a chunk stream: counts, sequence gaps, achieved rate and pace.

`update(chunk, wall_time)` is pure bookkeeping (the caller supplies the clock), so the same object
serves the replay command's live view, tests and, later, every pipeline stage's summary.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from streamhar.sources.chunk import Chunk


@dataclass
class StreamStats:
    stream: str = ""
    samples: int = 0
    chunks: int = 0
    gaps: int = 0                 # sequence numbers skipped (chunks lost upstream)
    recordings: list[str] = field(default_factory=list)
    first_wall: float | None = None
    last_wall: float | None = None
    first_stream_t: float | None = None
    last_stream_t: float | None = None
    last_label: int = -1
    _next_seq: int = 0

    def update(self, chunk: Chunk, wall_time: float) -> None:
        if chunk.seq != self._next_seq:
            self.gaps += max(0, chunk.seq - self._next_seq)
        self._next_seq = chunk.seq + 1
        self.stream = chunk.stream
        self.samples += len(chunk)
        self.chunks += 1
        if not self.recordings or self.recordings[-1] != chunk.recording_id:
            self.recordings.append(chunk.recording_id)
        if self.first_wall is None:
            self.first_wall, self.first_stream_t = wall_time, float(chunk.timestamps[-1])
        self.last_wall, self.last_stream_t = wall_time, float(chunk.timestamps[-1])
        self.last_label = int(chunk.labels[-1])

    @property
    def wall_span(self) -> float:
        return 0.0 if self.first_wall is None else self.last_wall - self.first_wall

    @property
    def stream_span(self) -> float:
        return 0.0 if self.first_stream_t is None else self.last_stream_t - self.first_stream_t

    @property
    def rate(self) -> float:
        """Samples per wall second, counted between the first and last chunk released."""
        return self.samples / self.wall_span if self.wall_span > 0 else float("inf")

    @property
    def realtime_factor(self) -> float:
        """Stream seconds delivered per wall second (1.0 = real time)."""
        return self.stream_span / self.wall_span if self.wall_span > 0 else float("inf")

    def pace_error(self, speed: float | None) -> float | None:
        """Relative deviation of the achieved speed from the requested one (None when unpaced)."""
        if speed is None or self.wall_span <= 0:
            return None
        return self.realtime_factor / speed - 1.0

    def summary(self, speed: float | None = None) -> dict:
        return {
            "stream": self.stream, "samples": self.samples, "chunks": self.chunks,
            "sequence_gaps": self.gaps, "recordings": len(self.recordings),
            "stream_seconds": round(self.stream_span, 6), "wall_seconds": round(self.wall_span, 6),
            "samples_per_second": round(self.rate, 1) if self.wall_span > 0 else None,
            "realtime_factor": round(self.realtime_factor, 4) if self.wall_span > 0 else None,
            "speed_requested": speed,
            "pace_error": None if self.pace_error(speed) is None else round(self.pace_error(speed), 6),
        }
