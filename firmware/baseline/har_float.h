/*
 * har_float.h — the float32 baseline: the firmware's network (firmware/runtime/har_net.h) in
 * straightforward float C, for a fair instruction count against the ternary integer kernels.
 *
 * Same structure, same op count, same order as har_net_run, in float:
 *
 *   per block i at width w (n_i = width_channels[w][i], n_{-1} = in_channels):
 *     acc = conv1d(x, conv[i] rows [:n_i], taps of the first n_{i−1} input channels)   dense MACs
 *     acc = maxpool1d(acc, pools[i])
 *     x   = clamp(acc · scale[w][i] + bias[w][i], 0, act_max[i])     (the requantization, unrounded)
 *   logits = fc(global_sum_pool(x), fc[:, :n_last]) · fc_scale[w] + fc_bias[w]
 *
 * The weights are the ternary codes as −1.0/0.0/+1.0 and the FC's int8 codes as floats; scale =
 * m / 2^shift and bias = bias / 2^shift of each requantization table (streamhar/firmware/
 * baseline.py writes them), so the float network computes the integer network's function up
 * to rounding. Every MAC is done (zero weights too): this is what a float build would run.
 *
 * Portable C99, freestanding: no libc, no malloc (hard-float on a Cortex-M4F, libgcc's soft
 * float on RV32IMC). Arrays are dense row-major [C][T], as in har_kernels.h.
 */
#ifndef HAR_FLOAT_H
#define HAR_FLOAT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const float *scale;   /* [n] */
    const float *bias;    /* [n] */
} har_float_affine;

typedef struct {
    uint32_t n_blocks;
    uint32_t in_channels;
    uint32_t window;
    uint32_t n_classes;
    uint32_t n_widths;
    const uint32_t *channels;       /* [n_blocks] full-width output channels */
    const uint32_t *kernels;        /* [n_blocks] */
    const uint32_t *pools;          /* [n_blocks] */
    const uint32_t *padding;        /* [n_blocks] */
    const float *act_max;           /* [n_blocks] the clamp's top (act_levels) */
    const float *const *conv;       /* [n_blocks] weights [channels[i]][c_in full][kernels[i]] */
    const float *fc;                /* [n_classes][channels[n_blocks−1]] */
    const uint32_t *width_channels; /* [n_widths][n_blocks] */
    const har_float_affine *affine; /* [n_widths][n_blocks] */
    const har_float_affine *fc_affine; /* [n_widths] */
} har_float_net;

/* act[0], act[1]: block outputs in turn; acc: one block's conv output (all its channels). */
typedef struct {
    float *act[2];
    size_t act_len;
    float *acc;
    size_t acc_len;
} har_float_scratch;

enum { HAR_FLOAT_OK = 0, HAR_FLOAT_ERR_WIDTH = -1, HAR_FLOAT_ERR_SCRATCH = -3 };

/* acc[o][t] = Σ_{c < n_in} Σ_{k < K} w[o][c][k] · x_pad[c][t + k], t < t_out = t_in + 2·padding − K + 1,
 * with zero padding; w rows of row_stride floats (the full width's c_in·K): a narrow width reads a
 * prefix of each row. Returns t_out. */
size_t har_float_conv1d(const float *x, size_t n_in, size_t t_in, const float *w, size_t row_stride,
                        size_t n_out, size_t k, size_t padding, float *acc);

/* Max over non-overlapping windows of `pool` samples, floor mode; out may equal acc. Returns t_out. */
size_t har_float_maxpool1d(const float *acc, size_t c, size_t t_in, size_t pool, float *out);

/* out[c][t] = clamp(acc[c][t] · scale[c] + bias[c], 0, hi); out may equal acc. */
void har_float_scale_clamp(const float *acc, size_t c, size_t t, const float *scale, const float *bias,
                           float hi, float *out);

/* out[c] = Σ_t x[c][t]. */
void har_float_sum_pool(const float *x, size_t c, size_t t, float *out);

/* out[o] = Σ_{c < n_feat} w[o][c] · feat[c], rows of row_stride floats. */
void har_float_fc(const float *feat, size_t n_feat, const float *w, size_t row_stride, size_t n_out,
                  float *out);

/* logits[k] = acc[k] · scale[k] + bias[k]. */
void har_float_scale(const float *acc, size_t n, const float *scale, const float *bias, float *logits);

/* The largest value's index (ties to the lowest). */
size_t har_float_argmax(const float *v, size_t n);

/* Scratch sizes (elements) that every width fits: act = max C_i·T_i after pooling, acc = max
 * C_i·T_conv_i (and C_last + n_classes), at full width. */
void har_float_scratch_size(const har_float_net *net, size_t *act_len, size_t *acc_len);

/* Width `width` on one window x [in_channels][window] → logits [n_classes]. Returns HAR_FLOAT_OK,
 * HAR_FLOAT_ERR_WIDTH or HAR_FLOAT_ERR_SCRATCH. */
int har_float_run(const har_float_net *net, uint32_t width, const float *x, const har_float_scratch *s,
                  float *logits);

#ifdef __cplusplus
}
#endif
#endif /* HAR_FLOAT_H */
