"""The bundles that ship in the package: they load, fit the size budget, and `streamhar eval`
reproduces the validation metrics recorded in docs/models.json (the source of docs/MODELS.md)."""
from __future__ import annotations

import json

import pytest

from streamhar.evaluation.evaluate import evaluate
from streamhar.models.bundle import load_bundle
from streamhar.models.cost import weight_bytes

from conftest import REPO

RECORDED = json.loads((REPO / "docs" / "models.json").read_text())


@pytest.mark.parametrize("name", ["dsads", "usc-had"])
def test_bundled_model_matches_its_documented_metrics(name, data_dir):
    bundle = load_bundle(f"bundled:{name}")
    assert bundle.meta["dataset"] == name
    assert weight_bytes(bundle.config, 1.0) <= 32 * 1024
    assert bundle.config.widths[0] == 0.25 and bundle.config.weight_quant.startswith("ternary")
    result = evaluate(bundle, data_dir, "validation")
    recorded = RECORDED[name]["widths"]
    assert set(result["widths"]) == set(recorded)
    for width, metrics in result["widths"].items():
        for key in ("accuracy", "macro_f1", "weighted_f1"):
            assert metrics["window"][key] == pytest.approx(recorded[width][key], abs=0.005), (width, key)


@pytest.mark.parametrize("name", ["dsads", "usc-had"])
def test_bundled_cascade_keeps_the_full_widths_macro_f1_at_half_the_cost(name, data_dir):
    """Issue 4's cascade target on the validation subjects, with the integer engine (exact, so
    this is a deterministic property of the shipped file): some threshold keeps macro-F1 within
    0.5 point of the full width while the mean cost is at most half the full width's MACs."""
    from streamhar.cli.sweep_cmd import sweep_bundle
    result = sweep_bundle(f"bundled:{name}", data_dir, "validation")
    best = result["suggested"]
    assert best is not None
    assert best["macro_f1"] >= result["full_only"]["macro_f1"] - 0.005
    assert best["mean_macs"] <= 0.5 * result["macs_full"]
    assert 0 < best["escalation_rate"] < 1          # a real cascade, not one of the static models
