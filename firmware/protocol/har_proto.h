/*
 * har_proto.h — the UART device protocol, firmware side (specification: docs/PROTOCOL.md;
 * the same protocol in Python: streamhar/firmware/protocol.py).
 *
 * On the wire a frame is   00 | COBS(body) | 00,   body = type u8 | seq u16 | payload | crc u16,
 * all integers little-endian, crc = CRC-16/CCITT-FALSE over type, seq and payload.
 *
 * Portable C99 for microcontrollers: no malloc, no floating point, no libc (not even
 * <string.h>). Memory is the caller's:
 *   - har_proto_rx decodes byte by byte as bytes arrive (call har_proto_rx_feed from the main
 *     loop, not from the UART interrupt) into a caller-provided payload buffer. The buffer can
 *     be the firmware's window buffer: an INFER_REQ's int8 samples start at payload offset 16.
 *   - har_proto_tx encodes frames either into a caller-provided buffer or straight to a write
 *     callback (the UART) through a 255-byte block buffer, so a 6 KB frame needs no 6 KB copy.
 */
#ifndef HAR_PROTO_H
#define HAR_PROTO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAR_PROTO_VERSION       1u
#define HAR_PROTO_MAX_PAYLOAD   6144u   /* a 45 x 125 int8 window plus its 16-byte header (5641) fits */
#define HAR_PROTO_HEADER_BYTES  3u      /* type + seq */
#define HAR_PROTO_CRC_BYTES     2u
#define HAR_PROTO_MAX_BODY      (HAR_PROTO_HEADER_BYTES + HAR_PROTO_MAX_PAYLOAD + HAR_PROTO_CRC_BYTES)
/* Longest frame on the wire: COBS adds one byte per started 254-byte run, plus two delimiters. */
#define HAR_PROTO_MAX_WIRE      (HAR_PROTO_MAX_BODY + HAR_PROTO_MAX_BODY / 254u + 1u + 2u)
#define HAR_PROTO_MAX_WIDTHS    8u      /* VERSION: widths listed */
#define HAR_PROTO_MAX_BOARD     32u     /* VERSION: board name bytes */
#define HAR_PROTO_MAX_COUNTERS  32u     /* STATS: counters listed */
#define HAR_PROTO_MAX_SENSOR_CHANNELS 64u  /* SENSOR: channels listed (DSADS has 45) */
#define HAR_PROTO_MAX_SENSOR_NAME 16u   /* SENSOR: bytes of a channel name */
#define HAR_PROTO_MAX_SENSOR_UNIT 8u    /* SENSOR: bytes of a channel unit */

/* Message types. 0x01-0x3F host -> device requests, 0x40-0x7F device -> host replies,
 * 0x80-0xBF device -> host unsolicited (streams), 0xC0-0xFF and 0x00 reserved. */
enum har_proto_type {
    HAR_MSG_VERSION_REQ   = 0x01,
    HAR_MSG_INFER_REQ     = 0x02,
    HAR_MSG_SET_THRESHOLD = 0x03,
    HAR_MSG_STATS_REQ     = 0x04,
    HAR_MSG_SET_STREAM    = 0x05,
    HAR_MSG_SENSOR_REQ    = 0x06,
    HAR_MSG_VERSION       = 0x41,
    HAR_MSG_INFER_RESULT  = 0x42,
    HAR_MSG_ACK           = 0x43,
    HAR_MSG_STATS         = 0x44,
    HAR_MSG_SENSOR        = 0x45,
    HAR_MSG_ERROR         = 0x7F,
    HAR_MSG_SAMPLES       = 0x80,
    HAR_MSG_UNCERTAIN     = 0x81,
    HAR_MSG_DEVICE_RESULT = 0x82
};

