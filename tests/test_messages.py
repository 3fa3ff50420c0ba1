"""The ZeroMQ message schema: chunks cross real sockets (and a real process boundary) unchanged and
without copies on receipt; gaps in sequence numbers are counted; malformed messages are refused
with the stream, seq and what was expected."""
from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest
import zmq

from streamhar.sources.chunk import Chunk
from streamhar.transport.messages import (CHANNELS_EVERY, ChannelBook, MessageError, SequenceTracker, decode,
                                          decode_chunk, encode, encode_chunk)


def _chunk(seq: int, n: int = 5, first: bool = False) -> Chunk:
    ts = np.arange(seq * n, seq * n + n, dtype=np.float64) / 100
    x = (np.arange(n * 3, dtype=np.float32).reshape(n, 3) + seq)
    return Chunk("replay:test", seq, "rec-1", ts, x, np.full(n, seq % 7, np.int16), first)


@pytest.fixture
def pair():
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push.connect(f"tcp://127.0.0.1:{port}")
    yield push, pull
    push.close(0)
    pull.close(0)
    ctx.term()


def test_a_chunk_crosses_a_socket_unchanged_and_arrives_as_views_of_the_frames(pair):
    push, pull = pair
    chunk = _chunk(0, first=True)
    push.send_multipart(encode_chunk(chunk, ["a.x", "a.y", "a.z"], ["g", "g", "g"], 100.0), copy=False)
    frames = pull.recv_multipart(copy=False)
    assert bytes(frames[0].buffer) == b"samples/replay:test"
    msg = decode(frames)
    got = decode_chunk(msg)
    assert got.seq == 0 and got.recording_id == "rec-1" and got.first_of_recording
    for name in ("timestamps", "samples", "labels"):
        a, b = getattr(got, name), getattr(chunk, name)
        assert a.dtype == b.dtype and np.array_equal(a, b)
        assert not a.flags.owndata and not a.flags.writeable       # a view of the received frame
    assert msg.header["t_first"] == 0.0 and msg.header["t_last"] == pytest.approx(0.04)
    assert ChannelBook().learn(msg) == (["a.x", "a.y", "a.z"], ["g", "g", "g"])


def test_channel_names_come_with_the_first_messages_and_are_resolved_by_id():
    names, units = ["a", "b", "c"], ["g", "g", "g"]
    carries = [("channels" in decode(encode_chunk(_chunk(s), names, units, 100.0)).header) for s in range(0, 2 * CHANNELS_EVERY + 1)]
    assert carries[0] and carries[CHANNELS_EVERY] and carries[2 * CHANNELS_EVERY] and sum(carries) == 3
    book = ChannelBook()
    late = decode(encode_chunk(_chunk(5), names, units, 100.0))
    with pytest.raises(MessageError, match="not announced yet"):
        book.learn(late)                                # a receiver that joined late
    book.learn(decode(encode_chunk(_chunk(CHANNELS_EVERY), names, units, 100.0)))
    assert book.learn(late) == (names, units)
    assert "channels" in decode(encode_chunk(_chunk(7, first=True), names, units, 100.0)).header


def test_sequence_gaps_are_counted_per_stream():
    tracker = SequenceTracker()
    seqs = [0, 1, 2, 5, 6, 6, 10]
    missed = [tracker.observe(decode(encode_chunk(_chunk(s), ["a", "b", "c"], ["g"] * 3, 100.0))) for s in seqs]
    assert missed == [0, 0, 0, 2, 0, 0, 3]
    other = decode(encode("windows", "replay:test", 0))
    assert tracker.observe(other) == 0                 # another kind: its own sequence
    c = tracker.totals()["samples/replay:test"]
    assert (c["received"], c["gaps"], c["missing"], c["out_of_order"]) == (7, 2, 5, 1)
    # the end marker says 14 messages were due: seqs 11-13 were dropped at the tail, counted too
    assert tracker.finish("samples", "replay:test", 14) == 3
    assert tracker.finish("samples", "replay:test", 14) == 0          # idempotent
    c = tracker.totals()["samples/replay:test"]
    assert (c["gaps"], c["missing"]) == (3, 8)


