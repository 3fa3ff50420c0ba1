"""Straight-through estimators (STE) shared by every quantizer.

Forward: the quantizer's output ``x_q`` is returned *as computed* (no ``x + (x_q - x).detach()``
trick, which is not bit-exact in floating point: an exporter must be able to rely on
``x_q == codes * scale`` exactly).

Backward (Bengio et al. 2013; Courbariaux et al. 2016 for the clipped form):

    dL/dx = dL/dx_q · 1[lo <= x <= hi]      (clipped STE; plain STE when lo = hi = None)

Nothing flows to ``x_q``: it is a function of ``x`` computed under ``no_grad`` (scales,
thresholds and codes are constants of the backward pass, as in TWN and XNOR-Net training).
"""
from __future__ import annotations

import torch


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, x_q, lo, hi):  # type: ignore[override]
        if lo is None and hi is None:
            ctx.save_for_backward()
            ctx.masked = False
        else:
            keep = torch.ones_like(x, dtype=torch.bool)
            if lo is not None:
                keep &= x >= lo
            if hi is not None:
                keep &= x <= hi
            ctx.save_for_backward(keep)
            ctx.masked = True
        return x_q.clone()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[override]
        if ctx.masked:
            (keep,) = ctx.saved_tensors
            grad = grad * keep.to(grad.dtype)
        return grad, None, None, None


def straight_through(x: torch.Tensor, x_q: torch.Tensor,
                     lo: float | None = None, hi: float | None = None) -> torch.Tensor:
    """Return ``x_q`` (bit for bit) with gradient ``1[lo <= x <= hi]`` to ``x``."""
    if x_q.shape != x.shape:
        raise ValueError(f"straight_through: shapes differ {tuple(x.shape)} vs {tuple(x_q.shape)}")
    return _StraightThrough.apply(x, x_q.detach(), lo, hi)
