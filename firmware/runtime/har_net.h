/*
 * har_net.h — the firmware's inference path: runs one width of an exported integer network
 * (docs/FORMAT.md) on one int8 window, with the kernels of firmware/kernels/har_kernels.h,
 * op for op as streamhar/inference/engine.py's IntegerEngine does:
 *
 *   per block i at width w (n_i = width_channels[w][i], n_{-1} = in_channels):
 *     acc = conv1d_ternary(x, conv[i] rows [:n_i], codes of the first n_{i−1} input channels)
 *     acc = maxpool1d(acc, pools[i])                      in place, on accumulators
 *     x   = requantize(acc, requant[w][i], 0, act_levels[i])   uint8 codes, ping-pong buffer
 *   logits = requantize_logits(fc_int8(global_sum_pool(x), fc[:, :n_last]), fc_requant[w])
 *
 * Nothing is allocated: the network is a struct of pointers to constant tables (on a board,
 * flash; on the host, numpy buffers handed over by streamhar/inference/host_c.py) and the caller
 * provides the scratch buffers, sized with har_net_scratch_size (or har_net_scratch_min). Portable C99, no floating point.
 */
#ifndef HAR_NET_H
#define HAR_NET_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/har_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One requantization table over n channels (n = the width's channel count, or n_classes). */
typedef struct {
    const int32_t *m;      /* [n] multipliers, |m| <= 2^30 */
    const int32_t *shift;  /* [n] 1..62 */
    const int64_t *bias;   /* [n] */
} har_requant;

/* An exported network, all widths. Arrays indexed [w][i] are flattened row-major. */
typedef struct {
    uint32_t n_blocks;
    uint32_t in_channels;         /* C of the int8 input window [C][window] */
    uint32_t window;              /* L */
    uint32_t n_classes;
    uint32_t n_widths;
    const uint32_t *channels;     /* [n_blocks] full-width output channels of each block */
    const uint32_t *kernels;      /* [n_blocks] taps K_i */
    const uint32_t *pools;        /* [n_blocks] max-pool size (1 = none) */
    const uint32_t *padding;      /* [n_blocks] zeros on each side */
    const uint32_t *act_levels;   /* [n_blocks] top activation code (<= 255) */
    const uint8_t *const *conv;   /* [n_blocks] packed t2 weights, rows of ceil(C_{i−1}·K_i/4) bytes */
    const int8_t *fc;             /* [n_classes][channels[n_blocks−1]] FC codes */
    const uint32_t *width_channels; /* [n_widths][n_blocks] output channels per width */
    const har_requant *requant;   /* [n_widths][n_blocks] */
    const har_requant *fc_requant; /* [n_widths] */
} har_net;

/* Caller-owned working memory for one window. act[0] and act[1] hold activation codes in turn
 * (block i writes act[i % 2]); acc holds a block's int32 conv accumulators (pooled in place),
 * then the pooled features and the FC accumulators. */
typedef struct {
    uint8_t *act[2];
    size_t act_len;        /* elements of each act buffer */
    int32_t *acc;
    size_t acc_len;        /* elements of acc */
} har_scratch;

/* Result codes. */
enum {
    HAR_OK = 0,
    HAR_ERR_WIDTH = -1,    /* width index >= n_widths */
    HAR_ERR_SHAPE = -2,    /* the description is inconsistent (a block with no output samples,
                              more channels at a width than at full width, act_levels > 255) */
    HAR_ERR_SCRATCH = -3   /* a scratch buffer is smaller than har_net_scratch_min says */
};

/* The scratch sizes (in elements) that every width of `net` fits: *act_len = max over blocks of
 * C_i·T_i after pooling, *acc_len = max(max C_i·T_conv_i, C_last + n_classes), all at full width
 * (a width's channel counts never exceed the full width's). Returns HAR_OK or HAR_ERR_SHAPE. */
int har_net_scratch_size(const har_net *net, size_t *act_len, size_t *acc_len);

/* The smallest scratch that works: the same *act_len, and *acc_len = max(the longest conv output
 * T_conv_i, C_last + n_classes). har_net_run computes a block's output channels in tiles of
 * floor(acc_len / T_conv_i) (same result), so a microcontroller trades a little speed for RAM:
 * any acc_len between this and har_net_scratch_size's is valid. */
int har_net_scratch_min(const har_net *net, size_t *act_len, size_t *acc_len);

/* Runs width index `width` of `net` on one int8 window x [in_channels][window] and writes the
 * int32 logits [n_classes] (units of 1/logit_scale). Returns HAR_OK or a HAR_ERR_* code (then
 * `logits` is not written). The class and margin follow from argmax_margin(logits, ...). */
int har_net_run(const har_net *net, uint32_t width, const int8_t *x, const har_scratch *scratch,
                int32_t *logits);

/* The per-layer checksum of n activation codes: Σ_j (2j+1)·codes[j] mod 2^32. Position-weighted
 * (a moved value changes it) and, unlike a CRC, a one-line numpy expression on the host
 * (streamhar/firmware/checksum.py), so a parity test checks every layer of every window. */
uint32_t har_layer_checksum(const uint8_t *codes, size_t n);

/* har_net_run that also writes trace[i] = har_layer_checksum of block i's output codes
 * ([n_i][T_i] uint8, row-major), i < n_blocks — what locates the first differing layer in a
 * parity test. trace may be NULL (then it is har_net_run). */
int har_net_run_traced(const har_net *net, uint32_t width, const int8_t *x, const har_scratch *scratch,
                       int32_t *logits, uint32_t *trace);

/* har_net_run over n consecutive windows x [n][in_channels][window] → logits [n][n_classes];
 * the host library's batch entry point (each window independent, as on the device). */
int har_net_run_batch(const har_net *net, uint32_t width, const int8_t *x, size_t n,
                      const har_scratch *scratch, int32_t *logits);

#ifdef __cplusplus
}
#endif
#endif /* HAR_NET_H */
