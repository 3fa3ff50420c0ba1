/*
 * Test driver for firmware/protocol/har_proto.c, run by tests/test_protocol.py (host only, so it
 * may use stdio). Messages travel as "flat" integer lists, the same on both sides: a message's
 * fields in layout order, a nested result block inline, every array as its length then its items.
 *
 *   driver rx ROLE CAP       feeds stdin to har_proto_rx byte by byte (ROLE 0 device, 1 host,
 *                            2 any; CAP payload bytes) and prints one line per event:
 *                              M type seq flat...         a message, parsed by har_proto_parse_*
 *                              E code ref_type ref_seq detail
 *                            then  C counters...  (har_proto_counters_to_array).
 *   driver tx MODE OUT [CAP] reads lines "type seq flat..." from stdin, builds each frame with
 *                            har_proto_send_* (MODE buffer: into one CAP-byte buffer; stream:
 *                            through a write callback), prints each send's return value, and
 *                            writes the bytes to the file OUT.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "har_proto.h"

/* ------------------------------------------------------------------ rx: print what was parsed */

static void put_u(uint64_t v) { printf(" %" PRIu64, v); }
static void put_i(int64_t v) { printf(" %" PRId64, v); }

static void put_result(const har_proto_result *r)
{
    put_u(r->predicted); put_u(r->path); put_u(r->n_classes); put_u(r->have);
    put_i(r->margin); put_u(r->cycles); put_u(r->instructions);
    put_u(r->n_classes);
    for (unsigned i = 0; i < r->n_classes; i++) put_i(r->logits[i]);
}

static void put_i8s(const int8_t *v, uint32_t n)
{
    put_u(n);
    for (uint32_t i = 0; i < n; i++) put_i(v[i]);
}

