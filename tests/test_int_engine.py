"""Integer export and engine: the integer network reproduces the fake-quantized torch model, the
`.shm` file round-trips bit for bit and refuses damaged files, inputs and exports are checked.

The torch model is tiny and built with non-trivial parameters on purpose: random BN affine
parameters with a negative γ in every BN, random PACT clips, an all-zero ternary channel, random
FC biases, and BN statistics calibrated on synthetic windows (train-mode passes, no gradients).

Tolerance: integer logits / 65536 may differ from the torch logits by the logit rounding
(2^-17) plus the effect of activation codes that the float32 graph and the exact integer path
round to neighbouring codes (values within float32 error of a rounding boundary): LOGIT_TOL.
"""
from __future__ import annotations

import dataclasses
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamhar.errors import StreamharError
from streamhar.inference import (LOGIT_SCALE, ExportError, IntegerEngine, ShmFormatError, export_bundle,
                                 load_shm, save_shm)
from streamhar.inference import ops
from streamhar.inference.packing import InvalidCode, pack_ternary, unpack_ternary
from streamhar.models.bundle import Bundle
from streamhar.models.config import ModelConfig
from streamhar.models.har_cnn import HARNet
from streamhar.quant import InputQuantizer

LOGIT_TOL = 1e-3
WIDTHS = (0.25, 0.5, 1.0)
ZERO_CHANNEL = 3           # block 0 channel whose latent weights are all zero → α = 0
META = dict(channels=[f"acc_{a}" for a in "xyz"] + [f"gyr_{a}" for a in "xyz"], units=["g"] * 3 + ["dps"] * 3,
            class_names=["walk", "run", "sit", "stand", "lie"], window=64)


def tiny_config(**overrides) -> ModelConfig:
    base = dict(in_channels=6, n_classes=5, window=64, channels=(8, 16), kernels=(5, 3), pools=(2, 2), widths=WIDTHS)
    return ModelConfig(**{**base, **overrides})


def synthetic(rng: np.random.Generator, n: int) -> np.ndarray:
    """Noise plus per-window sinusoids; the spread drives some inputs into the int8 clamp."""
    x = rng.normal(0, 1.3, (n, 6, 64)) + np.sin(np.arange(64) / rng.uniform(2, 8, (n, 1, 1))) * rng.normal(0, 1, (n, 6, 1))
    return x.astype(np.float32)


def make_bundle(cfg: ModelConfig | None = None, seed: int = 0) -> Bundle:
    cfg = cfg or tiny_config()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = HARNet(cfg)
    rand = lambda *a: torch.from_numpy(rng.uniform(*a)).float()
    with torch.no_grad():
        model.branches[0].blocks[0].conv.weight[ZERO_CHANNEL] = 0
        for block in model.branches[0].blocks:
            block.act.alpha.fill_(float(rng.uniform(1.5, 4)))
            for bn in block.bn.bns:
                bn.weight.copy_(rand(0.5, 1.5, bn.num_features) * torch.tensor([-1.0] + [1.0] * (bn.num_features - 1)))
                bn.bias.copy_(rand(-0.3, 1.2, bn.num_features))
                bn.reset_running_stats()
                bn.momentum = None              # cumulative average over the calibration batches
        model.fc.bias.copy_(rand(-0.3, 0.3, tuple(model.fc.bias.shape)))
        model.train()
        for w in cfg.widths:
            model(torch.from_numpy(synthetic(rng, 512)), w)
    model.eval()
    return Bundle(model, cfg, np.full(6, 0.1, np.float32), np.full(6, 2.0, np.float32), dict(META), "tiny.safetensors")


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return make_bundle()


@pytest.fixture(scope="module")
def exported(bundle):
    return export_bundle(bundle)


@pytest.fixture(scope="module")
def windows():
    return synthetic(np.random.default_rng(1), 3000)


@pytest.fixture(scope="module")
def shm(exported, tmp_path_factory):
    path = save_shm(exported, tmp_path_factory.mktemp("shm") / "tiny.shm")
    return path, path.read_bytes()


