"""The device-tier cascade in the pipeline (docs/PIPELINE.md "Device-tier cascade").

The pure steps without sockets: the window stage passes device windows through (numbered, checked,
window-id gaps counted as windows lost, less the windows of dropped messages); the inference stage
answers pre-quantized device windows — committed ones with the device's class and no host compute,
uncertain ones with the full width alone, the same classes as the host cascade on the same int8
windows, on the numpy and the C engine; JSON lines name the path; thresholds a device cannot take
are refused.

Then the whole thing: the USC-HAD sensor firmware in QEMU (stm32f4, FAST mode) streams
`stream=cascade` into `streamhar run` (real processes); every prediction the sink writes equals the
reference — the device's int8 windows (`img.sensor.windows`) → narrow width by the integer engine
→ margin ≤ threshold ? the full width's class : the narrow class — window by window, nothing
dropped; `streamhar ctl threshold never`, then `always`, mid-run move the device's split.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from streamhar.errors import UsageError
from streamhar.inference import IntegerEngine, ops
from streamhar.inference.cascade import Cascade, prob_margin
from streamhar.pipeline.config import PipelineConfig, SourceConfig
from streamhar.pipeline.defaults import bundle_meta
from streamhar.pipeline.device_tier import device_sources, with_threshold
from streamhar.pipeline.threshold import ALWAYS, device_threshold
from streamhar.windowing.stage import DevicePassThrough, DeviceWindowBatch, StreamFormatError

REPO = Path(__file__).resolve().parents[1]
USC = "replay:usc-had:12"
SECONDS = 12                     # 1200 samples, stride 50: window k and k + 24 are the same window
C, L = 6, 200


@pytest.fixture(scope="module")
def model():
    from streamhar.firmware.generate import load_model
    return load_model("bundled:usc-had")[0]


@pytest.fixture(scope="module")
def sensor(model, tmp_path_factory, data_dir):
    """The device's input stage and recording, as C data (no compiler): its windows are the
    device's int8 windows."""
    from streamhar.firmware.sensor import generate_sensor
    return generate_sensor(model, USC, tmp_path_factory.mktemp("sensor"), seconds=SECONDS, data_dir=data_dir)


def narrow_full(model, x: np.ndarray):
    """(narrow logits, narrow classes, narrow margins, full classes) of int8 windows, by the numpy engine."""
    eng = IntegerEngine(model)
    stored = model.info["cascade"]
    logits = eng.run(x, stored["small"])
    cls, margin = ops.argmax_margin(logits)
    return logits, cls, margin, ops.argmax_margin(eng.run(x, stored["full"]))[0]


def device_batch(x, logits, cls, margin, threshold, ids=None, recording="serial:/dev/x#1"):
    """What the device sends for windows x at `threshold`, as the window stage passes it on."""
    unc = margin <= threshold
    ids = np.arange(len(x)) if ids is None else np.asarray(ids)
    return DeviceWindowBatch(ids.astype(np.int64), ids * 0.5, cls.astype(np.int16), margin.astype(np.int64),
                             logits.astype(np.int32), unc, np.ascontiguousarray(x[unc]), recording,
                             seq=np.arange(len(x), dtype=np.int64) + 100)


# ------------------------------------------------------------------ the window stage's pass-through

def test_window_stage_passes_device_windows_through_numbered_and_counts_lost_ids():
    x = np.zeros((1, C, L), np.int8)

    def b(ids, uncertain_first=False, rec="dev#1", x=x):
        ids = np.asarray(ids, np.int64)
        unc = np.zeros(len(ids), bool)
        unc[0] = uncertain_first
        return DeviceWindowBatch(ids, ids * 0.5, np.zeros(len(ids), np.int16), ids * 10, np.zeros((len(ids), 12),
                                 np.int32), unc, x if uncertain_first else np.zeros((0, C, L), np.int8), rec)

    stage = DevicePassThrough(C, L, ["dev"])
    assert stage.process(b([0, 1], True), "dev").seq.tolist() == [0, 1]
    assert stage.process(b([2]), "dev").seq.tolist() == [2]
    out = stage.process(b([5], True), "dev", dropped_before=1)      # 3, 4 missing; one was in a dropped message
    assert out.seq.tolist() == [3] and out.labels.tolist() == [-1]
    stage.process(b([6, 9]), "dev")                                  # 7, 8 lost on the device link
    st = stage.sources["dev"]
    assert (st.windows_in, st.committed, st.uncertain, st.windows_lost, st.id_gaps, st.restarts) == (6, 4, 2, 3, 2, 0)
    stage.process(b([0, 1], rec="dev#2"), "dev")                     # the device reset: a new recording
    stage.process(b([0]), "dev")                                     # numbering went back in a recording
    assert (st.restarts, st.windows_lost, stage.windows_out, stage.windows_lost) == (2, 3, 9, 3)
    stage.ignore_samples("dev", 120)
    assert st.samples_ignored == 120
    # a bad batch is refused naming what was expected, and changes nothing
    with pytest.raises(StreamFormatError, match=r"device message x: expected the 1 uncertain window\(s\) as int8 "
                                                r"\[1, 6, 200\], got int8 \[1, 5, 200\]"):
        stage.process(b([1], True, x=np.zeros((1, 5, L), np.int8)), "dev", where="device message x")
    with pytest.raises(UsageError, match="'other' is not a device-tier source of this stage \\(dev\\)"):
        stage.process(b([1]), "other")
    assert (stage.windows_out, st.windows_in) == (9, 9)