def test_malformed_messages_are_refused_with_stream_seq_and_expectation():
    good = [bytes(f) for f in encode_chunk(_chunk(3), ["a", "b", "c"], ["g"] * 3, 100.0)]
    with pytest.raises(MessageError, match="stream 'replay:test', seq 3: header lists 3 array"):
        decode(good[:-1])
    short = list(good)
    short[3] = short[3][:-4]
    with pytest.raises(MessageError, match="seq 3: array 'samples' float32 \\[5, 3\\] needs 60 bytes, the frame has 56"):
        decode(short)
    header = json.loads(good[1])
    for change, pattern in (({"v": 99}, "schema version 99"),
                            ({"arrays": [dict(header["arrays"][0], dtype="object")] + header["arrays"][1:]},
                             "dtype 'object'"),
                            # shapes that are not sizes: each refused, none reaches numpy's reshape rules
                            ({"arrays": [dict(header["arrays"][0], shape=[-5])] + header["arrays"][1:]},
                             "seq 3: array 'timestamps' float64 \\[-5\\] needs -40 bytes"),
                            ({"arrays": [dict(header["arrays"][0], shape=[-1, -5])] + header["arrays"][1:]},
                             "seq 3: array spec .* is not a name, an allowed dtype and a shape of sizes"),
                            ({"arrays": [dict(header["arrays"][0], shape=[5.0])] + header["arrays"][1:]},
                             "seq 3: array spec .* shape of sizes"),
                            ({"arrays": [dict(header["arrays"][0], shape="5")] + header["arrays"][1:]},
                             "seq 3: array spec .* shape of sizes"),
                            ({"arrays": [{"name": "timestamps"}] + header["arrays"][1:]},
                             "seq 3: array spec .* shape of sizes")):
        bad = list(good)
        bad[1] = json.dumps({**header, **change}).encode()
        with pytest.raises(MessageError, match=pattern):
            decode(bad)
    with pytest.raises(MessageError, match="not a streamhar header"):
        decode([b"x", b"{not json"])
    with pytest.raises(MessageError, match="cannot be sent"):
        encode("samples", "s", 0, {"x": np.array([object()])})
    with pytest.raises(MessageError, match="kind is 'windows'"):
        decode_chunk(decode(encode("windows", "s", 0)))


def _replay_into(endpoint: str, data_dir: str) -> None:
    """Child process: replay USC-HAD subject 11 as fast as possible into a PUSH socket."""
    from pathlib import Path

    from streamhar.datasets import get_dataset
    from streamhar.sources.replay import ReplaySource
    recs = get_dataset("usc-had").load_selection(Path(data_dir), "11")
    src = ReplaySource(recs, stream="replay:usc-had:11")
    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.connect(endpoint)
    for chunk in src.chunks():
        sock.send_multipart(encode_chunk(chunk, [c.name for c in src.channels], [c.unit for c in src.channels],
                                         src.rate), copy=False)
    sock.send_multipart(encode("eos", "replay:usc-had:11", 0))
    sock.close(linger=-1)


def test_a_real_replay_crosses_a_process_boundary_without_loss(data_dir):
    from streamhar.datasets import get_dataset
    ctx = zmq.Context()
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    child = mp.get_context("spawn").Process(target=_replay_into,
                                            args=(f"tcp://127.0.0.1:{port}", str(data_dir.resolve())))
    child.start()
    tracker, book, parts = SequenceTracker(), ChannelBook(), []
    pull.RCVTIMEO = 60_000
    try:
        while True:
            msg = decode(pull.recv_multipart(copy=False))
            tracker.observe(msg)
            if msg.kind == "eos":
                break
            names, _ = book.learn(msg)
            parts.append(np.array(decode_chunk(msg).samples))
    finally:
        child.join(30)
        pull.close(0)
        ctx.term()
    assert child.exitcode == 0
    recs = get_dataset("usc-had").load_selection(data_dir, "11")
    assert names == list(recs[0].channel_names)
    assert np.array_equal(np.concatenate(parts), np.concatenate([r.samples for r in recs]))
    c = tracker.totals()["samples/replay:usc-had:11"]
    assert c["gaps"] == 0 and c["received"] == len(parts)


# ------------------------------------------------------------------ the device-tier cascade's messages

def _device_batch(ids, uncertain, channels: int = 3, length: int = 4, classes: int = 5):
    from streamhar.windowing.stage import DeviceWindowBatch
    ids, unc = np.asarray(ids, np.int64), np.asarray(uncertain, bool)
    n, m = len(ids), int(unc.sum())
    x = (np.arange(m * channels * length) % 256 - 128).astype(np.int8).reshape(m, channels, length)
    logits = (np.arange(n * classes, dtype=np.int32).reshape(n, classes) * 1000 - 7)
    return DeviceWindowBatch(ids, ids * 0.5 + 10.0, (ids % classes).astype(np.int16), ids * 100 + 1, logits, unc, x,
                             "serial:/dev/x#1")


