/*
 * board_mark.c — the marker an instruction-counting QEMU plugin breaks on (see board.h).
 * Alone in its file so that no call site can see its (empty) body; noipa stops GCC from
 * inlining, cloning or merging it, or from assuming what it does not clobber; the linker
 * scripts KEEP its section so the symbol exists even in an image that never calls it.
 */
#include "../board.h"

__attribute__((noipa, used)) void board_mark(uint32_t id)
{
    __asm__ volatile("" : : "r"(id) : "memory");
}