def torch_run(bundle: Bundle, x: np.ndarray, width: float):
    """Float logits and every block's activation codes from the fake-quantized torch graph."""
    blocks, acts = bundle.model.branches[0].blocks, []
    hooks = [b.register_forward_hook(lambda mod, inp, out: acts.append(np.round(out.numpy() / mod.act.scale())))
             for b in blocks]
    with torch.no_grad():
        logits = bundle.model(torch.from_numpy(x), width).double().numpy()
    for h in hooks:
        h.remove()
    return logits, acts


def test_fixture_has_negative_gamma_and_zero_channel(bundle, exported):
    conv = bundle.model.branches[0].blocks[0].conv
    codes, alpha = conv.quantizer.codes(conv.weight)
    assert alpha[ZERO_CHANNEL] == 0 and not codes[ZERO_CHANNEL].any()
    assert not exported.conv[0][ZERO_CHANNEL].any()
    for wi, width in enumerate(WIDTHS):
        r0 = exported.requant[wi][0]
        assert r0.m[0] < 0                                   # γ < 0 → negative multiplier
        if len(r0) > ZERO_CHANNEL:
            assert r0.m[ZERO_CHANNEL] == 0                   # α = 0 → constant channel


@pytest.mark.parametrize("width", WIDTHS)
def test_integer_engine_matches_fake_quantized_torch(bundle, exported, windows, width):
    ref, ref_acts = torch_run(bundle, windows, width)
    *acts, logits = IntegerEngine(exported).trace(ops.quantize_input(windows, bundle.config.input_step), width)
    for a, r in zip(acts, ref_acts):            # hidden codes: equal but for rare boundary cases
        assert a.shape == r.shape
        diff = np.abs(a.astype(np.int64) - r)
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.999
    z = logits / LOGIT_SCALE
    assert np.abs(z - ref).max() <= LOGIT_TOL
    agree = z.argmax(1) == ref.argmax(1)
    assert agree.mean() >= 0.995
    top2 = np.sort(ref, axis=1)[:, -2:]
    assert ((top2[:, 1] - top2[:, 0])[~agree] <= 2 * LOGIT_TOL).all()


def test_quantize_input_matches_torch_input_quantizer(windows):
    q = ops.quantize_input(windows * 3, 1 / 32)
    assert q.dtype == np.int8 and q.min() == -128 and q.max() == 127
    assert np.array_equal(q, InputQuantizer(8, 1 / 32).codes(torch.from_numpy(windows * 3)).numpy())


def test_conv_and_pool_ops_match_torch():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (3, 4, 21))
    codes = rng.integers(-1, 2, (5, 4, 3)).astype(np.int8)
    acc = ops.conv1d_ternary(x, codes, 1)
    want = torch.nn.functional.conv1d(torch.from_numpy(x).double(), torch.from_numpy(codes).double(), padding=1)
    assert acc.dtype == np.int32 and np.array_equal(acc, want.numpy())
    pooled = ops.maxpool1d(acc, 2)
    assert pooled.shape == (3, 5, 10)                          # floor mode drops the 21st sample
    assert np.array_equal(pooled, torch.nn.functional.max_pool1d(want, 2).numpy())


def test_requantize_rounds_half_up_and_clamps():
    acc = np.array([[3, -3, 1000, -1000, 1]])                  # [B=1, C=5], all with m = 1, shift 1
    y = ops.requantize(acc, np.ones(5, np.int32), 1, np.zeros(5, np.int64), 0, 255)
    assert y.dtype == np.uint8 and y.tolist() == [[2, 0, 255, 0, 1]]   # 1.5→2, −1.5→−1→0, 0.5→1
    z = ops.requantize_logits(np.array([[-3, 5]]), np.array([1, 3], np.int32), np.array([1, 2]), np.array([0, 1]))
    assert z.dtype == np.int32 and z.tolist() == [[-1, 4]]     # −1.5 → −1; (15 + 1)/4 = 4


