/*
 * device_nostream.c — the stream module of a device image without a sensor (device.h): SENSOR
 * reports none (source 0, rate 0, no channels) and SET_STREAM is refused with ERROR BAD_STATE,
 * detail = the stream flags this build supports: none (docs/PROTOCOL.md).
 */
#include "device.h"

void stream_answer_sensor(uint16_t ref_seq)
{
    har_proto_sensor s;
    s.ref_seq = ref_seq;
    s.rate_mhz = 0u;
    s.source = HAR_SOURCE_NONE;
    s.stride = 0u;
    s.n_channels = 0u;
    s.channels = 0;
    device_sent(har_proto_send_sensor(&device_tx, device_tx_seq, &s));
}

void stream_answer_set(uint16_t ref_seq, uint8_t flags)
{
    (void)flags;
    device_send_error(ref_seq, HAR_PROTO_E_BAD_STATE, HAR_MSG_SET_STREAM, 0u);
}

void stream_poll(void)
{
}

uint32_t stream_samples_dropped(void)
{
    return 0u;
}

void stream_clear_counters(void)
{
}
