/*
 * har_kernels.c — see har_kernels.h for what each kernel computes. Portable C99: no malloc, no
 * floating point, no libc beyond <stdint.h>/<stddef.h>.
 */
#include "har_kernels.h"

size_t har_row_bytes(size_t c_in, size_t k)
{
    return (c_in * k + 3u) / 4u;
}

/* Code j of a packed row, sign-extended: 0b00 → 0, 0b01 → +1, 0b11 → −1. */
int har_code(const uint8_t *row, size_t j)
{
    unsigned f = ((unsigned)row[j >> 2] >> (2u * (unsigned)(j & 3u))) & 3u;
    return f == 1u ? 1 : (f == 3u ? -1 : 0);
}

/*
 * conv1d_ternary — how it is fast (about 1.0–2.1 executed instructions per MAC on a Cortex-M4
 * with the DSP extension, 2.1–3.4 on RV32IMC, for the bundled models' layers; the plain loop
 * took 4.2–7.6).
 *
 * Row by row (one output channel o at a time), in chunks of whole input channels of at most
 * HAR_CHUNK = 128 codes, the chunk's codes are decoded ONCE into two offset lists on the stack
 * (uint16 L[128]): where each +1 tap and each −1 tap reads the input, relative to the chunk's
 * first channel (offset c·t_in + k). Zero codes are dropped there and cost nothing afterwards.
 * While a code is at hand, the decoder also adds it into the row's 2·pad edge outputs (those
 * whose window reaches into the zero padding: t < pad and t >= t1 = t_in + pad − K + 1), so the
 * lists serve only the interior outputs [pad, t1), where every tap reads real input:
 *
 *   - in blocks of 16 consecutive t (then 8; the last block ends at t1 and overlaps the one
 *     before, keeping only its new outputs; fewer than 8 interior outputs go one at a time), per
 *     listed tap the inputs x[c][t+k−pad .. +15] are added into 16 sums held in registers;
 *   - on a Cortex-M4 (and any core with __ARM_FEATURE_DSP) the 16 bytes are four unaligned
 *     32-bit loads and eight UXTAB16 (SXTAB16 for int8 input): sixteen 8-bit adds into packed
 *     16-bit lanes, one register set for the +1 taps and one for the −1 taps (UXTAB16 has no
 *     subtracting form). With at most 128 codes per chunk a lane stays within 255·128 = 32640
 *     (int8: 128·128), so SSUB16 of the two sets is exact in int16; it is added to the int32
 *     accumulators once per chunk;
 *   - elsewhere (RV32, the host library) the same loops run in plain C with int32 sums.
 *
 * The common kernels (K, pad) = (3, 1), (5, 2), (7, 3) have decoders compiled with constant K
 * and pad (the tap loops unroll, the edge sums stay in registers); any other K <= HAR_KMAX with
 * pad < K and t_in >= K uses a generic decoder; anything else (K > HAR_KMAX, pad >= K, t_in < K,
 * n_in == 0) runs the plain loop har_conv_plain, one code at a time like the reference. Chunks
 * shrink where 16-bit offsets would overflow ((cn − 1)·t_in + K − 1 <= 65535). Integer sums are
 * exact in any order, so every path equals ops.conv1d_ternary bit for bit. Memory: no scratch
 * beyond the stack (about 0.5 KB deep in all: the 256-byte list and the frames).
 */
#define HAR_ROW_OPS(T, SUF)                                                                     \
    static void har_add_##SUF(int32_t *restrict a, const T *restrict x, size_t n)               \
    {                                                                                           \
        size_t i;                                                                               \
        for (i = 0; i < n; ++i)                                                                 \
            a[i] += x[i];                                                                       \
    }                                                                                           \
    static void har_sub_##SUF(int32_t *restrict a, const T *restrict x, size_t n)               \
    {                                                                                           \
        size_t i;                                                                               \
        for (i = 0; i < n; ++i)                                                                 \
            a[i] -= x[i];                                                                       \
    }

HAR_ROW_OPS(int8_t, s8)
HAR_ROW_OPS(uint8_t, u8)

#if defined(__GNUC__)
#define HAR_INLINE static inline __attribute__((always_inline))
#define HAR_NOINLINE __attribute__((noinline))
#define HAR_UNROLL _Pragma("GCC unroll 16")
#else
#define HAR_INLINE static inline
#define HAR_NOINLINE
#define HAR_UNROLL
#endif

/* Output length of a stride-1 convolution with zero padding on both sides; 0 when the kernel
 * is empty or longer than the padded input (both callers then do nothing). */
