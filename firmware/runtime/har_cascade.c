/*
 * har_cascade.c — see har_cascade.h. Portable C99, no floating point.
 */
#include "har_cascade.h"

void har_cascade_set_threshold(har_cascade *c, int64_t threshold)
{
    c->threshold = threshold;
}

int har_cascade_run(const har_net *net, const har_cascade *c, const int8_t *x, const har_scratch *scratch,
                    int32_t *logits, har_cascade_result *result)
{
    int64_t margin;
    int rc = har_net_run(net, c->small, x, scratch, logits);
    if (rc != HAR_OK)
        return rc;
    result->cls = (uint32_t)argmax_margin(logits, net->n_classes, &margin);
    result->margin = margin;
    result->full_margin = 0;
    result->path = HAR_CASCADE_NARROW;
    if (margin > c->threshold)
        return HAR_OK;
    rc = har_net_run(net, c->full, x, scratch, logits);
    if (rc != HAR_OK)
        return rc;
    result->cls = (uint32_t)argmax_margin(logits, net->n_classes, &result->full_margin);
    result->path = HAR_CASCADE_ESCALATED;
    return HAR_OK;
}
