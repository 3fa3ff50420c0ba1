/*
 * har_dense.c — see har_dense.h. C99; AVX2 intrinsics where the compiler targets AVX2
 * (-march=native on the host), the same sums in portable C otherwise.
 */
#include "har_dense.h"

#include <string.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

const char *har_dense_simd(void)
{
#if defined(__AVX2__)
    return "avx2";
#else
    return "portable";
#endif
}

static size_t round_up(size_t v, size_t to)
{
    return (v + to - 1u) / to * to;
}

/* One block's geometry at one width. */
typedef struct {
    size_t n_in, cp;      /* input channels, and as stored (row length of the input rows) */
    size_t k, pad, t_in;
    size_t tc, tcb, tp;   /* conv outputs, rounded up to HAR_DENSE_TBLOCK, after pooling */
    size_t rows;          /* input rows the GEMM reads: tcb + k − 1 (>= t_in + 2·pad) */
    size_t n_out, op;     /* output channels, and as stored */
    size_t quads;         /* K·cp / 4 weight quads per output channel */
    int32_t zp;           /* offset added to the stored inputs (128 for the int8 window, else 0) */
} har_dense_block;

/* Geometry of block i given its input (n_in channels stored as cp, t_in samples); HAR_OK or
 * HAR_ERR_SHAPE when the block has no output sample. */
static int block_geometry(const har_net *net, size_t i, size_t n_in, size_t cp, size_t t_in, size_t n_out,
                          har_dense_block *g)
{
    g->zp = i == 0 ? 128 : 0;
    g->n_in = n_in;
    g->cp = cp;
    g->k = net->kernels[i];
    g->pad = net->padding[i];
    g->t_in = t_in;
    if (g->k == 0 || t_in + 2u * g->pad < g->k || net->pools[i] == 0)
        return HAR_ERR_SHAPE;
    g->tc = t_in + 2u * g->pad - g->k + 1u;
    g->tp = g->tc / net->pools[i];
    if (g->tp == 0 || net->act_levels[i] > 255u)
        return HAR_ERR_SHAPE;
    g->tcb = round_up(g->tc, HAR_DENSE_TBLOCK);
    g->rows = g->tcb + g->k - 1u;
    g->n_out = n_out;
    g->op = round_up(n_out, HAR_DENSE_LANES);
    g->quads = g->k * cp / 4u;  /* cp is a multiple of 4 */
    return HAR_OK;
}

/* Channel counts of width `width` (full width when width == n_widths: the sizing case). */
static int width_channels(const har_net *net, uint32_t width, const uint32_t **wc)
{
    size_t i;
    if (width > net->n_widths || net->n_blocks == 0 || net->n_classes < 1)
        return width > net->n_widths ? HAR_ERR_WIDTH : HAR_ERR_SHAPE;
    *wc = width == net->n_widths ? net->channels : net->width_channels + (size_t)width * net->n_blocks;
    for (i = 0; i < net->n_blocks; ++i)
        if ((*wc)[i] < 1u || (*wc)[i] > net->channels[i])
            return HAR_ERR_SHAPE;
    return HAR_OK;
}

/* Walks the blocks of one width; calls nothing, fills g[0..n_blocks). */
#define HAR_MAX_BLOCKS 16u
static int geometry(const har_net *net, uint32_t width, har_dense_block *g)
{
    const uint32_t *wc;
    size_t i, n_in = net->in_channels, cp = round_up(net->in_channels, 4u), t = net->window;
    int rc = width_channels(net, width, &wc);
    if (rc != HAR_OK)
        return rc;
    if (net->n_blocks > HAR_MAX_BLOCKS)
        return HAR_ERR_SHAPE;
    for (i = 0; i < net->n_blocks; ++i) {
        rc = block_geometry(net, i, n_in, cp, t, wc[i], &g[i]);
        if (rc != HAR_OK)
            return rc;
        n_in = g[i].n_out;
        cp = g[i].op;
        t = g[i].tp;
    }
    return HAR_OK;
}

