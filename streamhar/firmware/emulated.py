"""An emulated board: QEMU running a firmware image with its UART on a pseudo-terminal.

`streamhar flash --board qemu-stm32f4` "flashes" the device image into one and leaves it running,
so the path a user takes with real hardware — build, flash, open the serial port, talk the
device protocol — is the same here, and testable. pyserial opens the pty like a USB-serial
adapter. QEMU prints `char device redirected to /dev/pts/N`; bytes the firmware sends before the
port is opened are lost (the boot VERSION), so a host asks for VERSION itself.
"""
from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from streamhar.firmware import toolchain
from streamhar.firmware.toolchain import FirmwareRunError

PTY_LINE = re.compile(rb"char device redirected to (/dev/pts/\d+)")


class EmulatedBoard:
    """Context manager: QEMU with `elf` on `board`; `.port` is the UART's pty path.

    icount=True (`-icount shift=0`): virtual time counts instructions, so instruction counts are
    exact and repeatable but board_time_us() does not follow the wall clock. A sensor image
    (`image.build_sensor_image`) runs with icount=False: its sensor is paced by the device clock,
    which then follows the host's wall clock, so a recording streams at its real rate."""

    def __init__(self, board: str, elf: Path, icount: bool = True, start_timeout_s: float = 10.0):
        self.board, self.elf = board, Path(elf)
        self._stderr: str | None = None
        toolchain.check_tools(board, toolchain.RUN_TOOLS)
        self.command = toolchain.qemu_command(board, self.elf, serial="pty", icount=icount)
        self.proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.port = self._wait_for_pty(start_timeout_s)

    def _wait_for_pty(self, timeout_s: float) -> str:
        import selectors

        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        seen = b""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            if sel.select(0.1):
                chunk = self.proc.stdout.read1(4096)
                seen += chunk
                m = PTY_LINE.search(seen)
                if m:
                    return m.group(1).decode()
        err = self.stop()
        raise FirmwareRunError(f"QEMU ({self.board}) gave no serial pty within {timeout_s:g} s: "
                               f"{' '.join(self.command)}\n{seen.decode(errors='replace')}{err}")

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        """Stops QEMU; returns its stderr (semihosting text, fault reports). Safe to call again."""
        if self._stderr is not None:
            return self._stderr
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        self._stderr = err
        return err

    def __enter__(self) -> "EmulatedBoard":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
