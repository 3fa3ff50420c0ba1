/*
 * har_proto.c — the UART device protocol (docs/PROTOCOL.md). See har_proto.h for the API.
 * Byte loops instead of <string.h>, little-endian by hand (the payload is unaligned).
 */
#include "har_proto.h"

/* Payload layouts (byte offsets; docs/PROTOCOL.md has the tables). */
#define RESULT_FIXED     28u  /* predicted, path, n_classes, have, margin, cycles, instructions */
#define INFER_REQ_FIXED  16u  /* mode, 0, in_channels, window, 0 0, model_id, 0 0 0 0: samples 8-aligned */
#define VERSION_FIXED    31u
#define VERSION_N_WIDTHS 19u
#define VERSION_BOARD_LEN 30u
#define INFER_RESULT_FIXED (2u + RESULT_FIXED)
#define ACK_LEN          11u
#define STATS_FIXED      3u
#define ERROR_LEN        8u
#define SAMPLES_FIXED    15u
#define WINDOW_FIXED     (8u + RESULT_FIXED)  /* window_id, t_last_us, result block */
#define SENSOR_FIXED     10u  /* ref_seq, rate_mhz, source, stride, n_channels */
#define SENSOR_SOURCE    6u
#define SENSOR_N         9u
#define CHANNEL_HEAD     5u   /* a channel's scale f32 and name_len */
#define FLOAT_EXPONENT   0x7F800000u  /* all ones: infinity or NaN */

/* ------------------------------------------------------------------ CRC-16/CCITT-FALSE */

/* Bit by bit: no 512-byte table in flash; ~8 shifts per byte is nothing next to an inference. */
uint16_t har_crc16_update(uint16_t crc, uint8_t byte)
{
    crc = (uint16_t)(crc ^ (uint16_t)((uint16_t)byte << 8));
    for (int i = 0; i < 8; i++)
        crc = (crc & 0x8000u) ? (uint16_t)((uint16_t)(crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    return crc;
}

uint16_t har_crc16(const uint8_t *data, size_t n)
{
    uint16_t crc = 0xFFFFu;
    for (size_t i = 0; i < n; i++)
        crc = har_crc16_update(crc, data[i]);
    return crc;
}

/* ------------------------------------------------------------------ little-endian reads */

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | (uint16_t)(p[1] << 8)); }

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | ((uint64_t)get_u32(p + 4) << 32); }

/* Two's complement without implementation-defined conversions. */
static int64_t to_i64(uint64_t v)
{
    return v <= (uint64_t)INT64_MAX ? (int64_t)v : -(int64_t)(~v) - 1;
}

static int32_t to_i32(uint32_t v)
{
    return v <= (uint32_t)INT32_MAX ? (int32_t)v : -(int32_t)(~v) - 1;
}

/* ------------------------------------------------------------------ payload checks */

static int bad_length(uint32_t *detail, uint32_t need) { *detail = need; return HAR_PROTO_E_BAD_LENGTH; }
static int bad_value(uint32_t *detail, size_t offset) { *detail = (uint32_t)offset; return HAR_PROTO_E_BAD_VALUE; }

/* 0: host -> device, 1: device -> host, -1: not a type of protocol version 1. */
static int direction(uint8_t type)
{
    switch (type) {
    case HAR_MSG_VERSION_REQ: case HAR_MSG_INFER_REQ: case HAR_MSG_SET_THRESHOLD:
    case HAR_MSG_STATS_REQ: case HAR_MSG_SET_STREAM: case HAR_MSG_SENSOR_REQ:
        return 0;
    case HAR_MSG_VERSION: case HAR_MSG_INFER_RESULT: case HAR_MSG_ACK: case HAR_MSG_STATS:
    case HAR_MSG_SENSOR:
    case HAR_MSG_ERROR: case HAR_MSG_SAMPLES: case HAR_MSG_UNCERTAIN: case HAR_MSG_DEVICE_RESULT:
        return 1;
    default:
        return -1;
    }
}

/* The result block's enumerations (at payload offset o, which the caller checked exists). */
static int check_result(const uint8_t *p, size_t o, uint32_t *detail)
{
    if (p[o] >= p[o + 2u])
        return bad_value(detail, o);          /* predicted < n_classes (so n_classes >= 1) */
    if (p[o + 1u] > HAR_PATH_FULL)
        return bad_value(detail, o + 1u);
    return HAR_PROTO_OK;
}

static int printable(const uint8_t *p, size_t from, size_t n, uint32_t *detail)
{
    for (size_t i = from; i < from + n; i++)
        if (p[i] < 0x20u || p[i] > 0x7Eu) return bad_value(detail, i);
    return HAR_PROTO_OK;
}

/* SENSOR: the channels are a chain of variable-length records, so the total length is known
 * only after walking them; a record cut short asks for the bytes up to its next length field.
 * The text is checked after the total length, like VERSION's board name. */
