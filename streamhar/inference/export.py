"""Export a trained bundle to an integer-only network (`IntegerModel`): fold scales, BN and PACT.

Block i, width w, output channel o (all folding in float64 from the float32 values the trained
graph uses). With s_in the step of the block's input codes (cfg.input_step for block 0, the
previous block's PACT step α_prev/L_prev after) and α_o the channel's ternary scale, the trained
graph computes conv = α_o·s_in·acc (acc the integer accumulator) and, since α_o·s_in >= 0, max-pool
commutes with that scale: pooling the int32 accumulators is the trained pooling. Then, with BN's
eval statistics (μ, σ² , ε, γ, β) and PACT's clip a and levels L (step s_out = a/L):

    A_o = α_o·s_in·γ_o/√(σ²_o+ε),   B_o = β_o − μ_o·γ_o/√(σ²_o+ε)
    q   = clamp(round((A_o·acc + B_o) / s_out), 0, L)            (= PACT(BN(pool(conv))))
        ≈ clamp((m_o·acc + b_o + 2^(sh_o−1)) >> sh_o, 0, L)      (ops.requantize)
    m_o = round(A_o/s_out · 2^sh_o),  b_o = round(B_o/s_out · 2^sh_o)

A_o may be negative (γ < 0): m_o is then negative and the formula still holds, because the
trained graph, too, applies BN after pooling. α_o = 0 (an all-zero ternary channel) gives m_o = 0:
q = the constant clamp(round(B_o/s_out)).

Shift, per channel: sh_o = 29 − floor(log2|M_o|) (M_o = A_o/s_out), so 2^29 <= |m_o| <= 2^30 —
30 bits of multiplier, far finer than float32's rounding in the trained graph. sh_o is kept in
1..52 (M_o >= 2^29 is refused); sh = 30 when M_o = 0. b_o is clamped to ±(|m_o|·acc_max_o +
(L+1)·2^sh_o), which changes no output (beyond that bound q saturates either way) and keeps
|m·acc| + |b| + 2^(sh−1) < 2^63 (no int64 overflow), given |acc| <= acc_max_o =
(non-zero codes of channel o)·(largest input code) < 2^31, which export checks.

FC (codes q_kc, per-class scale s_k, per-width float bias β_k, T = time length after the last
pool, s_act = last PACT step): the trained logit is s_k·s_act/T · Σ_c q_kc·sum_t(x_ct) + β_k, so
with acc = fc_int8(global_sum_pool(x), codes) and the common scale S = LOGIT_SCALE = 2^16:

    logit_int = (m_k·acc + b_k + 2^(sh_k−1)) >> sh_k  ≈ S·logit,
    m_k = round(S·s_k·s_act/T · 2^sh_k),  b_k = round(S·β_k · 2^sh_k)   (same shift rule)

2^16 rather than a coarser 2^8: logits of a narrow width can lie within 1/256 of each other, and
a coarse scale would then decide (or tie) them differently from the trained model; int32 still
spans ±32768 logit units.

Supported: early fusion; conv weights with codes in {−1, 0, +1} (ternary-eq, ternary-twn, binary,
int2); FC weights of <= 8 bits; unsigned PACT activations (pact-u8/u4/u2); int8 input.
"""
from __future__ import annotations

import numpy as np
import torch

from streamhar.models.bundle import Bundle
from streamhar.models.har_cnn import HARNet
from streamhar.quant import PACT, parse_spec

from .model import LOGIT_SCALE, ROUNDING, IntegerModel, IntegerModelError, Requant

CONV_SPECS = ("ternary-eq", "ternary-twn", "binary", "int2")
FC_SPECS = ("int8", "int4", "int2", "ternary-eq", "ternary-twn", "binary")
ACT_SPECS = ("pact-u8", "pact-u4", "pact-u2")
INPUT_MAX = 128          # largest |int8 input code|
MAX_SHIFT = 52


class ExportError(IntegerModelError):
    """A bundle that the integer export cannot represent, or that is inconsistent."""


def _supported(where: str, what: str, spec: str, allowed: tuple[str, ...]) -> None:
    if parse_spec(spec)[0] not in allowed:
        raise ExportError(f"{where}: {what} quantizer {spec!r} cannot be exported to the integer engine; "
                          f"export supports {', '.join(allowed)}")


