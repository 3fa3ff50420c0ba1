"""Activation quantizers (``nn.Module``; ``forward(x)`` returns fake-quantized floats with an STE).

Each exposes ``bits``, ``signed``, ``levels`` (non-zero levels per side), ``scale()`` (the float
step between levels) and ``spec``, so an exporter can fold it into integer requantization; the
quantized ones also have ``codes(x) -> (integer codes, step)`` with ``forward(x) == codes * step``
bit for bit (forward computes exactly that product).

PACT (Choi et al. 2018), learned clip α (``nn.Parameter``, initialised to ``init_clip``)
    unsigned: L = 2^b − 1,        y = clamp(x, 0, α),   codes in [0, L]   (uint8)
    signed:   L = 2^(b−1) − 1,    y = clamp(x, −α, α),  codes in [−L, L]  (int8)
    step = α / L,   y_q = round(y / step) · step
  (the paper writes round(y·L/α)·α/L; identical in exact arithmetic, ours makes
  y_q == codes · step exact). round = torch.round, half to even (same as numpy.round).
  Gradients (PACT's STE): ∂y_q/∂x = 1 inside the clip range (0 <= x < α; signed −α < x < α),
  else 0; ∂y_q/∂α = 1 where x >= α, −1 where x <= −α (signed), else 0 — the rounding is
  treated as identity, as in the paper. α is used as max(α, 1e-4) in forward so a collapsing
  α cannot divide by zero (the gradient still reaches the parameter). PACT's L2 penalty on α
  belongs to the training loop, not here.

TernaryActivation — DFTerNet's 2-bit activations in {−0.5, 0, +0.5}
    y = 0.5 · sign(x) · 1[|x| > 0.25]
  Levels from the paper; the threshold 0.25 (midpoint, i.e. round-to-nearest onto the grid
  {−0.5, 0, 0.5}; |x| == 0.25 maps to 0) is our choice. STE: clipped, gradient 1 where
  |x| <= 0.5 (the quantizer's range), else 0. codes in {−1, 0, 1} (int8), step 0.5.

FP32Activation — the fp32 baseline uses a plain ReLU (no quantization); ``bits = 32``.
"""
from __future__ import annotations

import torch
from torch import nn

from .ste import straight_through

ALPHA_MIN = 1e-4


def _pact_codes(x: torch.Tensor, alpha: torch.Tensor, levels: int, signed: bool):
    """Integer-valued float codes and the step, both in ``x``'s dtype."""
    a = alpha.detach().to(x.dtype).clamp_min(ALPHA_MIN)
    lo = -a if signed else torch.zeros_like(a)
    y = torch.minimum(torch.maximum(x, lo), a)
    step = a / levels
    # + 0.0 turns round()'s −0.0 into +0.0, so forward equals int codes · step bit for bit
    return torch.round(y / step) + 0.0, step, a


class _PACTFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha, levels, signed):  # type: ignore[override]
        q, step, a = _pact_codes(x, alpha, levels, signed)
        ctx.save_for_backward(x, a)
        ctx.signed = signed
        ctx.alpha_dtype = alpha.dtype
        return q * step

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        x, a = ctx.saved_tensors
        upper = x >= a
        if ctx.signed:
            lower = x <= -a
            inside = ~(upper | lower)
            d_alpha = grad * upper.to(grad.dtype) - grad * lower.to(grad.dtype)
        else:
            inside = (x >= 0) & ~upper
            d_alpha = grad * upper.to(grad.dtype)
        return grad * inside.to(grad.dtype), d_alpha.sum().reshape(a.shape).to(ctx.alpha_dtype), None, None


class PACT(nn.Module):
    """PACT activation quantizer with a learned clip ``alpha``."""

    def __init__(self, bits: int = 8, signed: bool = False, init_clip: float = 6.0):
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"PACT: bits must be in 2..8, got {bits!r}")
        if not init_clip > 0:
            raise ValueError(f"PACT: init_clip must be > 0, got {init_clip!r}")
        self.bits = int(bits)
        self.signed = bool(signed)
        self.init_clip = float(init_clip)
        self.levels = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
        self.alpha = nn.Parameter(torch.tensor(self.init_clip))

    @property
    def spec(self) -> str:
        return f"pact-{'s' if self.signed else 'u'}{self.bits}:init_clip={self.init_clip!r}"

    def scale(self) -> float:
        """The step between levels, α / levels (α clamped as in forward), as a Python float."""
        return float(self.alpha.detach().clamp_min(ALPHA_MIN) / self.levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _PACTFunction.apply(x, self.alpha, self.levels, self.signed)

    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Integer codes (uint8 unsigned / int8 signed) and the 0-dim step; forward(x) == codes * step."""
        with torch.no_grad():
            q, step, _ = _pact_codes(x, self.alpha, self.levels, self.signed)
        return q.to(torch.int8 if self.signed else torch.uint8), step

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"


class TernaryActivation(nn.Module):
    """DFTerNet 2-bit activation: {−0.5, 0, +0.5}, threshold ±0.25, clipped STE (|x| <= 0.5)."""

    bits = 2
    signed = True
    levels = 1
    threshold = 0.25
    step = 0.5

    @property
    def spec(self) -> str:
        return "ternary-act"

    def scale(self) -> float:
        return self.step

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.abs() > self.threshold, torch.sign(x), torch.zeros_like(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = self._codes(x) * self.step
        return straight_through(x, y, -self.step, self.step)

    def codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self._codes(x).to(torch.int8), torch.tensor(self.step, dtype=x.dtype)


class FP32Activation(nn.Module):
    """fp32 baseline: ReLU, no quantization."""

    bits = 32
    signed = False
    levels = None

    @property
    def spec(self) -> str:
        return "fp32"

    def scale(self) -> None:
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)
