"""Cross builds of the firmware images, their sizes and symbols, and runs under QEMU.

The boards (firmware/boards/README.md has the memory maps):

    stm32f4   STM32F405 Cortex-M4F   arm-none-eabi-gcc        qemu-system-arm -M netduinoplus2
    riscv32   FE310-like RV32IMC     riscv64-unknown-elf-gcc  qemu-system-riscv32 -M sifive_e

`build` runs `make -C firmware -f boards/boards.mk BOARD=... OUT=... APP_SRCS=...`, which links
the board port, the kernels, the runtime and the app's sources into OUT/firmware.elf (+ .bin,
.map); `size` reads the sections of an image (flash, peak RAM with the stack, the board's
limits); `symbol_address` finds a symbol (e.g. `board_mark`, for an instruction-counting QEMU
plugin); `qemu_command` / `run_qemu` run an image with semihosting (file I/O in QEMU's working
directory, exit status) and the UART on a chosen chardev, always under a timeout.

A missing tool is a `FirmwareToolError` that names it and the apt-get line that installs it;
tests let it fail the run rather than skip.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from streamhar.errors import StreamharError, UsageError

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
BOARDS_MK = "boards/boards.mk"            # relative to FIRMWARE (make -C FIRMWARE -f ...)

# Everything the firmware tooling needs, in one line (Debian/Ubuntu; --no-install-recommends
# saves ~530 MB of desktop libraries QEMU would otherwise pull in).
APT_INSTALL_ALL = ("apt-get update && apt-get install -y --no-install-recommends make "
                   "gcc-arm-none-eabi gcc-riscv64-unknown-elf qemu-system-arm qemu-system-misc")


class FirmwareError(StreamharError):
    """Base of the firmware tooling's errors."""


class FirmwareToolError(FirmwareError):
    """A cross compiler, binutils, make or QEMU is not installed."""


class FirmwareBuildError(FirmwareError):
    """The cross build failed (compiler or linker error, e.g. an image that does not fit)."""


class FirmwareRunError(FirmwareError):
    """QEMU did not finish in time (it was killed), or could not be started."""


@dataclass(frozen=True)
class Board:
    name: str
    gcc_prefix: str                 # "arm-none-eabi-": gcc, objcopy, objdump, nm share it
    qemu: str                       # the QEMU system emulator
    qemu_machine: tuple[str, ...]   # its machine arguments
    ram_bytes: int
    flash_bytes: int
    ram_origin: int
    flash_origin: int
    stack_bytes: int                # the linker scripts' default _stack_size
    gcc_package: str                # Debian packages that provide the tools
    qemu_package: str

    def tool(self, name: str) -> str:
        """A cross tool's command name: tool("gcc") → "arm-none-eabi-gcc"."""
        return self.gcc_prefix + name

    def in_ram(self, addr: int) -> bool:
        return self.ram_origin <= addr < self.ram_origin + self.ram_bytes

    def in_flash(self, addr: int) -> bool:
        return self.flash_origin <= addr < self.flash_origin + self.flash_bytes


# The figures match firmware/boards/<name>/link.ld (tests/test_firmware_boards.py checks them
# against the symbols the linker scripts define).
BOARDS: dict[str, Board] = {
    "stm32f4": Board("stm32f4", "arm-none-eabi-", "qemu-system-arm", ("-M", "netduinoplus2"),
                     ram_bytes=128 * 1024, flash_bytes=1024 * 1024,
                     ram_origin=0x2000_0000, flash_origin=0x0800_0000, stack_bytes=1536,
                     gcc_package="gcc-arm-none-eabi", qemu_package="qemu-system-arm"),
    "riscv32": Board("riscv32", "riscv64-unknown-elf-", "qemu-system-riscv32", ("-M", "sifive_e"),
                     ram_bytes=16 * 1024, flash_bytes=12 * 1024 * 1024,
                     ram_origin=0x8000_0000, flash_origin=0x2040_0000, stack_bytes=1536,
                     gcc_package="gcc-riscv64-unknown-elf", qemu_package="qemu-system-misc"),
}

_ELF_MACHINES = {40: "stm32f4", 243: "riscv32"}   # e_machine: EM_ARM, EM_RISCV

# Which tools each job needs; check_tools(board) checks them all.
BUILD_TOOLS = ("make", "gcc", "objcopy")
INSPECT_TOOLS = ("objdump", "nm")
RUN_TOOLS = ("qemu",)


def get_board(board: str | Board) -> Board:
    if isinstance(board, Board):
        return board
    try:
        return BOARDS[board]
    except KeyError:
        raise UsageError(f"unknown firmware board {board!r}: expected one of {', '.join(BOARDS)}") from None


# ---------------------------------------------------------------------------------- tools