def _check_bundle(bundle: Bundle, where: str) -> None:
    model, cfg, meta = bundle.model, bundle.config, bundle.meta
    if not isinstance(model, HARNet) or model.cfg != cfg:
        raise ExportError(f"{where}: the bundle's model does not match its config")
    if cfg.fusion != "early":
        raise ExportError(f"{where}: {cfg.fusion} fusion cannot be exported yet; export supports early fusion")
    for i in range(len(cfg.channels)):
        _supported(where, f"conv{i} weight", cfg.block_weight_quant(i), CONV_SPECS)
    _supported(where, "FC weight", cfg.fc_weight_quant, FC_SPECS)
    _supported(where, "activation", cfg.act_quant, ACT_SPECS)
    for name, v in (("mean", bundle.mean), ("std", bundle.std)):
        v = np.asarray(v)
        if v.shape != (cfg.in_channels,) or not np.isfinite(v).all():
            raise ExportError(f"{where}: normalization {name} has shape {v.shape} or non-finite values; "
                              f"expected {cfg.in_channels} finite values")
    if not (np.asarray(bundle.std) > 0).all():
        raise ExportError(f"{where}: normalization std must be > 0")
    for key, n in (("channels", cfg.in_channels), ("units", cfg.in_channels), ("class_names", cfg.n_classes)):
        if len(meta.get(key, ())) != n:
            raise ExportError(f"{where}: meta {key!r} must list {n} entries, has {len(meta.get(key, ()))}")
    if meta.get("window", cfg.window) != cfg.window:
        raise ExportError(f"{where}: meta window {meta['window']} differs from the model's {cfg.window}")
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ExportError(f"{where}: tensor {name} holds NaN or infinite values")


def _dyadic(M: np.ndarray, C: np.ndarray, acc_max: np.ndarray, hi: int | None, where: str) -> Requant:
    """m, shift, bias with (m·acc + bias) / 2^shift ≈ M·acc + C (see the module docstring).

    `hi`: the top code for activations (bias clamped without changing any output); None for
    logits (bias must then fit as is).
    """
    if np.any(np.abs(M) >= 2.0 ** 29):
        raise ExportError(f"{where}: requantization multiplier {np.abs(M).max():.3g} too large (>= 2^29)")
    with np.errstate(divide="ignore"):
        exp = np.floor(np.log2(np.abs(M)))
    shift = np.where(M != 0, np.clip(29 - exp, 1, MAX_SHIFT), 30).astype(np.int64)
    m = np.round(M * np.exp2(shift)).astype(np.int64)
    b = np.clip(np.round(C * np.exp2(shift)), -2.0 ** 62, 2.0 ** 62).astype(np.int64)
    if hi is not None:
        bound = np.abs(m) * acc_max + (hi + 1) * (np.int64(1) << shift)
        b = np.clip(b, -bound, bound)
    elif np.any(np.abs(b) > 2 ** 61):
        raise ExportError(f"{where}: an FC bias is too large for the integer logit scale")
    return Requant(m.astype(np.int32), shift.astype(np.int32), b)


def _f64(t: torch.Tensor | None, default: float, n: int) -> np.ndarray:
    return np.full(n, default) if t is None else t.detach().double().numpy()[:n]


def _fold_block(block, wi: int, alpha: np.ndarray, s_in: float, acc_max: np.ndarray, where: str) -> Requant:
    bn, n, act = block.bn.bns[wi], block.widths_out[wi], block.act
    if bn.running_mean is None or (bn.running_var < 0).any():
        raise ExportError(f"{where}: BatchNorm needs running statistics with variance >= 0")
    inv = 1.0 / np.sqrt(_f64(bn.running_var, 1.0, n) + bn.eps)
    gamma, beta = _f64(bn.weight, 1.0, n), _f64(bn.bias, 0.0, n)
    A = alpha[:n] * s_in * gamma * inv
    B = beta - _f64(bn.running_mean, 0.0, n) * gamma * inv
    s_out = act.scale()
    return _dyadic(A / s_out, B / s_out, acc_max[:n], act.levels, where)


