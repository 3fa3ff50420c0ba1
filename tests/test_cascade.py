"""The score-margin cascade: per-window paths and costs, and the sweep that scores thresholds."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from streamhar.inference import IntegerEngine, export_bundle, ops
from streamhar.inference.cascade import Cascade, operating_curve, prob_margin, sweep, threshold_grid
from streamhar.models.cost import macs

from conftest import run_cli
from test_int_engine import make_bundle, synthetic


@pytest.fixture(scope="module")
def setup():
    bundle = make_bundle()
    engine = IntegerEngine(export_bundle(bundle))
    x = ops.quantize_input(synthetic(np.random.default_rng(3), 400) / 2.0, bundle.config.input_step)
    cost = {w: macs(bundle.config, w) for w in bundle.config.widths}
    return bundle, engine, x, cost


def test_cascade_escalates_exactly_the_unsure_windows(setup):
    bundle, engine, x, cost = setup
    small_cls, margins = ops.argmax_margin(engine.run(x, 0.25))
    full_cls, _ = ops.argmax_margin(engine.run(x, 1.0))
    threshold = int(np.median(margins))
    out = Cascade(engine, cost, threshold).process(x)
    assert np.array_equal(out.escalated, margins <= threshold)
    assert 0 < out.escalated.sum() < len(x)
    assert np.array_equal(out.classes, np.where(out.escalated, full_cls, small_cls))
    assert np.array_equal(out.macs, cost[0.25] + out.escalated * cost[1.0])
    # The threshold is a run-time parameter: the extremes are the two static models.
    never, always = Cascade(engine, cost, -1), Cascade(engine, cost, int(margins.max()))
    assert not never.process(x).escalated.any() and always.process(x).escalated.all()
    assert np.array_equal(always.process(x).classes, full_cls)
    # One window alone takes the same path as in a batch.
    single = Cascade(engine, cost, threshold).process(x[7])
    assert single.classes[0] == out.classes[7] and single.escalated[0] == out.escalated[7]
    # A probability-margin threshold (`streamhar ctl threshold 0.3`) decides on softmax margins.
    probs = prob_margin(engine.run(x, 0.25))
    c = Cascade(engine, cost, threshold)
    c.set_threshold(float(np.median(probs)), "prob")
    by_prob = c.process(x)
    assert np.array_equal(by_prob.escalated, probs <= c.threshold) and 0 < by_prob.escalated.sum() < len(x)
    assert np.array_equal(by_prob.classes, np.where(by_prob.escalated, full_cls, small_cls))
    assert np.array_equal(by_prob.prob_margins, probs)
    with pytest.raises(ValueError, match="margin"):
        c.set_threshold(0.3, "entropy")


def test_sweep_rows_agree_with_the_cascade(setup):
    bundle, engine, x, cost = setup
    small, full = engine.run(x, 0.25), engine.run(x, 1.0)
    y = ops.argmax_margin(full)[0]            # labels = the full model's answers: its F1 is 1
    grid = threshold_grid(ops.argmax_margin(small)[1], n=30)
    assert grid[0] == -1 and np.all(np.diff(grid) > 0)
    rows = sweep(small, full, y, [str(i) for i in range(bundle.config.n_classes)], cost[0.25], cost[1.0], grid)
    for row in rows[:: 7]:
        out = Cascade(engine, cost, row["threshold"]).process(x)
        assert row["escalation_rate"] == pytest.approx(out.escalated.mean())
        assert row["mean_macs"] == pytest.approx(out.macs.mean())
        assert row["accuracy"] == pytest.approx((out.classes == y).mean())
    assert rows[-1]["escalation_rate"] == 1.0 and rows[-1]["accuracy"] == 1.0
    assert [r["escalation_rate"] for r in rows] == sorted(r["escalation_rate"] for r in rows)


def test_probability_margins_match_softmax_and_the_cascade_reports_them(setup):
    import torch
    bundle, engine, x, cost = setup
    logits = engine.run(x, 0.25)
    p = torch.softmax(torch.from_numpy(logits.astype(np.float64) / engine.model.info["logit_scale"]), 1)
    top = torch.topk(p, 2, dim=1).values
    assert np.allclose(prob_margin(logits), (top[:, 0] - top[:, 1]).numpy(), atol=1e-12)
    out = Cascade(engine, cost, 0).process(x)
    assert np.array_equal(out.prob_margins, prob_margin(logits))
    assert ((out.prob_margins >= 0) & (out.prob_margins <= 1)).all()
    # Equal integer logits: margin 0 on both scales; a huge gap: probability margin → 1.
    assert prob_margin(np.array([[5, 5, 1]]))[0] == 0 and prob_margin(np.array([[10 ** 9, 0]]))[0] == pytest.approx(1)


def test_probability_margin_curve_spans_both_static_models(setup):
    bundle, engine, x, cost = setup
    small, full = engine.run(x, 0.25), engine.run(x, 1.0)
    y = ops.argmax_margin(full)[0]
    names = [str(i) for i in range(bundle.config.n_classes)]
    curve = operating_curve(small, full, y, names, cost[0.25], cost[1.0], margin="prob")
    rows = curve["curve"]
    assert len(rows) == 101 and rows[0]["escalation_rate"] == 0.0 and rows[-1]["escalation_rate"] == 1.0
    assert all(isinstance(r["threshold"], float) for r in rows)
    for row in rows[10::30]:
        escalate = prob_margin(small) <= row["threshold"]
        assert row["escalation_rate"] == pytest.approx(escalate.mean())
    with pytest.raises(ValueError, match="margin"):
        operating_curve(small, full, y, names, cost[0.25], cost[1.0], margin="entropy")


def test_cascade_starts_from_the_models_stored_operating_point(setup):
    from streamhar.inference import IntegerModelError
    from streamhar.inference.export import ExportError
    bundle, engine, x, cost = setup
    with pytest.raises(IntegerModelError, match="no default cascade threshold"):
        Cascade(engine, cost)
    stored = dict(bundle.meta, cascade={"small": 0.5, "full": 1.0, "threshold": 1234, "margin": "logit"})
    model = export_bundle(type(bundle)(bundle.model, bundle.config, bundle.mean, bundle.std, stored, bundle.path))
    assert model.info["cascade"]["threshold"] == 1234
    c = Cascade(IntegerEngine(model), cost)
    assert (c.small, c.full, c.threshold) == (0.5, 1.0, 1234)
    assert Cascade(IntegerEngine(model), cost, threshold=7, small=0.25).threshold == 7     # run-time override
    for bad in ({"small": 0.3, "full": 1.0, "threshold": 5}, {"small": 0.25, "full": 1.0, "threshold": "5"}):
        with pytest.raises(ExportError, match="cascade"):
            export_bundle(type(bundle)(bundle.model, bundle.config, bundle.mean, bundle.std,
                                       dict(bundle.meta, cascade=bad), bundle.path))


def test_sweep_save_threshold_stores_the_operating_point_that_export_carries(data_dir, tmp_path):
    import shutil
    from streamhar.inference import load_shm
    from streamhar.models.bundle import load_bundle, resolve_bundle_path
    copy = tmp_path / "usc.safetensors"
    shutil.copy(resolve_bundle_path("bundled:usc-had"), copy)
    before = load_bundle(copy)
    env = {"STREAMHAR_DATA": str(data_dir)}
    result = run_cli("sweep", str(copy), "--json", "--no-png", "--save-threshold", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    after = load_bundle(copy)
    point = after.meta["cascade"]
    assert point["threshold"] == report["suggested"]["threshold"] and point["chosen_on"] == "validation"
    assert point["cost_fraction"] == pytest.approx(report["suggested"]["mean_macs"] / report["macs_full"], abs=1e-4)
    assert {k: v for k, v in after.meta.items() if k != "cascade"} == \
        {k: v for k, v in before.meta.items() if k != "cascade"}
    for (k, v), (k2, v2) in zip(before.model.state_dict().items(), after.model.state_dict().items()):
        assert k == k2 and torch_equal(v, v2)
    shm = tmp_path / "usc.shm"
    assert run_cli("export", str(copy), "--out", str(shm)).returncode == 0
    assert load_shm(shm).info["cascade"] == point


def torch_equal(a, b) -> bool:
    import torch
    return torch.equal(a, b)


def test_sweep_cli_on_the_bundled_model(data_dir, tmp_path):
    png = tmp_path / "curve.png"
    result = run_cli("sweep", "bundled:dsads", "--json", "--png", str(png), env={"STREAMHAR_DATA": str(data_dir)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["windows"] == 19 * 60            # p6: one window per 5-s segment
    assert report["small_only"]["escalation_rate"] == 0.0 and report["curve"][-1]["escalation_rate"] == 1.0
    assert report["full_only"]["mean_macs"] == report["macs_full"] > report["macs_small"]
    assert len(report["prob_margin"]["curve"]) == 101
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_sweep_prints_the_table_and_writes_the_plot_by_default(data_dir, tmp_path):
    result = subprocess.run([sys.executable, "-m", "streamhar", "sweep", "bundled:usc-had"], capture_output=True,
                            text=True, cwd=tmp_path, env={**os.environ, "STREAMHAR_DATA": str(data_dir.resolve())},
                            timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == ["small", "only"] for line in lines)
    assert any(line.split()[:2] == ["full", "only"] for line in lines)
    assert "cheapest threshold within 0.5 point" in result.stdout
    png = tmp_path / "sweep-usc-had.png"
    assert f"plot written to {png.name}" in result.stdout and png.read_bytes()[:4] == b"\x89PNG"


def test_export_cli_writes_a_file_the_engine_runs_identically(tmp_path, data_dir):
    from streamhar.inference import load_shm
    from streamhar.models.bundle import load_bundle
    out = tmp_path / "dsads.shm"
    result = run_cli("export", "bundled:dsads", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    from_file = IntegerEngine(load_shm(out))
    direct = IntegerEngine(export_bundle(load_bundle("bundled:dsads")))
    x = np.random.default_rng(0).integers(-128, 128, size=(20, 45, 125), dtype=np.int8)
    for width in (0.25, 1.0):
        assert np.array_equal(from_file.run(x, width), direct.run(x, width))
    damaged = tmp_path / "damaged.safetensors"
    damaged.write_bytes(b"\x00" * 100)
    bad = run_cli("export", str(damaged), "--out", str(tmp_path / "x.shm"))
    assert bad.returncode == 2 and "not a readable model bundle" in bad.stderr and "Traceback" not in bad.stderr
