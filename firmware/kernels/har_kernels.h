/*
 * har_kernels.h — the integer operations of the streamhar inference network in portable C99.
 *
 * One function per numpy reference op in streamhar/inference/ops.py, with the same name and the
 * same result bit for bit (tests/test_host_c.py checks each one against ops.py). The kernels
 * work on ONE window (no batch axis): the firmware classifies one window at a time.
 *
 * Rules every kernel keeps:
 *   - no malloc, no floating point, no libc beyond <stdint.h>/<stddef.h>: the caller owns every
 *     buffer (see firmware/runtime/har_net.h for the sizes one network needs);
 *   - arrays are dense and row-major: activations and accumulators are [C][T] (channel rows of
 *     T samples), exactly numpy's C order for one window of [B, C, T];
 *   - accumulators are int32. ops.py raises where a value would not fit int32; here it must not
 *     happen (export bounds every accumulator below 2^31 for an exported model) — a C kernel
 *     does not check, for speed and because the bound is proven at export time;
 *   - 64-bit arithmetic only where a product needs it: m·acc in the requantization (a
 *     32×32→64-bit multiply, SMULL on a Cortex-M4).
 */
#ifndef HAR_KERNELS_H
#define HAR_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Element type of conv1d_ternary's input: the network's int8 input codes (block 0) or the
 * uint8 activation codes every later block reads. */
typedef enum { HAR_IN_S8 = 0, HAR_IN_U8 = 1 } har_in_type;

/* Bytes per packed weight row of a layer with c_in input channels and k taps: ceil(c_in·k/4)
 * (docs/FORMAT.md, "2-bit packing"). Always the FULL width's c_in: a narrow width reads a
 * prefix of each row, never a shorter row. */
size_t har_row_bytes(size_t c_in, size_t k);

/* Code j of a packed ternary row, sign-extended: 0b00 → 0, 0b01 → +1, 0b11 → −1. */
int har_code(const uint8_t *row, size_t j);

/* floor((m·acc + bias + 2^(shift−1)) / 2^shift) for shift >= 1; m·acc + bias for shift <= 0:
 * the requantization rule every requantizing kernel applies. */
int64_t har_rescale(int32_t acc, int32_t m, int32_t shift, int64_t bias);

/* conv1d_ternary — 1D cross-correlation with zero padding of a window of integer codes with
 * 2-bit packed ternary weights, read directly in the .shm layout (no unpacking pass, no copy):
 *
 *   acc[o][t] = Σ_{c < n_in} Σ_{k < K} w(o, c·K + k) · x_pad[c][t + k],   o < n_out,
 *   t < t_out = t_in + 2·padding − K + 1
 *
 * x          [n_in][t_in], int8 (x_type HAR_IN_S8) or uint8 (HAR_IN_U8) codes
 * w_packed   rows of row_bytes bytes (har_row_bytes of the FULL c_in); code j = c·K + k of row o
 *            is bits 2·(j%4)..2·(j%4)+1 of byte o·row_bytes + j/4: 0b00 = 0, 0b01 = +1,
 *            0b11 = −1 (0b10 never occurs: loaders refuse it). The width slice [:n_out, :n_in]
 *            is the first n_out rows and, of each row, the codes with c < n_in — a prefix.
 * acc        [n_out][t_out] int32 out. Returns t_out (0 when the kernel is longer than the
 *            padded input; nothing is then written).
 * Output-stationary: one accumulator per (o, t); ternary weights mean add, subtract or skip —
 * no multiplies. Each row's codes are decoded once per chunk of input channels into short
 * offset lists of its +1 and −1 taps (zero taps dropped), then reused for every output time
 * step, 16 (or 8) steps at a time; with __ARM_FEATURE_DSP (Cortex-M4) the adds are UXTAB16 /
 * SXTAB16 into packed 16-bit lanes. About 1.0–2.1 executed instructions per MAC on a Cortex-M4,
 * 2.1–3.4 on RV32IMC, for the bundled models' layers (har_kernels.c explains the scheme). No
 * memory but the stack: about 0.5 KB deep (a 256-byte list and the frames). */
size_t conv1d_ternary(const void *x, har_in_type x_type, size_t n_in, size_t t_in,
                      const uint8_t *w_packed, size_t row_bytes, size_t n_out, size_t k,
                      size_t padding, int32_t *acc);