static size_t har_conv_out_len(size_t t_in, size_t k, size_t padding)
{
    return (k == 0 || t_in + 2u * padding < k) ? 0 : t_in + 2u * padding - k + 1u;
}

/* The plain loop: per output row, per non-zero tap (c, k), add or subtract the input row c
 * shifted by k − padding over the output positions that read inside [0, t_in). */
#define HAR_CONV_PLAIN(T, SUF)                                                                  \
    do {                                                                                        \
        const T *xs = (const T *)x;                                                             \
        for (o = 0; o < n_out; ++o) {                                                           \
            const uint8_t *row = w_packed + o * row_bytes;                                      \
            int32_t *a = acc + o * t_out;                                                       \
            for (t = 0; t < t_out; ++t)                                                         \
                a[t] = 0;                                                                       \
            for (c = 0; c < n_in; ++c) {                                                        \
                const T *xr = xs + c * t_in;                                                    \
                for (kk = 0; kk < k; ++kk) {                                                    \
                    int w = har_code(row, c * k + kk);                                          \
                    /* output t reads input t + kk − padding: valid for t in [t0, t1) */        \
                    size_t t0 = kk < padding ? padding - kk : 0;                                \
                    size_t t1;                                                                  \
                    if (w == 0 || kk >= t_in + padding)                                         \
                        continue;                                                               \
                    t1 = t_in + padding - kk;                                                   \
                    if (t1 > t_out)                                                             \
                        t1 = t_out;                                                             \
                    if (t0 >= t1)                                                               \
                        continue;                                                               \
                    if (w > 0)                                                                  \
                        har_add_##SUF(a + t0, xr + (t0 + kk - padding), t1 - t0);               \
                    else                                                                        \
                        har_sub_##SUF(a + t0, xr + (t0 + kk - padding), t1 - t0);               \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    } while (0)

static HAR_NOINLINE void har_conv_plain(const void *x, har_in_type x_type, size_t n_in, size_t t_in,
                           const uint8_t *w_packed, size_t row_bytes, size_t n_out, size_t k,
                           size_t padding, size_t t_out, int32_t *acc)
{
    size_t o, c, kk, t;
    if (x_type == HAR_IN_S8)
        HAR_CONV_PLAIN(int8_t, s8);
    else
        HAR_CONV_PLAIN(uint8_t, u8);
}

#define HAR_CHUNK 128u /* codes per chunk: bounds the 16-bit lanes (see above) */
#define HAR_KMAX 12u   /* taps the fast path takes (a channel's 2·K code bits fit a word) */
#define HAR_PADMAX 3u  /* the largest padding of the specialised decoders (K = 7) */

/* Stores (first chunk) or adds one output. */
#define HAR_PUT(a, i, v, first) ((a)[i] = (first) ? (int32_t)(v) : (a)[i] + (int32_t)(v))

/*
 * Decodes the channels [c0, c0 + cn) of a packed row (cn·K <= HAR_CHUNK, PAD < K <= HAR_KMAX,
 * t_in >= K, (cn − 1)·t_in + K − 1 <= 65535) into e: the +1 taps to e[0 .. np), the −1 taps to
 * e[HAR_CHUNK − nm .. HAR_CHUNK), each as its input offset (c − c0)·t_in + k; returns
 * np | nm << 16. While each code is at hand it also adds the chunk's share of the 2·PAD edge
 * outputs into a (stored when first, else added): output t < PAD from the taps k >= PAD − t,
 * output t1 + r (r < PAD) from the taps k <= K − 2 − r. xc: the input row of channel c0. The
 * code bits are read one byte at a time, in order, never past the byte of the chunk's last
 * code. UNROLLED: K and PAD are constants (the tap loops unroll and the edge sums live in
 * registers, PAD <= HAR_PADMAX); else the edge sums accumulate in a.
 */
#define HAR_DECODE(T, SUF, UNROLL, UNROLLED)                                                    \
    HAR_INLINE uint32_t har_decode_##SUF(const uint8_t *row, size_t c0, size_t cn, const size_t K, \
                                         const size_t PAD, size_t t_in, const T *xc, uint16_t *e, \
                                         int32_t *a, size_t t1, int first)                      \
    {                                                                                           \
        size_t j0 = c0 * K, kk, t;                                                              \
        const uint8_t *rp = row + (j0 >> 2);                                                    \
        unsigned n = 8u - 2u * (unsigned)(j0 & 3u);                                             \
        uint32_t off = 0;                                                                       \
        uint32_t cur = (uint32_t)*rp++ >> (2u * (unsigned)(j0 & 3u));                           \
        uint16_t *pp = e, *mp = e + HAR_CHUNK;                                                  \
        int32_t sbuf[2u * HAR_PADMAX];                                                          \
        int32_t *sl = UNROLLED ? sbuf : a, *sr = UNROLLED ? sbuf + HAR_PADMAX : a + t1;         \
        if (UNROLLED || first) {                                                                \
            UNROLL                                                                              \
            for (t = 0; t < PAD; ++t)                                                           \
                sl[t] = sr[t] = 0;                                                              \
        }                                                                                       \
        const T *xe0 = xc + (t_in - K + 1u);                                                    \
        const uint32_t off_end = (uint32_t)(cn * t_in);                                         \
        for (; off != off_end; off += (uint32_t)t_in) {                                         \
            const T *xr = xc + off, *xe = xe0 + off;                                            \
            uint32_t f;                                                                         \
            while (n < 2u * K) {                                                                \
                cur |= (uint32_t)*rp++ << n;                                                    \
                n += 8u;                                                                        \
            }                                                                                   \
            f = cur;                                                                            \
            cur >>= 2u * K;                                                                     \
            n -= 2u * (unsigned)K;                                                              \
            UNROLL                                                                              \
            for (kk = 0; kk < K; ++kk) {                                                        \
                if (!(f & ((uint32_t)1 << (2u * kk)))) /* 0b00 (and the invalid 0b10): zero */  \
                    continue;                                                                   \
                if (f & ((uint32_t)2 << (2u * kk))) { /* 0b11: −1 */                            \
                    *--mp = (uint16_t)(off + kk);                                               \
                    UNROLL                                                                      \
                    for (t = kk < PAD ? PAD - kk : 0; t < PAD; ++t)                             \
                        sl[t] -= xr[t + kk - PAD];                                              \
                    UNROLL                                                                      \
                    for (t = 0; t < (PAD < K - 1u - kk ? PAD : K - 1u - kk); ++t)               \
                        sr[t] -= xe[t + kk];                                                    \
                } else { /* 0b01: +1 */                                                         \
                    *pp++ = (uint16_t)(off + kk);                                               \
                    UNROLL                                                                      \
                    for (t = kk < PAD ? PAD - kk : 0; t < PAD; ++t)                             \
                        sl[t] += xr[t + kk - PAD];                                              \
                    UNROLL                                                                      \
                    for (t = 0; t < (PAD < K - 1u - kk ? PAD : K - 1u - kk); ++t)               \
                        sr[t] += xe[t + kk];                                                    \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
        if (UNROLLED) {                                                                         \
            UNROLL                                                                              \
            for (t = 0; t < PAD; ++t) {                                                         \
                HAR_PUT(a, t, sl[t], first);                                                    \
                HAR_PUT(a, t1 + t, sr[t], first);                                               \
            }                                                                                   \
        }                                                                                       \
        return (uint32_t)(pp - e) | (uint32_t)(e + HAR_CHUNK - mp) << 16;                      \
    }
HAR_DECODE(int8_t, s8, HAR_UNROLL, 1)
HAR_DECODE(uint8_t, u8, HAR_UNROLL, 1)
HAR_DECODE(int8_t, s8_any, , 0)
HAR_DECODE(uint8_t, u8_any, , 0)

/* One out-of-line function per common (K, PAD) (constants: the tap loops unroll) and a generic
 * one: separate frames keep conv1d_ternary's stack small. */
#define HAR_DECODE_FN(T, SUF, K, PAD)                                                           \
    static HAR_NOINLINE uint32_t har_decode##K##_##SUF(const uint8_t *row, size_t c0, size_t cn, \
                                                       size_t t_in, const T *xc, uint16_t *e,   \
                                                       int32_t *a, size_t t1, int first)        \
    {                                                                                           \
        return har_decode_##SUF(row, c0, cn, K##u, PAD##u, t_in, xc, e, a, t1, first);          \
    }
#define HAR_DECODE_FNS(T, SUF)                                                                  \
    HAR_DECODE_FN(T, SUF, 3, 1)                                                                 \
    HAR_DECODE_FN(T, SUF, 5, 2)                                                                 \
    HAR_DECODE_FN(T, SUF, 7, 3)                                                                 \
    static HAR_NOINLINE uint32_t har_decode_any_##SUF(const uint8_t *row, size_t c0, size_t cn,  \
                                                      size_t K, size_t PAD, size_t t_in,        \
                                                      const T *xc, uint16_t *e, int32_t *a,     \
                                                      size_t t1, int first)                     \
    {                                                                                           \
        return har_decode_##SUF##_any(row, c0, cn, K, PAD, t_in, xc, e, a, t1, first);          \
    }
HAR_DECODE_FNS(int8_t, s8)
HAR_DECODE_FNS(uint8_t, u8)

/* One output from the listed taps: Σ x[e] over [pb, pe) − Σ over [mb, me) (x at the output's
 * first input, every listed tap inside the input). */
#define HAR_SUM_ONE(T, SUF)                                                                     \
    static int32_t har_sum_one_##SUF(const T *x, const uint16_t *pb, const uint16_t *pe,        \
                                     const uint16_t *mb, const uint16_t *me)                    \
    {                                                                                           \
        int32_t s = 0;                                                                          \
        for (; pb < pe; ++pb)                                                                   \
            s += x[*pb];                                                                        \
        for (; mb < me; ++mb)                                                                   \
            s -= x[*mb];                                                                        \
        return s;                                                                               \
    }
HAR_SUM_ONE(int8_t, s8)
HAR_SUM_ONE(uint8_t, u8)

#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__) && defined(__BYTE_ORDER__) &&                    \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Cortex-M4/M7/M33 DSP: packed 16-bit lanes (see the comment above); byte i of a loaded word is
 * input i (little-endian). */
static inline uint32_t har_ld32(const void *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4); /* one LDR: v7E-M loads unaligned words */
    return v;
}
#define HAR_XTAB16(NAME, INSN)                                                                  \
    static inline uint32_t NAME(uint32_t a, uint32_t v)                                         \
    {                                                                                           \
        __asm__(INSN " %0, %1, %2" : "=r"(a) : "r"(a), "r"(v));                                 \
        return a;                                                                               \
    }                                                                                           \
    static inline uint32_t NAME##_r8(uint32_t a, uint32_t v)                                    \
    {                                                                                           \
        __asm__(INSN " %0, %1, %2, ror #8" : "=r"(a) : "r"(a), "r"(v));                         \
        return a;                                                                               \
    }
HAR_XTAB16(har_uxtab16, "uxtab16")
HAR_XTAB16(har_sxtab16, "sxtab16")

static inline uint32_t har_ssub16(uint32_t a, uint32_t b)
{
    uint32_t d;
    __asm__("ssub16 %0, %1, %2" : "=r"(d) : "r"(a), "r"(b));
    return d;
}

/* Low and high int16 lane of a word, sign-extended (GCC: conversions are modulo, >> arithmetic). */
#define HAR_LO16(d) ((int32_t)(int16_t)(d))
#define HAR_HI16(d) ((int32_t)(d) >> 16)

/* Accumulates the 8 lanes xb[e + 0 .. 7] of the taps [b, e_end) into XT-lanes r0..r3. */
#define HAR_LANES(XT, b, bend, r0, r1, r2, r3)                                                  \
    do {                                                                                        \
        if ((bend - b) & 1) {                                                                   \
            uint32_t v = har_ld32(xb + *b), w = har_ld32(xb4 + *b);                             \
            ++b;                                                                                \
            r0 = XT(r0, v), r1 = XT##_r8(r1, v), r2 = XT(r2, w), r3 = XT##_r8(r3, w);            \
        }                                                                                       \
        for (; b < bend; b += 2) {                                                              \
            uint32_t v = har_ld32(xb + b[0]), w = har_ld32(xb4 + b[0]);                         \
            uint32_t y = har_ld32(xb + b[1]), z = har_ld32(xb4 + b[1]);                         \
            r0 = XT(r0, v), r1 = XT##_r8(r1, v), r2 = XT(r2, w), r3 = XT##_r8(r3, w);            \
            r0 = XT(r0, y), r1 = XT##_r8(r1, y), r2 = XT(r2, z), r3 = XT##_r8(r3, z);            \
        }                                                                                       \
    } while (0)

/* 16 lanes xb[e + 0 .. 15] of the taps [b, bend) into XT-lanes r0..r7: r(2i) = (t4i, t4i+2),
 * r(2i+1) = (t4i+1, t4i+3). */
#define HAR_LANES16(XT, b, bend, r0, r1, r2, r3, r4, r5, r6, r7)                                \
    do {                                                                                        \
        for (; b < bend; ++b) {                                                                 \
            const uint8_t *q = (const uint8_t *)xb + *b;                                        \
            uint32_t v = har_ld32(q);                                                           \
            r0 = XT(r0, v), r1 = XT##_r8(r1, v);                                                \
            v = har_ld32(q + 4);                                                                \
            r2 = XT(r2, v), r3 = XT##_r8(r3, v);                                                \
            v = har_ld32(q + 8);                                                                \
            r4 = XT(r4, v), r5 = XT##_r8(r5, v);                                                \
            v = har_ld32(q + 12);                                                               \
            r6 = XT(r6, v), r7 = XT##_r8(r7, v);                                                \
        }                                                                                       \
    } while (0)

/* Outputs a[skip .. 8) of the block whose first input (tap offset 0) is xb. */
#define HAR_BLOCK(T, SUF, XT)                                                                   \
    static void har_block_##SUF(const T *xb, const uint16_t *pb, const uint16_t *pe,             \
                                const uint16_t *mb, const uint16_t *me, int32_t *a, unsigned skip, \
                                int first)                                                      \
    {                                                                                           \
        const T *xb4 = xb + 4;                                                                  \
        uint32_t p0 = 0, p1 = 0, p2 = 0, p3 = 0, m0 = 0, m1 = 0, m2 = 0, m3 = 0;                \
        HAR_LANES(XT, pb, pe, p0, p1, p2, p3);                                                  \
        HAR_LANES(XT, mb, me, m0, m1, m2, m3);                                                  \
        /* (t0, t2), (t1, t3), (t4, t6), (t5, t7): exact in int16 */                           \
        p0 = har_ssub16(p0, m0), p1 = har_ssub16(p1, m1);                                       \
        p2 = har_ssub16(p2, m2), p3 = har_ssub16(p3, m3);                                       \
        har_put8(a, p0, p1, p2, p3, skip, first);                                               \
    }                                                                                           \
    /* Outputs a[skip .. 16). */                                                                \
    static void har_block16_##SUF(const T *xb, const uint16_t *pb, const uint16_t *pe,           \
                                  const uint16_t *mb, const uint16_t *me, int32_t *a,           \
                                  unsigned skip, int first)                                     \
    {                                                                                           \
        uint32_t p0 = 0, p1 = 0, p2 = 0, p3 = 0, p4 = 0, p5 = 0, p6 = 0, p7 = 0;                \
        uint32_t m0 = 0, m1 = 0, m2 = 0, m3 = 0, m4 = 0, m5 = 0, m6 = 0, m7 = 0;                \
        HAR_LANES16(XT, pb, pe, p0, p1, p2, p3, p4, p5, p6, p7);                                \
        HAR_LANES16(XT, mb, me, m0, m1, m2, m3, m4, m5, m6, m7);                                \
        p0 = har_ssub16(p0, m0), p1 = har_ssub16(p1, m1);                                       \
        p2 = har_ssub16(p2, m2), p3 = har_ssub16(p3, m3);                                       \
        p4 = har_ssub16(p4, m4), p5 = har_ssub16(p5, m5);                                       \
        p6 = har_ssub16(p6, m6), p7 = har_ssub16(p7, m7);                                       \
        if (skip < 8u) {                                                                        \
            har_put8(a, p0, p1, p2, p3, skip, first);                                           \
            har_put8(a + 8, p4, p5, p6, p7, 0, first);                                          \
        } else {                                                                                \
            har_put8(a + 8, p4, p5, p6, p7, skip - 8u, first);                                 \
        }                                                                                       \
    }