static int print_message(const har_proto_rx *rx)
{
    static int32_t logits[255];
    static int16_t samples[HAR_PROTO_MAX_PAYLOAD / 2];
    static har_proto_sensor_channel channels[HAR_PROTO_MAX_SENSOR_CHANNELS];
    const uint8_t *p = rx->buf;
    size_t len = rx->len;
    int err = HAR_PROTO_OK;
    printf("M %u %u", rx->type, rx->seq);
    switch (rx->type) {
    case HAR_MSG_VERSION_REQ: case HAR_MSG_SENSOR_REQ: break;
    case HAR_MSG_INFER_REQ: {
        har_proto_infer_req m;
        if ((err = har_proto_parse_infer_req(p, len, &m)) != 0) break;
        put_u(m.mode); put_u(m.in_channels); put_u(m.window); put_u(m.model_id);
        /* the samples are pointed to in place, at payload offset 16 (8-aligned) */
        if ((const uint8_t *)(const void *)m.samples != p + 16) {
            fprintf(stderr, "INFER_REQ samples not at payload offset 16\n");
            err = -2;
        }
        put_i8s(m.samples, (uint32_t)m.in_channels * m.window);
        break;
    }
    case HAR_MSG_SET_THRESHOLD: {
        int64_t t;
        if ((err = har_proto_parse_set_threshold(p, len, &t)) == 0) put_i(t);
        break;
    }
    case HAR_MSG_STATS_REQ: case HAR_MSG_SET_STREAM: {
        uint8_t flags;
        err = rx->type == HAR_MSG_STATS_REQ ? har_proto_parse_stats_req(p, len, &flags)
                                            : har_proto_parse_set_stream(p, len, &flags);
        if (err == 0) put_u(flags);
        break;
    }
    case HAR_MSG_VERSION: {
        har_proto_version m;
        if ((err = har_proto_parse_version(p, len, &m)) != 0) break;
        put_u(m.ref_seq); put_u(m.boot); put_u(m.protocol); put_u(m.firmware); put_u(m.model_id);
        put_u(m.max_payload); put_u(m.n_classes); put_u(m.in_channels); put_u(m.window);
        put_u(m.small); put_u(m.full); put_i(m.threshold);
        put_u(m.n_widths);
        for (unsigned i = 0; i < m.n_widths; i++) put_u(m.widths[i]);
        put_u(strlen(m.board));
        for (size_t i = 0; m.board[i]; i++) put_u((uint8_t)m.board[i]);
        break;
    }
    case HAR_MSG_INFER_RESULT: {
        har_proto_infer_result m;
        if ((err = har_proto_parse_infer_result(p, len, &m, logits, 255)) != 0) break;
        put_u(m.ref_seq); put_result(&m.result);
        break;
    }
    case HAR_MSG_ACK: {
        har_proto_ack m;
        if ((err = har_proto_parse_ack(p, len, &m)) != 0) break;
        put_u(m.ref_seq); put_u(m.ref_type); put_i(m.value);
        break;
    }
    case HAR_MSG_STATS: {
        har_proto_stats m;
        if ((err = har_proto_parse_stats(p, len, &m)) != 0) break;
        put_u(m.ref_seq); put_u(m.n);
        for (unsigned i = 0; i < m.n; i++) put_u(m.values[i]);
        break;
    }
    case HAR_MSG_SENSOR: {
        har_proto_sensor m;
        if ((err = har_proto_parse_sensor(p, len, &m, channels, HAR_PROTO_MAX_SENSOR_CHANNELS)) != 0) break;
        put_u(m.ref_seq); put_u(m.rate_mhz); put_u(m.source); put_u(m.stride); put_u(m.n_channels);
        for (unsigned i = 0; i < m.n_channels; i++) {
            const har_proto_sensor_channel *c = &m.channels[i];
            /* name and unit point into the payload */
            if ((const uint8_t *)(const void *)c->name < p || (const uint8_t *)(const void *)c->unit + c->unit_len > p + len) {
                fprintf(stderr, "SENSOR text not inside the payload\n");
                err = -2;
            }
            put_u(c->scale_bits);
            put_u(c->name_len);
            for (unsigned k = 0; k < c->name_len; k++) put_u((uint8_t)c->name[k]);
            put_u(c->unit_len);
            for (unsigned k = 0; k < c->unit_len; k++) put_u((uint8_t)c->unit[k]);
        }
        break;
    }
    case HAR_MSG_ERROR: {
        har_proto_error m;
        if ((err = har_proto_parse_error(p, len, &m)) != 0) break;
        put_u(m.ref_seq); put_u(m.code); put_u(m.ref_type); put_u(m.detail);
        break;
    }
    case HAR_MSG_SAMPLES: {
        har_proto_samples m;
        if ((err = har_proto_parse_samples(p, len, &m, samples, sizeof samples / sizeof samples[0])) != 0) break;
        put_u(m.t_first_us); put_u(m.first_index); put_u(m.rate_mhz); put_u(m.channels); put_u(m.n_samples);
        put_u((uint64_t)m.channels * m.n_samples);
        for (uint32_t i = 0; i < (uint32_t)m.channels * m.n_samples; i++) put_i(m.samples[i]);
        break;
    }
    case HAR_MSG_UNCERTAIN: {
        har_proto_uncertain m;
        if ((err = har_proto_parse_uncertain(p, len, &m, logits, 255)) != 0) break;
        put_u(m.window_id); put_u(m.t_last_us); put_result(&m.result);
        put_u(m.in_channels); put_u(m.window);
        put_i8s(m.samples, (uint32_t)m.in_channels * m.window);
        break;
    }
    case HAR_MSG_DEVICE_RESULT: {
        har_proto_device_result m;
        if ((err = har_proto_parse_device_result(p, len, &m, logits, 255)) != 0) break;
        put_u(m.window_id); put_u(m.t_last_us); put_result(&m.result);
        break;
    }
    default:
        err = -1;
    }
    printf("\n");
    /* the receiver checked the frame: a parser that disagrees is a bug */
    if (err != 0) fprintf(stderr, "parser of type %u refused a checked payload: %d\n", rx->type, err);
    return err;
}

static int run_rx(int role, size_t cap)
{
    static uint8_t buf[HAR_PROTO_MAX_PAYLOAD];
    har_proto_rx rx;
    uint32_t counters[HAR_CTR_KNOWN];
    int c, status = 0;
    har_proto_rx_init(&rx, buf, cap, (uint8_t)role);
    while ((c = getchar()) != EOF) {
        int event = har_proto_rx_feed(&rx, (uint8_t)c);
        if (event == HAR_RX_MESSAGE && print_message(&rx) != 0)
            status = 1;
        if (event == HAR_RX_ERROR)
            printf("E %u %u %u %" PRIu32 "\n", rx.error.code, rx.error.ref_type, rx.error.ref_seq, rx.error.detail);
    }
    har_proto_counters_to_array(&rx.counters, counters);
    printf("C");
    for (int i = 0; i <= HAR_CTR_SEQ_GAPS; i++) put_u(counters[i]);
    printf("\n");
    return status;
}

/* ------------------------------------------------------------------ tx: build from flat lists */

static char *cursor;

