/*
 * sensor_recording.c — har_sensor.h over a recording compiled into the image (the generated
 * har_sensor_data.c: int16 samples, rate, channels), as QEMU's "sensor".
 *
 * It behaves like an IMU with a FIFO of HAR_SENSOR_FIFO samples: sample k is measured at
 * start + k periods of the device clock (board_time_us) and can be polled from then on; when the
 * device has not polled for longer than the FIFO holds, the oldest samples are lost — counted
 * in har_sensor_dropped, their numbers skipped — exactly what a busy device would see from real
 * hardware. The recording loops (sample k is row k mod HAR_SENSOR_SAMPLES) and numbers keep
 * counting. FAST delivers sample k as soon as it is polled, with the same timestamps.
 *
 * 64-bit counters: sample numbers and elapsed microseconds never wrap in practice (the 32-bit
 * clock is extended on every poll, so polls must come less than 71 minutes apart).
 */
#include "board.h"
#include "har_sensor.h"
#include "har_sensor_data.h"

#define US_PER_S_MHZ 1000000000u   /* microseconds per second x millihertz per hertz */

static const har_sensor_desc desc = {
    HAR_SENSOR_SOURCE_RECORDING, (uint8_t)HAR_SENSOR_CHANNELS, HAR_SENSOR_RATE_MHZ, har_sensor_channels
};
static uint8_t running, fast;
static uint32_t start_us, last_us;
static uint64_t elapsed_us;   /* since start */
static uint64_t next;         /* number of the next sample to deliver */
static uint32_t dropped;

const har_sensor_desc *har_sensor_info(void)
{
    return &desc;
}

int har_sensor_start(int fast_replay)
{
    fast = fast_replay != 0;
    start_us = last_us = board_time_us();
    elapsed_us = 0;
    next = 0;
    running = 1;
    return 0;
}

void har_sensor_stop(void)
{
    running = 0;
}

uint32_t har_sensor_dropped(void)
{
    return dropped;
}

int har_sensor_poll(int16_t *sample, uint32_t *t_us, uint32_t *index)
{
    const int16_t *row;
    uint32_t i;
    if (!running)
        return 0;
    if (!fast) {
        uint32_t now = board_time_us();
        uint64_t due;
        elapsed_us += (uint32_t)(now - last_us);
        last_us = now;
        /* samples measured by now: the one at start, then one per period */
        due = elapsed_us * HAR_SENSOR_RATE_MHZ / US_PER_S_MHZ + 1u;
        if (due <= next)
            return 0;
        if (due - next > HAR_SENSOR_FIFO) {        /* the FIFO overran: the oldest are gone */
            dropped += (uint32_t)(due - next - HAR_SENSOR_FIFO);
            next = due - HAR_SENSOR_FIFO;
        }
    }
    row = har_sensor_samples + (size_t)(next % HAR_SENSOR_SAMPLES) * HAR_SENSOR_CHANNELS;
    for (i = 0; i < HAR_SENSOR_CHANNELS; ++i)
        sample[i] = row[i];
    *t_us = start_us + (uint32_t)(next * US_PER_S_MHZ / HAR_SENSOR_RATE_MHZ);
    *index = (uint32_t)next;
    ++next;
    return 1;
}