/* Stores or adds lanes skip .. 7 of (t0, t2), (t1, t3), (t4, t6), (t5, t7). */
HAR_INLINE void har_put8(int32_t *a, uint32_t d0, uint32_t d1, uint32_t d2, uint32_t d3, unsigned skip,
                         int first)
{
    if (skip == 0 && first) {
        a[0] = HAR_LO16(d0), a[1] = HAR_LO16(d1), a[2] = HAR_HI16(d0), a[3] = HAR_HI16(d1);
        a[4] = HAR_LO16(d2), a[5] = HAR_LO16(d3), a[6] = HAR_HI16(d2), a[7] = HAR_HI16(d3);
    } else if (skip == 0) {
        a[0] += HAR_LO16(d0), a[1] += HAR_LO16(d1), a[2] += HAR_HI16(d0), a[3] += HAR_HI16(d1);
        a[4] += HAR_LO16(d2), a[5] += HAR_LO16(d3), a[6] += HAR_HI16(d2), a[7] += HAR_HI16(d3);
    } else { /* the overlapping last block: lanes before skip are done */
        switch (skip) {
        case 1: HAR_PUT(a, 1, HAR_LO16(d1), first); /* fall through */
        case 2: HAR_PUT(a, 2, HAR_HI16(d0), first); /* fall through */
        case 3: HAR_PUT(a, 3, HAR_HI16(d1), first); /* fall through */
        case 4: HAR_PUT(a, 4, HAR_LO16(d2), first); /* fall through */
        case 5: HAR_PUT(a, 5, HAR_LO16(d3), first); /* fall through */
        case 6: HAR_PUT(a, 6, HAR_HI16(d2), first); /* fall through */
        default: HAR_PUT(a, 7, HAR_HI16(d3), first); /* skip 7 */
        }
    }
}
HAR_BLOCK(int8_t, s8, har_sxtab16)
HAR_BLOCK(uint8_t, u8, har_uxtab16)