/* One block's decoded section (har_dense_decode), all arrays over the op stored channels:
 *   corr  int32 [op]   zp·Σ_j w[o][j], subtracted from the sums (see gemm)
 *   m     int32 [op]   requantization multipliers (0 for padded channels)
 *   add   uint64 [op]  bias + 2^(s−1) + 2^63         ┐ per group of 8 channels: the even
 *   shift uint64 [op]  s                             │ channels 0, 2, 4, 6 first, then the
 *   sub   uint64 [op]  2^(63−s)                      ┘ odd ones (the lanes of _mm256_mul_epi32)
 *   w     int8 [quads][op][4]
 * Padded channels get m = 0, add = 2^63 + 1, s = 1, sub = 2^62: their code is 0. */
typedef struct {
    int32_t *corr, *m;
    uint64_t *add, *shift, *sub;
    int8_t *w;
} har_dense_section;

static size_t section_bytes(const har_dense_block *g)
{
    return 32u * g->op + 4u * g->quads * g->op;
}

static void section_at(const har_dense_block *g, const uint8_t *base, har_dense_section *s)
{
    uint8_t *b = (uint8_t *)(uintptr_t)base;   /* 32-byte multiples from a 4-byte aligned base */
    s->corr = (int32_t *)(void *)b;
    s->m = (int32_t *)(void *)(b + 4u * g->op);
    s->add = (uint64_t *)(void *)(b + 8u * g->op);
    s->shift = s->add + g->op;
    s->sub = s->shift + g->op;
    s->w = (int8_t *)(b + 32u * g->op);
}

/* Position of channel o in the even/odd grouped tables. */
static size_t grouped(size_t o)
{
    size_t l = o % 8u;
    return o - l + (l % 2u) * 4u + l / 2u;
}

size_t har_dense_weights_len(const har_net *net, uint32_t width)
{
    har_dense_block g[HAR_MAX_BLOCKS];
    size_t i, n = 0;
    if (width >= net->n_widths || geometry(net, width, g) != HAR_OK)
        return 0;
    for (i = 0; i < net->n_blocks; ++i)
        n += section_bytes(&g[i]);
    return n;
}

int har_dense_decode(const har_net *net, uint32_t width, uint8_t *w, size_t len)
{
    har_dense_block g[HAR_MAX_BLOCKS];
    size_t i, q, o, e;
    int rc;
    if (width >= net->n_widths)
        return HAR_ERR_WIDTH;
    rc = geometry(net, width, g);
    if (rc != HAR_OK)
        return rc;
    if (len < har_dense_weights_len(net, width))
        return HAR_ERR_SCRATCH;
    for (i = 0; i < net->n_blocks; ++i) {
        size_t c_full_in = i == 0 ? net->in_channels : net->channels[i - 1];
        size_t rb = har_row_bytes(c_full_in, g[i].k);
        const har_requant *r = net->requant + (size_t)width * net->n_blocks + i;
        har_dense_section sec;
        int8_t *wq;
        section_at(&g[i], w, &sec);
        wq = sec.w;
        for (o = 0; o < g[i].op; ++o) {
            size_t at = grouped(o);
            int ok = o < g[i].n_out && r->shift[o] >= 1 && r->shift[o] <= 62;
            sec.corr[o] = 0;
            sec.m[o] = ok ? r->m[o] : 0;
            sec.shift[at] = ok ? (uint64_t)r->shift[o] : 1u;
            sec.add[at] = (ok ? (uint64_t)r->bias[o] + ((uint64_t)1 << (r->shift[o] - 1)) : 1u) + ((uint64_t)1 << 63);
            sec.sub[at] = (uint64_t)1 << (63u - sec.shift[at]);
        }
        for (q = 0; q < g[i].quads; ++q)
            for (o = 0; o < g[i].op; ++o)
                for (e = 0; e < 4u; ++e) {
                    size_t j = 4u * q + e, kk = j / g[i].cp, c = j % g[i].cp;
                    int8_t v = (o < g[i].n_out && c < g[i].n_in)
                                   ? (int8_t)har_code(net->conv[i] + o * rb, c * g[i].k + kk) /* packed: c·K + k */
                                   : (int8_t)0;
                    *wq++ = v;
                    sec.corr[o] += g[i].zp * v;     /* Σ_j w·(x + zp) − zp·Σ_j w = Σ_j w·x */
                }
        w += section_bytes(&g[i]);
    }
    return HAR_OK;
}

