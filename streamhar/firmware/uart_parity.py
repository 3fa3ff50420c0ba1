"""The protocol-level parity check: the device image (firmware/app/device_main.c) in QEMU, spoken to
over its emulated UART exactly as a real board would be (docs/PROTOCOL.md), answers real
validation windows with the Python integer engine's cascade result, bit for bit: class, path,
margin and the committing width's logits. Slower than the semihosting bulk path (the emulated
UART moves ~20 KB/s), so it runs on fewer windows; it proves the framing, the shapes and the
device's own request handling, which the bulk path does not exercise.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamhar.firmware import protocol as p
from streamhar.firmware.device import Device
from streamhar.firmware.emulated import EmulatedBoard
from streamhar.firmware.generate import load_model
from streamhar.firmware.image import build_image_with_model
from streamhar.firmware.parity import Verdict
from streamhar.firmware.vectors import expected, validation_windows


@dataclass
class UartParityReport(Verdict):
    board: str
    model: str
    windows: int
    mismatched_windows: int
    first_mismatch: dict | None
    escalated: int
    model_id: int
    firmware: str
    seconds: float

    def summary(self) -> str:
        verdict = "bit-exact" if self.ok else f"{self.mismatched_windows} windows DIFFER"
        line = (f"{self.board} · {self.model} over the UART protocol: {self.windows} windows, {verdict} "
                f"(class, path, margin, logits; {self.escalated} escalated), firmware {self.firmware}, "
                f"model id {self.model_id:#010x}, in {self.seconds:.1f} s")
        return line + (f"\n  first mismatch: {self.first_mismatch}" if self.first_mismatch else "")


def expected_cascade(model, x: np.ndarray, small: int, full: int, threshold: int) -> list[tuple]:
    """(class, path, narrow margin, committing logits) per window, from the Python integer engine."""
    want = expected(model, x, small, full, threshold)
    classes, escalated, margins = want["cascade"]
    return [(int(classes[i]), p.ResultPath.ESCALATED if escalated[i] else p.ResultPath.NARROW, int(margins[i]),
             want["full" if escalated[i] else "small"][0][i]) for i in range(len(x))]


def run_uart_parity(board: str, bundle_spec: str, data_dir: str | None = None, n: int = 50,
                    build_dir: Path | None = None, x: np.ndarray | None = None) -> UartParityReport:
    t0 = time.monotonic()
    model, source = load_model(bundle_spec)
    if x is None:
        x = validation_windows(bundle_spec, data_dir, n)
    with tempfile.TemporaryDirectory(prefix="streamhar-uart-") as tmp:
        elf, gen = build_image_with_model(board, source, Path(build_dir) if build_dir else Path(tmp), "device", model)
        want = expected_cascade(model, x, gen.small, gen.full, gen.threshold)
        bad, first, escalated = 0, None, 0
        with EmulatedBoard(board, elf) as emu, Device.open(emu.port, timeout_s=30) as dev:
            v = dev.version()
            if v.model_id != gen.model_id:
                raise p.ProtocolError(p.ErrorCode.BAD_STATE, f"{board} device reports model id {v.model_id:#010x}, "
                                                             f"expected {gen.model_id:#010x}")
            for i, window in enumerate(x):
                got = dev.infer(window, p.InferMode.CASCADE, model_id=gen.model_id)
                cls, path, margin, logits = want[i]
                escalated += got.path == p.ResultPath.ESCALATED
                fields = {"class": (got.predicted, cls), "path": (int(got.path), int(path)),
                          "margin": (got.margin, margin)}
                wrong = [k for k, (g, w) in fields.items() if g != w]
                if not np.array_equal(got.logits, logits):
                    wrong.append("logits")
                if wrong:
                    bad += 1
                    first = first or {"window": i, "fields": wrong,
                                      **{k: {"got": g, "expected": w} for k, (g, w) in fields.items()}}
    return UartParityReport(board, source, len(x), bad, first, escalated, v.model_id, v.firmware_str,
                            time.monotonic() - t0)
