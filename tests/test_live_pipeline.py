"""Live sources in the real multi-process pipeline: `streamhar demo --simulate` (emulated BLE
wearables through Bumble and bleak) and a serial board (the sensor firmware in QEMU)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN_TIMEOUT = 300
# Absolute: the commands run in a temporary folder, and CI sets a relative ../shared/data.
DATA = Path(os.environ.get("STREAMHAR_DATA", "../shared/data")).resolve()


def streamhar(*args: str, cwd: Path, timeout: float = RUN_TIMEOUT):
    return subprocess.run([sys.executable, "-m", "streamhar", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "STREAMHAR_DATA": str(DATA)}, timeout=timeout)


def summary_of(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    return json.loads(proc.stdout)


def source_stats(summary: dict) -> list[dict]:
    return [st["stats"] for name, st in summary["stages"].items() if name.startswith("source")]


def test_simulated_hip_imu_demo_scores_as_the_offline_evaluation(tmp_path, data_dir):
    """One emulated hip IMU (generic profile, USC-HAD subject 12 at its real 100 Hz) → auto-picked
    bundled:usc-had; the live accuracy equals the offline evaluation of the span it streamed."""
    s = summary_of(streamhar("demo", "--simulate", "--duration", "20", "--no-view", "--json",
                             "--data-dir", str(data_dir), cwd=tmp_path))
    assert s["bundle"] == "bundled:usc-had" and s["mode"] == "bounded"
    assert s["dropped"] == 0 and s["gaps"] == 0 and s["windows_lost"] == 0
    (src,) = source_stats(s)
    assert src["samples_lost"] == 0 and src["packets_lost"] == 0 and src["disconnects"] == 0
    assert src["samples"] >= 1700 and abs(src["samples"] / src["stream_s"] - 100) < 2, src   # 100 Hz, ~20 s
    off = s["offline"]
    assert off is not None and off["samples"] == src["samples"]
    assert s["windows"] >= 30 and abs(s["windows"] - off["windows"]) <= 1
    assert s["metrics"]["labelled"] == s["windows"]
    assert abs(s["metrics"]["accuracy"] - off["accuracy"]) <= 0.02, (s["metrics"], off)


def test_five_simulated_imus_are_aligned_into_dsads_windows(tmp_path, data_dir):
    """Five wearables (torso, arms, legs), each its own source process and BLE world, are aligned
    by host time into 45-channel DSADS windows; nothing dropped, the answer is the offline one."""
    s = summary_of(streamhar("demo", "--simulate", "dsads", "--duration", "16", "--no-view", "--json",
                             "--data-dir", str(data_dir), cwd=tmp_path))
    assert s["bundle"] == "bundled:dsads" and len(s["sources"]) == 5
    assert s["dropped"] == 0 and s["windows_lost"] == 0
    stats = source_stats(s)
    assert all(st["samples_lost"] == 0 and st["samples"] >= 300 for st in stats), stats
    window = s["stages"]["window"]["stats"]
    assert s["windows"] >= 2, window
    assert abs(s["metrics"]["accuracy"] - s["offline"]["accuracy"]) <= 0.5 / s["windows"] + 1e-9 or \
        s["metrics"]["accuracy"] == pytest.approx(s["offline"]["accuracy"], abs=0.34), (s["metrics"], s["offline"])


def test_unknown_wearable_setup_is_a_clear_error(tmp_path):
    p = streamhar("demo", "--no-view", cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "no wearable configured" in p.stderr and "devices scan" in p.stderr
    (tmp_path / "wearables.toml").write_text('[[wearables]]\nspec = "ble:generic:X?at=wrist"\n')
    p = streamhar("demo", "--no-view", cwd=tmp_path, timeout=120)
    assert p.returncode == 2 and "?at=" in p.stderr and "wrist" in p.stderr


@pytest.fixture(scope="module")
def usc_sensor_image(tmp_path_factory, data_dir):
    from streamhar.firmware.image import build_sensor_image

    return build_sensor_image("stm32f4", "bundled:usc-had", "replay:usc-had:12",
                              tmp_path_factory.mktemp("sensor"), seconds=30, data_dir=data_dir)


def test_serial_board_in_qemu_feeds_the_pipeline_at_its_real_rate(tmp_path, usc_sensor_image, data_dir):
    """`streamhar demo --serial PORT`: the sensor firmware streams SAMPLES over its UART (a pty
    pyserial opens like a USB adapter) at 100 Hz; the pipeline windows and classifies them."""
    from streamhar.firmware.emulated import EmulatedBoard

    with EmulatedBoard("stm32f4", usc_sensor_image, icount=False) as emu:
        s = summary_of(streamhar("demo", "--serial", emu.port, "--at", "hip", "--duration", "8", "--no-view",
                                 "--json", cwd=tmp_path))
    assert s["bundle"] == "bundled:usc-had" and s["sources"] == [f"serial:{emu.port}?at=hip"]
    (src,) = source_stats(s)
    for k in ("lost_samples", "seq_gaps", "crc_errors", "garbage_bytes", "disconnects"):
        assert src[k] == 0, (k, src)
    assert 600 <= src["samples"] <= 1100, src               # 100 Hz for ~8 s
    assert s["dropped"] == 0 and s["gaps"] == 0 and s["windows"] >= 8
