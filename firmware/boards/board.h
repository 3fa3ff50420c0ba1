/*
 * board.h — the one board interface every firmware app uses (C99, freestanding).
 *
 * Two ports implement it (firmware/boards/README.md has the memory maps):
 *   stm32f4  STM32F405, Cortex-M4F (QEMU -M netduinoplus2): USART1, semihosting via bkpt 0xab;
 *   riscv32  FE310-like RV32IMC   (QEMU -M sifive_e):      UART0, semihosting via the
 *            slli/ebreak/srai sequence, instruction counts from minstret.
 * boards/boards.mk compiles exactly one of them, with -DBOARD_STM32F4 or -DBOARD_RISCV32.
 *
 * The start-up code (each board's directory) copies .data, zeroes .bss, then calls
 * `int main(void)`; main's return value goes to board_exit. A fault (HardFault, an unexpected
 * trap) prints a line over semihosting and exits with BOARD_EXIT_FAULT.
 *
 * Semihosting needs a debugger (or QEMU with -semihosting-config enable=on,target=native); on a
 * bare board without one, a semihosting call faults. It is the test and measurement channel;
 * the UART is the device's only channel in the field.
 */
#ifndef BOARD_H
#define BOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(BOARD_STM32F4)
#define BOARD_NAME "stm32f4"
#define BOARD_RAM_BYTES (128u * 1024u)       /* SRAM1+SRAM2 at 0x20000000 (the 64 KB CCM unused) */
#define BOARD_FLASH_BYTES (1024u * 1024u)    /* at 0x08000000 */
#elif defined(BOARD_RISCV32)
#define BOARD_NAME "riscv32"
#define BOARD_RAM_BYTES (16u * 1024u)        /* DTIM at 0x80000000 */
#define BOARD_FLASH_BYTES (12u * 1024u * 1024u) /* SPI flash from 0x20400000 (first 4 MB: boot loader) */
#else
#error "define BOARD_STM32F4 or BOARD_RISCV32 (boards/boards.mk does, from BOARD=...)"
#endif

/* The UART's line rate (8N1: 10 bits on the wire per byte). Sensor mode's FAST replay paces
 * itself to it (firmware/app/device_main.c), because QEMU's UART models do not. */
#define BOARD_UART_BAUD 115200u

/* Exit status a fault handler passes to board_exit (apps use small codes of their own). */
#define BOARD_EXIT_FAULT 126

/* Peripheral set-up: the UART at 115200 8N1 with transmit and receive enabled (QEMU drops
 * received bytes until then), and the microsecond clock (board_time_us). Clocks are left at
 * their reset values (16 MHz HSI on the STM32F405): nothing to do on QEMU, and the baud divisor
 * assumes that clock. */
void board_init(void);

/* Microseconds from a free-running clock, modulo 2^32 (it wraps after 71.6 min: compare times by
 * unsigned difference). The sample clock of sensor mode (firmware/sensor/). stm32f4: TIM2, a
 * 32-bit counter prescaled to 1 MHz; riscv32: the CLINT's 64-bit mtime scaled to microseconds.
 * Each port knows its timer's input clock on the real chip and in QEMU 7.2, which differ, and
 * tells them apart at board_init (see the ports). Under QEMU without -icount it follows the
 * host's wall clock; with -icount shift=0, virtual time: one nanosecond per instruction. */
uint32_t board_time_us(void);

/* Sends n bytes over the UART, blocking until each is accepted by the transmitter. */
void board_uart_write(const uint8_t *p, size_t n);

/* Waits for one received byte: returns 1 and stores it in *byte, or 0 when none arrived within
 * timeout_loops polls of the receiver. timeout_loops == 0 waits for ever. */
int board_uart_read(uint8_t *byte, uint32_t timeout_loops);

/* Ends the program with exit status `code` (0..255 reach QEMU's exit status) through semihosting
 * SYS_EXIT_EXTENDED; parks the core if no debugger answers. */
void board_exit(int code) __attribute__((noreturn));

/* Semihosting file I/O on the host (under QEMU: paths relative to QEMU's working directory).
 * Returns follow POSIX, not the raw semihosting calls: */
#define SH_READ 0    /* sh_open mode: "rb" */
#define SH_WRITE 1   /* sh_open mode: "wb" (created or truncated) */
int sh_open(const char *path, int mode);                /* handle >= 0, or -1 */
long sh_read(int fd, void *buf, size_t n);              /* bytes read, 0 at end of file, -1 error */
int sh_read_all(int fd, void *buf, size_t n);           /* exactly n bytes: 0, or -1 (error, short file) */
long sh_write(int fd, const void *buf, size_t n);       /* bytes written (n), or -1 */
int sh_close(int fd);                                   /* 0, or -1 */
void sh_puts(const char *s);                            /* debug text to QEMU's stderr */

/* Instructions retired since reset, modulo 2^32: minstret on riscv32 (exact and repeatable
 * under QEMU's -icount shift=0); always 0 on stm32f4, where QEMU emulates no DWT cycle counter
 * (count there with a TCG plugin between board_mark calls instead). */
uint32_t board_insn_count(void);

/* A marker for instruction-counting QEMU plugins: calling it executes the first instruction at
 * the address of the symbol `board_mark` (streamhar.firmware.toolchain.symbol_address(elf,
 * "board_mark")), so a plugin that watches that address sees every call, in program order; the
 * id is in the first argument register (r0 / a0). The function is never inlined, cloned, merged
 * or removed (noipa, used, its own file, KEEP in the linker scripts) and contains an asm volatile
 * barrier, so calls are neither dropped nor moved across the code they delimit. */
void board_mark(uint32_t id);

#ifdef __cplusplus
}
#endif
#endif /* BOARD_H */
