"""The windowing stage: chunks of one or more sources in, normalized model windows out.

A small object with a pure step, in the style of a Timeflux node — no sockets, threads or clocks:

    stage = WindowStage(load_bundle("bundled:usc-had"), [SourceInfo.of(replay)])
    for chunk in replay.chunks():
        for batch in stage.process(chunk):   # every window complete with this chunk, at once
            model(batch.x)
    stage.flush()                           # end of stream: count what is left, start afresh
    stage.stats                             # StageStats: every repaired, lost or dropped sample

`WindowStage(model, sources, stride=None)`: `model` is a `Bundle` (window, stride, rate, channels,
units from its meta; `Bundle.normalize`) or a meta dict with optional `mean` / `std`. `sources`
lists a `SourceInfo(name, channels, units, rate)` per input stream; a chunk's `stream` names its
source. Each of the model's channels is taken from the first source that has it, converted to
the model's unit (`units.py`: g ↔ m/s^2, dps ↔ rad/s, …; live sources deliver SI); a channel no
source has, a unit with no known conversion, or a source that gives no channel is a `UsageError`.

`process(chunk)` returns a list of `WindowBatch` (x float32 [N, C, L] normalized in the model's
channel order, labels int16 [N], t_first / t_last float64 [N], recording_id, seq int64 [N]); one
batch per stretch of windows, [] when the chunk completes none.

Policies (each counted in `stats`):
- Grid: windows live on the model's sample grid, index k at time k / rate (`t_first`, `t_last`
  are grid times). A source at the model's rate is placed sample by sample: a segment's first
  sample goes to round(t × rate), the next ones follow; its nominal rate is trusted.
- Resampling: a source at another rate is filtered and interpolated onto the grid
  (`windowing/resample.py`: FIR with carried `zi`, group delay compensated in the timestamps).
- Windowing equals `make_windows`: windows start at a segment's first grid index, then every
  `stride`; label = the label of the window's last sample, taken from the first source.
- Restarts: a new recording (`first_of_recording`, or another `recording_id`), a timestamp step
  larger than 1.5 sample periods, or a missing `seq` ends the segment; windowing restarts after it
  and no window straddles it. A gap counts in `gaps`, the samples it lost (estimated from the
  timestamps) in `samples_lost`, the windows it cost in `windows_dropped` (starts of the old
  stride sequence that fall before the restart point).
- NaN / inf: a non-finite value is replaced by the last finite value of its channel in the same
  recording (before the first one: the model's mean, i.e. 0 once normalized); `samples_repaired`
  counts the samples, `values_repaired` the values.
- Alignment: several sources are aligned by grid index; a window is emitted only when every
  source covers it. Samples are held while a source lags; those before the common start (a source
  that starts late) or in no window are dropped and counted: after `flush`, per source,
  samples_windowed + samples_dropped = grid_samples.
- Bad input (unknown source, wrong channel count or shape, timestamps not strictly increasing,
  seq not increasing) raises `StreamFormatError` / `UsageError` naming the source, the seq and
  what was expected; the stage's state is unchanged by the rejected chunk.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from streamhar.errors import StreamharError, UsageError
from streamhar.sources.chunk import Chunk
from streamhar.windowing import units
from streamhar.windowing.align import Aligner
from streamhar.windowing.resample import Resampler

GAP_PERIODS = 1.5   # a timestamp step above this many sample periods is a gap


class StreamFormatError(StreamharError):
    """A chunk that breaks the stream contract (shape, timestamps, sequence)."""


@dataclass(frozen=True)
class SourceInfo:
    name: str
    channels: tuple[str, ...]
    units: tuple[str, ...]
    rate: float

    @classmethod
    def of(cls, source, name: str | None = None) -> "SourceInfo":
        """From anything with `stream`/`channels` (Channel objects) and `rate`, e.g. a ReplaySource."""
        return cls(name or source.stream, tuple(c.name for c in source.channels),
                   tuple(c.unit for c in source.channels), float(source.rate))


@dataclass
class WindowBatch:
    x: np.ndarray          # float32 [N, C, L], normalized, model channel order
    labels: np.ndarray     # int16 [N], label of each window's last sample (-1 unknown)
    t_first: np.ndarray    # float64 [N], grid time of the first sample
    t_last: np.ndarray     # float64 [N], grid time of the last sample
    recording_id: str
    seq: np.ndarray        # int64 [N], running window number since the stage was made

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class SourceStats:
    samples_in: int = 0         # samples received
    grid_samples: int = 0       # samples placed on the model grid (after resampling)
    samples_repaired: int = 0   # samples with a non-finite value held from the last valid one
    values_repaired: int = 0
    gaps: int = 0               # timestamp gaps and missing seqs
    samples_lost: int = 0       # samples the gaps lost, estimated from the timestamps
    recordings: int = 0         # recordings (segments after a first_of_recording) seen
    samples_windowed: int = 0   # grid samples in at least one emitted window
    samples_dropped: int = 0    # grid samples discarded without being in any window


@dataclass
class StageStats:
    windows_out: int = 0
    windows_dropped: int = 0
    sources: dict[str, SourceStats] = field(default_factory=dict)

    def total(self, counter: str) -> int:
        return sum(getattr(s, counter) for s in self.sources.values())


class _Input:
    """Per-source stream state: what the next chunk is checked and continued against."""

    def __init__(self, info: SourceInfo, cols: list[int], model_rate: float, scales: list[float]):
        self.info = info
        self.cols = np.asarray(cols, np.int64)
        self.all_cols = cols == list(range(len(info.channels)))     # every channel, in order: no gather
        # None when every channel is already in the model's unit (replays): no multiply at all
        self.scale = None if all(f == 1.0 for f in scales) else np.asarray(scales, np.float32)
        self.period = 1.0 / info.rate
        same_rate = abs(info.rate - model_rate) <= 1e-9 * model_rate
        self.resampler = None if same_rate else Resampler(info.rate, model_rate)
        self.reset()

    def reset(self) -> None:
        self.last_t: float | None = None
        self.last_seq: int | None = None
        self.last_rec: str | None = None
        self.last_k: int | None = None
        self.hold = np.full(len(self.cols), np.nan, np.float32)


class WindowStage:
    def __init__(self, model, sources: Sequence[SourceInfo], *, stride: int | None = None,
                 mean: np.ndarray | None = None, std: np.ndarray | None = None):
        meta = model.meta if hasattr(model, "meta") else dict(model)
        self._bundle = model if hasattr(model, "normalize") else None
        where = getattr(model, "path", "") or f"for {meta.get('dataset', 'the model')}"
        self.rate = float(meta["rate"])
        self.length = int(meta["window"])
        self.stride = int(stride if stride is not None else meta["stride"])
        if self.length < 1 or self.stride < 1:
            raise UsageError(f"window length and stride must be ≥ 1, got {self.length}, {self.stride}")
        self.channels = list(meta["channels"])
        n = len(self.channels)
        self.mean = np.asarray(mean if mean is not None else getattr(model, "mean", np.zeros(n)), np.float32)
        self.std = np.asarray(std if std is not None else getattr(model, "std", np.ones(n)), np.float32)
        if not sources:
            raise UsageError("window stage: no source given")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise UsageError(f"window stage: source names must be unique, got {names}")

        # Channel mapping: each model channel from the first source that has it.
        cols: list[list[int]] = [[] for _ in sources]
        rows: list[list[int]] = [[] for _ in sources]
        scales: list[list[float]] = [[] for _ in sources]
        for row, (name, unit) in enumerate(zip(meta["channels"], meta["units"])):
            owner = next((i for i, s in enumerate(sources) if name in s.channels), None)
            if owner is None:
                have = "; ".join(f"{s.name}: {', '.join(s.channels[:6])}{', …' if len(s.channels) > 6 else ''}"
                                 for s in sources)
                raise UsageError(f"no source has channel {name!r} that model {where} expects ({have})")
            src = sources[owner]
            i = src.channels.index(name)
            if len(src.units) != len(src.channels):
                raise UsageError(f"source {src.name!r}: {len(src.units)} units for {len(src.channels)} channels")
            f = units.factor(src.units[i], unit)
            if f is None:
                raise UsageError(f"source {src.name!r}: channel {name!r} is in {src.units[i]!r}, "
                                 f"model {where} expects {unit!r} (no known conversion)")
            cols[owner].append(i)
            scales[owner].append(f)
            rows[owner].append(row)
        for s, c in zip(sources, cols):
            if not c:
                raise UsageError(f"source {s.name!r} gives none of the channels model {where} expects")
            if not s.rate > 0:
                raise UsageError(f"source {s.name!r}: rate must be > 0, got {s.rate}")

        self.sources = list(sources)
        self._index = {s.name: i for i, s in enumerate(sources)}
        self._inputs = [_Input(s, c, self.rate, f) for s, c, f in zip(sources, cols, scales)]
        self._fill = [self.mean[np.asarray(r)] for r in rows]   # NaN before any valid value
        self.stats = StageStats(sources={s.name: SourceStats() for s in sources})
        self._src_stats = [self.stats.sources[s.name] for s in sources]
        self._aligner = Aligner([np.asarray(r) for r in rows], self.length, self.stride, self._src_stats, n)
        self._window_seq = 0

    # -- the step -----------------------------------------------------------------------------
    def process(self, chunk: Chunk) -> list[WindowBatch]:
        s, steps = self._check(chunk)
        if len(chunk):
            self._ingest(s, chunk, steps)
        self._inputs[s].last_seq = chunk.seq
        return self._batches(self._aligner.emit())

    def flush(self) -> StageStats:
        """End of stream: windows need no more data, so none comes out; what is held is dropped
        (counted) and the stage starts afresh, its stats kept."""
        self._aligner.close_all("end")
        self._batches(self._aligner.emit())   # closes the last combined run; emits nothing new
        self._aligner.drop_all()
        self.stats.windows_dropped = self._aligner.windows_dropped
        for inp in self._inputs:
            inp.reset()
            if inp.resampler is not None:
                inp.resampler.reset()
        return self.stats

    # -- internals ----------------------------------------------------------------------------
    def _check(self, chunk: Chunk) -> tuple[int, np.ndarray]:
        """Validate a chunk without touching any state; the source's index and the chunk's
        timestamp steps (which `_ingest` needs too)."""
        s = self._index.get(chunk.stream)
        if s is None:
            raise UsageError(f"chunk seq {chunk.seq} from unknown source {chunk.stream!r}; "
                             f"this stage reads {', '.join(repr(n) for n in self._index)}")
        inp = self._inputs[s]
        where = f"source {chunk.stream!r}, chunk seq {chunk.seq}"
        x, t, y = chunk.samples, chunk.timestamps, chunk.labels
        width = len(inp.info.channels)
        if x.ndim != 2 or x.shape[1] != width:
            raise StreamFormatError(f"{where}: samples of shape {x.shape}, expected [n, {width}] "
                                    f"({', '.join(inp.info.channels[:6])}{', …' if width > 6 else ''})")
        if t.shape != (x.shape[0],) or y.shape != (x.shape[0],):
            raise StreamFormatError(f"{where}: timestamps {t.shape} / labels {y.shape} do not match "
                                    f"{x.shape[0]} samples")
        if inp.last_seq is not None and chunk.seq <= inp.last_seq:
            raise StreamFormatError(f"{where}: seq not increasing (previous chunk was seq {inp.last_seq}); "
                                    "chunks repeated or out of order")
        steps = np.diff(np.asarray(t, np.float64))     # in float64, as `_ingest` compares them
        if len(t):
            # strictly increasing with finite ends ⇒ every timestamp finite (a NaN fails `> 0`)
            if not ((steps > 0).all() and math.isfinite(t[0]) and math.isfinite(t[-1])):
                if not np.isfinite(t).all():
                    raise StreamFormatError(f"{where}: non-finite timestamp")
                i = int(np.flatnonzero(steps <= 0)[0]) + 1
                raise StreamFormatError(f"{where}: timestamps not strictly increasing: sample {i} at "
                                        f"t={t[i]!r} after t={t[i - 1]!r}")
            if inp.last_t is not None and t[0] <= inp.last_t:
                raise StreamFormatError(f"{where}: starts at t={t[0]!r}, expected after the previous "
                                        f"chunk's last timestamp t={inp.last_t!r}")
        return s, steps

    def _ingest(self, s: int, chunk: Chunk, steps: np.ndarray) -> None:
        inp, st = self._inputs[s], self._src_stats[s]
        t = np.asarray(chunk.timestamps, np.float64)
        n = len(t)
        st.samples_in += n
        rate = inp.info.rate
        new_rec = inp.last_rec is None or chunk.first_of_recording or chunk.recording_id != inp.last_rec
        restart = "recording" if new_rec else None
        if inp.last_t is not None:
            dt = t[0] - inp.last_t
            seq_skip = inp.last_seq is not None and chunk.seq != inp.last_seq + 1
            if seq_skip or (dt > GAP_PERIODS * inp.period and not new_rec):
                st.gaps += 1
                st.samples_lost += max(0, round(dt * rate) - 1)
                restart = restart or "gap"
        if new_rec:
            st.recordings += 1
            inp.hold[:] = np.nan    # never carry a value into another recording
        inner = np.flatnonzero(steps > GAP_PERIODS * inp.period) + 1
        if len(inner):
            st.gaps += len(inner)
            st.samples_lost += int(sum(max(0, round((t[i] - t[i - 1]) * rate) - 1) for i in inner))
        x = chunk.samples if inp.all_cols else chunk.samples[:, inp.cols]
        x = x.astype(np.float32, copy=False)
        if inp.scale is not None:
            x = x * inp.scale
        x = self._repair(s, x)
        y = np.asarray(chunk.labels, np.int16)
        bounds = [0, *inner.tolist(), n]
        for i in range(len(bounds) - 1):
            a, b = bounds[i], bounds[i + 1]
            self._feed(s, t[a:b], x[a:b], y[a:b], chunk.recording_id, restart if i == 0 else "gap")
        inp.last_t = float(t[-1])
        inp.last_rec = chunk.recording_id

    def _repair(self, s: int, x: np.ndarray) -> np.ndarray:
        """Hold each channel's last finite value over NaN / inf (why: one bad reading must not
        poison a whole window, nor the resampling filter's state)."""
        inp, st = self._inputs[s], self._src_stats[s]
        finite = np.isfinite(x)
        if finite.all():
            inp.hold = x[-1].copy()
            return x
        bad = ~finite
        st.samples_repaired += int(bad.any(axis=1).sum())
        st.values_repaired += int(bad.sum())
        cols = np.arange(x.shape[1])
        last = np.maximum.accumulate(np.where(bad, -1, np.arange(len(x))[:, None]), axis=0)  # -1: none yet
        carry = np.where(np.isnan(inp.hold), self._fill[s], inp.hold)
        x = np.where(last >= 0, x[np.maximum(last, 0), cols], carry[None, :]).astype(np.float32)
        # The hold is the last *measured* value; the mean filled in before one must not become it.
        inp.hold = np.where(last[-1] >= 0, x[-1], inp.hold).astype(np.float32)
        return x

    def _feed(self, s: int, t, x, y, recording_id: str, restart: str | None) -> None:
        inp, st = self._inputs[s], self._src_stats[s]
        if restart is not None:
            self._aligner.close(s, restart)
            inp.last_k = None
            if inp.resampler is not None:
                inp.resampler.reset()
        if inp.resampler is not None:
            k0, x, y = inp.resampler.process(t, x, y)
            if not len(x):
                return
        else:
            k0 = round(float(t[0]) * self.rate) if inp.last_k is None else inp.last_k + 1
        k0 = self._aligner.append(s, k0, recording_id, x, y)
        inp.last_k = k0 + len(x) - 1
        st.grid_samples += len(x)

    def _batches(self, cuts: list[tuple]) -> list[WindowBatch]:
        out = []
        for x, labels, starts, recording_id in cuts:
            if self._bundle is not None:
                x = self._bundle.normalize(x)
            else:
                x = ((x - self.mean[None, :, None]) / self.std[None, :, None]).astype(np.float32)
            n = len(labels)
            seq = np.arange(self._window_seq, self._window_seq + n, dtype=np.int64)
            self._window_seq += n
            self.stats.windows_out += n
            out.append(WindowBatch(x, labels, starts / self.rate, (starts + self.length - 1) / self.rate,
                                   recording_id, seq))
        self.stats.windows_dropped = self._aligner.windows_dropped
        return out