#else
/* Portable: eight or sixteen int32 sums (written out: a loop over an array of sums would not
 * stay in registers at -O2). */
#define HAR_S8(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7)
#define HAR_S16(M) M(0) M(1) M(2) M(3) HAR_SEQ M(4) M(5) M(6) M(7) HAR_SEQ M(8) M(9) M(10) M(11) \
    HAR_SEQ M(12) M(13) M(14) M(15)
/* Keeps GCC's pre-allocation scheduler from hoisting all sixteen loads of an entry ahead of their
 * adds (which spills sums on RV32): loads stay in groups of four. */
#if defined(__GNUC__)
#define HAR_SEQ __asm__ volatile("" ::: "memory");
#else
#define HAR_SEQ
#endif
#define HAR_DECL(i) int32_t s##i = 0;
#define HAR_ADD(i) s##i += q[i];
#define HAR_SUB(i) s##i -= q[i];
#define HAR_ST(i) a[i] = s##i;
#define HAR_ACC(i) a[i] += s##i;
#define HAR_SKIPPUT(i) if (i >= skip) HAR_PUT(a, i, s##i, first);
#define HAR_BLOCK_N(T, NAME, LANES)                                                             \
    static void NAME(const T *xb, const uint16_t *pb, const uint16_t *pe, const uint16_t *mb,   \
                     const uint16_t *me, int32_t *a, unsigned skip, int first)                  \
    {                                                                                           \
        LANES(HAR_DECL)                                                                         \
        for (; pb < pe; ++pb) {                                                                 \
            const T *q = xb + *pb;                                                              \
            LANES(HAR_ADD)                                                                      \
        }                                                                                       \
        for (; mb < me; ++mb) {                                                                 \
            const T *q = xb + *mb;                                                              \
            LANES(HAR_SUB)                                                                      \
        }                                                                                       \
        if (skip == 0 && first) {                                                               \
            LANES(HAR_ST)                                                                       \
        } else if (skip == 0) {                                                                 \
            LANES(HAR_ACC)                                                                      \
        } else {                                                                                \
            LANES(HAR_SKIPPUT)                                                                  \
        }                                                                                       \
    }
