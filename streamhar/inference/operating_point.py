"""The cascade's default operating point: chosen once on the validation subjects, stored with the model.

`choose(bundle, x, y)` exports the bundle, runs its narrow and full widths on the windows with the
integer engine and returns the cheapest integer-margin threshold whose macro-F1 stays within
`tolerance` (0.5 point) of the full width's — `streamhar sweep`'s suggestion. `streamhar train`
stores it in the bundle's meta under "cascade" (`streamhar sweep --save-threshold` re-chooses it
for an existing bundle), `export_bundle` copies it into the integer model's info, and
`Cascade(engine, macs)` without a threshold starts from it. It stays a run-time parameter: the
stored value is only where a pipeline or a firmware image starts.
"""
from __future__ import annotations

import numpy as np

from streamhar.inference.cascade import operating_curve
from streamhar.inference.engine import IntegerEngine
from streamhar.inference.export import export_bundle
from streamhar.models.cost import macs

TOLERANCE = 0.005


def choose(bundle, x: np.ndarray, y: np.ndarray, chosen_on: str, small: float | None = None,
           full: float | None = None, tolerance: float = TOLERANCE) -> dict | None:
    """The "cascade" meta entry for windows x [N, C, L] (source units) with labels y, or None when
    no threshold keeps macro-F1 within `tolerance` of the full width's."""
    engine = IntegerEngine(export_bundle(bundle), name=bundle.path)
    small = bundle.config.widths[0] if small is None else small
    full = bundle.config.widths[-1] if full is None else full
    q = engine.quantize(x)
    cost_small, cost_full = macs(bundle.config, small), macs(bundle.config, full)
    curve = operating_curve(engine.run(q, small), engine.run(q, full), y, bundle.class_names, cost_small,
                            cost_full, tolerance=tolerance)
    return entry(curve, small, full, cost_full, chosen_on, tolerance)


def entry(curve: dict, small: float, full: float, cost_full: int, chosen_on: str, tolerance: float) -> dict | None:
    best = curve["suggested"]
    if best is None:
        return None
    return {"small": small, "full": full, "threshold": int(best["threshold"]), "margin": "logit",
            "chosen_on": chosen_on, "tolerance": tolerance, "macro_f1": round(best["macro_f1"], 4),
            "full_macro_f1": round(curve["full_only"]["macro_f1"], 4),
            "escalation_rate": round(best["escalation_rate"], 4),
            "cost_fraction": round(best["mean_macs"] / cost_full, 4)}
