"""A firmware image = the generated model + an app + the runtime, cross-built for a board.

Apps (firmware/app/): `device` — the UART protocol server (docs/PROTOCOL.md), what a real board
runs; `parity` — reads windows from a semihosting file and writes every result back, what
`streamhar firmware test` runs under QEMU.
"""
from __future__ import annotations

from pathlib import Path

from streamhar.firmware import toolchain
from streamhar.firmware.generate import GeneratedModel, generate, load_model
from streamhar.firmware.widths import keep_widths
from streamhar.inference.host_c import FIRMWARE

APPS = {
    "parity": [FIRMWARE / "app" / "parity_main.c"],
    "device": [FIRMWARE / "app" / "device_main.c", FIRMWARE / "protocol" / "har_proto.c"],
}
APP_INCLUDES = {"parity": [], "device": [FIRMWARE / "protocol"]}


def build_image(board: str, model_spec: str, out_dir: str | Path, app: str = "device",
                model=None, widths: list[float] | None = None) -> Path:
    """Generate the model's C data into OUT/model and build OUT/image/firmware.elf; returns the ELF.
    `widths`: only these widths in the image (streamhar/firmware/widths.py); default all."""
    elf, _ = build_image_with_model(board, model_spec, out_dir, app, model, widths)
    return elf


def build_image_with_model(board: str, model_spec: str, out_dir: str | Path, app: str = "device",
                           model=None, widths: list[float] | None = None) -> tuple[Path, GeneratedModel]:
    out = Path(out_dir)
    if model is None:
        model, model_spec = load_model(model_spec)
    if widths:
        model = keep_widths(model, widths)
        model_spec = f"{model_spec} (widths {', '.join(map(str, model.widths))})"
    gen = generate(model, out / "model", model_spec)
    elf = toolchain.build(board, out / "image", [*APPS[app], gen.source],
                          includes=[gen.header.parent, *APP_INCLUDES[app]])
    return elf, gen