/* Work buffer: [acc int32: max tcb·op] [rows A uint8: max rows·cp] [rows B uint8: same]
 * [features int32: channels_last] [FC accumulators int32: n_classes], each in int32 units. */
typedef struct {
    size_t acc, rows, feat;
} har_dense_sizes;

static int work_sizes(const har_net *net, har_dense_sizes *s)
{
    har_dense_block g[HAR_MAX_BLOCKS];
    size_t i;
    int rc = geometry(net, net->n_widths, g);   /* full width: every width fits */
    if (rc != HAR_OK)
        return rc;
    s->acc = 0;
    s->rows = 0;
    for (i = 0; i < net->n_blocks; ++i) {
        size_t a = g[i].tcb * g[i].op, r = (g[i].rows * g[i].cp + 3u) / 4u;
        size_t last = (g[i].tp * g[i].op + 3u) / 4u;   /* the last block's codes, before the sum */
        if (a > s->acc)
            s->acc = a;
        if (r > s->rows)
            s->rows = r;
        if (last > s->rows)
            s->rows = last;
    }
    s->feat = g[net->n_blocks - 1u].op;
    return HAR_OK;
}

size_t har_dense_work_len(const har_net *net)
{
    har_dense_sizes s;
    if (work_sizes(net, &s) != HAR_OK)
        return 0;
    return s.acc + 2u * s.rows + s.feat + net->n_classes;
}

/* ------------------------------------------------------------------ GEMM */

/* acc[t][o] = Σ_j w[o][j]·x[t][j] − corr[o] for t < tcb, o < op, where x[t] is the run of K·cp
 * input bytes starting at row t (corr removes the input offset zp, see har_dense_decode). */
#if defined(__AVX2__)
static __m256i quad_at(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);   /* four input bytes, broadcast to every 32-bit lane */
    return _mm256_set1_epi32(v);
}

/* acc += madd(s, 1): the int16 pair sums of s, widened to one int32 per output channel. */
static void flush(int32_t *acc, __m256i s)
{
    const __m256i sum = _mm256_madd_epi16(s, _mm256_set1_epi16(1));
    _mm256_storeu_si256((__m256i *)acc, _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)acc), sum));
}

/* Per output channel o and 4 inputs, _mm256_maddubs_epi16(x bytes, w bytes) leaves two int16
 * pair sums (|·| <= 2·255); up to HAR_DENSE_CHUNK quads are summed in int16 without overflow
 * (64·510 = 32640 < 2^15) before they are widened into the int32 accumulators. */
#define HAR_DENSE_CHUNK 64u

