"""The device-tier cascade in the pipeline: which sources run it, and the source stage's half.

A serial source opened with `stream=cascade|both` is *device-tier*: its board windows its own
sensor data and runs the narrow width itself, sending only the windows it is unsure of (with their
int8 input) and the results of the others (docs/PROTOCOL.md DEVICE_RESULT / UNCERTAIN). In the
pipeline (docs/PIPELINE.md "Device-tier cascade"):

- the source stage forwards each device window as a "device" message on the chunks socket
  (`DeviceWindowSender`), and in `both` mode its samples as usual;
- the window stage passes device windows through, numbered (`windowing.stage.DevicePassThrough`),
  and counts the samples of such a source without windowing them again: per source, windows come
  either from its samples (host tier) or from its device, never both;
- the inference stage answers uncertain windows with the full width alone and keeps the device's
  answer for the others (`InferStage.process_device`);
- `streamhar ctl threshold N` reaches the device (SET_THRESHOLD from the source stage): its
  threshold decides the split now.

A device's windows hold every channel of its model, so device-tier sources are not aligned with
sources the host windows; a pipeline has one kind or the other.
"""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np

from streamhar.errors import UsageError
from streamhar.pipeline.threshold import device_threshold
from streamhar.transport import messages as m

DEVICE_STREAMS = ("cascade", "both")


def is_device_tier(spec: str) -> bool:
    """Whether a source spec asks its device to run the narrow width (`serial:…?stream=cascade|both`)."""
    if not spec.startswith("serial:"):
        return False
    from streamhar.sources.serial_source import parse_serial_spec
    return parse_serial_spec(spec).stream in DEVICE_STREAMS


def device_sources(cfg) -> list[str]:
    """Names of the pipeline's device-tier sources; a UsageError for a pipeline that cannot run."""
    dev = [s for s in cfg.sources if is_device_tier(s.spec)]
    if not dev:
        return []
    host = [s.name or s.spec for s in cfg.sources if not is_device_tier(s.spec)]
    names = [s.name or s.spec for s in dev]
    if host:
        raise UsageError(f"device-tier source(s) {', '.join(names)} cannot be combined with source(s) the host "
                         f"windows ({', '.join(host)}): a device's windows already hold every channel of its "
                         "model. Run them as separate pipelines, or use stream=samples.")
    for s in dev:
        if s.start or s.drop or s.nan:
            raise UsageError(f"source {s.name or s.spec}: start, drop and nan cut sample chunks; a device-tier "
                             "source sends the device's windows (use stream=samples to damage its samples)")
    if cfg.threshold:
        device_threshold(cfg.threshold, 0, f"the device of {names[0]}")    # a probability margin: refused now
    return names


def with_threshold(sc, threshold: str, default: int):
    """The source with the pipeline's `threshold` set on its device before it streams (as the
    spec's `threshold=` option), so the first window is already decided by it; a threshold the
    spec names itself wins."""
    from streamhar.sources.serial_source import parse_serial_spec
    if not threshold or parse_serial_spec(sc.spec).threshold is not None:
        return sc
    n = device_threshold(threshold, default, f"the device of {sc.name or sc.spec}")
    spec = sc.spec + ("&" if "?" in sc.spec else "?") + f"threshold={n}"
    return dataclasses.replace(sc, spec=spec, name=sc.name or sc.spec)


def stored_threshold(bundle: str) -> int | None:
    """The model's stored cascade threshold ("default"), read from the bundle's JSON meta without
    `models.bundle` (it imports torch: seconds, in a stage that must keep reading its device).
    None when the bundle stores none or cannot be read here (the inference stage reports that)."""
    import json
    from importlib import resources

    from safetensors import safe_open

    path = (resources.files("streamhar.models") / "bundled" / f"{bundle.split(':', 1)[1]}.safetensors"
            if bundle.startswith("bundled:") else bundle)
    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    except Exception:          # unreadable here: the caller falls back to the device's own threshold
        return None
    t = (meta.get("cascade") or {}).get("threshold")
    return None if t is None else int(t)


