"""The OPPORTUNITY loader: real metadata files, and recordings written in the published format."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from opportunity_fixture import (
    ALL_NAN_COLUMN, GESTURE_COLUMN, INTERIOR_COLUMN, INTERIOR_ROWS, LEADING_COLUMN, LEADING_ROWS,
    LOCOMOTION_COLUMN, RELEASE, TRAILING_COLUMN, TRAILING_ROWS, edit_line, shared_metadata_dir,
    write_opportunity_fixture,
)
from streamhar.datasets.opportunity import (
    BODY_WORN_COLUMNS, Opportunity, _parse_exact, _sensor_parts, read_column_names, read_label_legend,
    read_matrix, read_metadata,
)
from streamhar.errors import DataFormatError, DataNotFound, UsageError

# 1-based columns of the 113 channels, spelled out independently of BODY_WORN_COLUMNS.
SELECTED = [*range(2, 47), *range(51, 60), *range(64, 73), *range(77, 86), *range(90, 99), *range(103, 135)]
LOCOMOTION_INDEX = {0: 0, 1: 1, 2: 2, 4: 3, 5: 4}   # code -> class: Null, Stand, Walk, Sit, Lie
ALL_RUNS = tuple(f"S{s}-{r}" for s in range(1, 5) for r in ("ADL1", "ADL2", "ADL3", "ADL4", "ADL5", "Drill"))


@pytest.fixture(scope="module")
def real_meta():
    return read_metadata(shared_metadata_dir())


def load_run(tmp_path, run="S1-ADL1", task="locomotion", **kwargs):
    written = write_opportunity_fixture(tmp_path, runs=(run,), **kwargs)[run]
    ds = Opportunity()
    root = tmp_path / "opportunity"
    ref = next(r for r in ds.index(root) if r.id == run)
    return ds.load(root, ref, task=task), written


def expected_fill(column):
    """Reference semantics, written naively: linear inside, hold at the end, 0 at the start."""
    out, valid = column.copy(), np.flatnonzero(~np.isnan(column))
    kinds = Counter()
    for i in np.flatnonzero(np.isnan(column)):
        before, after = valid[valid < i], valid[valid > i]
        if before.size == 0:
            out[i], kind = 0.0, "nan_zeroed"
        elif after.size == 0:
            out[i], kind = column[before[-1]], "nan_held"
        else:
            a, b = before[-1], after[0]
            out[i], kind = column[a] + (column[b] - column[a]) * (i - a) / (b - a), "nan_interpolated"
        kinds[kind] += 1
    return out, kinds


def fails(exc_type, call):
    with pytest.raises(exc_type) as info:
        call()
    return str(info.value)


# -- real metadata ----------------------------------------------------------------------------

def test_column_table_has_250_documented_columns():
    columns = read_column_names(shared_metadata_dir() / "column_names.txt")
    assert [c.index for c in columns] == list(range(1, 251))
    assert columns[0].name == "MILLISEC" and columns[0].unit == ""
    assert columns[1].name == "Accelerometer RKN^ accX" and columns[1].unit == "milli g"
    assert columns[40].name == "InertialMeasurementUnit BACK gyroX" and columns[40].unit == "unknown"
    assert columns[242].name == "LOCATION TAG4 Z" and columns[242].unit == "millimetres"
    assert columns[243].name == "Locomotion"
    assert columns[-1].name == "ML_Both_Arms"
    assert columns[37].description.startswith("InertialMeasurementUnit BACK accX; value = round(")


def test_label_legend_has_98_entries_in_seven_tracks():
    legend = read_label_legend(shared_metadata_dir() / "label_legend.txt")
    assert len(legend) == 98
    counts = list(Counter(e.track for e in legend).items())   # insertion order = legend order
    assert counts == [("Locomotion", 4), ("HL_Activity", 5), ("LL_Left_Arm", 13), ("LL_Left_Arm_Object", 23),
                      ("LL_Right_Arm", 13), ("LL_Right_Arm_Object", 23), ("ML_Both_Arms", 17)]
    assert (legend[0].code, legend[0].track, legend[0].name) == (1, "Locomotion", "Stand")
    assert (legend[-1].code, legend[-1].name) == (405506, "Toggle Switch")
    assert next(e.name for e in legend if e.code == 508) == "Drawer3 (lower)"


def test_selection_is_the_113_body_worn_channels(real_meta):
    assert [c.index for c in real_meta.channel_columns] == SELECTED
    assert sum(hi - lo + 1 for lo, hi in BODY_WORN_COLUMNS) == 113
    names = [c.name for c in real_meta.channels]
    assert len(names) == 113 and len(set(names)) == 113
    by_column = dict(zip(SELECTED, real_meta.channels))
    assert by_column[2].name == "RKN^.acc.x" and by_column[2].group == "RKN^" and by_column[2].unit == "milli g"
    assert by_column[17].name == "BACK-ACC.acc.x"          # the wireless accelerometer beside the BACK IMU
    assert by_column[38].name == "BACK.acc.x" and by_column[38].group == "BACK"
    assert (by_column[41].name, by_column[41].unit) == ("BACK.gyro.x", "unknown")
    assert by_column[46].name == "BACK.mag.z"
    assert (by_column[103].name, by_column[103].unit) == ("L-SHOE.eu.x", "degrees")
    assert by_column[106].name == "L-SHOE.nav_acc.x"
    assert by_column[110].name == "L-SHOE.body_acc.y"
    assert (by_column[112].name, by_column[112].unit) == ("L-SHOE.angvel_body.x", "mm/s")
    assert by_column[117].name == "L-SHOE.angvel_nav.z"
    assert (by_column[134].name, by_column[134].quantity) == ("R-SHOE.compass", "compass")
    groups = Counter(c.group for c in real_meta.channels)
    assert groups == {
        **{g: 3 for g in ("RKN^", "HIP", "LUA^", "RUA_", "LH", "BACK-ACC", "RKN_", "RWR", "RUA^", "LUA_", "LWR", "RH")},
        **{g: 9 for g in ("BACK", "RUA", "RLA", "LUA", "LLA")},
        "L-SHOE": 16, "R-SHOE": 16,
    }


def test_quaternion_and_unknown_quantities(real_meta):
    quat = real_meta.columns[46]      # column 47: InertialMeasurementUnit BACK Quaternion1
    assert _sensor_parts(quat, "column_names.txt") == ("InertialMeasurementUnit", "BACK", "quat", "1")
    reed = real_meta.columns[194]     # column 195: REED SWITCH DISHWASHER S1
    message = fails(DataFormatError, lambda: _sensor_parts(reed, "column_names.txt"))
    assert "column 195" in message and "REED SWITCH DISHWASHER S1" in message


def test_label_tracks_follow_legend_order(real_meta):
    assert real_meta.tracks["locomotion"].class_names == ("Null", "Stand", "Walk", "Sit", "Lie")
    assert real_meta.tracks["locomotion"].column.index == 244
    gestures = real_meta.tracks["gestures"]
    assert gestures.column.index == 250
    assert len(gestures.class_names) == 18
    assert gestures.class_names[:3] == ("Null", "Open Door 1", "Open Door 2")
    assert gestures.class_names[-1] == "Toggle Switch" and gestures.codes[-1] == 405506


def test_metadata_with_lf_line_ends_parses_the_same(tmp_path, real_meta):
    for name in ("column_names.txt", "label_legend.txt"):
        text = (shared_metadata_dir() / name).read_bytes().replace(b"\r\n", b"\n")
        (tmp_path / name).write_bytes(text)
    assert read_metadata(tmp_path) == real_meta


# -- malformed or missing metadata ------------------------------------------------------------

def copy_metadata(tmp_path) -> Path:
    for name in ("column_names.txt", "label_legend.txt"):
        shutil.copyfile(shared_metadata_dir() / name, tmp_path / name)
    return tmp_path


def replace_line(path, lineno, text):
    lines = path.read_bytes().split(b"\r\n")
    lines[lineno - 1] = text.encode("latin-1")
    path.write_bytes(b"\r\n".join(lines))


def test_malformed_column_line_names_file_and_line(tmp_path):
    path = copy_metadata(tmp_path) / "column_names.txt"
    replace_line(path, 7, "Colum 5 Accelerometer HIP accX")
    message = fails(DataFormatError, lambda: read_column_names(path))
    assert f"{path}, line 7" in message and "Colum 5" in message


def test_skipped_column_number_names_the_line(tmp_path):
    path = copy_metadata(tmp_path) / "column_names.txt"
    replace_line(path, 10, "Column: 9 Accelerometer LUA^ accY; value = round(original_value), unit = milli g")
    message = fails(DataFormatError, lambda: read_column_names(path))
    assert f"{path}, line 10" in message and "expected column number 8, found 9" in message


def test_malformed_and_duplicate_legend_lines(tmp_path):
    path = copy_metadata(tmp_path) / "label_legend.txt"
    replace_line(path, 5, "4 Locomotion Sit")
    message = fails(DataFormatError, lambda: read_label_legend(path))
    assert f"{path}, line 5" in message and "4 Locomotion Sit" in message
    replace_line(path, 5, "2   -   Locomotion   -   Sit")
    message = fails(DataFormatError, lambda: read_label_legend(path))
    assert f"{path}, line 5" in message and "label code 2 is listed twice" in message


@pytest.mark.parametrize("missing", ["column_names.txt", "label_legend.txt"])
def test_missing_metadata_names_the_path(tmp_path, missing):
    write_opportunity_fixture(tmp_path, rows=40)
    root = tmp_path / "opportunity"
    (root / "OpportunityUCIDataset" / "dataset" / missing).unlink()
    ds = Opportunity()
    message = fails(DataNotFound, lambda: ds.load(root, ds.index(root)[0]))
    assert str(root / "OpportunityUCIDataset" / "dataset" / missing) in message


# -- loading ----------------------------------------------------------------------------------

def test_load_shape_time_and_raw_values(tmp_path):
    rec, written = load_run(tmp_path, "S2-ADL4", rows=240)
    assert (rec.dataset, rec.id, rec.subject, rec.session, rec.rate) == ("opportunity", "S2-ADL4", "S2", "ADL4", 30.0)
    assert rec.samples.shape == (240, 113) and rec.samples.dtype == np.float32
    assert rec.timestamps.dtype == np.float64
    np.testing.assert_array_equal(rec.timestamps, written.column(1) / 1000.0)
    assert rec.timestamps[0] == 0.0 and set(np.diff(written.column(1))) == {33.0, 34.0}
    assert rec.source_files == (str(written.path),)
    raw = written.table[:, [c - 1 for c in SELECTED]]
    present = ~np.isnan(raw)
    np.testing.assert_array_equal(rec.samples[present], raw[present].astype(np.float32))
    assert not np.isnan(rec.samples).any()


def test_both_label_tracks_map_codes_exactly(tmp_path, real_meta):
    rec, written = load_run(tmp_path, rows=300)
    assert rec.labels.dtype == np.int16
    assert rec.class_names == ("Null", "Stand", "Walk", "Sit", "Lie")
    codes = written.column(LOCOMOTION_COLUMN).astype(int)
    assert list(rec.labels) == [LOCOMOTION_INDEX[c] for c in codes]
    assert set(codes) == {0, 1, 2, 4, 5}
    gestures = rec.label_tracks["gestures"]
    legend = {e.code: e.name for e in read_label_legend(shared_metadata_dir() / "label_legend.txt")}
    names = [gestures.class_names[i] for i in gestures.labels]
    assert names == [legend.get(c, "Null") for c in written.column(GESTURE_COLUMN).astype(int)]
    first = int(np.flatnonzero(written.column(GESTURE_COLUMN) == 406516)[0])   # Open Door 1
    assert gestures.labels[first] == 1
    assert set(rec.label_tracks) == {"locomotion", "gestures"}
    np.testing.assert_array_equal(rec.label_tracks["locomotion"].labels, rec.labels)


def test_gestures_task_selects_the_gesture_track(tmp_path):
    rec, written = load_run(tmp_path, task="gestures")
    assert len(rec.class_names) == 18 and rec.class_names[0] == "Null"
    np.testing.assert_array_equal(rec.labels, rec.label_tracks["gestures"].labels)
    assert (rec.labels[written.column(GESTURE_COLUMN) == 405506] == 17).all()
    message = fails(UsageError, lambda: load_run(tmp_path / "x", task="walking"))
    assert "'walking'" in message and "locomotion" in message and "gestures" in message


def test_nans_filled_like_reference_and_counted(tmp_path):
    rec, written = load_run(tmp_path, rows=200)
    assert written.all_nan
    total = Counter()
    for k, column in enumerate(SELECTED):
        expected, kinds = expected_fill(written.column(column))
        np.testing.assert_allclose(rec.samples[:, k], expected.astype(np.float32), rtol=1e-6, atol=0)
        total += kinds
    assert total["nan_zeroed"] >= 200 + LEADING_ROWS and total["nan_held"] >= TRAILING_ROWS
    assert rec.repairs["nan_filled"] == sum(total.values())
    for kind in ("nan_interpolated", "nan_held", "nan_zeroed"):
        assert rec.repairs[kind] == total[kind]
    # The deliberate gaps, checked by value.
    k = SELECTED.index
    assert list(rec.samples[INTERIOR_ROWS.start - 1:INTERIOR_ROWS.stop + 1, k(INTERIOR_COLUMN)]) == [
        100, 110, 120, 130, 140, 150, 160]
    assert (rec.samples[:LEADING_ROWS, k(LEADING_COLUMN)] == 0).all()
    assert rec.samples[LEADING_ROWS, k(LEADING_COLUMN)] == written.column(LEADING_COLUMN)[LEADING_ROWS]
    last_valid = written.column(TRAILING_COLUMN)[-TRAILING_ROWS - 1]
    assert (rec.samples[-TRAILING_ROWS:, k(TRAILING_COLUMN)] == last_valid).all()
    assert (rec.samples[:, k(ALL_NAN_COLUMN)] == 0).all()


def test_nans_outside_the_selection_are_not_counted(tmp_path):
    rec, written = load_run(tmp_path, rows=200, all_nan_run=None)
    selected_nans = int(np.isnan(written.table[:, [c - 1 for c in SELECTED]]).sum())
    assert np.isnan(written.table[:, 134:194]).sum() > 0
    assert rec.repairs["nan_filled"] == selected_nans
    assert (rec.samples[:, SELECTED.index(ALL_NAN_COLUMN)] != 0).any()


def test_crlf_file_loads_identically(tmp_path):
    lf, _ = load_run(tmp_path / "lf", seed=3)
    crlf, written = load_run(tmp_path / "crlf", seed=3, crlf=True)
    assert b"\r\n" in written.path.read_bytes()
    np.testing.assert_array_equal(crlf.samples, lf.samples)
    np.testing.assert_array_equal(crlf.timestamps, lf.timestamps)
    np.testing.assert_array_equal(crlf.labels, lf.labels)
    assert crlf.repairs == lf.repairs


def test_fast_and_exact_parsers_agree(tmp_path):
    written = write_opportunity_fixture(tmp_path, rows=120, crlf=True)["S1-ADL1"]
    body = written.path.read_bytes().rstrip()
    fast = read_matrix(written.path, 250)
    np.testing.assert_array_equal(fast, written.table)
    np.testing.assert_array_equal(_parse_exact(written.path, body, 250), fast)


def test_file_without_final_newline_loads(tmp_path):
    written = write_opportunity_fixture(tmp_path, rows=50)["S1-ADL1"]
    written.path.write_bytes(written.path.read_bytes().rstrip(b"\n"))
    np.testing.assert_array_equal(read_matrix(written.path, 250), written.table)


# -- bad recordings -------------------------------------------------------------------------

def bad_run(tmp_path, lineno, edit, crlf=False):
    written = write_opportunity_fixture(tmp_path, rows=60, crlf=crlf)["S1-ADL1"]
    edit_line(written.path, lineno, edit)
    ds = Opportunity()
    root = tmp_path / "opportunity"
    return written.path, lambda: ds.load(root, ds.index(root)[0])


@pytest.mark.parametrize("crlf", [False, True])
def test_missing_column_names_file_and_line(tmp_path, crlf):
    path, load = bad_run(tmp_path, 7, lambda t: t[:-1], crlf=crlf)
    message = fails(DataFormatError, load)
    assert message.startswith(f"{path}, line 7:") and "expected 250 columns, found 249" in message


def test_extra_column_names_file_and_line(tmp_path):
    path, load = bad_run(tmp_path, 41, lambda t: t + ["0"])
    assert fails(DataFormatError, load).startswith(f"{path}, line 41: expected 250 columns, found 251")


@pytest.mark.parametrize("token", ["abc", "nan", "inf", "1,5", "1e", "--3"])
def test_non_numeric_token_names_line_column_and_token(tmp_path, token):
    path, load = bad_run(tmp_path, 5, lambda t: t[:16] + [token] + t[17:])
    message = fails(DataFormatError, load)
    assert message.startswith(f"{path}, line 5:") and "column 17" in message and repr(token) in message


def test_number_out_of_range_is_an_error(tmp_path):
    path, load = bad_run(tmp_path, 8, lambda t: t[:2] + ["1e999"] + t[3:])
    message = fails(DataFormatError, load)
    assert message.startswith(f"{path}, line 8:") and "column 3" in message


@pytest.mark.parametrize("column,code", [(LOCOMOTION_COLUMN, "3"), (GESTURE_COLUMN, "406518"), (LOCOMOTION_COLUMN, "NaN")])
def test_unknown_label_code_names_file_line_and_code(tmp_path, column, code):
    path, load = bad_run(tmp_path, 9, lambda t: t[:column - 1] + [code] + t[column:])
    message = fails(DataFormatError, load)
    assert message.startswith(f"{path}, line 9:") and f"code {code} " in message and f"column {column}" in message


def test_time_not_increasing_names_the_line(tmp_path):
    written = write_opportunity_fixture(tmp_path, rows=60)["S1-ADL1"]
    repeated = str(int(written.column(1)[10]))    # line 12 repeats line 11's time
    edit_line(written.path, 12, lambda t: [repeated] + t[1:])
    ds = Opportunity()
    root = tmp_path / "opportunity"
    message = fails(DataFormatError, lambda: ds.load(root, ds.index(root)[0]))
    assert message.startswith(f"{written.path}, line 12:") and "strictly increase" in message


def test_nan_time_names_the_line(tmp_path):
    path, load = bad_run(tmp_path, 3, lambda t: ["NaN"] + t[1:])
    message = fails(DataFormatError, load)
    assert message.startswith(f"{path}, line 3:") and "MILLISEC" in message


def test_blank_line_inside_names_the_line(tmp_path):
    path, load = bad_run(tmp_path, 20, lambda t: [])
    assert fails(DataFormatError, load).startswith(f"{path}, line 20: expected 250 columns, found 0")


@pytest.mark.parametrize("content", [b"", b"\r\n\n  \n"])
def test_empty_file_is_an_error(tmp_path, content):
    written = write_opportunity_fixture(tmp_path, rows=40)["S1-ADL1"]
    written.path.write_bytes(content)
    ds = Opportunity()
    root = tmp_path / "opportunity"
    message = fails(DataFormatError, lambda: ds.load(root, ds.index(root)[0]))
    assert str(written.path) in message and "empty file" in message


def test_missing_recording_names_the_path(tmp_path):
    written = write_opportunity_fixture(tmp_path, rows=40)["S1-ADL1"]
    ds = Opportunity()
    root = tmp_path / "opportunity"
    ref = ds.index(root)[0]
    written.path.unlink()
    assert str(written.path) in fails(DataNotFound, lambda: ds.load(root, ref))


# -- index, selection, locating ---------------------------------------------------------------

@pytest.fixture
def all_runs(tmp_path):
    # Written in a scrambled order; index order must not depend on it.
    write_opportunity_fixture(tmp_path, runs=tuple(reversed(ALL_RUNS)), rows=40, all_nan_run=None)
    folder = tmp_path / RELEASE
    (folder / "S1-ADL1.dat.bak").write_text("x")
    (folder / "notes.txt").write_text("x")
    return tmp_path / "opportunity"


def ids(refs):
    return [r.id for r in refs]


def test_index_orders_by_subject_then_run(all_runs):
    refs = Opportunity().index(all_runs)
    assert ids(refs) == list(ALL_RUNS)
    assert (refs[5].subject, refs[5].session, refs[5].files) == ("S1", "Drill", ("OpportunityUCIDataset/dataset/S1-Drill.dat",))


def test_split_names_select_the_standard_runs(all_runs):
    ds = Opportunity()
    refs = ds.index(all_runs)
    train = ["S1-ADL1", "S1-ADL2", "S1-ADL3", "S1-ADL4", "S1-ADL5", "S1-Drill",
             "S2-ADL1", "S2-ADL2", "S2-ADL3", "S2-Drill", "S3-ADL1", "S3-ADL2", "S3-ADL3", "S3-Drill"]
    test = ["S2-ADL4", "S2-ADL5", "S3-ADL4", "S3-ADL5"]
    assert ids(ds.select(refs, "train")) == train
    assert ids(ds.select(refs, "test")) == test
    assert ids(ds.select(refs, "validation")) == test
    assert ids(ds.select(refs, "test, S4")) == test + [f"S4-{r}" for r in ("ADL1", "ADL2", "ADL3", "ADL4", "ADL5", "Drill")]
    assert ids(ds.select(refs, "all")) == list(ALL_RUNS)


@pytest.mark.parametrize("token", ["S2", "s2", "2"])
def test_subjects_select_all_their_runs(all_runs, token):
    ds = Opportunity()
    assert ids(ds.select(ds.index(all_runs), token)) == [f"S2-{r}" for r in ("ADL1", "ADL2", "ADL3", "ADL4", "ADL5", "Drill")]


def test_recording_ids_and_unknown_tokens(all_runs):
    ds = Opportunity()
    refs = ds.index(all_runs)
    assert ids(ds.select(refs, "S3-Drill,S1-ADL2")) == ["S1-ADL2", "S3-Drill"]
    message = fails(UsageError, lambda: ds.select(refs, "S9"))
    assert "'S9'" in message and "train" in message and "S1, S2, S3, S4" in message
    assert ds.subjects == ("S1", "S2", "S3", "S4")
    assert ds.tasks == ("locomotion", "gestures")


def test_split_with_no_run_present_is_data_not_found(tmp_path):
    write_opportunity_fixture(tmp_path, runs=("S4-ADL1",), rows=40)
    ds = Opportunity()
    refs = ds.index(tmp_path / "opportunity")
    assert "'train'" in fails(DataNotFound, lambda: ds.select(refs, "train"))


def test_root_requires_recordings_not_just_metadata(tmp_path):
    ds = Opportunity()
    metadata_only = shared_metadata_dir().parents[2]     # .../data, whose opportunity/ has no .dat
    message = fails(DataNotFound, lambda: ds.root(metadata_only))
    assert "S<n>-ADL<i>.dat" in message and "OpportunityUCIDataset" in message
    write_opportunity_fixture(tmp_path, rows=40)
    assert ds.root(tmp_path) == tmp_path / "opportunity"
    assert len(ds.load_selection(tmp_path, "S1")) == 1


def test_channels_and_classes_come_from_the_data_folder(tmp_path, monkeypatch, real_meta):
    write_opportunity_fixture(tmp_path, rows=40)
    monkeypatch.setenv("STREAMHAR_DATA", str(tmp_path))
    ds = Opportunity()
    assert ds.channels == real_meta.channels
    assert ds.class_names == ("Null", "Stand", "Walk", "Sit", "Lie")
    (tmp_path / RELEASE / "column_names.txt").unlink()
    assert ds.channels == () and ds.class_names == ()   # unknown without metadata, not an error


def test_channels_follow_the_root_last_used(tmp_path, monkeypatch):
    monkeypatch.setenv("STREAMHAR_DATA", str(tmp_path / "nowhere"))
    write_opportunity_fixture(tmp_path / "data", rows=40)
    legend = tmp_path / "data" / RELEASE / "label_legend.txt"
    legend.write_bytes(legend.read_bytes().replace(b"Stand", b"Standing"))
    ds = Opportunity()
    ds = Opportunity()
    assert ds.channels == ()
    ds.root(tmp_path / "data")      # as `streamhar data info --data-dir` does before reading facts
    assert ds.class_names == ("Null", "Standing", "Walk", "Sit", "Lie")
    assert len(ds.channels) == 113
    ds = Opportunity()
    assert ds.present(tmp_path / "data" / "opportunity")   # as `streamhar data list` does
    assert len(ds.channels) == 113 and ds.class_names[1] == "Standing"
