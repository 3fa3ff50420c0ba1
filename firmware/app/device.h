/*
 * device.h — what the protocol server (device_main.c) shares with its stream module, one of
 *   device_stream.c    sensor mode: SAMPLES and the device-tier cascade (a sensor image), or
 *   device_nostream.c  no sensor: SET_STREAM refused, SENSOR says "none" (the plain device image).
 * Everything is static storage: nothing is allocated.
 */
#ifndef DEVICE_H
#define DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "har_cascade.h"
#include "har_model.h"
#include "har_proto.h"

/* ---- device_main.c provides ---- */

extern har_proto_tx device_tx;          /* frames to the host (the UART) */
extern uint16_t device_tx_seq;          /* seq of the next frame sent */
extern har_cascade device_cascade;      /* widths and the threshold in force */
extern har_scratch device_scratch;      /* the network's buffers (one inference at a time) */
extern int32_t device_logits[HAR_N_CLASSES];
extern uint32_t device_inferences, device_escalations;   /* STATS counters 10 and 11 */

/* After every frame built on device_tx: counts it (seq, frames_sent, the link). */
void device_sent(size_t wire);
void device_send_error(uint16_t ref_seq, uint8_t code, uint8_t ref_type, uint32_t detail);
void device_send_ack(uint16_t ref_seq, uint8_t ref_type, int64_t value);

/* 1 when the UART would have sent every frame so far at BOARD_UART_BAUD (with a few hundred
 * bytes of slack): the pace of FAST streaming. A real UART blocks the sender at this rate; QEMU's
 * models do not (sifive_e's drops what the host side cannot take), so the device keeps count. */
int device_link_idle(void);

/* ---- the stream module provides ---- */

void stream_answer_sensor(uint16_t ref_seq);            /* SENSOR_REQ → SENSOR */
void stream_answer_set(uint16_t ref_seq, uint8_t flags); /* SET_STREAM → ACK, or ERROR */
void stream_poll(void);                   /* one step of streaming, from the main loop */
uint32_t stream_samples_dropped(void);    /* STATS counter 12 since the last reset */
void stream_clear_counters(void);         /* STATS reset */

#endif /* DEVICE_H */