static void gemm(const har_dense_block *g, const int8_t *w, const int32_t *corr, const uint8_t *x, int32_t *acc)
{
    const size_t cp = g->cp, op = g->op, wrow = 4u * g->op;
    size_t o0, t0, q, q0, tt;
    for (t0 = 0; t0 < g->tcb; ++t0)                        /* start from −corr */
        for (o0 = 0; o0 < op; ++o0)
            acc[t0 * op + o0] = -corr[o0];
    for (o0 = 0; o0 + 16u <= op; o0 += 16u) {             /* 16 output channels × 4 times */
        for (t0 = 0; t0 < g->tcb; t0 += 4u) {
            const uint8_t *x0 = x + t0 * cp, *x1 = x0 + cp, *x2 = x1 + cp, *x3 = x2 + cp;
            int32_t *y = acc + t0 * op + o0;
            for (q0 = 0; q0 < g->quads; q0 += HAR_DENSE_CHUNK) {
                const size_t q1 = q0 + HAR_DENSE_CHUNK < g->quads ? q0 + HAR_DENSE_CHUNK : g->quads;
                const int8_t *wp = w + q0 * wrow + 4u * o0;
                __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
                for (q = q0; q < q1; ++q, wp += wrow) {
                    const __m256i w0 = _mm256_loadu_si256((const __m256i *)wp);
                    const __m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + 32));
                    __m256i b = quad_at(x0 + 4u * q);
                    s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(b, w0));
                    s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(b, w1));
                    b = quad_at(x1 + 4u * q);
                    s2 = _mm256_add_epi16(s2, _mm256_maddubs_epi16(b, w0));
                    s3 = _mm256_add_epi16(s3, _mm256_maddubs_epi16(b, w1));
                    b = quad_at(x2 + 4u * q);
                    s4 = _mm256_add_epi16(s4, _mm256_maddubs_epi16(b, w0));
                    s5 = _mm256_add_epi16(s5, _mm256_maddubs_epi16(b, w1));
                    b = quad_at(x3 + 4u * q);
                    s6 = _mm256_add_epi16(s6, _mm256_maddubs_epi16(b, w0));
                    s7 = _mm256_add_epi16(s7, _mm256_maddubs_epi16(b, w1));
                }
                flush(y, s0);
                flush(y + 8, s1);
                flush(y + op, s2);
                flush(y + op + 8, s3);
                flush(y + 2u * op, s4);
                flush(y + 2u * op + 8, s5);
                flush(y + 3u * op, s6);
                flush(y + 3u * op + 8, s7);
            }
        }
    }
    for (; o0 < op; o0 += 8u) {                           /* the last 8 channels when op % 16 == 8 */
        for (t0 = 0; t0 < g->tcb; t0 += 4u) {
            for (q0 = 0; q0 < g->quads; q0 += HAR_DENSE_CHUNK) {
                const size_t q1 = q0 + HAR_DENSE_CHUNK < g->quads ? q0 + HAR_DENSE_CHUNK : g->quads;
                const int8_t *wp = w + q0 * wrow + 4u * o0;
                __m256i s[4];
                for (tt = 0; tt < 4u; ++tt)
                    s[tt] = _mm256_setzero_si256();
                for (q = q0; q < q1; ++q, wp += wrow) {
                    const __m256i w0 = _mm256_loadu_si256((const __m256i *)wp);
                    for (tt = 0; tt < 4u; ++tt)
                        s[tt] = _mm256_add_epi16(s[tt], _mm256_maddubs_epi16(quad_at(x + (t0 + tt) * cp + 4u * q), w0));
                }
                for (tt = 0; tt < 4u; ++tt)
                    flush(acc + (t0 + tt) * op + o0, s[tt]);
            }
        }
    }
}
#else
static void gemm(const har_dense_block *g, const int8_t *w, const int32_t *corr, const uint8_t *x, int32_t *acc)
{
    const size_t cp = g->cp, op = g->op;
    size_t t, o, q, e;
    for (t = 0; t < g->tcb; ++t) {
        const uint8_t *xr = x + t * cp;
        int32_t *y = acc + t * op;
        for (o = 0; o < op; ++o)
            y[o] = -corr[o];
        for (q = 0; q < g->quads; ++q) {
            const int8_t *wq = w + q * 4u * op;
            for (o = 0; o < op; ++o)
                for (e = 0; e < 4u; ++e)
                    y[o] += (int32_t)wq[4u * o + e] * (int32_t)xr[4u * q + e];
        }
    }
}
#endif

/* ------------------------------------------------------------------ epilogue */

/* Max-pools acc [tcb][op] over `pool` times and requantizes channel o < n_out to 0..hi (the
 * arithmetic of maxpool1d + requantize: round half up, floor shift); writes rows [tp][op] of
 * codes at y, 0 for channels ≥ n_out. `sec` holds the prepared tables (used when every shift of
 * the block lies in 1..62, as the exporter guarantees); `r` the raw ones otherwise. */
