/*
 * har_float.c — see har_float.h. Plain loops, as one would write a float network for a
 * microcontroller without a DSP library; compiled with the firmware's flags (and
 * -ffp-contract=fast, so a Cortex-M4F gets its fused multiply-add, one instruction per MAC).
 */
#include "har_float.h"

static size_t conv_len(size_t t_in, size_t k, size_t padding)
{
    return (k == 0 || t_in + 2u * padding < k) ? 0 : t_in + 2u * padding - k + 1u;
}

/* Per output row, per tap (c, k): the input row c, shifted by k − padding, times the weight,
 * added into the output row over the positions whose input lies inside [0, t_in) (the others
 * read the zero padding). The same loop order as the ternary kernel; of the two plain loop
 * orders it is the faster one on both targets (the other, one register accumulator per output
 * sample summed over c and k, ran 12 % more instructions on the M4 and 1 % more on RV32IMC for
 * USC-HAD): the baseline is not handicapped by its loop order. Dense: zero weights are MACs too. */
size_t har_float_conv1d(const float *x, size_t n_in, size_t t_in, const float *w, size_t row_stride,
                        size_t n_out, size_t k, size_t padding, float *acc)
{
    size_t t_out = conv_len(t_in, k, padding), o, t, c, kk;
    for (o = 0; o < n_out; ++o) {
        const float *wr = w + o * row_stride;
        float *a = acc + o * t_out;
        for (t = 0; t < t_out; ++t)
            a[t] = 0.0f;
        for (c = 0; c < n_in; ++c)
            for (kk = 0; kk < k; ++kk) {
                const float wv = wr[c * k + kk];
                /* output t reads input t + kk − padding: valid for t in [t0, t1) */
                size_t t0 = kk < padding ? padding - kk : 0;
                size_t t1 = t_in + padding > kk ? t_in + padding - kk : 0;
                const float *xr;
                if (t1 > t_out)
                    t1 = t_out;
                if (t0 >= t1)
                    continue;
                xr = x + c * t_in + (t0 + kk - padding);
                for (t = t0; t < t1; ++t)
                    a[t] += wv * xr[t - t0];
            }
    }
    return t_out;
}

size_t har_float_maxpool1d(const float *acc, size_t c, size_t t_in, size_t pool, float *out)
{
    size_t t_out = pool ? t_in / pool : 0, ch, t, p;
    for (ch = 0; ch < c; ++ch)
        for (t = 0; t < t_out; ++t) {
            const float *a = acc + ch * t_in + t * pool;
            float best = a[0];
            for (p = 1; p < pool; ++p)
                if (a[p] > best)
                    best = a[p];
            out[ch * t_out + t] = best;
        }
    return t_out;
}

void har_float_scale_clamp(const float *acc, size_t c, size_t t, const float *scale, const float *bias,
                           float hi, float *out)
{
    size_t ch, i;
    for (ch = 0; ch < c; ++ch)
        for (i = 0; i < t; ++i) {
            float v = acc[ch * t + i] * scale[ch] + bias[ch];
            v = v < 0.0f ? 0.0f : v;
            out[ch * t + i] = v > hi ? hi : v;
        }
}

void har_float_sum_pool(const float *x, size_t c, size_t t, float *out)
{
    size_t ch, i;
    for (ch = 0; ch < c; ++ch) {
        float s = 0.0f;
        for (i = 0; i < t; ++i)
            s += x[ch * t + i];
        out[ch] = s;
    }
}

void har_float_fc(const float *feat, size_t n_feat, const float *w, size_t row_stride, size_t n_out,
                  float *out)
{
    size_t o, c;
    for (o = 0; o < n_out; ++o) {
        float s = 0.0f;
        for (c = 0; c < n_feat; ++c)
            s += w[o * row_stride + c] * feat[c];
        out[o] = s;
    }
}

void har_float_scale(const float *acc, size_t n, const float *scale, const float *bias, float *logits)
{
    size_t i;
    for (i = 0; i < n; ++i)
        logits[i] = acc[i] * scale[i] + bias[i];
}

size_t har_float_argmax(const float *v, size_t n)
{
    size_t i, best = 0;
    for (i = 1; i < n; ++i)
        if (v[i] > v[best])
            best = i;
    return best;
}

void har_float_scratch_size(const har_float_net *net, size_t *act_len, size_t *acc_len)
{
    size_t i, t = net->window, act = 0, acc = net->channels[net->n_blocks - 1] + net->n_classes;
    for (i = 0; i < net->n_blocks; ++i) {
        size_t tc = conv_len(t, net->kernels[i], net->padding[i]);
        t = tc / net->pools[i];
        if (net->channels[i] * tc > acc)
            acc = net->channels[i] * tc;
        if (net->channels[i] * t > act)
            act = net->channels[i] * t;
    }
    *act_len = act;
    *acc_len = acc;
}

int har_float_run(const har_float_net *net, uint32_t width, const float *x, const har_float_scratch *s,
                  float *logits)
{
    size_t need_act, need_acc, i, n_in = net->in_channels, t = net->window;
    const uint32_t *wc;
    const float *in = x;
    const har_float_affine *fa;
    if (width >= net->n_widths)
        return HAR_FLOAT_ERR_WIDTH;
    har_float_scratch_size(net, &need_act, &need_acc);
    if (s->act_len < need_act || s->acc_len < need_acc)
        return HAR_FLOAT_ERR_SCRATCH;
    wc = net->width_channels + (size_t)width * net->n_blocks;
    for (i = 0; i < net->n_blocks; ++i) {
        size_t n_out = wc[i], k = net->kernels[i];
        size_t c_full_in = i == 0 ? net->in_channels : net->channels[i - 1];
        const har_float_affine *a = net->affine + (size_t)width * net->n_blocks + i;
        float *out = s->act[i % 2u];
        size_t tc = har_float_conv1d(in, n_in, t, net->conv[i], c_full_in * k, n_out, k, net->padding[i], s->acc);
        size_t tp = har_float_maxpool1d(s->acc, n_out, tc, net->pools[i], s->acc);
        har_float_scale_clamp(s->acc, n_out, tp, a->scale, a->bias, net->act_max[i], out);
        in = out;
        n_in = n_out;
        t = tp;
    }
    fa = net->fc_affine + width;
    har_float_sum_pool(in, n_in, t, s->acc);
    har_float_fc(s->acc, n_in, net->fc, net->channels[net->n_blocks - 1], net->n_classes, s->acc + n_in);
    har_float_scale(s->acc + n_in, net->n_classes, fa->scale, fa->bias, logits);
    return HAR_FLOAT_OK;
}
