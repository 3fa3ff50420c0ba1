"""Data-set manifests: where a data set's official archive is and what a complete copy contains.

One TOML file per data set in `replay_data/` of the checkout (committed; fetched data is not). For
an installed wheel, which has no checkout, `$STREAMHAR_MANIFESTS` names the folder that holds them.

Decisions:
- Manifests are validated strictly when read (every field present, of the right type, no unknown
  field), so a typo fails with the file and field named instead of surfacing later in a download.
- `sha256 = ""` and `size = 0` mean "no verified value known"; the fetch then relies on the
  `[[expected]]` per-file checks.
- `[[expected]].count` is a minimum (extra files of a user's own do not make a copy incomplete);
  `size` (0 = unchecked) applies to every file the pattern matches.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from streamhar.datasets.paths import project_root
from streamhar.errors import StreamharError, UsageError

ENV_VAR = "STREAMHAR_MANIFESTS"
UNPACK_MODES = ("zip", "none")


@dataclass(frozen=True)
class Expected:
    """Files a complete copy must contain: at least `count` matches of `pattern` (a glob relative to
    the data set's folder), each of `size` bytes when size is not 0."""
    pattern: str
    count: int = 1
    size: int = 0


@dataclass(frozen=True)
class Manifest:
    name: str
    title: str
    folder: str          # sub-folder of the data dir, e.g. "usc-had"
    homepage: str
    url: str             # official download
    archive: str         # file name the download is saved as
    sha256: str          # lower-case hex, or "" when no verified value is known
    size: int            # archive bytes, 0 if unknown
    unpack: str          # "zip" or "none"
    citation: str
    expected: tuple[Expected, ...]


def manifest_dir() -> Path:
    """The folder holding the manifests: the checkout's replay_data/, else $STREAMHAR_MANIFESTS."""
    root = project_root()
    if root is not None:
        return root / "replay_data"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    raise StreamharError(
        f"cannot find the data-set manifests: streamhar is not running from a source checkout "
        f"(which has them in replay_data/). Set ${ENV_VAR} to a folder holding dsads.toml, "
        f"usc-had.toml, opportunity.toml (copy them from the streamhar repository)."
    )


def manifest_names() -> list[str]:
    """Names of the manifests available, sorted."""
    folder = manifest_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


def load_manifest(name: str) -> Manifest:
    """The manifest called `name`; UsageError listing the known names if there is none."""
    path = manifest_dir() / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(manifest_names()) or f"none (no *.toml in {manifest_dir()})"
        raise UsageError(f"no data set called {name!r}; known data sets: {known}")
    return read_manifest(path)


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Parse and validate one manifest file."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise StreamharError(f"{path}: cannot read manifest: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise StreamharError(f"{path}: not valid TOML: {e}") from None

    def bad(field: str, problem: str) -> StreamharError:
        return StreamharError(f"{path}: manifest field {field!r} {problem}")

    def take(table: dict, field: str, kind: type, where: str = "", default=None):
        label = f"{where}{field}"
        if field not in table:
            if default is not None:
                return default
            raise bad(label, "is missing")
        value = table[field]
        # bool is an int subclass in Python; `size = true` is still a mistake.
        if not isinstance(value, kind) or isinstance(value, bool):
            raise bad(label, f"must be {kind.__name__}, not {type(value).__name__} ({value!r})")
        if kind is int and value < 0:
            raise bad(label, f"must not be negative ({value})")
        return value

    # Every Manifest field but `expected` is a scalar: `size` an int, the rest strings.
    scalar = {f: int if f == "size" else str for f in Manifest.__dataclass_fields__ if f != "expected"}
    unknown = set(data) - set(scalar) - {"expected"}
    if unknown:
        raise bad(sorted(unknown)[0], "is not a manifest field (known: " + ", ".join([*scalar, "expected"]) + ")")
    values = {f: take(data, f, kind) for f, kind in scalar.items()}

    if values["name"] != path.stem:
        raise bad("name", f"is {values['name']!r} but the file is {path.name} (they must match)")
    values["sha256"] = values["sha256"].lower()
    if values["sha256"] and not re.fullmatch(r"[0-9a-f]{64}", values["sha256"]):
        raise bad("sha256", "must be 64 hexadecimal digits, or \"\" when unknown")
    # folder and archive become paths under the data dir: one plain name each, nothing that escapes.
    for field in ("folder", "archive"):
        if not _plain_name(values[field]):
            raise bad(field, f"must be a plain file or folder name, not {values[field]!r}")
    if values["unpack"] not in UNPACK_MODES:
        raise bad("unpack", f"must be one of {', '.join(map(repr, UNPACK_MODES))}, not {values['unpack']!r}")

    entries = data.get("expected")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise bad("expected", "must be one or more [[expected]] tables (nothing to check a copy against)")
    expected = []
    for i, entry in enumerate(entries):
        where = f"expected[{i}]."
        extra = set(entry) - set(Expected.__dataclass_fields__)
        if extra:
            raise bad(where + sorted(extra)[0], "is not a field of [[expected]] (known: pattern, count, size)")
        item = Expected(
            pattern=take(entry, "pattern", str, where),
            count=take(entry, "count", int, where, default=1),
            size=take(entry, "size", int, where, default=0),
        )
        if not all(_plain_name(part) for part in item.pattern.split("/")):
            raise bad(where + "pattern", f"must be a relative path inside the folder, not {item.pattern!r}")
        expected.append(item)
    return Manifest(**values, expected=tuple(expected))


def _plain_name(text: str) -> bool:
    return bool(text) and text not in (".", "..") and "/" not in text and "\\" not in text
