"""The per-layer checksum the firmware reports (`har_layer_checksum` in firmware/runtime/har_net.c):
Σ_j (2j+1)·codes[j] mod 2^32 over a block's uint8 output codes [n_i][T_i], row-major. Position-
weighted, so a value in the wrong place changes it; vectorised here, so a parity test can compare
every layer of every window and name the first one that differs."""
from __future__ import annotations

import numpy as np


def layer_checksum(codes: np.ndarray) -> np.ndarray:
    """uint8 codes [..., C, T] → uint32 [...] (one checksum per window)."""
    a = np.asarray(codes, np.uint8)
    flat = a.reshape(*a.shape[:-2], -1).astype(np.uint64)
    weights = np.arange(1, 2 * flat.shape[-1], 2, dtype=np.uint64)
    return ((flat * weights).sum(axis=-1) % (1 << 32)).astype(np.uint32)


def trace_checksums(trace: list[np.ndarray]) -> np.ndarray:
    """IntegerEngine.trace(x [N, C, L]) → uint32 [N, n_blocks]: every block's checksum per window."""
    return np.stack([layer_checksum(codes) for codes in trace[:-1]], axis=-1)