static int64_t next(void)
{
    char *end;
    long long v;
    while (*cursor == ' ') cursor++;
    if (*cursor == '-') {
        v = strtoll(cursor, &end, 10);
    } else {
        v = (long long)strtoull(cursor, &end, 10);   /* u64 values above INT64_MAX wrap back */
    }
    if (end == cursor) { fprintf(stderr, "driver: spec line ends early\n"); exit(2); }
    cursor = end;
    return (int64_t)v;
}

static void fits(int64_t n, size_t cap)
{
    if (n < 0 || (uint64_t)n > cap) { fprintf(stderr, "driver: array of %" PRId64 " > %zu\n", n, cap); exit(2); }
}

static void get_result(har_proto_result *r, int32_t *logits)
{
    r->predicted = (uint8_t)next(); r->path = (uint8_t)next(); r->n_classes = (uint8_t)next();
    r->have = (uint8_t)next(); r->margin = next(); r->cycles = (uint64_t)next();
    r->instructions = (uint64_t)next();
    int64_t n = next();
    fits(n, 255);
    for (int64_t i = 0; i < n; i++) logits[i] = (int32_t)next();
    r->logits = logits;
}

static const int8_t *get_i8s(int8_t *out, size_t cap)
{
    int64_t n = next();
    fits(n, cap);
    for (int64_t i = 0; i < n; i++) out[i] = (int8_t)next();
    return out;
}

/* A length-prefixed text (length, then its bytes): up to `keep` bytes go into out; longer ones
 * keep their length (the builder must refuse them), and only their first `keep` bytes. */
static uint8_t get_text(char *out, size_t keep)
{
    int64_t n = next();
    fits(n, 255);
    for (int64_t i = 0; i < n; i++) {
        char ch = (char)next();
        if ((size_t)i < keep) out[i] = ch;
    }
    return (uint8_t)n;
}