/* maxpool1d — max over non-overlapping windows of `pool` samples per channel row, floor mode
 * (torch.nn.MaxPool1d): t_out = t_in / pool, the last t_in % pool samples are dropped.
 * acc [c][t_in] → out [c][t_out]; out may equal acc (in place: each output lies at or before
 * the inputs it reads). pool 1 copies (a no-op in place). Returns t_out. */
size_t maxpool1d(const int32_t *acc, size_t c, size_t t_in, size_t pool, int32_t *out);

/* requantize — per-channel dyadic rescale of accumulators onto activation codes:
 *
 *   out[c][t] = clamp((m[c]·acc[c][t] + bias[c] + 2^(shift[c]−1)) >> shift[c], lo, hi)
 *
 * in 64-bit arithmetic; >> is an arithmetic shift, i.e. floor division by 2^shift, computed
 * here without relying on the implementation-defined >> of a negative signed value in C99.
 * The result is round half up of (m·acc + bias)/2^shift. shift is 1..62 in every exported
 * table (ops.py refuses anything else); shift 0 is defined here as no rounding term and no
 * shift (y = m·acc + bias) so the kernel has no undefined behaviour on any input.
 * [lo, hi] must lie within 0..255 (activation codes; blocks use [0, act_levels]).
 * acc [c][t] int32 → out [c][t] uint8. */
void requantize(const int32_t *acc, size_t c, size_t t, const int32_t *m, const int32_t *shift,
                const int64_t *bias, int32_t lo, int32_t hi, uint8_t *out);

/* global_sum_pool — sum over time of activation codes, [c][t] uint8 → int32 [c]. (Average
 * pooling's 1/T is folded into the FC's requantization.) t < 2^23 keeps the sum in int32. */
void global_sum_pool(const uint8_t *x, size_t c, size_t t, int32_t *out);

/* fc_int8 — fully connected layer without bias: out[o] = Σ_{c < n_feat} codes[o][c] · feat[c]
 * for o < n_out. codes int8 rows of row_stride (the full width's feature count): the width
 * slice [:, :n_feat] is a prefix of each row. */
void fc_int8(const int32_t *feat, size_t n_feat, const int8_t *codes, size_t row_stride, size_t n_out,
             int32_t *out);

/* requantize_logits — the same rule as requantize per class, saturated to the int32 range:
 *   logit[k] = clamp((m[k]·acc[k] + bias[k] + 2^(shift[k]−1)) >> shift[k], INT32_MIN, INT32_MAX)
 * int32 logits in units of 1/logit_scale (65536). */
void requantize_logits(const int32_t *acc, size_t n, const int32_t *m, const int32_t *shift,
                       const int64_t *bias, int32_t *logits);

/* quantize_raw_i16 — the device-tier input stage: raw int16 sensor samples onto the network's
 * int8 input codes, per channel c by one integer affine map (the normalization (x − mean)/std of
 * x = raw·scale and the input step folded into a fixed-point multiplier at generation time,
 * streamhar/firmware/sensor.py):
 *
 *   out[c][t] = clamp((m[c]·raw[t][c] + bias[c] + 2^(shift[c]−1)) >> shift[c], −128, 127)
 *
 * the requantization rule (round half up, har_rescale), in 64-bit arithmetic. raw is
 * time-major [n][c] as a sensor delivers samples; out is channel-major with a row stride:
 * out[c·out_stride + t], so one sample (n = 1) lands straight in column t of a [c][L] window.
 * shift 1..62 and |bias| < 2^62 keep the sum inside int64 (the generator guarantees both). */
void quantize_raw_i16(const int16_t *raw, size_t n, size_t c, const int32_t *m, const int32_t *shift,
                      const int64_t *bias, int8_t *out, size_t out_stride);

/* argmax_margin — the winning class (scan upward with strict >, so ties go to the lowest index)
 * and its margin top1 − top2 (int64: the difference of two int32 values may not fit int32;
 * 0 on a tie). n >= 2; with n < 2 returns class 0 and margin 0. */
size_t argmax_margin(const int32_t *logits, size_t n, int64_t *margin);

#ifdef __cplusplus
}
#endif
#endif /* HAR_KERNELS_H */
