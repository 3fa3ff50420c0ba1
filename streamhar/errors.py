"""The errors streamhar shows to people.

Every error a user can cause (a missing data folder, a truncated file, a bad selector) is a
`StreamharError`: the CLI prints its message on one line, with no traceback, and exits 2.
Messages name the file (and line, where there is one) and say what was expected or what to do.
"""
from __future__ import annotations

from pathlib import Path


class StreamharError(Exception):
    """Base of every error that is the user's to fix; the CLI prints it without a traceback."""


class DataNotFound(StreamharError):
    """A data set, or a file of one, is not where streamhar looked."""


class DataFormatError(StreamharError):
    """A data file exists but does not have the documented format."""

    def __init__(self, path: Path | str, problem: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class IntegrityError(StreamharError):
    """A file's size or checksum differs from the one the data set publishes."""


class UsageError(StreamharError):
    """A name, selector or option that streamhar does not know."""
