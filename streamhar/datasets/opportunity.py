"""OPPORTUNITY Activity Recognition Dataset (UCI 226), read from the original release files.

Layout: `<data_dir>/opportunity/OpportunityUCIDataset/dataset/` holds `column_names.txt`,
`label_legend.txt` and the 24 runs `S<n>-ADL<i>.dat` / `S<n>-Drill.dat`. The two metadata files
(CRLF, Latin-1) are parsed at load time from the data folder: column numbers, names, units and
label codes all come from them, not from a copy in this package. So `Opportunity.channels` and
`class_names` are read from the metadata of the root the object last probed or loaded (else the
default data folder) and are empty while no metadata can be found.

Recording format (`doc/documentation.html`): one line per sample at 30 Hz, 250 whitespace-separated
columns; column 1 is MILLISEC, columns 244-250 are label codes, missing sensor readings are the
token `NaN`. Any other non-numeric token, a row with another column count, a time that does not
strictly increase, or a label code absent from `label_legend.txt` is a `DataFormatError` naming the
file and the 1-based line. Both LF and CRLF line ends are accepted. Timestamps are MILLISEC / 1000.

Channels: the standard body-worn selection of the OPPORTUNITY challenge and DeepConvLSTM, 113
channels from the 1-based columns 2-46, 51-59, 64-72, 77-85, 90-98, 103-134 (the challenge subset
without the localization tags and IMU quaternions). Each is named `GROUP.quantity.axis` from its
column description: the group is the sensor placement ("RKN^", "BACK", "L-SHOE"), the quantity is
acc / gyro / mag / quat / eu / nav_acc / body_acc / angvel_body / angvel_nav / compass, the axis
is x/y/z (1-4 for quaternions; none for the shoe compass). The unit is the description's `unit =`
text as written ("milli g", "unknown", "mm/s", "degrees"). One placement, BACK, carries both a
wireless 3D accelerometer and the (higher-quality, wired) IMU; the IMU keeps the plain group and
the accelerometer becomes "BACK-ACC" so that every name is unique.

Missing values: filled per channel as the DeepConvLSTM reference preprocessing does (pandas
`Series.interpolate()` then `fillna(0)`): interior gaps are interpolated linearly over sample
positions, trailing NaNs hold the last valid value, leading NaNs and all-NaN channels become 0.
Only the 113 selected channels are filled; every filled value is counted in
`recording.repairs` ("nan_filled" = "nan_interpolated" + "nan_held" + "nan_zeroed").

Labels: two tracks. "locomotion" (column Locomotion): 0 "Null" plus the legend's Locomotion
entries in legend order (Stand, Walk, Sit, Lie; codes 1, 2, 4, 5 -> 1..4). "gestures" (column
ML_Both_Arms): 0 "Null" plus the 17 mid-level gestures in legend order. `load(..., task=...)`
chooses which track becomes `labels` / `class_names`; both are always in `label_tracks`. Only the
two tracks used are checked against the legend.

Splits: the standard split is by run, not by subject, so `splits` maps split names to recording
ids (not subject ids as for the other data sets) and `select` is overridden to match: "train" is
S1's six runs plus S2 and S3 ADL1-3 and Drill; "validation" and "test" are both S2 and S3
ADL4-5 (the benchmark has no separate validation set). S4 is in no split; select it by subject
("S4", "s4", "4") or by recording id ("S4-ADL1"), which also work for every other run.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamhar.datasets.base import Dataset, RecordingRef
from streamhar.datasets.paths import resolve_data_dir
from streamhar.errors import DataFormatError, DataNotFound, UsageError
from streamhar.recording import Channel, LabelTrack, Recording

RELEASE_DIR = Path("OpportunityUCIDataset") / "dataset"
COLUMN_NAMES = "column_names.txt"
LABEL_LEGEND = "label_legend.txt"

# 1-based inclusive column ranges of the 113 body-worn channels (challenge / DeepConvLSTM subset).
BODY_WORN_COLUMNS = ((2, 46), (51, 59), (64, 72), (77, 85), (90, 98), (103, 134))
TIME_COLUMN = "MILLISEC"
# task -> the label column, which is also the legend's track name.
TASK_TRACKS = {"locomotion": "Locomotion", "gestures": "ML_Both_Arms"}
NULL_CLASS = "Null"

SUBJECTS = ("S1", "S2", "S3", "S4")
_TEST_RUNS = tuple(f"{s}-ADL{i}" for s in ("S2", "S3") for i in (4, 5))
_TRAIN_RUNS = tuple(f"S1-{r}" for r in ("ADL1", "ADL2", "ADL3", "ADL4", "ADL5", "Drill")) + tuple(
    f"{s}-{r}" for s in ("S2", "S3") for r in ("ADL1", "ADL2", "ADL3", "Drill")
)

_RUN_FILE = re.compile(r"S(?P<subject>\d+)-(?P<session>ADL(?P<adl>\d+)|Drill)\.dat")

# Sensor-column quantity tokens as column_names.txt spells them -> (quantity, has an axis suffix).
_QUANTITIES = (
    (re.compile(r"acc([XYZ])"), "acc"),
    (re.compile(r"gyro([XYZ])"), "gyro"),
    (re.compile(r"magnetic([XYZ])"), "mag"),
    (re.compile(r"Quaternion([1-4])"), "quat"),
    (re.compile(r"Eu([XYZ])"), "eu"),
    (re.compile(r"Nav_A([xyz])"), "nav_acc"),
    (re.compile(r"Body_A([xyz])"), "body_acc"),
    (re.compile(r"AngVelBodyFrame([XYZ])"), "angvel_body"),
    (re.compile(r"AngVelNavFrame([XYZ])"), "angvel_nav"),
    (re.compile(r"Compass()"), "compass"),
)
_IMU = "InertialMeasurementUnit"
_KIND_SUFFIX = {"Accelerometer": "ACC"}   # used only when an IMU shares the placement

# Bytes a well-formed .dat file is made of; anything else sends the reader to the slow, exact pass.
_DAT_BYTES = b"0123456789.+-eENa \t\r\n"
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?NaN")


# -- metadata ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Column:
    index: int          # 1-based, as in column_names.txt
    name: str           # e.g. "Accelerometer RKN^ accX", "MILLISEC", "Locomotion"
    unit: str           # e.g. "milli g"; "" where the description gives none
    description: str    # everything after the column number, as written


@dataclass(frozen=True)
class LabelEntry:
    code: int           # e.g. 406516
    track: str          # e.g. "ML_Both_Arms"
    name: str           # e.g. "Open Door 1"


@dataclass(frozen=True)
class TaskTrack:
    """One label column and how its codes map to class indices (0 = Null)."""
    column: Column
    codes: tuple[int, ...]          # legend codes in legend order; code i -> class i + 1
    class_names: tuple[str, ...]    # ("Null", ...)


@dataclass(frozen=True)
class Metadata:
    columns: tuple[Column, ...]
    legend: tuple[LabelEntry, ...]
    time_column: Column
    channel_columns: tuple[Column, ...]    # the 113 body-worn columns, in file order
    channels: tuple[Channel, ...]
    tracks: dict[str, TaskTrack]           # task -> track


def read_column_names(path: Path) -> tuple[Column, ...]:
    """Parse column_names.txt: section headers ("Data columns:") and "Column: N description"."""
    columns: list[Column] = []
    for lineno, line in _metadata_lines(path):
        match = re.fullmatch(r"Column:\s*(\d+)\s+(\S.*)", line)
        if match is None:
            if line.endswith(":"):      # "Data columns:", "Label columns:"
                continue
            raise DataFormatError(path, f"expected 'Column: <number> <description>', found {line!r}", lineno)
        index, description = int(match[1]), match[2]
        if index != len(columns) + 1:
            raise DataFormatError(path, f"expected column number {len(columns) + 1}, found {index}", lineno)
        columns.append(_column(index, description))
    if not columns:
        raise DataFormatError(path, "no 'Column: <number> <description>' lines")
    return tuple(columns)


def _column(index: int, description: str) -> Column:
    name, _, details = description.partition(";")
    unit = re.search(r"\bunit\s*=\s*(.+)$", details)
    return Column(index, name.strip(), unit[1].strip() if unit else "", description)


def read_label_legend(path: Path) -> tuple[LabelEntry, ...]:
    """Parse label_legend.txt: a header, then "code   -   track   -   label name" per line."""
    entries: list[LabelEntry] = []
    seen: set[int] = set()
    for lineno, line in _metadata_lines(path):
        parts = re.split(r"\s+-\s+", line, maxsplit=2)
        if parts == ["Unique index", "Track name", "Label name"]:
            continue
        if len(parts) != 3 or not parts[0].isdigit():
            raise DataFormatError(path, f"expected '<code> - <track> - <label name>', found {line!r}", lineno)
        code = int(parts[0])
        if code in seen:
            raise DataFormatError(path, f"label code {code} is listed twice", lineno)
        seen.add(code)
        entries.append(LabelEntry(code, parts[1], parts[2]))
    if not entries:
        raise DataFormatError(path, "no label entries")
    return tuple(entries)


def _metadata_lines(path: Path):
    """(1-based line number, stripped text) of each non-blank line; the files are CRLF Latin-1."""
    try:
        text = path.read_bytes().decode("latin-1")
    except FileNotFoundError:
        raise DataNotFound(
            f"{path} not found: the OPPORTUNITY loader reads its column and label definitions from "
            f"the release's {path.name}; unzip OpportunityUCIDataset.zip so that it is there"
        ) from None
    for lineno, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield lineno, line.strip()


def body_worn_channels(columns: tuple[Column, ...], path: Path | str = COLUMN_NAMES) -> tuple[tuple[Column, ...], tuple[Channel, ...]]:
    """The 113 standard channels: columns picked by number, named from their descriptions."""
    wanted = [i for lo, hi in BODY_WORN_COLUMNS for i in range(lo, hi + 1)]
    if wanted[-1] > len(columns):
        raise DataFormatError(path, f"lists {len(columns)} columns; the body-worn channels need {wanted[-1]}")
    chosen = tuple(columns[i - 1] for i in wanted)
    parsed = [_sensor_parts(c, path) for c in chosen]
    imu_places = {place for kind, place, _, _ in parsed if kind == _IMU}
    channels = tuple(
        _channel(kind, place, quantity, axis, column.unit, imu_places)
        for column, (kind, place, quantity, axis) in zip(chosen, parsed)
    )
    names = [c.name for c in channels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataFormatError(path, f"body-worn channel names are not unique: {', '.join(duplicates)}")
    return chosen, channels


def _sensor_parts(column: Column, path: Path | str) -> tuple[str, str, str, str]:
    """("Accelerometer", "RKN^", "acc", "x") from "Accelerometer RKN^ accX"."""
    words = column.name.split()
    if len(words) == 3:
        kind, place, token = words
        for pattern, quantity in _QUANTITIES:
            match = pattern.fullmatch(token)
            if match:
                return kind, place, quantity, match[1].lower()
    raise DataFormatError(
        path, f"column {column.index} ({column.name!r}) is not a '<sensor> <placement> <quantity>' body-worn channel"
    )


def _channel(kind: str, place: str, quantity: str, axis: str, unit: str, imu_places: set[str]) -> Channel:
    group = place
    if kind != _IMU and place in imu_places:
        group = f"{place}-{_KIND_SUFFIX.get(kind, kind)}"
    name = f"{group}.{quantity}.{axis}" if axis else f"{group}.{quantity}"
    return Channel(name, unit, group)


def _task_track(task: str, columns: tuple[Column, ...], legend: tuple[LabelEntry, ...], paths: tuple[Path, Path]) -> TaskTrack:
    track = TASK_TRACKS[task]
    column = next((c for c in columns if c.name == track), None)
    if column is None:
        raise DataFormatError(paths[0], f"no label column named {track!r}")
    entries = [e for e in legend if e.track == track]
    if not entries:
        raise DataFormatError(paths[1], f"no labels of track {track!r}")
    return TaskTrack(column, tuple(e.code for e in entries), (NULL_CLASS, *(e.name for e in entries)))


def read_metadata(dataset_dir: Path) -> Metadata:
    """Column table, legend, the 113 channels and both label tracks from the release's dataset/ folder."""
    names_path, legend_path = dataset_dir / COLUMN_NAMES, dataset_dir / LABEL_LEGEND
    columns = read_column_names(names_path)
    legend = read_label_legend(legend_path)
    time = next((c for c in columns if c.name == TIME_COLUMN), None)
    if time is None:
        raise DataFormatError(names_path, f"no {TIME_COLUMN} column")
    chosen, channels = body_worn_channels(columns, names_path)
    tracks = {task: _task_track(task, columns, legend, (names_path, legend_path)) for task in TASK_TRACKS}
    return Metadata(columns, legend, time, chosen, channels, tracks)