HAR_BLOCK_N(int8_t, har_block_s8, HAR_S8)
HAR_BLOCK_N(uint8_t, har_block_u8, HAR_S8)
HAR_BLOCK_N(int8_t, har_block16_s8, HAR_S16)
HAR_BLOCK_N(uint8_t, har_block16_u8, HAR_S16)
#endif

/* The fast path for one input type: per row, per chunk of ch channels: decode (the list and
 * the edge outputs), then the interior in blocks of 16 (then 8), the last one overlapping. */
#define HAR_CONV_FAST(T, SUF)                                                                   \
    static HAR_NOINLINE void har_conv_fast_##SUF(const T *xs, size_t n_in, size_t t_in,         \
                                                 const uint8_t *w_packed, size_t row_bytes,     \
                                                 size_t n_out, size_t k, size_t padding,        \
                                                 size_t t_out, size_t ch, int32_t *acc)         \
    {                                                                                           \
        uint16_t L[HAR_CHUNK];                                                                  \
        const uint16_t *me = L + HAR_CHUNK;                                                     \
        const size_t t1 = t_in + padding - k + 1u; /* interior: [padding, t1) */               \
        size_t o, c0, t;                                                                        \
        for (o = 0; o < n_out; ++o) {                                                           \
            const uint8_t *row = w_packed + o * row_bytes;                                      \
            int32_t *a = acc + o * t_out;                                                       \
            for (c0 = 0; c0 < n_in; c0 += ch) {                                                 \
                size_t cn = n_in - c0 < ch ? n_in - c0 : ch;                                    \
                const T *xc = xs + c0 * t_in;                                                   \
                const uint16_t *pe, *mb;                                                        \
                int first = c0 == 0;                                                            \
                uint32_t n;                                                                     \
                if (k == 3u && padding == 1u)                                                   \
                    n = har_decode3_##SUF(row, c0, cn, t_in, xc, L, a, t1, first);              \
                else if (k == 5u && padding == 2u)                                              \
                    n = har_decode5_##SUF(row, c0, cn, t_in, xc, L, a, t1, first);              \
                else if (k == 7u && padding == 3u)                                              \
                    n = har_decode7_##SUF(row, c0, cn, t_in, xc, L, a, t1, first);              \
                else                                                                            \
                    n = har_decode_any_##SUF(row, c0, cn, k, padding, t_in, xc, L, a, t1, first); \
                pe = L + (n & 0xFFFFu), mb = me - (n >> 16);                                    \
                if (t1 - padding >= 16u) {                                                      \
                    for (t = padding; t + 16u <= t1; t += 16u)                                  \
                        har_block16_##SUF(xc + (t - padding), L, pe, mb, me, a + t, 0, first);  \
                    if (t1 - t > 8u)                                                            \
                        har_block16_##SUF(xc + (t1 - 16u - padding), L, pe, mb, me,             \
                                          a + (t1 - 16u), (unsigned)(16u - (t1 - t)), first);   \
                    else if (t < t1)                                                            \
                        har_block_##SUF(xc + (t1 - 8u - padding), L, pe, mb, me, a + (t1 - 8u), \
                                        (unsigned)(8u - (t1 - t)), first);                      \
                } else if (t1 - padding >= 8u) {                                                \
                    for (t = padding; t + 8u <= t1; t += 8u)                                    \
                        har_block_##SUF(xc + (t - padding), L, pe, mb, me, a + t, 0, first);    \
                    if (t < t1)                                                                 \
                        har_block_##SUF(xc + (t1 - 8u - padding), L, pe, mb, me, a + (t1 - 8u), \
                                        (unsigned)(8u - (t1 - t)), first);                      \
                } else {                                                                        \
                    for (t = padding; t < t1; ++t) {                                            \
                        int32_t s = har_sum_one_##SUF(xc + (t - padding), L, pe, mb, me);       \
                        HAR_PUT(a, t, s, first);                                                \
                    }                                                                           \
                }                                                                               \
            }                                                                                   \
        }                                                                                       \
    }
