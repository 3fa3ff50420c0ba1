"""DSADS loader on the real release archive (subjects p1–p6) and on damaged copies of it."""
from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from streamhar.datasets import get_dataset
from streamhar.errors import DataFormatError, DataNotFound

DSADS = get_dataset("dsads")


def _member(data_dir, name: str) -> np.ndarray:
    with zipfile.ZipFile(data_dir / "dsads" / "data.zip") as z:
        return np.loadtxt(io.BytesIO(z.read(name)), delimiter=",", dtype=np.float32)


def test_every_subject_and_activity_is_one_5_minute_recording(dsads_recordings):
    assert len(dsads_recordings) == 6 * 19
    assert {r.subject for r in dsads_recordings} == {f"p{i}" for i in range(1, 7)}
    for rec in dsads_recordings:
        assert rec.samples.shape == (7500, 45) and rec.samples.dtype == np.float32
        assert rec.rate == 25.0
        np.testing.assert_allclose(rec.timestamps[[0, 1, -1]], [0.0, 0.04, 7499 / 25])
        assert (rec.labels == int(rec.session[1:]) - 1).all()
        assert np.isfinite(rec.samples).all()


def test_class_counts_are_balanced(dsads_recordings):
    counts = sum(r.class_counts() for r in dsads_recordings)
    assert counts.tolist() == [6 * 7500] * 19


def test_segments_are_concatenated_in_order(data_dir, dsads_recordings):
    rec = next(r for r in dsads_recordings if r.id == "p3/a12")
    for k in (1, 2, 37, 60):
        segment = _member(data_dir, f"data/a12/p3/s{k:02d}.txt")
        np.testing.assert_array_equal(rec.samples[125 * (k - 1):125 * k], segment)


def test_channels_are_named_by_unit_and_quantity(data_dir, dsads_recordings):
    names = dsads_recordings[0].channel_names
    assert len(set(names)) == 45
    assert names[:3] == ("T.acc.x", "T.acc.y", "T.acc.z")
    # A public loader once duplicated index 42 and lost LL.mag.y: check the tail by name.
    assert names[-3:] == ("LL.mag.x", "LL.mag.y", "LL.mag.z")
    raw = _member(data_dir, "data/a01/p1/s01.txt")
    rec = dsads_recordings[0]
    for name, column in (("RA.gyro.z", 15), ("LL.mag.y", 44), ("LL.mag.z", 45)):
        np.testing.assert_array_equal(rec.samples[:125, names.index(name)], raw[:, column - 1])
    assert {c.unit for c in rec.channels} == {"m/s^2", "rad/s", "a.u."}


def test_extracted_folder_reads_like_the_archive(data_dir, tmp_path, dsads_recordings):
    with zipfile.ZipFile(data_dir / "dsads" / "data.zip") as z:
        for k in range(1, 61):
            z.extract(f"data/a05/p2/s{k:02d}.txt", tmp_path / "dsads")
    [rec] = DSADS.load_selection(tmp_path, "p2")
    expected = next(r for r in dsads_recordings if r.id == "p2/a05")
    np.testing.assert_array_equal(rec.samples, expected.samples)


def _damaged_archive(data_dir, tmp_path, edit):
    """A one-recording copy of the archive (p1/a01) with `edit(name, bytes) -> bytes | None`."""
    src = data_dir / "dsads" / "data.zip"
    (tmp_path / "dsads").mkdir()
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(tmp_path / "dsads" / "data.zip", "w") as out:
        for k in range(1, 61):
            name = f"data/a01/p1/s{k:02d}.txt"
            data = edit(name, z.read(name))
            if data is not None:
                out.writestr(name, data)
    return tmp_path


def _load_one(root):
    return DSADS.load_selection(root, "p1")


def test_truncated_segment_names_member_and_rows(data_dir, tmp_path):
    root = _damaged_archive(data_dir, tmp_path, lambda n, b: b.rsplit(b"\n", 2)[0] + b"\n" if n.endswith("s07.txt") else b)
    with pytest.raises(DataFormatError, match=r"data\.zip:data/a01/p1/s07\.txt: has 124 rows, expected 125"):
        _load_one(root)


def test_non_numeric_value_names_line_and_column(data_dir, tmp_path):
    def edit(name, data):
        if not name.endswith("s03.txt"):
            return data
        lines = data.split(b"\n")
        fields = lines[9].split(b",")
        fields[4] = b"abc"
        lines[9] = b",".join(fields)
        return b"\n".join(lines)
    root = _damaged_archive(data_dir, tmp_path, edit)
    with pytest.raises(DataFormatError, match=r"s03\.txt, line 10: column 5: 'abc' is not a number"):
        _load_one(root)


def test_wrong_column_count_names_line(data_dir, tmp_path):
    def edit(name, data):
        if not name.endswith("s60.txt"):
            return data
        lines = data.split(b"\n")
        lines[0] = lines[0].rsplit(b",", 1)[0]
        return b"\n".join(lines)
    root = _damaged_archive(data_dir, tmp_path, edit)
    with pytest.raises(DataFormatError, match=r"s60\.txt, line 1: expected 45 columns, found 44"):
        _load_one(root)


def test_missing_segment_is_reported(data_dir, tmp_path):
    root = _damaged_archive(data_dir, tmp_path, lambda n, b: None if n.endswith("s30.txt") else b)
    with pytest.raises(DataNotFound, match=r"s30\.txt: segment missing \(1 of 60 missing for p1/a01\)"):
        _load_one(root)


def test_missing_and_corrupt_archive(tmp_path):
    with pytest.raises(DataNotFound, match=r"streamhar data fetch dsads"):
        DSADS.root(tmp_path)
    (tmp_path / "dsads").mkdir()
    (tmp_path / "dsads" / "data.zip").write_bytes(b"this is not a zip archive")
    with pytest.raises(DataFormatError, match=r"data\.zip: is not a readable zip archive"):
        DSADS.index(DSADS.root(tmp_path))