def test_device_windows_cross_a_socket_with_and_without_their_int8_window(pair):
    from streamhar.transport.messages import decode_device, decode_windows, encode_device, encode_device_windows
    push, pull = pair
    for ids, unc in (([7], [True]), ([8], [False]), ([9, 10, 12], [False, True, True])):
        batch = _device_batch(ids, unc)
        push.send_multipart(encode_device(batch, "serial:/dev/x", ids[0], sent=1.5, count_before=ids[0],
                                          device_threshold=34002, model_id=0xC0F9CD11), copy=False)
        frames = pull.recv_multipart(copy=False)
        assert bytes(frames[0].buffer) == b"device/serial:/dev/x"
        msg = decode(frames)
        got = decode_device(msg)
        assert (msg.kind, msg.seq, msg.header["count_before"], msg.header["device_threshold"]) == \
            ("device", ids[0], ids[0], 34002)
        for name in ("window_id", "t_last", "classes", "margins", "logits", "uncertain", "x"):
            a, b = getattr(got, name), getattr(batch, name)
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        assert got.recording_id == "serial:/dev/x#1" and (got.labels == -1).all()
        # … and on as a windows message, numbered by the window stage
        got.seq = np.arange(40, 40 + len(ids), dtype=np.int64)
        w = decode(encode_device_windows(got, 3, np.full(len(ids), 1.5), source="serial:/dev/x",
                                         device_threshold=34002))
        again = decode_windows(w)
        assert w.header["tier"] == "device" and type(again).__name__ == "DeviceWindowBatch"
        assert np.array_equal(again.seq, got.seq) and np.array_equal(again.x, batch.x)
        assert np.array_equal(w.arrays["src_sent"], np.full(len(ids), 1.5))


def test_malformed_device_windows_are_refused_naming_stream_and_seq():
    from streamhar.transport.messages import decode_device, encode_device
    batch = _device_batch([1, 2], [True, False])
    batch.uncertain = np.array([True, True])              # two uncertain, one window sent
    with pytest.raises(MessageError, match=r"device message of stream 'serial:/dev/x', seq 4: expected the 2 "
                                           r"uncertain window\(s\) as int8 \[2, C, L\], got int8 \[1, 3, 4\]"):
        decode_device(decode(encode_device(batch, "serial:/dev/x", 4)))
    batch = _device_batch([1], [False])
    batch.classes = np.array([9], np.int16)               # 5 logits: classes 0 … 4
    with pytest.raises(MessageError, match="seq 0: a class outside 0 … 4"):
        decode_device(decode(encode_device(batch, "serial:/dev/x", 0)))
    with pytest.raises(MessageError, match=r"seq 0: array\(s\) t_last, classes, margins, logits, uncertain, x miss"):
        frames = encode("device", "serial:/dev/x", 0, {"window_id": np.zeros(1, np.int64)})
        decode_device(decode(frames))


def test_predictions_carry_the_device_tier_arrays_and_older_ones_decode_as_host_windows():
    from streamhar.inference.stage import PredictionBatch
    from streamhar.transport.messages import DEVICE_PREDICTION_ARRAYS, decode_predictions, encode_predictions
    n = 3
    base = (np.arange(n, dtype=np.int64), "rec", np.arange(n) * 0.5, np.full(n, -1, np.int16),
            np.array([1, 2, 3], np.int16), np.array([5, 6, 7], np.int64), np.full(n, 0.5, np.float32),
            np.array([False, True, False]), np.array([0, 3751936, 0], np.int64), np.array([0, 77, 0], np.uint32))
    pred = PredictionBatch(*base, device=np.ones(n, bool), device_macs=np.full(n, 285184, np.int64),
                           window_id=np.array([4, 5, 6], np.int64))
    got, lat = decode_predictions(decode(encode_predictions(pred, 0, np.zeros(n), ["a", "b", "c", "d"])))
    for k, v in pred.arrays.items():
        assert np.array_equal(getattr(got, k), v), k
    old = decode(encode_predictions(pred, 0, np.zeros(n)))
    frames = encode("predictions", "predictions", 0,
                    {k: v for k, v in old.arrays.items() if k not in DEVICE_PREDICTION_ARRAYS})
    host, _ = decode_predictions(decode(frames))
    assert not host.device.any() and (host.device_macs == 0).all() and (host.window_id == -1).all()


def test_latency_stamped_after_encoding_is_what_crosses_the_socket(pair):
    """The inference stage encodes a predictions message first and writes the latency into its
    array last, just before sending (stages.run_infer): that works only while encoding keeps a
    view of the array, not a copy."""
    from streamhar.inference.stage import PredictionBatch
    from streamhar.transport.messages import decode_predictions, encode_predictions
    push, pull = pair
    n = 2
    pred = PredictionBatch(np.arange(n, dtype=np.int64), "rec", np.arange(n) * 0.5, np.full(n, -1, np.int16),
                           np.array([1, 2], np.int16), np.array([5, 6], np.int64), np.full(n, 0.5, np.float32),
                           np.array([False, True]), np.array([0, 10], np.int64), np.array([0, 77], np.uint32))
    latency = np.empty(n, np.float64)
    frames = encode_predictions(pred, 0, latency, ["a", "b", "c"])
    latency[:] = [0.0031, 0.0042]                  # after encoding, before sending
    push.send_multipart(frames, copy=False)
    _, got = decode_predictions(decode(pull.recv_multipart(copy=False)))
    assert np.array_equal(got, [0.0031, 0.0042])
