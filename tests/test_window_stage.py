"""The streaming window stage: equal to offline windowing, aligned, resampled, gap- and NaN-aware."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from streamhar.datasets import get_dataset
from streamhar.errors import StreamharError, UsageError
from streamhar.models.bundle import load_bundle
from streamhar.sources.chunk import Chunk
from streamhar.sources.replay import ReplaySource
from streamhar.windowing.resample import Resampler
from streamhar.windowing.sliding import make_windows
from streamhar.windowing.stage import SourceInfo, StreamFormatError, WindowStage


@pytest.fixture(scope="module")
def usc11(data_dir):
    return get_dataset("usc-had").load_selection(data_dir, "11")


@pytest.fixture(scope="module")
def dsads_p6(data_dir):
    return get_dataset("dsads").load_selection(data_dir, "p6")


@pytest.fixture(scope="module")
def usc_bundle():
    return load_bundle("bundled:usc-had")


@pytest.fixture(scope="module")
def dsads_bundle():
    return load_bundle("bundled:dsads")


def run(stage, chunks):
    out = []
    for chunk in chunks:
        out += stage.process(chunk)
    stage.flush()
    return out


def cat(batches, field):
    return np.concatenate([getattr(b, field) for b in batches])


def split(recordings, keep, stream_suffix=""):
    """The same recordings with only the channels whose name passes `keep`."""
    idx = [i for i, c in enumerate(recordings[0].channels) if keep(c)]
    return [dataclasses.replace(r, samples=np.ascontiguousarray(r.samples[:, idx]),
                                channels=tuple(r.channels[i] for i in idx)) for r in recordings]


def check_accounting(stage):
    for name, st in stage.stats.sources.items():
        assert st.samples_windowed + st.samples_dropped == st.grid_samples, name


# -- 1. streaming equals offline ---------------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [1, 7, 100, 1000])
def test_streaming_equals_offline(usc11, usc_bundle, chunk_size):
    recs = usc11[:2] if chunk_size == 1 else usc11   # chunk size 1: a shorter run, same logic
    meta = usc_bundle.meta
    offline = make_windows(recs, meta["window"], meta["stride"])
    src = ReplaySource(recs, stream="usc", chunk_size=chunk_size)
    stage = WindowStage(usc_bundle, [SourceInfo.of(src)])
    batches = run(stage, src.chunks())

    x = cat(batches, "x")
    assert x.dtype == np.float32 and x.shape == offline.x.shape
    np.testing.assert_array_equal(x, usc_bundle.normalize(offline.x))
    np.testing.assert_array_equal(cat(batches, "labels"), offline.y)
    np.testing.assert_array_equal(cat(batches, "seq"), np.arange(len(offline)))
    # No window straddles two recordings: each batch's id is the recording of its windows.
    ids = [b.recording_id for b in batches for _ in range(len(b))]
    assert ids == [offline.recording_ids[i] for i in offline.recording]
    # Grid times are the replayed timestamps of the windows' first and last samples.
    stream_t = np.concatenate([c.timestamps for c in src.chunks()])
    offsets = np.cumsum([0] + [len(r) for r in recs])[offline.recording]
    np.testing.assert_allclose(cat(batches, "t_last"), stream_t[offsets + offline.end], atol=1e-9)
    np.testing.assert_allclose(cat(batches, "t_first"), stream_t[offsets + offline.end - 199], atol=1e-9)
    st = stage.stats
    assert st.windows_out == len(offline) and st.windows_dropped == 0
    s = st.sources["usc"]
    assert (s.samples_in, s.gaps, s.samples_repaired, s.recordings) == (sum(map(len, recs)), 0, 0, len(recs))
    check_accounting(stage)


def test_windows_come_out_as_soon_as_complete(usc11, usc_bundle):
    src = ReplaySource(usc11[:1], stream="usc", chunk_size=1)
    stage = WindowStage(usc_bundle, [SourceInfo.of(src)])
    emitted_at = [c.seq for c in src.chunks() for b in stage.process(c) for _ in range(len(b))]
    # Window j ends at sample 199 + 50 j, i.e. in the chunk of that very sample.
    assert emitted_at[:4] == [199, 249, 299, 349]


# -- 2. several sources aligned by timestamp ----------------------------------------------------
def round_robin(*streams):
    for group in itertools.zip_longest(*streams):
        yield from (c for c in group if c is not None)


def test_five_imus_equal_one_source(dsads_p6, dsads_bundle):
    recs = dsads_p6[:6]
    groups = ["LL", "T", "RA", "RL", "LA"]            # not the model's order: mapping is exercised
    sizes = [3, 25, 60, 125, 400]
    parts = [ReplaySource(split(recs, lambda c, g=g: c.group == g), stream=f"imu-{g}", chunk_size=n)
             for g, n in zip(groups, sizes)]
    five = WindowStage(dsads_bundle, [SourceInfo.of(p) for p in parts])
    b5 = run(five, round_robin(*(p.chunks() for p in parts)))

    whole = ReplaySource(recs, stream="dsads", chunk_size=25)
    one = WindowStage(dsads_bundle, [SourceInfo.of(whole)])
    b1 = run(one, whole.chunks())

    offline = make_windows(recs, 125, 125, channel_index=[recs[0].channel_names.index(c)
                                                          for c in dsads_bundle.channels])
    assert len(offline) == 6 * 60
    for field in ("x", "labels", "t_first", "t_last"):
        np.testing.assert_array_equal(cat(b5, field), cat(b1, field))
    np.testing.assert_array_equal(cat(b5, "x"), dsads_bundle.normalize(offline.x))
    np.testing.assert_array_equal(cat(b5, "labels"), offline.y)
    assert five.stats.windows_out == one.stats.windows_out == 360
    check_accounting(five)


def drop_before(chunks, t0):
    """The chunks with every sample before t0 removed, renumbered: a source that starts late."""
    seq = 0
    first = True
    for c in chunks:
        keep = c.timestamps >= t0
        if not keep.any():
            continue
        yield Chunk(c.stream, seq, c.recording_id, c.timestamps[keep], c.samples[keep], c.labels[keep],
                    first_of_recording=first or c.first_of_recording)
        seq += 1
        first = False


def test_late_source_waits_and_drops_counted(usc11, usc_bundle):
    recs = usc11[:3]
    acc = ReplaySource(split(recs, lambda c: c.quantity == "acc"), stream="acc", chunk_size=20)
    gyro = ReplaySource(split(recs, lambda c: c.quantity == "gyro"), stream="gyro", chunk_size=33)
    stage = WindowStage(usc_bundle, [SourceInfo.of(acc), SourceInfo.of(gyro)])
    late = 130                                     # gyro's first sample: index 130 of recording 0
    t0 = (late - 0.5) / recs[0].rate

    acc_chunks = list(acc.chunks())
    first_rec = [c for c in acc_chunks if c.recording_id == recs[0].id]
    # All of recording 0 from acc first: nothing may come out before gyro covers it.
    assert [b for c in first_rec for b in stage.process(c)] == []
    batches = []
    for c in round_robin(drop_before(gyro.chunks(), t0), iter(acc_chunks[len(first_rec):])):
        batches += stage.process(c)
    stage.flush()

    cut = [dataclasses.replace(recs[0], timestamps=recs[0].timestamps[late:], samples=recs[0].samples[late:],
                               labels=recs[0].labels[late:]), *recs[1:]]
    offline = make_windows(cut, 200, 50)
    np.testing.assert_array_equal(cat(batches, "x"), usc_bundle.normalize(offline.x))
    np.testing.assert_array_equal(cat(batches, "labels"), offline.y)
    assert cat(batches, "t_first").min() >= t0 - 1e-9
    s_acc, s_gyro = stage.stats.sources["acc"], stage.stats.sources["gyro"]
    assert s_acc.grid_samples - s_gyro.grid_samples == late
    assert s_acc.samples_dropped - s_gyro.samples_dropped == late   # held, then dropped and counted
    assert s_acc.samples_windowed == s_gyro.samples_windowed
    check_accounting(stage)


# -- 3. resampling ------------------------------------------------------------------------------
def sine_chunks(stream, rate, seconds, chunk_size, freqs, t0=0.0, extra=None):
    t = t0 + np.arange(int(seconds * rate)) / rate
    x = np.stack([np.sin(2 * np.pi * f * t + i) for i, f in enumerate(freqs)], axis=1)
    if extra is not None:
        x = x + extra(t)[:, None]
    labels = (t * 2).astype(np.int16)              # changes every 0.5 s
    for seq, a in enumerate(range(0, len(t), chunk_size)):
        b = a + chunk_size
        yield Chunk(stream, seq, "sine", t[a:b], x[a:b].astype(np.float32), labels[a:b], a == 0)


ACC = ("hip.acc.x", "hip.acc.y", "hip.acc.z")
GYRO = ("hip.gyro.x", "hip.gyro.y", "hip.gyro.z")
FREQS = (1.0, 2.0, 3.0)


def resampled_stage(usc_bundle, gyro_rate):
    return WindowStage(usc_bundle, [SourceInfo("acc", ACC, ("g",) * 3, 100.0),
                                    SourceInfo("gyro", GYRO, ("dps",) * 3, gyro_rate)])


def physical(batches, bundle):
    return cat(batches, "x") * bundle.std[None, :, None] + bundle.mean[None, :, None]


@pytest.mark.parametrize("gyro_rate, alias", [(50.0, False), (200.0, False), (200.0, True)])
def test_resampled_source_matches_analytic_signal(usc_bundle, gyro_rate, alias):
    # A 70 Hz tone at 200 Hz would fold to 30 Hz on the 100 Hz grid: the FIR must remove it.
    extra = (lambda t: 0.5 * np.sin(2 * np.pi * 70 * t)) if alias else None
    stage = resampled_stage(usc_bundle, gyro_rate)
    batches = run(stage, round_robin(sine_chunks("acc", 100.0, 30, 10, FREQS),
                                     sine_chunks("gyro", gyro_rate, 30, 17, FREQS, extra=extra)))
    x = physical(batches, usc_bundle)
    grid_t = cat(batches, "t_first")[:, None] + np.arange(200)[None, :] / 100.0
    analytic = np.stack([np.sin(2 * np.pi * f * grid_t + i) for i, f in enumerate(FREQS)], axis=1)
    np.testing.assert_allclose(x[:, :3], analytic, atol=1e-5)          # acc: passed through
    warm = Resampler(gyro_rate, 100.0)
    settled = cat(batches, "t_first") >= 2 * warm.delay                # after the filter's warm-up
    assert settled.sum() >= 50
    err = np.abs(x[settled, 3:] - analytic[settled])
    assert err.max() < 0.02, err.max()
    # Without the delay compensation the phase would be off by a whole `delay`.
    late = np.stack([np.sin(2 * np.pi * f * (grid_t - warm.delay) + i) for i, f in enumerate(FREQS)], axis=1)
    assert np.abs(x[settled, 3:] - late[settled]).max() > 0.2
    # Labels of the resampled grid follow the first source (acc), on the grid.
    np.testing.assert_array_equal(cat(batches, "labels"), (np.round(cat(batches, "t_last") * 100) // 50))
    # The last `delay` seconds of gyro never reach the grid: acc's samples there are dropped, counted.
    check_accounting(stage)
    assert stage.stats.sources["acc"].grid_samples == 3000
    assert stage.stats.sources["gyro"].grid_samples < 3000 - 100 * warm.delay + 2


@pytest.mark.parametrize("gyro_rate", [50.0, 200.0])
def test_resampling_is_chunk_invariant(usc_bundle, gyro_rate):
    results = []
    for size in (1, 13, 500):
        stage = resampled_stage(usc_bundle, gyro_rate)
        batches = run(stage, round_robin(sine_chunks("acc", 100.0, 8, 25, FREQS, t0=3.0),
                                         sine_chunks("gyro", gyro_rate, 8, size, FREQS, t0=3.0)))
        results.append(batches)
    ref = results[0]
    for other in results[1:]:
        np.testing.assert_array_equal(cat(other, "t_first"), cat(ref, "t_first"))
        np.testing.assert_array_equal(cat(other, "labels"), cat(ref, "labels"))
        np.testing.assert_allclose(cat(other, "x"), cat(ref, "x"), rtol=0, atol=1e-5)
    assert len(cat(ref, "labels")) == 12   # gyro reaches the grid until 11 s − delay: 12 windows


# -- 4. gaps and NaN ----------------------------------------------------------------------------
def test_gap_and_nan_policy(usc11, usc_bundle):
    r0, r1 = usc11[0], usc11[1]
    x0 = r0.samples.copy()
    x0[500, 2] = np.nan                  # held from sample 499
    x0[501:504, 2] = np.nan
    x0[3000, :] = np.inf                 # every channel held from sample 2999
    x1 = r1.samples.copy()
    x1[0, 0] = np.nan                    # nothing to hold yet in this recording: the model's mean
    dirty = [dataclasses.replace(r0, samples=x0), dataclasses.replace(r1, samples=x1)]
    src = ReplaySource(dirty, stream="usc", chunk_size=10)
    chunks = list(src.chunks())
    keep = np.ones(len(r0), bool)
    keep[1000:1040] = False              # a 40-sample hole in recording 0's timestamps
    n0 = -(-len(r0) // 10)
    lost_chunk = n0 + 30                 # one chunk of recording 1 (samples 300..309) never arrives
    stream = []
    for c in chunks:
        if c.seq == lost_chunk:
            continue
        if c.recording_id == r0.id:
            i = c.seq * 10 + np.arange(len(c))
            m = keep[i]
            c = dataclasses.replace(c, timestamps=c.timestamps[m], samples=c.samples[m], labels=c.labels[m])
        stream.append(c)
    stage = WindowStage(usc_bundle, [SourceInfo.of(src)])
    batches = run(stage, stream)

    clean0 = r0.samples.copy()
    clean0[500:504, 2] = r0.samples[499, 2]
    clean0[3000] = r0.samples[2999]
    clean1 = r1.samples.copy()
    clean1[0, 0] = usc_bundle.mean[0]

    def piece(rec, x, a, b):
        return dataclasses.replace(rec, timestamps=rec.timestamps[a:b], samples=x[a:b], labels=rec.labels[a:b])
    expected = make_windows([piece(r0, clean0, 0, 1000), piece(r0, clean0, 1040, len(r0)),
                             piece(r1, clean1, 0, 300), piece(r1, clean1, 310, len(r1))], 200, 50)
    x = cat(batches, "x")
    np.testing.assert_array_equal(x, usc_bundle.normalize(expected.x))
    np.testing.assert_array_equal(cat(batches, "labels"), expected.y)
    assert x[len(make_windows([piece(r0, clean0, 0, 1000), piece(r0, clean0, 1040, len(r0))], 200, 50)), 0, 0] == 0
    assert np.isfinite(x).all()
    # No window straddles a gap: its samples are 199 grid periods apart.
    np.testing.assert_allclose(cat(batches, "t_last") - cat(batches, "t_first"), 1.99, atol=1e-9)
    st = stage.stats.sources["usc"]
    assert (st.gaps, st.samples_lost) == (2, 40 + 10)
    assert (st.samples_repaired, st.values_repaired) == (4 + 1 + 1, 4 + 6 + 1)
    # Gap in recording 0 after the window at 800: starts 850, 900, 950, 1000 fall before index 1040.
    # Gap in recording 1 at 300: the window at 100 was the last; starts 150 … 300 lost.
    assert stage.stats.windows_dropped == 4 + 4
    assert stage.stats.windows_out == len(expected)
    check_accounting(stage)


# -- 5. bad input -------------------------------------------------------------------------------
def test_bad_chunks_are_clear_errors(usc11, usc_bundle):
    src = ReplaySource(usc11[:1], stream="usc", chunk_size=10)
    stage = WindowStage(usc_bundle, [SourceInfo.of(src)])
    c0, c1, c2 = itertools.islice(src.chunks(), 3)
    stage.process(c0)

    with pytest.raises(StreamFormatError, match=r"source 'usc', chunk seq 1: samples of shape \(10, 5\), expected \[n, 6\]"):
        stage.process(dataclasses.replace(c1, samples=c1.samples[:, :5]))
    t = c1.timestamps.copy()
    t[4] = t[3]
    with pytest.raises(StreamFormatError, match=r"source 'usc', chunk seq 1: timestamps not strictly increasing: sample 4"):
        stage.process(dataclasses.replace(c1, timestamps=t))
    # a non-finite timestamp anywhere: first, in the middle (where only the step check sees it), last
    for i, bad in ((0, np.nan), (5, np.nan), (9, np.inf), (9, np.nan)):
        t = c1.timestamps.copy()
        t[i] = bad
        with pytest.raises(StreamFormatError, match=r"source 'usc', chunk seq 1: non-finite timestamp"):
            stage.process(dataclasses.replace(c1, timestamps=t))
    with pytest.raises(StreamFormatError, match=r"seq 1: starts at t=.*expected after the previous chunk's last timestamp t="):
        stage.process(dataclasses.replace(c1, timestamps=c1.timestamps - 0.05))
    with pytest.raises(UsageError, match=r"chunk seq 1 from unknown source 'other'; this stage reads 'usc'"):
        stage.process(dataclasses.replace(c1, stream="other"))
    with pytest.raises(StreamFormatError, match=r"chunk seq 0: seq not increasing \(previous chunk was seq 0\)"):
        stage.process(c0)
    # Rejected chunks left no trace: the stream continues as if they never came.
    stage.process(c1)
    stage.process(c2)
    st = stage.stats.sources["usc"]
    assert (st.samples_in, st.gaps) == (30, 0)


def test_bad_setup_names_source_and_channel(usc_bundle):
    with pytest.raises(UsageError, match=r"no source has channel 'hip.gyro.x'.*acc: hip.acc.x"):
        WindowStage(usc_bundle, [SourceInfo("acc", ACC, ("g",) * 3, 100.0)])
    with pytest.raises(UsageError, match=r"source 'gyro': channel 'hip.gyro.x' is in 'm/s\^2'.*expects 'dps' "
                                         r"\(no known conversion\)"):
        WindowStage(usc_bundle, [SourceInfo("acc", ACC, ("g",) * 3, 100.0),
                                 SourceInfo("gyro", GYRO, ("m/s^2",) * 3, 100.0)])
    with pytest.raises(UsageError, match=r"'hip.acc.x' is in 'furlong'"):
        WindowStage(usc_bundle, [SourceInfo("imu", ACC + GYRO, ("furlong",) * 3 + ("dps",) * 3, 100.0)])
    with pytest.raises(UsageError, match=r"source 'mag' gives none of the channels"):
        WindowStage(usc_bundle, [SourceInfo("acc", ACC + GYRO, ("g",) * 3 + ("dps",) * 3, 100.0),
                                 SourceInfo("mag", ("hip.mag.x",), ("uT",), 100.0)])
    assert issubclass(StreamFormatError, StreamharError)


def test_si_source_is_converted_to_the_models_units(usc11, usc_bundle):
    """A live IMU delivers m/s^2 and rad/s; the USC-HAD model was trained on g and dps. The window
    stage converts, so the windows equal those of the recording in its own units."""
    recs = usc11[:2]
    si = np.array([9.80665] * 3 + [np.pi / 180] * 3, np.float32)
    si_recs = [dataclasses.replace(r, samples=r.samples * si,
                                   channels=tuple(dataclasses.replace(c, unit=u) for c, u in
                                                  zip(r.channels, ["m/s^2"] * 3 + ["rad/s"] * 3)))
               for r in recs]
    plain = ReplaySource(recs, stream="usc", chunk_size=50)
    live = ReplaySource(si_recs, stream="usc", chunk_size=50)
    assert [c.unit for c in live.channels] == ["m/s^2"] * 3 + ["rad/s"] * 3
    a = cat(run(WindowStage(usc_bundle, [SourceInfo.of(plain)]), plain.chunks()), "x")
    b = cat(run(WindowStage(usc_bundle, [SourceInfo.of(live)]), live.chunks()), "x")
    assert a.shape == b.shape and len(a) > 10
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-4)
