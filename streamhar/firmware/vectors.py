"""Test vectors for the firmware: real validation windows (int8) and what the Python integer engine
says about them — every layer's checksum and the logits at a width, and the cascade's decisions."""
from __future__ import annotations

import numpy as np

from streamhar.firmware.checksum import trace_checksums


def validation_windows(bundle_spec: str, data_dir: str | None, n: int | None) -> np.ndarray:
    """int8 windows [N, C, L] of the bundle's validation split, N spread evenly (all when n is None)."""
    from streamhar.inference import IntegerEngine, export_bundle
    from streamhar.models.bundle import load_bundle
    from streamhar.datasets.paths import resolve_data_dir
    from streamhar.models.data import bundle_split

    bundle = load_bundle(bundle_spec)
    x = IntegerEngine(export_bundle(bundle)).quantize(bundle_split(bundle, resolve_data_dir(data_dir), "validation").windows.x)
    if n is not None and n < len(x):
        x = x[np.linspace(0, len(x) - 1, n).round().astype(int)]
    return np.ascontiguousarray(x)


def expected(model, x: np.ndarray, small: int, full: int, threshold: int) -> dict:
    """What the firmware must write, from the Python integer engine."""
    from streamhar.inference import IntegerEngine
    from streamhar.inference.cascade import Cascade

    engine = IntegerEngine(model)
    out = {}
    for tag, wi in (("small", small), ("full", full)):
        trace = engine.trace(x, model.widths[wi])
        out[tag] = (trace[-1], trace_checksums(trace))
    c = Cascade(engine, {w: 0 for w in model.widths}, threshold, model.widths[small], model.widths[full]).process(x)
    out["cascade"] = (c.classes, c.escalated.astype(np.int64), c.margins)
    return out
