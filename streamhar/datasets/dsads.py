"""DSADS — Daily and Sports Activities (UCI 256), read from its release archive.

Layout: `dsads/data.zip` (read in place) or an extracted `dsads/data/`; members
`data/aAA/pP/sSS.txt` = activity AA (01–19), subject P, 5-s segment SS (01–60), each 125 rows × 45
comma-separated columns at 25 Hz. The 60 segments of one subject × activity are consecutive pieces
of one 5-minute capture, so one recording = those segments concatenated in order (7,500 samples).
A segment that is missing, short or malformed is an error naming the member and line: a recording
with a hole would silently shift every later timestamp.

Channels are named by the release's documented order: units T, RA, LA, RL, LL, each acc x/y/z
(m/s²), gyro x/y/z (rad/s), mag x/y/z (Xsens MTx, normalised to the earth field: a.u.).
Splits (by subject): train p1–p5, validation p6 (p7–p8 of the full release are held out).
"""
from __future__ import annotations

import functools
import re
import zipfile
from pathlib import Path

import numpy as np

from streamhar.datasets.base import Dataset, RecordingRef, natural_key
from streamhar.datasets.textparse import parse_table
from streamhar.errors import DataFormatError, DataNotFound
from streamhar.recording import Recording, imu_channels

SEGMENTS = 60
ROWS_PER_SEGMENT = 125
ACTIVITIES = (
    "sitting", "standing", "lying on back", "lying on right side", "ascending stairs",
    "descending stairs", "standing in an elevator, still", "moving around in an elevator",
    "walking in a parking lot", "walking on a treadmill, 4 km/h, flat",
    "walking on a treadmill, 4 km/h, 15 deg inclined", "running on a treadmill, 8 km/h",
    "exercising on a stepper", "exercising on a cross trainer",
    "cycling on an exercise bike, horizontal", "cycling on an exercise bike, vertical",
    "rowing", "jumping", "playing basketball",
)
_MEMBER = re.compile(r"^data/a(\d{2})/p(\d+)/s(\d{2})\.txt$")


class _Files:
    """Reads members either from data.zip or from an extracted data/ folder, with one naming scheme."""

    def __init__(self, root: Path):
        self.zip_path = root / "data.zip"
        self.root = root
        self._zip = zipfile.ZipFile(self.zip_path) if not (root / "data").is_dir() else None

    def names(self) -> list[str]:
        if self._zip is not None:
            return self._zip.namelist()
        return [p.relative_to(self.root).as_posix() for p in (self.root / "data").rglob("*.txt")]

    def read(self, name: str) -> bytes:
        if self._zip is not None:
            try:
                return self._zip.read(name)
            except KeyError:
                raise DataNotFound(f"{self.where(name)}: member missing from the archive") from None
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataFormatError(self.where(name), f"cannot be read from the archive ({exc})") from None
        path = self.root / name
        if not path.is_file():
            raise DataNotFound(f"{path}: file missing")
        return path.read_bytes()

    def where(self, name: str) -> str:
        return f"{self.zip_path}:{name}" if self._zip is not None else str(self.root / name)


def _open(root: Path) -> _Files:
    """One reader per archive state: reopening a 7,000-member zip for every member is slow."""
    zip_path = root / "data.zip"
    stamp = zip_path.stat().st_mtime_ns if zip_path.is_file() else 0
    return _open_cached(root, stamp)


@functools.lru_cache(maxsize=4)
def _open_cached(root: Path, stamp: int) -> _Files:
    try:
        return _Files(root)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataFormatError(root / "data.zip", f"is not a readable zip archive ({exc}); "
                              "fetch it again with `streamhar data fetch dsads --force`") from None


class DSADS(Dataset):
    name = "dsads"
    title = "DSADS (Daily and Sports Activities, UCI 256)"
    folder = "dsads"
    rate = 25.0
    channels = imu_channels(("T", "RA", "LA", "RL", "LL"),
                            [("acc", "m/s^2"), ("gyro", "rad/s"), ("mag", "a.u.")])
    class_names = ACTIVITIES
    splits = {"train": ("p1", "p2", "p3", "p4", "p5"), "validation": ("p6",)}
    checksums = "SHA256SUMS"

    def present(self, root: Path) -> bool:
        return (root / "data.zip").is_file() or (root / "data").is_dir()

    def layout_hint(self, root: Path) -> str:
        return f"{root / 'data.zip'} or an extracted {root / 'data'}/"

    def normalize_subject(self, token: str) -> str:
        return token if token.startswith("p") else f"p{token}"

    def index(self, root: Path) -> list[RecordingRef]:
        segments: dict[tuple[str, str], list[str]] = {}
        for name in _open(root).names():
            m = _MEMBER.match(name)
            if m:
                segments.setdefault((f"p{m[2]}", f"a{m[1]}"), []).append(name)
        refs = [RecordingRef(f"{subj}/{act}", subj, act, tuple(sorted(names)))
                for (subj, act), names in segments.items()]
        return sorted(refs, key=lambda r: (natural_key(r.subject), r.session))

    def read_file(self, root: Path, relpath: str) -> bytes | None:
        files = _open(root)
        try:
            return files.read(relpath)
        except DataNotFound:
            return None

    def file_size(self, root: Path, relpath: str) -> int | None:
        data = self.read_file(root, relpath)
        return None if data is None else len(data)

    def load(self, root: Path, ref: RecordingRef) -> Recording:
        files = _open(root)
        expected = [f"data/{ref.session}/{ref.subject}/s{k:02d}.txt" for k in range(1, SEGMENTS + 1)]
        missing = sorted(set(expected) - set(ref.files))
        if missing:
            raise DataNotFound(f"{files.where(missing[0])}: segment missing ({len(missing)} of "
                               f"{SEGMENTS} missing for {ref.id}); every recording needs s01–s60")
        parts = []
        for name in expected:
            table = parse_table(files.read(name), len(self.channels), files.where(name))
            if table.shape[0] != ROWS_PER_SEGMENT:
                raise DataFormatError(files.where(name), f"has {table.shape[0]} rows, expected "
                                      f"{ROWS_PER_SEGMENT} (5 s at 25 Hz): truncated or padded")
            parts.append(table)
        samples = np.concatenate(parts)
        n = samples.shape[0]
        label = int(ref.session[1:]) - 1
        if not 0 <= label < len(ACTIVITIES):
            raise DataFormatError(files.where(expected[0]), f"activity {ref.session} is not one of a01–a19")
        return Recording(
            dataset=self.name, id=ref.id, subject=ref.subject, session=ref.session,
            timestamps=np.arange(n, dtype=np.float64) / self.rate, samples=samples,
            channels=self.channels, rate=self.rate,
            labels=np.full(n, label, dtype=np.int16), class_names=self.class_names,
            source_files=tuple(files.where(name) for name in (expected[0], expected[-1])),
        )
