"""The device firmware (firmware/app/device_main.c) in QEMU, spoken to over its emulated UART on a
pseudo-terminal with pyserial, as a real board would be: protocol-level parity on 50 real
validation windows per bundled model per board, and every documented refusal — a corrupted
frame, a wrong model id, a window of the wrong length or shape, a threshold out of range, an
unknown type, garbage on the line — answered with its ERROR frame while the device keeps serving.
Plus `streamhar flash`: into an emulated board, and a real-board attempt with no probe attached."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from streamhar.firmware import protocol as p
from streamhar.firmware.device import Device, DeviceError
from streamhar.firmware.emulated import EmulatedBoard
from streamhar.firmware.generate import load_model
from streamhar.firmware.image import build_image_with_model
from streamhar.firmware.uart_parity import expected_cascade, run_uart_parity
from streamhar.firmware.vectors import validation_windows

BOARDS = ["stm32f4", "riscv32"]


@pytest.mark.parametrize("model", ["bundled:usc-had", "bundled:dsads"])
@pytest.mark.parametrize("board", BOARDS)
def test_device_answers_50_validation_windows_bit_exactly_over_the_uart(board, model, data_dir, tmp_path):
    r = run_uart_parity(board, model, str(data_dir), 50, build_dir=tmp_path)
    assert r.windows == 50 and r.ok, r.summary()
    assert 0 < r.escalated < 50, r.summary()
    assert r.firmware == "0.1.0"


@pytest.fixture(scope="module", params=BOARDS)
def device(request, tmp_path_factory, data_dir):
    board = request.param
    model, source = load_model("bundled:usc-had")
    elf, gen = build_image_with_model(board, source, tmp_path_factory.mktemp(board), "device", model)
    x = validation_windows("bundled:usc-had", str(data_dir), 12)
    with EmulatedBoard(board, elf) as emu, Device.open(emu.port, timeout_s=20) as dev:
        yield board, dev, gen, model, x


def _error(dev: Device, seq: int) -> p.ErrorReport:
    r = dev.reply_to(seq)
    assert isinstance(r.message, p.ErrorReport), r
    return r.message


def test_every_refusal_gets_its_error_frame_and_the_device_keeps_serving(device):
    board, dev, gen, model, x = device
    v = dev.version()
    assert (v.model_id, v.board, v.threshold, v.in_channels, v.window) == (gen.model_id, board, gen.threshold, 6, 200)
    dev.stats(reset=True)
    want = expected_cascade(model, x, gen.small, gen.full, gen.threshold)

    # a corrupted frame: one payload byte flipped after the CRC was computed
    frame = bytearray(p.encode(p.InferRequest.from_array(x[0], model_id=gen.model_id), dev.seq))
    frame[40] ^= 0x10
    seq = dev.seq
    dev.seq += 1
    dev.send_raw(bytes(frame))
    e = _error(dev, seq)
    assert e.code == p.ErrorCode.CRC and e.ref_type == p.MsgType.INFER_REQ

    # a window meant for another model: BAD_STATE, detail = the device's model id
    with pytest.raises(DeviceError) as err:
        dev.infer(x[1], model_id=gen.model_id ^ 0xFFFF)
    assert err.value.error.code == p.ErrorCode.BAD_STATE and err.value.error.detail == gen.model_id

    # a window of the wrong length: the header says 6 × 200, the payload holds 10 samples fewer
    good = p.InferRequest.from_array(x[2], model_id=gen.model_id).payload()
    body = bytes([p.MsgType.INFER_REQ]) + dev.seq.to_bytes(2, "little") + good[:-10]
    seq = dev.seq
    dev.seq += 1
    dev.send_raw(b"\0" + p.cobs_encode(body + p.crc16(body).to_bytes(2, "little")) + b"\0")
    e = _error(dev, seq)
    assert e.code == p.ErrorCode.BAD_LENGTH and e.detail == len(good)

    # a well-formed window of another shape: BAD_STATE, detail = the model's in_channels << 16 | window
    with pytest.raises(DeviceError) as err:
        dev.infer(np.zeros((6, 100), np.int8))
    assert err.value.error.code == p.ErrorCode.BAD_STATE and err.value.error.detail == (6 << 16) | 200

    # a threshold out of range: BAD_VALUE, and the threshold in force is kept
    with pytest.raises(DeviceError) as err:
        dev.set_threshold(-2)
    assert err.value.error.code == p.ErrorCode.BAD_VALUE
    assert dev.version().threshold == gen.threshold

    # an unknown type and a burst of garbage
    body = bytes([0x30]) + dev.seq.to_bytes(2, "little")
    seq = dev.seq
    dev.seq += 1
    dev.send_raw(b"\0" + p.cobs_encode(body + p.crc16(body).to_bytes(2, "little")) + b"\0")
    assert _error(dev, seq).code == p.ErrorCode.UNKNOWN_TYPE
    dev.send_raw(bytes(np.random.default_rng(1).integers(1, 256, 300, dtype=np.uint8)))

    # … and it still serves, bit for bit
    for i in range(3, 8):
        got = dev.infer(x[i], model_id=gen.model_id)
        cls, path, margin, logits = want[i]
        assert (got.predicted, got.path, got.margin) == (cls, path, margin) and np.array_equal(got.logits, logits)
        assert (got.instructions is not None) == (board == "riscv32")      # only riscv32 counts (minstret)
    s = dev.stats()
    assert s["crc_errors"] == 1 and s["bad_payloads"] == 1 and s["unknown_types"] == 1, s
    assert s["inferences"] == 5 and s["dropped_bytes"] > 0, s


def test_threshold_changes_at_run_time(device):
    board, dev, gen, model, x = device
    assert dev.set_threshold(-1) == -1                        # never escalate
    assert {dev.infer(w).path for w in x[:6]} == {p.ResultPath.NARROW}
    assert dev.set_threshold(2**40) == 2**40                  # above every margin: always escalate
    assert {dev.infer(w).path for w in x[:6]} == {p.ResultPath.ESCALATED}
    for mode, path in ((p.InferMode.NARROW, p.ResultPath.NARROW), (p.InferMode.FULL, p.ResultPath.FULL)):
        got = dev.infer(x[0], mode)
        want = model.widths[gen.small if mode == p.InferMode.NARROW else gen.full]
        from streamhar.inference import IntegerEngine
        assert got.path == path and np.array_equal(got.logits, IntegerEngine(model).run(x[0], want))
    assert dev.set_threshold(gen.threshold) == gen.threshold


def _streamhar(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "streamhar", *args], capture_output=True, text=True, timeout=timeout)


def test_flash_into_an_emulated_board_starts_it_and_it_answers(tmp_path):
    proc = _streamhar("flash", "--board", "qemu-stm32f4", "--duration", "1", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "into an emulated stm32f4: serial port /dev/pts/" in proc.stdout
    model, _ = load_model("bundled:usc-had")
    from streamhar.firmware.generate import model_id
    assert f"model id {model_id(model):#010x}" in proc.stdout and "board stm32f4" in proc.stdout


@pytest.mark.parametrize("tool", ["openocd", "st-flash"])
def test_flash_without_a_probe_fails_within_seconds_with_a_clear_message(tool, tmp_path):
    elf = tmp_path / "firmware.elf"
    elf.write_bytes(b"\x7fELF")             # never reaches the probe: there is none
    elf.with_suffix(".bin").write_bytes(b"\0" * 16)
    t0 = time.monotonic()
    proc = _streamhar("flash", "--board", "stm32f4", "--image", str(elf), "--tool", tool, timeout=60)
    assert time.monotonic() - t0 < 20
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no debug probe found for stm32f4" in proc.stderr and "Is the board connected" in proc.stderr


def test_flash_dry_run_prints_the_exact_commands(tmp_path):
    elf = tmp_path / "fw.elf"
    runs = {("--board", "stm32f4"): f"openocd -f interface/stlink.cfg -f target/stm32f4x.cfg -c 'program {elf} verify reset exit'",
            ("--board", "stm32f4", "--probe", "cmsis-dap"): "-f interface/cmsis-dap.cfg",
            ("--board", "stm32f4", "--tool", "st-flash"): f"st-flash --reset write {elf.with_suffix('.bin')} 0x08000000",
            ("--board", "stm32f4", "--port", "/dev/ttyUSB7"): "stm32loader --port /dev/ttyUSB7 --erase --write --verify",
            ("--board", "riscv32"): "openocd -f board/sifive-hifive1-revb.cfg"}
    for args, want in runs.items():
        proc = _streamhar("flash", *args, "--image", str(elf), "--dry-run", timeout=60)
        assert proc.returncode == 0 and want in proc.stdout, (args, proc.stdout, proc.stderr)
    proc = _streamhar("flash", "--board", "stm32f4", "--tool", "st-flash", "--probe", "cmsis-dap", "--image", str(elf),
                      "--dry-run", timeout=60)
    assert proc.returncode == 2 and "st-flash talks to ST-Link probes only" in proc.stderr
