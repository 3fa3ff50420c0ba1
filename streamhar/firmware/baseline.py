"""The float32 baseline of an exported model: the same network as float C (firmware/baseline).

`generate_float(model, out_dir)` writes `har_float_model.h/.c`, the tables of
firmware/baseline/har_float.h: conv weights = the ternary codes as −1.0/0.0/+1.0, FC weights =
the int8 codes as floats, and per requantization table scale = m / 2^shift, bias = bias / 2^shift
(the integer network's rescale without its rounding), so the float network computes the
integer network's function up to rounding — the same structure and op count, for a fair
instruction count (`streamhar firmware bench`).

`host_logits(model, x, width)` runs the same C on the host (gcc + ctypes): the check that the
float tables are right (its argmax agrees with the integer engine's on real windows).
"""
from __future__ import annotations

import ctypes as C
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from streamhar.firmware.generate import BANNER, _array, cascade_point, model_id
from streamhar.firmware import toolchain
from streamhar.firmware.toolchain import (BOARDS, FIRMWARE, Board, FirmwareBuildError, FirmwareError,
                                          FirmwareToolError, get_board)
from streamhar.inference.model import IntegerModel

BASELINE = FIRMWARE / "baseline"
SOURCE = BASELINE / "har_float.c"
# A Cortex-M4F fuses a*b+c into one VFMA only when contraction is allowed (-std=c99 turns it
# off): the baseline gets it, so the float side of the comparison is not handicapped.
FLOAT_DEFS = ("-ffp-contract=fast",)
HOST_CACHE = FIRMWARE.parent / "build" / "float_baseline"


class BaselineError(FirmwareError):
    """The float baseline refused its arguments (a width index, scratch sizes)."""


@dataclass(frozen=True)
class FloatModel:
    header: Path
    source: Path
    act_len: int          # floats per activation buffer
    acc_len: int          # floats of the conv output buffer (a whole block at full width)
    input_len: int
    small: int
    full: int

    @property
    def scratch_bytes(self) -> int:
        return 4 * (self.input_len + 2 * self.act_len + self.acc_len)


def scratch_sizes(model: IntegerModel) -> tuple[int, int]:
    """(act_len, acc_len) as har_float_scratch_size computes them."""
    a = model.arch
    t, act, acc = a["window"], 0, a["channels"][-1] + a["n_classes"]
    for c, k, p, pool in zip(a["channels"], a["kernels"], a["padding"], a["pools"]):
        tc = t + 2 * p - k + 1
        t = tc // pool
        acc, act = max(acc, c * tc), max(act, c * t)
    return act, acc


def affine(r) -> tuple[np.ndarray, np.ndarray]:
    """(scale, bias) float32 of one requantization table: m / 2^shift, bias / 2^shift."""
    div = np.ldexp(1.0, r.shift.astype(np.int64))
    return ((r.m.astype(np.float64) / div).astype(np.float32), (r.bias.astype(np.float64) / div).astype(np.float32))


def _f(v: float) -> str:
    s = repr(float(np.float32(v)))       # shortest text that reads back as the same float32
    if not np.isfinite(np.float32(v)):
        raise ValueError(f"non-finite float table value {v}")
    return s + ("f" if ("." in s or "e" in s) else ".0f")