HAR_CONV_FAST(int8_t, s8)
HAR_CONV_FAST(uint8_t, u8)

size_t conv1d_ternary(const void *x, har_in_type x_type, size_t n_in, size_t t_in,
                      const uint8_t *w_packed, size_t row_bytes, size_t n_out, size_t k,
                      size_t padding, int32_t *acc)
{
    size_t t_out = har_conv_out_len(t_in, k, padding), ch;
    if (t_out == 0)
        return 0;
    /* channels per chunk: <= HAR_CHUNK codes, 16-bit offsets (cn − 1)·t_in + k − 1 */
    ch = k <= HAR_KMAX && padding < k && t_in >= k ? HAR_CHUNK / k : 0; /* (k >= 1: t_out > 0) */
    if (ch > n_in)
        ch = n_in;
    if (ch > 1u && ch - 1u > (65535u - (k - 1u)) / t_in)
        ch = (65535u - (k - 1u)) / t_in + 1u;
    if (ch == 0) /* K > HAR_KMAX, padding >= K, t_in < K (no interior output) or n_in == 0 */
        har_conv_plain(x, x_type, n_in, t_in, w_packed, row_bytes, n_out, k, padding, t_out, acc);
    else if (x_type == HAR_IN_S8)
        har_conv_fast_s8((const int8_t *)x, n_in, t_in, w_packed, row_bytes, n_out, k, padding, t_out,
                         ch, acc);
    else
        har_conv_fast_u8((const uint8_t *)x, n_in, t_in, w_packed, row_bytes, n_out, k, padding, t_out,
                         ch, acc);
    return t_out;
}

