"""USC-HAD — one MotionNode IMU at the front right hip, 100 Hz, 12 activities.

Layout: `usc-had/USC-HAD/SubjectN/aMtK.mat` (subject N, activity M, trial K), MATLAB v5 files read
with scipy. Every scalar field is stored as a string (`activity_number = '3'`); three files carry an
extra `comments` field, which is ignored. `sensor_readings` is N×6: acc x/y/z in g, gyro x/y/z in
degrees per second. One recording per subject × activity × trial; its label is `activity_number`,
which must agree with the file name (a disagreement is an error, not a guess).

Splits (by subject): train 1–10, validation 11–12 (13–14 of the full release are held out).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.io

from streamhar.datasets.base import Dataset, RecordingRef, natural_key
from streamhar.errors import DataFormatError
from streamhar.recording import Recording, imu_channels

ACTIVITIES = (
    "walking forward", "walking left", "walking right", "walking upstairs", "walking downstairs",
    "running forward", "jumping up", "sitting", "standing", "sleeping", "elevator up", "elevator down",
)
_FILE = re.compile(r"^a(\d+)t(\d+)\.mat$")
_SUBJECT_DIR = re.compile(r"^Subject(\d+)$")


class USCHAD(Dataset):
    name = "usc-had"
    title = "USC-HAD (USC Human Activity Dataset)"
    folder = "usc-had"
    rate = 100.0
    channels = imu_channels(("hip",), [("acc", "g"), ("gyro", "dps")])
    class_names = ACTIVITIES
    splits = {"train": tuple(str(i) for i in range(1, 11)), "validation": ("11", "12")}
    checksums = "SHA256SUMS"

    def present(self, root: Path) -> bool:
        return (root / "USC-HAD").is_dir()

    def layout_hint(self, root: Path) -> str:
        return f"{root / 'USC-HAD'}/SubjectN/aMtK.mat"

    def normalize_subject(self, token: str) -> str:
        m = re.fullmatch(r"(?:subject|s)?(\d+)", token, re.IGNORECASE)
        return str(int(m[1])) if m else token

    def index(self, root: Path) -> list[RecordingRef]:
        refs = []
        for subject_dir in (root / "USC-HAD").iterdir():
            sm = _SUBJECT_DIR.match(subject_dir.name)
            if not (sm and subject_dir.is_dir()):
                continue
            for path in subject_dir.iterdir():
                fm = _FILE.match(path.name)
                if fm:
                    subject = str(int(sm[1]))
                    session = f"a{int(fm[1])}t{int(fm[2])}"
                    refs.append(RecordingRef(f"{subject}/{session}", subject, session,
                                             (path.relative_to(root).as_posix(),)))
        return sorted(refs, key=lambda r: (natural_key(r.subject), natural_key(r.session)))

    def load(self, root: Path, ref: RecordingRef) -> Recording:
        path = root / ref.files[0]
        fields = _read_mat(path)
        activity = _int_field(fields, "activity_number", path)
        expected = int(_FILE.match(path.name)[1])
        if activity != expected:
            raise DataFormatError(path, f"activity_number is {activity} but the file name says {expected}")
        if not 1 <= activity <= len(ACTIVITIES):
            raise DataFormatError(path, f"activity_number {activity} is outside 1–{len(ACTIVITIES)}")
        readings = fields.get("sensor_readings")
        if readings is None:
            raise DataFormatError(path, "has no 'sensor_readings' field")
        if readings.ndim != 2 or readings.shape[1] != 6 or not np.issubdtype(readings.dtype, np.number):
            raise DataFormatError(path, f"sensor_readings is {readings.dtype} {readings.shape}, "
                                  "expected a numeric N×6 array (acc x,y,z in g; gyro x,y,z in dps)")
        samples = np.ascontiguousarray(readings, dtype=np.float32)
        if not np.isfinite(samples).all():
            bad = int(np.argwhere(~np.isfinite(samples))[0, 0])
            raise DataFormatError(path, f"sensor_readings row {bad + 1} holds a non-finite value")
        n = samples.shape[0]
        return Recording(
            dataset=self.name, id=ref.id, subject=ref.subject, session=ref.session,
            timestamps=np.arange(n, dtype=np.float64) / self.rate, samples=samples,
            channels=self.channels, rate=self.rate,
            labels=np.full(n, activity - 1, dtype=np.int16), class_names=self.class_names,
            source_files=(str(path),),
        )


def _read_mat(path: Path) -> dict:
    if not path.is_file():
        raise DataFormatError(path, "file missing")
    try:
        return scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises many types for damaged files; all mean the same here
        raise DataFormatError(path, f"is not a readable MATLAB v5 file ({type(exc).__name__}: {exc}); "
                              "it may be truncated — check it with `streamhar data verify usc-had`") from None


def _int_field(fields: dict, key: str, path: Path) -> int:
    value = fields.get(key)
    try:
        return int(str(np.asarray(value).ravel()[0]).strip())
    except (TypeError, ValueError, IndexError):
        raise DataFormatError(path, f"field {key!r} is {value!r}, expected a number stored as a string") from None