static void pool_requantize(const int32_t *acc, const har_dense_block *g, size_t pool, const har_requant *r,
                            const har_dense_section *sec, int32_t hi, uint8_t *y)
{
    const size_t op = g->op;
    size_t t, o, p;
    int prepared = 1;
    for (o = 0; o < g->n_out; ++o)
        prepared &= r->shift[o] >= 1 && r->shift[o] <= 62;
#if defined(__AVX2__)
    if (prepared) {
        /* floor((m·v + bias + 2^(s−1)) / 2^s) = ((m·v + add) mod 2^64 >> s) − 2^(63−s): adding 2^63
         * maps int64 onto uint64 in order and 2^s divides 2^63. Even and odd channels go through
         * _mm256_mul_epi32 (32×32 → 64 bit) separately. */
        const __m256i zero = _mm256_setzero_si256(), top = _mm256_set1_epi64x(hi);
        for (t = 0; t < g->tp; ++t, y += op) {
            const int32_t *a = acc + t * pool * op;
            for (o = 0; o < op; o += 8u) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(a + o)), m, qe, qo;
                for (p = 1; p < pool; ++p)
                    v = _mm256_max_epi32(v, _mm256_loadu_si256((const __m256i *)(a + p * op + o)));
                m = _mm256_loadu_si256((const __m256i *)(sec->m + o));
                qe = _mm256_add_epi64(_mm256_mul_epi32(v, m), _mm256_loadu_si256((const __m256i *)(sec->add + o)));
                qo = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(v, 32), _mm256_srli_epi64(m, 32)),
                                      _mm256_loadu_si256((const __m256i *)(sec->add + o + 4)));
                qe = _mm256_sub_epi64(_mm256_srlv_epi64(qe, _mm256_loadu_si256((const __m256i *)(sec->shift + o))),
                                      _mm256_loadu_si256((const __m256i *)(sec->sub + o)));
                qo = _mm256_sub_epi64(_mm256_srlv_epi64(qo, _mm256_loadu_si256((const __m256i *)(sec->shift + o + 4))),
                                      _mm256_loadu_si256((const __m256i *)(sec->sub + o + 4)));
                qe = _mm256_blendv_epi8(qe, zero, _mm256_cmpgt_epi64(zero, qe));
                qe = _mm256_blendv_epi8(qe, top, _mm256_cmpgt_epi64(qe, top));
                qo = _mm256_blendv_epi8(qo, zero, _mm256_cmpgt_epi64(zero, qo));
                qo = _mm256_blendv_epi8(qo, top, _mm256_cmpgt_epi64(qo, top));
                {   /* codes 0..255 in the low bytes of 64-bit lanes → 8 bytes in channel order */
                    __m256i c32 = _mm256_or_si256(qe, _mm256_slli_epi64(qo, 32));
                    __m256i c8 = _mm256_packus_epi16(_mm256_packus_epi32(c32, c32), zero);
                    __m128i b = _mm_unpacklo_epi32(_mm256_castsi256_si128(c8), _mm256_extracti128_si256(c8, 1));
                    _mm_storel_epi64((__m128i *)(void *)(y + o), b);
                }
            }
        }
        return;
    }
#endif
    for (t = 0; t < g->tp; ++t, y += op) {
        const int32_t *a = acc + t * pool * op;
        for (o = 0; o < g->n_out; ++o) {
            int32_t v = a[o];
            int64_t q;
            for (p = 1; p < pool; ++p)
                v = a[p * op + o] > v ? a[p * op + o] : v;
            if (prepared) {
                const size_t at = grouped(o);
                q = (int64_t)((((uint64_t)((int64_t)sec->m[o] * v)) + sec->add[at]) >> sec->shift[at]) -
                    (int64_t)sec->sub[at];
            } else {
                q = har_rescale(v, r->m[o], r->shift[o], r->bias[o]);
            }
            q = q < 0 ? 0 : q;
            y[o] = (uint8_t)(q > hi ? hi : q);
        }
        for (; o < op; ++o)
            y[o] = 0;
    }
}

