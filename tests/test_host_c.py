"""The host C library (`firmware/` kernels and runtime via `streamhar.inference.host_c`) equals the
numpy reference bit for bit: every kernel against its `ops.py` function on seeded random inputs
(negative accumulators, shift 1 and 62, exact halves, saturation, all-zero channels, narrow width
slices of packed rows, ties), and `HostCEngine` against `IntegerEngine` on a tiny exported model
and on every validation window of both bundled models, at every width."""
from __future__ import annotations

import os
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from streamhar.errors import StreamharError
from streamhar.inference import IntegerEngine, export_bundle, ops
from streamhar.inference import host_c
from streamhar.inference.host_c import HostCEngine, HostCError
from streamhar.inference.packing import pack_ternary

from test_int_engine import make_bundle, synthetic, tiny_config

I32 = np.iinfo(np.int32)


def ternary(rng, shape, p_zero=0.5) -> np.ndarray:
    codes = rng.choice(np.array([-1, 0, 1], np.int8), size=shape, p=[(1 - p_zero) / 2, p_zero, (1 - p_zero) / 2])
    return codes.astype(np.int8)


def test_library_builds_and_a_broken_build_names_the_command(tmp_path, monkeypatch):
    lib = host_c.build_library()
    assert lib.exists() and lib.name == "libstreamhar_host.so"
    assert host_c.build_library() == lib                        # up to date: no rebuild
    monkeypatch.setenv("CC", "gcc -include /nonexistent/missing_header.h")
    with pytest.raises(HostCError, match=r"compilation failed.*gcc -include /nonexistent.*-std=c99(.|\n)*missing_header"):
        host_c.build_library(tmp_path, force=True)
    assert not list(tmp_path.iterdir())                         # no half-built file left behind


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_conv1d_ternary_reads_packed_rows_and_width_slices(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    for trial in range(60):
        c_in, c_out, k = rng.integers(1, 12), rng.integers(1, 10), int(rng.integers(1, 8))
        padding = int(rng.integers(0, 4))
        t = int(rng.integers(max(1, k - 2 * padding), 40))
        codes = ternary(rng, (c_out, c_in, k), p_zero=rng.uniform(0, 0.9))
        codes[rng.integers(c_out)] = 0                          # an all-zero output channel
        packed = pack_ternary(codes)
        n_out, n_in = int(rng.integers(1, c_out + 1)), int(rng.integers(1, c_in + 1))
        x = rng.integers(info.min, info.max + 1, (3, n_in, t)).astype(dtype)
        if trial % 7 == 0:
            x[:] = info.min if dtype == np.int8 else info.max     # extremes everywhere
        got = host_c.conv1d_ternary_packed(x, packed, k, padding, n_out)
        want = ops.conv1d_ternary(x, codes[:n_out, :n_in], padding)
        assert got.dtype == np.int32 and np.array_equal(got, want), (trial, c_in, c_out, k, padding, t, n_out, n_in)
        if n_out == c_out and n_in == c_in:
            assert np.array_equal(host_c.conv1d_ternary(x, codes, padding), want)


def test_maxpool1d():
    rng = np.random.default_rng(2)
    for pool in (1, 2, 3, 4):
        for t in (pool, 7, 16, 33):
            acc = rng.integers(I32.min, I32.max, (2, 5, t), endpoint=True).astype(np.int32)
            acc[0, 1] = I32.min
            assert np.array_equal(host_c.maxpool1d(acc, pool), ops.maxpool1d(acc, pool))


def requant_case(rng, c, shift_range=(1, 62)):
    m = rng.integers(-(2 ** 30), 2 ** 30, c, endpoint=True).astype(np.int32)
    m[: c // 3] = rng.integers(-4, 5, c // 3)                    # small m: exact halves of small values
    shift = rng.integers(*shift_range, c, endpoint=True).astype(np.int32)
    shift[0], shift[-1] = shift_range
    bias = rng.integers(-(2 ** 61), 2 ** 61, c).astype(np.int64)
    bias[1::2] //= np.int64(1) << rng.integers(0, 60, len(bias[1::2]))
    return m, shift, bias


def test_requantize_rounding_clamping_and_shift_edges():
    rng = np.random.default_rng(3)
    for trial in range(40):
        c, t = int(rng.integers(2, 12)), int(rng.integers(1, 30))
        acc = rng.integers(I32.min, I32.max, (3, c, t), endpoint=True).astype(np.int32)
        acc[1] = rng.integers(-9, 10, (c, t))                   # small, negative: halves round up
        shift_range = [(1, 62), (1, 3), (20, 40), (55, 62)][trial % 4]
        m, shift, bias = requant_case(rng, c, shift_range)
        hi = [255, 3, 15, 1][trial % 4]
        got = host_c.requantize(acc, m, shift, bias, 0, hi)
        assert np.array_equal(got, ops.requantize(acc, m, shift, bias, 0, hi))
    # exact halves at shift 1: (m·acc + 1) >> 1 for acc = −3..3 is round half up, arithmetic
    acc = np.arange(-3, 4, dtype=np.int32)[None, None]
    one = np.ones(1, np.int32)
    assert np.array_equal(host_c.requantize(acc, one, one, np.zeros(1, np.int64) + 4, 0, 255),
                          ops.requantize(acc, one, one, np.zeros(1, np.int64) + 4, 0, 255))
    # a [B, C] accumulator and a scalar shift, as ops.requantize accepts
    acc2 = rng.integers(-1000, 1000, (4, 6)).astype(np.int32)
    m2, _, b2 = requant_case(rng, 6)
    assert np.array_equal(host_c.requantize(acc2, m2, 7, b2 // 2 ** 40, 0, 255), ops.requantize(acc2, m2, 7, b2 // 2 ** 40, 0, 255))


def test_requantize_logits_saturates():
    rng = np.random.default_rng(4)
    for trial in range(40):
        k = int(rng.integers(2, 20))
        acc = rng.integers(I32.min, I32.max, (5, k), endpoint=True).astype(np.int32)
        m, shift, bias = requant_case(rng, k, [(1, 62), (1, 4), (10, 30)][trial % 3])
        got = host_c.requantize_logits(acc, m, shift, bias)
        want = ops.requantize_logits(acc, m, shift, bias)
        assert got.dtype == np.int32 and np.array_equal(got, want)
    big = np.array([[I32.max, I32.min]], np.int32)
    sat = host_c.requantize_logits(big, np.full(2, 2 ** 30, np.int32), np.ones(2, np.int32), np.zeros(2, np.int64))
    assert sat.tolist() == [[I32.max, I32.min]]


def test_global_sum_pool_and_fc_int8_with_narrow_slices():
    rng = np.random.default_rng(5)
    for t in (1, 7, 125):
        x = rng.integers(0, 256, (3, 9, t)).astype(np.uint8)
        x[:, 4] = 0                                             # an all-zero channel
        x[0, 2] = 255
        assert np.array_equal(host_c.global_sum_pool(x), ops.global_sum_pool(x))
    for n_feat in (1, 5, 32):
        codes = rng.integers(-127, 128, (11, 32)).astype(np.int8)
        feats = rng.integers(0, 255 * 125, (4, n_feat)).astype(np.int32)
        feats[0] = 255 * 125
        assert np.array_equal(host_c.fc_int8(feats, codes, n_feat), ops.fc_int8(feats, codes[:, :n_feat]))


def test_argmax_margin_ties_and_extremes():
    rng = np.random.default_rng(6)
    z = rng.integers(-3, 4, (500, 5)).astype(np.int32)         # many ties
    z[0] = [I32.max, I32.min, I32.min, I32.min, I32.min]        # margin beyond int32
    z[1] = 7
    z[2] = [I32.min] * 5
    wide = rng.integers(I32.min, I32.max, (200, 19), endpoint=True).astype(np.int32)
    for logits in (z, wide, z[3]):
        cls, margin = host_c.argmax_margin(logits)
        want_cls, want_margin = ops.argmax_margin(logits)
        assert np.array_equal(cls, want_cls) and np.array_equal(margin, want_margin)
    assert host_c.argmax_margin(z[0])[1] == 2 ** 32 - 1 and host_c.argmax_margin(z[1]) == (0, 0)


def test_quantize_raw_i16_rounds_clamps_and_writes_channel_major():
    rng = np.random.default_rng(7)
    seen: set[int] = set()
    for trial in range(40):
        c, n = int(rng.integers(1, 46)), int(rng.integers(1, 30))
        raw = rng.integers(-32768, 32768, (3, n, c)).astype(np.int16)
        raw[0, 0] = -32768
        raw[1, 0] = 32767
        raw[2] = rng.integers(-9, 10, (n, c))                      # small values: exact halves round up
        shift = rng.integers(*[(1, 62), (1, 4), (30, 45)][trial % 3], c, endpoint=True).astype(np.int32)
        m = rng.integers(-(2 ** 31), 2 ** 31, c).astype(np.int32)
        m[: c // 2] = rng.integers(-5, 6, c // 2)
        bias = rng.integers(-(2 ** 62) + 1, 2 ** 62, c).astype(np.int64) >> rng.integers(0, 62, c)
        got = host_c.quantize_raw_i16(raw, m, shift, bias)
        want = ops.quantize_raw_i16(raw, m, shift, bias)
        assert got.dtype == np.int8 and got.shape == (3, c, n) and np.array_equal(got, want), trial
        seen |= set(np.unique(want).tolist())
    assert {-128, 0, 127} <= seen                                   # both clamps were hit
    # exact halves at shift 1: (raw + 1) >> 1 is round half up, on both sides of zero
    raw = np.arange(-5, 6, dtype=np.int16)[:, None]
    one = np.ones(1, np.int32)
    assert ops.quantize_raw_i16(raw, one, one, np.zeros(1, np.int64))[0].tolist() == [-2, -2, -1, -1, 0, 0, 1, 1, 2, 2, 3]
    # one sample into column t of a [C][L] window: the device's ring write
    lib = host_c.load_library()
    window = np.zeros((4, 10), np.int8)
    sample = np.array([[100, -100, 3000, -3000]], np.int16)
    m4, s4, b4 = np.full(4, 3, np.int32), np.full(4, 4, np.int32), np.full(4, 16, np.int64)
    lib.quantize_raw_i16(sample.ctypes.data, 1, 4, m4.ctypes.data, s4.ctypes.data, b4.ctypes.data,
                         window[:, 7:].ctypes.data, 10)
    assert np.array_equal(window[:, 7], ops.quantize_raw_i16(sample, m4, s4, b4)[:, 0])
    assert not window[:, :7].any() and not window[:, 8:].any()
    with pytest.raises(ValueError, match="shift must be in 1..62"):
        ops.quantize_raw_i16(raw, one, np.zeros(1, np.int32), np.zeros(1, np.int64))


@pytest.fixture(scope="module")
def tiny_model():
    return export_bundle(make_bundle())


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "packed"])
def test_host_engine_equals_integer_engine_on_the_tiny_model(tiny_model, dense):
    ref, c = IntegerEngine(tiny_model), HostCEngine(tiny_model, dense=dense)
    x = ref.quantize(synthetic(np.random.default_rng(7), 300) * np.float32(8))   # 8×: into the clamp
    assert (x == -128).any() and (x == 127).any()               # the int8 clamp is exercised
    for width in tiny_model.widths:
        got, want = c.run(x, width), ref.run(x, width)
        assert got.dtype == np.int32 and got.shape == want.shape and np.array_equal(got, want), width
        assert np.array_equal(c.run(x[5], width), want[5])      # one window [C, L]
        assert np.array_equal(c.run(x[6:7], width), want[6:7])  # a batch of one [1, C, L]
        assert np.array_equal(c.run(x[5], width), want[5])      # the one-window buffer is reused
        cls, margin = c.classify(x, width)
        assert np.array_equal(cls, ref.classify(x, width)[0]) and np.array_equal(margin, ref.classify(x, width)[1])


@pytest.fixture(scope="module")
def portable_lib(tmp_path_factory):
    """The same sources built for the compiler's baseline target: the dense path's plain C loops."""
    path = host_c.build_library(tmp_path_factory.mktemp("portable"), opt=host_c.PORTABLE_OPT)
    return host_c.load_library(path)


def test_native_build_uses_avx2_where_the_cpu_has_it(tiny_model):
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    want = "avx2" if " avx2" in flags and host_c._OPT == ("-O3", "-march=native") else None
    assert HostCEngine(tiny_model).simd in ("avx2", "portable")
    if want:
        assert HostCEngine(tiny_model).simd == want


@pytest.mark.parametrize("shape", ["tiny", "odd"])
def test_portable_and_simd_dense_paths_equal_the_reference(tiny_model, portable_lib, shape):
    # "odd": channel counts that are not multiples of the 8-lane granule at any width, a pool of 3
    # and a block without pooling, so padded channels, the 8-lane tail and the generic pool run.
    model = tiny_model if shape == "tiny" else export_bundle(make_bundle(tiny_config(
        channels=(12, 20), kernels=(7, 3), pools=(3, 1)), seed=3))
    ref = IntegerEngine(model)
    x = ref.quantize(synthetic(np.random.default_rng(11), 200) * np.float32(6))
    portable = HostCEngine(model, lib=portable_lib)
    assert portable.simd == "portable"
    for width in model.widths:
        want = ref.run(x, width)
        assert np.array_equal(portable.run(x, width), want), width
        assert np.array_equal(HostCEngine(model).run(x, width), want), width


def test_host_engine_refuses_bad_inputs(tiny_model):
    c = HostCEngine(tiny_model)
    with pytest.raises(StreamharError, match="expected int8 windows"):
        c.run(np.zeros((2, 6, 64), np.float32))
    with pytest.raises(StreamharError, match="expected int8 windows"):
        c.run(np.zeros((2, 5, 64), np.int8))
    with pytest.raises(StreamharError, match="not one of the model's widths"):
        c.run(np.zeros((2, 6, 64), np.int8), 0.3)


@pytest.mark.parametrize("name", ["dsads", "usc-had"])
def test_host_engine_equals_integer_engine_on_every_validation_window(name, data_dir):
    from streamhar.models.bundle import load_bundle
    from streamhar.models.data import bundle_split

    bundle = load_bundle(f"bundled:{name}")
    model = export_bundle(bundle)
    ref, c = IntegerEngine(model), HostCEngine(model)
    split = bundle_split(bundle, data_dir, "validation")
    subjects = {r.subject for r in split.recordings}
    assert subjects == ({"p6"} if name == "dsads" else {"11", "12"})
    x = ref.quantize(split.windows.x)
    assert len(x) > 100
    # Windows are independent (engine.py), so the numpy reference runs in chunks on every core
    # (its int64 matmul releases the GIL) while the C library (ctypes releases the GIL) runs too.
    chunks = np.array_split(np.arange(len(x)), max(2, 4 * (os.cpu_count() or 1)))
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {w: (pool.submit(c.run, x, w), [pool.submit(ref.run, x[i], w) for i in chunks])
                   for w in model.widths}
    packed = HostCEngine(model, dense=False)      # the firmware's path: weights read packed
    for width, (c_future, ref_futures) in futures.items():
        got, want = c_future.result(), np.concatenate([f.result() for f in ref_futures])
        mismatch = np.flatnonzero((got != want).any(axis=1))
        assert not mismatch.size, f"{name} width {width}: {mismatch.size} of {len(x)} windows differ, first {mismatch[:5]}"
        assert np.array_equal(packed.run(x, width), want), f"{name} width {width}: packed path differs"


@pytest.mark.parametrize("name", ["dsads", "usc-had"])
def test_portable_dense_path_equals_the_reference_on_validation_windows(name, data_dir, portable_lib):
    from streamhar.models.bundle import load_bundle
    from streamhar.models.data import bundle_split

    bundle = load_bundle(f"bundled:{name}")
    model = export_bundle(bundle)
    ref = IntegerEngine(model)
    x = ref.quantize(bundle_split(bundle, data_dir, "validation").windows.x)
    x = x[np.random.default_rng(0).choice(len(x), 300, replace=False)]
    portable = HostCEngine(model, lib=portable_lib)
    for width in model.widths:
        assert np.array_equal(portable.run(x, width), ref.run(x, width)), f"{name} width {width}"


@pytest.mark.parametrize("shape", ["tiny", "odd"])
def test_firmware_path_with_channel_tiles_traces_and_cascade_equals_the_reference(tiny_model, shape):
    # The firmware runs har_net_run with the smallest accumulator buffer its RAM allows: output
    # channels in tiles of acc_len // T_conv. Every tile size gives the reference's logits; the
    # per-layer checksums equal those of IntegerEngine.trace; har_cascade_run equals Cascade.
    from streamhar.firmware.checksum import trace_checksums
    from streamhar.inference.cascade import Cascade

    model = tiny_model if shape == "tiny" else export_bundle(make_bundle(tiny_config(
        channels=(12, 20), kernels=(7, 3), pools=(3, 1)), seed=3))
    ref = IntegerEngine(model)
    x = ref.quantize(synthetic(np.random.default_rng(5), 40) * np.float32(4))
    lib = host_c.load_library()
    probe = HostCEngine(model, dense=False)
    act_min, acc_min = C_size(), C_size()
    assert lib.har_net_scratch_min(C_ref(probe.net), C_ref(act_min), C_ref(acc_min)) == 0
    longest_conv = max(model.arch["window"], *model.arch["lengths"])     # "same" padding: T_conv = T_in
    assert acc_min.value == max(longest_conv, model.arch["channels"][-1] + model.arch["n_classes"])
    assert acc_min.value < probe.scratch_sizes[1]
    for acc_len in (acc_min.value, acc_min.value + 1, 3 * model.arch["window"] - 1, None):
        c = HostCEngine(model, dense=False, acc_len=acc_len)
        for width in model.widths:
            assert np.array_equal(c.run(x, width), ref.run(x, width)), (acc_len, width)
    with pytest.raises(HostCError, match="scratch buffers too small"):
        HostCEngine(model, dense=False, acc_len=acc_min.value - 1).run(x, model.widths[0])
    c = HostCEngine(model, dense=False, acc_len=acc_min.value)
    for width in model.widths:
        sums = trace_checksums(ref.trace(x, width))
        for i in range(len(x)):
            logits, trace = c.trace(x[i], width)
            assert np.array_equal(logits, ref.run(x[i], width)) and np.array_equal(trace, sums[i]), (width, i)
    small, full = model.widths[0], model.widths[-1]
    margins = ref.classify(x, small)[1]
    for threshold in (-1, int(np.median(margins)), int(margins.max())):
        want = Cascade(ref, {w: 1 for w in model.widths}, threshold, small, full).process(x)
        got = [c.cascade(x[i], small, full, threshold) for i in range(len(x))]
        assert [g[0] for g in got] == want.classes.tolist()
        assert [g[1] for g in got] == want.escalated.astype(int).tolist()
        assert [g[2] for g in got] == want.margins.tolist()
        for i, g in enumerate(got):
            assert np.array_equal(g[3], ref.run(x[i], full if want.escalated[i] else small))
    assert any(g[1] for g in got) and threshold == int(margins.max())       # the last one escalates all


def C_size():
    import ctypes
    return ctypes.c_size_t()


def C_ref(obj):
    import ctypes
    return ctypes.byref(obj)
