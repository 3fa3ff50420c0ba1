/*
 * har_net.c — see har_net.h. Portable C99: no malloc, no floating point, no libc beyond
 * <stdint.h>/<stddef.h>.
 */
#include "har_net.h"

/* Samples after block i's convolution ("same"-style padding) and after its pool, given t_in. */
static size_t har_conv_len(size_t t_in, size_t k, size_t pad)
{
    return (k == 0 || t_in + 2u * pad < k) ? 0 : t_in + 2u * pad - k + 1u;
}

int har_net_scratch_size(const har_net *net, size_t *act_len, size_t *acc_len)
{
    size_t i, t = net->window, act = 0, acc = 0, c_last;
    if (net->n_blocks == 0 || net->n_classes < 1)
        return HAR_ERR_SHAPE;
    for (i = 0; i < net->n_blocks; ++i) {
        size_t c = net->channels[i];
        size_t tc = har_conv_len(t, net->kernels[i], net->padding[i]);
        size_t tp = net->pools[i] ? tc / net->pools[i] : 0;
        if (tp == 0 || net->act_levels[i] > 255u)
            return HAR_ERR_SHAPE;
        if (c * tc > acc)
            acc = c * tc;
        if (c * tp > act)
            act = c * tp;
        t = tp;
    }
    c_last = net->channels[net->n_blocks - 1];
    if (c_last + net->n_classes > acc)
        acc = c_last + net->n_classes;
    *act_len = act;
    *acc_len = acc;
    return HAR_OK;
}

int har_net_scratch_min(const har_net *net, size_t *act_len, size_t *acc_len)
{
    size_t i, t = net->window, acc = 0;
    int rc = har_net_scratch_size(net, act_len, &acc);
    if (rc != HAR_OK)
        return rc;
    acc = net->channels[net->n_blocks - 1] + net->n_classes;
    for (i = 0; i < net->n_blocks; ++i) {
        size_t tc = har_conv_len(t, net->kernels[i], net->padding[i]);
        if (tc > acc)
            acc = tc;
        t = tc / net->pools[i];
    }
    *acc_len = acc;
    return HAR_OK;
}

uint32_t har_layer_checksum(const uint8_t *codes, size_t n)
{
    uint32_t h = 0;
    size_t j;
    for (j = 0; j < n; ++j)
        h += (uint32_t)(2u * j + 1u) * codes[j];
    return h;
}

int har_net_run_traced(const har_net *net, uint32_t width, const int8_t *x, const har_scratch *scratch,
                       int32_t *logits, uint32_t *trace)
{
    size_t need_act, need_acc, i, n_in, t;
    const void *in = x;
    har_in_type in_type = HAR_IN_S8;
    const uint32_t *wc;
    const har_requant *fr;
    int rc;

    if (width >= net->n_widths)
        return HAR_ERR_WIDTH;
    rc = har_net_scratch_min(net, &need_act, &need_acc);
    if (rc != HAR_OK)
        return rc;
    if (scratch->act_len < need_act || scratch->acc_len < need_acc)
        return HAR_ERR_SCRATCH;
    wc = net->width_channels + (size_t)width * net->n_blocks;
    for (i = 0; i < net->n_blocks; ++i)
        if (wc[i] < 1u || wc[i] > net->channels[i])
            return HAR_ERR_SHAPE;

    n_in = net->in_channels;
    t = net->window;
    for (i = 0; i < net->n_blocks; ++i) {
        size_t n_out = wc[i], o0, tc = har_conv_len(t, net->kernels[i], net->padding[i]);
        size_t c_full_in = i == 0 ? net->in_channels : net->channels[i - 1];
        size_t row_bytes = har_row_bytes(c_full_in, net->kernels[i]);
        size_t tile = scratch->acc_len / tc, tp = tc / net->pools[i];
        const har_requant *r = net->requant + (size_t)width * net->n_blocks + i;
        uint8_t *out = scratch->act[i % 2u];
        /* Output channels are independent: a tile of them at a time keeps the int32 accumulators
         * within acc_len (a microcontroller's RAM), with the same result as all at once. */
        for (o0 = 0; o0 < n_out; o0 += tile) {
            size_t n = n_out - o0 < tile ? n_out - o0 : tile;
            conv1d_ternary(in, in_type, n_in, t, net->conv[i] + o0 * row_bytes, row_bytes, n, net->kernels[i],
                           net->padding[i], scratch->acc);
            maxpool1d(scratch->acc, n, tc, net->pools[i], scratch->acc);
            requantize(scratch->acc, n, tp, r->m + o0, r->shift + o0, r->bias + o0, 0,
                       (int32_t)net->act_levels[i], out + o0 * tp);
        }
        if (trace)
            trace[i] = har_layer_checksum(out, n_out * tp);
        in = out;
        in_type = HAR_IN_U8;
        n_in = n_out;
        t = tp;
    }
    fr = net->fc_requant + width;
    global_sum_pool((const uint8_t *)in, n_in, t, scratch->acc);
    fc_int8(scratch->acc, n_in, net->fc, net->channels[net->n_blocks - 1], net->n_classes, scratch->acc + n_in);
    requantize_logits(scratch->acc + n_in, net->n_classes, fr->m, fr->shift, fr->bias, logits);
    return HAR_OK;
}

int har_net_run(const har_net *net, uint32_t width, const int8_t *x, const har_scratch *scratch,
                int32_t *logits)
{
    return har_net_run_traced(net, width, x, scratch, logits, (uint32_t *)0);
}

int har_net_run_batch(const har_net *net, uint32_t width, const int8_t *x, size_t n,
                      const har_scratch *scratch, int32_t *logits)
{
    size_t b, in_len = (size_t)net->in_channels * net->window;
    for (b = 0; b < n; ++b) {
        int rc = har_net_run(net, width, x + b * in_len, scratch, logits + b * net->n_classes);
        if (rc != HAR_OK)
            return rc;
    }
    return HAR_OK;
}
