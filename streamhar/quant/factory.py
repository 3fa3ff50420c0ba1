"""Build quantizers from spec strings (configs and model bundles record ``quantizer.spec``).

Grammar:  ``name``  or  ``name:key=value,key=value``  (values are numbers; spaces ignored).

Weights:      ternary-eq [xi]   ternary-twn [delta_factor]   binary   int8   int4   int2   fp32
Activations:  pact-u8 pact-u4 pact-u2 pact-s8 pact-s4 pact-s2 [init_clip]   ternary-act   fp32

Every quantizer's ``spec`` is canonical: all parameters written out, sorted by key, floats in
Python's shortest round-trip form, so ``make_*(q.spec).spec == q.spec`` and a bundle rebuilds
the same quantizer even if a default changes later. Unknown names or keys, malformed pairs
and non-numeric values raise ``ValueError`` listing what is valid.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .activations import PACT, FP32Activation, TernaryActivation
from .ternary import TernaryEQ, TernaryTWN
from .weights import BinaryWeights, FP32Weights, UniformWeights, WeightQuantizer

# name -> (constructor taking the parsed params, allowed parameter names)
_WEIGHTS: dict[str, tuple[Callable[..., WeightQuantizer], tuple[str, ...]]] = {
    "ternary-eq": (lambda **p: TernaryEQ(**p), ("xi",)),
    "ternary-twn": (lambda **p: TernaryTWN(**p), ("delta_factor",)),
    "binary": (lambda: BinaryWeights(), ()),
    "int8": (lambda: UniformWeights(8), ()),
    "int4": (lambda: UniformWeights(4), ()),
    "int2": (lambda: UniformWeights(2), ()),
    "fp32": (lambda: FP32Weights(), ()),
}


def _pact(bits: int, signed: bool):
    return lambda **p: PACT(bits=bits, signed=signed, **p)


_ACTIVATIONS: dict[str, tuple[Callable[..., nn.Module], tuple[str, ...]]] = {
    **{f"pact-{'s' if s else 'u'}{b}": (_pact(b, s), ("init_clip",))
       for s in (False, True) for b in (8, 4, 2)},
    "ternary-act": (lambda: TernaryActivation(), ()),
    "fp32": (lambda: FP32Activation(), ()),
}

WEIGHT_SPECS: tuple[str, ...] = tuple(_WEIGHTS)
ACTIVATION_SPECS: tuple[str, ...] = tuple(_ACTIVATIONS)


def parse_spec(spec: str) -> tuple[str, dict[str, float]]:
    """``"ternary-eq:xi=0.05"`` -> ``("ternary-eq", {"xi": 0.05})``."""
    if not isinstance(spec, str):
        raise ValueError(f"quantizer spec must be a string, got {spec!r}")
    name, _, rest = spec.replace(" ", "").partition(":")
    params: dict[str, float] = {}
    if rest:
        for pair in rest.split(","):
            key, eq, value = pair.partition("=")
            if not eq or not key or not value:
                raise ValueError(f"quantizer spec {spec!r}: expected key=value, got {pair!r}")
            if key in params:
                raise ValueError(f"quantizer spec {spec!r}: {key!r} given twice")
            try:
                params[key] = float(value)
            except ValueError:
                raise ValueError(f"quantizer spec {spec!r}: {key}={value!r} is not a number") from None
    return name.lower(), params


def _build(spec: str, table: dict, kind: str):
    name, params = parse_spec(spec)
    if name not in table:
        raise ValueError(f"unknown {kind} quantizer {spec!r}; valid: {', '.join(table)}"
                         f" (parameters after ':' as key=value, comma-separated)")
    make, allowed = table[name]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"{kind} quantizer {name!r} has no parameter {', '.join(unknown)}; "
                         f"valid: {', '.join(allowed) or '(none)'}")
    return make(**params)


def make_weight_quantizer(spec: str) -> WeightQuantizer:
    return _build(spec, _WEIGHTS, "weight")


def make_activation_quantizer(spec: str) -> nn.Module:
    return _build(spec, _ACTIVATIONS, "activation")
