"""`streamhar flash --board stm32f4|riscv32|qemu-stm32f4|qemu-riscv32`: build the device firmware
for a bundle and put it on a board (streamhar/firmware/flash.py), or into an emulated one.
`--sensor replay:DATASET[:SELECTOR]` builds the sensor image instead (its sensor replays that
recording; docs/FIRMWARE.md): in QEMU it runs without -icount, so it streams at the real rate."""
from __future__ import annotations

import time
from pathlib import Path

BOARDS = ("stm32f4", "riscv32", "qemu-stm32f4", "qemu-riscv32")


def register(sub) -> None:
    p = sub.add_parser("flash", help="build the device firmware and flash it to a board (or an emulated one)")
    p.add_argument("--board", choices=BOARDS, required=True,
                   help="a real board, or qemu-BOARD: 'flash' into QEMU and start it with its UART on a pty")
    p.add_argument("--bundle", default="bundled:usc-had", metavar="MODEL",
                   help="bundle file or bundled:NAME (default: bundled:usc-had)")
    p.add_argument("--image", type=Path, help="flash this ELF instead of building one")
    p.add_argument("--probe", choices=("stlink", "cmsis-dap"), default="stlink", help="SWD probe (default stlink)")
    p.add_argument("--tool", choices=("openocd", "st-flash", "pyocd", "stm32loader"),
                   help="flashing tool (default: openocd; stm32loader when --port is given)")
    p.add_argument("--port", help="serial port of the STM32 UART bootloader (with stm32loader)")
    p.add_argument("--dry-run", action="store_true", help="print the exact command instead of running it")
    p.add_argument("--duration", type=float,
                   help="qemu boards: seconds to keep the emulated board running (default: until Ctrl-C)")
    p.add_argument("--out", type=Path, default=Path("build/firmware"), help="build folder (default: build/firmware)")
    from streamhar.cli.firmware_cmd import add_sensor_options
    add_sensor_options(p)
    p.set_defaults(func=cmd_flash)


def _image(args, board: str) -> Path:
    if args.image:
        return args.image
    from streamhar.cli.firmware_cmd import _name
    from streamhar.firmware.image import build_image, build_sensor_image, sensor_image_dir

    if args.sensor:
        return build_sensor_image(board, args.bundle, args.sensor,
                                  sensor_image_dir(board, args.bundle, args.sensor, args.sensor_seconds, args.out),
                                  seconds=args.sensor_seconds, data_dir=args.data_dir)
    return build_image(board, args.bundle, args.out / board / _name(args.bundle) / "device", app="device")


def cmd_flash(args) -> int:
    from streamhar.firmware import flash

    if args.board.startswith("qemu-"):
        return _flash_emulated(args, args.board.removeprefix("qemu-"))
    elf = _image(args, args.board) if not args.dry_run or args.image else None
    if elf is None:   # a dry run shows the plan without building (the image's path is where it would be)
        from streamhar.cli.firmware_cmd import _name
        elf = args.out / args.board / _name(args.bundle) / "device" / "image" / "firmware.elf"
    plan = flash.plan(args.board, elf, args.tool, args.probe, args.port)
    if args.dry_run:
        print(plan)
        return 0
    print(f"flashing {elf} with {plan.tool}: {plan}", flush=True)
    flash.run(plan)
    print(f"flashed {args.board}")
    return 0


def _flash_emulated(args, board: str) -> int:
    from streamhar.firmware.device import Device, DeviceError
    from streamhar.firmware.emulated import EmulatedBoard

    elf = _image(args, board)
    icount = not args.sensor       # a sensor is paced by the device clock: it must follow the wall clock
    if args.dry_run:
        from streamhar.firmware import toolchain
        print(" ".join(toolchain.qemu_command(board, elf, serial="pty", icount=icount)))
        return 0
    with EmulatedBoard(board, elf, icount=icount) as emu:
        with Device.open(emu.port) as dev:
            v = dev.version()
            try:
                s = dev.sensor()
            except DeviceError:        # an image from before SENSOR_REQ (--image)
                s = None
        print(f"flashed {elf} into an emulated {board}: serial port {emu.port} — firmware {v.firmware_str}, "
              f"board {v.board}, model id {v.model_id:#010x}, {v.in_channels}×{v.window} windows, "
              f"{v.n_classes} classes, threshold {v.threshold}", flush=True)
        if s is not None and s.source:
            print(f"sensor: {s.source.name.lower()} ({args.sensor or 'from the image'}), {len(s.channels)} channels "
                  f"at {s.rate_hz:g} Hz, device-tier windows every {s.stride} samples; SET_STREAM starts it",
                  flush=True)
        try:
            end = None if args.duration is None else time.monotonic() + args.duration
            while emu.running and (end is None or time.monotonic() < end):
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        if not emu.running:
            print(f"the emulated {board} stopped: {emu.stop().strip()[-500:]}")
            return 1
    return 0