def export_bundle(bundle: Bundle) -> IntegerModel:
    """The bundle's network as an `IntegerModel` (validated); `ExportError` if it cannot be exported."""
    where = bundle.path or "bundle"
    _check_bundle(bundle, where)
    cfg, model = bundle.config, bundle.model
    blocks = model.branches[0].blocks
    n_widths = len(cfg.widths)
    conv, requant = [], [[] for _ in range(n_widths)]
    s_in, in_max, length, lengths, levels = cfg.input_step, INPUT_MAX, cfg.window, [], []
    for i, block in enumerate(blocks):
        if not isinstance(block.act, PACT) or block.act.signed:
            raise ExportError(f"{where}: block {i} activation {block.act.spec!r} is not unsigned PACT")
        codes, alpha = block.conv.quantizer.codes(block.conv.weight.detach())
        codes, alpha = codes.numpy(), alpha.double().numpy()
        if not np.isin(codes, (-1, 0, 1)).all() or (alpha < 0).any():
            raise ExportError(f"{where}: block {i} weights are not ternary codes with scales >= 0")
        acc_max = np.abs(codes).reshape(len(codes), -1).sum(axis=1).astype(np.int64) * in_max
        if acc_max.max() >= 2 ** 31:
            raise ExportError(f"{where}: block {i} accumulators could exceed int32")
        for wi in range(n_widths):
            requant[wi].append(_fold_block(block, wi, alpha, s_in, acc_max, f"{where}, block {i}"))
        conv.append(codes.astype(np.int8))
        k = cfg.kernels[i]
        length = (length + 2 * (k // 2) - k + 1) // cfg.pools[i]
        if length < 1:
            raise ExportError(f"{where}: the window of {cfg.window} samples is too short for block {i}")
        lengths.append(length)
        levels.append(block.act.levels)
        s_in, in_max = block.act.scale(), block.act.levels

    codes, scale = model.fc.quantizer.codes(model.fc.weight.detach())
    fc, scale = codes.numpy().astype(np.int8), scale.double().numpy()
    if (np.abs(fc.astype(np.int16)) > 127).any():
        raise ExportError(f"{where}: FC codes outside ±127")
    fc_requant = []
    for wi, width in enumerate(cfg.widths):
        n = cfg.width_channels(width)[-1]
        if not torch.equal(getattr(model, f"fc_columns_{wi}").cpu(), torch.arange(n)):
            raise ExportError(f"{where}: width {width} FC columns are not the first {n} features")
        acc_max = np.abs(fc[:, :n].astype(np.int64)).sum(axis=1) * in_max * length
        if acc_max.max() >= 2 ** 31:
            raise ExportError(f"{where}: FC accumulators could exceed int32")
        M = LOGIT_SCALE * scale * s_in / length
        C = LOGIT_SCALE * model.fc.bias.detach().double().numpy()[wi]
        fc_requant.append(_dyadic(M, C, acc_max, None, f"{where}, FC"))

    meta = bundle.meta
    info = {
        "architecture": {
            "fusion": "early", "in_channels": cfg.in_channels, "n_classes": cfg.n_classes, "window": cfg.window,
            "channels": list(cfg.channels), "kernels": list(cfg.kernels), "pools": list(cfg.pools),
            "padding": [k // 2 for k in cfg.kernels], "lengths": lengths, "act_levels": levels,
            "weight_quant": cfg.weight_quant, "fc_weight_quant": cfg.fc_weight_quant, "act_quant": cfg.act_quant,
        },
        "widths": list(cfg.widths),
        "width_channels": [list(cfg.width_channels(w)) for w in cfg.widths],
        "input_step": cfg.input_step, "input_bits": 8,
        "mean": [float(v) for v in np.asarray(bundle.mean, np.float32)],
        "std": [float(v) for v in np.asarray(bundle.std, np.float32)],
        "channels": list(meta["channels"]), "units": list(meta["units"]),
        "class_names": list(meta["class_names"]),
        "logit_scale": LOGIT_SCALE, "rounding": ROUNDING,
        "source": {k: meta[k] for k in ("dataset", "rate", "window", "stride") if k in meta}
        | {"bundle": bundle.path},
    }
    cascade = meta.get("cascade")
    if cascade is not None:
        ok = (isinstance(cascade, dict) and cascade.get("small") in cfg.widths and cascade.get("full") in cfg.widths
              and isinstance(cascade.get("threshold"), int) and cascade["threshold"] >= -1)
        if not ok:
            raise ExportError(f"{where}: meta 'cascade' {cascade!r} is not a default operating point of this model "
                              f"(small and full among {list(cfg.widths)}, an integer threshold >= -1)")
        info["cascade"] = dict(cascade)
    return IntegerModel(info, conv, fc, requant, fc_requant).validate(where)
