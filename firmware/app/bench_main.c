/*
 * bench_main.c — the cost benchmark image (streamhar/firmware/bench.py, `streamhar firmware bench`):
 * executed instructions of each layer's kernels and of whole inferences, bracketed by
 * board_mark calls that the insn_count QEMU plugin (firmware/tools/qemu_icount) counts between.
 *
 * Built twice from this file:
 *   default        the ternary integer network (har_model.h, firmware/kernels + runtime)
 *   -DBENCH_FLOAT  the float32 baseline (har_float_model.h, firmware/baseline)
 *
 * In  "bench_in.bin":  {u32 magic 'HARB', u32 n_windows, i64 threshold}, then n int8 windows
 *                      [IN_CHANNELS][WINDOW] (the float image converts each to float first,
 *                      outside the measurement).
 * Out "bench_out.bin": {u32 magic 'HARO', u32 engine (0 ternary, 1 float), u32 model id,
 *                      u32 n_blocks}, then one record {u32 label, u32 aux, u32 minstret} per
 *                      measurement, in the order of the measurements, which are:
 *   2 × CALIB                          an empty measurement: the bracketing's own cost
 *   per width in (small, full):        the network's layers one kernel call at a time, on window 0
 *     per block b, per output-channel tile (the runtime's tiling): CONV, POOL, REQUANT (aux = channels)
 *     HEAD: SUMPOOL, FC, LOGITS (aux of LOGITS = the class)
 *   per window: NET small, NET full (aux = class), then (ternary only) CASCADE at the threshold
 *     (aux = class | path << 16)
 * label = kind << 24 | width index << 16 | block << 8 | phase. Every measurement is
 * begin() … end(): two marks, so the k-th record is the k-th pair of marks. The minstret field
 * is the same interval from board_insn_count() (riscv32; 0 on stm32f4): what the plugin's
 * count is checked against.
 * Exit status: 0, or 10 + a step that failed (open, read, run, write).
 */
#include "board.h"

#ifdef BENCH_FLOAT
#include "har_float_model.h"
#define ENGINE 1u
#define MODEL_ID HARF_MODEL_ID
#define IN_LEN HARF_INPUT_LEN
#define N_CLASSES HARF_N_CLASSES
#define N_BLOCKS HARF_N_BLOCKS
#define SMALL HARF_SMALL_WIDTH
#define FULL HARF_FULL_WIDTH
#define ACT_LEN HARF_ACT_LEN
#define ACC_LEN HARF_ACC_LEN
typedef float act_t;
typedef float acc_t;
typedef float logit_t;
#define NET har_float_model
#else
#include "har_cascade.h"
#include "har_model.h"
#define ENGINE 0u
#define MODEL_ID HAR_MODEL_ID
#define IN_LEN HAR_INPUT_LEN
#define N_CLASSES HAR_N_CLASSES
#define N_BLOCKS HAR_N_BLOCKS
#define SMALL HAR_SMALL_WIDTH
#define FULL HAR_FULL_WIDTH
#define ACT_LEN HAR_ACT_LEN
#define ACC_LEN HAR_ACC_LEN
typedef uint8_t act_t;
typedef int32_t acc_t;
typedef int32_t logit_t;
#define NET har_model
#endif

#define MAGIC_IN 0x42524148u   /* "HARB" little-endian */
#define MAGIC_OUT 0x4F524148u  /* "HARO" */

enum { KIND_CALIB = 1, KIND_LAYER = 2, KIND_NET = 3, KIND_CASCADE = 4 };
enum { PH_CONV = 0, PH_POOL = 1, PH_REQUANT = 2, PH_SUMPOOL = 3, PH_FC = 4, PH_LOGITS = 5 };
#define LABEL(kind, w, b, ph) (((uint32_t)(kind) << 24) | ((uint32_t)(w) << 16) | ((uint32_t)(b) << 8) | (uint32_t)(ph))

static int8_t window[IN_LEN];
#ifdef BENCH_FLOAT
static float input[IN_LEN];
#else
#define input window
#endif
static act_t act0[ACT_LEN], act1[ACT_LEN];
static acc_t acc[ACC_LEN];
static logit_t logits[N_CLASSES];

/* Records are buffered and written in batches, between measurements. */
#define BATCH 32u
static uint32_t records[3u * BATCH];
static uint32_t n_buffered;
static int out_fd = -1;