# ------------------------------------------------------------------ the inference stage on device windows

@pytest.mark.parametrize("engine", ["numpy", "c"])
def test_infer_stage_answers_device_windows_with_the_full_width_alone(model, sensor, engine):
    from streamhar.inference.stage import InferStage

    stage = InferStage.from_bundle("bundled:usc-had", engine=engine)
    assert stage.engine_kind == engine
    x = sensor.windows(48)
    logits, cls, margin, full = narrow_full(model, x)
    threshold = int(np.median(margin))                   # about half each way
    batch = device_batch(x, logits, cls, margin, threshold)
    assert 10 < batch.uncertain.sum() < 38
    calls = []
    run = stage.cascade.engine.run
    stage.cascade.engine.run = lambda xs, width: (calls.append((len(xs), width)), run(xs, width))[1]
    pred = stage.process(batch, model_id=stage.model_id)
    unc = batch.uncertain
    assert calls == [(int(unc.sum()), stage.cascade.full)]          # no narrow run, no quantization: the device did
    np.testing.assert_array_equal(pred.classes, np.where(unc, full, cls))
    np.testing.assert_array_equal(pred.escalated, unc)
    np.testing.assert_array_equal(pred.margins, margin)
    np.testing.assert_array_equal(pred.window_id, batch.window_id)
    np.testing.assert_array_equal(pred.window_seq, batch.seq)
    macs = {w: c for w, c in ((stage.cascade.small, stage.cascade.macs_small), (stage.cascade.full,
                                                                                stage.cascade.macs_full))}
    np.testing.assert_array_equal(pred.macs, np.where(unc, macs[stage.cascade.full], 0))
    assert pred.device.all() and (pred.device_macs == macs[stage.cascade.small]).all()
    np.testing.assert_array_equal(pred.window_crc, [zlib.crc32(w.tobytes()) if u else 0 for w, u in zip(x, unc)])
    np.testing.assert_allclose(pred.prob_margins, prob_margin(logits), atol=1e-7)
    # the split is the host cascade's on the same int8 windows, at the same threshold
    host = Cascade(IntegerEngine(model), {w: 0 for w in model.widths}, threshold).process(x)
    np.testing.assert_array_equal(pred.classes, host.classes)
    np.testing.assert_array_equal(pred.escalated, host.escalated)
    s = stage.stats()
    assert (s["windows"], s["escalated"], s["device_windows"]) == (48, int(unc.sum()), 48)
    assert s["macs"] == int(pred.macs.sum()) and s["device_macs"] == 48 * macs[stage.cascade.small]
    # all committed: no engine call at all
    calls.clear()
    none = stage.process(device_batch(x[:3], logits[:3], cls[:3], margin[:3], -1))
    assert calls == [] and not none.escalated.any() and (none.macs == 0).all()
    np.testing.assert_array_equal(none.classes, cls[:3])
    with pytest.raises(UsageError, match=f"the device runs model 0x12345678, this stage's bundle is "
                                         f"{stage.model_id:#010x}"):
        stage.process(batch, model_id=0x12345678)
    bad = device_batch(x[:2], logits[:2, :5], cls[:2] % 5, margin[:2], 2 ** 40)
    with pytest.raises(UsageError, match="the device's logits have 5 classes, the model 12"):
        stage.process(bad)


