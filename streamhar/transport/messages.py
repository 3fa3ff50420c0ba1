"""The ZeroMQ message schema between pipeline stages (docs/MESSAGES.md).

A message is a multipart ZeroMQ message:

    frame 0   topic     UTF-8, "<kind>/<stream>" (SUB sockets filter on prefixes of it)
    frame 1   header    UTF-8 JSON object (below)
    frame 2…  payload   one raw array per entry of header["arrays"], C order, little-endian

Header keys: `v` (SCHEMA_VERSION), `kind` ("samples", "device", "windows", "predictions", "end"),
`stream`, `seq` (0, 1, 2, … per stream and kind: a receiver counts gaps), `arrays` (a list of
{"name", "dtype", "shape"}, one per payload frame, in order), and free fields of the kind (e.g.
`t_first`, `t_last`, `rate`, `recording`, `first_of_recording`). Channel names and units are big
and constant, so a stream sends them with its first message, with every first message of a
recording and every CHANNELS_EVERY-th message (receivers that join late pick them up), and a
`channels_id` (CRC-32 of names and units) on every message; `ChannelBook` resolves the id.

Arrays travel without copies: `encode` hands numpy buffers to `send_multipart(copy=False)`, and
`decode` of frames received with `copy=False` returns read-only numpy views of the frames'
memory. Nothing is unpickled: the header is JSON and the payload raw numbers whose dtype comes
from a short allow-list. Headers are written and read with orjson: the same compact JSON as the
standard library's, in a tenth of the time (a header costs ~1.4 µs to write instead of ~18; at
real-time pace every window crosses three headers each way on its latency path).
"""
from __future__ import annotations

import functools
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import orjson

from streamhar.errors import StreamharError
from streamhar.sources.chunk import Chunk

