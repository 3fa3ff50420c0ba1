"""The architecture of a HAR network, as plain data that a bundle stores and rebuilds from.

A network is an int8 input quantizer, then blocks Conv1D → MaxPool → BN → activation quantizer,
then global average pooling and one fully-connected layer. Max-pool sits between the convolution
and BN, as in binary/ternary CNNs (DFTerNet, XNOR-Net): it then acts on integer accumulators, and
BN + quantizer fold into one requantization of the pooled (fewer) values.

`channels` are full-width output channels per block; width w keeps the first round(w·c) of them
in every block (Daghero et al. 2022, after Yu et al.'s slimmable networks). With `fusion` "late"
or "dynamic", every sensor group gets its own stack of blocks with `channels` each (DFTerNet's
late fusion), and the groups' features are concatenated before the classifier.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

FUSIONS = ("early", "late", "dynamic")


@dataclass(frozen=True)
class ModelConfig:
    in_channels: int
    n_classes: int
    window: int
    channels: tuple[int, ...] = (48, 64, 96, 128)
    kernels: tuple[int, ...] = (5, 5, 3, 3)
    pools: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[float, ...] = (0.25, 0.5, 1.0)
    fusion: str = "early"
    groups: tuple[tuple[int, ...], ...] = ()     # input channel indices per sensor group (late/dynamic)
    weight_quant: str = "ternary-eq"             # every conv layer, unless layer_weight_quant says otherwise
    layer_weight_quant: tuple[str, ...] = ()     # mixed precision: one spec per block, overriding weight_quant
    fc_weight_quant: str = "int8"
    act_quant: str = "pact-u8"
    input_step: float = 1 / 32                   # int8 input: normalized value / step, clamped
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not (len(self.channels) == len(self.kernels) == len(self.pools)):
            raise ValueError("channels, kernels and pools need one entry per block")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.fusion != "early" and len(self.groups) < 2:
            raise ValueError(f"{self.fusion} fusion needs at least two sensor groups")
        if self.layer_weight_quant and len(self.layer_weight_quant) != len(self.channels):
            raise ValueError(f"layer_weight_quant needs one spec per block ({len(self.channels)}), "
                             f"got {len(self.layer_weight_quant)}")
        if sorted(self.widths) != list(self.widths) or self.widths[-1] != 1.0:
            raise ValueError(f"widths must be increasing and end at 1.0, got {self.widths}")

    def block_weight_quant(self, index: int) -> str:
        """The weight quantizer spec of conv block `index`."""
        return self.layer_weight_quant[index] if self.layer_weight_quant else self.weight_quant

    def width_channels(self, width: float) -> tuple[int, ...]:
        """Output channels per block at a width (at least one)."""
        return tuple(max(1, math.floor(width * c + 0.5)) for c in self.channels)

    @property
    def branches(self) -> tuple[tuple[int, ...], ...]:
        """Input channel indices per branch: one branch of all channels for early fusion."""
        return (tuple(range(self.in_channels)),) if self.fusion == "early" else self.groups

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(sorted(unknown))}")
        tupled = {k: tuple(tuple(g) for g in v) if k == "groups" else
                  tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**tupled)
