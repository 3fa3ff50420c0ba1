/*
 * har_sensor.h — the sensor hook of the device firmware: where sensor mode's samples come from
 * (docs/FIRMWARE.md, "Sensor mode"). C99, freestanding, no malloc, no floating point.
 *
 * A sensor image links exactly one implementation of the five functions below:
 *
 *   sensor_recording.c   a recording compiled into the image (the generated har_sensor_data.c),
 *                        replayed at its real rate by board_time_us(), or as fast as the link
 *                        drains (FAST); SENSOR reports source 2. What QEMU runs.
 *   an IMU driver        the place for a real board's sensor (SENSOR source 1): implement these
 *                        functions over the IMU's bus (SPI/I2C) and its FIFO or data-ready pin.
 *                        Deliver samples in the channel order and raw int16 units that
 *                        har_sensor_info() describes (generate har_sensor_data with the IMU's
 *                        scales: the device-tier input stage is folded for them), stamp each with
 *                        board_time_us() when it was measured, number them from 0 at
 *                        har_sensor_start, and skip the numbers of samples the FIFO lost (count
 *                        them in har_sensor_dropped) — the host sees lost samples from the gap.
 *                        har_sensor_start(1) returns -1: a real sensor has no FAST mode.
 *
 * Samples are pulled from the main loop (har_sensor_poll), never pushed from an interrupt: the
 * sensor (or its FIFO) holds them while the device is busy sending or classifying.
 */
#ifndef HAR_SENSOR_H
#define HAR_SENSOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SENSOR's `source` values (docs/PROTOCOL.md). */
#define HAR_SENSOR_SOURCE_IMU 1u
#define HAR_SENSOR_SOURCE_RECORDING 2u

typedef struct {
    const char *name;          /* NUL-terminated, <= 16 printable ASCII, e.g. "hip.acc.x" */
    const char *unit;          /* NUL-terminated, <= 8, e.g. "g" */
    uint32_t scale_bits;       /* IEEE 754 binary32 bits of the scale: value in unit = raw x scale */
} har_sensor_channel;

typedef struct {
    uint8_t source;            /* HAR_SENSOR_SOURCE_* */
    uint8_t n_channels;
    uint32_t rate_mhz;         /* sample rate in millihertz */
    const har_sensor_channel *channels;   /* [n_channels], in the order of a sample's values */
} har_sensor_desc;

/* What the sensor streams (constant). */
const har_sensor_desc *har_sensor_info(void);

/* Starts (or restarts) sampling: the next sample polled is number 0. fast != 0: deliver samples
 * as fast as they are polled, timestamped as at the real rate (a recording only); returns -1,
 * changing nothing, where that is impossible. Returns 0 when started. */
int har_sensor_start(int fast);

/* Stops sampling; har_sensor_poll returns 0 until the next start. */
void har_sensor_stop(void);

/* 1 and the oldest sample not yet delivered: n_channels raw values into sample[], when it was
 * measured (*t_us, board_time_us's clock) and its number since start (*index: a sample the
 * sensor had to drop leaves its number out); 0 when none is ready. Never blocks. */
int har_sensor_poll(int16_t *sample, uint32_t *t_us, uint32_t *index);

/* Samples lost since reset because the sensor's FIFO overran while nobody polled (wraps). */
uint32_t har_sensor_dropped(void);

#ifdef __cplusplus
}
#endif
#endif /* HAR_SENSOR_H */
