/*
 * port.h — what each board directory provides to the shared code in boards/common/ (not for
 * apps: they include board.h only).
 */
#ifndef BOARD_PORT_H
#define BOARD_PORT_H

#include <stdint.h>

/* One semihosting call: operation `op`, parameter block `arg`; returns the host's result
 * register (r0 / a0). The trap instruction differs per core (bkpt 0xab; slli/ebreak/srai). */
long board_semihost(uint32_t op, void *arg);

/* Parks the core for good (interrupts are never enabled, so a wait-for-interrupt loop). */
void board_halt(void) __attribute__((noreturn));

/* Reports a fault over semihosting ("<board>: fault <what> cause=0x... pc=0x...") and exits
 * with BOARD_EXIT_FAULT; a second fault on the way (no debugger: the semihosting trap itself
 * faults) parks the core instead of recursing. */
void board_fault(const char *what, uint32_t cause, uint32_t pc) __attribute__((noreturn));

#endif /* BOARD_PORT_H */