_metadata_cache: dict[tuple, Metadata] = {}


def cached_metadata(dataset_dir: Path) -> Metadata:
    """`read_metadata`, re-read only when a metadata file changes (a run loads many recordings)."""
    key = tuple(_stat_key(dataset_dir / n) for n in (COLUMN_NAMES, LABEL_LEGEND))
    if key not in _metadata_cache:
        _metadata_cache[key] = read_metadata(dataset_dir)
    return _metadata_cache[key]


def _stat_key(path: Path) -> tuple:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (str(path.resolve()), None, None)   # read_metadata raises DataNotFound for it
    return (str(path.resolve()), st.st_mtime_ns, st.st_size)


# -- recordings -------------------------------------------------------------------------------

def read_matrix(path: Path, ncols: int) -> np.ndarray:
    """The .dat file as float64 [rows, ncols]; row i is line i + 1 (blank lines are errors)."""
    try:
        body = path.read_bytes().rstrip()
    except FileNotFoundError:
        raise DataNotFound(f"{path} not found") from None
    if not body:
        raise DataFormatError(path, f"empty file: no samples (expected lines of {ncols} numbers)")
    matrix = _parse_fast(body, ncols)
    if matrix is None:
        matrix = _parse_exact(path, body, ncols)
    overflow = np.argwhere(np.isinf(matrix))     # e.g. "1e999": a number, but not a reading
    if overflow.size:
        row, col = (int(i) for i in overflow[0])
        raise DataFormatError(path, f"column {col + 1}: number out of range", row + 1)
    return matrix


