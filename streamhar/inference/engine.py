"""`IntegerEngine`: runs an `IntegerModel` with the reference integer ops, at any of its widths.

Per block i at width w (n_i = width_channels[w][i] output channels, n_{i−1} input channels):
    acc = conv1d_ternary(x, conv[i][:n_i, :n_{i−1}], padding_i)     int32
    acc = maxpool1d(acc, pool_i)                                    (on accumulators, as trained)
    x   = requantize(acc, requant[w][i], 0, act_levels_i)           uint8 codes
then logits = requantize_logits(fc_int8(global_sum_pool(x), fc[:, :n_last]), fc_requant[w]),
int32 in units of 1/logit_scale. Every window is computed independently, so a batch gives the
same result as its windows one at a time.
"""
from __future__ import annotations

import numpy as np

from streamhar.errors import StreamharError

from . import ops
from .model import IntegerModel


class IntegerEngine:
    def __init__(self, model: IntegerModel, name: str = ""):
        self.model = model
        self.name = name or model.info.get("source", {}).get("bundle") or "the integer model"

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.model.arch["in_channels"], self.model.arch["window"]

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Windows [.., C, L] in source units → int8 input codes (the model's normalization, then step)."""
        info = self.model.info
        mean = np.asarray(info["mean"], np.float32)[:, None]
        std = np.asarray(info["std"], np.float32)[:, None]
        return ops.quantize_input(((np.asarray(x, np.float32) - mean) / std).astype(np.float32), info["input_step"])

    def _check(self, x) -> np.ndarray:
        c, length = self.input_shape
        x = np.asarray(x)
        if x.dtype != np.int8 or x.ndim not in (2, 3) or x.shape[-2:] != (c, length) or x.size == 0:
            raise StreamharError(f"expected int8 windows of shape [N, {c}, {length}] (or one [{c}, {length}]) "
                                 f"for {self.name}, got {x.dtype} {list(x.shape)}")
        return x

    def run(self, x: np.ndarray, width: float = 1.0) -> np.ndarray:
        """int8 windows [N, C, L] or [C, L] → int32 logits [N, K] or [K] (units of 1/logit_scale)."""
        return self.trace(x, width)[-1]

    def trace(self, x: np.ndarray, width: float = 1.0) -> list[np.ndarray]:
        """Every block's activation codes (uint8 [N, n_i, T_i]) and, last, the int32 logits —
        the intermediate values a firmware parity test compares. [C, L] input drops the N axis."""
        x = self._check(x)
        single = x.ndim == 2
        h = x[None] if single else x
        m, arch = self.model, self.model.arch
        wi = m.width_index(width)
        n_in, out = arch["in_channels"], []
        for i, (n_out, r) in enumerate(zip(m.info["width_channels"][wi], m.requant[wi])):
            acc = ops.conv1d_ternary(h, m.conv[i][:n_out, :n_in], arch["padding"][i])
            acc = ops.maxpool1d(acc, arch["pools"][i])
            h = ops.requantize(acc, r.m, r.shift, r.bias, 0, arch["act_levels"][i])
            n_in = n_out
            out.append(h)
        r = m.fc_requant[wi]
        out.append(ops.requantize_logits(ops.fc_int8(ops.global_sum_pool(h), m.fc[:, :n_in]), r.m, r.shift, r.bias))
        return [a[0] for a in out] if single else out

    def classify(self, x: np.ndarray, width: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(class index, margin top1 − top2 in logit units of 1/logit_scale) per window."""
        return ops.argmax_margin(self.run(x, width))


def choose_engine(model: IntegerModel, name: str = "", engine: str = "auto"):
    """(engine, kind): "c" the host C library (bit-identical, faster), "numpy" this reference;
    "auto" = C when its library builds, else numpy."""
    if engine not in ("auto", "c", "numpy"):
        raise StreamharError(f"engine must be 'auto', 'c' or 'numpy', got {engine!r}")
    if engine != "numpy":
        try:
            from .host_c import HostCEngine
            return HostCEngine(model, name=name), "c"
        except Exception:
            if engine == "c":
                raise
    return IntegerEngine(model, name=name), "numpy"
