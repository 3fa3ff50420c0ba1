"""`IntegerModel`: the exported integer network as plain arrays plus a JSON-able description.

One copy of the weights serves every width (width w uses the first `width_channels[w][i]` output
channels of block i and, as input channels, the previous block's); what differs per width are
the requantization tables: per block (BN + PACT folded) and for the logits (FC scale and bias).

    conv[i]        int8 [C_i, C_{i−1}, K_i]  ternary codes {−1, 0, +1}, full width
    fc             int8 [n_classes, C_last]  FC codes, full width
    requant[w][i]  Requant over the first width_channels[w][i] channels of block i
    fc_requant[w]  Requant over the classes
    info           dict: architecture, widths, width_channels, input step, normalization,
                   channel names/units, class names, logit scale, rounding rule (see FORMAT.md)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamhar.errors import StreamharError

ROUNDING = "round half up: y = clamp((m*acc + bias + 2^(shift-1)) >> shift, lo, hi), >> arithmetic, int64 sum"
LOGIT_SCALE = 65536        # integer logits are in units of 1/65536 (2^16)


class IntegerModelError(StreamharError):
    """An integer model whose arrays do not fit its own description, or that cannot be built."""


@dataclass(frozen=True)
class Requant:
    """Per-channel dyadic requantization: y = (m·acc + bias + 2^(shift−1)) >> shift."""
    m: np.ndarray         # int32 [C]
    shift: np.ndarray     # int32 [C], 1..62
    bias: np.ndarray      # int64 [C]

    def __len__(self) -> int:
        return len(self.m)


@dataclass
class IntegerModel:
    info: dict
    conv: list[np.ndarray]
    fc: np.ndarray
    requant: list[list[Requant]]
    fc_requant: list[Requant]

    @property
    def arch(self) -> dict:
        return self.info["architecture"]

    @property
    def widths(self) -> list[float]:
        return list(self.info["widths"])

    def width_index(self, width: float) -> int:
        if width not in self.widths:
            raise IntegerModelError(f"width {width} is not one of the model's widths {self.widths}")
        return self.widths.index(width)

    def validate(self, where: str) -> "IntegerModel":
        """Every array has the dtype and shape the description implies; raise naming `where` if not."""
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise IntegerModelError(f"{where}: {what}")

        a, info = self.arch, self.info
        n_blocks = len(a["channels"])
        need(len(a["kernels"]) == len(a["pools"]) == len(a["act_levels"]) == n_blocks == len(self.conv),
             f"architecture lists {n_blocks} blocks but holds {len(self.conv)} weight tensors")
        c_in = a["in_channels"]
        for i, w in enumerate(self.conv):
            shape = (a["channels"][i], c_in, a["kernels"][i])
            need(w.dtype == np.int8 and w.shape == shape, f"conv{i} weights are {w.dtype} {w.shape}, expected int8 {shape}")
            need(bool(np.isin(w, (-1, 0, 1)).all()), f"conv{i} weights hold codes outside {{-1, 0, +1}}")
            c_in = a["channels"][i]
        need(self.fc.dtype == np.int8 and self.fc.shape == (a["n_classes"], c_in),
             f"fc weights are {self.fc.dtype} {self.fc.shape}, expected int8 {(a['n_classes'], c_in)}")
        need(len(self.requant) == len(self.fc_requant) == len(info["widths"]) == len(info["width_channels"]),
             "requantization tables do not match the number of widths")
        for wi, chans in enumerate(info["width_channels"]):
            need(len(chans) == n_blocks and all(1 <= c <= full for c, full in zip(chans, a["channels"])),
                 f"width {info['widths'][wi]}: channel counts {chans} do not fit {a['channels']}")
            tables = list(zip(self.requant[wi], chans)) + [(self.fc_requant[wi], a["n_classes"])]
            need(len(self.requant[wi]) == n_blocks, f"width {info['widths'][wi]}: wrong number of tables")
            for r, n in tables:
                need(r.m.dtype == np.int32 and r.shift.dtype == np.int32 and r.bias.dtype == np.int64
                     and r.m.shape == r.shift.shape == r.bias.shape == (n,),
                     f"width {info['widths'][wi]}: a requantization table is not int32/int32/int64 [{n}]")
                need(bool(((r.shift >= 1) & (r.shift <= 62)).all()), "requantization shift outside 1..62")
        return self
