"""What a network costs per window: multiply-accumulates and weight bytes, per width."""
from __future__ import annotations

import math

from streamhar.models.config import ModelConfig

_BITS = {"ternary-eq": 2, "ternary-twn": 2, "binary": 1, "int2": 2, "int4": 4, "int8": 8, "fp32": 32}


def weight_bits(spec: str) -> int:
    return _BITS[spec.split(":", 1)[0]]


def layer_shapes(cfg: ModelConfig, width: float) -> list[dict]:
    """Per layer (all branches): name, in/out channels, kernel, input length, MACs, weights."""
    out = cfg.width_channels(width)
    layers = []
    for b, idx in enumerate(cfg.branches):
        length, c_in = cfg.window, len(idx)
        for i, (k, pool) in enumerate(zip(cfg.kernels, cfg.pools)):
            c_out = out[i]
            layers.append({"name": f"branch{b}.conv{i}", "in": c_in, "out": c_out, "kernel": k, "length": length,
                           "macs": length * c_in * c_out * k, "weights": c_in * c_out * k,
                           "bits": weight_bits(cfg.block_weight_quant(i))})
            length, c_in = length // pool, c_out
    features = out[-1] * len(cfg.branches)
    layers.append({"name": "fc", "in": features, "out": cfg.n_classes, "kernel": 1, "length": 1,
                   "macs": features * cfg.n_classes, "weights": features * cfg.n_classes,
                   "bits": weight_bits(cfg.fc_weight_quant)})
    return layers


def macs(cfg: ModelConfig, width: float) -> int:
    return sum(layer["macs"] for layer in layer_shapes(cfg, width))


def weight_bytes(cfg: ModelConfig, width: float) -> int:
    """Packed weight storage: each layer's codes at its bit width, rounded up to whole bytes."""
    return sum(math.ceil(layer["weights"] * layer["bits"] / 8) for layer in layer_shapes(cfg, width))
