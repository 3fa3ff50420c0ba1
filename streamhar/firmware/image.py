"""A firmware image = the generated model + an app + the runtime, cross-built for a board.

Apps (firmware/app/): `device` — the UART protocol server (docs/PROTOCOL.md), what a real board
runs; `parity` — reads windows from a semihosting file and writes every result back, what
`streamhar firmware test` runs under QEMU; `sensor` — the protocol server in sensor mode: a
recording compiled into the image is its sensor (firmware/sensor/), it streams SAMPLES and runs
the device-tier cascade (`build_sensor_image`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from streamhar.firmware import toolchain
from streamhar.firmware.generate import GeneratedModel, generate, load_model
from streamhar.firmware.sensor import DEFAULT_SECONDS, GeneratedSensor, generate_sensor
from streamhar.firmware.widths import keep_widths
from streamhar.inference.host_c import FIRMWARE

_DEVICE = [FIRMWARE / "app" / "device_main.c", FIRMWARE / "protocol" / "har_proto.c"]
APPS = {
    "parity": [FIRMWARE / "app" / "parity_main.c"],
    "device": [*_DEVICE, FIRMWARE / "app" / "device_nostream.c"],
    "sensor": [*_DEVICE, FIRMWARE / "app" / "device_stream.c", FIRMWARE / "sensor" / "sensor_recording.c"],
}
APP_INCLUDES = {"parity": [], "device": [FIRMWARE / "protocol"],
                "sensor": [FIRMWARE / "protocol", FIRMWARE / "sensor"]}


def build_image(board: str, model_spec: str, out_dir: str | Path, app: str = "device",
                model=None, widths: list[float] | None = None) -> Path:
    """Generate the model's C data into OUT/model and build OUT/image/firmware.elf; returns the ELF.
    `widths`: only these widths in the image (streamhar/firmware/widths.py); default all."""
    elf, _ = build_image_with_model(board, model_spec, out_dir, app, model, widths)
    return elf


def build_image_with_model(board: str, model_spec: str, out_dir: str | Path, app: str = "device",
                           model=None, widths: list[float] | None = None) -> tuple[Path, GeneratedModel]:
    if app == "sensor":
        raise toolchain.FirmwareBuildError("a sensor image needs a recording: use build_sensor_image")
    out = Path(out_dir)
    model, model_spec = _model(model_spec, model, widths)
    gen = generate(model, out / "model", model_spec)
    elf = toolchain.build(board, out / "image", [*APPS[app], gen.source],
                          includes=[gen.header.parent, *APP_INCLUDES[app]])
    return elf, gen


def _model(model_spec: str, model, widths):
    if model is None:
        model, model_spec = load_model(model_spec)
    if widths:
        model = keep_widths(model, widths)
        model_spec = f"{model_spec} (widths {', '.join(map(str, model.widths))})"
    return model, model_spec


@dataclass(frozen=True)
class SensorImage:
    elf: Path
    model: GeneratedModel        # har_model.h/.c: ids, widths, threshold, buffer sizes
    sensor: GeneratedSensor      # har_sensor_data.h/.c: the recording and the input stage


def sensor_image_dir(board: str, bundle: str, sensor_spec: str, seconds: float, root: str | Path = "build/firmware") -> Path:
    """Where `streamhar firmware build --sensor` puts an image: one folder per configuration."""
    tag = lambda s: re.sub(r"[^A-Za-z0-9_.-]+", "-", s).strip("-") or "x"
    return Path(root) / board / tag(Path(bundle.split(":", 1)[-1]).stem) / f"sensor-{tag(sensor_spec)}-{seconds:g}s"


def build_sensor_image(board: str, bundle: str, sensor_spec: str, out_dir: str | Path | None = None, *,
                       seconds: float = DEFAULT_SECONDS, data_dir=None, widths: list[float] | None = None) -> Path:
    """Builds the sensor image of `bundle` on `board` whose sensor replays `sensor_spec`
    (`replay:DATASET[:SELECTOR]`, its first `seconds`); returns the ELF. Start it with
    `EmulatedBoard(board, elf, icount=False)` and talk to it with `Device.open(emu.port)`.
    `out_dir` default: build/firmware/BOARD/BUNDLE/sensor-SPEC-Ns (relative to the current folder)."""
    return build_sensor_image_with_model(board, bundle, sensor_spec, out_dir, seconds=seconds, data_dir=data_dir,
                                         widths=widths).elf


def build_sensor_image_with_model(board: str, bundle: str, sensor_spec: str, out_dir: str | Path | None = None, *,
                                  seconds: float = DEFAULT_SECONDS, data_dir=None, model=None,
                                  widths: list[float] | None = None) -> SensorImage:
    """`build_sensor_image`, also returning what was generated (the tests' reference)."""
    out = Path(out_dir) if out_dir is not None else sensor_image_dir(board, bundle, sensor_spec, seconds)
    model, source = _model(bundle, model, widths)
    gen = generate(model, out / "model", source)
    sensor = generate_sensor(model, sensor_spec, out / "sensor", seconds=seconds, data_dir=data_dir)
    try:
        elf = toolchain.build(board, out / "image", [*APPS["sensor"], gen.source, sensor.source],
                              includes=[gen.header.parent, sensor.header.parent, *APP_INCLUDES["sensor"]])
    except toolchain.FirmwareBuildError as e:
        if "RAM overflow" not in str(e):
            raise
        b = toolchain.get_board(board)
        c, length = model.arch["in_channels"], model.arch["window"]
        raise toolchain.FirmwareBuildError(
            f"the sensor image of {source} does not fit {b.name}'s {b.ram_bytes // 1024} KB of RAM: sensor mode adds "
            f"the device-tier window ({c} × {length} = {c * length:,} B int8) and a SAMPLES batch "
            f"({sensor.batch} × {c} int16) to the protocol server, whose receive buffer already holds one "
            f"{c * length:,} B window and whose network needs {gen.scratch_bytes - gen.input_len:,} B of scratch. "
            f"Use a board with more RAM (stm32f4: {toolchain.BOARDS['stm32f4'].ram_bytes // 1024} KB) or a model "
            f"with a smaller window. The linker said:\n{e}") from None
    return SensorImage(elf, gen, sensor)
