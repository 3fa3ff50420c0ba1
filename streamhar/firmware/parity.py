"""`streamhar firmware test`: the firmware under QEMU against the Python integer engine, bit for bit.

Builds the parity image (firmware/app/parity_main.c + the generated model) for a board, writes N
real validation windows of the bundle into a semihosting file, boots QEMU once, and compares
every window's logits and per-layer checksums at the small and the full width, and the
cascade's class, path and margin, with `IntegerEngine.trace` and `Cascade.process`. A mismatch
names the window and the first layer whose checksum differs (the layer to debug), not only the
logits. The windows are spread evenly over the validation split (deterministic: the same N
windows every run), so every recording and activity is represented.
"""
from __future__ import annotations

import struct
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamhar.errors import StreamharError
from streamhar.firmware import toolchain
from streamhar.firmware.vectors import expected, validation_windows
from streamhar.firmware.generate import load_model
from streamhar.firmware.image import build_image_with_model
from streamhar.firmware.widths import keep_widths

MAGIC_IN, MAGIC_OUT = 0x57524148, 0x52524148


class ParityError(StreamharError):
    """The parity image could not run, or its output is malformed."""


class Verdict:
    """What every parity report says: ok when no window differed, and itself as JSON-ready data."""
    mismatched_windows: int

    @property
    def ok(self) -> bool:
        return self.mismatched_windows == 0

    def as_dict(self) -> dict:
        return {**self.__dict__, "ok": self.ok}


@dataclass
class ParityReport(Verdict):
    board: str
    model: str
    windows: int
    threshold: int
    mismatched_windows: int = 0
    first_mismatch: dict | None = None
    escalated: int = 0
    instructions: dict = field(default_factory=dict)   # mean executed instructions per inference
    flash_bytes: int = 0
    ram_bytes: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        verdict = "bit-exact" if self.ok else f"{self.mismatched_windows} windows DIFFER"
        lines = [f"{self.board} · {self.model}: {self.windows} windows, {verdict} "
                 f"(logits and layer checksums at both widths, cascade class/path/margin; "
                 f"{self.escalated} escalated at threshold {self.threshold}) in {self.seconds:.1f} s",
                 f"  image: {self.flash_bytes:,} B flash, {self.ram_bytes:,} B RAM"]
        if self.instructions:
            lines.append("  instructions per inference: " + ", ".join(f"{k} {v:,.0f}" for k, v in
                                                                        self.instructions.items()))
        if self.first_mismatch:
            lines.append(f"  first mismatch: {self.first_mismatch}")
        return "\n".join(lines)


def parse_results(blob: bytes, n: int, n_classes: int, n_blocks: int, model_id: int, where: str) -> dict:
    if len(blob) < 16:
        raise ParityError(f"{where}: results file has {len(blob)} bytes, expected a 16-byte header")
    magic, mid, k, b = struct.unpack_from("<4I", blob)
    if magic != MAGIC_OUT or (k, b) != (n_classes, n_blocks):
        raise ParityError(f"{where}: results header {magic:#x}/{k} classes/{b} blocks, expected "
                          f"{MAGIC_OUT:#x}/{n_classes}/{n_blocks}")
    if mid != model_id:
        raise ParityError(f"{where}: the image reports model id {mid:#010x}, expected {model_id:#010x} "
                          "(built from another model?)")
    width_words = n_classes + n_blocks + 1
    words = 2 * width_words + 5
    body = np.frombuffer(blob, np.uint32, offset=16)
    if body.size != n * words:
        raise ParityError(f"{where}: results hold {body.size} words, expected {n} windows × {words}")
    rec = body.reshape(n, words)
    out = {}
    for tag, at in (("small", 0), ("full", width_words)):
        out[tag] = (rec[:, at:at + n_classes].view(np.int32), rec[:, at + n_classes:at + n_classes + n_blocks],
                    rec[:, at + width_words - 1])
    c = rec[:, 2 * width_words:]
    margin = (c[:, 2].astype(np.uint64) | (c[:, 3].astype(np.uint64) << np.uint64(32))).view(np.int64)
    out["cascade"] = (c[:, 0].astype(np.int64), c[:, 1].astype(np.int64), margin, c[:, 4])
    return out


