/*
 * fault.c — the shared end of every fault handler: one line of text, then a distinct exit
 * status, so a crash under QEMU is a clear failure rather than a hang until the timeout.
 */
#include "../board.h"
#include "port.h"

static volatile int board_faulting;

static char *put_str(char *p, const char *s)
{
    while (*s != '\0')
        *p++ = *s++;
    return p;
}

static char *put_hex(char *p, uint32_t v)
{
    int shift;
    *p++ = '0';
    *p++ = 'x';
    for (shift = 28; shift >= 0; shift -= 4)
        *p++ = "0123456789abcdef"[(v >> shift) & 0xFu];
    return p;
}

void board_fault(const char *what, uint32_t cause, uint32_t pc)
{
    char line[96], *p = line;
    if (board_faulting)   /* the semihosting trap faulted too: nobody is listening */
        board_halt();
    board_faulting = 1;
    p = put_str(p, BOARD_NAME ": fault ");
    p = put_str(p, what);
    p = put_str(p, " cause=");
    p = put_hex(p, cause);
    p = put_str(p, " pc=");
    p = put_hex(p, pc);
    *p++ = '\n';
    *p = '\0';
    sh_puts(line);
    board_exit(BOARD_EXIT_FAULT);
}
