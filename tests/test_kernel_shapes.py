"""`conv1d_ternary` (firmware/kernels/har_kernels.c) on awkward shapes, bit for bit against
`ops.conv1d_ternary`, on every build of the kernel:

- the host library, native (-O3 -march=native) and portable (-O2): the portable C paths;
- the cross builds for both boards under QEMU (tests/firmware_apps/kernel_check.c): on stm32f4
  the Cortex-M4 DSP path (UXTAB16/SXTAB16 lanes), which no host build runs, on riscv32 the
  portable path as the RV32IMC compiler builds it.

The shapes hit every branch of the kernel: output lengths that are not a multiple of the 16- and
8-wide blocks, shorter than a block and shorter than the kernel; K = 1, even K, the largest K of
the fast path and one beyond it; no padding, "same" padding and padding >= K; one input channel;
rows longer than one 128-code chunk (several chunks per row) and exactly one chunk; narrow width
slices (a prefix of longer packed rows); output channels in tiles of one, as har_net_run calls it
when RAM is short; int8 inputs at -128 and 127 and uint8 at 255 with all-(+1) and all-(-1) rows
(the 16-bit lanes' worst case) and all-zero rows; the bundled models' layer shapes. The board
image also checks that a call writes exactly its n·t_out accumulators and reports the stack it
used. A missing cross tool fails the board tests with check_tools' message; nothing is skipped.
"""
from __future__ import annotations

import ctypes as C
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from streamhar.firmware import toolchain
from streamhar.firmware.toolchain import BOARDS
from streamhar.inference import host_c, ops
from streamhar.inference.packing import pack_ternary

CHECK_APP = Path(__file__).resolve().parent / "firmware_apps" / "kernel_check.c"
MAGIC_IN, MAGIC_OUT = 0x4B48434B, 0x5345524B
X_MAX, W_MAX, ACC_MAX = 4096, 3072, 1024       # kernel_check.c's buffers
STACK_LIMIT = 768                               # bytes of stack a call may use (the boards reserve 1536)


@dataclass(frozen=True)
class Case:
    n_in: int
    t_in: int
    n_out: int
    k: int
    pad: int
    dtype: type = np.uint8
    c_full: int = 0          # input channels of the packed rows (a narrow slice reads a prefix); 0: n_in
    tile: int = 0            # output channels per call; 0: all
    x: str = "random"        # "random", "min", "max"
    w: str = "random"        # "random", "zero", "plus", "minus"
    p_zero: float = 0.15

    @property
    def t_out(self) -> int:
        return max(self.t_in + 2 * self.pad - self.k + 1, 0)


