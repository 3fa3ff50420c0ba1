"""The integer operations of the inference network: one pure numpy reference function per op.

The firmware has one C kernel of the same name for each; these functions define the results
those kernels must reproduce bit for bit. Apart from `quantize_input` (the host-side entry point
from normalized floats) every op is integer-only: int32 accumulators, int64 only where a product
needs it (the requantization `m · acc`, a 32×32→64-bit multiply, SMULL on a Cortex-M4).

Overflow is never silent here: where a result must fit int32 (a convolution or FC accumulator)
the reference computes in int64 and raises if it does not fit, where a C kernel would wrap.
Export (`export.py`) bounds every accumulator so that this cannot happen for an exported model.

Rounding rule of every requantization (`requantize`, `requantize_logits`):

    y = (m · acc + bias + 2^(shift−1)) >> shift          (arithmetic shift: floor division)

i.e. y = floor(m·acc/2^shift + bias/2^shift + 1/2): round half up (toward +∞) of the real
value (m·acc + bias)/2^shift; `shift` >= 1. Then y is clamped to [lo, hi].
"""
from __future__ import annotations

import numpy as np

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def _fit_int32(values: np.ndarray, op: str) -> np.ndarray:
    if values.size and (values.min() < INT32_MIN or values.max() > INT32_MAX):
        raise OverflowError(f"{op}: accumulator outside int32 (range {values.min()}..{values.max()})")
    return values.astype(np.int32)


# The integer matmuls below (conv1d_ternary, fc_int8) run in float64 through BLAS when that is
# EXACT: every operand is an integer, and if Σ_j |a_j|·|b_j| < 2^53 for every output then every
# product and every partial sum, in whatever order BLAS adds them, is an integer of magnitude
# below 2^53 and so representable in float64 — no rounding happens anywhere and the result equals
# the int64 product bit for bit. `_max_abs_sum` bounds that sum from the shapes and value ranges
# (one cheap min/max pass, or the dtype's range); above 2^53 the int64 path is used instead.
_EXACT_F64 = 2 ** 53


def _max_abs(a: np.ndarray) -> int:
    if a.dtype.kind in "iu" and a.dtype.itemsize <= 2:
        info = np.iinfo(a.dtype)
        return max(-int(info.min), int(info.max))
    if a.dtype.kind not in "iub":
        return _EXACT_F64                                   # not integer codes: the int64 path
    return max(-int(a.min()), int(a.max())) if a.size else 0


def _matmul_exact(a: np.ndarray, b: np.ndarray, n_terms: int) -> np.ndarray:
    """a [M, N] @ b [N, P] for integer arrays, as int64, exactly (float64 BLAS when provably exact)."""
    if _max_abs(a) * _max_abs(b) * max(n_terms, 1) < _EXACT_F64:
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)
    return a.astype(np.int64) @ b.astype(np.int64)


def quantize_input(x: np.ndarray, step: float) -> np.ndarray:
    """Normalized float windows → int8 codes: clamp(round(x / step), −128, 127).

    round is numpy's half to even, like torch.round in the training graph's InputQuantizer; the
    division is done in float32 (the training graph's dtype; exact for a power-of-two step).
    """
    x = np.asarray(x, dtype=np.float32)
    q = np.round(x / np.float32(step))
    return np.clip(q, -128, 127).astype(np.int8)