static void flush(void)
{
    long n = (long)(3u * 4u * n_buffered);
    if (n_buffered && sh_write(out_fd, records, (size_t)n) != n)
        board_exit(13);
    n_buffered = 0;
}

static void record(uint32_t label, uint32_t aux, uint32_t insns)
{
    records[3u * n_buffered] = label;
    records[3u * n_buffered + 1u] = aux;
    records[3u * n_buffered + 2u] = insns;
    if (++n_buffered == BATCH)
        flush();
}

/* The bracket. noipa: one copy of each, never specialised for a call site, so every measurement
 * carries the same fixed overhead and the CALIB record measures exactly that overhead. */
static uint32_t t_begin, t_last;

__attribute__((noipa)) static void begin(void)
{
    board_mark(1u);
    t_begin = board_insn_count();
}

__attribute__((noipa)) static void end(void)
{
    uint32_t t = board_insn_count();
    board_mark(2u);
    t_last = t - t_begin;
}

static size_t conv_len(size_t t_in, size_t k, size_t pad)
{
    return t_in + 2u * pad - k + 1u;
}

static uint32_t argmax(const logit_t *v)
{
    uint32_t i, best = 0;
    for (i = 1; i < N_CLASSES; ++i)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* The network's layers at width w, one kernel call per measurement, in the runtime's order and
 * tiling (firmware/runtime/har_net.c; the float baseline: one tile, as har_float_run). */
static void layers(uint32_t w)
{
    act_t *act[2] = {act0, act1};
    const uint32_t *wc = NET.width_channels + (size_t)w * N_BLOCKS;
    size_t i, n_in = NET.in_channels, t = NET.window;
    const void *in = input;
#ifndef BENCH_FLOAT
    har_in_type in_type = HAR_IN_S8;
#endif
    for (i = 0; i < N_BLOCKS; ++i) {
        size_t n_out = wc[i], k = NET.kernels[i], pool = NET.pools[i], pad = NET.padding[i], o0;
        size_t c_full_in = i == 0 ? NET.in_channels : NET.channels[i - 1];
        size_t tc = conv_len(t, k, pad), tp = tc / pool, tile = ACC_LEN / tc;
        act_t *out = act[i % 2u];
#ifdef BENCH_FLOAT
        const har_float_affine *r = NET.affine + (size_t)w * N_BLOCKS + i;
        size_t row = c_full_in * k;
        const float *wt = NET.conv[i];
#else
        const har_requant *r = NET.requant + (size_t)w * N_BLOCKS + i;
        size_t row = har_row_bytes(c_full_in, k);
        const uint8_t *wt = NET.conv[i];
#endif
        for (o0 = 0; o0 < n_out; o0 += tile) {
            size_t n = n_out - o0 < tile ? n_out - o0 : tile;
            begin();
#ifdef BENCH_FLOAT
            har_float_conv1d((const float *)in, n_in, t, wt + o0 * row, row, n, k, pad, acc);
#else
            conv1d_ternary(in, in_type, n_in, t, wt + o0 * row, row, n, k, pad, acc);
#endif
            end();
            record(LABEL(KIND_LAYER, w, i, PH_CONV), (uint32_t)n, t_last);
            begin();
#ifdef BENCH_FLOAT
            har_float_maxpool1d(acc, n, tc, pool, acc);
#else
            maxpool1d(acc, n, tc, pool, acc);
#endif
            end();
            record(LABEL(KIND_LAYER, w, i, PH_POOL), (uint32_t)n, t_last);
            begin();
#ifdef BENCH_FLOAT
            har_float_scale_clamp(acc, n, tp, r->scale + o0, r->bias + o0, NET.act_max[i], out + o0 * tp);
#else
            requantize(acc, n, tp, r->m + o0, r->shift + o0, r->bias + o0, 0, (int32_t)NET.act_levels[i],
                       out + o0 * tp);
#endif
            end();
            record(LABEL(KIND_LAYER, w, i, PH_REQUANT), (uint32_t)n, t_last);
        }
        in = out;
#ifndef BENCH_FLOAT
        in_type = HAR_IN_U8;
#endif
        n_in = n_out;
        t = tp;
    }
    {
#ifdef BENCH_FLOAT
        const har_float_affine *fr = NET.fc_affine + w;
        begin();
        har_float_sum_pool((const float *)in, n_in, t, acc);
        end();
        record(LABEL(KIND_LAYER, w, N_BLOCKS, PH_SUMPOOL), 0, t_last);
        begin();
        har_float_fc(acc, n_in, NET.fc, NET.channels[N_BLOCKS - 1], N_CLASSES, acc + n_in);
        end();
        record(LABEL(KIND_LAYER, w, N_BLOCKS, PH_FC), 0, t_last);
        begin();
        har_float_scale(acc + n_in, N_CLASSES, fr->scale, fr->bias, logits);
        end();
#else
        const har_requant *fr = NET.fc_requant + w;
        begin();
        global_sum_pool((const uint8_t *)in, n_in, t, acc);
        end();
        record(LABEL(KIND_LAYER, w, N_BLOCKS, PH_SUMPOOL), 0, t_last);
        begin();
        fc_int8(acc, n_in, NET.fc, NET.channels[N_BLOCKS - 1], N_CLASSES, acc + n_in);
        end();
        record(LABEL(KIND_LAYER, w, N_BLOCKS, PH_FC), 0, t_last);
        begin();
        requantize_logits(acc + n_in, N_CLASSES, fr->m, fr->shift, fr->bias, logits);
        end();
#endif
        record(LABEL(KIND_LAYER, w, N_BLOCKS, PH_LOGITS), argmax(logits), t_last);
    }
}

/* One whole inference at width w. */
static void net(uint32_t w)
{
    int rc;
#ifdef BENCH_FLOAT
    har_float_scratch s = {{act0, act1}, ACT_LEN, acc, ACC_LEN};
    begin();
    rc = har_float_run(&NET, w, input, &s, logits);
    end();
#else
    har_scratch s = {{act0, act1}, ACT_LEN, acc, ACC_LEN};
    begin();
    rc = har_net_run(&NET, w, window, &s, logits);
    end();
#endif
    if (rc != 0)
        board_exit(12);
    record(LABEL(KIND_NET, w, 0, 0), argmax(logits), t_last);
}

#ifndef BENCH_FLOAT
static void cascade(int64_t threshold)
{
    har_scratch s = {{act0, act1}, ACT_LEN, acc, ACC_LEN};
    har_cascade c;
    har_cascade_result r;
    int rc;
    c.small = SMALL;
    c.full = FULL;
    har_cascade_set_threshold(&c, threshold);
    begin();
    rc = har_cascade_run(&NET, &c, window, &s, logits, &r);
    end();
    if (rc != 0)
        board_exit(12);
    record(LABEL(KIND_CASCADE, 0, 0, 0), r.cls | (r.path << 16), t_last);
}
#endif

static void load_window(int fd)
{
    if (sh_read_all(fd, window, sizeof window) != 0)
        board_exit(11);
#ifdef BENCH_FLOAT
    {
        size_t i;
        for (i = 0; i < IN_LEN; ++i)
            input[i] = (float)window[i];
    }
#endif
}

int main(void)
{
    uint32_t head[4], n, k;
    int64_t threshold;
    int in;

    in = sh_open("bench_in.bin", SH_READ);
    out_fd = sh_open("bench_out.bin", SH_WRITE);
    if (in < 0 || out_fd < 0)
        board_exit(10);
    if (sh_read_all(in, head, 8) != 0 || head[0] != MAGIC_IN || sh_read_all(in, &threshold, 8) != 0)
        board_exit(11);
    n = head[1];
    head[0] = MAGIC_OUT;
    head[1] = ENGINE;
    head[2] = MODEL_ID;
    head[3] = N_BLOCKS;
    if (n == 0 || sh_write(out_fd, head, sizeof head) != (long)sizeof head)
        board_exit(n == 0 ? 11 : 13);
    (void)threshold;

    for (k = 0; k < 2u; ++k) {
        begin();
        end();
        record(LABEL(KIND_CALIB, 0, 0, 0), 0, t_last);
    }
    for (k = 0; k < n; ++k) {
        load_window(in);
        if (k == 0) {
            layers(SMALL);
            layers(FULL);
        }
        net(SMALL);
        net(FULL);
#ifndef BENCH_FLOAT
        cascade(threshold);
#endif
    }
    flush();
    sh_close(in);
    sh_close(out_fd);
    return 0;
}