static int check_sensor(const uint8_t *p, size_t len, uint32_t *detail)
{
    size_t o = SENSOR_FIXED;
    uint8_t i;
    int err;
    if (len < SENSOR_FIXED) return bad_length(detail, SENSOR_FIXED);
    if (p[SENSOR_SOURCE] > HAR_SOURCE_RECORDING) return bad_value(detail, SENSOR_SOURCE);
    if (p[SENSOR_N] > HAR_PROTO_MAX_SENSOR_CHANNELS) return bad_value(detail, SENSOR_N);
    for (i = 0; i < p[SENSOR_N]; i++) {
        if (len < o + CHANNEL_HEAD) return bad_length(detail, (uint32_t)(o + CHANNEL_HEAD));
        if ((get_u32(p + o) & FLOAT_EXPONENT) == FLOAT_EXPONENT) return bad_value(detail, o);
        if (p[o + 4u] > HAR_PROTO_MAX_SENSOR_NAME) return bad_value(detail, o + 4u);
        o += CHANNEL_HEAD + p[o + 4u];
        if (len < o + 1u) return bad_length(detail, (uint32_t)(o + 1u));   /* the name, unit_len */
        if (p[o] > HAR_PROTO_MAX_SENSOR_UNIT) return bad_value(detail, o);
        o += 1u + p[o];
    }
    if (len != o) return bad_length(detail, (uint32_t)o);
    for (i = 0, o = SENSOR_FIXED; i < p[SENSOR_N]; i++) {
        o += 4u;                                            /* the name */
        if ((err = printable(p, o + 1u, p[o], detail)) != HAR_PROTO_OK) return err;
        o += 1u + p[o];                                     /* the unit */
        if ((err = printable(p, o + 1u, p[o], detail)) != HAR_PROTO_OK) return err;
        o += 1u + p[o];
    }
    return HAR_PROTO_OK;
}

/* Length and enumerations of a payload whose header and CRC were fine. Order, mirrored by the
 * Python decoder: the fixed part's length, its fields, the total length, variable-part fields. */
static int check_layout(uint8_t type, const uint8_t *p, size_t len, uint32_t *detail)
{
    uint32_t need;
    int err;
    switch (type) {
    case HAR_MSG_VERSION_REQ: case HAR_MSG_SENSOR_REQ:
        return len == 0 ? HAR_PROTO_OK : bad_length(detail, 0);
    case HAR_MSG_INFER_REQ:
        if (len < INFER_REQ_FIXED) return bad_length(detail, INFER_REQ_FIXED);
        if (p[0] > HAR_MODE_FULL) return bad_value(detail, 0);
        need = INFER_REQ_FIXED + (uint32_t)get_u16(p + 2) * get_u16(p + 4);
        return len == need ? HAR_PROTO_OK : bad_length(detail, need);
    case HAR_MSG_SET_THRESHOLD:       /* any value: a threshold below -1 is the application's refusal */
        return len == 8u ? HAR_PROTO_OK : bad_length(detail, 8u);
    case HAR_MSG_STATS_REQ:
        if (len != 1u) return bad_length(detail, 1u);
        return (p[0] & ~HAR_STATS_RESET) ? bad_value(detail, 0) : HAR_PROTO_OK;
    case HAR_MSG_SET_STREAM:
        if (len != 1u) return bad_length(detail, 1u);
        return (p[0] & ~HAR_STREAM_ALL) ? bad_value(detail, 0) : HAR_PROTO_OK;
    case HAR_MSG_VERSION:
        if (len < VERSION_FIXED) return bad_length(detail, VERSION_FIXED);
        if (p[VERSION_N_WIDTHS] > HAR_PROTO_MAX_WIDTHS) return bad_value(detail, VERSION_N_WIDTHS);
        if (p[VERSION_BOARD_LEN] > HAR_PROTO_MAX_BOARD) return bad_value(detail, VERSION_BOARD_LEN);
        need = VERSION_FIXED + 2u * p[VERSION_N_WIDTHS] + p[VERSION_BOARD_LEN];
        if (len != need) return bad_length(detail, need);
        return printable(p, VERSION_FIXED + 2u * p[VERSION_N_WIDTHS], p[VERSION_BOARD_LEN], detail);
    case HAR_MSG_SENSOR:
        return check_sensor(p, len, detail);
    case HAR_MSG_INFER_RESULT:
        if (len < INFER_RESULT_FIXED) return bad_length(detail, INFER_RESULT_FIXED);
        if ((err = check_result(p, 2u, detail)) != HAR_PROTO_OK) return err;
        need = INFER_RESULT_FIXED + 4u * p[4];
        return len == need ? HAR_PROTO_OK : bad_length(detail, need);
    case HAR_MSG_ACK:
        return len == ACK_LEN ? HAR_PROTO_OK : bad_length(detail, ACK_LEN);
    case HAR_MSG_STATS:
        if (len < STATS_FIXED) return bad_length(detail, STATS_FIXED);
        if (p[2] > HAR_PROTO_MAX_COUNTERS) return bad_value(detail, 2u);
        need = STATS_FIXED + 4u * p[2];
        return len == need ? HAR_PROTO_OK : bad_length(detail, need);
    case HAR_MSG_ERROR:
        return len == ERROR_LEN ? HAR_PROTO_OK : bad_length(detail, ERROR_LEN);
    case HAR_MSG_SAMPLES:
        if (len < SAMPLES_FIXED) return bad_length(detail, SAMPLES_FIXED);
        need = SAMPLES_FIXED + 2u * (uint32_t)p[12] * get_u16(p + 13);
        return len == need ? HAR_PROTO_OK : bad_length(detail, need);
    case HAR_MSG_DEVICE_RESULT:
        if (len < WINDOW_FIXED) return bad_length(detail, WINDOW_FIXED);
        if ((err = check_result(p, 8u, detail)) != HAR_PROTO_OK) return err;
        need = WINDOW_FIXED + 4u * p[10];
        return len == need ? HAR_PROTO_OK : bad_length(detail, need);
    case HAR_MSG_UNCERTAIN:
        if (len < WINDOW_FIXED) return bad_length(detail, WINDOW_FIXED);
        if ((err = check_result(p, 8u, detail)) != HAR_PROTO_OK) return err;
        need = WINDOW_FIXED + 4u * p[10] + 4u;   /* up to in_channels and window */
        if (len < need) return bad_length(detail, need);
        need += (uint32_t)get_u16(p + need - 4u) * get_u16(p + need - 2u);
        return len == need ? HAR_PROTO_OK : bad_length(detail, need);
    default:
        *detail = 0;
        return HAR_PROTO_E_UNKNOWN_TYPE;
    }
}

