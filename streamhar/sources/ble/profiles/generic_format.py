"""The streamhar generic BLE profile: our own small GATT service, byte for byte (docs/WEARABLES.md).

Any board (Arduino Nano 33 BLE, nRF52, ESP32) that implements this service streams into
streamhar with no per-board code on the host: the board describes itself in the info
characteristic. All integers are little-endian.

Service  4d3c0001-8f2a-4b7e-9a61-5e3f2c1b0a97
  data     4d3c0002-…  notify   u16 seq | u32 t_us | u8 n | n × C × int16 (sample-major)
  control  4d3c0003-…  write (with response), read
                       write 01 RR RR PP : start at RRRR Hz (u16, 0 = default) with PP samples per
                                           packet (u8, 0 = board's choice); 00 : stop
                       read  SS RR RR PP : state (0 stopped, 1 streaming), rate, samples/packet
  info     4d3c0004-…  read     UTF-8: "shg/1 rate=100 rates=25,50,100 spp=10 ch=acc.x:m/s^2:0.0047884,…"

`seq` counts packets from the start command (the host counts lost packets by it), `t_us` is the
board's microsecond clock at the packet's FIRST sample (wraps after 2^32 µs = 71.6 min), `n`
samples follow. Channel `name:unit:scale` entries give the value of one LSB in `unit`; units
are the SI ones (m/s^2, rad/s, uT) or any unit `streamhar.windowing.units` converts (g, dps, …).
A start with an unsupported rate is refused with ATT error 0x13 (Value Not Allowed).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

SERVICE = "4d3c0001-8f2a-4b7e-9a61-5e3f2c1b0a97"
DATA = "4d3c0002-8f2a-4b7e-9a61-5e3f2c1b0a97"
CONTROL = "4d3c0003-8f2a-4b7e-9a61-5e3f2c1b0a97"
INFO = "4d3c0004-8f2a-4b7e-9a61-5e3f2c1b0a97"

HEADER = struct.Struct("<HIB")      # seq, t_us, n
OP_STOP, OP_START = 0x00, 0x01
VERSION = "shg/1"


@dataclass(frozen=True)
class Info:
    rate: float                                   # default rate, Hz
    rates: tuple[float, ...]                      # rates a start may ask for
    spp: int                                      # default samples per packet
    channels: tuple[tuple[str, str, float], ...]  # (name, unit, scale per LSB)

    def text(self) -> str:
        ch = ",".join(f"{n}:{u}:{s:.9g}" for n, u, s in self.channels)
        return (f"{VERSION} rate={self.rate:g} rates={','.join(f'{r:g}' for r in self.rates)} "
                f"spp={self.spp} ch={ch}")

    @classmethod
    def parse(cls, raw: bytes) -> "Info":
        """Raises ValueError naming what is malformed."""
        text = raw.decode("utf-8", "strict").strip("\x00 \n")
        parts = text.split(" ")
        if not parts or parts[0] != VERSION:
            raise ValueError(f"info starts {parts[0][:12]!r}, expected {VERSION!r}")
        fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        try:
            rate = float(fields["rate"])
            rates = tuple(float(r) for r in fields.get("rates", fields["rate"]).split(","))
            spp = int(fields.get("spp", "1"))
            channels = []
            for entry in fields["ch"].split(","):
                name, unit, scale = entry.rsplit(":", 2)
                channels.append((name, unit, float(scale)))
        except (KeyError, ValueError) as exc:
            raise ValueError(f"info {text[:60]!r}…: {exc}") from None
        if not channels or rate <= 0 or spp < 1:
            raise ValueError(f"info {text[:60]!r}: needs rate > 0, spp ≥ 1 and at least one channel")
        return cls(rate, rates, spp, tuple(channels))


def encode_packet(seq: int, t_us: int, raw: np.ndarray) -> bytes:
    """One data packet: raw is int16 [n, C]."""
    raw = np.ascontiguousarray(raw, dtype="<i2")
    return HEADER.pack(seq & 0xFFFF, t_us & 0xFFFFFFFF, raw.shape[0]) + raw.tobytes()


def decode_packet(data: bytes, n_channels: int) -> tuple[int, int, np.ndarray]:
    """(seq, t_us, int16 [n, C]); ValueError when the length does not match the header."""
    if len(data) < HEADER.size:
        raise ValueError(f"generic packet of {len(data)} bytes, shorter than its {HEADER.size}-byte header")
    seq, t_us, n = HEADER.unpack_from(data)
    want = HEADER.size + 2 * n * n_channels
    if n == 0 or len(data) != want:
        raise ValueError(f"generic packet: {n} samples × {n_channels} channels need {want} bytes, got {len(data)}")
    return seq, t_us, np.frombuffer(data, "<i2", offset=HEADER.size).reshape(n, n_channels)


def quantize(values: np.ndarray, scales: np.ndarray) -> tuple[np.ndarray, int]:
    """Values in the channels' units → int16 (rounded, saturated) and how many saturated."""
    q = np.round(values / scales)
    clipped = int(((q > 32767) | (q < -32768)).sum())
    return np.clip(q, -32768, 32767).astype(np.int16), clipped