def _parse_fast(body: bytes, ncols: int) -> np.ndarray | None:
    """numpy's C parser for well-formed files; None whenever the exact pass must decide."""
    if body.translate(None, _DAT_BYTES):      # a byte no number or NaN contains
        return None
    try:
        matrix = np.loadtxt(io.BytesIO(body), dtype=np.float64, comments=None, ndmin=2)
    except ValueError:
        return None
    # loadtxt skips blank lines; a row count short of the line count means one was there.
    return matrix if matrix.shape == (body.count(b"\n") + 1, ncols) else None


def _parse_exact(path: Path, body: bytes, ncols: int) -> np.ndarray:
    """Line by line, to name the first bad line, column and token."""
    rows = []
    for lineno, line in enumerate(body.decode("latin-1").split("\n"), 1):
        tokens = line.split()
        if len(tokens) != ncols:
            raise DataFormatError(path, f"expected {ncols} columns, found {len(tokens)}", lineno)
        for col, token in enumerate(tokens, 1):
            if not _NUMBER.fullmatch(token):
                raise DataFormatError(path, f"column {col}: {token!r} is not a number or NaN", lineno)
        rows.append(np.array(tokens, dtype=np.float64))
    return np.vstack(rows)


def check_time(path: Path, millisec: np.ndarray, column: int) -> None:
    """Times must be numbers that strictly increase; names the first line where they do not."""
    bad = np.flatnonzero(np.isnan(millisec))
    if bad.size:
        raise DataFormatError(path, f"column {column} ({TIME_COLUMN}): the time is NaN", int(bad[0]) + 1)
    bad = np.flatnonzero(np.diff(millisec) <= 0)
    if bad.size:
        i = int(bad[0])
        raise DataFormatError(
            path,
            f"column {column} ({TIME_COLUMN}): time {millisec[i + 1]:g} ms does not follow the previous "
            f"line's {millisec[i]:g} ms (times must strictly increase)",
            i + 2,
        )


