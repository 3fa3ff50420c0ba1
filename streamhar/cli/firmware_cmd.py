"""`streamhar firmware generate|build|size|test|bench`: the network on microcontrollers (docs/FIRMWARE.md)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from streamhar.cli.main import add_data_dir_option

DEFAULT_BUNDLES = ("bundled:usc-had", "bundled:dsads")
BOARDS = ("stm32f4", "riscv32")


def register(sub) -> None:
    p = sub.add_parser("firmware", help="generate, build, size and parity-test the firmware (STM32F4, RV32IMC)")
    fw = p.add_subparsers(dest="firmware_command", required=True, metavar="ACTION")

    tl = fw.add_parser("tools", help="check (and with --install, install) the cross compilers and QEMU")
    tl.add_argument("--install", action="store_true", help="install missing tools with apt-get (root or sudo)")
    tl.set_defaults(func=cmd_tools)

    g = fw.add_parser("generate", help="write the model as C data (har_model.h/.c) for the firmware")
    g.add_argument("model", help="bundle file, bundled:NAME or a .shm file")
    g.add_argument("--out", type=Path, help="folder to write into (default: build/firmware/model/NAME)")
    g.set_defaults(func=cmd_generate)

    b = fw.add_parser("build", help="build a firmware image for a board")
    _board_options(b, default_bundle=True)
    b.add_argument("--app", choices=("device", "parity"), default="device",
                   help="device: the UART protocol server (default); parity: the semihosting parity image")
    _widths_option(b)
    add_sensor_options(b)
    b.set_defaults(func=cmd_build)

    s = fw.add_parser("size", help="flash and RAM of a firmware image, per section")
    _board_options(s, default_bundle=True)
    s.add_argument("--app", choices=("device", "parity"), default="device")
    _widths_option(s)
    add_sensor_options(s)
    s.add_argument("--json", action="store_true", help="print the sizes as JSON")
    s.set_defaults(func=cmd_size)

    t = fw.add_parser("test", help="run the firmware under QEMU on validation windows and compare it bit for bit "
                                   "with the Python integer engine")
    _board_options(t, default_bundle=False)
    t.add_argument("--windows", type=int, default=500, help="validation windows per model (default 500; 0 = all)")
    t.add_argument("--uart-windows", type=int, default=50,
                   help="windows sent through the UART protocol to the device image (default 50; 0 = none)")
    t.add_argument("--threshold", type=int, help="cascade threshold (integer logit margin; default: the model's)")
    t.add_argument("--json", action="store_true", help="print the reports as JSON")
    add_data_dir_option(t)
    t.set_defaults(func=cmd_test)

    bn = fw.add_parser("bench", help="executed instructions per layer and per inference under QEMU (exact), "
                                     "ternary vs float32 and the cascade")
    bn.add_argument("--board", choices=BOARDS, action="append", help="repeatable (default: both boards)")
    bn.add_argument("--bundle", action="append", metavar="MODEL",
                    help="bundle file or bundled:NAME (repeatable; default: both bundled models)")
    bn.add_argument("--windows", type=int, default=100,
                    help="validation windows for the whole-network and cascade counts (default 100; 0 = all)")
    bn.add_argument("--float-windows", type=int, default=2,
                    help="of those, how many the float32 baseline runs (default 2: soft float on RV32 is slow)")
    bn.add_argument("--threshold", type=int, help="cascade threshold (integer logit margin; default: the model's)")
    bn.add_argument("--out", type=Path, default=Path("build/firmware"), help="build folder (default: build/firmware)")
    bn.add_argument("--json", action="store_true", help="print the reports as JSON")
    bn.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    add_data_dir_option(bn)
    bn.set_defaults(func=cmd_bench)


def _board_options(p, default_bundle: bool) -> None:
    p.add_argument("--board", choices=BOARDS, required=True)
    p.add_argument("--bundle", action="append", metavar="MODEL",
                   help="bundle file or bundled:NAME (repeatable; default: "
                        + ("bundled:usc-had" if default_bundle else "both bundled models") + ")")
    p.add_argument("--out", type=Path, default=Path("build/firmware"), help="build folder (default: build/firmware)")


def _widths_option(p) -> None:
    p.add_argument("--widths", type=lambda v: [float(w) for w in v.split(",")], metavar="W[,W...]",
                   help="only these widths in the image, e.g. 0.25 (a narrow-only device) or 0.25,1.0 "
                        "(the cascade's two); default: every width of the model")


def add_sensor_options(p) -> None:
    """--sensor, --sensor-seconds, --data-dir: a sensor image (shared with `streamhar flash`)."""
    from streamhar.firmware import DEFAULT_SENSOR_SECONDS as DEFAULT_SECONDS

    p.add_argument("--sensor", metavar="replay:DATASET[:SELECTOR]",
                   help="build a sensor image: the device image whose sensor replays this recording (its first "
                        "--sensor-seconds), streams SAMPLES and runs the device-tier cascade (docs/FIRMWARE.md)")
    p.add_argument("--sensor-seconds", type=float, default=DEFAULT_SECONDS, metavar="N",
                   help=f"seconds of the recording compiled into a sensor image (default {DEFAULT_SECONDS:g}; it loops)")
    add_data_dir_option(p)


def _name(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(spec.split(":", 1)[-1]).stem) or "model"


def cmd_tools(args) -> int:
    from streamhar.firmware import setup_tools

    if args.install:
        setup_tools.install()
    missing = 0
    for board, problem in setup_tools.status().items():
        print(f"{board}: {'ready' if problem is None else problem}")
        missing += problem is not None
    return 1 if missing else 0


def cmd_generate(args) -> int:
    from streamhar.firmware.generate import generate, load_model

    model, source = load_model(args.model)
    out = args.out or Path("build/firmware/model") / _name(args.model)
    gen = generate(model, out, source)
    print(f"wrote {gen.header} and {gen.source}: model id {gen.model_id:#010x}, scratch {gen.scratch_bytes:,} B "
          f"(window {gen.input_len} + 2 × {gen.act_len} activations + {gen.acc_len} int32 accumulators)")
    return 0


def _build(args, spec: str):
    from streamhar.firmware.image import build_image, build_sensor_image, sensor_image_dir

    if args.sensor:
        if args.app != "device":
            from streamhar.errors import UsageError
            raise UsageError(f"--sensor builds the device image in sensor mode; --app {args.app} has no sensor")
        out = sensor_image_dir(args.board, spec, args.sensor, args.sensor_seconds, args.out)
        if args.widths:
            out = out.with_name(out.name + "-w" + "-".join(map(str, args.widths)))
        return build_sensor_image(args.board, spec, args.sensor, out, seconds=args.sensor_seconds,
                                  data_dir=args.data_dir, widths=args.widths)
    tag = args.app + ("-w" + "-".join(map(str, args.widths)) if args.widths else "")
    return build_image(args.board, spec, args.out / args.board / _name(spec) / tag, app=args.app, widths=args.widths)


def cmd_build(args) -> int:
    from streamhar.firmware import toolchain

    for spec in args.bundle or DEFAULT_BUNDLES[:1]:
        elf = _build(args, spec)
        size = toolchain.size(elf)
        what = f"sensor image, {args.sensor} ({args.sensor_seconds:g} s)" if args.sensor else f"{args.app} image"
        print(f"{elf}: {size['flash']:,} B flash of {size['flash_limit']:,}, {size['ram']:,} B RAM of "
              f"{size['ram_limit']:,} ({args.board}, {spec}, {what})")
    return 0


def cmd_size(args) -> int:
    from streamhar.firmware import toolchain

    reports = {}
    for spec in args.bundle or DEFAULT_BUNDLES[:1]:
        reports[spec] = toolchain.size(_build(args, spec))
    if args.json:
        print(json.dumps(reports, indent=2))
        return 0
    for spec, size in reports.items():
        which = f"widths {', '.join(map(str, args.widths))}" if args.widths else "all widths"
        what = f"sensor image, {args.sensor} ({args.sensor_seconds:g} s)" if args.sensor else f"{args.app} image"
        print(f"{args.board} · {spec} ({what}, {which}): flash {size['flash']:,} B of {size['flash_limit']:,}, "
              f"RAM {size['ram']:,} B of {size['ram_limit']:,}")
        for name, n in size["sections"].items():
            print(f"  {name:<16} {n:>8,} B")
    return 0


def cmd_test(args) -> int:
    from streamhar.firmware.parity import run_parity
    from streamhar.firmware.uart_parity import run_uart_parity

    reports = []
    for spec in args.bundle or DEFAULT_BUNDLES:
        r = run_parity(args.board, spec, args.data_dir, args.windows or None, args.threshold,
                       build_dir=args.out / args.board / _name(spec) / "parity")
        reports.append(r)
        if not args.json:
            print(r.summary(), flush=True)
        if args.uart_windows:
            u = run_uart_parity(args.board, spec, args.data_dir, args.uart_windows,
                                build_dir=args.out / args.board / _name(spec) / "device")
            reports.append(u)
            if not args.json:
                print(u.summary(), flush=True)
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    return 0 if all(r.ok for r in reports) else 1


def cmd_bench(args) -> int:
    from streamhar.firmware.bench import run_bench

    reports = []
    for board in args.board or BOARDS:
        for spec in args.bundle or DEFAULT_BUNDLES:
            r = run_bench(board, spec, args.data_dir, args.windows or None, args.float_windows, args.threshold,
                          build_dir=args.out / board / _name(spec) / "bench")
            reports.append(r)
            if not args.json:
                print(r.summary() + "\n", flush=True)
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], indent=2))
    return 1 if args.strict and not all(r.ok for r in reports) else 0
