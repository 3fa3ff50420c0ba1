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
 * Loop order: per output row o, per non-zero tap (c, k), add or subtract the input row c shifted
 * by k − padding over the output positions whose input index lies inside [0, t_in) (the others
 * read the zero padding and contribute nothing). Each weight code is decoded once per output
 * row, the inner loop is a contiguous add or subtract of one input row into one accumulator
 * row (restrict-qualified: the accumulator row never overlaps the input), and the zero weights
 * (a large share of ternary codes) cost nothing.
 */
#define HAR_ROW_OPS(T, SUF)                                                                     \
    static void har_add_##SUF(int32_t *restrict a, const T *restrict x, size_t n)               \
    {                                                                                           \
        size_t i = 0;                                                                           \
        for (; i + 4u <= n; i += 4u) {                                                          \
            a[i] += x[i];                                                                       \
            a[i + 1u] += x[i + 1u];                                                             \
            a[i + 2u] += x[i + 2u];                                                             \
            a[i + 3u] += x[i + 3u];                                                             \
        }                                                                                       \
        for (; i < n; ++i)                                                                      \
            a[i] += x[i];                                                                       \
    }                                                                                           \
    static void har_sub_##SUF(int32_t *restrict a, const T *restrict x, size_t n)               \
    {                                                                                           \
        size_t i = 0;                                                                           \
        for (; i + 4u <= n; i += 4u) {                                                          \
            a[i] -= x[i];                                                                       \
            a[i + 1u] -= x[i + 1u];                                                             \
            a[i + 2u] -= x[i + 2u];                                                             \
            a[i + 3u] -= x[i + 3u];                                                             \
        }                                                                                       \
        for (; i < n; ++i)                                                                      \
            a[i] -= x[i];                                                                       \
    }

HAR_ROW_OPS(int8_t, s8)
HAR_ROW_OPS(uint8_t, u8)

/* Output length of a stride-1 convolution with zero padding on both sides; 0 when the kernel
 * is empty or longer than the padded input (both callers then do nothing). */
static size_t har_conv_out_len(size_t t_in, size_t k, size_t padding)
{
    return (k == 0 || t_in + 2u * padding < k) ? 0 : t_in + 2u * padding - k + 1u;
}

#define HAR_CONV_BODY(T, SUF)                                                                   \
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

size_t conv1d_ternary(const void *x, har_in_type x_type, size_t n_in, size_t t_in,
                      const uint8_t *w_packed, size_t row_bytes, size_t n_out, size_t k,
                      size_t padding, int32_t *acc)
{
    size_t t_out = har_conv_out_len(t_in, k, padding), o, c, kk, t;
    if (t_out == 0)
        return 0;
    if (x_type == HAR_IN_S8)
        HAR_CONV_BODY(int8_t, s8);
    else
        HAR_CONV_BODY(uint8_t, u8);
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