def test_argmax_margin_ties_go_to_the_lowest_index():
    cls, margin = ops.argmax_margin(np.array([[5, 9, 9, 1], [-2, -7, -3, -2**31]], np.int32))
    assert cls.tolist() == [1, 0] and margin.tolist() == [0, 1]


def test_batch_equals_single_and_classify(exported, windows):
    engine = IntegerEngine(exported)
    q = ops.quantize_input(windows[:12], 1 / 32)
    for width in WIDTHS:
        batch = engine.run(q, width)
        assert batch.dtype == np.int32 and batch.shape == (12, 5)
        assert np.array_equal(np.stack([engine.run(w, width) for w in q]), batch)
        cls, margin = engine.classify(q, width)
        assert np.array_equal(cls, batch.argmax(1)) and (margin >= 0).all()


def test_engine_quantize_applies_the_bundle_normalization(bundle, exported, windows):
    raw = windows[:4] * 2.0 + 0.1                              # source units for mean 0.1, std 2
    assert np.array_equal(IntegerEngine(exported).quantize(raw), ops.quantize_input(bundle.normalize(raw), 1 / 32))


@pytest.mark.parametrize("bad, shown", [
    (np.zeros((2, 6, 64), np.float32), "float32 [2, 6, 64]"),
    (np.zeros((2, 5, 64), np.int8), "int8 [2, 5, 64]"),
    (np.zeros((6, 63), np.int8), "int8 [6, 63]"),
    (np.zeros((64,), np.int8), "int8 [64]"),
])
def test_engine_rejects_wrong_inputs(exported, bad, shown):
    with pytest.raises(StreamharError, match=r"expected int8 windows of shape \[N, 6, 64\].*tiny.safetensors, got "
                                             + shown.replace("[", r"\[").replace("]", r"\]")):
        IntegerEngine(exported).run(bad)


def test_engine_rejects_an_untrained_width(exported):
    with pytest.raises(StreamharError, match=r"width 0.75 is not one of"):
        IntegerEngine(exported).run(np.zeros((6, 64), np.int8), 0.75)


def test_shm_round_trips_bit_exactly(exported, shm, windows, tmp_path):
    path, blob = shm
    loaded = load_shm(path)
    assert loaded.info == exported.info
    pairs = list(zip(loaded.conv, exported.conv)) + [(loaded.fc, exported.fc)]
    for rs_a, rs_b in zip(loaded.requant + [loaded.fc_requant], exported.requant + [exported.fc_requant]):
        for a, b in zip(rs_a, rs_b):
            pairs += [(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)]
    for a, b in pairs:
        assert a.dtype == b.dtype and np.array_equal(a, b)
    q = ops.quantize_input(windows[:200], 1 / 32)
    for width in WIDTHS:
        assert np.array_equal(IntegerEngine(loaded).run(q, width), IntegerEngine(exported).run(q, width))
    assert save_shm(loaded, tmp_path / "again.shm").read_bytes() == blob
    # the trailer is zlib's CRC-32 of everything before it, sections 8-byte aligned
    assert struct.unpack("<I", blob[-4:])[0] == zlib.crc32(blob[:-4])


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 5), st.integers(1, 6), st.integers(1, 7), st.randoms(use_true_random=False))
def test_ternary_pack_unpack_round_trips(o, i, k, rnd):
    codes = np.array([rnd.choice((-1, 0, 1)) for _ in range(o * i * k)], np.int8).reshape(o, i, k)
    packed = pack_ternary(codes)
    assert packed.dtype == np.uint8 and packed.shape == (o, -(-i * k // 4))
    assert np.array_equal(unpack_ternary(packed, codes.shape), codes)


def test_ternary_bit_layout_and_invalid_codes():
    # [+1, −1, 0, +1 | −1] → 0b01_00_11_01 = 77, then 0b11 with zero padding
    assert pack_ternary(np.array([[1, -1, 0, 1, -1]], np.int8)).tolist() == [[77, 3]]
    with pytest.raises(InvalidCode):
        unpack_ternary(np.array([[0b10]], np.uint8), (1, 4))
    with pytest.raises(InvalidCode):                             # padding must be 0b00
        unpack_ternary(np.array([[0b01_00_00_00]], np.uint8), (1, 3))


def _write(tmp_path, data: bytes, crc: bool = False):
    if crc:
        data = data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))
    path = tmp_path / "bad.shm"
    path.write_bytes(data)
    return path