def test_jsonl_rows_of_device_windows_name_their_path(tmp_path):
    from streamhar.inference.stage import PredictionBatch
    from streamhar.sinks.jsonl import JsonLinesWriter, read_jsonl

    n = 3
    esc = np.array([False, True, False])
    pred = PredictionBatch(np.arange(n, dtype=np.int64), "dev#1", np.arange(n) * 0.5, np.full(n, -1, np.int16),
                           np.array([1, 2, 0], np.int16), np.array([90000, 3, 80000], np.int64),
                           np.full(n, 0.5, np.float32), esc, np.where(esc, 3751936, 0).astype(np.int64),
                           np.array([0, 123, 0], np.uint32), device=np.array([True, True, False]),
                           device_macs=np.array([285184, 285184, 0], np.int64), window_id=np.array([7, 8, -1]))
    with JsonLinesWriter(tmp_path / "p.jsonl") as w:
        w.write(pred, np.zeros(n), ["a", "b", "c"])
    rows = read_jsonl(tmp_path / "p.jsonl")
    assert [r["path"] for r in rows] == ["device", "escalated", "small"]
    assert [r.get("tier") for r in rows] == ["device", "device", None]          # host rows keep their fields
    assert (rows[0]["window_id"], rows[1]["device_macs"], rows[1]["macs"], rows[0]["macs"]) == (7, 285184, 3751936, 0)
    assert set(rows[2]) == set(rows[0]) - {"tier", "window_id", "device_macs"}


def test_thresholds_and_sources_a_device_tier_pipeline_refuses():
    assert [device_threshold(t, 34002) for t in ("default", "never", "always", "17")] == [34002, -1, ALWAYS, 17]
    with pytest.raises(UsageError, match="decides on integer logit margins"):
        device_threshold("0.3", 34002, "the device of serial:/dev/x")
    with pytest.raises(UsageError, match="takes a margin ≥ −1"):
        device_threshold("-5", 0)
    sc = SourceConfig("serial:/dev/x?stream=cascade", name="serial:/dev/x?stream=cascade")
    assert with_threshold(sc, "default", 34002).spec == "serial:/dev/x?stream=cascade&threshold=34002"
    assert with_threshold(sc, "default", 34002).name == sc.name                  # the stream keeps its name
    own = SourceConfig("serial:/dev/x?stream=cascade&threshold=5")
    assert with_threshold(own, "never", 34002) is own                             # the spec's own threshold wins
    cfg = PipelineConfig(sources=[sc], threshold="0.3")
    with pytest.raises(UsageError, match="integer logit margins"):
        device_sources(cfg)
    mixed = PipelineConfig(sources=[sc, SourceConfig("replay:usc-had:11")])
    with pytest.raises(UsageError, match=r"cannot be combined with source\(s\) the host windows \(replay:usc-had:11\)"):
        device_sources(mixed)
    assert device_sources(PipelineConfig(sources=[sc])) == [sc.name]
    assert device_sources(PipelineConfig(sources=[SourceConfig("serial:/dev/x?stream=samples")])) == []


# ------------------------------------------------------------------ the real firmware in QEMU, real processes

def streamhar(*args, **kw):
    return subprocess.run([sys.executable, "-m", "streamhar", *args], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ), **kw)


