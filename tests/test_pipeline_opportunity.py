"""`replay:opportunity` through the real pipeline, on recordings in the exact published format
(written by the test: the real ones are not available here) with a model trained on them."""
from __future__ import annotations

import json

from conftest import run_cli
from opportunity_fixture import write_opportunity_fixture

from streamhar.windowing.sliding import window_starts


def test_replay_opportunity_runs_when_recordings_and_a_model_exist(tmp_path):
    write_opportunity_fixture(tmp_path, runs=("S1-ADL1", "S1-Drill", "S2-ADL4", "S3-ADL5"), rows=240)
    model = tmp_path / "opp.safetensors"
    trained = run_cli("train", "--dataset", "opportunity", "--task", "gestures", "--channels", "8,8,8,8",
                      "--epochs", "1", "--max-steps", "3", "--batch-size", "8", "--out", str(model),
                      "--data-dir", str(tmp_path))
    assert trained.returncode == 0, trained.stderr
    offline, online = tmp_path / "off.jsonl", tmp_path / "on.jsonl"
    off = run_cli("eval", str(model), "--cascade", "--predictions", str(offline), "--data-dir", str(tmp_path))
    assert off.returncode == 0, off.stderr
    run = run_cli("run", "--source", "replay:opportunity:validation", "--bundle", str(model), "--speed", "max",
                  "--no-view", "--jsonl", str(online), "--summary-json", str(tmp_path / "s.json"),
                  "--data-dir", str(tmp_path))
    assert run.returncode == 0, run.stdout + run.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    # Validation = S2-ADL4 and S3-ADL5, 240 rows each at 30 Hz; window 24, stride 12.
    assert s["ok"] and s["windows"] == 2 * len(window_starts(240, 24, 12)) and s["samples"] == 480
    a = [json.loads(x) for x in offline.read_text().splitlines()]
    b = [json.loads(x) for x in online.read_text().splitlines()]
    keys = ("recording", "class_index", "label_index", "margin", "path", "window_crc")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]
    # The replay used the model's label track (gestures: 18 classes, "Null" first).
    gestures = [c["class"] for c in s["per_class"]]
    assert len(gestures) == 18 and gestures[0] == "Null"
    assert {r["label"] for r in b} <= set(gestures) and {r["label_index"] for r in a} == {r["label_index"] for r in b}