def generate_float(model: IntegerModel, out_dir: str | Path, source: str = "a streamhar model") -> FloatModel:
    a, info = model.arch, model.info
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_blocks, n_widths = len(a["channels"]), len(model.widths)
    act_len, acc_len = scratch_sizes(model)
    small, full, _ = cascade_point(model)
    input_len = a["in_channels"] * a["window"]
    banner = BANNER.format(source=source.replace("*/", "* /")).replace("streamhar firmware generate",
                                                                       "streamhar firmware bench")
    h = [banner, "#ifndef HAR_FLOAT_MODEL_H\n#define HAR_FLOAT_MODEL_H\n\n#include \"har_float.h\"\n\n",
         f"#define HARF_MODEL_ID     0x{model_id(model):08X}u\n",
         f"#define HARF_IN_CHANNELS  {a['in_channels']}u\n",
         f"#define HARF_WINDOW       {a['window']}u\n",
         f"#define HARF_INPUT_LEN    {input_len}u\n",
         f"#define HARF_N_CLASSES    {a['n_classes']}u\n",
         f"#define HARF_N_BLOCKS     {n_blocks}u\n",
         f"#define HARF_N_WIDTHS     {n_widths}u\n",
         f"#define HARF_ACT_LEN      {act_len}u\n",
         f"#define HARF_ACC_LEN      {acc_len}u\n",
         f"#define HARF_SMALL_WIDTH  {small}u\n",
         f"#define HARF_FULL_WIDTH   {full}u\n\n",
         "extern const har_float_net har_float_model;\n\n#endif /* HAR_FLOAT_MODEL_H */\n"]
    u32 = lambda name, v: _array("uint32_t", name, v)
    c = [banner, '#include "har_float_model.h"\n\n',
         u32("channels", a["channels"]), u32("kernels", a["kernels"]), u32("pools", a["pools"]),
         u32("padding", a["padding"]), u32("width_channels", info["width_channels"]),
         _array("float", "act_max", a["act_levels"], fmt=_f)]
    for i, w in enumerate(model.conv):           # [C_out][C_in][K]: row o is c-major, k-minor
        c.append(_array("float", f"conv{i}", w.astype(np.float32), fmt=_f))
    c.append(f"static const float *const conv[{n_blocks}] = {{{', '.join(f'conv{i}' for i in range(n_blocks))}}};\n")
    c.append(_array("float", "fc", model.fc.astype(np.float32), fmt=_f))
    block_tables, fc_tables = [], []
    for wi in range(n_widths):
        for i, r in enumerate([*model.requant[wi], model.fc_requant[wi]]):
            tag = f"w{wi}_{'fc' if i == n_blocks else f'b{i}'}"
            scale, bias = affine(r)
            c += [_array("float", f"{tag}_scale", scale, 8, _f), _array("float", f"{tag}_bias", bias, 8, _f)]
            (fc_tables if i == n_blocks else block_tables).append(f"{{{tag}_scale, {tag}_bias}}")
    c.append(f"static const har_float_affine affine[{len(block_tables)}] = {{\n    "
             + ",\n    ".join(block_tables) + "\n};\n")
    c.append(f"static const har_float_affine fc_affine[{n_widths}] = {{\n    " + ",\n    ".join(fc_tables) + "\n};\n\n")
    c.append("const har_float_net har_float_model = {\n"
             f"    {n_blocks}u, {a['in_channels']}u, {a['window']}u, {a['n_classes']}u, {n_widths}u,\n"
             "    channels, kernels, pools, padding, act_max, conv, fc, width_channels, affine, fc_affine\n};\n")
    header, src = out / "har_float_model.h", out / "har_float_model.c"
    header.write_text("".join(h))
    src.write_text("".join(c))
    return FloatModel(header, src, act_len, acc_len, input_len, small, full)


# ---------------------------------------------------------------------------------- host run

class _Scratch(C.Structure):
    _fields_ = [("act", C.c_void_p * 2), ("act_len", C.c_size_t), ("acc", C.c_void_p), ("acc_len", C.c_size_t)]