/* ERROR codes (also what the parsers and har_proto_check return; 0 = valid). */
enum har_proto_code {
    HAR_PROTO_OK             = 0,
    HAR_PROTO_E_CRC          = 1,  /* detail: received CRC << 16 | computed CRC */
    HAR_PROTO_E_COBS         = 2,  /* frame ended inside a COBS run (torn); detail: body bytes decoded */
    HAR_PROTO_E_SHORT        = 3,  /* body < 5 bytes; detail: body bytes */
    HAR_PROTO_E_OVERLONG     = 4,  /* payload larger than the receiver's buffer; detail: largest accepted */
    HAR_PROTO_E_UNKNOWN_TYPE = 5,  /* detail: 0 unknown, 1 known type of the other direction */
    HAR_PROTO_E_BAD_LENGTH   = 6,  /* detail: the payload length the layout requires */
    HAR_PROTO_E_BAD_VALUE    = 7,  /* detail: payload offset of the offending field */
    HAR_PROTO_E_BAD_STATE    = 8,  /* valid request the device cannot serve now (no model, another model, wrong shape) */
    HAR_PROTO_E_NO_ROOM      = 0x100 /* parsers only: the caller's array is too small (never on the wire) */
};

enum har_proto_mode { HAR_MODE_CASCADE = 0, HAR_MODE_NARROW = 1, HAR_MODE_FULL = 2 };
enum har_proto_path { HAR_PATH_NARROW = 0, HAR_PATH_ESCALATED = 1, HAR_PATH_FULL = 2 };
enum har_proto_have { HAR_HAVE_CYCLES = 1, HAR_HAVE_INSTRUCTIONS = 2 };
/* SET_STREAM flags. FAST: a recording-backed sensor replays as fast as the link drains. */
enum har_proto_stream {
    HAR_STREAM_SAMPLES = 1, HAR_STREAM_RESULTS = 2, HAR_STREAM_UNCERTAIN = 4, HAR_STREAM_FAST = 8,
    HAR_STREAM_ALL = 15
};
/* SENSOR's source: where the samples come from. */
enum har_proto_source { HAR_SOURCE_NONE = 0, HAR_SOURCE_IMU = 1, HAR_SOURCE_RECORDING = 2 };
enum har_proto_stats_flag { HAR_STATS_RESET = 1 };

/* Which messages a receiver accepts: a device takes requests, a host takes replies and streams. */
enum har_proto_role { HAR_ROLE_DEVICE = 0, HAR_ROLE_HOST = 1, HAR_ROLE_ANY = 2 };

/* STATS counter order (the first nine are har_proto_counters, in this order). */
enum har_proto_counter {
    HAR_CTR_FRAMES_OK, HAR_CTR_CRC_ERRORS, HAR_CTR_COBS_ERRORS, HAR_CTR_SHORT_FRAMES,
    HAR_CTR_OVERLONG_FRAMES, HAR_CTR_UNKNOWN_TYPES, HAR_CTR_BAD_PAYLOADS, HAR_CTR_DROPPED_BYTES,
    HAR_CTR_SEQ_GAPS, HAR_CTR_FRAMES_SENT, HAR_CTR_INFERENCES, HAR_CTR_ESCALATIONS,
    HAR_CTR_SAMPLES_DROPPED, HAR_CTR_KNOWN
};

/* ------------------------------------------------------------------ messages */

typedef struct {               /* ERROR 0x7F, and what the receiver reports after HAR_RX_ERROR */
    uint16_t ref_seq;          /* seq of the offending frame as received (0 when not decoded) */
    uint8_t code;              /* enum har_proto_code */
    uint8_t ref_type;          /* its type as received (0 when not decoded) */
    uint32_t detail;
} har_proto_error;

typedef struct {               /* VERSION 0x41 */
    uint16_t ref_seq;
    uint8_t boot;              /* 1: sent unsolicited after reset (seq restarts at 0) */
    uint8_t protocol;          /* HAR_PROTO_VERSION */
    uint32_t firmware;         /* major << 16 | minor << 8 | patch */
    uint32_t model_id;         /* the CRC-32 stored at the end of the .shm; 0 = no model */
    uint16_t max_payload;      /* the largest payload this device accepts */
    uint8_t n_classes;
    uint16_t in_channels, window;
    uint8_t n_widths, small, full;   /* width indices the cascade runs first / escalates to */
    int64_t threshold;         /* escalate when margin <= threshold */
    uint16_t widths[HAR_PROTO_MAX_WIDTHS];  /* per mille: 250 = width 0.25 */
    char board[HAR_PROTO_MAX_BOARD + 1];    /* printable ASCII, NUL-terminated here, not on the wire */
} har_proto_version;

