/*
 * board.c — STM32F405 peripherals: USART1 (PA9 TX, PA10 RX, AF7), semihosting, halt.
 *
 * QEMU's netduinoplus2 models USART1 at 0x40011000 as `-serial` 0; it drops received bytes
 * until CR1 has UE, TE and RE. RCC and GPIO are not modelled there (writes are ignored), but
 * the same code brings the UART up on a real chip running from its 16 MHz reset clock (HSI).
 */
#include "../board.h"
#include "../common/port.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB2ENR REG(0x40023844u)
#define GPIOA_MODER REG(0x40020000u)
#define GPIOA_AFRH REG(0x40020024u)

#define USART1_SR REG(0x40011000u)
#define USART1_DR REG(0x40011004u)
#define USART1_BRR REG(0x40011008u)
#define USART1_CR1 REG(0x4001100Cu)

#define SR_RXNE (1u << 5)
#define SR_TXE (1u << 7)
#define CR1_UE (1u << 13)
#define CR1_TE (1u << 3)
#define CR1_RE (1u << 2)

#define APB2_HZ 16000000u   /* HSI after reset, APB2 prescaler 1 */
#define BAUD 115200u

void board_init(void)
{
    RCC_AHB1ENR |= 1u << 0;   /* GPIOA clock */
    RCC_APB2ENR |= 1u << 4;   /* USART1 clock */
    /* PA9, PA10: alternate function mode (0b10), AF7 = USART1. */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18);
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4);
    USART1_BRR = (APB2_HZ + BAUD / 2u) / BAUD;   /* oversampling by 16: mantissa.fraction */
    USART1_CR1 = CR1_UE | CR1_TE | CR1_RE;
}

void board_uart_write(const uint8_t *p, size_t n)
{
    while (n--) {
        while (!(USART1_SR & SR_TXE))
            ;
        USART1_DR = *p++;
    }
}

int board_uart_read(uint8_t *byte, uint32_t timeout_loops)
{
    uint32_t polls = 0;
    while (!(USART1_SR & SR_RXNE)) {
        if (timeout_loops != 0 && ++polls >= timeout_loops)
            return 0;
    }
    *byte = (uint8_t)USART1_DR;   /* reading DR clears RXNE: QEMU then delivers the next byte */
    return 1;
}

uint32_t board_insn_count(void)
{
    return 0;   /* QEMU emulates no DWT cycle counter; see board_mark */
}

long board_semihost(uint32_t op, void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return (long)r0;
}

void board_halt(void)
{
    for (;;)
        __asm__ volatile("wfi");
}
