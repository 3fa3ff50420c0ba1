"""Fast parsing of numeric text tables, with errors that point at the offending line.

The fast path hands the whole buffer to numpy's C parser; only when that fails (or the shape is
wrong) does a slow line-by-line pass run, to name the first bad line and what was wrong with it.
"""
from __future__ import annotations

import io
import re

import numpy as np

from streamhar.errors import DataFormatError

_NUMBER = re.compile(rb"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(nan|NaN|NAN|inf|Inf)$")


def parse_table(data: bytes, ncols: int, where: str, delimiter: str | None = ",",
                dtype=np.float32, first_line: int = 1) -> np.ndarray:
    """Parse `data` into a `[rows, ncols]` array; `where` names the file in errors.

    `delimiter=None` splits on any whitespace. `first_line` is the file line number of the
    buffer's first line, for buffers cut out of a larger file.
    """
    if not data.strip():
        raise DataFormatError(where, f"is empty (expected rows of {ncols} numbers)")
    try:
        table = np.loadtxt(io.BytesIO(data), delimiter=delimiter, dtype=dtype, ndmin=2, comments=None)
    except ValueError:
        table = None
    if table is None or table.shape[1] != ncols:
        _raise_first_bad_line(data, ncols, where, delimiter, first_line)
    return table


def _raise_first_bad_line(data: bytes, ncols: int, where: str, delimiter: str | None, first_line: int):
    sep = delimiter.encode() if delimiter else None
    for offset, raw in enumerate(data.splitlines()):
        line_no = first_line + offset
        fields = raw.strip().split(sep)
        if not raw.strip():
            raise DataFormatError(where, f"blank line (expected {ncols} numbers)", line_no)
        if len(fields) != ncols:
            raise DataFormatError(where, f"expected {ncols} columns, found {len(fields)}", line_no)
        for col, token in enumerate(fields, start=1):
            if not _NUMBER.match(token.strip()):
                shown = token.strip().decode("latin-1")[:40]
                raise DataFormatError(where, f"column {col}: {shown!r} is not a number", line_no)
    raise DataFormatError(where, f"could not be read as a table of {ncols} numbers")