# ---------------------------------------------------------------------------------- device-tier windows
# A device that runs the narrow width itself (serial `stream=cascade|both`, docs/PROTOCOL.md
# DEVICE_RESULT / UNCERTAIN) cuts its windows from its own sensor: the window stage only numbers,
# checks and counts them. Their int8 input is the device's own (`ops.quantize_raw_i16`), so the
# host must not window, normalize or quantize anything of such a source again.

@dataclass
class DeviceWindowBatch:
    """Windows a device ran its narrow width on. Committed ones carry the device's result only;
    uncertain ones (margin ≤ the device's threshold) also their int8 input for the host's full width."""
    window_id: np.ndarray     # int64 [N] the device's running window number
    t_last: np.ndarray        # float64 [N] host time of each window's last sample
    classes: np.ndarray       # int16 [N] the narrow width's class
    margins: np.ndarray       # int64 [N] its integer margin (1/logit_scale)
    logits: np.ndarray        # int32 [N, K] its logits
    uncertain: np.ndarray     # bool [N] not committed on the device: the host's full width answers
    x: np.ndarray             # int8 [M, C, L] the uncertain windows' input, in order (M = uncertain.sum())
    recording_id: str
    seq: np.ndarray | None = None      # int64 [N] the window stage's running window number
    labels: np.ndarray | None = None   # int16 [N] ground truth; a device has none (−1)

    def __post_init__(self) -> None:
        n = len(self.window_id)
        if self.seq is None:
            self.seq = np.full(n, -1, np.int64)
        if self.labels is None:
            self.labels = np.full(n, -1, np.int16)

    def __len__(self) -> int:
        return len(self.window_id)

    def check(self, where: str, channels: int | None = None, length: int | None = None) -> None:
        """Raises StreamFormatError naming `where` unless the arrays fit together (and the model)."""
        n = len(self.window_id)
        flat = {k: getattr(self, k) for k in ("window_id", "t_last", "classes", "margins", "uncertain", "seq",
                                              "labels")}
        bad = [f"{k} {list(v.shape)}" for k, v in flat.items() if v.shape != (n,)]
        if bad:
            raise StreamFormatError(f"{where}: expected [{n}] per-window arrays, got {', '.join(bad)}")
        if self.logits.ndim != 2 or self.logits.shape[0] != n or self.logits.shape[1] < 1:
            raise StreamFormatError(f"{where}: expected logits [{n}, K], got {list(self.logits.shape)}")
        k = self.logits.shape[1]
        if n and (self.classes.min() < 0 or self.classes.max() >= k):
            raise StreamFormatError(f"{where}: a class outside 0 … {k - 1} (the logits' classes)")
        m = int(np.count_nonzero(self.uncertain))
        want = [m, channels if channels is not None else "C", length if length is not None else "L"]
        x = self.x
        if x.dtype != np.int8 or x.ndim != 3 or x.shape[0] != m or (channels is not None and x.shape[1] != channels) \
                or (length is not None and x.shape[2] != length):
            raise StreamFormatError(f"{where}: expected the {m} uncertain window(s) as int8 "
                                    f"[{', '.join(map(str, want))}], got {x.dtype} {list(x.shape)}")


