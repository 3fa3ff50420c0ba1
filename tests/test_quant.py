"""streamhar.quant: weight/activation/input quantizers, their STEs and the spec factory."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from streamhar.quant import (ACTIVATION_SPECS, PACT, WEIGHT_SPECS, BinaryWeights, FP32Activation,
                             FP32Weights, InputQuantizer, TernaryActivation, TernaryEQ, TernaryTWN,
                             UniformWeights, make_activation_quantizer, make_weight_quantizer,
                             parse_spec)

QUANTIZED_WEIGHT_SPECS = [s for s in WEIGHT_SPECS if s != "fp32"]
TERNARY = [TernaryEQ(0.05), TernaryEQ(0.3), TernaryTWN(), TernaryTWN(0.5)]
SHAPES = [(8, 5, 7), (6, 20)]   # conv1d [out, in, k] and linear [out, in]


def rand_w(shape, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * scale


def per_channel(t):
    return t.reshape(t.shape[0], -1)


def bcast(scale, w):
    return scale.reshape(-1, *([1] * (w.dim() - 1)))


def same_bits(a, b):
    """Bit-for-bit equality of two float tensors (so -0.0 != +0.0, unlike torch.equal)."""
    a, b = a.detach().contiguous(), b.detach().contiguous()
    assert a.dtype == b.dtype and a.shape == b.shape
    ints = {torch.float32: torch.int32, torch.float64: torch.int64}[a.dtype]
    return torch.equal(a.view(ints), b.view(ints))


# ---------------------------------------------------------------- weights: codes, bit-exactness

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("quant", TERNARY, ids=lambda q: q.spec)
def test_ternary_codes_three_valued_and_bit_exact(quant, shape):
    w = rand_w(shape, seed=1)
    q, scale = quant.codes(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (shape[0],)
    assert set(q.unique().tolist()) <= {-1, 0, 1}
    w_q = quant(w)
    assert same_bits(w_q, q.to(w.dtype) * bcast(scale, w))
    for c in range(shape[0]):
        vals = set(per_channel(w_q)[c].tolist())
        a = float(scale[c])
        assert a > 0 and vals <= {-a, 0.0, a}
    assert set(q.unique().tolist()) == {-1, 0, 1}
    # codes follow the sign of w wherever they are non-zero
    nz = q != 0
    assert torch.equal(q[nz].float(), torch.sign(w[nz]))


@settings(max_examples=40, deadline=None)
@given(spec=st.sampled_from(QUANTIZED_WEIGHT_SPECS + ["ternary-eq:xi=0.4", "ternary-twn:delta_factor=1.2"]),
       w=arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 4), st.integers(1, 3)),
                elements=st.sampled_from([0.0, 0.25, -0.25, 1e-3, -0.7, 0.7, 1.5, -2.0, 0.1])
                | st.floats(-2, 2, width=32)))
def test_weight_codes_bit_exact_any_tensor(spec, w):
    quant = make_weight_quantizer(spec)
    w = torch.from_numpy(w)
    q, scale = quant.codes(w)
    w_q = quant(w)
    assert q.dtype == torch.int8
    assert torch.isfinite(w_q).all() and torch.isfinite(scale).all()
    assert same_bits(w_q, q.to(w.dtype) * bcast(scale, w))
    assert (scale >= 0).all()
    if quant.bits == 1:
        assert set(q.unique().tolist()) <= {-1, 1}
    elif spec.startswith("ternary"):
        assert set(q.unique().tolist()) <= {-1, 0, 1}
    else:
        L = 2 ** (quant.bits - 1) - 1
        assert int(q.abs().max()) <= L


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_uniform_codes_range_and_scale(bits):
    w = rand_w((8, 5, 7), seed=2)
    quant = UniformWeights(bits)
    q, scale = quant.codes(w)
    L = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and int(q.min()) >= -L and int(q.max()) <= L
    torch.testing.assert_close(scale, per_channel(w).abs().amax(1) / L, rtol=0, atol=0)
    # the largest weight of every channel reaches the end code, with its sign
    idx = per_channel(w).abs().argmax(1)
    ends = per_channel(q).gather(1, idx[:, None]).squeeze(1)
    assert torch.equal(ends.abs(), torch.full_like(ends, L))
    # round-to-nearest: error at most half a step per channel
    err = (per_channel(quant(w)) - per_channel(w)).abs().amax(1)
    assert (err <= scale / 2 + 1e-7).all()
    assert same_bits(quant(w), q.float() * bcast(scale, w))
    assert quant.bits == bits and quant.spec == f"int{bits}"


def test_binary_codes_and_scale():
    w = rand_w((6, 20), seed=3)
    w[0, 0] = 0.0          # sign(0) must still give a valid ±1 code
    quant = BinaryWeights()
    q, scale = quant.codes(w)
    assert set(q.unique().tolist()) == {-1, 1}
    assert int(q[0, 0]) == 1
    torch.testing.assert_close(scale, w.abs().mean(1))
    assert same_bits(quant(w), q.float() * scale[:, None])
    assert quant.bits == 1 and quant.zero_fraction(w) == 0.0


def test_fp32_weights_identity():
    w = rand_w((4, 3, 5), seed=4)
    quant = FP32Weights()
    assert quant(w) is w and quant.bits == 32 and quant.spec == "fp32"
    with pytest.raises(ValueError, match="no integer codes"):
        quant.codes(w)


# ---------------------------------------------------------------- ternary: α, thresholds

@pytest.mark.parametrize("quant", TERNARY, ids=lambda q: q.spec)
def test_ternary_alpha_is_least_squares_optimum(quant):
    w = rand_w((8, 5, 7), seed=5).double()
    q, scale = quant.codes(w)
    for c in range(w.shape[0]):
        t = per_channel(q)[c].double()
        wc = per_channel(w)[c]
        # closed form via a least-squares solver on the single column t
        sol = torch.linalg.lstsq(t[:, None], wc[:, None]).solution.item()
        assert scale[c].item() == pytest.approx(sol, rel=1e-10)
        # brute force: no α on a fine grid does better for this mask
        grid = torch.linspace(0, 2 * sol, 2001, dtype=torch.float64)
        errs = ((wc[None, :] - grid[:, None] * t[None, :]) ** 2).sum(1)
        best = ((wc - scale[c] * t) ** 2).sum()
        assert best <= errs.min() + 1e-12
        # and the mean of |w| over the non-zero codes (TWN's rule)
        assert scale[c].item() == pytest.approx(wc.abs()[t != 0].mean().item(), rel=1e-12)


def test_twn_threshold_matches_formula():
    w = rand_w((8, 5, 7), seed=6).numpy()
    for factor in (0.7, 0.3, 1.1):
        quant = TernaryTWN(factor)
        q, scale = quant.codes(torch.from_numpy(w))
        flat = w.reshape(8, -1)
        delta = factor * np.abs(flat).mean(1, keepdims=True)
        expect = np.sign(flat) * (np.abs(flat) > delta)
        np.testing.assert_array_equal(q.numpy().reshape(8, -1), expect)
        np.testing.assert_allclose(quant.threshold(torch.from_numpy(w)).numpy(), delta[:, 0], rtol=1e-6)


def test_eq_threshold_matches_formula_and_tie_goes_to_zero():
    w = rand_w((8, 5, 7), seed=7).numpy()
    xi = 0.35
    q, _ = TernaryEQ(xi).codes(torch.from_numpy(w))
    flat = w.reshape(8, -1)
    expect = np.sign(flat) * (np.abs(flat) > xi * np.abs(flat).max(1, keepdims=True))
    np.testing.assert_array_equal(q.numpy().reshape(8, -1), expect)
    # |w| exactly at the threshold is zeroed: Δ = 0.5 · max = 0.5
    tie = torch.tensor([[1.0, 0.5, -0.5, 0.6, -0.2]])
    assert TernaryEQ(0.5).codes(tie)[0].tolist() == [[1, 0, 0, 1, 0]]


def test_eq_zero_fraction_grows_with_xi():
    w = rand_w((16, 8, 5), seed=8)
    fracs = [TernaryEQ(xi).zero_fraction(w) for xi in (0.0, 0.05, 0.2, 0.4, 0.6, 0.9)]
    assert all(a < b for a, b in zip(fracs, fracs[1:])), fracs
    assert fracs[0] == 0.0 and fracs[-1] > 0.9
    # zero_fraction is the fraction of zero codes
    q, _ = TernaryEQ(0.4).codes(w)
    assert TernaryEQ(0.4).zero_fraction(w) == int((q == 0).sum()) / q.numel()


@pytest.mark.parametrize("spec", QUANTIZED_WEIGHT_SPECS)
def test_all_zero_channel_is_safe(spec):
    w = rand_w((4, 3, 5), seed=9)
    w[1] = 0.0
    w.requires_grad_(True)
    quant = make_weight_quantizer(spec)
    w_q = quant(w)
    q, scale = quant.codes(w)
    assert torch.isfinite(w_q).all() and torch.isfinite(scale).all()
    assert float(scale[1]) == 0.0 and same_bits(w_q[1], torch.zeros_like(w_q[1]))
    if spec != "binary":
        assert torch.equal(q[1], torch.zeros_like(q[1]))
    assert (scale[[0, 2, 3]] > 0).all()
    w_q.sum().backward()
    assert torch.isfinite(w.grad).all()
    if spec.startswith("ternary"):
        assert quant.zero_fraction(w) >= 15 / 60


# ---------------------------------------------------------------- weights: STE

@pytest.mark.parametrize("spec", QUANTIZED_WEIGHT_SPECS)
def test_weight_ste_gradients(spec):
    w = rand_w((4, 3, 5), seed=10, scale=0.3)
    w[0, 0, 0], w[2, 1, 3] = 1.7, -1.3     # outside the clipped STE's |w| <= 1
    w.requires_grad_(True)
    r = rand_w((4, 3, 5), seed=11) + 2.0   # non-zero upstream gradient
    quant = make_weight_quantizer(spec)
    (quant(w) * r).sum().backward()
    if quant.ste_clip is None:
        expect = r
    else:
        expect = r * (w.detach().abs() <= quant.ste_clip)
        assert float(w.grad[0, 0, 0]) == 0.0 and float(w.grad[2, 1, 3]) == 0.0
    assert torch.equal(w.grad, expect)
    assert (w.grad != 0).sum() >= w.numel() - 2


def test_ternary_eq_trains_a_linear_regression():
    g = torch.Generator().manual_seed(12)
    x = torch.randn(256, 16, generator=g)
    w_true = 0.5 * torch.randint(-1, 2, (4, 16), generator=g).float()
    y = x @ w_true.T
    w = torch.nn.Parameter(torch.randn(4, 16, generator=g) * 0.1)
    quant = TernaryEQ(0.3)
    opt = torch.optim.Adam([w], lr=0.02)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = torch.mean((x @ quant(w).T - y) ** 2)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])
    # the learned ternary pattern matches the target's where the target is non-zero
    q, _ = quant.codes(w.detach())
    nz = w_true != 0
    assert (q[nz].float() == torch.sign(w_true[nz])).float().mean() > 0.9


# ---------------------------------------------------------------- activations

@pytest.mark.parametrize("bits", [2, 4, 8])
def test_pact_unsigned_levels_and_range(bits):
    pact = PACT(bits=bits, init_clip=3.0)
    x = torch.linspace(-5, 5, 4001)
    y = pact(x)
    assert y.unique().numel() <= 2 ** bits
    assert y.unique().numel() == 2 ** bits       # the sweep hits every level
    assert float(y.detach().min()) == 0.0 and float(y.detach().max()) == 3.0
    q, step = pact.codes(x)
    assert q.dtype == torch.uint8 and int(q.max()) == 2 ** bits - 1
    assert same_bits(y, q.float() * step)
    assert pact.levels == 2 ** bits - 1 and pact.scale() == pytest.approx(3.0 / (2 ** bits - 1))
    assert (y - x.clamp(0, 3.0)).abs().max() <= pact.scale() / 2 + 1e-6


def test_pact_formula_matches_paper_form():
    pact = PACT(bits=4, init_clip=2.5)
    x = torch.randn(2000, generator=torch.Generator().manual_seed(13)) * 2
    a, n = 2.5, 15
    ref = torch.round(x.clamp(0, a) * n / a) * a / n
    torch.testing.assert_close(pact(x), ref, rtol=0, atol=1e-6)


def test_pact_gradients():
    pact = PACT(bits=8, init_clip=1.0)
    x = torch.tensor([-2.0, -0.1, 0.0, 0.3, 0.99, 1.0, 1.5, 4.0], requires_grad=True)
    r = torch.arange(1.0, 9.0)
    (pact(x) * r).sum().backward()
    above = x.detach() >= 1.0
    assert pact.alpha.grad.item() == pytest.approx(float(r[above].sum()))   # 6 + 7 + 8
    assert pact.alpha.grad.item() == 21.0
    assert x.grad.tolist() == [0.0, 0.0, 3.0, 4.0, 5.0, 0.0, 0.0, 0.0]
    # no input at or above α: no gradient to α
    pact.alpha.grad = None
    pact(torch.tensor([-1.0, 0.2, 0.9])).sum().backward()
    assert pact.alpha.grad.item() == 0.0


def test_pact_alpha_learns_toward_the_data():
    pact = PACT(bits=8, init_clip=0.5)
    x = torch.rand(512, generator=torch.Generator().manual_seed(14)) * 3
    opt = torch.optim.SGD(pact.parameters(), lr=0.5)
    for _ in range(40):
        opt.zero_grad()
        torch.mean((pact(x) - x) ** 2).backward()
        opt.step()
    assert pact.alpha.item() > 2.0


def test_pact_signed():
    pact = PACT(bits=8, signed=True, init_clip=2.0)
    x = torch.linspace(-4, 4, 3001, requires_grad=True)
    y = pact(x)
    assert pact.levels == 127 and y.unique().numel() == 255
    assert float(y.detach().min()) == -2.0 and float(y.detach().max()) == 2.0
    q, step = pact.codes(x.detach())
    assert q.dtype == torch.int8 and int(q.min()) == -127 and int(q.max()) == 127
    assert same_bits(y.detach(), q.float() * step)
    r = torch.linspace(0.5, 1.5, 3001)
    (y * r).sum().backward()
    xd = x.detach()
    expect = r[xd >= 2].sum() - r[xd <= -2].sum()
    assert pact.alpha.grad.item() == pytest.approx(expect.item(), rel=1e-5)
    assert torch.equal(x.grad, r * ((xd > -2) & (xd < 2)))


def test_ternary_activation():
    act = TernaryActivation()
    x = torch.tensor([-1.0, -0.5, -0.3, -0.25, 0.0, 0.2, 0.25, 0.2501, 0.6, 3.0], requires_grad=True)
    y = act(x)
    assert y.tolist() == [-0.5, -0.5, -0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    q, step = act.codes(x.detach())
    assert q.dtype == torch.int8 and same_bits(y.detach(), q.float() * step)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert (act.bits, act.levels, act.signed, act.scale()) == (2, 1, True, 0.5)


def test_fp32_activation_is_relu():
    x = torch.randn(100, generator=torch.Generator().manual_seed(15))
    act = FP32Activation()
    assert torch.equal(act(x), torch.relu(x)) and act.bits == 32 and act.spec == "fp32"


def test_input_quantizer():
    iq = InputQuantizer()
    x = torch.tensor([-10.0, -4.0, -0.01, 0.0, 0.05, 1.0 / 32, 3.96875, 3.99, 10.0], requires_grad=True)
    q = iq.codes(x)
    assert q.dtype == torch.int8
    assert q.tolist() == [-128, -128, 0, 0, 2, 1, 127, 127, 127]
    y = iq(x)
    assert same_bits(y.detach(), q.float() * iq.step)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    x2 = torch.randn(1000, generator=torch.Generator().manual_seed(16))
    assert ((iq(x2) - x2).abs() <= 1 / 64 + 1e-7).all()


# ---------------------------------------------------------------- factory

@pytest.mark.parametrize("spec", WEIGHT_SPECS)
def test_weight_factory_round_trip(spec):
    quant = make_weight_quantizer(spec)
    again = make_weight_quantizer(quant.spec)
    assert type(again) is type(quant) and again.spec == quant.spec and again.bits == quant.bits
    assert quant.spec.partition(":")[0] == spec
    w = rand_w((4, 3, 5), seed=17)
    assert torch.equal(again(w), quant(w))


@pytest.mark.parametrize("spec", ACTIVATION_SPECS)
def test_activation_factory_round_trip(spec):
    act = make_activation_quantizer(spec)
    again = make_activation_quantizer(act.spec)
    assert type(again) is type(act) and again.spec == act.spec
    assert act.spec.partition(":")[0] == spec
    x = torch.randn(50, generator=torch.Generator().manual_seed(18)) * 5
    assert torch.equal(again(x), act(x))


def test_factory_parameters():
    q = make_weight_quantizer("ternary-eq:xi=0.2")
    assert isinstance(q, TernaryEQ) and q.xi == 0.2 and q.spec == "ternary-eq:xi=0.2"
    assert make_weight_quantizer(" ternary-twn : delta_factor = 0.5 ").spec == "ternary-twn:delta_factor=0.5"
    assert make_weight_quantizer("ternary-eq").spec == "ternary-eq:xi=0.05"
    assert make_weight_quantizer("int4").bits == 4
    p = make_activation_quantizer("pact-s8:init_clip=3")
    assert isinstance(p, PACT) and p.signed and p.bits == 8 and p.alpha.item() == 3.0
    assert p.spec == "pact-s8:init_clip=3.0"
    u4 = make_activation_quantizer("pact-u4")
    assert (u4.bits, u4.signed, u4.levels) == (4, False, 15)
    assert isinstance(make_activation_quantizer("ternary-act"), TernaryActivation)
    assert isinstance(make_activation_quantizer("fp32"), FP32Activation)
    assert parse_spec("ternary-eq:xi=0.1") == ("ternary-eq", {"xi": 0.1})


@pytest.mark.parametrize("bad, match", [
    ("ternary", "valid: ternary-eq, ternary-twn, binary, int8, int4, int2, fp32"),
    ("int3", "unknown weight quantizer"),
    ("ternary-eq:zeta=0.1", "no parameter zeta; valid: xi"),
    ("binary:xi=0.1", r"valid: \(none\)"),
    ("ternary-eq:xi", "expected key=value"),
    ("ternary-eq:xi=abc", "not a number"),
    ("ternary-eq:xi=0.1,xi=0.2", "given twice"),
    ("ternary-eq:xi=1.0", r"xi must be in \[0, 1\)"),
])
def test_weight_factory_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        make_weight_quantizer(bad)


def test_activation_factory_rejects():
    with pytest.raises(ValueError, match="valid: pact-u8, pact-u4, pact-u2, pact-s8") as e:
        make_activation_quantizer("pact-u16")
    assert "ternary-act" in str(e.value) and "fp32" in str(e.value)
    with pytest.raises(ValueError, match="unknown activation quantizer"):
        make_activation_quantizer("int8")
    with pytest.raises(ValueError, match="init_clip must be > 0"):
        make_activation_quantizer("pact-u8:init_clip=0")