typedef struct {               /* INFER_REQ 0x02 */
    uint8_t mode;              /* enum har_proto_mode */
    uint16_t in_channels, window;
    uint32_t model_id;         /* the model the host expects (VERSION's model_id); 0 = any model */
    const int8_t *samples;     /* [in_channels][window]; parse: points into the payload (offset 16) */
} har_proto_infer_req;

typedef struct {               /* the result block of INFER_RESULT, UNCERTAIN, DEVICE_RESULT */
    uint8_t predicted, path, n_classes;
    uint8_t have;              /* enum har_proto_have: which counts were measured */
    int64_t margin;            /* top-1 - top-2 integer logit of the width that decided */
    uint64_t cycles, instructions;  /* of the whole inference (both widths when escalated) */
    const int32_t *logits;     /* [n_classes] of the answering width; parse: the caller's array */
} har_proto_result;

typedef struct { uint16_t ref_seq; har_proto_result result; } har_proto_infer_result;
typedef struct { uint16_t ref_seq; uint8_t ref_type; int64_t value; } har_proto_ack;
typedef struct { uint16_t ref_seq; uint8_t n; uint32_t values[HAR_PROTO_MAX_COUNTERS]; } har_proto_stats;

typedef struct {               /* one channel of SENSOR 0x45 */
    const char *name;          /* printable ASCII, name_len bytes, no terminator; parse: points into the payload */
    const char *unit;          /* likewise, unit_len bytes */
    uint8_t name_len, unit_len;   /* <= HAR_PROTO_MAX_SENSOR_NAME, <= HAR_PROTO_MAX_SENSOR_UNIT */
    uint32_t scale_bits;       /* IEEE 754 binary32 bits of the scale (value in unit = raw int16 x scale),
                                  finite; copied, never computed with: the firmware has no floats */
} har_proto_sensor_channel;

typedef struct {               /* SENSOR 0x45: what the device's sensor streams */
    uint16_t ref_seq;
    uint32_t rate_mhz;         /* sample rate in millihertz; 0 without a sensor */
    uint8_t source;            /* enum har_proto_source */
    uint16_t stride;           /* the device-tier cascade's window stride in samples; 0 = none */
    uint8_t n_channels;        /* <= HAR_PROTO_MAX_SENSOR_CHANNELS */
    const har_proto_sensor_channel *channels;  /* [n_channels]; parse: the caller's array */
} har_proto_sensor;

typedef struct {               /* SAMPLES 0x80 */
    uint32_t t_first_us;       /* device clock of the first sample (wraps) */
    uint32_t first_index;      /* running sample number of the first sample (wraps) */
    uint32_t rate_mhz;         /* sample rate in millihertz */
    uint8_t channels;
    uint16_t n_samples;
    const int16_t *samples;    /* [n_samples][channels], time-major; parse: the caller's array */
} har_proto_samples;

typedef struct {               /* DEVICE_RESULT 0x82: a window the device committed itself */
    uint32_t window_id, t_last_us;
    har_proto_result result;
} har_proto_device_result;

typedef struct {               /* UNCERTAIN 0x81: a window the device did not commit */
    uint32_t window_id, t_last_us;
    har_proto_result result;   /* the narrow model's */
    uint16_t in_channels, window;
    const int8_t *samples;     /* [in_channels][window]; parse: points into the payload */
} har_proto_uncertain;

/* ------------------------------------------------------------------ CRC and COBS */

uint16_t har_crc16_update(uint16_t crc, uint8_t byte);    /* CRC-16/CCITT-FALSE step */
uint16_t har_crc16(const uint8_t *data, size_t n);         /* "123456789" -> 0x29B1 */

