/*
 * board_selftest.c — exercises every call of firmware/boards/board.h under QEMU for
 * tests/test_firmware_boards.py:
 *   0. start-up: initialised data (.data and, on riscv32, gp-relative .sdata) copied from flash,
 *      .bss zeroed;
 *   1. semihosting files: in.bin → out.bin with every byte + 1 (chunks of 48: partial reads),
 *      and opening a missing file fails;
 *   2. UART: a greeting, then every received byte echoed until 0x04 (EOT, echoed too), then a
 *      read with a short timeout that must time out (the host sends nothing more);
 *   3. board_insn_count around a fixed loop, sent as "insns <n>\n" (0 on stm32f4);
 *   4. exit status 42. Each failed check exits with its own small code and a line on stderr.
 * When a file fault.flag exists, it executes an undefined instruction first instead: the
 * board's fault handler must report it and exit with BOARD_EXIT_FAULT (126), not hang.
 * Built with -DHUGE_BSS it also holds a .bss array that cannot fit: the link must fail.
 */
#include "board.h"

#define EXIT_OK 42
#define EOT 0x04
#define LOOP_ITERATIONS 1000u

#ifdef HUGE_BSS
static uint8_t huge[BOARD_RAM_BYTES - 256u];
#endif

static volatile uint32_t small_data = 0x12345678u;                /* .sdata on riscv32 */
static volatile uint8_t data_bytes[24] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                          17, 18, 19, 20, 21, 22, 23, 24};
static volatile uint32_t zeroed[8];

static void fail(int code, const char *why)
{
    sh_puts("board_selftest: ");
    sh_puts(why);
    sh_puts("\n");
    board_exit(code);
}

static void check_startup(void)
{
    uint32_t i, zeros = 0;
    for (i = 0; i < sizeof zeroed / sizeof zeroed[0]; ++i)
        zeros |= zeroed[i];
    for (i = 0; i < sizeof data_bytes; ++i)
        if (data_bytes[i] != i + 1u)
            fail(10, ".data not copied from flash");
    if (small_data != 0x12345678u)
        fail(11, "small data not copied from flash");
    if (zeros != 0)
        fail(12, ".bss not zeroed");
}

static void uart_puts(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        ++n;
    board_uart_write((const uint8_t *)s, n);
}

static void uart_put_u32(uint32_t v)
{
    char digits[11];
    int i = 10;
    digits[i] = '\0';
    do {
        digits[--i] = (char)('0' + v % 10u);
        v /= 10u;
    } while (v != 0);
    uart_puts(&digits[i]);
}

static void copy_plus_one(void)
{
    uint8_t buf[48];
    long n;
    int in = sh_open("in.bin", SH_READ), out;
    if (in < 0)
        fail(2, "cannot open in.bin");
    out = sh_open("out.bin", SH_WRITE);
    if (out < 0)
        fail(3, "cannot open out.bin");
    while ((n = sh_read(in, buf, sizeof buf)) > 0) {
        long i;
        for (i = 0; i < n; ++i)
            buf[i] = (uint8_t)(buf[i] + 1u);
        if (sh_write(out, buf, (size_t)n) != n)
            fail(4, "short write to out.bin");
    }
    if (n < 0)
        fail(5, "read error on in.bin");
    if (sh_close(in) != 0 || sh_close(out) != 0)
        fail(6, "close failed");
    if (sh_open("no-such-file.bin", SH_READ) >= 0)
        fail(7, "opening a missing file succeeded");
}

static void uart_echo(void)
{
    uint8_t b;
    uart_puts("hello from " BOARD_NAME "\n");
    do {
        if (!board_uart_read(&b, 0))
            fail(8, "blocking UART read returned nothing");
        board_uart_write(&b, 1);
    } while (b != EOT);
    if (board_uart_read(&b, 20000u))
        fail(9, "a UART read that should time out got a byte");
}

static void count_fixed_loop(void)
{
    uint32_t i, before, after;
    board_mark(1);
    before = board_insn_count();
    for (i = 0; i < LOOP_ITERATIONS; ++i)
        __asm__ volatile("" ::: "memory");   /* the loop stays, one pass per iteration */
    after = board_insn_count();
    board_mark(2);
    uart_puts("insns ");
    uart_put_u32(after - before);
    uart_puts("\n");
}

static void maybe_fault(void)
{
    int fd = sh_open("fault.flag", SH_READ);
    if (fd < 0)
        return;
    sh_close(fd);
#if defined(BOARD_STM32F4)
    __asm__ volatile("udf #0");      /* UsageFault, escalated to HardFault */
#else
    __asm__ volatile("unimp");       /* illegal instruction trap */
#endif
}

int main(void)
{
    check_startup();
    board_init();
    sh_puts("board_selftest on " BOARD_NAME "\n");
    maybe_fault();
#ifdef HUGE_BSS
    huge[sizeof huge - 1] = 1;
    ((volatile uint8_t *)huge)[0] = huge[sizeof huge - 1];
#endif
    copy_plus_one();
    uart_echo();
    count_fixed_loop();
    return EXIT_OK;
}
