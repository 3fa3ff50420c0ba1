"""USC-HAD loader on the real .mat files (subjects 1–12) and on damaged copies."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import scipy.io

from streamhar.datasets import get_dataset
from streamhar.errors import DataFormatError

USC = get_dataset("usc-had")


def test_all_recordings_and_samples(usc_recordings):
    assert len(usc_recordings) == 720     # 12 subjects × 12 activities × 5 trials
    assert sum(len(r) for r in usc_recordings) == 2_345_049
    per_subject = {}
    for r in usc_recordings:
        per_subject[r.subject] = per_subject.get(r.subject, 0) + 1
        assert r.samples.shape[1] == 6 and r.rate == 100.0
        assert 6 <= r.duration <= 135.5
    assert per_subject == {str(i): 60 for i in range(1, 13)}


def test_class_counts(usc_recordings):
    counts = sum(r.class_counts() for r in usc_recordings)
    assert counts.tolist() == [304200, 215600, 228500, 192300, 178600, 135600,
                               88200, 211500, 201000, 300000, 143498, 146051]


def test_values_and_label_match_the_file(data_dir, usc_recordings):
    rec = next(r for r in usc_recordings if r.id == "7/a11t4")
    raw = scipy.io.loadmat(data_dir / "usc-had" / "USC-HAD" / "Subject7" / "a11t4.mat")
    np.testing.assert_array_equal(rec.samples, raw["sensor_readings"].astype(np.float32))
    assert rec.class_names[rec.labels[0]] == "elevator up"
    assert rec.channel_names == ("hip.acc.x", "hip.acc.y", "hip.acc.z", "hip.gyro.x", "hip.gyro.y", "hip.gyro.z")
    assert [c.unit for c in rec.channels] == ["g"] * 3 + ["dps"] * 3


def test_files_with_a_comments_field_load(usc_recordings):
    ids = {r.id for r in usc_recordings}
    assert {"3/a1t3", "3/a1t4", "3/a1t5"} <= ids


def _copy_subject_file(data_dir, tmp_path, name="a2t1.mat"):
    dest = tmp_path / "usc-had" / "USC-HAD" / "Subject1"
    dest.mkdir(parents=True)
    shutil.copy(data_dir / "usc-had" / "USC-HAD" / "Subject1" / name, dest / name)
    return dest / name


def test_truncated_mat_file_is_named(data_dir, tmp_path):
    path = _copy_subject_file(data_dir, tmp_path)
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DataFormatError, match=r"Subject1/a2t1\.mat: is not a readable MATLAB v5 file"):
        USC.load_selection(tmp_path)


def test_activity_number_must_match_file_name(data_dir, tmp_path):
    path = _copy_subject_file(data_dir, tmp_path)
    fields = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    fields["activity_number"] = np.array(["5"])
    scipy.io.savemat(path, fields)
    with pytest.raises(DataFormatError, match=r"activity_number is 5 but the file name says 2"):
        USC.load_selection(tmp_path)


def test_wrong_reading_shape_is_explained(data_dir, tmp_path):
    path = _copy_subject_file(data_dir, tmp_path)
    fields = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    fields["sensor_readings"] = fields["sensor_readings"][:, :5]
    scipy.io.savemat(path, fields)
    with pytest.raises(DataFormatError, match=r"expected a numeric N×6 array"):
        USC.load_selection(tmp_path)


def test_selectors(data_dir):
    refs = USC.index(USC.root(data_dir))
    assert {r.subject for r in USC.select(refs, "validation")} == {"11", "12"}
    assert len(USC.select(refs, "train")) == 600
    assert [r.id for r in USC.select(refs, "Subject12")][:2] == ["12/a1t1", "12/a1t2"]
    assert [r.id for r in USC.select(refs, "3/a4t2")] == ["3/a4t2"]
    assert len(USC.select(refs, "1,2")) == 120