/* ------------------------------------------------------------------ receiving */

typedef struct {
    uint32_t frames_ok;        /* messages delivered */
    uint32_t crc_errors, cobs_errors, short_frames, overlong_frames;
    uint32_t unknown_types, bad_payloads;   /* CRC-valid frames refused by type or layout */
    uint32_t dropped_bytes;    /* wire bytes (delimiters excluded) of every refused frame */
    uint32_t seq_gaps;         /* CRC-valid frames whose seq is not the previous one's + 1 */
} har_proto_counters;

enum har_proto_event { HAR_RX_NOTHING = 0, HAR_RX_MESSAGE = 1, HAR_RX_ERROR = 2 };

typedef struct {
    /* the caller's payload buffer */
    uint8_t *buf;
    size_t cap;
    uint8_t role;
    /* the frame being received */
    uint8_t discarding, code, left;
    size_t body, wire;
    uint8_t head[HAR_PROTO_HEADER_BYTES], lag[HAR_PROTO_CRC_BYTES];
    uint16_t crc;
    /* after HAR_RX_MESSAGE: the message (payload = buf[0 .. len), valid until the next feed) */
    uint8_t type;
    uint16_t seq;
    size_t len;
    /* after HAR_RX_ERROR: what to answer with har_proto_send_error */
    har_proto_error error;
    har_proto_counters counters;
    uint8_t have_seq;
    uint16_t next_seq;
} har_proto_rx;

/* cap: payload bytes the buffer holds (frames with more are refused as overlong; at most
 * HAR_PROTO_MAX_PAYLOAD is used). role: enum har_proto_role. */
void har_proto_rx_init(har_proto_rx *rx, uint8_t *buf, size_t cap, uint8_t role);
/* Feeds one received byte; returns enum har_proto_event. Never fails: a bad frame is counted
 * and reported once (HAR_RX_ERROR) and the decoder resynchronizes on the next 0x00. */
int har_proto_rx_feed(har_proto_rx *rx, uint8_t byte);
void har_proto_counters_clear(har_proto_counters *c);
/* The nine receive counters in STATS order into out[0..8]. */
void har_proto_counters_to_array(const har_proto_counters *c, uint32_t *out);

/* Structural check of a payload, as the receiver applies it: 0 or an enum har_proto_code,
 * *detail as the ERROR message documents. */
int har_proto_check(uint8_t type, const uint8_t *payload, size_t len, uint8_t role, uint32_t *detail);

/* ------------------------------------------------------------------ sending */

typedef void (*har_proto_write_fn)(void *ctx, const uint8_t *data, size_t n);

typedef struct {
    har_proto_write_fn write;  /* stream mode */
    void *ctx;
    uint8_t *out;              /* buffer mode */
    size_t cap, len, mark;
    uint8_t overflow;
    uint8_t fill;              /* bytes in block, block[0] reserved for the COBS code */
    uint16_t crc;
    size_t frame_wire;
    uint8_t block[255];
} har_proto_tx;

void har_proto_tx_init_stream(har_proto_tx *tx, har_proto_write_fn write, void *ctx);
/* Frames are appended to out; tx->len is the bytes used. A frame that does not fit is not
 * written (its send returns 0) and the buffer keeps only whole frames. */
void har_proto_tx_init_buffer(har_proto_tx *tx, uint8_t *out, size_t cap);

/* Low level, for a message built piece by piece: begin, payload bytes, end (returns the
 * frame's wire bytes, 0 if it did not fit the buffer). The caller keeps the payload within
 * HAR_PROTO_MAX_PAYLOAD. */
void har_proto_tx_begin(har_proto_tx *tx, uint8_t type, uint16_t seq);
void har_proto_tx_bytes(har_proto_tx *tx, const uint8_t *data, size_t n);
void har_proto_tx_u8(har_proto_tx *tx, uint8_t v);
void har_proto_tx_u16(har_proto_tx *tx, uint16_t v);
void har_proto_tx_u32(har_proto_tx *tx, uint32_t v);
void har_proto_tx_u64(har_proto_tx *tx, uint64_t v);
size_t har_proto_tx_end(har_proto_tx *tx);