def cases() -> list[Case]:
    out: list[Case] = []
    for dtype in (np.uint8, np.int8):
        # output lengths around the 16- and 8-wide blocks, below a block, below the kernel
        for t_in in (1, 2, 3, 5, 7, 8, 9, 13, 15, 16, 17, 23, 24, 25, 31, 33, 40, 47):
            for k, pad in ((3, 1), (5, 2), (7, 3), (1, 0), (3, 0), (2, 1), (4, 2), (5, 1)):
                if t_in + 2 * pad >= k:
                    out.append(Case(5, t_in, 3, k, pad, dtype, c_full=7))
        out += [
            Case(1, 30, 2, 3, 1, dtype),                        # one input channel
            Case(1, 30, 2, 1, 0, dtype),
            Case(3, 20, 2, 12, 5, dtype),                       # the largest K of the fast path
            Case(3, 20, 2, 12, 11, dtype),
            Case(3, 20, 2, 13, 6, dtype),                       # K beyond it: the plain loop
            Case(4, 10, 2, 3, 3, dtype),                        # padding >= K: the plain loop
            Case(4, 2, 2, 3, 2, dtype),                         # t_in < K
            Case(43, 20, 3, 3, 1, dtype),                       # 129 codes: two chunks
            Case(42, 20, 3, 3, 1, dtype),                       # 126 codes: one chunk
            Case(128, 9, 2, 1, 0, dtype),                       # 128 codes, K = 1
            Case(129, 9, 2, 1, 0, dtype),
            Case(60, 19, 4, 5, 2, dtype, c_full=64, tile=1),    # narrow slice, tiles of one
            Case(20, 50, 9, 7, 3, dtype, tile=2),
            Case(96, 15, 5, 3, 1, dtype, tile=1),
            Case(12, 33, 3, 3, 1, dtype, p_zero=0.9),
        ]
        for x in ("min", "max"):
            for w in ("plus", "minus"):
                for n_in, t_in, k, pad in ((43, 40, 3, 1), (128, 17, 1, 0), (26, 20, 5, 2), (19, 24, 7, 3),
                                           (40, 5, 3, 1)):
                    out.append(Case(n_in, t_in, 2, k, pad, dtype, x=x, w=w))
        out.append(Case(30, 40, 3, 5, 2, dtype, w="zero"))
        out.append(Case(30, 40, 3, 5, 2, dtype, x="max", w="zero"))
    # the bundled models' shapes (output channels cut to fit the board image's buffers)
    for n_in, t_in, n_out, k, dtype in ((6, 200, 32, 7, np.int8), (32, 100, 16, 5, np.uint8),
                                        (64, 50, 9, 5, np.uint8), (96, 25, 12, 3, np.uint8),
                                        (45, 62, 12, 5, np.int8), (48, 62, 16, 5, np.uint8),
                                        (64, 31, 16, 3, np.uint8), (96, 15, 16, 3, np.uint8),
                                        (24, 15, 32, 3, np.uint8), (8, 100, 16, 5, np.uint8)):
        out.append(Case(n_in, t_in, n_out, k, (k - 1) // 2, dtype, tile=max(1, ACC_MAX // t_in)))
    return out


def materialise(case: Case, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x [n_in, t_in], codes [n_out, c_full, k], packed rows [n_out, row_bytes])."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(case.dtype)
    c_full = case.c_full or case.n_in
    if case.x == "random":
        x = rng.integers(info.min, info.max, (case.n_in, case.t_in), endpoint=True)
    else:
        x = np.full((case.n_in, case.t_in), info.min if case.x == "min" else info.max)
    x = x.astype(case.dtype)
    shape = (case.n_out, c_full, case.k)
    if case.w == "random":
        p = case.p_zero
        codes = rng.choice(np.array([-1, 0, 1], np.int8), size=shape, p=[(1 - p) / 2, p, (1 - p) / 2])
    else:
        codes = np.full(shape, {"zero": 0, "plus": 1, "minus": -1}[case.w], np.int8)
    codes = codes.astype(np.int8)
    return x, codes, pack_ternary(codes)


def reference(case: Case, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
    return ops.conv1d_ternary(x[None], codes[:, :case.n_in], case.pad)[0]


def run_host(lib: C.CDLL, case: Case, x: np.ndarray, packed: np.ndarray) -> np.ndarray:
    """The kernel called as har_net_run does: tiles of `case.tile` output channels, each into the
    start of one accumulator buffer, with canaries after the tile's n·t_out values."""
    x = np.ascontiguousarray(x)
    packed = np.ascontiguousarray(packed)
    rb, t_out = packed.shape[1], case.t_out
    tile = case.tile or case.n_out
    out = np.empty((case.n_out, t_out), np.int32)
    kind = host_c.HAR_IN_S8 if case.dtype == np.int8 else host_c.HAR_IN_U8
    for o0 in range(0, case.n_out, tile):
        n = min(tile, case.n_out - o0)
        buf = np.full(n * t_out + 16, 0x5A5A5A5A, np.int32)
        got = lib.conv1d_ternary(x.ctypes.data, kind, case.n_in, case.t_in, packed[o0:].ctypes.data, rb, n,
                                 case.k, case.pad, buf.ctypes.data)
        assert got == t_out, (case, got)
        assert (buf[n * t_out:] == 0x5A5A5A5A).all(), f"{case}: wrote past its {n}·{t_out} accumulators"
        out[o0:o0 + n] = buf[:n * t_out].reshape(n, t_out)
    return out


@pytest.fixture(scope="module")
def portable_lib(tmp_path_factory):
    path = host_c.build_library(tmp_path_factory.mktemp("portable"), opt=host_c.PORTABLE_OPT)
    return host_c.load_library(path)


@pytest.mark.parametrize("build", ["native", "portable"])
def test_host_builds_equal_the_reference_on_awkward_shapes(build, portable_lib):
    lib = host_c.load_library() if build == "native" else portable_lib
    for i, case in enumerate(cases()):
        x, codes, packed = materialise(case, i)
        got = run_host(lib, case, x, packed)
        want = reference(case, x, codes)
        assert np.array_equal(got, want), f"{build}: {case}"


def test_host_shapes_beyond_the_board_buffers(portable_lib):
    """Rows whose 16-bit input offsets would overflow (chunks shrink to fit) and a long row."""
    for lib in (host_c.load_library(), portable_lib):
        for i, case in enumerate((Case(40, 3000, 2, 3, 1), Case(3, 70000, 2, 3, 1, np.int8),
                                  Case(600, 120, 2, 3, 1), Case(300, 64, 3, 5, 2, np.int8))):
            x, codes, packed = materialise(case, 1000 + i)
            assert np.array_equal(run_host(lib, case, x, packed), reference(case, x, codes)), case


def check_input(all_cases: list[Case]) -> tuple[bytes, list[np.ndarray]]:
    blob = [struct.pack("<2I", MAGIC_IN, len(all_cases))]
    wants = []
    for i, case in enumerate(all_cases):
        x, codes, packed = materialise(case, i)
        assert x.nbytes <= X_MAX and packed.nbytes <= W_MAX, case
        assert case.t_out * (case.tile or case.n_out) <= ACC_MAX, case
        blob.append(struct.pack("<8I", case.n_in, case.t_in, case.n_out, case.k, case.pad,
                                0 if case.dtype == np.int8 else 1, packed.shape[1], case.tile))
        for a in (x, packed):
            raw = a.tobytes()
            blob.append(raw + bytes(-len(raw) % 4))
        wants.append(reference(case, x, codes))
    return b"".join(blob), wants


@pytest.fixture(scope="module", params=sorted(BOARDS))
def board(request) -> str:
    toolchain.check_tools(request.param)     # a missing tool fails here, naming the apt-get line
    return request.param


def test_board_builds_equal_the_reference_on_awkward_shapes(board, tmp_path):
    all_cases = cases()
    blob, wants = check_input(all_cases)
    elf = toolchain.build(board, tmp_path / "build", [CHECK_APP])
    run = tmp_path / "run"
    run.mkdir()
    (run / "cases.bin").write_bytes(blob)
    rc, _, err = toolchain.run_qemu(board, elf, cwd=run, timeout_s=300)
    assert rc == 0, f"{board}: kernel_check exited {rc} (10 open, 11 read, 12 too large, 13 write, " \
                    f"14 canary overwritten, 15 wrong t_out)\n{err[-2000:]}"
    res = (run / "results.bin").read_bytes()
    magic, n = struct.unpack_from("<2I", res)
    assert (magic, n) == (MAGIC_OUT, len(all_cases))
    at = 8
    for case, want in zip(all_cases, wants):
        (t_out,) = struct.unpack_from("<I", res, at)
        at += 4
        assert t_out == case.t_out, case
        got = np.frombuffer(res, np.int32, case.n_out * t_out, at).reshape(case.n_out, t_out)
        at += 4 * case.n_out * t_out
        assert np.array_equal(got, want), f"{board}: {case}"
    assert at == len(res)
    (stack,) = struct.unpack("<I", (run / "stack.bin").read_bytes())
    assert 0 < stack <= STACK_LIMIT, f"{board}: conv1d_ternary used {stack} bytes of stack"
