"""The pipeline file: sources, bundle, endpoints, modes — every field has a default.

A TOML file (docs/PIPELINE.md shows one with every field), e.g.

    bundle = "bundled:dsads"         # default "auto": the bundled model of the first source's data set
    mode = "lossless"                # or "bounded"; default: lossless for replays, bounded for live sources
    speed = "max"                    # replays: multiple of real time or "max"

    [[sources]]
    spec = "replay:dsads:p6"
    channels = ["T.*", "RA.*"]       # optional: a subset (fnmatch patterns), e.g. one IMU per source
    start = 2.0                      # optional: begin this many seconds into the stream (a late source)

    [endpoints]                      # default: ipc sockets in a private folder (`streamhar run`)
    windows = "tcp://127.0.0.1:5552"

    [sink]
    jsonl = "predictions.jsonl"
    publish = "tcp://127.0.0.1:5557"

The same file drives `streamhar run` and each `streamhar stage NAME`, so stages spread over
machines agree on endpoints. Unknown keys are an error naming the file and the key (a typo must
not silently become a default). Endpoints bind to loopback unless the file says otherwise.
"""
from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from streamhar.errors import UsageError

MODES = ("lossless", "bounded")
# Standalone stages (`streamhar stage`) need fixed addresses; `streamhar run` uses ipc instead.
TCP_DEFAULTS = {"chunks": "tcp://127.0.0.1:5551", "windows": "tcp://127.0.0.1:5552",
                "predictions": "tcp://127.0.0.1:5553", "control": "tcp://127.0.0.1:5554",
                "status": "tcp://127.0.0.1:5555", "ctl": "tcp://127.0.0.1:5556"}


@dataclass
class SourceConfig:
    spec: str                               # replay:NAME[:SELECTOR]
    name: str = ""                          # stream name; default the spec (made unique)
    channels: list[str] = field(default_factory=list)   # fnmatch patterns; [] = all
    start: float = 0.0                      # seconds of stream skipped at the start
    delay: float = 0.0                      # wall seconds waited before the first chunk
    chunk: int = 0                          # samples per chunk; 0 = 0.1 s worth (1 s at speed max)
    task: str = ""                          # OPPORTUNITY label track; "" = the model's (locomotion)
    drop: list[list[float]] = field(default_factory=list)   # fault injection: [[from_s, to_s]] removed
    nan: list[list[float]] = field(default_factory=list)    # fault injection: [[from_s, to_s]] set to NaN


@dataclass
class Endpoints:
    chunks: str = ""        # sources PUSH → window stage PULL (binds)
    windows: str = ""       # window stage PUSH (binds) → inference workers PULL
    predictions: str = ""   # inference workers PUSH → sink PULL (binds)
    control: str = ""       # supervisor PUB (binds) → every stage SUB: threshold, start
    status: str = ""        # every stage PUSH → supervisor PULL (binds): counters, errors
    ctl: str = ""           # `streamhar ctl` REQ → supervisor REP (binds)


@dataclass
class SinkConfig:
    view: bool = True                # live terminal view
    jsonl: str = ""                  # one JSON object per window to this file
    publish: str = ""                # ZeroMQ PUB endpoint for other programs ("" = none)
    summary_json: str = ""           # the exit summary as JSON
    throttle_ms: float = 0.0         # sleep per window received: simulates a slow consumer (tests, demos)


@dataclass
class PipelineConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    bundle: str = "auto"
    mode: str = ""                   # "" = lossless for replays, bounded for live sources
    speed: float | None = 1.0        # None = as fast as possible
    loop: bool = False
    duration: float = 0.0            # stop after this many wall seconds (0 = at the end of the data)
    workers: int = 1                 # inference workers behind PUSH/PULL
    threshold: str = ""              # cascade threshold; "" = the model's stored default
    engine: str = "auto"             # "c", "numpy" or "auto"
    realtime: bool = False           # sources, window and inference: SCHED_FIFO on one core (pipeline/realtime.py)
    realtime_cpu: int = -1           # that core; -1 = the highest one this process may use
    idle_poll: bool = False          # with realtime: keep that core out of idle (pipeline/wakeup.py)
    hwm: int = 1000                  # ZeroMQ high-water mark of every data socket (messages)
    queue: int = 64                  # bounded mode: messages a stage holds before dropping the oldest
    data_dir: str = ""
    endpoints: Endpoints = field(default_factory=Endpoints)
    sink: SinkConfig = field(default_factory=SinkConfig)

    def validate(self) -> "PipelineConfig":
        if not self.sources:
            raise UsageError("pipeline: no source given")
        if self.mode == "":
            self.mode = "lossless" if all(s.spec.startswith("replay:") for s in self.sources) else "bounded"
        if self.mode not in MODES:
            raise UsageError(f"pipeline: mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.workers < 1 or self.hwm < 1 or self.queue < 1:
            raise UsageError("pipeline: workers, hwm and queue must be ≥ 1")
        if self.speed is not None and not self.speed > 0:
            raise UsageError(f"pipeline: speed must be positive or 'max', got {self.speed}")
        if self.realtime and self.speed is None and any(s.spec.startswith("replay:") for s in self.sources):
            raise UsageError("pipeline: realtime = true is for real-time pace (a replay at a finite --speed, or "
                             "live sources); at --speed max the stages would hold the cores at real-time "
                             "priority for nothing")
        if self.idle_poll and not self.realtime:
            raise UsageError("pipeline: idle_poll = true keeps the realtime core awake; set realtime = true too "
                             "(streamhar run --idle-poll sets both)")
        seen: dict[str, int] = {}
        for s in self.sources:
            base = s.name or s.spec
            seen[base] = seen.get(base, 0) + 1
            s.name = base if seen[base] == 1 else f"{base}#{seen[base]}"
        return self

    def with_tcp_defaults(self) -> "PipelineConfig":
        for key, value in TCP_DEFAULTS.items():
            if not getattr(self.endpoints, key):
                setattr(self.endpoints, key, value)
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)


def _build(cls, data: dict, where: str):
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(names)}")
    kwargs = {}
    for key, value in data.items():
        if key == "sources":
            if not isinstance(value, list):
                raise UsageError(f"{where}: 'sources' must be a list of tables ([[sources]])")
            value = [_build(SourceConfig, v if isinstance(v, dict) else {"spec": v}, f"{where} [[sources]]")
                     for v in value]
        elif key == "endpoints":
            value = _build(Endpoints, value, f"{where} [endpoints]")
        elif key == "sink":
            value = _build(SinkConfig, value, f"{where} [sink]")
        elif key == "speed":
            value = parse_speed(value, where)
        kwargs[key] = value
    return cls(**kwargs)


def parse_speed(value, where: str = "speed") -> float | None:
    if value in ("max", None):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}: speed must be a number or 'max', got {value!r}") from None


def load_config(path: str | Path | None) -> PipelineConfig:
    """A pipeline file (TOML, or the JSON `streamhar run` hands its children); None = all defaults."""
    if path is None:
        return PipelineConfig()
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise UsageError(f"pipeline file {path}: cannot read it ({e.strerror})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise UsageError(f"pipeline file {path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from None
    return _build(PipelineConfig, data, f"pipeline file {path}")
