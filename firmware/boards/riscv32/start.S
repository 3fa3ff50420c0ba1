/*
 * start.S — RV32IMC start-up for QEMU's sifive_e (FE310-like): QEMU's reset code jumps to the
 * start of the XIP flash window's user area, 0x20400000, where .text.start is linked.
 * Also the two things C cannot express: the trap entry and the semihosting trap sequence.
 */
    .section .text.start, "ax"
    .globl _start
_start:
    /* gp first and with relaxation off: the linker would otherwise "relax" this very load
     * into a gp-relative one, reading the register it is about to set. */
    .option push
    .option norelax
    la      gp, __global_pointer$
    .option pop
    la      sp, _estack
    la      t0, trap_entry
    csrw    mtvec, t0               /* direct mode: every trap to trap_entry (4-byte aligned) */

    la      a0, _sdata              /* copy .data from its load address in flash */
    la      a1, _edata
    la      a2, _sidata
1:  bgeu    a0, a1, 2f
    lw      t0, 0(a2)
    sw      t0, 0(a0)
    addi    a0, a0, 4
    addi    a2, a2, 4
    j       1b
2:  la      a0, _sbss               /* zero .bss */
    la      a1, _ebss
3:  bgeu    a0, a1, 4f
    sw      zero, 0(a0)
    addi    a0, a0, 4
    j       3b
4:  call    main
    tail    board_exit              /* a0 = main's return value */

/* Any trap (an illegal instruction, a misaligned or bad access, an ebreak nobody handles):
 * report mcause and mepc and exit. The stack is still usable: traps here are never nested. */
    .section .text.trap_entry, "ax"
    .balign 4
trap_entry:
    csrr    a1, mcause
    csrr    a2, mepc
    la      a0, trap_what
    tail    board_fault

    .section .rodata.trap_what, "a"
trap_what:
    .asciz  "trap"

/* long board_semihost(uint32_t op, void *arg): a0 = op, a1 = arg, result in a0.
 * QEMU (and debuggers) recognise a semihosting call only as these three 32-bit instructions
 * in this order, within one page: hence no compressed encodings and a 16-byte alignment. */
    .section .text.board_semihost, "ax"
    .globl  board_semihost
    .option push
    .option norvc
    .balign 16
board_semihost:
    slli    zero, zero, 0x1f
    ebreak
    srai    zero, zero, 7
    ret
    .option pop
