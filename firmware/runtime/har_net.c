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

int har_net_run(const har_net *net, uint32_t width, const int8_t *x, const har_scratch *scratch,
                int32_t *logits)
{
    size_t need_act, need_acc, i, n_in, t;
    const void *in = x;
    har_in_type in_type = HAR_IN_S8;
    const uint32_t *wc;
    const har_requant *fr;
    int rc;

    if (width >= net->n_widths)
        return HAR_ERR_WIDTH;
    rc = har_net_scratch_size(net, &need_act, &need_acc);
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
        size_t n_out = wc[i];
        size_t c_full_in = i == 0 ? net->in_channels : net->channels[i - 1];
        const har_requant *r = net->requant + (size_t)width * net->n_blocks + i;
        uint8_t *out = scratch->act[i % 2u];
        size_t tc = conv1d_ternary(in, in_type, n_in, t, net->conv[i], har_row_bytes(c_full_in, net->kernels[i]),
                                   n_out, net->kernels[i], net->padding[i], scratch->acc);
        size_t tp = maxpool1d(scratch->acc, n_out, tc, net->pools[i], scratch->acc);
        requantize(scratch->acc, n_out, tp, r->m, r->shift, r->bias, 0, (int32_t)net->act_levels[i], out);
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
