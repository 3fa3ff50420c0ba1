"""`streamhar flash`: put a firmware image on a board with the tool the user has.

Real boards (the plan is printed by `--dry-run`, exactly as it would run):
- stm32f4 through an SWD probe: openocd (default; `--probe stlink|cmsis-dap`), st-flash (ST-Link
  only) or pyocd; or through the chip's UART bootloader (AN3155, BOOT0 high) with stm32loader
  (`--tool stm32loader --port /dev/ttyUSB0`).
- riscv32 (HiFive1-class boards, the image is linked for 0x20400000): openocd with the board's
  on-board J-Link/FTDI probe (`board/sifive-hifive1-revb.cfg`).
Every tool runs under a timeout and its output is read for the usual "no probe" messages, so a
missing probe is a clear error within seconds, never a hang (pyocd gets `-W`, --no-wait, for the
same reason: `pyocd flash` without it waits for ever for a probe).

Emulated boards (`qemu-stm32f4`, `qemu-riscv32`): the image is "flashed" into QEMU, which is
started with its UART on a pseudo-terminal, so the whole flow — build, flash, talk to the device
over a serial port — is testable here (see streamhar/firmware/emulated.py).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from streamhar.errors import UsageError
from streamhar.firmware.toolchain import FirmwareError, FirmwareToolError

TOOLS = ("openocd", "st-flash", "pyocd", "stm32loader")
PROBES = ("stlink", "cmsis-dap")
FLASH_TIMEOUT_S = 120          # a real 40 KB write takes a few seconds; the limit only stops a hang

# What each tool prints when nothing is attached (checked on this machine for openocd and st-flash).
NO_PROBE = re.compile(r"open failed|no device found|Couldn't find any ST-Link|unable to find a matching|"
                      r"No available debug probes|Error: unable to open|No connected debug probes|"
                      r"could not open port|No such file or directory: '/dev/|Failed to init|"
                      r"Can't find a (probe|device)|FileNotFoundError|SerialException", re.I)

INSTALL_HINT = {
    "openocd": "apt-get install -y --no-install-recommends openocd",
    "st-flash": "apt-get install -y --no-install-recommends stlink-tools",
    "pyocd": "pip install pyocd (and `pyocd pack install stm32f405rg`: pyocd has no built-in STM32F405 target)",
    "stm32loader": "pip install stm32loader",
}


class FlashError(FirmwareError):
    """Flashing failed: no probe, no tool, or the tool reported an error."""


@dataclass(frozen=True)
class FlashPlan:
    board: str
    tool: str
    command: list[str]

    def __str__(self) -> str:
        return shlex.join(self.command)


def plan(board: str, image: Path, tool: str | None = None, probe: str = "stlink", port: str | None = None) -> FlashPlan:
    """The exact command that flashes `image` (the ELF; .bin beside it for the raw-binary tools)."""
    image = Path(image)
    binary = image.with_suffix(".bin")
    if probe not in PROBES:
        raise UsageError(f"unknown probe {probe!r}: expected one of {', '.join(PROBES)}")
    if board == "stm32f4":
        tool = tool or ("stm32loader" if port else "openocd")
        if tool == "openocd":
            iface = {"stlink": "interface/stlink.cfg", "cmsis-dap": "interface/cmsis-dap.cfg"}[probe]
            cmd = ["openocd", "-f", iface, "-f", "target/stm32f4x.cfg",
                   "-c", f"program {image} verify reset exit"]
        elif tool == "st-flash":
            if probe != "stlink":
                raise UsageError("st-flash talks to ST-Link probes only; use --tool openocd for cmsis-dap")
            cmd = ["st-flash", "--reset", "write", str(binary), "0x08000000"]
        elif tool == "pyocd":
            cmd = ["pyocd", "flash", "-W", "--target", "stm32f405rg", "--erase", "sector", str(image)]
        elif tool == "stm32loader":
            if not port:
                raise UsageError("stm32loader flashes over the chip's UART bootloader: give --port (e.g. /dev/ttyUSB0)")
            cmd = ["stm32loader", "--port", port, "--erase", "--write", "--verify",
                   "--go-address", "0x08000000", str(binary)]
        else:
            raise UsageError(f"unknown flashing tool {tool!r}: expected one of {', '.join(TOOLS)}")
    elif board == "riscv32":
        tool = tool or "openocd"
        if tool != "openocd":
            raise UsageError(f"riscv32 boards are flashed with openocd, not {tool}")
        cmd = ["openocd", "-f", "board/sifive-hifive1-revb.cfg", "-c", f"program {image} verify reset exit"]
    else:
        raise UsageError(f"unknown board {board!r} to flash: expected stm32f4, riscv32, qemu-stm32f4 or qemu-riscv32")
    return FlashPlan(board, tool, cmd)


def run(p: FlashPlan, timeout_s: float = FLASH_TIMEOUT_S) -> str:
    """Runs the plan; returns the tool's output, or raises FlashError with the reason."""
    if shutil.which(p.command[0]) is None:
        raise FirmwareToolError(f"{p.command[0]} is not installed: {INSTALL_HINT[p.tool]}")
    try:
        proc = subprocess.run(p.command, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise FlashError(f"{p} did not finish within {timeout_s:g} s (stopped); output so far:\n"
                         f"{(e.stdout or '')[-1000:]}{(e.stderr or '')[-1000:]}") from None
    output = (proc.stdout or "") + (proc.stderr or "")
    if proc.returncode != 0:
        if NO_PROBE.search(output):
            what = f"serial port {p.command[2]}" if p.tool == "stm32loader" else "debug probe"
            raise FlashError(f"no {what} found for {p.board}: `{p}` exited {proc.returncode}. Is the board "
                             f"connected (and, for a UART bootloader, BOOT0 high)?\n{output.strip()[-800:]}")
        raise FlashError(f"`{p}` failed (exit {proc.returncode}):\n{output.strip()[-1500:]}")
    return output
