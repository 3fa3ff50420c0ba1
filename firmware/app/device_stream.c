/*
 * device_stream.c — sensor mode of the device firmware (device.h's stream module): SET_STREAM
 * starts the sensor (firmware/sensor/har_sensor.h); every sample polled goes
 *   - into SAMPLES frames (flag SAMPLES), HAR_SENSOR_BATCH samples (0.1 s) per frame;
 *   - into the device-tier cascade (flags RESULTS, UNCERTAIN): the int8 window [C][L] the
 *     network reads, filled column by column through quantize_raw_i16 (the input stage folded
 *     from the bundle's normalization, har_sensor_data.c). Every HAR_SENSOR_STRIDE samples
 *     (streamhar's windows: the first ends at sample L − 1) the NARROW width runs on it; margin >
 *     threshold → the device commits the class (DEVICE_RESULT), margin <= threshold → the window
 *     goes to the host whole (UNCERTAIN) for the full width: only uncertain windows use the radio.
 * The window slides in place: after a window, its rows move left by the stride and new samples
 * fill the right end, so one C·L buffer is all the RAM windowing needs (no ring plus copy).
 * Lost samples (a jump of the sensor's sample number) close the current SAMPLES frame, so
 * first_index numbers every sample of a frame, and restart windowing empty (no window spans a
 * gap). FAST samples are pulled only while the link keeps up (device_link_idle).
 */
#include "board.h"
#include "device.h"
#include "har_kernels.h"
#include "har_sensor.h"
#include "har_sensor_data.h"

#if HAR_SENSOR_CHANNELS != HAR_IN_CHANNELS
#error "har_sensor_data.c has another channel count than the model: generate both from one bundle"
#endif
#if HAR_SENSOR_MODEL_ID != HAR_MODEL_ID
#error "har_sensor_data.c's input stage was folded for another model: regenerate it with this one"
#endif
#if HAR_SENSOR_STRIDE < 1 || HAR_SENSOR_BATCH < 1
#error "har_sensor_data.h: stride and batch must be at least 1"
#endif
#if 15u + 2u * HAR_SENSOR_BATCH * HAR_SENSOR_CHANNELS > HAR_PROTO_MAX_PAYLOAD
#error "HAR_SENSOR_BATCH samples do not fit one SAMPLES frame"
#endif

#define C HAR_IN_CHANNELS
#define L HAR_WINDOW
#define WINDOW_FLAGS (HAR_STREAM_RESULTS | HAR_STREAM_UNCERTAIN)

static int8_t window[C * L] __attribute__((aligned(8)));   /* [C][L]: kernels may load words */
static int16_t batch[HAR_SENSOR_BATCH * C];                 /* [n][C], time-major as on the wire */
static har_proto_sensor_channel channels[C];                /* SENSOR's view of the channels */
static uint8_t flags;                                        /* in force; 0: not streaming */
static uint32_t batch_n, batch_index, batch_t;
static uint32_t expect;           /* the sample number that follows the last one */
static uint32_t filled;           /* samples in the window, from column 0 */
static uint32_t skip;             /* samples before the next window starts (stride > window) */
static uint32_t window_id;
static uint32_t dropped_base;     /* har_sensor_dropped() at the last STATS reset */

void stream_answer_sensor(uint16_t ref_seq)
{
    const har_sensor_desc *d = har_sensor_info();
    har_proto_sensor s;
    uint8_t i, n;
    for (i = 0; i < d->n_channels && i < C; ++i) {
        const har_sensor_channel *c = &d->channels[i];
        for (n = 0; c->name[n] && n < HAR_PROTO_MAX_SENSOR_NAME + 1u; ++n)
            ;
        channels[i].name = c->name;
        channels[i].name_len = n;      /* 17: the builder refuses it rather than cut it */
        for (n = 0; c->unit[n] && n < HAR_PROTO_MAX_SENSOR_UNIT + 1u; ++n)
            ;
        channels[i].unit = c->unit;
        channels[i].unit_len = n;
        channels[i].scale_bits = c->scale_bits;
    }
    s.ref_seq = ref_seq;
    s.rate_mhz = d->rate_mhz;
    s.source = d->source;
    s.stride = (uint16_t)HAR_SENSOR_STRIDE;
    s.n_channels = i;
    s.channels = channels;
    device_sent(har_proto_send_sensor(&device_tx, device_tx_seq, &s));
}

