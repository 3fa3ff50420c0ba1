/*
 * har_dense.h — the host library's fast path for a har_net (firmware/runtime/har_net.h): the same
 * network, the same integer results bit for bit as har_net_run, laid out for a desktop CPU's
 * SIMD units instead of a microcontroller's flash.
 *
 * Layout (why: no im2col, no horizontal sums, 32 multiply-adds per AVX2 instruction):
 *   activations   uint8 [rows][cp], time-major. Row r holds time r − padding of the next
 *                 convolution, so its zero padding is stored as rows, and the K·cp inputs of
 *                 output t are the contiguous run starting at row t. cp is the channel count
 *                 rounded up (input: to 4, hidden: to HAR_DENSE_LANES); padded channels meet
 *                 zero weights. The int8 window is stored as x + 128 (zp = 128) and the sums are
 *                 corrected by 128·Σw per output channel, so every layer multiplies unsigned
 *                 codes by signed weights.
 *   weights       int8 [K·cp/4][op][4], j = k·cp + c: four consecutive inputs' weights of every
 *                 output channel side by side, decoded once per width from the packed 2-bit rows,
 *                 with the requantization tables of the width prepared beside them.
 *   accumulators  int32 [t][op]: one _mm256_maddubs_epi16 multiplies a broadcast quad of inputs
 *                 by the quads of 8 output channels (int16 pair sums, exact: |·| <= 510), int16
 *                 sums of up to 64 quads are widened into int32 (64·510 < 2^15). A portable C
 *                 loop computes the same sums where AVX2 is absent.
 *   epilogue      max-pool over time, then requantize, exactly as maxpool1d + requantize
 *                 (round half up, floor shift; AVX2: 64-bit products of even and odd lanes),
 *                 written as the next layer's rows; after the last block the codes are summed
 *                 over time (global_sum_pool) and fc_int8 + requantize_logits of har_kernels.c
 *                 finish the window.
 *
 * Integer sums are exact in any order (|x| <= 255, |w| <= 1), so every path equals the numpy
 * reference; tests/test_host_c.py checks it on every validation window of both bundled models.
 * Nothing is allocated: the caller provides the decoded weights (4-byte aligned) and one int32
 * work buffer.
 */
#ifndef HAR_DENSE_H
#define HAR_DENSE_H

#include <stddef.h>
#include <stdint.h>

#include "../runtime/har_net.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HAR_DENSE_LANES 8u     /* output channels per 256-bit vector of int32 (or of 4 int8 weights) */
#define HAR_DENSE_TBLOCK 4u    /* output times per GEMM block */

/* Bytes of width `width`'s decoded weights; 0 for an invalid width or network. */
size_t har_dense_weights_len(const har_net *net, uint32_t width);

/* Decodes width `width`'s packed weights into `w` (len >= har_dense_weights_len bytes, 4-byte
 * aligned). */
int har_dense_decode(const har_net *net, uint32_t width, uint8_t *w, size_t len);

/* int32 elements of the work buffer that every width of `net` needs; 0 for an invalid network. */
size_t har_dense_work_len(const har_net *net);

/* Runs width `width` on n int8 windows x [n][in_channels][window] → logits [n][n_classes].
 * w from har_dense_decode for the same width; work of har_dense_work_len elements. Returns
 * HAR_OK or a HAR_ERR_* code of har_net.h (HAR_ERR_SCRATCH: a buffer too small). */
int har_dense_run_batch(const har_net *net, uint32_t width, const uint8_t *w, size_t w_len, int32_t *work,
                        size_t work_len, const int8_t *x, size_t n, int32_t *logits);

/* "avx2" when this build multiplies with AVX2, "portable" when it runs the plain C loops. */
const char *har_dense_simd(void);

#ifdef __cplusplus
}
#endif

#endif