/* One builder per message: returns the frame's wire bytes, or 0 when the message is invalid
 * (a payload over HAR_PROTO_MAX_PAYLOAD, a field outside its range: nothing is written) or
 * did not fit the buffer. */
size_t har_proto_send_version_req(har_proto_tx *tx, uint16_t seq);
size_t har_proto_send_infer_req(har_proto_tx *tx, uint16_t seq, const har_proto_infer_req *m);
size_t har_proto_send_set_threshold(har_proto_tx *tx, uint16_t seq, int64_t threshold);
size_t har_proto_send_stats_req(har_proto_tx *tx, uint16_t seq, uint8_t flags);
size_t har_proto_send_set_stream(har_proto_tx *tx, uint16_t seq, uint8_t flags);
size_t har_proto_send_sensor_req(har_proto_tx *tx, uint16_t seq);
size_t har_proto_send_sensor(har_proto_tx *tx, uint16_t seq, const har_proto_sensor *m);
size_t har_proto_send_version(har_proto_tx *tx, uint16_t seq, const har_proto_version *m);
size_t har_proto_send_infer_result(har_proto_tx *tx, uint16_t seq, const har_proto_infer_result *m);
size_t har_proto_send_ack(har_proto_tx *tx, uint16_t seq, const har_proto_ack *m);
size_t har_proto_send_stats(har_proto_tx *tx, uint16_t seq, const har_proto_stats *m);
size_t har_proto_send_error(har_proto_tx *tx, uint16_t seq, const har_proto_error *m);
size_t har_proto_send_samples(har_proto_tx *tx, uint16_t seq, const har_proto_samples *m);
size_t har_proto_send_uncertain(har_proto_tx *tx, uint16_t seq, const har_proto_uncertain *m);
size_t har_proto_send_device_result(har_proto_tx *tx, uint16_t seq, const har_proto_device_result *m);

/* ------------------------------------------------------------------ parsing */

/* Each returns 0 or an enum har_proto_code (the check above, then the fields). int16/int32
 * arrays are copied into the caller's array (cap elements; HAR_PROTO_E_NO_ROOM if too small),
 * because the payload holds them little-endian and unaligned; int8 samples are pointed to. */
int har_proto_parse_infer_req(const uint8_t *p, size_t len, har_proto_infer_req *out);
int har_proto_parse_set_threshold(const uint8_t *p, size_t len, int64_t *threshold);
int har_proto_parse_stats_req(const uint8_t *p, size_t len, uint8_t *flags);
int har_proto_parse_set_stream(const uint8_t *p, size_t len, uint8_t *flags);
int har_proto_parse_version(const uint8_t *p, size_t len, har_proto_version *out);
int har_proto_parse_infer_result(const uint8_t *p, size_t len, har_proto_infer_result *out,
                                 int32_t *logits, size_t cap);
int har_proto_parse_ack(const uint8_t *p, size_t len, har_proto_ack *out);
int har_proto_parse_stats(const uint8_t *p, size_t len, har_proto_stats *out);
int har_proto_parse_error(const uint8_t *p, size_t len, har_proto_error *out);
int har_proto_parse_sensor(const uint8_t *p, size_t len, har_proto_sensor *out,
                           har_proto_sensor_channel *channels, size_t cap);
int har_proto_parse_samples(const uint8_t *p, size_t len, har_proto_samples *out,
                            int16_t *samples, size_t cap);
int har_proto_parse_uncertain(const uint8_t *p, size_t len, har_proto_uncertain *out,
                              int32_t *logits, size_t cap);
int har_proto_parse_device_result(const uint8_t *p, size_t len, har_proto_device_result *out,
                                  int32_t *logits, size_t cap);

#ifdef __cplusplus
}
#endif

#endif /* HAR_PROTO_H */
