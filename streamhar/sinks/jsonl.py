"""Predictions as JSON lines: one object per window, for `jq`, pandas or a later offline check.

    with JsonLinesWriter("preds.jsonl") as out:
        out.write(batch, latency_s, class_names)
    rows = read_jsonl("preds.jsonl")

Each batch is written as one string and flushed, so a reader tailing the file sees whole batches
of whole lines without paying one system call per window. Fields (per window): window, recording,
t_last, class, class_index, label (null when unknown), label_index (−1), margin, prob_margin,
path ("small" | "escalated"), macs, latency_ms, window_crc (CRC-32 of the int8 window, to compare
a streamed run against an offline one).

Windows of the device-tier cascade (the device ran the narrow width) have path "device" (the
device committed it: its class, no host compute) or "escalated" (the host's full width answered
the device's int8 window), and three more fields: tier ("device"), window_id (the device's window
number) and device_macs (MACs the device spent; `macs` are the host's). A committed window never
reached the host: its window_crc is 0.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamhar.errors import DataFormatError, UsageError

if TYPE_CHECKING:     # only a type here: importing the inference stage costs seconds (torch)
    from streamhar.inference.stage import PredictionBatch


class JsonLinesWriter:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lines = 0
        try:
            self._f = open(self.path, "w", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot write predictions to {self.path}: {e.strerror or e}") from None

    def write(self, batch: PredictionBatch, latency_s: np.ndarray, class_names: list[str]) -> None:
        n = len(batch)
        lat_ms = np.asarray(latency_s, np.float64).reshape(-1) * 1e3
        if len(lat_ms) != n:
            raise ValueError(f"{len(lat_ms)} latencies for a batch of {n} windows")
        if n == 0:
            return
        # json.dumps of a dict per window costs ~18 µs, too slow for --speed max; instead each string
        # is JSON-escaped once and the numbers go through .tolist() (Python ints/floats, whose repr
        # is the JSON json.dumps would write). −1 labels and stray indices become null.
        names = [json.dumps(x) for x in class_names]
        rec = json.dumps(batch.recording_id)

        def name(i: int) -> str:
            return names[i] if 0 <= i < len(names) else "null"

        def num(x: float) -> str:                   # NaN/inf are not JSON
            return repr(x) if math.isfinite(x) else "null"

        cols = zip(batch.window_seq.tolist(), batch.t_last.tolist(), batch.classes.tolist(),
                   batch.labels.tolist(), batch.margins.tolist(), batch.prob_margins.tolist(),
                   batch.escalated.tolist(), batch.macs.tolist(), lat_ms.tolist(), batch.window_crc.tolist(),
                   batch.device.tolist(), batch.device_macs.tolist(), batch.window_id.tolist())

        def path(escalated: bool, device: bool) -> str:
            return "escalated" if escalated else "device" if device else "small"

        def tier(device: bool, dm: int, wid: int) -> str:    # host-tier rows stay as they were
            return f', "tier": "device", "window_id": {wid}, "device_macs": {dm}' if device else ""

        text = "".join(
            f'{{"window": {seq}, "recording": {rec}, "t_last": {num(t)}, "class": {name(c)}, '
            f'"class_index": {c}, "label": {name(y)}, "label_index": {y}, "margin": {m}, '
            f'"prob_margin": {num(round(p, 6))}, "path": "{path(e, d)}", "macs": {k}, '
            f'"latency_ms": {num(round(ms, 3))}, "window_crc": {crc}{tier(d, dm, wid)}}}\n'
            for seq, t, c, y, m, p, e, k, ms, crc, d, dm, wid in cols)
        try:
            self._f.write(text)
            self._f.flush()
        except (OSError, ValueError) as e:     # ValueError: written after close()
            raise UsageError(f"cannot write predictions to {self.path}: {e}") from None
        self.lines += n

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as e:
            raise UsageError(f"cannot write predictions to {self.path}: {e.strerror or e}") from None

    def __enter__(self) -> "JsonLinesWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[dict]:
    """Every object of a JSON-lines file (blank lines skipped); a bad line names file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataFormatError(path, f"not a JSON object ({e.msg})", line=i) from None
    return rows
