"""Quantizers handed to layers for quantization-aware training (larq's way).

Weights (per output channel, ``forward`` fake-quantizes with an STE, ``codes`` gives int8 codes
and per-channel scales with ``forward(w) == codes * scale`` bit for bit):
``TernaryEQ`` (DFTerNet e-Q), ``TernaryTWN``, ``BinaryWeights``, ``UniformWeights`` (int8/4/2),
``FP32Weights``. Activations: ``PACT``, ``TernaryActivation``, ``FP32Activation`` (ReLU).
Input: ``InputQuantizer``. Spec strings: ``make_weight_quantizer`` / ``make_activation_quantizer``.
"""
from .activations import PACT, FP32Activation, TernaryActivation
from .factory import (ACTIVATION_SPECS, WEIGHT_SPECS, make_activation_quantizer,
                      make_weight_quantizer, parse_spec)
from .inputs import InputQuantizer
from .ste import straight_through
from .ternary import TernaryEQ, TernaryTWN
from .weights import BinaryWeights, FP32Weights, UniformWeights, WeightQuantizer

__all__ = [
    "ACTIVATION_SPECS", "WEIGHT_SPECS", "BinaryWeights", "FP32Activation", "FP32Weights",
    "InputQuantizer", "PACT", "TernaryActivation", "TernaryEQ", "TernaryTWN", "UniformWeights",
    "WeightQuantizer", "make_activation_quantizer", "make_weight_quantizer", "parse_spec",
    "straight_through",
]
