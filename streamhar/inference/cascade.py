"""The adaptive cascade: the narrow width first, the full width only when the narrow one is unsure.

Per window: run width `small`; its score margin is top-1 − top-2 of the integer logits (units of
1/LOGIT_SCALE). If margin > threshold the narrow answer is committed; otherwise (margin ≤
threshold) the same window runs at width `full` and that answer is committed (Daghero et al.
2022's score-margin policy). The threshold is a run-time parameter: `threshold = -1` never
escalates, a threshold above every margin always does. Cost per window = MACs(small) +
[escalated]·MACs(full): the narrow run is never wasted work to hide.

`process()` is the pure per-batch step (the inference stage of the pipeline wraps it);
`run_width()` runs one width alone (the host's half of the device-tier cascade: the full width on
the windows the device was unsure of); `sweep()` re-uses one pass of both widths to score every
threshold of a grid.

For reporting, the margin is also given on softmax probabilities (`prob_margin`: top-1 − top-2
of softmax(logits / logit_scale), in [0, 1], Daghero et al.'s scale). The decision stays on the
integer margin, which needs no exponentials on a microcontroller, unless the host asks for a
probability threshold (`set_threshold(0.3, "prob")`, `streamhar ctl threshold 0.3`); `operating_curve(...,
margin="prob")` sweeps Daghero's 100 log-spaced probability thresholds for comparison.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamhar.evaluation.metrics import confusion, scores
from streamhar.inference import ops
from streamhar.inference.engine import IntegerEngine
from streamhar.inference.model import LOGIT_SCALE, IntegerModelError


@dataclass
class CascadeOutput:
    classes: np.ndarray      # int64 [N] committed answer
    margins: np.ndarray      # int64 [N] margin of the narrow model
    escalated: np.ndarray    # bool [N] path taken: True = full width answered
    macs: np.ndarray         # int64 [N] cost of each window
    small_logits: np.ndarray  # int32 [N, K] the narrow model's logits
    logit_scale: int = LOGIT_SCALE
    _prob: np.ndarray | None = None   # probability margins, when the decision needed them

    @property
    def prob_margins(self) -> np.ndarray:
        """float64 [N]: the narrow model's margin on softmax probabilities (for reporting; computed
        on demand, off the per-window path, unless a probability threshold needed it already)."""
        if self._prob is None:
            self._prob = prob_margin(self.small_logits, self.logit_scale)
        return self._prob


def prob_margin(logits: np.ndarray, logit_scale: int = LOGIT_SCALE) -> np.ndarray:
    """top-1 − top-2 of softmax(logits / logit_scale) per row, float64 in [0, 1]."""
    z = np.asarray(logits, np.float64) / logit_scale
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    if p.shape[-1] < 2:
        return np.zeros(p.shape[:-1])
    top2 = np.partition(p, -2, axis=-1)[..., -2:]
    return top2[..., 1] - top2[..., 0]


class Cascade:
    """threshold/small/full default to the model's stored operating point (info["cascade"], see
    operating_point.py), else to the narrowest and widest widths; a threshold is required when
    the model stores none."""

    def __init__(self, engine: IntegerEngine, macs_by_width: dict[float, int], threshold: int | None = None,
                 small: float | None = None, full: float | None = None):
        widths = engine.model.widths
        stored = engine.model.info.get("cascade") or {}
        self.engine = engine
        self.small = stored.get("small", widths[0]) if small is None else small
        self.full = stored.get("full", widths[-1]) if full is None else full
        if threshold is None:
            if "threshold" not in stored:
                raise IntegerModelError(f"{engine.name}: the model stores no default cascade threshold; pass one "
                                        "(or choose it with `streamhar sweep BUNDLE --save-threshold`)")
            threshold = stored["threshold"]
        engine.model.width_index(self.small), engine.model.width_index(self.full)   # clear errors
        self.macs_small, self.macs_full = int(macs_by_width[self.small]), int(macs_by_width[self.full])
        self.logit_scale = int(engine.model.info.get("logit_scale", LOGIT_SCALE))
        self.set_threshold(threshold)

    def set_threshold(self, threshold, margin: str = "logit") -> None:
        """margin "logit": an integer margin of the logits (the firmware's unit); "prob": a
        softmax-probability margin in [0, 1] (Daghero et al.'s unit; needs exponentials)."""
        if margin not in ("logit", "prob"):
            raise ValueError(f"margin must be 'logit' or 'prob', got {margin!r}")
        self.margin = margin
        self.threshold = int(threshold) if margin == "logit" else float(threshold)

    def run_width(self, x_int8: np.ndarray, width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(classes int64 [N], margins int64 [N], logits int32 [N, K]) of one width alone on int8
        windows [N, C, L] — e.g. the full width on the windows a device-tier cascade was unsure of
        (its narrow width ran on the device). The same engine call as `process` makes, so the same
        bits."""
        x = x_int8 if x_int8.ndim == 3 else x_int8[None]
        logits = self.engine.run(x, width)
        classes, margins = ops.argmax_margin(logits)
        return classes.astype(np.int64), margins.astype(np.int64), logits

    def process(self, x_int8: np.ndarray) -> CascadeOutput:
        x = x_int8 if x_int8.ndim == 3 else x_int8[None]
        small_logits = self.engine.run(x, self.small)
        classes, margins = ops.argmax_margin(small_logits)
        classes = classes.astype(np.int64)
        probs = prob_margin(small_logits, self.logit_scale) if self.margin == "prob" else None
        escalate = (margins if probs is None else probs) <= self.threshold
        if escalate.any():
            classes[escalate] = ops.argmax_margin(self.engine.run(x[escalate], self.full))[0]
        cost = self.macs_small + escalate.astype(np.int64) * self.macs_full
        return CascadeOutput(classes, margins.astype(np.int64), escalate, cost, small_logits, self.logit_scale, probs)


def threshold_grid(margins: np.ndarray, n: int = 100) -> np.ndarray:
    """Integer thresholds: never escalate (−1), then n log-spaced values up to the largest margin
    (Daghero swept 100 log-spaced probability margins in [0, 1]; this is the same on integers)."""
    top = max(int(margins.max(initial=0)), 1)
    grid = np.unique(np.round(np.logspace(0, np.log10(top + 1), n)).astype(np.int64) - 1)
    return np.concatenate([[-1], grid[grid >= 0]])


def prob_threshold_grid(n: int = 100) -> np.ndarray:
    """Never escalate (−1), then Daghero's n log-spaced probability-margin thresholds up to 1."""
    return np.concatenate([[-1.0], np.logspace(-4, 0, n)])


def sweep(small_logits: np.ndarray, full_logits: np.ndarray, y: np.ndarray, class_names: list[str],
          macs_small: int, macs_full: int, thresholds: np.ndarray, margins: np.ndarray | None = None) -> list[dict]:
    """One row per threshold; `margins` replaces the integer margins of `small_logits` (e.g. the
    probability margins, with float thresholds)."""
    small_cls, int_margins = ops.argmax_margin(small_logits)
    margins = int_margins if margins is None else margins
    full_cls, _ = ops.argmax_margin(full_logits)
    rows = []
    for t in thresholds:
        escalate = margins <= t
        pred = np.where(escalate, full_cls, small_cls)
        s = scores(confusion(y, pred, len(class_names)), class_names)
        rows.append({"threshold": int(t) if margins is int_margins else float(t),
                     "accuracy": s["accuracy"], "macro_f1": s["macro_f1"],
                     "weighted_f1": s["weighted_f1"], "escalation_rate": float(escalate.mean()),
                     "mean_macs": float(macs_small + escalate.mean() * macs_full)})
    return rows


def operating_curve(small_logits: np.ndarray, full_logits: np.ndarray, y: np.ndarray, class_names: list[str],
                    macs_small: int, macs_full: int, tolerance: float = 0.005, margin: str = "logit",
                    logit_scale: int = LOGIT_SCALE) -> dict:
    """The sweep over `threshold_grid`, the two static models, and the suggested threshold: the
    cheapest whose macro-F1 is within `tolerance` of the full width's (None if none is).
    margin="prob": the same on softmax-probability margins over `prob_threshold_grid`."""
    if margin == "logit":
        rows = sweep(small_logits, full_logits, y, class_names, macs_small, macs_full,
                     threshold_grid(ops.argmax_margin(small_logits)[1]))
    elif margin == "prob":
        rows = sweep(small_logits, full_logits, y, class_names, macs_small, macs_full, prob_threshold_grid(),
                     margins=prob_margin(small_logits, logit_scale))
    else:
        raise ValueError(f"margin must be 'logit' or 'prob', got {margin!r}")
    full_only = sweep(full_logits, full_logits, y, class_names, 0, macs_full, [-1])[0]
    full_only["mean_macs"] = float(macs_full)
    ok = [r for r in rows if r["macro_f1"] >= full_only["macro_f1"] - tolerance]
    return {"small_only": rows[0], "full_only": full_only,
            "suggested": min(ok, key=lambda r: r["mean_macs"]) if ok else None, "curve": rows}
