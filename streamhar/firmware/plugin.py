"""Exact instruction counts under QEMU: the insn_count TCG plugin (firmware/tools/qemu_icount).

`plugin_library()` compiles the plugin with the host C compiler into a cache folder under
build/ (once; again only when its source changes). `run_counted()` runs a firmware image with
it and returns, besides QEMU's result, the instruction count at every call of `board_mark` in
program order: the difference of two marks is the exact number of instructions executed
between the two calls, identical run to run (with `-icount shift=0`), on both boards.

Nothing is downloaded: Debian ships no qemu-plugin.h, so the plugin declares the few QEMU entry
points it calls itself (see the header comment of insn_count.c). It needs only `gcc` and the C
library headers (Debian: gcc, libc6-dev), and a QEMU built with plugin support (Debian's is).
"""
from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from streamhar.firmware import toolchain
from streamhar.firmware.toolchain import FIRMWARE, Board, FirmwareError, FirmwareRunError, FirmwareToolError

SOURCE = FIRMWARE / "tools" / "qemu_icount" / "insn_count.c"
CACHE = FIRMWARE.parent / "build" / "qemu_icount"
HOST_CC = "gcc"
CFLAGS = ("-shared", "-fPIC", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden")
APT_HOST_CC = "apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev"


class PluginError(FirmwareError):
    """The counting plugin's output is missing or does not match what the image did."""


class CountedRun(NamedTuple):
    returncode: int
    stdout: bytes
    stderr: str
    marks: list[int]      # instructions executed at each board_mark call, in program order
    total: int            # instructions executed in the whole run


def plugin_library(cache_dir: Path | str | None = None) -> Path:
    """The compiled plugin (a host shared library), built on first use. The file name carries a
    hash of the source and flags, so a changed source is rebuilt and never confused with an old
    build; the build goes to a temporary name first, so concurrent callers are safe."""
    if shutil.which(HOST_CC) is None:
        raise FirmwareToolError(f"the host C compiler {HOST_CC!r} (to build the instruction-counting QEMU plugin "
                                f"{SOURCE}) is not on PATH. Install with (as root): {APT_HOST_CC}")
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(CFLAGS).encode()).hexdigest()[:12]
    out_dir = Path(cache_dir) if cache_dir is not None else CACHE
    lib = out_dir / f"libinsn_count-{digest}.so"
    if lib.exists():
        return lib
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
    os.close(fd)
    cmd = [HOST_CC, *CFLAGS, "-o", tmp, str(SOURCE)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise FirmwareToolError(f"building the QEMU counting plugin failed (exit {proc.returncode}): "
                                    f"{shlex.join(cmd)}\n{proc.stderr.strip()}\n(needs gcc and the C library "
                                    f"headers: {APT_HOST_CC})")
        os.replace(tmp, lib)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def parse_marks(text: str, where: str) -> tuple[list[int], int]:
    """(marks, total) from the plugin's output file (format in insn_count.c)."""
    lines = text.splitlines()
    if not lines or lines[0] != "insn_count 1" or not lines[-1].startswith("total "):
        raise PluginError(f"{where}: not a complete insn_count output (expected 'insn_count 1' ... 'total N'; "
                          f"did QEMU exit normally?)")
    marks, total = [], int(lines[-1].split()[1])
    for line in lines[1:-1]:
        key, _, value = line.partition(" ")
        if key != "mark":
            raise PluginError(f"{where}: {line}")
        marks.append(int(value))
    return marks, total


def run_counted(board: str | Board, elf: Path | str, *, cwd: Path | str, timeout_s: float,
                mark_symbol: str = "board_mark", extra: Iterable[str] = (), plugin: Path | None = None) -> CountedRun:
    """Runs an image to its exit under `-icount shift=0` with the counting plugin watching
    `mark_symbol`'s first instruction. The plugin's output goes to a file in `cwd`."""
    b = toolchain.get_board(board)
    lib = Path(plugin) if plugin is not None else plugin_library()
    mark = toolchain.symbol_address(elf, mark_symbol, b)
    out = Path(cwd).resolve() / "insn_count.txt"
    for p in (lib, out):
        if "," in str(p):   # QEMU's option parser splits -plugin's value at commas
            raise FirmwareRunError(f"QEMU's -plugin option cannot take a path with a comma: {p}")
    out.unlink(missing_ok=True)
    r = toolchain.run_qemu(b, elf, cwd=cwd, timeout_s=timeout_s, icount=True,
                           extra=["-plugin", f"{lib},mark={mark:#x},out={out}", *extra])
    if not out.exists():
        hint = r.stderr.strip()[-2000:]
        if "plugin" in hint.lower():
            raise FirmwareToolError(f"{b.qemu} could not load the counting plugin {lib} (a QEMU built without "
                                    f"plugin support, or another plugin API version?):\n{hint}")
        raise PluginError(f"{b.qemu} ({elf}) exited with status {r.returncode} and the counting plugin wrote "
                          f"no {out}:\n{hint}")
    marks, total = parse_marks(out.read_text(), str(out))
    return CountedRun(r.returncode, r.stdout, r.stderr, marks, total)