int har_proto_check(uint8_t type, const uint8_t *payload, size_t len, uint8_t role, uint32_t *detail)
{
    int dir = direction(type);
    *detail = 0;
    if (dir < 0)
        return HAR_PROTO_E_UNKNOWN_TYPE;
    if ((role == HAR_ROLE_DEVICE && dir != 0) || (role == HAR_ROLE_HOST && dir != 1)) {
        *detail = 1;                             /* a valid type, sent the wrong way */
        return HAR_PROTO_E_UNKNOWN_TYPE;
    }
    return check_layout(type, payload, len, detail);
}

/* ------------------------------------------------------------------ receiving */

void har_proto_counters_clear(har_proto_counters *c)
{
    c->frames_ok = c->crc_errors = c->cobs_errors = c->short_frames = c->overlong_frames = 0;
    c->unknown_types = c->bad_payloads = c->dropped_bytes = c->seq_gaps = 0;
}

void har_proto_counters_to_array(const har_proto_counters *c, uint32_t *out)
{
    out[HAR_CTR_FRAMES_OK] = c->frames_ok;
    out[HAR_CTR_CRC_ERRORS] = c->crc_errors;
    out[HAR_CTR_COBS_ERRORS] = c->cobs_errors;
    out[HAR_CTR_SHORT_FRAMES] = c->short_frames;
    out[HAR_CTR_OVERLONG_FRAMES] = c->overlong_frames;
    out[HAR_CTR_UNKNOWN_TYPES] = c->unknown_types;
    out[HAR_CTR_BAD_PAYLOADS] = c->bad_payloads;
    out[HAR_CTR_DROPPED_BYTES] = c->dropped_bytes;
    out[HAR_CTR_SEQ_GAPS] = c->seq_gaps;
}

static void rx_restart(har_proto_rx *rx)
{
    rx->code = 0;          /* 0: no COBS run yet in this frame */
    rx->left = 0;
    rx->body = 0;
    rx->wire = 0;
    rx->crc = 0xFFFFu;
}

void har_proto_rx_init(har_proto_rx *rx, uint8_t *buf, size_t cap, uint8_t role)
{
    rx->buf = buf;
    rx->cap = cap < HAR_PROTO_MAX_PAYLOAD ? cap : HAR_PROTO_MAX_PAYLOAD;
    rx->role = role;
    rx->discarding = 0;
    rx_restart(rx);
    rx->head[0] = rx->head[1] = rx->head[2] = 0;
    rx->lag[0] = rx->lag[1] = 0;
    rx->type = 0;
    rx->seq = 0;
    rx->len = 0;
    rx->error.ref_seq = 0;
    rx->error.code = 0;
    rx->error.ref_type = 0;
    rx->error.detail = 0;
    har_proto_counters_clear(&rx->counters);
    rx->have_seq = 0;
    rx->next_seq = 0;
}

/* Refuses the current frame: records what to answer, counts it and all its wire bytes. */
static int rx_refuse(har_proto_rx *rx, int code, uint32_t detail)
{
    har_proto_counters *c = &rx->counters;
    rx->error.code = (uint8_t)code;
    rx->error.detail = detail;
    rx->error.ref_type = rx->body >= HAR_PROTO_HEADER_BYTES ? rx->head[0] : 0;
    rx->error.ref_seq = rx->body >= HAR_PROTO_HEADER_BYTES ? get_u16(rx->head + 1) : 0;
    c->dropped_bytes += (uint32_t)rx->wire;
    switch (code) {
    case HAR_PROTO_E_CRC: c->crc_errors++; break;
    case HAR_PROTO_E_COBS: c->cobs_errors++; break;
    case HAR_PROTO_E_SHORT: c->short_frames++; break;
    case HAR_PROTO_E_OVERLONG: c->overlong_frames++; break;
    case HAR_PROTO_E_UNKNOWN_TYPE: c->unknown_types++; break;
    default: c->bad_payloads++; break;
    }
    return HAR_RX_ERROR;
}

/* One decoded body byte. The last two bytes of a body are its CRC, so payload bytes reach the
 * caller's buffer (and the CRC) two bytes late: the buffer never needs room for the CRC. */
