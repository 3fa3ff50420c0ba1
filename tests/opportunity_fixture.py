"""Small OPPORTUNITY recordings in the exact published .dat format, for tests (no tests in here).

The real `column_names.txt` and `label_legend.txt` are copied from the shared data folder (the
recordings themselves are not available), and `.dat` files are written beside them: 250
single-space-separated columns, integer readings like the originals' `round(original)`, MILLISEC
from 0 in the 33/34 ms steps of 30 Hz, real label codes from the legend, and `NaN` gaps of every
kind the loader must fill (interior, leading, trailing, a whole channel), plus NaNs in object
sensor columns the loader ignores.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

RELEASE = Path("opportunity") / "OpportunityUCIDataset" / "dataset"
METADATA = ("column_names.txt", "label_legend.txt")
NCOLS = 250

# 1-based columns of the deliberate gaps (all among the 113 body-worn channels).
INTERIOR_COLUMN = 2      # Accelerometer RKN^ accX: rows INTERIOR_ROWS are NaN
INTERIOR_ROWS = range(10, 15)
INTERIOR_ENDS = (100.0, 160.0)   # values at rows 9 and 15: the fill is exactly 110, 120, ..., 150
LEADING_COLUMN = 38      # InertialMeasurementUnit BACK accX: the first LEADING_ROWS rows are NaN
LEADING_ROWS = 5
TRAILING_COLUMN = 134    # InertialMeasurementUnit R-SHOE Compass: the last TRAILING_ROWS rows are NaN
TRAILING_ROWS = 6
ALL_NAN_COLUMN = 5       # Accelerometer HIP accX: all NaN in the run chosen by `all_nan_run`

# 1-based label columns.
LOCOMOTION_COLUMN, GESTURE_COLUMN = 244, 250
_LABEL_TRACKS = ("Locomotion", "HL_Activity", "LL_Left_Arm", "LL_Left_Arm_Object",
                 "LL_Right_Arm", "LL_Right_Arm_Object", "ML_Both_Arms")   # columns 244..250


@dataclass
class FixtureRun:
    path: Path
    table: np.ndarray        # float64 [rows, 250], exactly what was written (NaN where "NaN")
    all_nan: bool            # whether ALL_NAN_COLUMN is NaN throughout

    def column(self, index: int) -> np.ndarray:
        """A 1-based column, as written."""
        return self.table[:, index - 1]


def shared_metadata_dir() -> Path:
    """The folder holding the real metadata: under $STREAMHAR_DATA if it has it, else shared/data."""
    candidates = []
    if os.environ.get("STREAMHAR_DATA"):
        candidates.append(Path(os.environ["STREAMHAR_DATA"]) / RELEASE)
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data" / RELEASE)
    for folder in candidates:
        if all((folder / name).is_file() for name in METADATA):
            return folder
    raise FileNotFoundError(f"OPPORTUNITY metadata not found in any of: {', '.join(map(str, candidates))}")


def read_legend_codes(legend: Path) -> dict[str, list[int]]:
    """Track name -> codes in legend order (a plain split, independent of the loader's parser)."""
    tracks: dict[str, list[int]] = {}
    for line in legend.read_bytes().decode("latin-1").splitlines()[1:]:
        if line.strip():
            code, track, _ = (part.strip() for part in line.split("   -   "))
            tracks.setdefault(track, []).append(int(code))
    return tracks


def write_opportunity_fixture(
    dest_dir: Path | str,
    runs: tuple[str, ...] = ("S1-ADL1",),
    rows: int = 240,
    seed: int = 0,
    crlf: bool = False,
    all_nan_run: int | None = 0,
) -> dict[str, FixtureRun]:
    """Write `dest_dir/opportunity/OpportunityUCIDataset/dataset/` with the real metadata and `runs`.

    `all_nan_run` is the index in `runs` of the run whose ALL_NAN_COLUMN is NaN throughout (None:
    no such run). Returns, per run id, the file and the table written.
    """
    folder = Path(dest_dir) / RELEASE
    folder.mkdir(parents=True, exist_ok=True)
    source = shared_metadata_dir()
    for name in METADATA:
        shutil.copyfile(source / name, folder / name)
    legend = read_legend_codes(folder / "label_legend.txt")
    rng = np.random.default_rng(seed)
    written = {}
    for i, run in enumerate(runs):
        table = make_table(rng, rows, legend, all_nan=(i == all_nan_run))
        path = folder / f"{run}.dat"
        write_dat(path, table, crlf)
        written[run] = FixtureRun(path, table, i == all_nan_run)
    return written


def make_table(rng: np.random.Generator, rows: int, legend: dict[str, list[int]], all_nan: bool) -> np.ndarray:
    if rows < 40:
        raise ValueError("the deliberate NaN gaps need at least 40 rows")
    table = np.empty((rows, NCOLS))
    # 30 Hz in whole milliseconds: 0, 33, 67, 100, 133, ... (steps of 33 and 34 ms).
    table[:, 0] = np.round(np.arange(rows) * 1000 / 30)
    # Sensor readings: integer random walks around an offset, as round(original) gives.
    offsets = rng.integers(-1500, 1500, size=242)
    table[:, 1:243] = offsets + np.cumsum(rng.integers(-25, 26, size=(rows, 242)), axis=0)
    table[:, 194:207] = rng.integers(0, 2, size=(rows, 13))   # reed switches: 0/1
    for k, track in enumerate(_LABEL_TRACKS):
        table[:, 243 + k] = label_segments(rng, rows, legend[track])
    add_gaps(rng, table, all_nan)
    return table


def label_segments(rng: np.random.Generator, rows: int, codes: list[int]) -> np.ndarray:
    """Segments alternating NULL (0) and the track's codes in a shuffled order, 3-12 rows each."""
    order = [int(c) for c in rng.permutation(codes)]
    out = np.empty(rows)
    start, k = 0, 0
    while start < rows:
        length = int(rng.integers(3, 13))
        out[start:start + length] = 0 if k % 2 == 0 else order[(k // 2) % len(order)]
        start, k = start + length, k + 1
    return out


def add_gaps(rng: np.random.Generator, table: np.ndarray, all_nan: bool) -> None:
    rows = table.shape[0]
    a, b = INTERIOR_ROWS.start - 1, INTERIOR_ROWS.stop
    table[[a, b], INTERIOR_COLUMN - 1] = INTERIOR_ENDS
    table[INTERIOR_ROWS.start:INTERIOR_ROWS.stop, INTERIOR_COLUMN - 1] = np.nan
    table[:LEADING_ROWS, LEADING_COLUMN - 1] = np.nan
    table[rows - TRAILING_ROWS:, TRAILING_COLUMN - 1] = np.nan
    if all_nan:
        table[:, ALL_NAN_COLUMN - 1] = np.nan
    # Scattered packet loss in other wireless accelerometers (columns 8-37), away from the ends...
    loss = rng.random((rows - 40, 30)) < 0.03
    table[20:rows - 20, 7:37][loss] = np.nan
    # ...and in object sensors (columns 135-194), which the loader does not read.
    table[:, 134:194][rng.random((rows, 60)) < 0.05] = np.nan


def write_dat(path: Path, table: np.ndarray, crlf: bool = False) -> None:
    end = "\r\n" if crlf else "\n"
    lines = (" ".join("NaN" if np.isnan(v) else str(int(v)) for v in row) for row in table)
    path.write_bytes("".join(line + end for line in lines).encode("ascii"))


def edit_line(path: Path, lineno: int, edit: Callable[[list[str]], list[str]]) -> None:
    """Rewrite the tokens of 1-based line `lineno`, keeping the file's line ends."""
    lines = path.read_bytes().decode("ascii").split("\n")
    cr = "\r" if lines[lineno - 1].endswith("\r") else ""
    lines[lineno - 1] = " ".join(edit(lines[lineno - 1].split())) + cr
    path.write_bytes("\n".join(lines).encode("ascii"))