static size_t build(har_proto_tx *tx, int type, uint16_t seq)
{
    static int32_t logits[255];
    static char text[256][2][256];
    static har_proto_sensor_channel channels[256];
    static int8_t i8[1 << 16];
    static int16_t i16[1 << 16];
    switch (type) {
    case HAR_MSG_VERSION_REQ: return har_proto_send_version_req(tx, seq);
    case HAR_MSG_INFER_REQ: {
        har_proto_infer_req m;
        m.mode = (uint8_t)next(); m.in_channels = (uint16_t)next(); m.window = (uint16_t)next();
        m.model_id = (uint32_t)next();
        m.samples = get_i8s(i8, sizeof i8);
        return har_proto_send_infer_req(tx, seq, &m);
    }
    case HAR_MSG_SET_THRESHOLD: return har_proto_send_set_threshold(tx, seq, next());
    case HAR_MSG_STATS_REQ: return har_proto_send_stats_req(tx, seq, (uint8_t)next());
    case HAR_MSG_SET_STREAM: return har_proto_send_set_stream(tx, seq, (uint8_t)next());
    case HAR_MSG_SENSOR_REQ: return har_proto_send_sensor_req(tx, seq);
    case HAR_MSG_SENSOR: {
        har_proto_sensor m;
        int64_t n;
        m.ref_seq = (uint16_t)next(); m.rate_mhz = (uint32_t)next(); m.source = (uint8_t)next();
        m.stride = (uint16_t)next();
        n = next();
        fits(n, 255);
        m.n_channels = (uint8_t)n;
        for (int64_t i = 0; i < n; i++) {
            channels[i].scale_bits = (uint32_t)next();
            channels[i].name_len = get_text(text[i][0], 256);
            channels[i].name = text[i][0];
            channels[i].unit_len = get_text(text[i][1], 256);
            channels[i].unit = text[i][1];
        }
        m.channels = channels;
        return har_proto_send_sensor(tx, seq, &m);
    }
    case HAR_MSG_VERSION: {
        har_proto_version m;
        int64_t n;
        m.ref_seq = (uint16_t)next(); m.boot = (uint8_t)next(); m.protocol = (uint8_t)next();
        m.firmware = (uint32_t)next(); m.model_id = (uint32_t)next(); m.max_payload = (uint16_t)next();
        m.n_classes = (uint8_t)next(); m.in_channels = (uint16_t)next(); m.window = (uint16_t)next();
        m.small = (uint8_t)next(); m.full = (uint8_t)next(); m.threshold = next();
        n = next();
        m.n_widths = (uint8_t)n;
        for (int64_t i = 0; i < n; i++) {
            uint16_t w = (uint16_t)next();
            if (i < (int64_t)HAR_PROTO_MAX_WIDTHS) m.widths[i] = w;
        }
        n = next();
        for (int64_t i = 0; i <= (int64_t)HAR_PROTO_MAX_BOARD; i++)
            m.board[i] = i < n ? (char)next() : '\0';
        return har_proto_send_version(tx, seq, &m);
    }
    case HAR_MSG_INFER_RESULT: {
        har_proto_infer_result m;
        m.ref_seq = (uint16_t)next();
        get_result(&m.result, logits);
        return har_proto_send_infer_result(tx, seq, &m);
    }
    case HAR_MSG_ACK: {
        har_proto_ack m;
        m.ref_seq = (uint16_t)next(); m.ref_type = (uint8_t)next(); m.value = next();
        return har_proto_send_ack(tx, seq, &m);
    }
    case HAR_MSG_STATS: {
        har_proto_stats m;
        int64_t n;
        m.ref_seq = (uint16_t)next();
        n = next();
        m.n = (uint8_t)n;
        for (int64_t i = 0; i < n; i++) {
            uint32_t v = (uint32_t)next();
            if (i < (int64_t)HAR_PROTO_MAX_COUNTERS) m.values[i] = v;
        }
        return har_proto_send_stats(tx, seq, &m);
    }
    case HAR_MSG_ERROR: {
        har_proto_error m;
        m.ref_seq = (uint16_t)next(); m.code = (uint8_t)next(); m.ref_type = (uint8_t)next();
        m.detail = (uint32_t)next();
        return har_proto_send_error(tx, seq, &m);
    }
    case HAR_MSG_SAMPLES: {
        har_proto_samples m;
        int64_t n;
        m.t_first_us = (uint32_t)next(); m.first_index = (uint32_t)next(); m.rate_mhz = (uint32_t)next();
        m.channels = (uint8_t)next(); m.n_samples = (uint16_t)next();
        n = next();
        fits(n, sizeof i16 / sizeof i16[0]);
        for (int64_t i = 0; i < n; i++) i16[i] = (int16_t)next();
        m.samples = i16;
        return har_proto_send_samples(tx, seq, &m);
    }
    case HAR_MSG_UNCERTAIN: {
        har_proto_uncertain m;
        m.window_id = (uint32_t)next(); m.t_last_us = (uint32_t)next();
        get_result(&m.result, logits);
        m.in_channels = (uint16_t)next(); m.window = (uint16_t)next();
        m.samples = get_i8s(i8, sizeof i8);
        return har_proto_send_uncertain(tx, seq, &m);
    }
    case HAR_MSG_DEVICE_RESULT: {
        har_proto_device_result m;
        m.window_id = (uint32_t)next(); m.t_last_us = (uint32_t)next();
        get_result(&m.result, logits);
        return har_proto_send_device_result(tx, seq, &m);
    }
    default:
        fprintf(stderr, "driver: no builder for type %d\n", type);
        exit(2);
    }
}

static void write_file(void *ctx, const uint8_t *data, size_t n)
{
    if (n == 0 || n > 255) { fprintf(stderr, "driver: write callback got %zu bytes\n", n); exit(3); }
    fwrite(data, 1, n, (FILE *)ctx);
}

static int run_tx(const char *mode, const char *path, size_t cap)
{
    static char line[1 << 16];
    static har_proto_tx tx;
    uint8_t *buf = NULL;
    FILE *out = fopen(path, "wb");
    if (!out) { perror(path); return 2; }
    if (strcmp(mode, "stream") == 0) {
        har_proto_tx_init_stream(&tx, write_file, out);
    } else {
        buf = malloc(cap ? cap : 1);
        har_proto_tx_init_buffer(&tx, buf, cap);
    }
    while (fgets(line, sizeof line, stdin)) {
        int type;
        uint16_t seq;
        cursor = line;
        type = (int)next();
        seq = (uint16_t)next();
        printf("%zu\n", build(&tx, type, seq));
    }
    if (buf) fwrite(buf, 1, tx.len, out);
    free(buf);
    fclose(out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "rx") == 0)
        return run_rx(atoi(argv[2]), (size_t)strtoull(argv[3], NULL, 10));
    if ((argc == 4 || argc == 5) && strcmp(argv[1], "tx") == 0)
        return run_tx(argv[2], argv[3], argc == 5 ? (size_t)strtoull(argv[4], NULL, 10) : 0);
    fprintf(stderr, "usage: driver rx ROLE CAP < bytes | driver tx buffer|stream OUT [CAP] < specs\n");
    return 2;
}