SCHEMA_VERSION = 1
CHANNELS_EVERY = 100
DTYPES = {"float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "bool"}


class MessageError(StreamharError):
    """A message that does not follow the schema; says which stream/seq and what was expected."""


@dataclass
class Message:
    kind: str
    stream: str
    seq: int
    header: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def channels_id(names: Sequence[str], units: Sequence[str]) -> str:
    return _channels_id(tuple(names), tuple(units))


@functools.lru_cache(maxsize=64)       # a source asks for the same id with every chunk
def _channels_id(names: tuple[str, ...], units: tuple[str, ...]) -> str:
    return f"{zlib.crc32(json.dumps([list(names), list(units)]).encode()):08x}"


def _plain(value):
    """numpy scalars in header fields (json would take np.float64 as a float; orjson asks)."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"header field of type {type(value).__name__} is not JSON")


# dtype → its wire name and wire name → little-endian dtype, looked up per array (dtype.name is
# slow enough to matter at tens of thousands of messages per second).
_NAMES = {np.dtype(n).newbyteorder("<"): n for n in DTYPES} | {np.dtype(n): n for n in DTYPES}
_WIRE = {n: np.dtype(n).newbyteorder("<") for n in DTYPES}


def _name(a: np.ndarray) -> str:
    name = _NAMES.get(a.dtype)
    if name is None:
        name = a.dtype.name if a.dtype.name in DTYPES else None
    if name is None:
        raise MessageError(f"array dtype {a.dtype} cannot be sent; allowed: {', '.join(sorted(DTYPES))}")
    return name


def _buffer(a: np.ndarray) -> memoryview:
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    if a.size == 0:                  # e.g. no uncertain window: memoryview cannot cast a zero shape
        return memoryview(b"")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a.data.cast("B")


def encode(kind: str, stream: str, seq: int, arrays: dict[str, np.ndarray] | None = None, **fields) -> list:
    """Frames for `socket.send_multipart(frames, copy=False)`: topic, header, one buffer per array."""
    specs, buffers = [], []
    for k, v in (arrays or {}).items():
        v = np.asarray(v)
        specs.append({"name": k, "dtype": _name(v), "shape": list(v.shape)})
        buffers.append(_buffer(v))
    header = {"v": SCHEMA_VERSION, "kind": kind, "stream": stream, "seq": int(seq), "arrays": specs, **fields}
    return [f"{kind}/{stream}".encode(), orjson.dumps(header, default=_plain), *buffers]


def _bytes_of(frame) -> memoryview:
    """A zmq.Frame (received with copy=False), bytes or a buffer → its memory, without a copy."""
    buf = getattr(frame, "buffer", frame)
    return memoryview(buf)


def decode(frames: Sequence) -> Message:
    """The message of received frames; arrays are read-only views of the frames (no copy)."""
    if len(frames) < 2:
        raise MessageError(f"a message needs a topic and a header frame, got {len(frames)} frame(s)")
    try:
        header = orjson.loads(_bytes_of(frames[1]))
        kind, stream, seq, specs = header["kind"], header["stream"], header["seq"], header["arrays"]
    except (ValueError, KeyError, TypeError) as e:
        raise MessageError(f"message header is not a streamhar header ({e})") from None
    where = f"{kind} message of stream {stream!r}, seq {seq}"
    if header.get("v") != SCHEMA_VERSION:
        raise MessageError(f"{where}: schema version {header.get('v')!r}, this streamhar reads {SCHEMA_VERSION}")
    if len(frames) != 2 + len(specs):
        raise MessageError(f"{where}: header lists {len(specs)} array(s), the message carries {len(frames) - 2}")
    arrays = {}
    for spec, frame in zip(specs, frames[2:]):
        # one pass, no checks that cost when all is well: a bad dtype misses _WIRE; a shape of
        # non-integers or negatives gives a byte count that cannot match, or fails the reshape
        try:
            dtype, shape = _WIRE.get(spec["dtype"]), spec["shape"]
            if type(shape) is not list:
                raise TypeError(f"shape {shape!r} is not a list")
            if dtype is None:
                raise MessageError(f"{where}: array {spec.get('name')!r} has dtype {spec.get('dtype')!r}; "
                                   f"allowed: {', '.join(sorted(DTYPES))}")
            buf = _bytes_of(frame)
            want = math.prod(shape) * dtype.itemsize
            if buf.nbytes != want:
                raise MessageError(f"{where}: array {spec['name']!r} {spec['dtype']} {shape} needs {want} bytes, "
                                   f"the frame has {buf.nbytes}")
            a = np.frombuffer(buf, dtype=dtype).reshape(shape)
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            raise MessageError(f"{where}: array spec {spec!r} is not a name, an allowed dtype and a shape of "
                               f"sizes ({e})") from None
        a.flags.writeable = False
        arrays[spec["name"]] = a
    return Message(kind, stream, int(seq), header, arrays)


# ---------------------------------------------------------------------------------- chunks

def encode_chunk(chunk: Chunk, channels: Sequence[str], units: Sequence[str], rate: float, **extra) -> list:
    """A source chunk as a "samples" message (channel names on the first messages, see above);
    `extra` adds header fields (the pipeline's source adds `sent`, its monotonic send time)."""
    cid = channels_id(channels, units)
    fields = {**extra, "recording": chunk.recording_id, "first_of_recording": bool(chunk.first_of_recording),
              "rate": float(rate), "channels_id": cid,
              "t_first": float(chunk.timestamps[0]) if len(chunk) else None,
              "t_last": float(chunk.timestamps[-1]) if len(chunk) else None}
    if chunk.seq == 0 or chunk.first_of_recording or chunk.seq % CHANNELS_EVERY == 0:
        fields["channels"], fields["units"] = list(channels), list(units)
    return encode("samples", chunk.stream, chunk.seq,
                  {"timestamps": chunk.timestamps, "samples": chunk.samples, "labels": chunk.labels}, **fields)


class ChannelBook:
    """Channel names and units per `channels_id`, learnt from the messages that carry them."""

    def __init__(self) -> None:
        self._by_id: dict[str, tuple[list[str], list[str]]] = {}

    def knows(self, msg: Message) -> bool:
        return "channels" in msg.header or msg.header.get("channels_id") in self._by_id

    def learn(self, msg: Message) -> tuple[list[str], list[str]]:
        h = msg.header
        if "channels" in h:
            names, units = list(h["channels"]), list(h.get("units", []))
            if channels_id(names, units) != h.get("channels_id"):
                raise MessageError(f"samples message of stream {msg.stream!r}, seq {msg.seq}: channels_id "
                                   f"{h.get('channels_id')!r} does not match its channel list")
            self._by_id[h["channels_id"]] = (names, units)
        found = self._by_id.get(h.get("channels_id"))
        if found is None:
            raise MessageError(f"samples message of stream {msg.stream!r}, seq {msg.seq}: channel set "
                               f"{h.get('channels_id')!r} not announced yet (it comes with seq 0, the first "
                               f"message of each recording and every {CHANNELS_EVERY}th message)")
        return found


def decode_chunk(msg: Message) -> Chunk:
    """The chunk a "samples" message carries (arrays stay views of the received frames)."""
    where = f"samples message of stream {msg.stream!r}, seq {msg.seq}"
    if msg.kind != "samples":
        raise MessageError(f"{where}: kind is {msg.kind!r}")
    try:
        ts, x, y = msg.arrays["timestamps"], msg.arrays["samples"], msg.arrays["labels"]
    except KeyError as e:
        raise MessageError(f"{where}: array {e} missing") from None
    if ts.ndim != 1 or x.ndim != 2 or y.shape != ts.shape or x.shape[0] != ts.shape[0]:
        raise MessageError(f"{where}: expected timestamps [n], samples [n, C], labels [n]; got "
                           f"{list(ts.shape)}, {list(x.shape)}, {list(y.shape)}")
    return Chunk(msg.stream, msg.seq, msg.header.get("recording", ""), ts, x, y,
                 bool(msg.header.get("first_of_recording", False)))


# ---------------------------------------------------------------------------------- sequence numbers

@dataclass
class StreamCount:
    received: int = 0
    gaps: int = 0              # how many times messages were missing
    missing: int = 0           # how many messages were missing in all
    out_of_order: int = 0      # seq lower than expected (duplicate or late)
    next_seq: int = 0


class SequenceTracker:
    """Per (kind, stream): counts received messages and the gaps in their sequence numbers."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], StreamCount] = {}

    def observe(self, msg: Message) -> int:
        """Records msg; returns how many messages were missing just before it (0 = in sequence)."""
        c = self.streams.setdefault((msg.kind, msg.stream), StreamCount())
        c.received += 1
        if msg.seq < c.next_seq:
            c.out_of_order += 1
            return 0
        missed = msg.seq - c.next_seq
        if missed:
            c.gaps += 1
            c.missing += missed
        c.next_seq = msg.seq + 1
        return missed

    def finish(self, kind: str, stream: str, total: int) -> int:
        """An end marker says `total` messages were due: the ones after the last received are missing
        too (dropped at the tail of the stream). Returns how many."""
        c = self.streams.setdefault((kind, stream), StreamCount())
        missed = max(0, total - c.next_seq)
        if missed:
            c.gaps += 1
            c.missing += missed
            c.next_seq = total
        return missed

    def totals(self) -> dict:
        return {f"{k}/{s}": vars(c).copy() for (k, s), c in self.streams.items()}


# ---------------------------------------------------------------------------------- windows and predictions
# Imported lazily by kind: the window and inference stages' dataclasses.

def encode_windows(batch, seq: int, src_sent: np.ndarray, stream: str = "windows") -> list:
    """A WindowBatch as a "windows" message; `src_sent` float64 [N]: when the source sent the chunk
    that completed each window (time.monotonic, where the latency starts)."""
    return encode("windows", stream, seq, {"x": batch.x, "labels": batch.labels, "t_first": batch.t_first,
                                           "t_last": batch.t_last, "window_seq": batch.seq,
                                           "src_sent": np.asarray(src_sent, np.float64)},
                  recording=batch.recording_id)


def decode_windows(msg: Message):
    """A WindowBatch, or a DeviceWindowBatch for a windows message with `tier: "device"`."""
    if msg.header.get("tier") == "device":
        return _decode_device_batch(msg, "windows", DEVICE_WINDOW_ARRAYS)
    from streamhar.windowing.stage import WindowBatch
    a = _expect(msg, "windows", ("x", "labels", "t_first", "t_last", "window_seq", "src_sent"))
    n = a["labels"].shape[0]
    if a["x"].ndim != 3 or a["x"].shape[0] != n or any(a[k].shape != (n,) for k in ("t_first", "t_last", "window_seq",
                                                                                    "src_sent")):
        raise MessageError(f"windows message of stream {msg.stream!r}, seq {msg.seq}: expected x [N, C, L] and "
                           f"[N] arrays, got x {list(a['x'].shape)} for {n} labels")
    return WindowBatch(a["x"], a["labels"], a["t_first"], a["t_last"], msg.header.get("recording", ""),
                       a["window_seq"])


# ---------------------------------------------------------------------------------- device-tier windows
# A device that runs the narrow width itself sends its windows' results, and the input of the
# uncertain ones; the source stage forwards them as "device" messages, the window stage numbers
# them and sends them on as "windows" messages with `tier: "device"` (docs/MESSAGES.md).
# Per-window arrays come first: flow control counts a message's items by its first array.

DEVICE_ARRAYS = ("window_id", "t_last", "classes", "margins", "logits", "uncertain", "x")
DEVICE_WINDOW_ARRAYS = ("window_seq", "labels", "src_sent") + DEVICE_ARRAYS


def _device_arrays(batch) -> dict[str, np.ndarray]:
    return {"window_id": np.asarray(batch.window_id, np.int64), "t_last": np.asarray(batch.t_last, np.float64),
            "classes": np.asarray(batch.classes, np.int16), "margins": np.asarray(batch.margins, np.int64),
            "logits": np.asarray(batch.logits, np.int32), "uncertain": np.asarray(batch.uncertain, bool),
            "x": np.asarray(batch.x, np.int8)}


def encode_device(batch, stream: str, seq: int, **fields) -> list:
    """A DeviceWindowBatch (windowing/stage.py; or anything with its fields: the source stage
    builds one without importing the window stage) as a "device" message of source `stream`; the
    source stage adds `sent` (its monotonic send time), `count_before` (windows of this stream in
    earlier messages, so a receiver tells dropped messages from windows the device link lost) and
    `device_threshold` (the threshold in force on the device, as the source knows it)."""
    return encode("device", stream, seq, _device_arrays(batch), recording=batch.recording_id, **fields)


def decode_device(msg: Message):
    """The DeviceWindowBatch of a "device" message (arrays stay views of the received frames)."""
    return _decode_device_batch(msg, "device", DEVICE_ARRAYS)


def encode_device_windows(batch, seq: int, src_sent: np.ndarray, stream: str = "windows", **fields) -> list:
    """A numbered DeviceWindowBatch as a "windows" message with `tier: "device"`."""
    arrays = {"window_seq": np.asarray(batch.seq, np.int64), "labels": np.asarray(batch.labels, np.int16),
              "src_sent": np.asarray(src_sent, np.float64), **_device_arrays(batch)}
    return encode("windows", stream, seq, arrays, recording=batch.recording_id, tier="device", **fields)


def _decode_device_batch(msg: Message, kind: str, names: Sequence[str]):
    from streamhar.windowing.stage import DeviceWindowBatch, StreamFormatError
    a = _expect(msg, kind, names)
    batch = DeviceWindowBatch(a["window_id"], a["t_last"], a["classes"], a["margins"], a["logits"], a["uncertain"],
                              a["x"], msg.header.get("recording", ""), a.get("window_seq"), a.get("labels"))
    try:
        batch.check(f"{kind} message of stream {msg.stream!r}, seq {msg.seq}")
    except StreamFormatError as e:
        raise MessageError(str(e)) from None
    if "src_sent" in a and a["src_sent"].shape != (len(batch),):
        raise MessageError(f"{kind} message of stream {msg.stream!r}, seq {msg.seq}: expected src_sent "
                           f"[{len(batch)}], got {list(a['src_sent'].shape)}")
    return batch


def encode_predictions(pred, seq: int, latency: np.ndarray, class_names: Sequence[str] | None = None,
                       stream: str = "predictions", **fields) -> list:
    """A PredictionBatch (inference/stage.py) with per-window latency (s) as a "predictions" message;
    class names travel on a stream's first message (and whenever given)."""
    if class_names is not None:
        fields["class_names"] = list(class_names)
    return encode("predictions", stream, seq, {**pred.arrays, "latency": latency},
                  recording=pred.recording_id, **fields)


PREDICTION_ARRAYS = ("window_seq", "t_last", "labels", "classes", "margins", "prob_margins", "escalated",
                     "macs", "window_crc", "latency")
# Device-tier additions; a message without them (an older sender) decodes as host-tier windows.
DEVICE_PREDICTION_ARRAYS = ("device", "device_macs", "window_id")


def decode_predictions(msg: Message):
    """(PredictionBatch, latency seconds [N])."""
    from streamhar.inference.stage import PredictionBatch
    a = _expect(msg, "predictions", PREDICTION_ARRAYS)
    n = a["classes"].shape[0]
    present = [k for k in PREDICTION_ARRAYS + DEVICE_PREDICTION_ARRAYS if k in a]
    bad = [k for k in present if a[k].shape != (n,)]
    if bad:
        raise MessageError(f"predictions message of stream {msg.stream!r}, seq {msg.seq}: arrays {bad} are not "
                           f"[{n}]")
    fields = {k: a[k] for k in present if k != "latency"}
    return PredictionBatch(recording_id=msg.header.get("recording", ""), **fields), a["latency"]


def encode_end(kind: str, stream: str, seq: int, **counts) -> list:
    """End of stream: `seq` = how many messages the stream sent (so a receiver knows what is due)."""
    return encode("end", stream, seq, of=kind, **counts)


def _expect(msg: Message, kind: str, names: Sequence[str]) -> dict:
    where = f"{kind} message of stream {msg.stream!r}, seq {msg.seq}"
    if msg.kind != kind:
        raise MessageError(f"{where}: kind is {msg.kind!r}")
    missing = [k for k in names if k not in msg.arrays]
    if missing:
        raise MessageError(f"{where}: array(s) {', '.join(missing)} missing")
    return msg.arrays
