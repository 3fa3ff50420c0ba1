"""A source with a dropout and NaNs, through the real pipeline: no window straddles the gap, NaNs
are held from the last finite value, and every lost or repaired sample is counted exactly."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def test_a_source_with_a_gap_and_nans(tmp_path, data_dir):
    from streamhar.datasets import get_dataset

    data = str(data_dir.resolve())
    rec = get_dataset("usc-had").load_selection(data_dir, "11")[0]
    n = len(rec)                                            # the first recording: stream time = index / 100
    (tmp_path / "faults.toml").write_text(
        'speed = "max"\n[[sources]]\nspec = "replay:usc-had:11"\n'
        'drop = [[3.0, 4.0]]\n'                             # samples 300..399 never arrive
        'nan = [[10.0, 10.5]]\n'                            # samples 1000..1049: every value NaN
    )
    out = tmp_path / "w.jsonl"
    run = lambda *a: subprocess.run([sys.executable, "-m", "streamhar", *a], cwd=REPO, text=True,
                                    capture_output=True, timeout=600)
    off = tmp_path / "off.jsonl"
    r = run("eval", "bundled:usc-had", "--subjects", "11", "--width", "1.0", "--cascade", "--predictions", str(off),
            "--data-dir", data)
    assert r.returncode == 0, r.stderr
    r = run("run", "--config", str(tmp_path / "faults.toml"), "--no-view", "--jsonl", str(out),
            "--summary-json", str(tmp_path / "s.json"), "--data-dir", data)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    src = s["stages"]["window"]["stats"]["sources"]["replay:usc-had:11"]
    assert src["gaps"] == 1 and src["samples_lost"] == 100
    assert src["samples_repaired"] == 50 and src["values_repaired"] == 50 * 6
    assert s["ok"] and s["dropped"] == 0 and s["gaps"] == 0 and s["windows_lost"] > 0

    lines = [json.loads(x) for x in out.read_text().splitlines()]
    offline = [json.loads(x) for x in off.read_text().splitlines()]
    first = [w for w in lines if w["recording"] == rec.id]
    ends = [round(w["t_last"] * 100) for w in first]
    starts = [e - 199 for e in ends]
    # Segment before the gap (0..299): starts 0, 50, 100; after it windowing restarts at 400.
    assert starts[:3] == [0, 50, 100]
    assert starts[3:] == list(range(400, n - 199, 50))
    assert not [s_ for s_ in starts if s_ < 400 and s_ + 199 >= 300]      # nothing straddles the gap
    # Windows clear of the gap and of the NaN stretch are the offline windows, bit for bit.
    by_end = {w["end"]: w for w in offline if w["recording"] == rec.id}
    for w, a, e in zip(first, starts, ends):
        if a >= 1050 or e < 1000:
            assert w["window_crc"] == by_end[e]["window_crc"] and w["class_index"] == by_end[e]["class_index"]
        else:
            assert w["window_crc"] != by_end[e]["window_crc"]                 # held values, not the data
    # Later recordings are untouched.
    rest_on = [w for w in lines if w["recording"] != rec.id]
    rest_off = [w for w in offline if w["recording"] != rec.id]
    assert [(w["window_crc"], w["class_index"]) for w in rest_on] == \
        [(w["window_crc"], w["class_index"]) for w in rest_off]