@dataclass
class DeviceSourceStats:
    windows_in: int = 0        # device windows received
    committed: int = 0         # answered on the device
    uncertain: int = 0         # sent on for the host's full width
    windows_lost: int = 0      # window ids never received, less those in dropped messages (counted there)
    id_gaps: int = 0           # how many times ids were missing
    restarts: int = 0          # the device restarted its numbering (reset) or a new recording began
    samples_ignored: int = 0   # samples the source also streamed (stream=both): not windowed again


class DevicePassThrough:
    """The window stage's step for device-tier sources: numbers device windows in the stage's window
    sequence, checks them against the model's input shape and counts gaps in their window ids as
    windows lost (those in messages dropped on the way, `dropped_before`, are counted where they
    were dropped, not again). Pure: no sockets, no clocks."""

    def __init__(self, channels: int, length: int, sources: Sequence[str]):
        self.channels, self.length = int(channels), int(length)
        self.sources = {s: DeviceSourceStats() for s in sources}
        self._last: dict[str, tuple[str, int]] = {}     # stream → (recording, last window_id)
        self.windows_out = 0

    @property
    def windows_lost(self) -> int:
        return sum(s.windows_lost for s in self.sources.values())

    def _stats(self, stream: str, where: str) -> DeviceSourceStats:
        st = self.sources.get(stream)
        if st is None:
            raise UsageError(f"{where}: {stream!r} is not a device-tier source of this stage "
                             f"({', '.join(self.sources) or 'none'})")
        return st

    def ignore_samples(self, stream: str, n: int) -> None:
        """Samples a device-tier source streams as well (stream=both) are counted, not windowed:
        its windows come from the device, and windowing them again would give each span twice."""
        self._stats(stream, f"samples of source {stream!r}").samples_ignored += int(n)

    def process(self, batch: DeviceWindowBatch, stream: str, dropped_before: int = 0,
                where: str = "") -> DeviceWindowBatch:
        """The batch numbered (seq) and counted; `dropped_before`: windows of this stream in messages
        dropped since its previous one. A bad batch raises and changes nothing."""
        where = where or f"device windows of source {stream!r}"
        st = self._stats(stream, where)
        batch.check(where, self.channels, self.length)
        ids = np.asarray(batch.window_id, np.int64)
        last = self._last.get(stream)
        restarts = lost = gaps = 0
        prev = last[1] if last is not None and last[0] == batch.recording_id else None
        if last is not None and prev is None:
            restarts += 1                      # a new recording: its numbering starts afresh
        unexplained = int(dropped_before)
        for k in ids.tolist():
            if prev is not None and k <= prev:
                restarts += 1                  # numbering went back: the device restarted its stream
            elif prev is not None and k > prev + 1:
                missing = k - prev - 1 - unexplained
                if missing > 0:
                    gaps += 1
                    lost += missing
            unexplained = 0                    # dropped messages lie before the batch's first window only
            prev = k
        n = len(ids)
        batch.seq = np.arange(self.windows_out, self.windows_out + n, dtype=np.int64)
        self.windows_out += n
        if n:
            self._last[stream] = (batch.recording_id, int(ids[-1]))
        unc = int(np.count_nonzero(batch.uncertain))
        st.windows_in += n
        st.uncertain += unc
        st.committed += n - unc
        st.windows_lost += lost
        st.id_gaps += gaps
        st.restarts += restarts
        return batch