def encode_labels(path: Path, values: np.ndarray, track: TaskTrack) -> np.ndarray:
    """Label codes -> class indices (0 = Null); a code the legend lacks names its first line."""
    lookup = {0: 0, **{code: i + 1 for i, code in enumerate(track.codes)}}
    uniques, inverse = np.unique(values, return_inverse=True)
    classes = np.empty(len(uniques), dtype=np.int16)
    for u, value in enumerate(uniques):
        code = int(value) if np.isfinite(value) and value == int(value) else None
        if code not in lookup:
            line = int(np.flatnonzero(inverse == u)[0]) + 1
            raise DataFormatError(
                path,
                f"column {track.column.index} ({track.column.name}): label code {_format_code(value)} "
                f"is not in {LABEL_LEGEND}",
                line,
            )
        classes[u] = lookup[code]
    return classes[inverse.reshape(-1)]


def _format_code(value: float) -> str:
    if not np.isfinite(value):
        return "NaN" if np.isnan(value) else repr(float(value))
    return str(int(value)) if value == int(value) else repr(float(value))


def fill_missing(samples: np.ndarray) -> dict[str, int]:
    """Fill NaNs in place per channel (pandas interpolate() + fillna(0)); counts by kind."""
    counts = {"nan_interpolated": 0, "nan_held": 0, "nan_zeroed": 0}
    missing = np.isnan(samples)
    n = samples.shape[0]
    for c in np.flatnonzero(missing.any(axis=0)):
        column, holes = samples[:, c], np.flatnonzero(missing[:, c])
        valid = np.flatnonzero(~missing[:, c])
        if valid.size == 0:
            column[:] = 0.0
            counts["nan_zeroed"] += n
            continue
        # np.interp is what pandas' linear interpolate uses; beyond the last valid value it holds it.
        column[holes] = np.interp(holes, valid, column[valid])
        leading, trailing = int(valid[0]), n - 1 - int(valid[-1])
        column[:leading] = 0.0
        counts["nan_zeroed"] += leading
        counts["nan_held"] += trailing
        counts["nan_interpolated"] += holes.size - leading - trailing
    return {"nan_filled": sum(counts.values()), **counts}


