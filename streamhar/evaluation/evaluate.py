"""Scoring a bundle on recordings: window-level and sample-level metrics per width.

Sample level follows streaming semantics: a window's prediction labels the samples that arrived
since the previous window (the last `stride` samples; all of the first window's samples), so each
sample is scored once, by the prediction a live system showed while it was current. Samples
after the last complete window have no prediction and are counted as `unscored`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from streamhar.evaluation.metrics import confusion, scores
from streamhar.models.bundle import Bundle
from streamhar.models.data import bundle_split
from streamhar.models.train import predict
from streamhar.windowing.sliding import WindowSet


def sample_predictions(windows: WindowSet, predictions: np.ndarray, lengths: list[int], stride: int):
    """Per recording, the predicted label of every sample (−1 where no window has scored it yet)."""
    out = [np.full(n, -1, dtype=np.int64) for n in lengths]
    seen: set[int] = set()
    for rec, end, pred in zip(windows.recording, windows.end, predictions):
        first = 0 if rec not in seen else end - stride + 1
        seen.add(int(rec))
        out[rec][first:end + 1] = pred
    return out


def evaluate(bundle: Bundle, data_dir: Path, selector: str, widths: list[float] | None = None) -> dict:
    meta = bundle.meta
    split = bundle_split(bundle, data_dir, selector)
    x = bundle.normalize(split.windows.x)
    names = bundle.class_names
    result = {"bundle": bundle.path, "dataset": meta["dataset"], "selector": selector,
              "subjects": sorted({r.subject for r in split.recordings}), "recordings": len(split.recordings),
              "window": meta["window"], "stride": meta["stride"], "widths": {}}
    for width in widths or list(bundle.config.widths):
        pred = predict(bundle.model, x, width).argmax(1)
        window_scores = scores(confusion(split.windows.y, pred, len(names)), names)
        per_sample = sample_predictions(split.windows, pred, [len(r) for r in split.recordings], meta["stride"])
        truth = np.concatenate([r.labels for r in split.recordings]).astype(np.int64)
        predicted = np.concatenate(per_sample)
        scored = predicted >= 0
        sample_scores = scores(confusion(truth[scored], predicted[scored], len(names)), names)
        sample_scores["unscored"] = int((~scored).sum())
        cost = meta.get("cost", {}).get(str(width), {})
        result["widths"][str(width)] = {"window": window_scores, "sample": sample_scores, **cost}
    return result


def evaluate_cascade(bundle: Bundle, data_dir: Path, selector: str, threshold: int | None = None,
                     engine: str = "auto") -> tuple[dict, list[dict]]:
    """The adaptive cascade (integer engine, the model's stored threshold unless given) offline:
    (metrics, one row per window). Streaming must give the same rows: `streamhar run --jsonl`
    writes the same fields (window number, recording, class, label, margin, path, MACs, CRC-32 of
    the int8 window), and a test compares them."""
    import zlib

    from streamhar.inference import ops
    from streamhar.inference.cascade import Cascade
    from streamhar.inference.engine import choose_engine
    from streamhar.inference.export import export_bundle
    from streamhar.models.cost import macs

    split = bundle_split(bundle, data_dir, selector)
    model = export_bundle(bundle)
    runner, _ = choose_engine(model, bundle.path, engine)
    cascade = Cascade(runner, {w: macs(bundle.config, w) for w in bundle.config.widths}, threshold)
    q = ops.quantize_input(bundle.normalize(split.windows.x), model.info["input_step"])
    out = cascade.process(q) if len(q) else None
    names = bundle.class_names
    rows = []
    for i in range(len(q)):
        rows.append({"window": i, "recording": split.windows.recording_ids[split.windows.recording[i]],
                     "end": int(split.windows.end[i]), "class": names[out.classes[i]],
                     "class_index": int(out.classes[i]), "label_index": int(split.windows.y[i]),
                     "margin": int(out.margins[i]), "path": "escalated" if out.escalated[i] else "small",
                     "macs": int(out.macs[i]), "window_crc": zlib.crc32(q[i].tobytes())})
    s = scores(confusion(split.windows.y, out.classes, len(names)), names) if out is not None else {}
    metrics = {"bundle": bundle.path, "selector": selector, "windows": len(q), "threshold": cascade.threshold,
               "small": cascade.small, "full": cascade.full,
               "accuracy": s.get("accuracy"), "macro_f1": s.get("macro_f1"),
               "escalation_rate": float(out.escalated.mean()) if out is not None else None,
               "macs_per_window": float(out.macs.mean()) if out is not None else None}
    return metrics, rows