/* Fill rows [0, pad) and [pad + filled, n_rows) of a row buffer (row length cp) with v. */
static void fill_margins(uint8_t *rows, size_t cp, size_t pad, size_t filled, size_t n_rows, uint8_t v)
{
    size_t i;
    for (i = 0; i < pad * cp; ++i)
        rows[i] = v;
    for (i = (pad + filled) * cp; i < n_rows * cp; ++i)
        rows[i] = v;
}

int har_dense_run_batch(const har_net *net, uint32_t width, const uint8_t *w, size_t w_len, int32_t *work,
                        size_t work_len, const int8_t *x, size_t n, int32_t *logits)
{
    har_dense_block g[HAR_MAX_BLOCKS];
    har_dense_sizes s;
    size_t b, i, t, c, in_len = (size_t)net->in_channels * net->window;
    int32_t *acc, *feat, *fc_acc;
    uint8_t *rows[2];
    int rc;
    if (width >= net->n_widths)
        return HAR_ERR_WIDTH;
    rc = geometry(net, width, g);
    if (rc == HAR_OK)
        rc = work_sizes(net, &s);
    if (rc != HAR_OK)
        return rc;
    if (w_len < har_dense_weights_len(net, width) || work_len < har_dense_work_len(net))
        return HAR_ERR_SCRATCH;
    acc = work;
    rows[0] = (uint8_t *)(work + s.acc);
    rows[1] = (uint8_t *)(work + s.acc + s.rows);
    feat = work + s.acc + 2u * s.rows;
    fc_acc = feat + s.feat;

    for (b = 0; b < n; ++b) {
        const int8_t *xb = x + b * in_len;
        const uint8_t *wb = w;
        const har_requant *fr = net->fc_requant + width;
        const har_dense_block *last = &g[net->n_blocks - 1u];
        uint8_t *in = rows[0];
        /* The int8 window [C][L] as rows [pad + t][cp] of x + 128 (transposed; the zero padding is
         * stored as 128, i.e. 0 + zp). */
        fill_margins(in, g[0].cp, g[0].pad, g[0].t_in, g[0].rows, (uint8_t)g[0].zp);
        for (t = 0; t < g[0].t_in; ++t) {
            uint8_t *r = in + (g[0].pad + t) * g[0].cp;
            for (c = 0; c < g[0].n_in; ++c)
                r[c] = (uint8_t)(xb[c * g[0].t_in + t] + g[0].zp);
            for (; c < g[0].cp; ++c)
                r[c] = (uint8_t)g[0].zp;
        }
        for (i = 0; i < net->n_blocks; ++i) {
            const har_requant *r = net->requant + (size_t)width * net->n_blocks + i;
            uint8_t *out = rows[(i + 1u) % 2u];
            size_t pad_next = i + 1u < net->n_blocks ? g[i + 1u].pad : 0;
            size_t rows_next = i + 1u < net->n_blocks ? g[i + 1u].rows : g[i].tp;
            har_dense_section sec;
            section_at(&g[i], wb, &sec);
            gemm(&g[i], sec.w, sec.corr, in, acc);
            fill_margins(out, g[i].op, pad_next, g[i].tp, rows_next, 0);
            pool_requantize(acc, &g[i], net->pools[i], r, &sec, (int32_t)net->act_levels[i], out + pad_next * g[i].op);
            wb += section_bytes(&g[i]);
            in = out;
        }
        /* global_sum_pool over the last block's codes, then the classifier of har_kernels.c. */
        for (c = 0; c < last->n_out; ++c)
            feat[c] = 0;
        for (t = 0; t < last->tp; ++t)
            for (c = 0; c < last->n_out; ++c)
                feat[c] += in[t * last->op + c];
        fc_int8(feat, last->n_out, net->fc, net->channels[net->n_blocks - 1u], net->n_classes, fc_acc);
        requantize_logits(fc_acc, net->n_classes, fr->m, fr->shift, fr->bias, logits + b * net->n_classes);
    }
    return HAR_OK;
}
