"""Ternary weight quantizers, per output channel: w ≈ α_c · t, t ∈ {−1, 0, +1}, ``bits = 2``.

Shared rule (both quantizers): with a per-channel threshold Δ_c,

    t_i = sign(w_i) · 1[|w_i| > Δ_c]                     (|w_i| == Δ_c gives 0)
    α_c = Σ_{i: t_i≠0} |w_i| / #{i: t_i≠0}               (α_c = 0 when no weight passes)

For a fixed mask, α_c is the closed-form least-squares optimum of ||w_c − α·t_c||²
(d/dα = 0 ⇒ α = <w_c, t_c> / <t_c, t_c>), — TWN's α rule, and the least-squares fit of DFTerNet's Eq. 14.
A channel with no weight above Δ_c gets α_c = 0 and all-zero codes, never 0/0 = NaN.
STE: clipped at |w| <= 1 (larq ``ste_tern`` default); α and Δ are constants of the backward pass.

TernaryTWN(delta_factor=0.7) — Li & Liu 2016, "Ternary Weight Networks":
    Δ_c = delta_factor · mean|w_c|          (0.7 is TWN's approximation of the optimal Δ)

TernaryEQ(xi=0.05) — DFTerNet's "e-Q" (Yang et al. 2018, arXiv 1808.04228):
    Δ_c = ξ · max|w_c|
  Taken from the paper: ternary weights {−α, 0, +α} decided by a threshold set by a "shift"
  parameter ξ, and α fitted by least squares given the resulting mask (its Eq. 14).
  Chosen here (the paper's exact threshold expression could not be retrieved while writing
  this): the statistic ξ multiplies is the channel's max|w| (as in TTQ, Zhu et al. 2017, whose
  t = 0.05 is also the default ξ), the statistics are per output channel rather than per layer,
  ξ must lie in [0, 1) (ξ >= 1 would zero every weight). Larger ξ ⇒ more zero codes.
"""
from __future__ import annotations

import torch

from .weights import WeightQuantizer, broadcast_scale, channel_view


def ternarize(w: torch.Tensor, delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Codes ``t`` (float, in {−1, 0, +1}) and least-squares ``α [out]`` for thresholds ``delta [out]``."""
    mask = w.abs() > broadcast_scale(delta, w)
    t = torch.where(mask, torch.sign(w), torch.zeros_like(w))
    flat_mask = channel_view(mask)
    count = flat_mask.sum(dim=1)
    total = (channel_view(w).abs() * flat_mask.to(w.dtype)).sum(dim=1)
    alpha = torch.where(count > 0, total / count.clamp_min(1).to(w.dtype), torch.zeros_like(total))
    return t, alpha


class TernaryTWN(WeightQuantizer):
    """TWN ternary weights: Δ_c = delta_factor · mean|w_c|, α_c = mean of |w| over |w| > Δ_c."""

    bits = 2
    ste_clip = 1.0

    def __init__(self, delta_factor: float = 0.7):
        super().__init__()
        if not delta_factor >= 0:
            raise ValueError(f"TernaryTWN: delta_factor must be >= 0, got {delta_factor!r}")
        self.delta_factor = float(delta_factor)

    @property
    def spec(self) -> str:
        return f"ternary-twn:delta_factor={self.delta_factor!r}"

    def threshold(self, w: torch.Tensor) -> torch.Tensor:
        return self.delta_factor * channel_view(w.detach()).abs().mean(dim=1)

    def _quantize(self, w):
        return ternarize(w, self.threshold(w))


class TernaryEQ(WeightQuantizer):
    """DFTerNet e-Q ternary weights: Δ_c = ξ · max|w_c|, α_c least squares for the mask."""

    bits = 2
    ste_clip = 1.0

    def __init__(self, xi: float = 0.05):
        super().__init__()
        if not 0.0 <= xi < 1.0:
            raise ValueError(f"TernaryEQ: xi must be in [0, 1), got {xi!r}")
        self.xi = float(xi)

    @property
    def spec(self) -> str:
        return f"ternary-eq:xi={self.xi!r}"

    def threshold(self, w: torch.Tensor) -> torch.Tensor:
        return self.xi * channel_view(w.detach()).abs().amax(dim=1)

    def _quantize(self, w):
        return ternarize(w, self.threshold(w))