def test_corrupted_byte_fails_the_checksum(shm, tmp_path):
    _, blob = shm
    for pos in (len(blob) - 40, len(blob) // 2, 100):           # data, middle, JSON header
        data = bytearray(blob)
        data[pos] ^= 0x04
        with pytest.raises(ShmFormatError, match=r"bad\.shm: checksum mismatch"):
            load_shm(_write(tmp_path, bytes(data)))


@pytest.mark.parametrize("cut", [4, 14, 200, -1, -30])
def test_truncated_file_is_named(shm, tmp_path, cut):
    _, blob = shm
    with pytest.raises(ShmFormatError, match=r"bad\.shm: truncated"):
        load_shm(_write(tmp_path, blob[:cut]))


def test_wrong_magic_and_unknown_version(shm, tmp_path):
    _, blob = shm
    with pytest.raises(ShmFormatError, match=r"bad\.shm: not a streamhar integer model.*magic"):
        load_shm(_write(tmp_path, b"PK\x03\x04" + blob[4:]))
    with pytest.raises(ShmFormatError, match=r"bad\.shm: \.shm format version 2; this streamhar reads version 1"):
        load_shm(_write(tmp_path, blob[:8] + struct.pack("<I", 2) + blob[12:], crc=True))


def test_invalid_two_bit_code_is_refused(shm, tmp_path):
    import json
    _, blob = shm
    header = json.loads(blob[16: 16 + struct.unpack_from("<I", blob, 12)[0]])
    off = next(s["offset"] for s in header["sections"] if s["name"] == "conv1.weight")
    data = bytearray(blob)
    data[off] = 0b10_00_00_00
    with pytest.raises(ShmFormatError, match=r"bad\.shm: section conv1\.weight: invalid 2-bit weight code"):
        load_shm(_write(tmp_path, bytes(data), crc=True))


@pytest.mark.parametrize("change, message", [
    (dict(weight_quant="fp32"), "conv0 weight quantizer 'fp32' cannot be exported.*export supports ternary-eq"),
    (dict(act_quant="ternary-act"), "activation quantizer 'ternary-act' cannot be exported.*pact-u8"),
    (dict(act_quant="pact-s8"), "activation quantizer 'pact-s8' cannot be exported"),
    (dict(fc_weight_quant="fp32"), "FC weight quantizer 'fp32' cannot be exported"),
    (dict(fusion="late", groups=((0, 1, 2), (3, 4, 5))), "late fusion cannot be exported yet"),
])
def test_export_refuses_unsupported_quantizers(change, message):
    cfg = tiny_config(**change)
    b = Bundle(HARNet(cfg).eval(), cfg, np.zeros(6, np.float32), np.ones(6, np.float32), dict(META))
    with pytest.raises(ExportError, match=message):
        export_bundle(b)


def test_export_refuses_mismatched_or_damaged_bundles(bundle):
    other = tiny_config(channels=(8, 12))
    cases = [
        (dataclasses.replace(bundle, config=other), "does not match its config"),
        (dataclasses.replace(bundle, mean=np.zeros(5, np.float32)), "normalization mean has shape"),
        (dataclasses.replace(bundle, std=np.zeros(6, np.float32)), "std must be > 0"),
        (dataclasses.replace(bundle, meta={**META, "class_names": ["a", "b"]}), "'class_names' must list 5"),
        (dataclasses.replace(bundle, meta={**META, "window": 128}), "meta window 128 differs"),
    ]
    for b, message in cases:
        with pytest.raises(ExportError, match=r"tiny\.safetensors: .*" + message):
            export_bundle(b)
    damaged = make_bundle()
    with torch.no_grad():
        damaged.model.branches[0].blocks[1].conv.weight[0, 0, 0] = float("nan")
    with pytest.raises(ExportError, match="NaN or infinite"):
        export_bundle(damaged)
