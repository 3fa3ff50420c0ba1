"""The board ports (firmware/boards) under QEMU, on both boards, with the real cross tools.

tests/firmware_apps/board_selftest.c is cross-built with `toolchain.build` and run with
`toolchain.run_qemu`: semihosting file I/O (in.bin → out.bin, every byte + 1), the exit status
reaching QEMU's, the UART both ways (Python listens on a unix socket before QEMU connects),
riscv32's instruction count (identical on two runs), a fault that exits instead of hanging, a
hung image killed at its timeout, the image's sizes against the board, and an oversized .bss
that fails the link. A missing cross tool fails these tests with check_tools' message (what to
apt-get install); nothing is skipped.
"""
from __future__ import annotations

import os
import re
import socket
import tempfile
import threading
from pathlib import Path

import pytest

from streamhar.firmware import toolchain
from streamhar.firmware.toolchain import (BOARDS, FirmwareBuildError, FirmwareRunError, FirmwareToolError,
                                          QemuResult)

SELFTEST = Path(__file__).resolve().parent / "firmware_apps" / "board_selftest.c"
EXIT_OK, EXIT_FAULT = 42, 126       # board_selftest.c's success code, board.h's BOARD_EXIT_FAULT
EOT = 0x04
LOOP_ITERATIONS = 1000               # board_selftest.c's fixed loop
RUN_TIMEOUT_S = 30


@pytest.fixture(scope="module", params=sorted(BOARDS))
def board(request) -> str:
    toolchain.check_tools(request.param)     # a missing tool fails here, naming the apt-get line
    return request.param


@pytest.fixture(scope="module")
def image(board, tmp_path_factory) -> Path:
    return toolchain.build(board, tmp_path_factory.mktemp(f"build-{board}"), [SELFTEST])


def run_selftest(board: str, elf: Path, cwd: Path, payload: bytes) -> tuple[QemuResult, bytes, bytes]:
    """Runs the self-test with its UART on a unix socket this side listens on (so QEMU connects
    before the CPU starts: nothing is lost). Sends `payload` once the greeting arrived; returns
    QEMU's result, the greeting line and everything the UART sent after it."""
    sock_dir = tempfile.mkdtemp(prefix="shuart-")     # short: unix socket paths stop at 107 bytes
    path = os.path.join(sock_dir, "uart")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    outcome: dict = {}

    def qemu() -> None:
        try:
            outcome["result"] = toolchain.run_qemu(board, elf, cwd=cwd, timeout_s=RUN_TIMEOUT_S,
                                                   serial=f"unix:{path}")
        except BaseException as e:          # re-raised in the test's thread
            outcome["error"] = e

    try:
        server.bind(path)
        server.listen(1)
        server.settimeout(0.2)
        thread = threading.Thread(target=qemu, daemon=True)
        thread.start()
        conn = None
        while conn is None:
            try:
                conn, _ = server.accept()
            except socket.timeout:
                if not thread.is_alive():
                    raise AssertionError(f"QEMU never connected to the UART socket: {outcome}")
        with conn:
            conn.settimeout(RUN_TIMEOUT_S)
            received = b""
            while b"\n" not in received:
                chunk = conn.recv(4096)
                assert chunk, f"UART closed before the greeting; got {received!r}"
                received += chunk
            greeting, _, rest = received.partition(b"\n")
            conn.sendall(payload)
            while chunk := conn.recv(4096):     # QEMU closes the socket when it exits
                rest += chunk
        thread.join(RUN_TIMEOUT_S + 5)
    finally:
        server.close()
        Path(path).unlink(missing_ok=True)
        os.rmdir(sock_dir)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"], greeting, rest


def test_selftest_files_uart_exit_status_and_instruction_count(board, image, tmp_path):
    data = bytes(range(256)) * 4 + os.urandom(333)        # every byte value; not a multiple of 48
    payload = bytes(b for b in range(256) if b != EOT) + bytes([EOT])   # binary-safe: 0x00, 0x01, 0xff
    counts = []
    for run in range(2):
        cwd = tmp_path / f"run{run}"
        cwd.mkdir()
        (cwd / "in.bin").write_bytes(data)
        result, greeting, rest = run_selftest(board, image, cwd, payload)
        returncode, _, _ = result                                   # a plain 3-tuple too
        assert returncode == result.returncode == EXIT_OK, result
        assert f"board_selftest on {board}" in result.stderr        # sh_puts → QEMU's stderr
        assert (cwd / "out.bin").read_bytes() == bytes((b + 1) & 0xFF for b in data)
        assert greeting == f"hello from {board}".encode()
        assert rest.startswith(payload), rest[:300]                 # echoed verbatim, EOT included
        m = re.fullmatch(rb"insns (\d+)\n", rest[len(payload):])
        assert m, rest[len(payload):]
        counts.append(int(m.group(1)))
    if board == "riscv32":
        # minstret under -icount shift=0: the loop's exact cost, the same on every run (2 per
        # iteration with GCC 12 -O2: addi + bne, plus the reads around it).
        assert counts[0] == counts[1], counts
        assert 2 * LOOP_ITERATIONS <= counts[0] <= 5 * LOOP_ITERATIONS, counts
    else:
        assert counts == [0, 0]    # no DWT under QEMU: board_insn_count is 0 by contract


def test_a_fault_reports_and_exits_instead_of_hanging(board, image, tmp_path):
    (tmp_path / "fault.flag").write_bytes(b"")       # makes the self-test run an undefined instruction
    result = toolchain.run_qemu(board, image, cwd=tmp_path, timeout_s=RUN_TIMEOUT_S)
    assert result.returncode == EXIT_FAULT, result
    assert re.search(rf"{board}: fault \w+ cause=0x[0-9a-f]{{8}} pc=0x[0-9a-f]{{8}}", result.stderr), result.stderr
    pc = int(result.stderr.rsplit("pc=", 1)[1][:10], 16)
    assert BOARDS[board].in_flash(pc)