static int rx_emit(har_proto_rx *rx, uint8_t x)
{
    size_t n = rx->body;
    if (n < HAR_PROTO_HEADER_BYTES) {
        rx->head[n] = x;
        rx->crc = har_crc16_update(rx->crc, x);
    } else {
        if (n >= HAR_PROTO_HEADER_BYTES + HAR_PROTO_CRC_BYTES) {
            size_t i = n - HAR_PROTO_HEADER_BYTES - HAR_PROTO_CRC_BYTES;
            if (i >= rx->cap)
                return -1;
            rx->buf[i] = rx->lag[0];
            rx->crc = har_crc16_update(rx->crc, rx->lag[0]);
        }
        rx->lag[0] = rx->lag[1];
        rx->lag[1] = x;
    }
    rx->body = n + 1u;
    return 0;
}

static int rx_overlong(har_proto_rx *rx)
{
    rx->discarding = 1;                        /* until the next 0x00 */
    return rx_refuse(rx, HAR_PROTO_E_OVERLONG, (uint32_t)rx->cap);
}

static int rx_finish(har_proto_rx *rx)
{
    uint16_t received;
    uint32_t detail;
    int err;
    if (rx->left != 0)
        return rx_refuse(rx, HAR_PROTO_E_COBS, (uint32_t)rx->body);
    if (rx->body < HAR_PROTO_HEADER_BYTES + HAR_PROTO_CRC_BYTES)
        return rx_refuse(rx, HAR_PROTO_E_SHORT, (uint32_t)rx->body);
    received = get_u16(rx->lag);
    if (received != rx->crc)
        return rx_refuse(rx, HAR_PROTO_E_CRC, ((uint32_t)received << 16) | rx->crc);
    rx->type = rx->head[0];
    rx->seq = get_u16(rx->head + 1);
    rx->len = rx->body - HAR_PROTO_HEADER_BYTES - HAR_PROTO_CRC_BYTES;
    if (rx->have_seq && rx->seq != rx->next_seq)
        rx->counters.seq_gaps++;
    rx->have_seq = 1;
    rx->next_seq = (uint16_t)(rx->seq + 1u);
    err = har_proto_check(rx->type, rx->buf, rx->len, rx->role, &detail);
    if (err != HAR_PROTO_OK)
        return rx_refuse(rx, err, detail);
    rx->counters.frames_ok++;
    return HAR_RX_MESSAGE;
}

int har_proto_rx_feed(har_proto_rx *rx, uint8_t byte)
{
    if (byte == 0) {
        int event = HAR_RX_NOTHING;
        if (rx->discarding)
            rx->discarding = 0;
        else if (rx->wire != 0)                /* runs of 0x00 are empty frames: ignored */
            event = rx_finish(rx);
        rx_restart(rx);
        return event;
    }
    if (rx->discarding) {
        rx->counters.dropped_bytes++;
        return HAR_RX_NOTHING;
    }
    rx->wire++;
    if (rx->left == 0) {                       /* a COBS code byte */
        /* the previous run stood for a 0x00, unless it was a full run (code 0xFF) */
        if (rx->code != 0 && rx->code != 0xFFu && rx_emit(rx, 0) != 0)
            return rx_overlong(rx);
        rx->code = byte;
        rx->left = (uint8_t)(byte - 1u);
        return HAR_RX_NOTHING;
    }
    if (rx_emit(rx, byte) != 0)
        return rx_overlong(rx);
    rx->left--;
    return HAR_RX_NOTHING;
}

/* ------------------------------------------------------------------ sending */

static void tx_reset(har_proto_tx *tx)
{
    tx->len = tx->mark = 0;
    tx->overflow = 0;
    tx->fill = 1;
    tx->crc = 0xFFFFu;
    tx->frame_wire = 0;
}

void har_proto_tx_init_stream(har_proto_tx *tx, har_proto_write_fn write, void *ctx)
{
    tx->write = write;
    tx->ctx = ctx;
    tx->out = 0;
    tx->cap = 0;
    tx_reset(tx);
}

void har_proto_tx_init_buffer(har_proto_tx *tx, uint8_t *out, size_t cap)
{
    tx->write = 0;
    tx->ctx = 0;
    tx->out = out;
    tx->cap = cap;
    tx_reset(tx);
}

static void tx_wire(har_proto_tx *tx, const uint8_t *data, size_t n)
{
    tx->frame_wire += n;
    if (tx->write) {
        tx->write(tx->ctx, data, n);
        return;
    }
    if (tx->overflow || n > tx->cap - tx->len) {
        tx->overflow = 1;
        return;
    }
    for (size_t i = 0; i < n; i++)
        tx->out[tx->len + i] = data[i];
    tx->len += n;
}

/* Closes the current COBS run: its code is its length + 1 (Cheshire & Baker's encoder). */
static void tx_run(har_proto_tx *tx)
{
    tx->block[0] = tx->fill;
    tx_wire(tx, tx->block, tx->fill);
    tx->fill = 1;
}

static void tx_cobs(har_proto_tx *tx, uint8_t byte)
{
    if (byte == 0) {
        tx_run(tx);
        return;
    }
    tx->block[tx->fill++] = byte;
    if (tx->fill == 0xFFu)
        tx_run(tx);
}

static void tx_body(har_proto_tx *tx, uint8_t byte)
{
    tx->crc = har_crc16_update(tx->crc, byte);
    tx_cobs(tx, byte);
}

