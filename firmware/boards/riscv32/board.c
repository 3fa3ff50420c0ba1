/*
 * board.c — sifive_e / FE310 peripherals: UART0 at 0x10013000 (GPIO 16 RX, 17 TX on IOF0),
 * the instruction counter, the microsecond clock, halt.
 *
 * QEMU's UART0 is `-serial` 0, both ways, with an 8-byte receive FIFO; reading rxdata pops it
 * (bit 31 set = empty). The divisor assumes a 16 MHz tlclk: QEMU ignores it. QEMU 7.2's
 * transmitter never reports its FIFO full and drops bytes the host side cannot take at once;
 * streaming code paces itself (BOARD_UART_BAUD).
 *
 * board_time_us comes from the CLINT's 64-bit mtime, which counts at 32,768 Hz on the FE310
 * (its low-frequency clock) but at 10 MHz in QEMU 7.2's sifive_e. QEMU reports mvendorid 0; the
 * FE310 reports SiFive's JEDEC id 0x489 — read once at board_init to pick the scale.
 */
#include "../board.h"
#include "../common/port.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define GPIO_IOF_EN REG(0x10012038u)
#define GPIO_IOF_SEL REG(0x1001203Cu)

#define UART0_TXDATA REG(0x10013000u)
#define UART0_RXDATA REG(0x10013004u)
#define UART0_TXCTRL REG(0x10013008u)
#define UART0_RXCTRL REG(0x1001300Cu)
#define UART0_DIV REG(0x10013018u)

#define DATA_FLAG (1u << 31)   /* txdata: FIFO full; rxdata: FIFO empty */
#define UART_PINS ((1u << 16) | (1u << 17))

#define MTIME_LO REG(0x0200BFF8u)
#define MTIME_HI REG(0x0200BFFCu)

#define TLCLK_HZ 16000000u
#define BAUD BOARD_UART_BAUD
#define QEMU_MTIME_HZ 10000000u

static uint8_t emulated;   /* mtime at QEMU's 10 MHz, not the FE310's 32,768 Hz */

static uint64_t mtime(void)
{
    uint32_t hi, lo;
    do {                          /* two 32-bit halves: retry if the low half wrapped between */
        hi = MTIME_HI;
        lo = MTIME_LO;
    } while (MTIME_HI != hi);
    return ((uint64_t)hi << 32) | lo;
}

uint32_t board_time_us(void)
{
    uint64_t t = mtime();
    /* from the 64-bit count, so the 32-bit result wraps cleanly at 2^32 us */
    return (uint32_t)(emulated ? t / (QEMU_MTIME_HZ / 1000000u) : t * 15625u / 512u);   /* 10^6/32768 */
}

void board_init(void)
{
    uint32_t vendor;
    __asm__ volatile("csrr %0, mvendorid" : "=r"(vendor));
    emulated = vendor == 0u;
    GPIO_IOF_SEL &= ~UART_PINS;   /* IOF0 = UART0 */
    GPIO_IOF_EN |= UART_PINS;
    UART0_DIV = TLCLK_HZ / BAUD - 1u;
    UART0_TXCTRL = 1u;            /* txen, one stop bit */
    UART0_RXCTRL = 1u;            /* rxen */
}

void board_uart_write(const uint8_t *p, size_t n)
{
    while (n--) {
        while (UART0_TXDATA & DATA_FLAG)
            ;
        UART0_TXDATA = *p++;
    }
}

int board_uart_read(uint8_t *byte, uint32_t timeout_loops)
{
    uint32_t polls = 0;
    for (;;) {
        uint32_t rx = UART0_RXDATA;   /* one read: it pops the FIFO */
        if (!(rx & DATA_FLAG)) {
            *byte = (uint8_t)rx;
            return 1;
        }
        if (timeout_loops != 0 && ++polls >= timeout_loops)
            return 0;
    }
}

uint32_t board_insn_count(void)
{
    uint32_t n;
    __asm__ volatile("csrr %0, minstret" : "=r"(n));
    return n;
}

void board_halt(void)
{
    for (;;)
        __asm__ volatile("wfi");
}
