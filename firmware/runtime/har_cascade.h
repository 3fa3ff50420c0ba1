/*
 * har_cascade.h — the adaptive cascade on a device, as streamhar/inference/cascade.py's Cascade:
 * width `small` first; its score margin (top-1 − top-2 of the int32 logits, argmax_margin) decides.
 * margin > threshold → the narrow answer is committed; margin <= threshold → the same window runs
 * at width `full`, whose answer is committed (Daghero et al. 2022's score-margin policy). The
 * threshold is an integer logit margin (units of 1/logit_scale) and may change at run time
 * (har_cascade_set_threshold; the device protocol's SET_THRESHOLD): -1 never escalates.
 */
#ifndef HAR_CASCADE_H
#define HAR_CASCADE_H

#include <stdint.h>

#include "har_net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint32_t small;       /* width index of the narrow network */
    uint32_t full;        /* width index of the full network */
    int64_t threshold;    /* escalate when the narrow margin <= threshold */
} har_cascade;

enum { HAR_CASCADE_NARROW = 0, HAR_CASCADE_ESCALATED = 1 };

typedef struct {
    uint32_t cls;         /* the committed class */
    uint32_t path;        /* HAR_CASCADE_NARROW, or HAR_CASCADE_ESCALATED (the full width answered) */
    int64_t margin;       /* the narrow network's margin (what the decision used) */
    int64_t full_margin;  /* the full network's margin when escalated, else 0 */
} har_cascade_result;

void har_cascade_set_threshold(har_cascade *c, int64_t threshold);

/* One window through the cascade. `logits` [n_classes] receives the committing width's logits.
 * Returns HAR_OK or the HAR_ERR_* code of har_net_run. */
int har_cascade_run(const har_net *net, const har_cascade *c, const int8_t *x, const har_scratch *scratch,
                    int32_t *logits, har_cascade_result *result);

#ifdef __cplusplus
}
#endif
#endif /* HAR_CASCADE_H */