def host_library(model: IntegerModel, cache_dir: Path | str | None = None) -> Path:
    """har_float.c + the model's generated tables, compiled for the host (gcc -O2, shared)."""
    if shutil.which("gcc") is None:
        raise FirmwareToolError("the host C compiler 'gcc' (for the float baseline's host check) is not on PATH. "
                                "Install with (as root): apt-get update && apt-get install -y "
                                "--no-install-recommends gcc libc6-dev")
    with tempfile.TemporaryDirectory(prefix="streamhar-float-") as tmp:
        gen = generate_float(model, tmp)
        digest = hashlib.sha256(gen.source.read_bytes() + SOURCE.read_bytes()
                                + (BASELINE / "har_float.h").read_bytes()).hexdigest()[:16]
        out_dir = Path(cache_dir) if cache_dir is not None else HOST_CACHE
        lib = out_dir / f"libhar_float-{digest}.so"
        if lib.exists():
            return lib
        out_dir.mkdir(parents=True, exist_ok=True)
        part = out_dir / f".{lib.name}.{os.getpid()}"
        cmd = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", *FLOAT_DEFS,
               f"-I{BASELINE}", f"-I{tmp}", "-o", str(part), str(SOURCE), str(gen.source)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise FirmwareBuildError(f"float baseline host build failed (exit {proc.returncode}): {shlex.join(cmd)}\n"
                                     f"{proc.stderr.strip()[-4000:]}")
        os.replace(part, lib)
        return lib


def host_logits(model: IntegerModel, x: np.ndarray, width: int, cache_dir: Path | str | None = None) -> np.ndarray:
    """Float logits [N, n_classes] of windows x [N, C, L] (int8 codes, as the firmware gets them)
    at width index `width`, from the baseline's C on the host."""
    lib_path = host_library(model, cache_dir)
    lib = C.CDLL(str(lib_path))
    lib.har_float_run.argtypes = [C.c_void_p, C.c_uint32, C.c_void_p, C.POINTER(_Scratch), C.c_void_p]
    lib.har_float_run.restype = C.c_int
    net = C.addressof(C.c_char.in_dll(lib, "har_float_model"))
    act_len, acc_len = scratch_sizes(model)
    act = [np.zeros(act_len, np.float32) for _ in range(2)]
    acc = np.zeros(acc_len, np.float32)
    s = _Scratch((C.c_void_p * 2)(act[0].ctypes.data, act[1].ctypes.data), act_len, acc.ctypes.data, acc_len)
    xf = np.ascontiguousarray(x, np.float32)
    out = np.zeros((len(xf), model.arch["n_classes"]), np.float32)
    for b in range(len(xf)):
        rc = lib.har_float_run(net, width, xf[b].ctypes.data, C.byref(s), out[b].ctypes.data)
        if rc != 0:
            raise BaselineError(f"har_float_run (host, {lib_path}) returned {rc} for width index {width} "
                                f"(-1: no such width, -3: scratch too small)")
    return out


# ---------------------------------------------------------------------------------- float image

# The float32 image does not fit sifive_e's 16 KB of RAM (a block's float activations alone are
# 12–25 KB), so on riscv32 it runs on QEMU's `virt` machine: the same riscv32 port, flags and
# code, linked by boards/riscv32_virt/link.ld (RAM at 0x81000000). Instruction counts do not
# depend on the machine. `-cpu rv32,f=off,d=off,a=off` gives the CPU only what the FE310 has
# (RV32IMC), so a stray float instruction would trap rather than run in hardware.
VIRT_LDSCRIPT = FIRMWARE / "boards" / "riscv32_virt" / "link.ld"
RISCV32_VIRT = replace(BOARDS["riscv32"],
                       qemu_machine=("-M", "virt", "-bios", "none", "-cpu", "rv32,a=off,f=off,d=off"),
                       ram_bytes=16 << 20, flash_bytes=16 << 20, ram_origin=0x8100_0000, flash_origin=0x8000_0000,
                       stack_bytes=4096)


def float_board(board: str) -> Board:
    """Where the float image of `board` runs: the board itself, or riscv32 on QEMU virt."""
    return RISCV32_VIRT if board == "riscv32" else get_board(board)


def build_float_image(board: str, app_srcs, includes, defs, out_dir: Path | str, timeout_s: float = 600) -> Path:
    """toolchain.build for the float image: on riscv32 with the virt linker script (make's
    command-line LDSCRIPT overrides boards.mk's)."""
    extra = [f"LDSCRIPT={VIRT_LDSCRIPT}"] if board == "riscv32" else []
    return toolchain.build(board, out_dir, app_srcs, includes, defs, timeout_s=timeout_s, make_vars=extra)