def test_a_hung_image_is_killed_at_its_timeout(board, image, tmp_path):
    (tmp_path / "in.bin").write_bytes(b"abc")
    # With the UART discarded (serial=None), the self-test waits for ever for its first byte.
    with pytest.raises(FirmwareRunError, match=r"did not finish within 2 s and was killed: "
                                               rf"{BOARDS[board].qemu} (.|\n)*board_selftest on {board}"):
        toolchain.run_qemu(board, image, cwd=tmp_path, timeout_s=2)
    assert (tmp_path / "out.bin").read_bytes() == b"bcd"


def test_sizes_fit_the_board_and_match_the_linker_script(board, image):
    b = BOARDS[board]
    s = toolchain.size(image)
    sec = s["sections"]
    assert s["board"] == board and s["ram_limit"] == b.ram_bytes and s["flash_limit"] == b.flash_bytes
    assert s["stack"] == sec[".stack"] == b.stack_bytes
    assert s["ram"] == sec[".data"] + sec[".bss"] + sec[".stack"] <= b.ram_bytes
    loaded = sum(sec.get(n, 0) for n in (".isr_vector", ".text", ".rodata", ".ARM.exidx", ".data"))
    assert s["flash"] == loaded and 0 < s["flash"] <= b.flash_bytes
    assert s["flash"] < 4096                           # the self-test pulls in no kernel code
    binary = image.with_name("firmware.bin").read_bytes()
    assert s["flash"] <= len(binary) <= s["flash"] + 16   # the flash image, from the origin
    # The Python board table and the linker script agree.
    sym = lambda name: toolchain.symbol_address(image, name)
    assert sym("_ram_size") == b.ram_bytes and sym("_flash_size") == b.flash_bytes
    assert sym("_stack_size") == b.stack_bytes
    assert sym("_estack") == b.ram_origin + b.ram_bytes == sym("_sstack") + b.stack_bytes
    assert sym("_sdata") == b.ram_origin
    assert sym("vectors" if board == "stm32f4" else "_start") == b.flash_origin
    mark = sym("board_mark")                           # where an instruction-count plugin breaks
    assert b.in_flash(mark) and mark % 2 == 0


def test_a_rebuild_with_nothing_changed_compiles_nothing(board, image):
    objs = sorted((image.parent / "obj").rglob("*.o"))
    assert any(o.name == "board_selftest.c.o" for o in objs) and any(o.name == "har_net.c.o" for o in objs)
    before = {o: o.stat().st_mtime_ns for o in objs}
    elf_time = image.stat().st_mtime_ns
    assert toolchain.build(board, image.parent, [SELFTEST]) == image
    assert {o: o.stat().st_mtime_ns for o in objs} == before and image.stat().st_mtime_ns == elf_time


def test_an_oversized_bss_or_stack_fails_the_link_clearly(board, tmp_path):
    with pytest.raises(FirmwareBuildError) as e:
        toolchain.build(board, tmp_path, [SELFTEST], defs=["-DHUGE_BSS"])
    msg = str(e.value)
    assert f"firmware build for {board} failed" in msg and "make -C" in msg and "-DHUGE_BSS" in msg
    kb = BOARDS[board].ram_bytes // 1024
    assert f"{board} RAM overflow: .data + .bss + the stack (_stack_size) exceed the {kb} KB RAM" in msg
    assert not (tmp_path / "firmware.elf").exists()
    # The stack is part of the check: a stack that leaves no room for .data + .bss fails too.
    with pytest.raises(FirmwareBuildError, match=rf"{board} RAM overflow"):
        toolchain.build(board, tmp_path / "big-stack", [SELFTEST], stack=BOARDS[board].ram_bytes - 32)


def test_a_compile_error_carries_the_compiler_message(board, tmp_path):
    bad = tmp_path / "bad.c"
    bad.write_text("int main(void) { return undeclared_name; }\n")
    with pytest.raises(FirmwareBuildError, match=r"(?s)make -C .*bad\.c.*'undeclared_name' undeclared"):
        toolchain.build(board, tmp_path / "out", [bad])


def test_qemu_command_line(board, image):
    b = BOARDS[board]
    cmd = toolchain.qemu_command(board, image, serial="unix:/tmp/x")
    assert cmd[:3] == [b.qemu, *b.qemu_machine]
    joined = " ".join(cmd)
    for part in ("-serial unix:/tmp/x", "-semihosting-config enable=on,target=native", "-icount shift=0",
                 f"-kernel {image}", "-display none", "-monitor none"):
        assert part in joined
    plain = toolchain.qemu_command(board, image, semihosting=False, icount=False, extra=("-s",))
    assert "-semihosting-config" not in plain and "-icount" not in plain
    assert plain[plain.index("-serial") + 1] == "null" and plain[-1] == "-s"


def test_missing_tools_are_named_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # nothing on PATH
    with pytest.raises(FirmwareToolError, match=r"arm-none-eabi-gcc.*qemu-system-arm.*apt-get install -y "
                                                r"--no-install-recommends make gcc-arm-none-eabi qemu-system-arm"):
        toolchain.check_tools("stm32f4")
    with pytest.raises(FirmwareToolError, match=r"riscv64-unknown-elf-gcc.*gcc-riscv64-unknown-elf"):
        toolchain.build("riscv32", tmp_path / "out", [SELFTEST])
    with pytest.raises(FirmwareToolError, match=r"qemu-system-riscv32.*qemu-system-misc"):
        toolchain.run_qemu("riscv32", tmp_path / "x.elf", cwd=tmp_path, timeout_s=1)
