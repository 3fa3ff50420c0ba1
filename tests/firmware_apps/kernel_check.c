/*
 * kernel_check.c — conv1d_ternary on shapes a host script chose, for comparison with the numpy
 * reference (tests/test_kernel_shapes.py): the board's own build of the kernel, i.e. on stm32f4
 * the Cortex-M4 DSP path, which no host build runs.
 *
 * In  "cases.bin": u32 magic 'KCHK', u32 n_cases, then per case eight u32 — n_in, t_in, n_out, k,
 *     padding, x_type (0 int8, 1 uint8), row_bytes, tile (output channels per call, as
 *     har_net_run's tiles; 0 = all at once) — then the input [n_in][t_in] and the packed rows
 *     [n_out][row_bytes], each padded to a multiple of 4 bytes.
 * Out "results.bin": u32 magic 'KRES', u32 n_cases, then per case u32 t_out (as returned) and the
 *     accumulators [n_out][t_out] int32, tile after tile.
 *     "stack.bin": u32, the most stack bytes below main's frame any call used (the free stack is
 *     painted before each call and scanned after it).
 * Each call's accumulator region is followed by canary words that must survive (the kernel
 * writes exactly n·t_out values). Exit status: 0, or 10 open, 11 read, 12 a case too large for
 * the buffers, 13 write, 14 a canary overwritten, 15 a wrong t_out.
 */
#include "board.h"
#include "har_kernels.h"

#define MAGIC_IN 0x4B48434Bu  /* "KCHK" little-endian */
#define MAGIC_OUT 0x5345524Bu /* "KRES" */
#define X_MAX 4096u
#define W_MAX 3072u
#define ACC_MAX 1024u
#define CANARY 16u
#define PAINT 0xA5u

extern uint8_t _sstack[];

static uint32_t xbuf[X_MAX / 4u];
static uint32_t wbuf[W_MAX / 4u];
static int32_t acc[ACC_MAX + CANARY];
static uint32_t stack_used;

/* Paints the free stack below the caller's frame; stack_mark() then finds the deepest byte a call
 * in between wrote. Not inlined, so its own frame lies below the caller's and is repainted. */
static __attribute__((noinline)) void stack_paint(void)
{
    volatile uint8_t here = 0;
    uintptr_t end = (uintptr_t)&here - 64u; /* (this frame and the call's return stay unpainted) */
    uint8_t *p = _sstack;
    while ((uintptr_t)p < end)
        *(volatile uint8_t *)p++ = PAINT;
}

static __attribute__((noinline)) void stack_mark(const uint8_t *top)
{
    const uint8_t *p = _sstack;
    while (p < top && *(volatile const uint8_t *)p == PAINT)
        ++p;
    if ((uint32_t)(top - p) > stack_used)
        stack_used = (uint32_t)(top - p);
}

int main(void)
{
    uint32_t head[2], d[8], i, j;
    int in, out;
    volatile uint8_t top = 0;

    board_init();
    in = sh_open("cases.bin", SH_READ);
    out = sh_open("results.bin", SH_WRITE);
    if (in < 0 || out < 0)
        return 10;
    if (sh_read_all(in, head, sizeof head) != 0 || head[0] != MAGIC_IN)
        return 11;
    head[0] = MAGIC_OUT;
    if (sh_write(out, head, sizeof head) != (long)sizeof head)
        return 13;
    for (i = 0; i < head[1]; ++i) {
        size_t n_in, t_in, n_out, k, pad, rb, tile, t_out, xb, wb, o0;
        har_in_type ty;
        if (sh_read_all(in, d, sizeof d) != 0)
            return 11;
        n_in = d[0], t_in = d[1], n_out = d[2], k = d[3], pad = d[4], rb = d[6], tile = d[7];
        ty = d[5] ? HAR_IN_U8 : HAR_IN_S8;
        xb = (n_in * t_in + 3u) & ~(size_t)3u;
        wb = (n_out * rb + 3u) & ~(size_t)3u;
        t_out = (k == 0 || t_in + 2u * pad < k) ? 0 : t_in + 2u * pad - k + 1u;
        if (tile == 0 || tile > n_out)
            tile = n_out;
        if (xb > X_MAX || wb > W_MAX || (t_out > 0 && tile * t_out > ACC_MAX))
            return 12;
        if (sh_read_all(in, xbuf, xb) != 0 || sh_read_all(in, wbuf, wb) != 0)
            return 11;
        if (sh_write(out, &t_out, 4) != 4)
            return 13;
        for (o0 = 0; o0 < n_out; o0 += tile) {
            size_t n = n_out - o0 < tile ? n_out - o0 : tile, got;
            for (j = 0; j < ACC_MAX + CANARY; ++j)
                acc[j] = 0x5A5A5A5A;
            stack_paint();
            got = conv1d_ternary(xbuf, ty, n_in, t_in, (const uint8_t *)wbuf + o0 * rb, rb, n, k, pad, acc);
            stack_mark((const uint8_t *)&top);
            if (got != t_out)
                return 15;
            for (j = (uint32_t)(n * t_out); j < (uint32_t)(n * t_out) + CANARY; ++j)
                if (acc[j] != 0x5A5A5A5A)
                    return 14;
            if (n * t_out > 0 && sh_write(out, acc, 4u * n * t_out) != (long)(4u * n * t_out))
                return 13;
        }
    }
    sh_close(out);
    out = sh_open("stack.bin", SH_WRITE);
    if (out < 0 || sh_write(out, &stack_used, 4) != 4)
        return 13;
    sh_close(out);
    sh_close(in);
    return 0;
}
