"""Replay source: every sample in order, a monotonic stream clock, pacing, selectors, the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest

from streamhar.datasets import get_dataset
from streamhar.errors import UsageError
from streamhar.sources.pacing import Pacer
from streamhar.sources.replay import ReplaySource, parse_replay_spec

from conftest import run_cli


@pytest.fixture(scope="module")
def subject11(usc_recordings):
    return [r for r in usc_recordings if r.subject == "11"]


def test_chunks_carry_every_sample_in_order(subject11):
    source = ReplaySource(subject11, stream="replay:usc-had:11", chunk_size=7)
    chunks = list(source.chunks())
    np.testing.assert_array_equal(np.concatenate([c.samples for c in chunks]),
                                  np.concatenate([r.samples for r in subject11]))
    np.testing.assert_array_equal(np.concatenate([c.labels for c in chunks]),
                                  np.concatenate([r.labels for r in subject11]))
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    t = np.concatenate([c.timestamps for c in chunks])
    assert np.all(np.diff(t) > 0)
    # Recordings follow each other one sample period apart on the stream clock.
    np.testing.assert_allclose(np.diff(t), 0.01, atol=1e-9)
    for c in chunks:
        assert len(c) <= 7 and len(set([c.recording_id])) == 1
    starts = [c.recording_id for c in chunks if c.first_of_recording]
    assert starts == [r.id for r in subject11]


def test_replay_is_deterministic_and_loops(subject11):
    a = list(ReplaySource(subject11[:2]).chunks())
    b = list(ReplaySource(subject11[:2]).chunks())
    assert all(np.array_equal(x.samples, y.samples) and np.array_equal(x.timestamps, y.timestamps)
               for x, y in zip(a, b))
    looped = ReplaySource(subject11[:2], loop=True).chunks()
    twice = [next(looped) for _ in range(2 * len(a))]
    np.testing.assert_array_equal(twice[len(a)].samples, a[0].samples)
    assert twice[len(a)].timestamps[0] > twice[len(a) - 1].timestamps[-1]
    assert twice[len(a)].first_of_recording and twice[-1].seq == 2 * len(a) - 1


def test_pacer_follows_an_absolute_schedule():
    now = [100.0]
    sleeps = []

    def sleep(dt):
        sleeps.append(dt)
        now[0] += dt + 0.003   # every sleep oversleeps by 3 ms

    pacer = Pacer(speed=2.0, clock=lambda: now[0], sleep=sleep)
    for t in (10.0, 10.1, 10.2, 10.3, 12.0):
        pacer.wait_until(t)
    # Due times are 100 + (t − 10) / 2; each sleep makes up for the previous overshoot.
    assert sleeps == pytest.approx([0.05, 0.047, 0.047, 0.847])
    assert now[0] == pytest.approx(101.003)


def test_pacer_never_releases_early_in_real_time(subject11):
    import time
    source = ReplaySource(subject11[:1], speed=50.0, chunk_size=10)
    released = []
    for chunk in source:
        released.append((time.perf_counter(), chunk.timestamps[-1]))
        if chunk.timestamps[-1] > 2.0:
            break
    (w0, t0), (w1, t1) = released[0], released[-1]
    assert w1 - w0 >= (t1 - t0) / 50.0 - 1e-4


def test_spec_and_selector_errors(data_dir):
    assert parse_replay_spec("replay:dsads:p6").selector == "p6"
    assert parse_replay_spec("replay:usc-had").selector is None
    with pytest.raises(UsageError, match="expected replay:NAME"):
        parse_replay_spec("replay:")
    dsads = get_dataset("dsads")
    refs = dsads.index(dsads.root(data_dir))
    assert [r.id for r in dsads.select(refs, "6")][:1] == ["p6/a01"]
    assert {r.subject for r in dsads.select(refs, "validation")} == {"p6"}
    with pytest.raises(UsageError, match=r"no split, subject or recording called 'p9'.*subjects present: p1, p2"):
        dsads.select(refs, "p9")


def test_cli_replays_every_sample_of_subject_11(data_dir):
    result = run_cli("replay", "replay:usc-had:11", "--speed", "max", "--json",
                     env={"STREAMHAR_DATA": str(data_dir)})
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["samples"] == summary["expected_samples"] == 263_037
    assert summary["complete"] and summary["sequence_gaps"] == 0 and summary["recordings"] == 60
    assert summary["samples_per_second"] > 0 and summary["realtime_factor"] > 1


def test_cli_text_summary_and_errors(data_dir):
    env = {"STREAMHAR_DATA": str(data_dir)}
    ok = run_cli("replay", "replay:dsads:p6/a09", "--speed", "max", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "7,500 samples" in ok.stdout and "every sample replayed" in ok.stdout
    for args, message in (
        (("replay", "replay:nosuch"), "unknown data set 'nosuch'"),
        (("replay", "replay:usc-had:13"), "no split, subject or recording called '13'"),
        (("replay", "replay:usc-had:1", "--speed", "0"), "speed must be positive"),
    ):
        bad = run_cli(*args, env=env)
        assert bad.returncode == 2, (args, bad.stderr)
        assert message in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli("replay", "replay:usc-had:1", "--data-dir", "/nonexistent/data")
    assert missing.returncode == 2 and "data folder /nonexistent/data (chosen by --data-dir) does not exist" in missing.stderr


def test_replay_opportunity_fixture_through_the_cli(tmp_path):
    from opportunity_fixture import write_opportunity_fixture
    runs = write_opportunity_fixture(tmp_path, runs=("S1-ADL1", "S2-ADL4", "S3-ADL5"), rows=90)
    result = run_cli("replay", "replay:opportunity:validation", "--speed", "max", "--json",
                     "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["recordings"] == 2 and summary["samples"] == 180 and summary["complete"]
    assert len(runs) == 3
