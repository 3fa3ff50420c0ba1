"""The variable-width, quantization-aware 1D CNN for HAR (see config.py for the architecture).

`HARNet(config)(x, width)` runs the network at one of `config.widths` on normalized windows
`[B, C, L]`. Quantizers come from their spec strings in the config (larq's way: handed to layers).

Dynamic fusion (DFTerNet): each sensor branch has a learned fusion probability p_g = sigmoid(θ_g).
During training the branch's features are multiplied by a Bernoulli(p_g) draw (straight-through:
the backward pass sees p_g); at run time by its expectation p_g, which export folds into the
classifier weights. This is our reading of DFTerNet Eq. 17–20, where the draw is made from the
quantized weights: we draw per branch from a learned gate instead, which keeps it foldable.
"""
from __future__ import annotations

import torch
from torch import nn

from streamhar.errors import UsageError
from streamhar.models.config import ModelConfig
from streamhar.models.slimmable import SlimConv1d, SlimLinear, SwitchableBatchNorm1d
from streamhar.quant import InputQuantizer, make_activation_quantizer, make_weight_quantizer


class Block(nn.Module):
    """Conv1D → MaxPool → switchable BN → activation quantizer."""

    def __init__(self, cfg: ModelConfig, in_channels: int, index: int, widths_out: tuple[int, ...]):
        super().__init__()
        self.conv = SlimConv1d(in_channels, cfg.channels[index], cfg.kernels[index],
                               make_weight_quantizer(cfg.block_weight_quant(index)))
        self.pool = nn.MaxPool1d(cfg.pools[index]) if cfg.pools[index] > 1 else nn.Identity()
        self.bn = SwitchableBatchNorm1d(widths_out)
        self.act = make_activation_quantizer(cfg.act_quant)
        self.widths_out = widths_out

    def forward(self, x: torch.Tensor, width_index: int) -> torch.Tensor:
        x = self.conv(x, self.widths_out[width_index])
        return self.act(self.bn(self.pool(x), width_index))


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig, in_channels: int):
        super().__init__()
        per_width = [cfg.width_channels(w) for w in cfg.widths]   # [width][block]
        blocks, c_in = [], in_channels
        for i in range(len(cfg.channels)):
            blocks.append(Block(cfg, c_in, i, tuple(pw[i] for pw in per_width)))
            c_in = cfg.channels[i]
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, width_index: int) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, width_index)
        return x.mean(dim=-1)          # global average pooling → [B, C]


class HARNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.input_q = InputQuantizer(bits=8, step=cfg.input_step)
        self.branches = nn.ModuleList(Backbone(cfg, len(idx)) for idx in cfg.branches)
        for i, idx in enumerate(cfg.branches):
            self.register_buffer(f"branch_index_{i}", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.fusion_logits = nn.Parameter(torch.full((len(cfg.branches),), 2.0)) \
            if cfg.fusion == "dynamic" else None
        features = cfg.channels[-1] * len(cfg.branches)
        for wi, width in enumerate(cfg.widths):
            narrow = cfg.width_channels(width)[-1]
            cols = [b * cfg.channels[-1] + j for b in range(len(cfg.branches)) for j in range(narrow)]
            self.register_buffer(f"fc_columns_{wi}", torch.tensor(cols, dtype=torch.long), persistent=False)
        self.fc = SlimLinear(features, cfg.n_classes, len(cfg.widths), make_weight_quantizer(cfg.fc_weight_quant))

    def width_index(self, width: float) -> int:
        try:
            return self.cfg.widths.index(width)
        except ValueError:
            raise UsageError(f"width {width} is not one of the trained widths {self.cfg.widths}") from None

    def features(self, x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
        wi = self.width_index(width)
        x = self.input_q(x)
        if self.cfg.fusion == "early":
            return self.branches[0](x, wi)
        feats = [branch(x.index_select(1, getattr(self, f"branch_index_{i}")), wi)
                 for i, branch in enumerate(self.branches)]
        if self.fusion_logits is not None:
            p = torch.sigmoid(self.fusion_logits)
            gate = p
            if self.training:
                draw = torch.bernoulli(p.detach().expand(x.shape[0], -1))
                gate = draw + p - p.detach()          # straight-through estimator
            feats = [f * (gate[..., i:i + 1] if gate.dim() > 1 else gate[i]) for i, f in enumerate(feats)]
        return torch.cat(feats, dim=1)

    def forward(self, x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
        wi = self.width_index(width)
        return self.fc(self.features(x, width), wi, getattr(self, f"fc_columns_{wi}"))
