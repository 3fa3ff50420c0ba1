"""Quantization of the network input (already normalized by windowing): int8 by default.

    codes = clamp(round(x / step), −2^(b−1), 2^(b−1) − 1),    value = codes · step

``step`` defaults to 1/32 (a power of two, so the MCU needs no multiplier to convert and
int8 covers ±4 normalized units). round = torch.round, half to even (same as numpy.round).
``forward`` computes exactly ``codes · step``; STE clipped to the representable range
[−2^(b−1)·step, (2^(b−1)−1)·step].
"""
from __future__ import annotations

import torch
from torch import nn

from .ste import straight_through


class InputQuantizer(nn.Module):
    def __init__(self, bits: int = 8, step: float = 1 / 32):
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"InputQuantizer: bits must be in 2..8, got {bits!r}")
        if not step > 0:
            raise ValueError(f"InputQuantizer: step must be > 0, got {step!r}")
        self.bits = int(bits)
        self.step = float(step)
        self.qmin = -(2 ** (bits - 1))
        self.qmax = 2 ** (bits - 1) - 1

    def scale(self) -> float:
        return self.step

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        # + 0.0 turns round()'s −0.0 into +0.0: forward equals int codes · step bit for bit
        return torch.clamp(torch.round(x / self.step), self.qmin, self.qmax) + 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = self._codes(x) * self.step
        return straight_through(x, y, self.qmin * self.step, self.qmax * self.step)

    def codes(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._codes(x).to(torch.int8)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, step={self.step!r}"
