"""The firmware under QEMU equals the Python integer engine bit for bit: 500 real validation windows
per bundled model per board (the issue's target), every window's logits and per-layer checksums
at the small and the full width, and the cascade's class, path and margin. An image built from a
model with one weight changed must be caught, with the first differing layer named."""
from __future__ import annotations

import numpy as np
import pytest

from streamhar.firmware import toolchain
from streamhar.firmware.generate import load_model
from streamhar.firmware.image import build_image_with_model
from streamhar.firmware.parity import compare, run_image, run_parity
from streamhar.firmware.vectors import expected, validation_windows

BOARDS = ["stm32f4", "riscv32"]
MODELS = ["bundled:usc-had", "bundled:dsads"]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("board", BOARDS)
def test_firmware_is_bit_exact_on_500_validation_windows(board, model, data_dir, tmp_path):
    r = run_parity(board, model, str(data_dir), n=500, build_dir=tmp_path)
    assert r.windows == 500
    assert r.ok, r.summary()
    assert 0 < r.escalated < r.windows, "the cascade must take both paths on real windows"
    limits = toolchain.BOARDS[board]
    assert r.flash_bytes <= 64 * 1024 and r.ram_bytes <= 16 * 1024, r.summary()
    assert r.ram_bytes <= limits.ram_bytes
    if board == "riscv32":           # minstret under -icount: the cascade's saving, exactly
        assert r.instructions["small"] < r.instructions["cascade"] < 0.6 * r.instructions["full"], r.instructions


@pytest.mark.parametrize("board", BOARDS)
def test_a_changed_weight_is_caught_at_its_layer(board, data_dir, tmp_path):
    model, source = load_model("bundled:usc-had")
    tampered = load_model("bundled:usc-had")[0]
    w = tampered.conv[2]
    o, c, k = 1, 0, 0                                # inside the narrow width's slice too
    w[o, c, k] = 1 if w[o, c, k] != 1 else -1
    elf, gen = build_image_with_model(board, source, tmp_path, "parity", tampered)
    x = validation_windows("bundled:usc-had", str(data_dir), 30)
    got = run_image(board, elf, x, gen.threshold, tampered, gen.model_id)
    bad, first = compare(got, expected(model, x, gen.small, gen.full, gen.threshold))
    assert bad > 0 and first["first_layer"] == "block 2", first
    # and the untouched blocks before it agree: the checksums of blocks 0 and 1 are equal everywhere
    want = expected(model, x, gen.small, gen.full, gen.threshold)
    assert np.array_equal(got["full"][1][:, :2], want["full"][1][:, :2])


def test_a_narrow_only_image_is_bit_exact_and_small(data_dir, tmp_path):
    # the device tier of a device/host cascade holds only the narrow width
    r = run_parity("riscv32", "bundled:dsads", str(data_dir), n=60, build_dir=tmp_path, widths=[0.25])
    assert r.ok and r.windows == 60 and r.escalated == 0, r.summary()
    assert r.flash_bytes < 32 * 1024 and r.ram_bytes < 10 * 1024, r.summary()      # all widths: 58 KB, 14 KB