def quantize_raw_i16(raw: np.ndarray, m: np.ndarray, shift: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The device-tier input stage: raw int16 sensor samples [..., n, C] (time-major, as a sensor
    delivers them) → int8 input codes [..., C, n] (channel-major, as the network reads them).

        code[c, t] = clamp((m[c] · raw[t, c] + bias[c] + 2^(shift[c]−1)) >> shift[c], −128, 127)

    The requantization rule (round half up): `streamhar/firmware/sensor.py` folds the sensor's
    scale, the bundle's mean and std and the input step into m (int32), shift (1..62) and bias
    (int64, |bias| < 2^62), so no floating point runs on the device. It approximates
    `IntegerEngine.quantize(raw · scale)` (half-even rounding of float32 arithmetic there) to
    within one code.
    """
    raw = np.asarray(raw)
    if raw.dtype != np.int16 or raw.ndim < 1:
        raise ValueError(f"quantize_raw_i16: expected int16 samples [..., n, C], got {raw.dtype} {list(raw.shape)}")
    sh = np.asarray(shift, np.int64)
    b = np.asarray(bias, np.int64)
    if (sh < 1).any() or (sh > 62).any() or (np.abs(b) >= 2 ** 62).any():
        raise ValueError("quantize_raw_i16: every shift must be in 1..62 and every |bias| below 2^62")
    v = np.asarray(m, np.int64) * raw.astype(np.int64) + b + (np.int64(1) << (sh - 1))
    return np.swapaxes(np.clip(v >> sh, -128, 127).astype(np.int8), -1, -2)


def conv1d_ternary(x: np.ndarray, codes: np.ndarray, padding: int) -> np.ndarray:
    """1D convolution (cross-correlation, like torch) of int codes with ternary/int8 weight codes.

    x: integer [B, Cin, T]; codes: int8 [Cout, Cin, K]; `padding` zeros on both sides.
    Returns int32 [B, Cout, T + 2·padding − K + 1]:
        acc[b, o, t] = Σ_c Σ_k codes[o, c, k] · x_pad[b, c, t + k]
    """
    x = np.asarray(x)
    b, c_in, _ = x.shape
    c_out, c_w, k = codes.shape
    if c_w != c_in:
        raise ValueError(f"conv1d_ternary: input has {c_in} channels, weights expect {c_w}")
    codes = np.asarray(codes)
    exact = _max_abs(x) * _max_abs(codes) * max(c_in * k, 1) < _EXACT_F64   # see _matmul_exact
    dt = np.float64 if exact else np.int64
    xp = np.pad(x.astype(dt), ((0, 0), (0, 0), (padding, padding)))
    cols = np.lib.stride_tricks.sliding_window_view(xp, k, axis=2)       # [B, Cin, T', K]
    t_out = cols.shape[2]
    cols = cols.transpose(0, 2, 1, 3).reshape(b * t_out, c_in * k)       # rows: (b, t)
    acc = (cols @ codes.reshape(c_out, c_in * k).astype(dt).T).astype(np.int64)   # [B·T', Cout]
    return _fit_int32(acc.reshape(b, t_out, c_out).transpose(0, 2, 1), "conv1d_ternary")


def maxpool1d(acc: np.ndarray, pool: int) -> np.ndarray:
    """Max over non-overlapping windows of `pool` samples along the last axis (stride = pool).

    Floor mode, like torch.nn.MaxPool1d: T_out = T // pool; the last T % pool samples are dropped.
    """
    if pool == 1:
        return acc
    t_out = acc.shape[-1] // pool
    return acc[..., : t_out * pool].reshape(*acc.shape[:-1], t_out, pool).max(axis=-1)


def requantize(acc: np.ndarray, m: np.ndarray, shift, bias: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Per-channel dyadic rescale of accumulators [B, C, T] (or [B, C]) onto a clamped code range.

        y = clamp((m[c] · acc + bias[c] + 2^(shift[c]−1)) >> shift[c], lo, hi)

    m int32 [C]; shift int [C] or a scalar, each >= 1; bias int64 [C]. The sum is int64 (export
    bounds m, acc and bias so that it cannot overflow); >> is arithmetic, so this is round half
    up. Returns uint8 when [lo, hi] fits uint8 (activation codes), else int32.
    """
    acc = np.asarray(acc)
    c = acc.shape[1]
    tail = (1,) * (acc.ndim - 2)
    per_channel = lambda v: np.broadcast_to(np.asarray(v, np.int64), (c,)).reshape(1, c, *tail)
    sh = per_channel(shift)
    if (sh < 1).any() or (sh > 62).any():
        raise ValueError("requantize: every shift must be in 1..62")
    v = per_channel(m) * acc.astype(np.int64) + per_channel(bias) + (np.int64(1) << (sh - 1))
    y = np.clip(v >> sh, lo, hi)
    return y.astype(np.uint8 if 0 <= lo and hi <= 255 else np.int32)


def global_sum_pool(x: np.ndarray) -> np.ndarray:
    """Sum over time, [B, C, T] → int32 [B, C]. (The 1/T of average pooling is folded into the FC.)"""
    return _fit_int32(np.asarray(x).astype(np.int64).sum(axis=-1), "global_sum_pool")


def fc_int8(features: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Fully-connected layer without bias: int32 [B, C] · int8 codes [K, C]ᵀ → int32 [B, K]."""
    if features.shape[1] != codes.shape[1]:
        raise ValueError(f"fc_int8: {features.shape[1]} features, weights expect {codes.shape[1]}")
    acc = _matmul_exact(np.asarray(features), np.asarray(codes).T, features.shape[1])
    return _fit_int32(acc, "fc_int8")


def requantize_logits(acc: np.ndarray, m: np.ndarray, shift, bias: np.ndarray) -> np.ndarray:
    """FC accumulators int32 [B, K] → int32 logits on the model's common logit scale.

    Same rule as `requantize`, per class, saturated to the int32 range:
        logit[k] = clamp((m[k] · acc[k] + bias[k] + 2^(shift[k]−1)) >> shift[k], INT32_MIN, INT32_MAX)
    With export's tables, logit / logit_scale approximates the float logit (logit_scale = 65536).
    """
    return requantize(acc, m, shift, bias, INT32_MIN, INT32_MAX)


def argmax_margin(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Winning class and its margin top1 − top2 per row of int logits [B, K] (or [K]).

    Ties: the lowest class index wins (numpy argmax's rule; the C kernel scans upward with a
    strict `>`), and the margin is then 0. The margin is int64: the difference of two int32
    values may not fit int32. Needs K >= 2.
    """
    z = np.asarray(logits).astype(np.int64)
    if z.shape[-1] < 2:
        raise ValueError("argmax_margin needs at least two classes")
    cls = np.argmax(z, axis=-1)
    top2 = np.partition(z, -2, axis=-1)[..., -2:]     # [second largest, largest] (equal on a tie)
    return cls, top2[..., 1] - top2[..., 0]
