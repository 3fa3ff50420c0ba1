"""`streamhar firmware tools [--install]`: which cross compilers and emulators are here, and
installing the missing ones from the system's package manager (Debian/Ubuntu apt-get).

The firmware tooling needs system packages that pip cannot install (arm-none-eabi-gcc,
riscv64-unknown-elf-gcc, qemu-system-arm, qemu-system-riscv32). `--install` runs apt-get for the
missing ones — as root, or through sudo when it exists — so the README's one-line test command
works on a fresh machine; it never guesses another package manager: elsewhere it prints the
packages and fails.
"""
from __future__ import annotations

import os
import shutil
import subprocess

from streamhar.firmware.toolchain import BOARDS, FirmwareToolError, check_tools

# Debian packages (--no-install-recommends: ~150 MB instead of ~700 MB, see
# /work/shared/notes/firmware-qemu.md); openocd and stlink-tools (~4 MB) flash real boards.
BASE_PACKAGES = ("make", "gcc", "libc6-dev")   # host gcc: the QEMU counting plugin, the host library
FLASH_PACKAGES = ("openocd", "stlink-tools")
FLASH_COMMANDS = ("openocd", "st-flash")


def status() -> dict[str, str | None]:
    """board → None when every tool is there, else the error text naming what is missing."""
    out: dict[str, str | None] = {}
    for name in BOARDS:
        try:
            check_tools(name)
            out[name] = None
        except FirmwareToolError as e:
            out[name] = str(e)
    missing = [c for c in FLASH_COMMANDS if shutil.which(c) is None]
    out["flash"] = None if not missing else (f"flashing tools not found on PATH: {', '.join(missing)} "
                                             f"(Debian: {' '.join(FLASH_PACKAGES)})")
    return out


def packages() -> list[str]:
    want = list(BASE_PACKAGES)
    for b in BOARDS.values():
        want += [b.gcc_package, b.qemu_package]
    return list(dict.fromkeys([*want, *FLASH_PACKAGES]))


def install_command() -> list[list[str]]:
    """The apt-get commands, prefixed with sudo when not root."""
    if shutil.which("apt-get") is None:
        raise FirmwareToolError("cannot install the firmware tools: no apt-get on this system; install these "
                                f"(Debian names) with your package manager: {' '.join(packages())}")
    prefix: list[str] = []
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            raise FirmwareToolError("installing the firmware tools needs root: run as root "
                                    f"`apt-get install -y --no-install-recommends {' '.join(packages())}`")
        prefix = ["sudo"]
    return [[*prefix, "apt-get", "update", "-qq"],
            [*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages()]]


def install() -> None:
    """Install what is missing (nothing to do when every board's tools are present)."""
    if all(v is None for v in status().values()):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in install_command():
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise FirmwareToolError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
    still = {b: e for b, e in status().items() if e}
    if still:
        raise FirmwareToolError("after apt-get install, still missing: " + "; ".join(still.values()))