static void send_batch(void)
{
    har_proto_samples m;
    if (!batch_n)
        return;
    m.t_first_us = batch_t;
    m.first_index = batch_index;
    m.rate_mhz = har_sensor_info()->rate_mhz;
    m.channels = (uint8_t)C;
    m.n_samples = (uint16_t)batch_n;
    m.samples = batch;
    device_sent(har_proto_send_samples(&device_tx, device_tx_seq, &m));
    batch_n = 0;
}

void stream_answer_set(uint16_t ref_seq, uint8_t want)
{
    send_batch();                 /* samples taken so far reach the host before the ACK */
    if (want == 0u) {
        har_sensor_stop();
    } else if (har_sensor_start((want & HAR_STREAM_FAST) != 0u) != 0) {
        device_send_error(ref_seq, HAR_PROTO_E_BAD_VALUE, HAR_MSG_SET_STREAM, 0u);  /* no FAST here */
        return;                   /* the streams in force go on */
    }
    flags = want;
    expect = 0;
    filled = skip = 0;
    window_id = 0;
    device_send_ack(ref_seq, HAR_MSG_SET_STREAM, want);
}

/* The narrow width on the full window: commit it, or hand it to the host. */
static void classify(uint32_t t_last_us)
{
    har_proto_result r;
    int64_t margin;
    size_t cls;
    if (har_net_run(&har_model, device_cascade.small, window, &device_scratch, device_logits) != HAR_OK)
        return;                   /* a generated model is consistent: cannot happen */
    cls = argmax_margin(device_logits, HAR_N_CLASSES, &margin);
    ++device_inferences;
    r.predicted = (uint8_t)cls;
    r.path = HAR_PATH_NARROW;
    r.n_classes = (uint8_t)HAR_N_CLASSES;
    r.have = 0u;                  /* not measured: the stream runs without -icount */
    r.margin = margin;
    r.cycles = r.instructions = 0u;
    r.logits = device_logits;
    if (margin > device_cascade.threshold) {
        if (flags & HAR_STREAM_RESULTS) {
            har_proto_device_result m;
            m.window_id = window_id;
            m.t_last_us = t_last_us;
            m.result = r;
            device_sent(har_proto_send_device_result(&device_tx, device_tx_seq, &m));
        }
    } else {
        ++device_escalations;     /* escalated to the host */
        if (flags & HAR_STREAM_UNCERTAIN) {
            har_proto_uncertain m;
            m.window_id = window_id;
            m.t_last_us = t_last_us;
            m.result = r;
            m.in_channels = (uint16_t)C;
            m.window = (uint16_t)L;
            m.samples = window;
            device_sent(har_proto_send_uncertain(&device_tx, device_tx_seq, &m));
        }
    }
    ++window_id;
}

/* After a window: keep its last L − stride columns as the next window's first ones. */
static void slide(void)
{
    uint32_t c, t;
    if (HAR_SENSOR_STRIDE >= L) {
        filled = 0;
        skip = HAR_SENSOR_STRIDE - L;
        return;
    }
    for (c = 0; c < C; ++c)
        for (t = 0; t + HAR_SENSOR_STRIDE < L; ++t)
            window[c * L + t] = window[c * L + t + HAR_SENSOR_STRIDE];
    filled = L - HAR_SENSOR_STRIDE;
}

static void take(const int16_t *sample, uint32_t t_us, uint32_t index)
{
    int gap = index != expect;
    uint32_t c;
    expect = index + 1u;
    if (flags & HAR_STREAM_SAMPLES) {
        if (gap)
            send_batch();
        if (batch_n == 0) {
            batch_index = index;
            batch_t = t_us;
        }
        for (c = 0; c < C; ++c)
            batch[batch_n * C + c] = sample[c];
        if (++batch_n == HAR_SENSOR_BATCH)
            send_batch();
    }
    if (!(flags & WINDOW_FLAGS))
        return;
    if (gap)
        filled = skip = 0;
    if (skip) {
        --skip;
        return;
    }
    quantize_raw_i16(sample, 1, C, har_input_m, har_input_shift, har_input_bias, window + filled, L);
    if (++filled == L) {
        classify(t_us);
        slide();
    }
}

void stream_poll(void)
{
    int16_t sample[C];
    uint32_t t_us, index;
    if (!flags)
        return;
    if ((flags & HAR_STREAM_FAST) && !device_link_idle())
        return;
    if (har_sensor_poll(sample, &t_us, &index))
        take(sample, t_us, index);
}

uint32_t stream_samples_dropped(void)
{
    return har_sensor_dropped() - dropped_base;
}

void stream_clear_counters(void)
{
    dropped_base = har_sensor_dropped();
}