size_t maxpool1d(const int32_t *acc, size_t c, size_t t_in, size_t pool, int32_t *out)
{
    size_t t_out, ch, t, p;
    if (pool == 0)
        return 0;
    t_out = t_in / pool;
    if (pool == 2u) {   /* the common case, unrolled (in place stays safe: y[t] is written after
                           a[2t], a[2t+1] are read, and 2t >= t) */
        for (ch = 0; ch < c; ++ch) {
            const int32_t *a = acc + ch * t_in;
            int32_t *y = out + ch * t_out;
            for (t = 0; t < t_out; ++t) {
                int32_t u = a[2u * t], v = a[2u * t + 1u];
                y[t] = v > u ? v : u;
            }
        }
        return t_out;
    }
    for (ch = 0; ch < c; ++ch) {
        const int32_t *a = acc + ch * t_in;
        int32_t *y = out + ch * t_out;
        for (t = 0; t < t_out; ++t) {
            int32_t best = a[t * pool];
            for (p = 1; p < pool; ++p)
                if (a[t * pool + p] > best)
                    best = a[t * pool + p];
            y[t] = best;
        }
    }
    return t_out;
}

/* floor(v / 2^s) for 0 <= s <= 62 without the implementation-defined >> of a negative value:
 * for v < 0, floor(v / 2^s) = ~(~v >> s) where ~v = −v − 1 >= 0. */
