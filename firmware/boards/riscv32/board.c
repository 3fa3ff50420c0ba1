/*
 * board.c — sifive_e / FE310 peripherals: UART0 at 0x10013000 (GPIO 16 RX, 17 TX on IOF0),
 * the instruction counter, halt.
 *
 * QEMU's UART0 is `-serial` 0, both ways, with an 8-byte receive FIFO; reading rxdata pops it
 * (bit 31 set = empty). The divisor assumes a 16 MHz tlclk: QEMU ignores it.
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

#define TLCLK_HZ 16000000u
#define BAUD 115200u

void board_init(void)
{
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
