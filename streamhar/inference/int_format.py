"""The `.shm` file: an `IntegerModel` as one versioned, checksummed binary file (docs/FORMAT.md).

    0        8 bytes   magic  89 53 48 4D 0D 0A 1A 0A  ("\\x89SHM\\r\\n\\x1a\\n", PNG-style: catches
                       7-bit and newline-translating transfers)
    8        u32 LE    format version (FORMAT_VERSION)
    12       u32 LE    H: header length in bytes (a multiple of 8)
    16       H bytes   JSON header, UTF-8, padded with spaces: {"model": info, "sections": [...],
                       "data_end": N}; each section {"name", "dtype", "shape", "offset", "nbytes"}
    ...      sections  at absolute file offsets, each a multiple of 8, zero bytes in between
    N        u32 LE    CRC-32 (zlib.crc32) of bytes [0, N); N is a multiple of 4; the file ends here

Section dtypes: "int8", "int32", "int64" (little-endian, C order), "t2" (ternary codes packed
2 bits each, packing.py; `shape` is the unpacked shape). Loading checks, in order: magic,
version (a later version may lay out the rest differently), length (truncated), checksum,
then every section's bounds, sizes and codes, then the model's own consistency.
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np

from streamhar.errors import StreamharError

from .model import IntegerModel, Requant
from .packing import InvalidCode, pack_ternary, row_bytes, unpack_ternary

MAGIC = b"\x89SHM\r\n\x1a\n"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<8sII")
ALIGN = 8
DTYPES = {"int8": np.dtype("<i1"), "int32": np.dtype("<i4"), "int64": np.dtype("<i8")}


class ShmFormatError(StreamharError):
    """A `.shm` file that is not a readable integer model."""


def _sections(model: IntegerModel) -> list[tuple[str, np.ndarray, str, tuple[int, ...]]]:
    """(name, bytes-to-write array, dtype name, logical shape) in file order."""
    out = [(f"conv{i}.weight", pack_ternary(w), "t2", w.shape) for i, w in enumerate(model.conv)]
    out.append(("fc.weight", model.fc, "int8", model.fc.shape))
    tables = [(f"w{wi}.block{i}", r) for wi, rs in enumerate(model.requant) for i, r in enumerate(rs)]
    tables += [(f"w{wi}.fc", r) for wi, r in enumerate(model.fc_requant)]
    for prefix, r in tables:
        for field, dtype in (("m", "int32"), ("shift", "int32"), ("bias", "int64")):
            arr = getattr(r, field)
            out.append((f"{prefix}.{field}", arr, dtype, arr.shape))
    return out


def _pad(n: int, align: int = ALIGN) -> int:
    return -n % align


def save_shm(model: IntegerModel, path: str | Path) -> Path:
    model.validate(str(path))
    sections = _sections(model)
    payloads = [np.ascontiguousarray(a, DTYPES.get(dt, np.uint8)).tobytes() for _, a, dt, _ in sections]
    # the header holds offsets that depend on its own length: lay out with a fixed-point iteration
    header_len, entries = 0, []
    while True:
        offset, entries = PREAMBLE.size + header_len, []
        for (name, _, dt, shape), data in zip(sections, payloads):
            offset += _pad(offset)
            entries.append({"name": name, "dtype": dt, "shape": list(shape), "offset": offset, "nbytes": len(data)})
            offset += len(data)
        data_end = offset + _pad(offset, 4)
        text = json.dumps({"model": model.info, "sections": entries, "data_end": data_end}).encode()
        if len(text) + _pad(len(text)) == header_len:
            break
        header_len = len(text) + _pad(len(text))
    blob = bytearray(PREAMBLE.pack(MAGIC, FORMAT_VERSION, header_len) + text + b" " * (header_len - len(text)))
    for entry, data in zip(entries, payloads):
        blob += bytes(entry["offset"] - len(blob)) + data
    blob += bytes(data_end - len(blob))
    blob += struct.pack("<I", zlib.crc32(blob))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(blob))
    return path


def _crc_ok(blob: bytes) -> bool:
    return len(blob) >= 4 and zlib.crc32(blob[:-4]) == struct.unpack("<I", blob[-4:])[0]


def _read_header(blob: bytes, path: str) -> dict:
    if len(blob) < PREAMBLE.size:
        if blob == MAGIC[: len(blob)] or blob.startswith(MAGIC):
            raise ShmFormatError(f"{path}: truncated .shm file ({len(blob)} bytes, not even a full preamble)")
        raise ShmFormatError(f"{path}: not a streamhar integer model (.shm): wrong magic bytes")
    magic, version, header_len = PREAMBLE.unpack_from(blob)
    if magic != MAGIC:
        raise ShmFormatError(f"{path}: not a streamhar integer model (.shm): wrong magic bytes {magic!r}")
    if version != FORMAT_VERSION:
        raise ShmFormatError(f"{path}: .shm format version {version}; this streamhar reads version "
                             f"{FORMAT_VERSION} — export the model again with a matching streamhar")
    if PREAMBLE.size + header_len > len(blob):
        raise ShmFormatError(f"{path}: truncated .shm file ({len(blob)} bytes; the header alone needs "
                             f"{PREAMBLE.size + header_len})")
    try:
        header = json.loads(blob[PREAMBLE.size: PREAMBLE.size + header_len].decode())
        data_end = int(header["data_end"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        why = "checksum mismatch (the file is corrupted)" if not _crc_ok(blob) else "damaged JSON header"
        raise ShmFormatError(f"{path}: {why}") from None
    if len(blob) < data_end + 4:
        raise ShmFormatError(f"{path}: truncated .shm file ({len(blob)} bytes, expected {data_end + 4})")
    if len(blob) > data_end + 4:
        raise ShmFormatError(f"{path}: {len(blob) - data_end - 4} unexpected bytes after the checksum")
    if not _crc_ok(blob):
        raise ShmFormatError(f"{path}: checksum mismatch (CRC-32 of the content differs from the "
                             "trailer); the file is corrupted")
    return header


def _read_section(blob: bytes, entry: dict, lo: int, hi: int, path: str) -> np.ndarray:
    name, dt, shape, off, n = entry["name"], entry["dtype"], tuple(entry["shape"]), entry["offset"], entry["nbytes"]
    if dt == "t2":
        want = shape[0] * row_bytes(shape) if shape else -1
    elif dt in DTYPES:
        want = int(np.prod(shape, dtype=np.int64)) * DTYPES[dt].itemsize
    else:
        raise ShmFormatError(f"{path}: section {name} has unknown dtype {dt!r}")
    if n != want or off % ALIGN or not lo <= off <= off + n <= hi:
        raise ShmFormatError(f"{path}: section {name} has a bad size or offset")
    if dt == "t2":
        try:
            return unpack_ternary(np.frombuffer(blob, np.uint8, n, off), shape)
        except InvalidCode as exc:
            raise ShmFormatError(f"{path}: section {name}: invalid 2-bit weight code (0b10, or non-zero "
                                 f"padding) at file byte {off + exc.byte}") from None
    native = DTYPES[dt].newbyteorder("=")       # little-endian on disk, native in memory
    return np.frombuffer(blob, DTYPES[dt], want // DTYPES[dt].itemsize, off).astype(native).reshape(shape)


def load_shm(path: str | Path) -> IntegerModel:
    path = str(path)
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ShmFormatError(f"{path}: cannot read integer model ({exc.strerror or exc})") from None
    header = _read_header(blob, path)
    try:
        lo, hi = PREAMBLE.size + PREAMBLE.unpack_from(blob)[2], header["data_end"]
        arrays = {e["name"]: _read_section(blob, e, lo, hi, path) for e in header["sections"]}
        info = header["model"]
        n_blocks, n_widths = len(info["architecture"]["channels"]), len(info["widths"])
        table = lambda p: Requant(arrays[f"{p}.m"], arrays[f"{p}.shift"], arrays[f"{p}.bias"])
        model = IntegerModel(info, [arrays[f"conv{i}.weight"] for i in range(n_blocks)], arrays["fc.weight"],
                             [[table(f"w{wi}.block{i}") for i in range(n_blocks)] for wi in range(n_widths)],
                             [table(f"w{wi}.fc") for wi in range(n_widths)])
    except (KeyError, TypeError) as exc:
        raise ShmFormatError(f"{path}: header lacks {exc}") from None
    return model.validate(path)