def compare(got: dict, want: dict) -> tuple[int, dict | None]:
    """(windows with any difference, description of the first one: window, width, first layer)."""
    bad = np.zeros(len(want["cascade"][0]), bool)
    first = None
    for tag in ("small", "full"):
        (g_logits, g_sums, _), (w_logits, w_sums) = got[tag], want[tag]
        layer_bad, logit_bad = g_sums != w_sums, (g_logits != w_logits).any(axis=1)
        bad |= layer_bad.any(axis=1) | logit_bad
        rows = np.flatnonzero(layer_bad.any(axis=1) | logit_bad)
        if rows.size and (first is None or rows[0] < first["window"]):
            i = int(rows[0])
            layers = np.flatnonzero(layer_bad[i])
            first = {"window": i, "width": tag,
                     "first_layer": f"block {int(layers[0])}" if layers.size else "fc/logits",
                     "logits": g_logits[i].tolist(), "expected_logits": w_logits[i].tolist()}
    for name, g, w in zip(("class", "path", "margin"), got["cascade"][:3], want["cascade"]):
        rows = np.flatnonzero(g != w)
        bad[rows] = True
        if rows.size and (first is None or rows[0] < first["window"]):
            first = {"window": int(rows[0]), "width": "cascade", "field": name, "got": int(g[rows[0]]),
                     "expected": int(w[rows[0]])}
    return int(bad.sum()), first


def run_image(board: str, elf: Path, x: np.ndarray, threshold: int, model, model_id: int,
              timeout_s: float | None = None) -> dict:
    """Boot the parity image `elf` on windows x at `threshold`; its parsed results (see parse_results)."""
    with tempfile.TemporaryDirectory(prefix="streamhar-parity-") as tmp:
        run = Path(tmp)
        (run / "windows.bin").write_bytes(struct.pack("<IIq", MAGIC_IN, len(x), threshold)
                                          + np.ascontiguousarray(x, np.int8).tobytes())
        # ~20 M instructions per window at a few hundred MIPS, and a generous margin for a busy machine
        limit = timeout_s or 60 + 0.5 * len(x)
        rc, _, err = toolchain.run_qemu(board, elf, cwd=run, timeout_s=limit)
        where = f"{board} parity image ({elf})"
        if rc != 0:
            raise ParityError(f"{where} exited with status {rc} (10 open, 11 read, 12 run, 13 write failed)\n"
                              f"{err.strip()[-2000:]}")
        out = run / "results.bin"
        if not out.exists():
            raise ParityError(f"{where} wrote no results.bin")
        return parse_results(out.read_bytes(), len(x), model.arch["n_classes"], len(model.arch["channels"]),
                             model_id, where)


def run_parity(board: str, bundle_spec: str, data_dir: str | None = None, n: int | None = 500,
               threshold: int | None = None, build_dir: Path | None = None, timeout_s: float | None = None,
               x: np.ndarray | None = None, widths: list[float] | None = None) -> ParityReport:
    """Build, boot, feed, compare. `x`: int8 windows to use instead of the validation split;
    `widths`: an image holding only these widths (compared with the cut model)."""
    t0 = time.monotonic()
    toolchain.check_tools(board)
    model, source = load_model(bundle_spec)
    if widths:
        model = keep_widths(model, widths)
    if x is None:
        x = validation_windows(bundle_spec, data_dir, n)
    with tempfile.TemporaryDirectory(prefix="streamhar-parity-") as tmp:
        work = Path(build_dir) if build_dir else Path(tmp) / board
        elf, gen = build_image_with_model(board, source, work, "parity", model)
        th = gen.threshold if threshold is None else int(threshold)
        got = run_image(board, elf, x, th, model, gen.model_id, timeout_s)
        size = toolchain.size(elf)
    want = expected(model, x, gen.small, gen.full, th)
    bad, first = compare(got, want)
    report = ParityReport(board, source, len(x), th, bad, first, int(want["cascade"][1].sum()),
                          flash_bytes=int(size["flash"]), ram_bytes=int(size["ram"]))
    counts = {"small": got["small"][2], "full": got["full"][2], "cascade": got["cascade"][3]}
    if all(int(c.max()) > 0 for c in counts.values()):
        report.instructions = {k: float(v.mean()) for k, v in counts.items()}
    report.seconds = time.monotonic() - t0
    return report