def check_tools(board: str | Board, tools: Iterable[str] = (*BUILD_TOOLS, *INSPECT_TOOLS, *RUN_TOOLS)) -> None:
    """Raises FirmwareToolError naming every missing tool of `board` (from "make", "gcc",
    "objcopy", "objdump", "nm", "qemu") with the apt-get command that installs it."""
    b = get_board(board)
    missing: list[tuple[str, str]] = []
    for t in tools:
        if t == "make":
            command, package = "make", "make"
        elif t == "qemu":
            command, package = b.qemu, b.qemu_package
        else:
            command, package = b.tool(t), b.gcc_package   # binutils come with the gcc package
        if shutil.which(command) is None:
            missing.append((command, package))
    if missing:
        names = ", ".join(c for c, _ in missing)
        packages = " ".join(dict.fromkeys(p for _, p in missing))
        raise FirmwareToolError(
            f"firmware tools for {b.name} not found on PATH: {names}. Install with (as root): "
            f"apt-get update && apt-get install -y --no-install-recommends {packages}  "
            f"(every firmware tool: {APT_INSTALL_ALL})")


def _inspect(elf: Path | str, board: str | Board | None, tool: str, args: Sequence[str], what: str) -> tuple[Board, str]:
    """(board, stdout) of a binutils tool run on an image; FirmwareError when it fails."""
    b = get_board(board) if board is not None else elf_board(elf)
    check_tools(b, (tool,))
    cmd = [b.tool(tool), *args, str(elf)]
    proc = _run(cmd, what, 60)
    if proc.returncode != 0:
        raise FirmwareError(f"{what}: {shlex.join(cmd)} failed: {proc.stderr.strip()}")
    return b, proc.stdout


