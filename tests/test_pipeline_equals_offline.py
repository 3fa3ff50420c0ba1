"""Streaming must not change the answer: `streamhar run` (separate processes over ZeroMQ, chunked
replay, windows cut on the fly, several inference workers) gives, window for window, the windows
(CRC-32 of the int8 input) and cascade predictions of the offline `streamhar eval --cascade`."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

KEYS = ("window", "recording", "class_index", "label_index", "margin", "path", "macs", "window_crc")


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("dataset,subject,workers", [("usc-had", "11", 2), ("dsads", "p6", 1)])
def test_streaming_gives_the_offline_windows_and_predictions(tmp_path, data_dir, dataset, subject, workers):
    data = str(data_dir.resolve())
    offline, online, summary = tmp_path / "offline.jsonl", tmp_path / "online.jsonl", tmp_path / "summary.json"
    run = lambda *args: subprocess.run([sys.executable, "-m", "streamhar", *args], cwd=REPO, text=True,
                                       capture_output=True, timeout=600)
    off = run("eval", f"bundled:{dataset}", "--subjects", subject, "--width", "1.0", "--cascade",
              "--predictions", str(offline), "--data-dir", data)
    assert off.returncode == 0, off.stderr
    on = run("run", "--source", f"replay:{dataset}:{subject}", "--speed", "max", "--workers", str(workers),
             "--no-view", "--jsonl", str(online), "--summary-json", str(summary), "--data-dir", data)
    assert on.returncode == 0, on.stdout + on.stderr

    a, b = _lines(offline), _lines(online)
    assert len(a) > 1000 if dataset == "usc-had" else len(a) > 500
    assert len(b) == len(a)
    diff = [(x, y) for x, y in zip(a, b) if any(x[k] != y[k] for k in KEYS)]
    assert not diff, f"{len(diff)} windows differ; first: offline {diff[0][0]} vs streaming {diff[0][1]}"
    assert {r["path"] for r in a} == {"small", "escalated"}      # the cascade really took both paths

    s = json.loads(summary.read_text())
    assert s["ok"] and s["dropped"] == 0 and s["gaps"] == 0 and s["windows"] == len(a)
    if workers > 1:
        done = [s["stages"][f"infer-{i}"]["stats"]["windows"] for i in range(workers)]
        assert sum(done) == len(a) and min(done) > 0          # PUSH/PULL shared the work
    assert f"macro-F1 {s['metrics']['macro_f1']:.4f}" in off.stdout        # the same score, printed offline
