"""Weight quantizers handed to layers (larq's way): the layer keeps float "latent" weights and
calls ``quantizer(w)`` in its forward pass.

Common contract (``WeightQuantizer``)
-------------------------------------
* Per output channel: statistics are taken over every dim but dim 0 (``[out, in, k]`` conv or
  ``[out, in]`` linear weights; tensors of rank < 2 are refused).
* ``codes(w) -> (q, scale)``: ``q`` a ``torch.int8`` tensor of integer codes shaped like ``w``,
  ``scale`` a float tensor ``[out]`` (dtype of ``w``).
* ``forward(w)`` returns ``q.to(w.dtype) * scale.view(out, 1, ...)`` — computed by that very
  expression from the int8 codes, so ``forward(w) == codes * scale`` holds bit for bit (no
  stray −0.0 either) — with a straight-through
  gradient to ``w`` (see ``ste.py``; ``ste_clip`` per class below).
* ``bits``, ``spec`` (canonical factory string, parameters always written out so a bundle
  rebuilds the same quantizer even if defaults change), ``zero_fraction(w)``.

This module: the fp32 identity, binary and k-bit uniform quantizers. Ternary ones: ``ternary.py``.

Binary (XNOR-Net, Rastegari et al. 2016, per output channel)
    q = sign(w) with sign(0) := +1 (codes must be ±1),  scale = mean|w_c|,
    the least-squares optimum of ||w_c − a·q_c||² for q_c = sign(w_c).
    STE: clipped at |w| <= 1 (BinaryConnect / larq ``ste_sign`` default).

k-bit uniform, symmetric signed (k = 2, 4, 8)
    L = 2^(k−1) − 1,  scale_c = max|w_c| / L,  q = clamp(round(w / scale_c), −L, L).
    The code −2^(k−1) is never used (symmetric range, so the kernel needs no zero point).
    ``round`` is torch.round: half to even, same as ``numpy.round``.
    All-zero channel: scale 0 and codes 0 (division guarded), never NaN.
    STE: plain (identity) — max|w| defines the range, so no weight lies outside it.
"""
from __future__ import annotations

import torch
from torch import nn

from .ste import straight_through


def channel_view(w: torch.Tensor) -> torch.Tensor:
    """``w`` as ``[out, rest]`` for per-output-channel statistics."""
    if w.dim() < 2:
        raise ValueError(f"weight quantizers need a weight of rank >= 2 ([out, in, ...]); got shape {tuple(w.shape)}")
    return w.reshape(w.shape[0], -1)


def broadcast_scale(scale: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``scale [out]`` reshaped to ``[out, 1, ...]`` against ``w``."""
    return scale.reshape(-1, *([1] * (w.dim() - 1)))


class WeightQuantizer(nn.Module):
    """Base class. Subclasses implement ``_quantize(w) -> (q integer-valued, scale [out])``."""

    bits: int = 32
    ste_clip: float | None = None   # clipped STE bound on |w|; None: plain STE

    @property
    def spec(self) -> str:
        raise NotImplementedError

    def _quantize(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _fake(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            q, scale = self._quantize(w.detach())
            # through int8 so forward is literally codes * scale (a float q could hold -0.0)
            q = q.to(torch.int8)
            w_q = q.to(w.dtype) * broadcast_scale(scale, w)
        return q, scale, w_q

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        _, _, w_q = self._fake(w)
        clip = self.ste_clip
        return straight_through(w, w_q, None if clip is None else -clip, clip)

    def codes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, scale, _ = self._fake(w)
        return q, scale

    def zero_fraction(self, w: torch.Tensor) -> float:
        q, _, _ = self._fake(w)
        return float((q == 0).sum()) / max(q.numel(), 1)

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"


class FP32Weights(WeightQuantizer):
    """Identity (the fp32 baseline): ``forward(w) is w``; there are no integer codes."""

    bits = 32

    @property
    def spec(self) -> str:
        return "fp32"

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w

    def codes(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise ValueError("fp32 weights have no integer codes; pick a quantized spec to export")

    def zero_fraction(self, w: torch.Tensor) -> float:
        return float((w == 0).sum()) / max(w.numel(), 1)


class BinaryWeights(WeightQuantizer):
    """sign(w) · mean|w_c| per output channel (XNOR-Net); codes in {−1, +1}."""

    bits = 1
    ste_clip = 1.0

    @property
    def spec(self) -> str:
        return "binary"

    def _quantize(self, w):
        q = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
        scale = channel_view(w).abs().mean(dim=1)
        return q, scale


class UniformWeights(WeightQuantizer):
    """Symmetric signed k-bit codes in [−(2^(k−1)−1), 2^(k−1)−1], scale max|w_c| / (2^(k−1)−1)."""

    ste_clip = None

    def __init__(self, bits: int = 8):
        super().__init__()
        if bits not in (2, 4, 8):
            raise ValueError(f"UniformWeights: bits must be 2, 4 or 8, got {bits!r}")
        self.bits = bits
        self.levels = 2 ** (bits - 1) - 1

    @property
    def spec(self) -> str:
        return f"int{self.bits}"

    def _quantize(self, w):
        scale = channel_view(w).abs().amax(dim=1) / self.levels
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.clamp(torch.round(w / broadcast_scale(safe, w)), -self.levels, self.levels)
        return q, scale