# -- the data set -----------------------------------------------------------------------------

class Opportunity(Dataset):
    name = "opportunity"
    title = "OPPORTUNITY (UCI 226)"
    folder = "opportunity"
    rate = 30.0
    checksums = "EXPECTED_SHA256SUMS"
    tasks = tuple(TASK_TRACKS)
    # Recording ids, not subjects: the standard split is by run (see the module docstring).
    splits = {"train": _TRAIN_RUNS, "validation": _TEST_RUNS, "test": _TEST_RUNS}

    # The data set's root this object last probed, located, indexed or loaded from: `channels`
    # and `class_names` are read from the metadata there (the files the recordings come with).
    _last_root: Path | None = None

    # -- facts that live in the release's metadata files ---------------------------------------
    def metadata(self, root: Path) -> Metadata:
        self._last_root = Path(root)
        return cached_metadata(Path(root) / RELEASE_DIR)

    def _current_metadata(self) -> Metadata | None:
        """Metadata of the last root used, else of the default data folder; None if not there."""
        try:
            root = self._last_root or resolve_data_dir() / self.folder
            return cached_metadata(root / RELEASE_DIR)
        except DataNotFound:
            return None

    @property
    def channels(self) -> tuple[Channel, ...]:
        """The 113 channels; empty while no metadata is found (`data list` of an absent data set)."""
        meta = self._current_metadata()
        return meta.channels if meta else ()

    @property
    def class_names(self) -> tuple[str, ...]:
        """Locomotion classes (the default task); empty while no metadata is found."""
        meta = self._current_metadata()
        return meta.tracks["locomotion"].class_names if meta else ()

    @property
    def subjects(self) -> tuple[str, ...]:
        return SUBJECTS

    # -- locating ------------------------------------------------------------------------------
    def root(self, data_dir: Path) -> Path:
        root = super().root(data_dir)
        self._last_root = root
        return root

    def present(self, root: Path) -> bool:
        self._last_root = Path(root)
        return bool(self._run_files(root))

    def layout_hint(self, root: Path) -> str:
        return (
            f"{root / RELEASE_DIR}/ holding {COLUMN_NAMES}, {LABEL_LEGEND} and the runs "
            f"S<n>-ADL<i>.dat / S<n>-Drill.dat (unzip the UCI archive OpportunityUCIDataset.zip into {root})"
        )

    def _run_files(self, root: Path) -> list[tuple[tuple[int, int, int], re.Match]]:
        folder = Path(root) / RELEASE_DIR
        if not folder.is_dir():
            return []
        found = []
        for path in folder.iterdir():
            match = _RUN_FILE.fullmatch(path.name)
            if match and path.is_file():
                adl = match["adl"]
                # ADL1..ADL5 in number order, then Drill.
                key = (int(match["subject"]), 0 if adl else 1, int(adl) if adl else 0)
                found.append((key, match))
        return sorted(found, key=lambda item: item[0])

    # -- reading -------------------------------------------------------------------------------
    def index(self, root: Path) -> list[RecordingRef]:
        self._last_root = Path(root)
        refs = []
        for (subject, _, _), match in self._run_files(root):
            run_id = match.string[: -len(".dat")]
            refs.append(RecordingRef(run_id, f"S{subject}", match["session"], ((RELEASE_DIR / match.string).as_posix(),)))
        return refs

    def load(self, root: Path, ref: RecordingRef, task: str = "locomotion") -> Recording:
        if task not in TASK_TRACKS:
            raise UsageError(f"{self.name}: no task {task!r}; tasks: {', '.join(self.tasks)}")
        meta = self.metadata(root)
        path = Path(root) / ref.files[0]
        matrix = read_matrix(path, len(meta.columns))
        millisec = matrix[:, meta.time_column.index - 1]
        check_time(path, millisec, meta.time_column.index)
        tracks = {
            name: LabelTrack(encode_labels(path, matrix[:, t.column.index - 1], t), t.class_names)
            for name, t in meta.tracks.items()
        }
        samples = matrix[:, [c.index - 1 for c in meta.channel_columns]]   # a copy: safe to fill
        repairs = fill_missing(samples)
        return Recording(
            dataset=self.name, id=ref.id, subject=ref.subject, session=ref.session,
            timestamps=millisec / 1000.0, samples=samples.astype(np.float32), channels=meta.channels,
            rate=self.rate, labels=tracks[task].labels, class_names=tracks[task].class_names,
            label_tracks=tracks, source_files=(str(path),), repairs=repairs,
        )

    # -- selecting -----------------------------------------------------------------------------
    def normalize_subject(self, token: str) -> str:
        match = re.fullmatch(r"[sS]?(\d+)", token.strip())
        return f"S{int(match[1])}" if match else token

    def split_members(self, split: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The standard split is by run, not by subject: a split names recording ids."""
        return (), self.splits[split]
