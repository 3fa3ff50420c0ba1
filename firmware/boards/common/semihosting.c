/*
 * semihosting.c — board.h's sh_* file I/O and board_exit on top of the board's one trap,
 * board_semihost (ARM semihosting specification v2; both targets are 32-bit, so every field of
 * a parameter block is one 32-bit word).
 */
#include "../board.h"
#include "port.h"

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_EXIT_EXTENDED = 0x20   /* carries a full exit status; plain SYS_EXIT gives 0/1 on 32-bit */
};

#define ADP_STOPPED_APPLICATION_EXIT 0x20026u
#define SH_MODE_RB 1u   /* fopen mode indices of the specification: "rb" */
#define SH_MODE_WB 5u   /* "wb" */

int sh_open(const char *path, int mode)
{
    uintptr_t args[3];
    size_t len = 0;
    while (path[len] != '\0')
        ++len;
    args[0] = (uintptr_t)path;
    args[1] = mode == SH_WRITE ? SH_MODE_WB : SH_MODE_RB;
    args[2] = len;
    return (int)board_semihost(SYS_OPEN, args);
}

/* SYS_READ and SYS_WRITE return the bytes NOT transferred; -1 (or a count above n) is an error. */
long sh_read(int fd, void *buf, size_t n)
{
    uintptr_t args[3] = {(uintptr_t)fd, (uintptr_t)buf, n};
    long left = board_semihost(SYS_READ, args);
    return (left < 0 || (size_t)left > n) ? -1 : (long)(n - (size_t)left);
}

long sh_write(int fd, const void *buf, size_t n)
{
    uintptr_t args[3] = {(uintptr_t)fd, (uintptr_t)buf, n};
    long left = board_semihost(SYS_WRITE, args);
    return left == 0 ? (long)n : -1;
}

int sh_close(int fd)
{
    uintptr_t args[1] = {(uintptr_t)fd};
    return board_semihost(SYS_CLOSE, args) == 0 ? 0 : -1;
}

void sh_puts(const char *s)
{
    board_semihost(SYS_WRITE0, (void *)s);
}

void board_exit(int code)
{
    uintptr_t args[2] = {ADP_STOPPED_APPLICATION_EXIT, (uintptr_t)code};
    board_semihost(SYS_EXIT_EXTENDED, args);
    board_halt();   /* no debugger answered */
}

int sh_read_all(int fd, void *buf, size_t n)
{
    uint8_t *p = (uint8_t *)buf;
    while (n > 0) {
        long got = sh_read(fd, p, n);
        if (got <= 0)
            return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}
