/*
 * libc.c — the four string functions GCC may call on its own, even with -ffreestanding (struct
 * copies and initialisers, zeroed arrays, loops it recognises): without them a -nostdlib link
 * fails. Plain byte loops, small rather than fast; apps should not rely on them for bulk work.
 * -fno-tree-loop-distribute-patterns (boards.mk, this file only) stops GCC from turning these
 * very loops back into calls to themselves.
 */
#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *p = a, *q = b;
    for (; n--; ++p, ++q)
        if (*p != *q)
            return *p < *q ? -1 : 1;
    return 0;
}