void har_proto_tx_begin(har_proto_tx *tx, uint8_t type, uint16_t seq)
{
    static const uint8_t delimiter = 0;
    tx->mark = tx->len;
    tx->overflow = 0;
    tx->frame_wire = 0;
    tx->fill = 1;
    tx->crc = 0xFFFFu;
    tx_wire(tx, &delimiter, 1);     /* ends whatever torn frame the receiver may be inside */
    tx_body(tx, type);
    har_proto_tx_u16(tx, seq);
}

void har_proto_tx_bytes(har_proto_tx *tx, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tx_body(tx, data[i]);
}

void har_proto_tx_u8(har_proto_tx *tx, uint8_t v) { tx_body(tx, v); }

void har_proto_tx_u16(har_proto_tx *tx, uint16_t v)
{
    tx_body(tx, (uint8_t)(v & 0xFFu));
    tx_body(tx, (uint8_t)(v >> 8));
}

void har_proto_tx_u32(har_proto_tx *tx, uint32_t v)
{
    har_proto_tx_u16(tx, (uint16_t)(v & 0xFFFFu));
    har_proto_tx_u16(tx, (uint16_t)(v >> 16));
}

void har_proto_tx_u64(har_proto_tx *tx, uint64_t v)
{
    har_proto_tx_u32(tx, (uint32_t)(v & 0xFFFFFFFFu));
    har_proto_tx_u32(tx, (uint32_t)(v >> 32));
}

size_t har_proto_tx_end(har_proto_tx *tx)
{
    static const uint8_t delimiter = 0;
    uint16_t crc = tx->crc;
    tx_cobs(tx, (uint8_t)(crc & 0xFFu));
    tx_cobs(tx, (uint8_t)(crc >> 8));
    tx_run(tx);
    tx_wire(tx, &delimiter, 1);
    if (tx->overflow) {
        tx->len = tx->mark;          /* the buffer keeps whole frames only */
        return 0;
    }
    return tx->frame_wire;
}

static void tx_i64(har_proto_tx *tx, int64_t v) { har_proto_tx_u64(tx, (uint64_t)v); }

static void tx_i8s(har_proto_tx *tx, const int8_t *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        tx_body(tx, (uint8_t)v[i]);
}

static int result_valid(const har_proto_result *r)
{
    return r->predicted < r->n_classes && r->path <= HAR_PATH_FULL
           && (r->have & ~(HAR_HAVE_CYCLES | HAR_HAVE_INSTRUCTIONS)) == 0;
}

static void tx_result(har_proto_tx *tx, const har_proto_result *r)
{
    har_proto_tx_u8(tx, r->predicted);
    har_proto_tx_u8(tx, r->path);
    har_proto_tx_u8(tx, r->n_classes);
    har_proto_tx_u8(tx, r->have);
    tx_i64(tx, r->margin);
    har_proto_tx_u64(tx, (r->have & HAR_HAVE_CYCLES) ? r->cycles : 0u);
    har_proto_tx_u64(tx, (r->have & HAR_HAVE_INSTRUCTIONS) ? r->instructions : 0u);
    for (uint32_t i = 0; i < r->n_classes; i++)
        har_proto_tx_u32(tx, (uint32_t)r->logits[i]);
}