def rows_of(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_for(path: Path, proc, cond, what: str, timeout: float) -> list[dict]:
    """The sink's rows once cond(rows) holds (the pipeline still running)."""
    end = time.monotonic() + timeout
    while not cond(rows := rows_of(path)):
        assert proc.poll() is None, f"streamhar run ended early: {proc.communicate()[0][-3000:]}"
        assert time.monotonic() < end, f"no {what} after {timeout:g} s ({len(rows)} predictions)"
        time.sleep(0.05)
    return rows


@pytest.fixture(scope="module")
def image(model, tmp_path_factory, data_dir):
    from streamhar.firmware.image import build_sensor_image_with_model
    return build_sensor_image_with_model("stm32f4", "bundled:usc-had", USC, tmp_path_factory.mktemp("image"),
                                         seconds=SECONDS, data_dir=data_dir, model=model)


def test_device_cascade_pipeline_equals_the_reference_and_follows_ctl_threshold(image, model, tmp_path):
    """FAST mode streams as fast as the link drains, so the device runs ahead of what the host has
    read (the pty buffers it): a threshold takes effect from the window the device's ACK names
    (`from_window` in the source's control event), which the test checks exactly."""
    from streamhar.firmware.emulated import EmulatedBoard

    period = len(image.sensor.samples) // image.sensor.stride            # 24 distinct windows, then they repeat
    x = image.sensor.windows(period)
    logits, cls, margin, full = narrow_full(model, x)
    default = image.model.threshold
    stored = model.info["cascade"]
    macs = {w: int(c["macs"]) for w, c in ((float(w), c) for w, c in bundle_meta("bundled:usc-had")["cost"].items())}
    unsure = margin <= default
    assert default == 34002 and unsure.any() and not unsure.all()
    jsonl, summary, ctl = tmp_path / "p.jsonl", tmp_path / "summary.json", f"ipc://{tmp_path}/ctl"
    with EmulatedBoard("stm32f4", image.elf, icount=False) as emu:
        spec = f"serial:{emu.port}?stream=cascade&fast=1"
        (tmp_path / "pipeline.toml").write_text(
            f'bundle = "bundled:usc-had"\nduration = 60\n[[sources]]\nspec = "{spec}"\n'
            f'[endpoints]\nctl = "{ctl}"\n[sink]\nview = false\njsonl = "{jsonl}"\nsummary_json = "{summary}"\n')
        proc = subprocess.Popen([sys.executable, "-m", "streamhar", "run", "--config", str(tmp_path / "pipeline.toml")],
                                cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            wait_for(jsonl, proc, lambda rows: len(rows) >= 30, "30 predictions", timeout=120)
            refused = streamhar("ctl", "threshold", "0.3", "--endpoint", ctl, timeout=30)
            assert refused.returncode == 2 and "decides on integer logit margins" in refused.stderr, refused.stderr
            at_never = len(rows_of(jsonl))
            assert streamhar("ctl", "threshold", "never", "--endpoint", ctl, timeout=30).returncode == 0
            # in force once a window the default threshold would send to the host stays on the device
            rows = wait_for(jsonl, proc, lambda rows: any(r["path"] == "device" and unsure[r["window_id"] % period]
                                                          for r in rows[at_never:]), "effect of 'never'", 30)
            at_always = len(wait_for(jsonl, proc, lambda r: len(r) >= len(rows) + 20, "20 more predictions", 30))
            assert streamhar("ctl", "threshold", "always", "--endpoint", ctl, timeout=30).returncode == 0
            wait_for(jsonl, proc, lambda rows: len(rows) >= at_always + 10 and
                     all(r["path"] == "escalated" for r in rows[-10:]), "10 escalations in a row", 30)
        finally:
            proc.send_signal(signal.SIGINT)          # Ctrl-C: the source stops, the rest drains
            out, _ = proc.communicate(timeout=60)
        assert emu.running, emu.stop()
    assert proc.returncode == 130, out[-4000:]

    s = json.loads(summary.read_text())
    events = [e for e in s["control_events"] if e["stage"] == "source-0"]
    assert [(e["ok"], e["result"]["threshold"]) for e in events] == [(True, -1), (True, ALWAYS)], events
    k_never, k_always = (e["result"]["from_window"] for e in events)
    rows = rows_of(jsonl)
    n = len(rows)
    assert [r["window_id"] for r in rows] == list(range(n)) == [r["window"] for r in rows]   # nothing lost
    assert at_never <= k_never < at_always <= k_always <= n - 10, (at_never, k_never, at_always, k_always, n)
    for r in rows:
        i, k = r["window_id"], r["window_id"] % period
        threshold = default if i < k_never else -1 if i < k_always else ALWAYS
        esc = bool(margin[k] <= threshold)
        want = {"window_id": i, "path": "escalated" if esc else "device",
                "class_index": int(full[k] if esc else cls[k]), "margin": int(margin[k]), "tier": "device",
                "macs": macs[stored["full"]] if esc else 0, "device_macs": macs[stored["small"]],
                "window_crc": zlib.crc32(x[k].tobytes()) if esc else 0}
        assert {key: r[key] for key in want} == want, (threshold, r)
        assert abs(r["prob_margin"] - prob_margin(logits[k:k + 1])[0]) < 1e-6, r
    assert any(r["path"] == "escalated" for r in rows[:k_never]) and any(r["path"] == "device" for r in rows[:k_never])

    assert s["interrupted"] and s["stages"]["sink"]["stats"]["complete"] and s["windows"] == n
    assert (s["dropped"], s["gaps"], s["windows_lost"]) == (0, 0, 0)
    d = s["device_tier"]
    escalated = sum(r["path"] == "escalated" for r in rows)
    assert (d["windows"], d["committed"], d["escalated"]) == (n, n - escalated, escalated)
    assert list(d["thresholds"].values()) == [ALWAYS] and d["default_threshold"] == default
    assert s["threshold"] == {"kind": "logit", "value": ALWAYS, "default": default, "tier": "device"}
    src = s["stages"]["source-0"]["stats"]
    for key in ("windows_lost", "seq_gaps", "crc_errors", "garbage_bytes", "disconnects", "device_resets"):
        assert src[key] == 0, (key, src)
    assert src["device_windows"] == src["device_results"] + src["uncertain_windows"] == n
    assert d["radio"]["bytes"] == src["rx_bytes"] > 0
    assert d["radio"]["samples_covered"] == (n - 1) * image.sensor.stride + image.sensor.window
    assert "device tier:" in out and "radio:" in out
