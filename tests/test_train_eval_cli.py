"""`streamhar train` and `streamhar eval` as a user runs them, on the real USC-HAD files."""
from __future__ import annotations

import json

import numpy as np

from streamhar.models.bundle import load_bundle
from streamhar.windowing.sliding import window_starts

from conftest import run_cli


def test_train_then_eval_a_tiny_bundle(data_dir, tmp_path, usc_recordings):
    out = tmp_path / "tiny.safetensors"
    env = {"STREAMHAR_DATA": str(data_dir)}
    trained = run_cli("train", "--dataset", "usc-had", "--channels", "8,8,8,8", "--epochs", "1",
                      "--max-steps", "5", "--out", str(out), env=env)
    assert trained.returncode == 0, trained.stderr
    assert "wrote" in trained.stdout and out.is_file()
    bundle = load_bundle(out)
    assert bundle.meta["training"]["steps"] == 5
    assert bundle.meta["channels"][0] == "hip.acc.x" and len(bundle.class_names) == 12
    assert set(bundle.meta["cost"]) == {"0.25", "0.5", "1.0"}
    # The default cascade threshold stored at training time is the sweep's suggestion.
    sweep = run_cli("sweep", str(out), "--json", "--no-png", env=env)
    assert sweep.returncode == 0, sweep.stderr
    suggested = json.loads(sweep.stdout)["suggested"]
    if suggested is None:
        assert "cascade" not in bundle.meta
    else:
        assert bundle.meta["cascade"]["threshold"] == suggested["threshold"]
        assert bundle.meta["cascade"]["chosen_on"] == "validation"

    png = tmp_path / "cm.png"
    result = run_cli("eval", str(out), "--json", "--png", str(png), env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    validation = [r for r in usc_recordings if r.subject in ("11", "12")]
    expected_windows = sum(len(window_starts(len(r), 200, 50)) for r in validation)
    for width, metrics in report["widths"].items():
        w = metrics["window"]
        assert w["windows"] == expected_windows
        assert np.array(w["confusion"]).sum() == expected_windows
        assert 0.0 <= w["macro_f1"] <= 1.0 and 0.0 <= w["accuracy"] <= 1.0
        assert metrics["sample"]["windows"] + metrics["sample"]["unscored"] == sum(len(r) for r in validation)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    text = run_cli("eval", str(out), "--subjects", "12", "--width", "0.5", env=env)
    assert text.returncode == 0, text.stderr
    assert "subjects 12;" in text.stdout and "per class (width 0.5" in text.stdout

    bad_width = run_cli("eval", str(out), "--width", "0.3", env=env)
    assert bad_width.returncode == 2 and "not one of the trained widths" in bad_width.stderr
    assert "Traceback" not in bad_width.stderr


def test_opportunity_trains_and_evaluates_on_format_faithful_fixtures(tmp_path):
    from opportunity_fixture import write_opportunity_fixture
    write_opportunity_fixture(tmp_path, runs=("S1-ADL1", "S1-Drill", "S2-ADL4", "S3-ADL5"), rows=240)
    for task, n_classes in (("locomotion", 5), ("gestures", 18)):
        out = tmp_path / f"opp-{task}.safetensors"
        trained = run_cli("train", "--dataset", "opportunity", "--task", task, "--channels", "8,8,8,8",
                          "--epochs", "1", "--max-steps", "3", "--batch-size", "8", "--out", str(out),
                          "--data-dir", str(tmp_path))
        assert trained.returncode == 0, trained.stderr
        bundle = load_bundle(out)
        assert bundle.meta["task"] == task and len(bundle.class_names) == n_classes
        assert len(bundle.channels) == 113 and bundle.config.window == 24
        report = json.loads(run_cli("eval", str(out), "--json", "--data-dir", str(tmp_path)).stdout)
        # Validation = S2/S3 ADL4–5: here S2-ADL4 and S3-ADL5, 240 rows each, window 24, stride 12.
        assert report["recordings"] == 2
        assert report["widths"]["1.0"]["window"]["windows"] == 2 * len(window_starts(240, 24, 12))
