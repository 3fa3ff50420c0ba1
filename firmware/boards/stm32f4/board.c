/*
 * board.c — STM32F405 peripherals: USART1 (PA9 TX, PA10 RX, AF7), TIM2 as the microsecond
 * clock, semihosting, halt.
 *
 * QEMU's netduinoplus2 models USART1 at 0x40011000 as `-serial` 0; it drops received bytes
 * until CR1 has UE, TE and RE. RCC and GPIO are not modelled there (writes are ignored, reads
 * give 0), but the same code brings the UART up on a real chip running from its 16 MHz reset
 * clock (HSI).
 *
 * TIM2 is a 32-bit timer: prescaled to 1 MHz and left free-running, its counter is
 * board_time_us() with the protocol's 32-bit wrap for free. Its input clock differs: 16 MHz on
 * a real chip after reset (APB1 = HCLK = HSI), 1 GHz in QEMU 7.2's model (stm32f2xx_timer's
 * "clock-frequency" on this SoC). A real chip reports HSIRDY in RCC_CR after reset; QEMU, which
 * models no RCC, reads 0 there — that tells them apart without a build option.
 */
#include "../board.h"
#include "../common/port.h"

#define REG(addr) (*(volatile uint32_t *)(addr))

#define RCC_CR REG(0x40023800u)
#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB1ENR REG(0x40023840u)
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

#define TIM2_CR1 REG(0x40000000u)
#define TIM2_EGR REG(0x40000014u)
#define TIM2_CNT REG(0x40000024u)
#define TIM2_PSC REG(0x40000028u)
#define TIM2_ARR REG(0x4000002Cu)

#define RCC_CR_HSIRDY (1u << 1)
#define APB2_HZ 16000000u   /* HSI after reset, APB2 prescaler 1 */
#define TIM2_HZ 16000000u   /* HSI after reset, APB1 prescaler 1: the timer runs at PCLK1 */
#define QEMU_TIM_HZ 1000000000u
#define BAUD BOARD_UART_BAUD

static void time_init(void)
{
    uint32_t hz = (RCC_CR & RCC_CR_HSIRDY) ? TIM2_HZ : QEMU_TIM_HZ;
    RCC_APB1ENR |= 1u << 0;          /* TIM2 clock */
    TIM2_PSC = hz / 1000000u - 1u;   /* 1 MHz */
    TIM2_ARR = 0xFFFFFFFFu;          /* count through all 32 bits */
    TIM2_EGR = 1u;                   /* UG: load the prescaler now, not at the first overflow */
    TIM2_CR1 = 1u;                   /* CEN */
}

uint32_t board_time_us(void)
{
    return TIM2_CNT;
}

void board_init(void)
{
    RCC_AHB1ENR |= 1u << 0;   /* GPIOA clock */
    RCC_APB2ENR |= 1u << 4;   /* USART1 clock */
    /* PA9, PA10: alternate function mode (0b10), AF7 = USART1. */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18);
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4);
    USART1_BRR = (APB2_HZ + BAUD / 2u) / BAUD;   /* oversampling by 16: mantissa.fraction */
    USART1_CR1 = CR1_UE | CR1_TE | CR1_RE;
    time_init();
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
