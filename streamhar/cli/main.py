"""`streamhar` command line: one sub-command per module in this package."""
from __future__ import annotations

import argparse
import sys

from streamhar import __version__
from streamhar.errors import StreamharError


def build_parser() -> argparse.ArgumentParser:
    from streamhar.cli import (ctl_cmd, data_cmd, demo_cmd, devices_cmd, eval_cmd, export_cmd, firmware_cmd, flash_cmd,
                               replay_cmd, run_cmd, stage_cmd, sweep_cmd, train_cmd)

    parser = argparse.ArgumentParser(
        prog="streamhar", description="Real-time human activity recognition from wearable sensors.")
    parser.add_argument("--version", action="version", version=f"streamhar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_cmd.register(sub)
    replay_cmd.register(sub)
    train_cmd.register(sub)
    eval_cmd.register(sub)
    sweep_cmd.register(sub)
    export_cmd.register(sub)
    run_cmd.register(sub)
    stage_cmd.register(sub)
    ctl_cmd.register(sub)
    firmware_cmd.register(sub)
    flash_cmd.register(sub)
    devices_cmd.register(sub)
    demo_cmd.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except StreamharError as exc:
        print(f"streamhar: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("streamhar: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:   # `streamhar ... | head`: the reader left, nothing to report
        return 0


def add_data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder holding the data sets (default: $STREAMHAR_DATA, then replay_data/)")
