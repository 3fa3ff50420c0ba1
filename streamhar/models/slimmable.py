"""Layers whose active width is chosen per forward pass (slimmable networks, Yu et al. 2019).

The narrow network uses the first channels of every layer, so its weights are a sub-tensor of the
full network's: one copy of the weights serves every width. Weight quantizers see the full
tensor (per full output channel), so a channel's quantized values are the same at every width.
BatchNorm is switchable: private statistics and affine parameters per width, because a narrow
layer's activations have other statistics than the full one's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SlimConv1d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel: int, weight_quantizer: nn.Module):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")
        self.quantizer = weight_quantizer
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        w = self.quantizer(self.weight)[:out_channels, : x.shape[1]]
        return F.conv1d(x, w, padding=self.padding)


class SlimLinear(nn.Module):
    """Shared weights, one bias per width (the classifier's offset differs with the feature width)."""

    def __init__(self, in_features: int, out_features: int, n_widths: int, weight_quantizer: nn.Module):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n_widths, out_features))
        self.quantizer = weight_quantizer

    def forward(self, x: torch.Tensor, width_index: int, columns: torch.Tensor) -> torch.Tensor:
        """`columns`: which full-width input features `x` holds (late fusion interleaves branches)."""
        w = self.quantizer(self.weight).index_select(1, columns)
        return F.linear(x, w, self.bias[width_index])


class SwitchableBatchNorm1d(nn.Module):
    def __init__(self, channels_per_width: tuple[int, ...]):
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm1d(c) for c in channels_per_width)

    def forward(self, x: torch.Tensor, width_index: int) -> torch.Tensor:
        return self.bns[width_index](x)