class DeviceWindowSender:
    """The source stage's half: each `DeviceWindow` of a serial source as a "device" message, and
    the counts the summary shows — windows committed on the device vs sent to the host, the
    device's threshold, and the radio bytes the cascade saved against the SAMPLES stream."""

    def __init__(self, src, default_threshold: int | None):
        self.src = src
        self.default = src.version.threshold if default_threshold is None else default_threshold
        # what the device decides with: the spec's threshold (set at open), else the one it reported
        self.threshold = src.threshold if src.threshold is not None else src.version.threshold
        self.stride, self.length = src.sensor.stride, src.version.window
        self.seq = 0               # device messages made (sent or dropped: a gap tells the receiver)
        self.windows = self.committed = self.uncertain = 0
        self.session = 0           # recordings: the device restarted its window numbering
        self._last_id: int | None = None
        self._changes: list[tuple[int | None, int]] = []   # (first window id, threshold) not in force yet
        self.t_first = self.t_last = None
        self._bytes_per: dict[int, int] = {}

    def frames(self, w, sent: float) -> list:
        """The message of one device window (`serial_source.DeviceWindow`)."""
        if self._last_id is None or w.window_id <= self._last_id:
            self.session += 1
            if self._changes:               # the device restarted: it was configured with the latest
                self.threshold = self._changes[-1][1]
                self._changes.clear()
        self._last_id = w.window_id
        while self._changes and (self._changes[0][0] is None or w.window_id >= self._changes[0][0]):
            self.threshold = self._changes.pop(0)[1]
        r = w.result
        x = (np.asarray(w.samples, np.int8)[None] if w.uncertain
             else np.zeros((0, self.src.version.in_channels, self.length), np.int8))
        # a DeviceWindowBatch's fields, without importing the window stage (scipy: seconds)
        batch = SimpleNamespace(window_id=np.array([w.window_id], np.int64), t_last=np.array([w.t_last], np.float64),
                                classes=np.array([r.predicted], np.int16), margins=np.array([r.margin], np.int64),
                                logits=np.array([r.logits], np.int32), uncertain=np.array([w.uncertain]), x=x,
                                recording_id=f"{self.src.stream}#{self.session}")
        frames = m.encode_device(batch, self.src.stream, self.seq, sent=sent, count_before=self.windows,
                                 device_threshold=self.threshold, model_id=self.src.version.model_id)
        self.seq += 1
        self.windows += 1
        self.uncertain += int(w.uncertain)
        self.committed += int(not w.uncertain)
        self.t_first = w.t_last if self.t_first is None else self.t_first
        self.t_last = w.t_last
        return frames

    def set_threshold(self, value) -> dict:
        """`streamhar ctl threshold VALUE` → SET_THRESHOLD on the device (an integer margin). Its
        windows still on the way were decided with the old one: each message names the threshold
        that decided its window, from the window id the device's ACK says (`from_window`; None:
        the next window)."""
        n = device_threshold(value, self.default, f"the device of {self.src.stream}")
        now = self.src.set_threshold(n)
        start = self.src.threshold_from_window
        self._changes.append((start, now))
        return {"device": self.src.stream, "threshold": now, "from_window": start}

    @property
    def stream_s(self) -> float:
        """Seconds of sensor data the windows span (first window's start to the last one's end)."""
        if self.t_first is None:
            return 0.0
        return float(self.t_last - self.t_first) + self.length / self.src.rate

    def stats(self, counters: dict) -> dict:
        made = self.windows + int(counters.get("windows_lost", 0))     # received or lost on the link
        # The samples those windows span (the first L, then `stride` more per window): what a
        # SAMPLES stream would have carried instead (≈: a device that restarted its windowing
        # after a gap re-spans L − stride samples).
        samples = (made - 1) * self.stride + self.length if made else 0
        rx = int(counters.get("rx_bytes", 0))
        if samples not in self._bytes_per:
            self._bytes_per = {samples: self.src.samples_stream_bytes(samples)}
        instead = self._bytes_per[samples]
        in_force = self.src.threshold if self.src.threshold is not None else self.threshold   # the last ACKed
        return {"device_windows": self.windows, "device_committed": self.committed,
                "device_uncertain": self.uncertain, "device_threshold": in_force,
                "device_threshold_default": self.default,
                "radio": {"bytes": rx, "samples_covered": samples, "samples_stream_bytes": instead,
                          "saved_bytes": instead - rx,
                          "saved_fraction": round((instead - rx) / instead, 4) if instead else None}}