size_t har_proto_send_version_req(har_proto_tx *tx, uint16_t seq)
{
    har_proto_tx_begin(tx, HAR_MSG_VERSION_REQ, seq);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_infer_req(har_proto_tx *tx, uint16_t seq, const har_proto_infer_req *m)
{
    uint32_t n = (uint32_t)m->in_channels * m->window;
    if (m->mode > HAR_MODE_FULL || n > HAR_PROTO_MAX_PAYLOAD - INFER_REQ_FIXED)
        return 0;
    har_proto_tx_begin(tx, HAR_MSG_INFER_REQ, seq);
    har_proto_tx_u8(tx, m->mode);
    har_proto_tx_u8(tx, 0);
    har_proto_tx_u16(tx, m->in_channels);
    har_proto_tx_u16(tx, m->window);
    har_proto_tx_u16(tx, 0);
    har_proto_tx_u32(tx, m->model_id);
    har_proto_tx_u32(tx, 0);
    tx_i8s(tx, m->samples, n);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_set_threshold(har_proto_tx *tx, uint16_t seq, int64_t threshold)
{
    har_proto_tx_begin(tx, HAR_MSG_SET_THRESHOLD, seq);
    tx_i64(tx, threshold);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_stats_req(har_proto_tx *tx, uint16_t seq, uint8_t flags)
{
    if (flags & ~HAR_STATS_RESET)
        return 0;
    har_proto_tx_begin(tx, HAR_MSG_STATS_REQ, seq);
    har_proto_tx_u8(tx, flags);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_set_stream(har_proto_tx *tx, uint16_t seq, uint8_t flags)
{
    if (flags & ~HAR_STREAM_ALL)
        return 0;
    har_proto_tx_begin(tx, HAR_MSG_SET_STREAM, seq);
    har_proto_tx_u8(tx, flags);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_sensor_req(har_proto_tx *tx, uint16_t seq)
{
    har_proto_tx_begin(tx, HAR_MSG_SENSOR_REQ, seq);
    return har_proto_tx_end(tx);
}

static int text_valid(const char *s, uint8_t n, uint8_t max)
{
    if (n > max)
        return 0;
    for (uint8_t i = 0; i < n; i++)
        if ((uint8_t)s[i] < 0x20u || (uint8_t)s[i] > 0x7Eu)
            return 0;
    return 1;
}

size_t har_proto_send_sensor(har_proto_tx *tx, uint16_t seq, const har_proto_sensor *m)
{
    if (m->source > HAR_SOURCE_RECORDING || m->n_channels > HAR_PROTO_MAX_SENSOR_CHANNELS)
        return 0;
    for (uint8_t i = 0; i < m->n_channels; i++) {
        const har_proto_sensor_channel *c = &m->channels[i];
        if ((c->scale_bits & FLOAT_EXPONENT) == FLOAT_EXPONENT
            || !text_valid(c->name, c->name_len, HAR_PROTO_MAX_SENSOR_NAME)
            || !text_valid(c->unit, c->unit_len, HAR_PROTO_MAX_SENSOR_UNIT))
            return 0;
    }
    har_proto_tx_begin(tx, HAR_MSG_SENSOR, seq);
    har_proto_tx_u16(tx, m->ref_seq);
    har_proto_tx_u32(tx, m->rate_mhz);
    har_proto_tx_u8(tx, m->source);
    har_proto_tx_u16(tx, m->stride);
    har_proto_tx_u8(tx, m->n_channels);
    for (uint8_t i = 0; i < m->n_channels; i++) {
        const har_proto_sensor_channel *c = &m->channels[i];
        har_proto_tx_u32(tx, c->scale_bits);
        har_proto_tx_u8(tx, c->name_len);
        har_proto_tx_bytes(tx, (const uint8_t *)c->name, c->name_len);
        har_proto_tx_u8(tx, c->unit_len);
        har_proto_tx_bytes(tx, (const uint8_t *)c->unit, c->unit_len);
    }
    return har_proto_tx_end(tx);
}

size_t har_proto_send_version(har_proto_tx *tx, uint16_t seq, const har_proto_version *m)
{
    uint8_t board_len = 0;
    while (board_len < HAR_PROTO_MAX_BOARD && m->board[board_len] != '\0') {
        uint8_t ch = (uint8_t)m->board[board_len];
        if (ch < 0x20u || ch > 0x7Eu)
            return 0;
        board_len++;
    }
    if (m->board[board_len] != '\0' || m->n_widths > HAR_PROTO_MAX_WIDTHS)
        return 0;
    har_proto_tx_begin(tx, HAR_MSG_VERSION, seq);
    har_proto_tx_u16(tx, m->ref_seq);
    har_proto_tx_u8(tx, m->boot ? 1u : 0u);
    har_proto_tx_u8(tx, m->protocol);
    har_proto_tx_u32(tx, m->firmware);
    har_proto_tx_u32(tx, m->model_id);
    har_proto_tx_u16(tx, m->max_payload);
    har_proto_tx_u8(tx, m->n_classes);
    har_proto_tx_u16(tx, m->in_channels);
    har_proto_tx_u16(tx, m->window);
    har_proto_tx_u8(tx, m->n_widths);
    har_proto_tx_u8(tx, m->small);
    har_proto_tx_u8(tx, m->full);
    tx_i64(tx, m->threshold);
    har_proto_tx_u8(tx, board_len);
    for (uint8_t i = 0; i < m->n_widths; i++)
        har_proto_tx_u16(tx, m->widths[i]);
    har_proto_tx_bytes(tx, (const uint8_t *)m->board, board_len);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_infer_result(har_proto_tx *tx, uint16_t seq, const har_proto_infer_result *m)
{
    if (!result_valid(&m->result))
        return 0;
    har_proto_tx_begin(tx, HAR_MSG_INFER_RESULT, seq);
    har_proto_tx_u16(tx, m->ref_seq);
    tx_result(tx, &m->result);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_ack(har_proto_tx *tx, uint16_t seq, const har_proto_ack *m)
{
    har_proto_tx_begin(tx, HAR_MSG_ACK, seq);
    har_proto_tx_u16(tx, m->ref_seq);
    har_proto_tx_u8(tx, m->ref_type);
    tx_i64(tx, m->value);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_stats(har_proto_tx *tx, uint16_t seq, const har_proto_stats *m)
{
    if (m->n > HAR_PROTO_MAX_COUNTERS)
        return 0;
    har_proto_tx_begin(tx, HAR_MSG_STATS, seq);
    har_proto_tx_u16(tx, m->ref_seq);
    har_proto_tx_u8(tx, m->n);
    for (uint8_t i = 0; i < m->n; i++)
        har_proto_tx_u32(tx, m->values[i]);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_error(har_proto_tx *tx, uint16_t seq, const har_proto_error *m)
{
    har_proto_tx_begin(tx, HAR_MSG_ERROR, seq);
    har_proto_tx_u16(tx, m->ref_seq);
    har_proto_tx_u8(tx, m->code);
    har_proto_tx_u8(tx, m->ref_type);
    har_proto_tx_u32(tx, m->detail);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_samples(har_proto_tx *tx, uint16_t seq, const har_proto_samples *m)
{
    uint32_t n = (uint32_t)m->channels * m->n_samples;
    if (n > (HAR_PROTO_MAX_PAYLOAD - SAMPLES_FIXED) / 2u)
        return 0;
    har_proto_tx_begin(tx, HAR_MSG_SAMPLES, seq);
    har_proto_tx_u32(tx, m->t_first_us);
    har_proto_tx_u32(tx, m->first_index);
    har_proto_tx_u32(tx, m->rate_mhz);
    har_proto_tx_u8(tx, m->channels);
    har_proto_tx_u16(tx, m->n_samples);
    for (uint32_t i = 0; i < n; i++)
        har_proto_tx_u16(tx, (uint16_t)m->samples[i]);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_device_result(har_proto_tx *tx, uint16_t seq, const har_proto_device_result *m)
{
    if (!result_valid(&m->result))
        return 0;
    har_proto_tx_begin(tx, HAR_MSG_DEVICE_RESULT, seq);
    har_proto_tx_u32(tx, m->window_id);
    har_proto_tx_u32(tx, m->t_last_us);
    tx_result(tx, &m->result);
    return har_proto_tx_end(tx);
}

size_t har_proto_send_uncertain(har_proto_tx *tx, uint16_t seq, const har_proto_uncertain *m)
{
    uint32_t n = (uint32_t)m->in_channels * m->window;
    uint32_t head = WINDOW_FIXED + 4u * m->result.n_classes + 4u;
    if (!result_valid(&m->result) || n > HAR_PROTO_MAX_PAYLOAD - head)
        return 0;
    har_proto_tx_begin(tx, HAR_MSG_UNCERTAIN, seq);
    har_proto_tx_u32(tx, m->window_id);
    har_proto_tx_u32(tx, m->t_last_us);
    tx_result(tx, &m->result);
    har_proto_tx_u16(tx, m->in_channels);
    har_proto_tx_u16(tx, m->window);
    tx_i8s(tx, m->samples, n);
    return har_proto_tx_end(tx);
}

/* ------------------------------------------------------------------ parsing */

static int parse_check(uint8_t type, const uint8_t *p, size_t len)
{
    uint32_t detail;
    return check_layout(type, p, len, &detail);
}

/* The result block at p (already checked); logits go to the caller's array. */
static int parse_result(const uint8_t *p, har_proto_result *r, int32_t *logits, size_t cap)
{
    r->predicted = p[0];
    r->path = p[1];
    r->n_classes = p[2];
    r->have = (uint8_t)(p[3] & (HAR_HAVE_CYCLES | HAR_HAVE_INSTRUCTIONS));
    r->margin = to_i64(get_u64(p + 4));
    r->cycles = (r->have & HAR_HAVE_CYCLES) ? get_u64(p + 12) : 0u;
    r->instructions = (r->have & HAR_HAVE_INSTRUCTIONS) ? get_u64(p + 20) : 0u;
    if (cap < r->n_classes)
        return HAR_PROTO_E_NO_ROOM;
    for (size_t i = 0; i < r->n_classes; i++)
        logits[i] = to_i32(get_u32(p + RESULT_FIXED + 4u * i));
    r->logits = logits;
    return HAR_PROTO_OK;
}

int har_proto_parse_infer_req(const uint8_t *p, size_t len, har_proto_infer_req *out)
{
    int err = parse_check(HAR_MSG_INFER_REQ, p, len);
    if (err != HAR_PROTO_OK)
        return err;
    out->mode = p[0];
    out->in_channels = get_u16(p + 2);
    out->window = get_u16(p + 4);
    out->model_id = get_u32(p + 8);
    out->samples = (const int8_t *)(const void *)(p + INFER_REQ_FIXED);
    return HAR_PROTO_OK;
}

int har_proto_parse_set_threshold(const uint8_t *p, size_t len, int64_t *threshold)
{
    int err = parse_check(HAR_MSG_SET_THRESHOLD, p, len);
    if (err == HAR_PROTO_OK)
        *threshold = to_i64(get_u64(p));
    return err;
}

int har_proto_parse_stats_req(const uint8_t *p, size_t len, uint8_t *flags)
{
    int err = parse_check(HAR_MSG_STATS_REQ, p, len);
    if (err == HAR_PROTO_OK)
        *flags = p[0];
    return err;
}

int har_proto_parse_set_stream(const uint8_t *p, size_t len, uint8_t *flags)
{
    int err = parse_check(HAR_MSG_SET_STREAM, p, len);
    if (err == HAR_PROTO_OK)
        *flags = p[0];
    return err;
}

int har_proto_parse_version(const uint8_t *p, size_t len, har_proto_version *out)
{
    int err = parse_check(HAR_MSG_VERSION, p, len);
    size_t i, board;
    if (err != HAR_PROTO_OK)
        return err;
    out->ref_seq = get_u16(p);
    out->boot = (uint8_t)(p[2] & 1u);
    out->protocol = p[3];
    out->firmware = get_u32(p + 4);
    out->model_id = get_u32(p + 8);
    out->max_payload = get_u16(p + 12);
    out->n_classes = p[14];
    out->in_channels = get_u16(p + 15);
    out->window = get_u16(p + 17);
    out->n_widths = p[VERSION_N_WIDTHS];
    out->small = p[20];
    out->full = p[21];
    out->threshold = to_i64(get_u64(p + 22));
    for (i = 0; i < HAR_PROTO_MAX_WIDTHS; i++)
        out->widths[i] = i < out->n_widths ? get_u16(p + VERSION_FIXED + 2u * i) : 0u;
    board = VERSION_FIXED + 2u * out->n_widths;
    for (i = 0; i <= HAR_PROTO_MAX_BOARD; i++)
        out->board[i] = i < p[VERSION_BOARD_LEN] ? (char)p[board + i] : '\0';
    return HAR_PROTO_OK;
}

int har_proto_parse_infer_result(const uint8_t *p, size_t len, har_proto_infer_result *out,
                                 int32_t *logits, size_t cap)
{
    int err = parse_check(HAR_MSG_INFER_RESULT, p, len);
    if (err != HAR_PROTO_OK)
        return err;
    out->ref_seq = get_u16(p);
    return parse_result(p + 2, &out->result, logits, cap);
}

int har_proto_parse_ack(const uint8_t *p, size_t len, har_proto_ack *out)
{
    int err = parse_check(HAR_MSG_ACK, p, len);
    if (err != HAR_PROTO_OK)
        return err;
    out->ref_seq = get_u16(p);
    out->ref_type = p[2];
    out->value = to_i64(get_u64(p + 3));
    return HAR_PROTO_OK;
}

int har_proto_parse_stats(const uint8_t *p, size_t len, har_proto_stats *out)
{
    int err = parse_check(HAR_MSG_STATS, p, len);
    if (err != HAR_PROTO_OK)
        return err;
    out->ref_seq = get_u16(p);
    out->n = p[2];
    for (size_t i = 0; i < HAR_PROTO_MAX_COUNTERS; i++)
        out->values[i] = i < out->n ? get_u32(p + STATS_FIXED + 4u * i) : 0u;
    return HAR_PROTO_OK;
}

int har_proto_parse_error(const uint8_t *p, size_t len, har_proto_error *out)
{
    int err = parse_check(HAR_MSG_ERROR, p, len);
    if (err != HAR_PROTO_OK)
        return err;
    out->ref_seq = get_u16(p);
    out->code = p[2];
    out->ref_type = p[3];
    out->detail = get_u32(p + 4);
    return HAR_PROTO_OK;
}

int har_proto_parse_sensor(const uint8_t *p, size_t len, har_proto_sensor *out,
                           har_proto_sensor_channel *channels, size_t cap)
{
    int err = parse_check(HAR_MSG_SENSOR, p, len);
    size_t o = SENSOR_FIXED;
    if (err != HAR_PROTO_OK)
        return err;
    out->ref_seq = get_u16(p);
    out->rate_mhz = get_u32(p + 2);
    out->source = p[SENSOR_SOURCE];
    out->stride = get_u16(p + 7);
    out->n_channels = p[SENSOR_N];
    if (cap < out->n_channels)
        return HAR_PROTO_E_NO_ROOM;
    for (uint8_t i = 0; i < out->n_channels; i++) {
        har_proto_sensor_channel *c = &channels[i];
        c->scale_bits = get_u32(p + o);
        c->name_len = p[o + 4u];
        c->name = (const char *)(const void *)(p + o + CHANNEL_HEAD);
        o += CHANNEL_HEAD + c->name_len;
        c->unit_len = p[o];
        c->unit = (const char *)(const void *)(p + o + 1u);
        o += 1u + c->unit_len;
    }
    out->channels = channels;
    return HAR_PROTO_OK;
}

int har_proto_parse_samples(const uint8_t *p, size_t len, har_proto_samples *out,
                            int16_t *samples, size_t cap)
{
    int err = parse_check(HAR_MSG_SAMPLES, p, len);
    size_t n;
    if (err != HAR_PROTO_OK)
        return err;
    out->t_first_us = get_u32(p);
    out->first_index = get_u32(p + 4);
    out->rate_mhz = get_u32(p + 8);
    out->channels = p[12];
    out->n_samples = get_u16(p + 13);
    n = (size_t)out->channels * out->n_samples;
    if (cap < n)
        return HAR_PROTO_E_NO_ROOM;
    for (size_t i = 0; i < n; i++) {
        uint16_t v = get_u16(p + SAMPLES_FIXED + 2u * i);
        samples[i] = v <= 0x7FFFu ? (int16_t)v : (int16_t)(-(int32_t)(uint16_t)~v - 1);
    }
    out->samples = samples;
    return HAR_PROTO_OK;
}

int har_proto_parse_device_result(const uint8_t *p, size_t len, har_proto_device_result *out,
                                  int32_t *logits, size_t cap)
{
    int err = parse_check(HAR_MSG_DEVICE_RESULT, p, len);
    if (err != HAR_PROTO_OK)
        return err;
    out->window_id = get_u32(p);
    out->t_last_us = get_u32(p + 4);
    return parse_result(p + 8, &out->result, logits, cap);
}

int har_proto_parse_uncertain(const uint8_t *p, size_t len, har_proto_uncertain *out,
                              int32_t *logits, size_t cap)
{
    int err = parse_check(HAR_MSG_UNCERTAIN, p, len);
    size_t o;
    if (err != HAR_PROTO_OK)
        return err;
    out->window_id = get_u32(p);
    out->t_last_us = get_u32(p + 4);
    err = parse_result(p + 8, &out->result, logits, cap);
    if (err != HAR_PROTO_OK)
        return err;
    o = WINDOW_FIXED + 4u * out->result.n_classes;
    out->in_channels = get_u16(p + o);
    out->window = get_u16(p + o + 2);
    out->samples = (const int8_t *)(const void *)(p + o + 4);
    return HAR_PROTO_OK;
}