def _run(cmd: Sequence[str], what: str, timeout_s: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise FirmwareError(f"{what}: no answer within {timeout_s} s: {shlex.join(cmd)}") from None
    except OSError as e:
        raise FirmwareToolError(f"{what}: cannot run {shlex.join(cmd)}: {e}") from None


# ---------------------------------------------------------------------------------- building

def build_command(board: str | Board, out_dir: Path | str, app_srcs: Iterable[Path | str],
                  includes: Iterable[Path | str] = (), defs: Iterable[str] = (), opt: str = "-O2",
                  stack: int | None = None, jobs: int = 2) -> list[str]:
    """The make command `build` runs (paths made absolute; make cannot take spaces in them)."""
    b = get_board(board)
    srcs = [Path(s).resolve() for s in app_srcs]
    incs = [Path(i).resolve() for i in includes]
    out = Path(out_dir).resolve()
    if not srcs:
        raise FirmwareBuildError(f"firmware build for {b.name}: no app sources given")
    for p in (out, *srcs, *incs):
        if any(c.isspace() for c in str(p)):
            raise FirmwareBuildError(f"firmware build for {b.name}: make cannot handle a path with "
                                     f"spaces: {str(p)!r}")
    # Every variable on the command line, STACK too: a value in the environment must not leak in.
    return ["make", "-C", str(FIRMWARE), "-f", BOARDS_MK, f"-j{jobs}", f"BOARD={b.name}", f"OUT={out}",
            f"APP_SRCS={' '.join(map(str, srcs))}", f"APP_INCLUDES={' '.join(map(str, incs))}",
            f"APP_DEFS={' '.join(defs)}", f"OPT={opt}", f"STACK={'' if stack is None else stack}"]


def build(board: str | Board, out_dir: Path | str, app_srcs: Iterable[Path | str],
          includes: Iterable[Path | str] = (), defs: Iterable[str] = (), opt: str = "-O2",
          stack: int | None = None, timeout_s: float = 600, make_vars: Iterable[str] = ()) -> Path:
    """Cross-builds `app_srcs` (one of them defines main) with the board port, the kernels and
    the runtime into out_dir/firmware.elf (+ firmware.bin, firmware.map) and returns the ELF's
    path. Incremental: objects stay under out_dir/obj. `defs` are compiler flags such as
    "-DFOO=1"; `stack` overrides the linker scripts' stack size (bytes, a multiple of 16).
    A failed build raises FirmwareBuildError with the command and the compiler's stderr."""
    b = get_board(board)
    check_tools(b, BUILD_TOOLS)
    # make_vars: extra VAR=value arguments, e.g. LDSCRIPT=... (the float baseline's virt link)
    cmd = [*build_command(b, out_dir, app_srcs, includes, defs, opt, stack), *make_vars]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise FirmwareBuildError(f"firmware build for {b.name} did not finish within {timeout_s} s: "
                                 f"{shlex.join(cmd)}") from None
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()[-4000:]
        raise FirmwareBuildError(f"firmware build for {b.name} failed (exit {proc.returncode}): "
                                 f"{shlex.join(cmd)}\n{detail}")
    return Path(out_dir).resolve() / "firmware.elf"


# ---------------------------------------------------------------------------------- inspecting

def elf_board(elf: Path | str) -> Board:
    """The board an ELF image was built for, from its header's machine field."""
    with open(elf, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] != 1:
        raise FirmwareError(f"{elf}: not a 32-bit ELF image")
    machine = int.from_bytes(head[18:20], "little")
    if machine not in _ELF_MACHINES:
        raise FirmwareError(f"{elf}: ELF machine {machine} is none of the firmware boards")
    return BOARDS[_ELF_MACHINES[machine]]


def size(elf: Path | str, board: str | Board | None = None) -> dict:
    """Memory use of an image, from its section headers (`<prefix>objdump -h`):

        flash         bytes of flash: vectors + .text + .rodata + .data's initial values
        ram           bytes of RAM: .data + .bss + .stack (peak RAM: the stack is reserved whole)
        stack         bytes of the .stack reservation
        flash_limit, ram_limit   the board's flash and RAM, in bytes
        sections      {name: bytes} of every allocated section
        board         the board name
    All plain ints and strings (JSON-ready).
    """
    b, out = _inspect(elf, board, "objdump", ("-h", "-w"), "section sizes")
    sections: dict[str, int] = {}
    flash = ram = 0
    for line in out.splitlines():
        parts = line.split(None, 7)
        if len(parts) < 8 or not parts[0].isdigit():
            continue
        name, n, vma, lma = parts[1], int(parts[2], 16), int(parts[3], 16), int(parts[4], 16)
        flags = {f.strip() for f in parts[7].split(",")}
        if "ALLOC" not in flags:
            continue
        sections[name] = n
        if b.in_ram(vma):
            ram += n
        if "LOAD" in flags and n:
            if not b.in_flash(lma):
                raise FirmwareError(f"{elf}: section {name} loads at {lma:#x}, outside {b.name}'s flash")
            flash += n
    return {"board": b.name, "flash": flash, "ram": ram, "stack": sections.get(".stack", 0),
            "flash_limit": b.flash_bytes, "ram_limit": b.ram_bytes, "sections": sections}


def symbol_address(elf: Path | str, name: str, board: str | Board | None = None) -> int:
    """The address of a defined symbol (`<prefix>nm`). For a function, the address of its first
    instruction (the Thumb bit cleared), which is what a QEMU plugin compares against."""
    b, out = _inspect(elf, board, "nm", ("-P", "--defined-only"), "symbol lookup")
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == name:
            addr = int(parts[2], 16)
            return addr & ~1 if parts[1] in "Tt" else addr
    raise FirmwareError(f"{elf}: no symbol {name!r} (is it linked in? --gc-sections drops unused code)")


# ---------------------------------------------------------------------------------- running

class QemuResult(NamedTuple):
    returncode: int      # the firmware's board_exit status (QEMU's own errors exit 1)
    stdout: bytes        # the UART's output when serial="stdio", else QEMU's stdout
    stderr: str          # semihosting text (sh_puts) and QEMU's messages


def qemu_command(board: str | Board, elf: Path | str, *, semihosting: bool = True,
                 serial: str | None = None, icount: bool = True, extra: Iterable[str] = ()) -> list[str]:
    """The QEMU command line for an image. serial: None (UART discarded), "stdio",
    "unix:PATH" (QEMU connects to a socket the caller already listens on: nothing is lost and
    no race), "tcp:HOST:PORT", or any other -serial chardev. semihosting: file I/O relative to
    QEMU's working directory, sh_puts text on stderr, the exit status. icount: one virtual ns per
    instruction (-icount shift=0), which makes riscv32's minstret exact and repeatable."""
    b = get_board(board)
    cmd = [b.qemu, *b.qemu_machine, "-nodefaults", "-display", "none", "-monitor", "none",
           "-serial", serial or "null"]
    if semihosting:
        cmd += ["-semihosting-config", "enable=on,target=native"]
    if icount:
        cmd += ["-icount", "shift=0"]
    return [*cmd, "-kernel", str(Path(elf).resolve()), *extra]


def run_qemu(board: str | Board, elf: Path | str, *, cwd: Path | str, timeout_s: float,
             serial: str | None = None, semihosting: bool = True, icount: bool = True,
             extra: Iterable[str] = (), input: bytes | None = None) -> QemuResult:
    """Runs an image to its exit in QEMU, with `cwd` as QEMU's working directory (where
    semihosting opens files). `input` goes to QEMU's stdin (the UART with serial="stdio"; on
    stm32f4 bytes that arrive before board_init are dropped, so prefer a unix socket for UART
    input). After timeout_s QEMU is killed and FirmwareRunError raised with its stderr."""
    b = get_board(board)
    check_tools(b, RUN_TOOLS)
    cmd = qemu_command(b, elf, semihosting=semihosting, serial=serial, icount=icount, extra=extra)
    try:
        proc = subprocess.run(cmd, cwd=cwd, input=input, capture_output=True, timeout=timeout_s,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:   # subprocess.run has killed QEMU and reaped it
        err = (e.stderr or b"").decode(errors="replace").strip()
        raise FirmwareRunError(f"QEMU ({b.name}) did not finish within {timeout_s} s and was killed: "
                               f"{shlex.join(cmd)} (in {cwd})\nits stderr:\n{err}") from None
    except OSError as e:
        raise FirmwareRunError(f"cannot start QEMU ({b.name}): {shlex.join(cmd)}: {e}") from None
    return QemuResult(proc.returncode, proc.stdout, proc.stderr.decode(errors="replace"))