static int64_t har_asr(int64_t v, int32_t s)
{
    return v >= 0 ? (v >> s) : ~((~v) >> s);
}

/* (m·acc + bias + 2^(shift−1)) >> shift, arithmetic; shift 0: m·acc + bias. */
int64_t har_rescale(int32_t acc, int32_t m, int32_t shift, int64_t bias)
{
    int64_t v = (int64_t)m * (int64_t)acc + bias;
    if (shift <= 0)
        return v;
    return har_asr(v + ((int64_t)1 << (shift - 1)), shift);
}

void requantize(const int32_t *acc, size_t c, size_t t, const int32_t *m, const int32_t *shift,
                const int64_t *bias, int32_t lo, int32_t hi, uint8_t *out)
{
    size_t ch, i;
    for (ch = 0; ch < c; ++ch) {
        const int32_t *a = acc + ch * t;
        uint8_t *y = out + ch * t;
        if (shift[ch] >= 1 && shift[ch] <= 62) {
            /* Branch-free floor shift, so the loop vectorises: with u = v + 2^63 (mod 2^64, i.e. v
             * mapped order-preserving onto 0..2^64−1), floor(v/2^s) = floor(u/2^s) − 2^(63−s)
             * exactly, since 2^s divides 2^63; u >> s < 2^63 fits int64. Same value as har_asr. */
            const int64_t mm = m[ch], b = bias[ch] + ((int64_t)1 << (shift[ch] - 1));
            const int64_t sub = (int64_t)1 << (63 - shift[ch]);
            const unsigned s = (unsigned)shift[ch];
            for (i = 0; i < t; ++i) {
                int64_t v = mm * (int64_t)a[i] + b;
                int64_t q = (int64_t)((((uint64_t)v) + ((uint64_t)1 << 63)) >> s) - sub;
                q = q < lo ? lo : q;
                q = q > hi ? hi : q;
                y[i] = (uint8_t)q;
            }
            continue;
        }
        for (i = 0; i < t; ++i) {
            int64_t v = har_rescale(a[i], m[ch], shift[ch], bias[ch]);
            if (v < lo)
                v = lo;
            if (v > hi)
                v = hi;
            y[i] = (uint8_t)v;
        }
    }
}

void global_sum_pool(const uint8_t *x, size_t c, size_t t, int32_t *out)
{
    size_t ch, i;
    for (ch = 0; ch < c; ++ch) {
        int32_t s = 0;
        for (i = 0; i < t; ++i)
            s += (int32_t)x[ch * t + i];
        out[ch] = s;
    }
}

void fc_int8(const int32_t *feat, size_t n_feat, const int8_t *codes, size_t row_stride, size_t n_out,
             int32_t *out)
{
    size_t o, c;
    for (o = 0; o < n_out; ++o) {
        const int8_t *w = codes + o * row_stride;
        int32_t s = 0;
        for (c = 0; c < n_feat; ++c)
            s += (int32_t)w[c] * feat[c];
        out[o] = s;
    }
}

void requantize_logits(const int32_t *acc, size_t n, const int32_t *m, const int32_t *shift,
                       const int64_t *bias, int32_t *logits)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        int64_t v = har_rescale(acc[i], m[i], shift[i], bias[i]);
        if (v < INT32_MIN)
            v = INT32_MIN;
        if (v > INT32_MAX)
            v = INT32_MAX;
        logits[i] = (int32_t)v;
    }
}

void quantize_raw_i16(const int16_t *raw, size_t n, size_t c, const int32_t *m, const int32_t *shift,
                      const int64_t *bias, int8_t *out, size_t out_stride)
{
    size_t t, ch;
    for (t = 0; t < n; ++t) {
        for (ch = 0; ch < c; ++ch) {
            int64_t v = har_rescale(raw[t * c + ch], m[ch], shift[ch], bias[ch]);
            out[ch * out_stride + t] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
        }
    }
}

size_t argmax_margin(const int32_t *logits, size_t n, int64_t *margin)
{
    size_t i, best = 0;
    int64_t second = INT64_MIN;
    if (n < 2) {
        *margin = 0;
        return 0;
    }
    for (i = 1; i < n; ++i) {
        if (logits[i] > logits[best]) {
            second = logits[best];
            best = i;
        } else if (logits[i] > second) {
            second = logits[i];
        }
    }
    *margin = (int64_t)logits[best] - second;
    return best;
}
