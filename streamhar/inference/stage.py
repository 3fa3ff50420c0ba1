"""The inference stage: normalized windows in, one prediction per window out (pure step).

    stage = InferStage.from_bundle("bundled:usc-had")     # the cascade at the model's stored point
    preds = stage.process(window_batch)                   # PredictionBatch
    stage.set_threshold("0.3")                            # run time: a probability margin
    stage.set_threshold("34002")                          # … or an integer logit margin

Windows arrive normalized (float32 [N, C, L], the window stage's output); this stage quantizes
them with the model's input step (`ops.quantize_input`, exactly what `IntegerEngine.quantize`
does after normalizing) and runs the adaptive cascade (`cascade.Cascade`): the narrow width
first, the full width for windows whose margin is at or below the threshold. The engine is the
host C library when it builds, else the numpy integer engine (bit-identical; `engine_kind` says
which).

Device-tier windows (`DeviceWindowBatch`: a device ran the narrow width and decided itself) take
`process_device`: committed ones keep the device's answer, uncertain ones get the full width alone
on the device's int8 window (`Cascade.run_width`), on the same engine, so the same bits.

Thresholds: an integer ("34002") is a margin of the integer logits (units of 1/logit_scale), the
unit the cascade and the firmware decide on; a number with a decimal point in [0, 1] ("0.3") is a
softmax-probability margin (Daghero et al.'s scale); "default" restores the model's stored point;
"never" (= −1) never escalates, "always" always does.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from streamhar.errors import UsageError
from streamhar.inference import ops
from streamhar.inference.cascade import Cascade, prob_margin
from streamhar.pipeline.threshold import parse_threshold   # noqa: F401  (re-exported: callers import it from here)

if TYPE_CHECKING:     # windowing pulls in scipy.signal: seconds that the sink (decoding predictions) need not pay
    from streamhar.windowing.stage import DeviceWindowBatch


@dataclass
class PredictionBatch:
    window_seq: np.ndarray    # int64 [N] running window number (the window stage's)
    recording_id: str
    t_last: np.ndarray        # float64 [N] stream time of each window's last sample
    labels: np.ndarray        # int16 [N] ground truth of the window (−1 unknown)
    classes: np.ndarray       # int16 [N] committed class
    margins: np.ndarray       # int64 [N] narrow model's integer margin (1/logit_scale)
    prob_margins: np.ndarray  # float32 [N] the same margin on softmax probabilities
    escalated: np.ndarray     # bool [N] path: True = the full width answered
    macs: np.ndarray          # int64 [N] MACs spent on the window
    window_crc: np.ndarray    # uint32 [N] CRC-32 of the int8 window (streaming vs offline checks); 0: no window here
    # The device-tier cascade (defaults: every window ran on the host):
    device: np.ndarray | None = None       # bool [N] the narrow width ran on the device
    device_macs: np.ndarray | None = None  # int64 [N] MACs the device spent (its narrow width); `macs` are the host's
    window_id: np.ndarray | None = None    # int64 [N] the device's window number (−1: a host window)

    def __post_init__(self) -> None:
        n = len(self.classes)
        if self.device is None:
            self.device = np.zeros(n, bool)
        if self.device_macs is None:
            self.device_macs = np.zeros(n, np.int64)
        if self.window_id is None:
            self.window_id = np.full(n, -1, np.int64)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}


class InferStage:
    def __init__(self, engine, macs_by_width: dict[float, int], class_names: list[str], *,
                 threshold: str | int | float | None = None, engine_kind: str = "numpy"):
        self.cascade = Cascade(engine, macs_by_width)      # stored operating point (clear error if none)
        self.default_threshold = self.cascade.threshold
        self.step = float(engine.model.info["input_step"])
        self.class_names = list(class_names)
        self.engine_kind = engine_kind
        self.channels, self.length = engine.input_shape
        if threshold is not None:
            self.set_threshold(threshold)
        self.windows = 0
        self.escalations = 0
        self.macs = 0
        self.device_windows = 0      # windows whose narrow width ran on a device (device-tier cascade)
        self.device_macs = 0
        self._model_id: int | None = None
        # Warm up both widths (the C engine decodes a width's weights on first use): the first
        # real window must not pay for it.
        zero = np.zeros((1, self.channels, self.length), np.int8)
        for width in (self.cascade.small, self.cascade.full):
            engine.run(zero, width)

    @classmethod
    def from_bundle(cls, name: str, threshold=None, engine: str = "auto") -> "InferStage":
        """engine: "c" (host C library), "numpy" or "auto" (C when it builds, else numpy)."""
        from streamhar.inference.engine import choose_engine
        from streamhar.inference.export import export_bundle
        from streamhar.models.bundle import load_bundle
        from streamhar.models.cost import macs

        bundle = load_bundle(name)
        eng, kind = choose_engine(export_bundle(bundle), str(name), engine)
        cost = {w: macs(bundle.config, w) for w in bundle.config.widths}
        return cls(eng, cost, bundle.class_names, threshold=threshold, engine_kind=kind)

    def set_threshold(self, value) -> dict:
        kind, threshold = parse_threshold(value, self.default_threshold)
        self.cascade.set_threshold(threshold, kind)
        return self.describe_threshold()

    def describe_threshold(self) -> dict:
        c = self.cascade
        return {"kind": c.margin, "value": c.threshold, "default": int(self.default_threshold)}

    def process(self, batch, model_id: int | None = None) -> PredictionBatch:
        """A WindowBatch (windowing/stage.py) → its PredictionBatch; a DeviceWindowBatch goes to
        `process_device` (`model_id`: the model the device runs, checked against ours)."""
        if hasattr(batch, "uncertain"):       # a DeviceWindowBatch (not imported here: see above)
            return self.process_device(batch, model_id)
        x = np.asarray(batch.x, np.float32)
        if x.ndim != 3 or x.shape[1:] != (self.channels, self.length):
            raise UsageError(f"window batch of recording {batch.recording_id!r}: windows of shape "
                             f"{list(x.shape)}, model expects [N, {self.channels}, {self.length}]")
        q = ops.quantize_input(x, self.step)
        out = self.cascade.process(q)
        n = len(out.classes)
        crc = np.fromiter((zlib.crc32(w.tobytes()) for w in q), np.uint32, n)
        self.windows += n
        self.escalations += int(out.escalated.sum())
        self.macs += int(out.macs.sum())
        return PredictionBatch(np.asarray(batch.seq, np.int64), batch.recording_id,
                               np.asarray(batch.t_last, np.float64), np.asarray(batch.labels, np.int16),
                               out.classes.astype(np.int16), out.margins, out.prob_margins.astype(np.float32),
                               out.escalated, out.macs, crc)

    def process_device(self, batch: DeviceWindowBatch, model_id: int | None = None) -> PredictionBatch:
        """The host's half of the device-tier cascade. The device ran the narrow width on every
        window and decided with its own threshold: a committed window keeps the device's class (no
        host compute; the narrow width's MACs are the device's), an uncertain one is answered by
        the full width alone on the device's int8 window (already quantized: no quantization here,
        and no narrow run again). Margins are the device's narrow margins."""
        where = f"device windows of recording {batch.recording_id!r}"
        if model_id is not None and int(model_id) != self.model_id:
            raise UsageError(f"{where}: the device runs model {int(model_id):#010x}, this stage's bundle is "
                             f"{self.model_id:#010x}; its narrow results and windows are not this model's "
                             "(flash the device with the bundle's image, or run with the device's bundle)")
        batch.check(where, self.channels, self.length)
        k = batch.logits.shape[1]
        if k != len(self.class_names):
            raise UsageError(f"{where}: the device's logits have {k} classes, the model {len(self.class_names)}")
        c = self.cascade
        esc = np.asarray(batch.uncertain, bool)
        classes = np.asarray(batch.classes, np.int16).copy()
        n, m = len(classes), int(esc.sum())
        crc = np.zeros(n, np.uint32)          # 0: a committed window never reached the host
        if m:
            x = np.asarray(batch.x, np.int8)
            classes[esc] = c.run_width(x, c.full)[0].astype(np.int16)
            crc[esc] = np.fromiter((zlib.crc32(w.tobytes()) for w in x), np.uint32, m)
        macs = esc.astype(np.int64) * c.macs_full
        device_macs = np.full(n, c.macs_small, np.int64)
        self.windows += n
        self.escalations += m
        self.macs += int(macs.sum())
        self.device_windows += n
        self.device_macs += int(device_macs.sum())
        return PredictionBatch(np.asarray(batch.seq, np.int64), batch.recording_id,
                               np.asarray(batch.t_last, np.float64), np.asarray(batch.labels, np.int16),
                               classes, np.asarray(batch.margins, np.int64),
                               prob_margin(batch.logits, c.logit_scale).astype(np.float32), esc, macs, crc,
                               device=np.ones(n, bool), device_macs=device_macs,
                               window_id=np.asarray(batch.window_id, np.int64))

    def describe_device_threshold(self, value: int | None) -> dict:
        """The threshold of a device-tier run: the device's, as its source last set or read it."""
        return {"kind": "logit", "value": value, "default": int(self.default_threshold), "tier": "device"}

    @property
    def model_id(self) -> int:
        """The CRC-32 a device running this model reports in VERSION (firmware/generate.model_id)."""
        if self._model_id is None:
            from streamhar.firmware.generate import model_id
            self._model_id = model_id(self.cascade.engine.model)
        return self._model_id

    def stats(self) -> dict:
        out = {"windows": self.windows, "escalated": self.escalations, "macs": self.macs,
               "engine": self.engine_kind, "threshold": self.describe_threshold()}
        if self.device_windows:
            out.update(device_windows=self.device_windows, device_macs=self.device_macs)
        return out
