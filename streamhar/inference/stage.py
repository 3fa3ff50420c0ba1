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

Thresholds: an integer ("34002") is a margin of the integer logits (units of 1/logit_scale), the
unit the cascade and the firmware decide on; a number with a decimal point in [0, 1] ("0.3") is a
softmax-probability margin (Daghero et al.'s scale); "default" restores the model's stored point;
"never" (= −1) never escalates, "always" always does.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from streamhar.errors import UsageError
from streamhar.inference import ops
from streamhar.inference.cascade import Cascade


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
    window_crc: np.ndarray    # uint32 [N] CRC-32 of the int8 window (streaming vs offline checks)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in vars(self).items() if isinstance(v, np.ndarray)}


def parse_threshold(text: str | float | int, default: int) -> tuple[str, float]:
    """("logit", int) or ("prob", float) for a threshold as a user writes it (see module doc)."""
    s = str(text).strip().lower()
    if s == "default":
        return "logit", int(default)
    if s == "never":
        return "logit", -1
    if s == "always":
        return "logit", float(2 ** 62)
    try:
        if "." in s or "e" in s:
            v = float(s)
            if not 0.0 <= v <= 1.0:
                raise UsageError(f"threshold {text!r}: a probability margin must be in [0, 1] "
                                 "(write an integer for a logit margin)")
            return "prob", v
        return "logit", int(s)
    except ValueError:
        raise UsageError(f"threshold {text!r}: expected an integer logit margin (e.g. 34002), a probability "
                         "margin with a decimal point (e.g. 0.3), 'default', 'never' or 'always'") from None


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

    def process(self, batch) -> PredictionBatch:
        """A WindowBatch (windowing/stage.py) → its PredictionBatch."""
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

    def stats(self) -> dict:
        return {"windows": self.windows, "escalated": self.escalations, "macs": self.macs,
                "engine": self.engine_kind, "threshold": self.describe_threshold()}
