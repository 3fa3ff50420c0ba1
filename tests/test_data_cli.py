"""`streamhar data list | info | verify` on the real data folder and on damaged copies."""
from __future__ import annotations

import json
import shutil

import pytest

from streamhar.datasets.paths import resolve_data_dir
from streamhar.errors import DataNotFound

from conftest import REPO, run_cli


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("STREAMHAR_DATA", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    other = tmp_path / "other"
    other.mkdir()
    assert resolve_data_dir(str(other)) == other
    monkeypatch.delenv("STREAMHAR_DATA")
    assert resolve_data_dir(None, must_exist=False) == REPO / "replay_data"
    monkeypatch.setenv("STREAMHAR_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataNotFound, match=r"chosen by \$STREAMHAR_DATA"):
        resolve_data_dir(None)


def test_list_shows_what_is_present(data_dir, tmp_path):
    listed = json.loads(run_cli("data", "list", "--json", env={"STREAMHAR_DATA": str(data_dir)}).stdout)
    present = {d["name"]: d["present"] for d in listed["datasets"]}
    assert present == {"dsads": True, "usc-had": True, "opportunity": False}
    empty = json.loads(run_cli("data", "list", "--json", "--data-dir", str(tmp_path)).stdout)
    assert not any(d["present"] for d in empty["datasets"])


def test_info_counts_the_real_data(data_dir):
    result = run_cli("data", "info", "usc-had", "--json", env={"STREAMHAR_DATA": str(data_dir)})
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["recordings"] == 720 and info["samples"] == 2_345_049
    assert len(info["subjects"]) == 12 and sum(c["samples"] for c in info["classes"]) == 2_345_049
    assert info["classes"][6] == {"index": 6, "name": "jumping up", "samples": 88200, "duration_s": 882.0}
    text = run_cli("data", "info", "usc-had", env={"STREAMHAR_DATA": str(data_dir)}).stdout
    assert "recordings 720, 2,345,049 samples" in text and "validation: 11, 12" in text


def test_verify_passes_on_the_real_data(data_dir):
    for name, count in (("usc-had", 721), ("dsads", 6840)):
        result = run_cli("data", "verify", name, "--json", env={"STREAMHAR_DATA": str(data_dir)})
        report = json.loads(result.stdout)
        assert result.returncode == 0 and report["passed"], result.stdout
        assert report["checked"] == report["ok"] == count


def test_verify_names_the_wrong_and_missing_files(data_dir, tmp_path):
    src = data_dir / "usc-had"
    dest = tmp_path / "usc-had" / "USC-HAD" / "Subject2"
    dest.mkdir(parents=True)
    wanted = [line for line in (src / "SHA256SUMS").read_text().splitlines() if "/Subject2/a3t" in line]
    assert len(wanted) == 5
    (tmp_path / "usc-had" / "SHA256SUMS").write_text("\n".join(wanted) + "\n")
    for line in wanted:
        rel = line.split()[1]
        shutil.copy(src / rel, tmp_path / "usc-had" / rel)
    damaged = dest / "a3t2.mat"
    data = bytearray(damaged.read_bytes())
    data[500] ^= 0xFF
    damaged.write_bytes(bytes(data))
    (dest / "a3t4.mat").unlink()
    result = run_cli("data", "verify", "usc-had", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "WRONG HASH  USC-HAD/Subject2/a3t2.mat" in result.stdout
    assert "MISSING     USC-HAD/Subject2/a3t4.mat" in result.stdout
    assert "usc-had: FAILED — 3 of 5 files good" in result.stdout


def test_missing_data_set_says_how_to_fetch(tmp_path):
    result = run_cli("data", "info", "dsads", "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "streamhar data fetch dsads" in result.stderr


def test_verify_opportunity_lists_the_absent_recordings(data_dir):
    result = run_cli("data", "verify", "opportunity", "--json", env={"STREAMHAR_DATA": str(data_dir)})
    report = json.loads(result.stdout)
    assert result.returncode == 1 and not report["passed"]
    assert report["checked"] == 24 and len(report["missing"]) == 24
    assert "OpportunityUCIDataset/dataset/S2-ADL4.dat" in report["missing"]


def test_verify_opportunity_checks_sizes_then_hashes(tmp_path):
    import hashlib

    from opportunity_fixture import write_opportunity_fixture
    from streamhar.datasets import get_dataset
    from streamhar.datasets.verify import verify

    runs = write_opportunity_fixture(tmp_path, runs=("S1-ADL1", "S2-ADL4"), rows=60)
    root = tmp_path / "opportunity"
    lines = [f"{hashlib.sha256(r.path.read_bytes()).hexdigest()}  {r.path.relative_to(root).as_posix()}"
             for r in runs.values()]
    (root / "EXPECTED_SHA256SUMS").write_text("\n".join(lines) + "\n")
    opportunity = get_dataset("opportunity")
    assert verify(opportunity, tmp_path).passed
    # The manifest's sizes are those of the real release: a fixture fails them, by name.
    result = run_cli("data", "verify", "opportunity", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "WRONG SIZE  OpportunityUCIDataset/dataset/S1-ADL1.dat" in result.stdout
    assert "expected 51,803,164" in result.stdout
    path = runs["S2-ADL4"].path
    path.write_bytes(path.read_bytes().replace(b"1", b"2", 1))
    report = verify(opportunity, tmp_path)
    assert report.wrong_hash and report.wrong_hash[0][0].endswith("S2-ADL4.dat") and report.ok == 1
