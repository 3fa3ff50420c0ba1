/*
 * startup.c — STM32F405 (Cortex-M4F) reset and vector table.
 *
 * The core loads SP from word 0 of the vector table and jumps to word 1 (Reset_Handler); flash
 * at 0x08000000 is aliased at 0 on reset (BOOT0 low), which is where QEMU's netduinoplus2 and a
 * real chip both start. No interrupt is ever enabled, so every slot has the fault handler: the
 * table is complete only so that a stray exception is reported instead of jumping to garbage.
 */
#include <stdint.h>

#include "../board.h"
#include "../common/port.h"

int main(void);

/* Linker script symbols (link.ld). */
extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)

void Reset_Handler(void) __attribute__((noreturn));
void Fault_Handler(void);

void Reset_Handler(void)
{
    uint32_t *src = _sidata, *dst = _sdata;
    while (dst < _edata)
        *dst++ = *src++;
    for (dst = _sbss; dst < _ebss; ++dst)
        *dst = 0;
    /* CP10 and CP11 full access: the hard-float ABI may use FPU registers anywhere (and GCC
     * can use them for plain copies), so enable the FPU before any C beyond this point. */
    SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    board_exit(main());
}

/* The C half of the fault handlers: `frame` is the exception stack frame the core pushed
 * (r0-r3, r12, lr, pc, xpsr), so frame[6] is the faulting instruction's address. */
void Fault_Report(const uint32_t *frame) __attribute__((noreturn, used));
void Fault_Report(const uint32_t *frame)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    ipsr &= 0x1FFu;
    if (ipsr >= 3u && ipsr <= 6u)
        /* cause = the exception number (3 HardFault, 4 MemManage, 5 BusFault, 6 UsageFault)
         * in bits 0..7, the fault status register CFSR's low 24 bits above it. */
        board_fault("exception", ipsr | (SCB_CFSR << 8), frame[6]);
    board_fault("unexpected interrupt", ipsr, frame[6]);
}

/* Naked: no prologue may move the stack pointer before it is read. Bit 2 of the EXC_RETURN
 * value in lr says which stack holds the frame (always MSP here: no RTOS, no PSP). */
__attribute__((naked)) void Fault_Handler(void)
{
    __asm__ volatile("tst lr, #4\n\t"
                     "ite eq\n\t"
                     "mrseq r0, msp\n\t"
                     "mrsne r0, psp\n\t"
                     "b Fault_Report\n\t");
}

typedef void (*vector)(void);

/* 16 system entries + the STM32F405's 82 IRQs (RM0090, table 61). Every exception and
 * interrupt goes to Fault_Handler: none is expected (no interrupt is ever enabled). */
__attribute__((section(".isr_vector"), used)) static const vector vectors[16 + 82] = {
    [0] = (vector)(uintptr_t)_estack,   /* initial SP */
    [1] = Reset_Handler,
    [2 ... 6] = Fault_Handler,          /* NMI, HardFault, MemManage, BusFault, UsageFault */
    [11] = Fault_Handler,               /* SVCall (7..10, 13: reserved) */
    [12] = Fault_Handler,               /* DebugMonitor */
    [14 ... 16 + 82 - 1] = Fault_Handler, /* PendSV, SysTick, IRQ0..81 */
};
