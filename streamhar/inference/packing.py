"""2-bit packing of ternary weight codes (the `.shm` file's `t2` sections).

A tensor [O, I, K] is stored row by row, one row per output channel o; row o holds its I·K codes
in [in][k] order (j = c·K + k), four codes per byte, least significant bits first:

    byte  o·R + j//4,  bits 2·(j%4) .. 2·(j%4)+1,    R = ceil(I·K / 4) bytes per row

Each 2-bit field is the code's two's complement: 0b00 = 0, 0b01 = +1, 0b11 = −1; 0b10 (−2) is
invalid. A row's unused trailing fields are 0b00. Rows start on whole bytes so a kernel finds
output channel o at o·R without arithmetic on bit offsets, and a narrow width (first n_o rows,
first n_i·K codes of each) reads a prefix of each row — one packed copy serves every width.
"""
from __future__ import annotations

import math

import numpy as np


class InvalidCode(ValueError):
    """A packed field holds 0b10 (or padding holds anything but 0b00)."""

    def __init__(self, byte: int):
        self.byte = byte
        super().__init__(f"invalid 2-bit weight code at byte {byte} of the packed tensor")


def row_bytes(shape: tuple[int, ...]) -> int:
    return math.ceil(math.prod(shape[1:]) / 4)


def pack_ternary(codes: np.ndarray) -> np.ndarray:
    """int8 codes [O, ...] in {−1, 0, +1} → uint8 [O, R] (layout above)."""
    codes = np.asarray(codes)
    if not np.isin(codes, (-1, 0, 1)).all():
        raise ValueError("pack_ternary: codes must all be -1, 0 or +1")
    o, n = codes.shape[0], math.prod(codes.shape[1:])
    fields = np.zeros((o, row_bytes(codes.shape) * 4), np.uint8)
    fields[:, :n] = codes.reshape(o, n).astype(np.int8).view(np.uint8) & 0b11   # two's complement, low 2 bits
    quads = fields.reshape(o, -1, 4)
    return (quads[..., 0] | quads[..., 1] << 2 | quads[..., 2] << 4 | quads[..., 3] << 6).astype(np.uint8)


def unpack_ternary(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 [O, R] → int8 codes of `shape`; `InvalidCode` for 0b10 or non-zero padding."""
    o, n = shape[0], math.prod(shape[1:])
    packed = np.asarray(packed, np.uint8).reshape(o, row_bytes(shape))
    fields = (packed[..., None] >> np.array([0, 2, 4, 6], np.uint8)) & 0b11     # [O, R, 4]
    fields = fields.reshape(o, -1)
    bad = fields == 0b10
    bad[:, n:] |= fields[:, n:] != 0
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InvalidCode(int(row * packed.shape[1] + col // 4))
    return np.where(fields[:, :n] == 0b11, -1, fields[:, :n]).astype(np.int8).reshape(shape)
