/*
 * device_main.c — the firmware a board runs: it serves the UART device protocol
 * (docs/PROTOCOL.md) with the generated network (har_model.h) and the cascade.
 *
 * After reset it sends an unsolicited VERSION (boot flag, seq 0), then answers every request:
 *   VERSION_REQ   → VERSION (model id, shapes, widths, the threshold in force)
 *   INFER_REQ     → INFER_RESULT (class, path, margin, logits, instructions where the board counts
 *                   them), or ERROR BAD_STATE for a window meant for another model (detail: our
 *                   model id) or of another shape (detail: in_channels << 16 | window)
 *   SET_THRESHOLD → ACK with the value now in force; below −1 → ERROR BAD_VALUE, threshold kept
 *   STATS_REQ     → STATS (receive counters, frames sent, inferences, escalations)
 *   SET_STREAM    → ERROR BAD_STATE: no sensor on this build (detail: the stream flags supported, 0)
 * A frame the receiver refuses (CRC, COBS, length, type) is answered with ERROR and counted; the
 * loop goes on. Nothing is allocated; the one payload buffer is also the window the network
 * reads (an INFER_REQ's samples start at payload offset 16), so a DSADS window costs its 5.6 KB
 * of RAM once.
 */
#include "board.h"
#include "har_cascade.h"
#include "har_model.h"
#include "har_proto.h"

#define FIRMWARE_VERSION 0x000100u     /* 0.1.0: major << 16 | minor << 8 | patch */
#define INFER_HEADER 16u               /* INFER_REQ: samples start here */
#define PAYLOAD_NEED (INFER_HEADER + HAR_INPUT_LEN)
#define PAYLOAD_CAP (PAYLOAD_NEED > 64u ? PAYLOAD_NEED : 64u)

#if PAYLOAD_NEED > HAR_PROTO_MAX_PAYLOAD
#error "the model's window does not fit one protocol frame (HAR_PROTO_MAX_PAYLOAD)"
#endif
#if HAR_N_WIDTHS > HAR_PROTO_MAX_WIDTHS || HAR_N_CLASSES > 255
#error "the model has more widths or classes than the protocol's VERSION/INFER_RESULT can list"
#endif

/* 8-aligned: the samples at offset 16 may be read with word loads */
static uint8_t payload[PAYLOAD_CAP] __attribute__((aligned(8)));
static uint8_t act0[HAR_ACT_LEN], act1[HAR_ACT_LEN];
static int32_t acc[HAR_ACC_LEN];
static int32_t logits[HAR_N_CLASSES];
static har_proto_rx rx;
static har_proto_tx tx;
static har_cascade cascade;
static uint16_t tx_seq;
static uint32_t frames_sent, inferences, escalations;

static void uart_write(void *ctx, const uint8_t *data, size_t n)
{
    (void)ctx;
    board_uart_write(data, n);
}

static void sent(size_t wire)
{
    if (wire) {
        ++frames_sent;
        ++tx_seq;
    }
}

static void send_error(uint16_t ref_seq, uint8_t code, uint8_t ref_type, uint32_t detail)
{
    har_proto_error e;
    e.ref_seq = ref_seq;
    e.code = code;
    e.ref_type = ref_type;
    e.detail = detail;
    sent(har_proto_send_error(&tx, tx_seq, &e));
}

static void send_version(uint16_t ref_seq, uint8_t boot)
{
    har_proto_version v;
    const char *name = BOARD_NAME;
    uint32_t i;
    v.ref_seq = ref_seq;
    v.boot = boot;
    v.protocol = HAR_PROTO_VERSION;
    v.firmware = FIRMWARE_VERSION;
    v.model_id = HAR_MODEL_ID;
    v.max_payload = (uint16_t)PAYLOAD_CAP;
    v.n_classes = (uint8_t)HAR_N_CLASSES;
    v.in_channels = (uint16_t)HAR_IN_CHANNELS;
    v.window = (uint16_t)HAR_WINDOW;
    v.n_widths = (uint8_t)HAR_N_WIDTHS;
    v.small = (uint8_t)cascade.small;
    v.full = (uint8_t)cascade.full;
    v.threshold = cascade.threshold;
    for (i = 0; i < HAR_N_WIDTHS; ++i)
        v.widths[i] = har_model_widths[i];
    for (i = 0; name[i] && i < HAR_PROTO_MAX_BOARD; ++i)
        v.board[i] = name[i];
    v.board[i] = '\0';
    sent(har_proto_send_version(&tx, tx_seq, &v));
}

static void serve_infer(void)
{
    har_proto_infer_req req;
    har_proto_infer_result out;
    har_scratch s;
    har_cascade_result r;
    uint32_t t0;
    int64_t margin;
    int rc = har_proto_parse_infer_req(rx.buf, rx.len, &req);
    if (rc != HAR_PROTO_OK) {                /* the receiver checked the layout: cannot happen */
        send_error(rx.seq, (uint8_t)rc, rx.type, 0);
        return;
    }
    if (req.model_id != 0u && req.model_id != HAR_MODEL_ID) {
        send_error(rx.seq, HAR_PROTO_E_BAD_STATE, rx.type, HAR_MODEL_ID);
        return;
    }
    if (req.in_channels != HAR_IN_CHANNELS || req.window != HAR_WINDOW) {
        send_error(rx.seq, HAR_PROTO_E_BAD_STATE, rx.type, (HAR_IN_CHANNELS << 16) | HAR_WINDOW);
        return;
    }
    s.act[0] = act0;
    s.act[1] = act1;
    s.act_len = HAR_ACT_LEN;
    s.acc = acc;
    s.acc_len = HAR_ACC_LEN;
    board_mark(1);
    t0 = board_insn_count();
    if (req.mode == HAR_MODE_CASCADE) {
        rc = har_cascade_run(&har_model, &cascade, req.samples, &s, logits, &r);
        margin = r.margin;                   /* the narrow width's: it decided (docs/PROTOCOL.md) */
        out.result.path = r.path == HAR_CASCADE_ESCALATED ? HAR_PATH_ESCALATED : HAR_PATH_NARROW;
    } else {
        uint32_t width = req.mode == HAR_MODE_NARROW ? cascade.small : cascade.full;
        rc = har_net_run(&har_model, width, req.samples, &s, logits);
        r.cls = (uint32_t)argmax_margin(logits, HAR_N_CLASSES, &margin);
        out.result.path = req.mode == HAR_MODE_NARROW ? HAR_PATH_NARROW : HAR_PATH_FULL;
    }
    t0 = board_insn_count() - t0;
    board_mark(2);
    if (rc != HAR_OK) {                      /* a generated model is consistent: cannot happen */
        send_error(rx.seq, HAR_PROTO_E_BAD_STATE, rx.type, (uint32_t)(-rc));
        return;
    }
    ++inferences;
    escalations += out.result.path == HAR_PATH_ESCALATED;
    out.ref_seq = rx.seq;
    out.result.predicted = (uint8_t)r.cls;
    out.result.n_classes = (uint8_t)HAR_N_CLASSES;
    out.result.margin = margin;
    out.result.have = t0 ? HAR_HAVE_INSTRUCTIONS : 0u;   /* 0: this board has no counter */
    out.result.cycles = 0u;
    out.result.instructions = t0;
    out.result.logits = logits;
    sent(har_proto_send_infer_result(&tx, tx_seq, &out));
}

static void serve_stats(void)
{
    har_proto_stats st;
    uint8_t flags = 0;
    if (har_proto_parse_stats_req(rx.buf, rx.len, &flags) != HAR_PROTO_OK)
        flags = 0;
    st.ref_seq = rx.seq;
    har_proto_counters_to_array(&rx.counters, st.values);
    st.values[HAR_CTR_FRAMES_SENT] = frames_sent;
    st.values[HAR_CTR_INFERENCES] = inferences;
    st.values[HAR_CTR_ESCALATIONS] = escalations;
    st.values[HAR_CTR_SAMPLES_DROPPED] = 0u;
    st.n = HAR_CTR_KNOWN;
    sent(har_proto_send_stats(&tx, tx_seq, &st));
    if (flags & HAR_STATS_RESET) {
        har_proto_counters_clear(&rx.counters);
        frames_sent = inferences = escalations = 0u;
    }
}

static void serve_threshold(void)
{
    har_proto_ack ack;
    int64_t value;
    if (har_proto_parse_set_threshold(rx.buf, rx.len, &value) != HAR_PROTO_OK || value < -1) {
        send_error(rx.seq, HAR_PROTO_E_BAD_VALUE, rx.type, 0);   /* out of range: threshold kept */
        return;
    }
    har_cascade_set_threshold(&cascade, value);
    ack.ref_seq = rx.seq;
    ack.ref_type = rx.type;
    ack.value = cascade.threshold;
    sent(har_proto_send_ack(&tx, tx_seq, &ack));
}

static void serve(void)
{
    switch (rx.type) {
    case HAR_MSG_VERSION_REQ:
        send_version(rx.seq, 0);
        break;
    case HAR_MSG_INFER_REQ:
        serve_infer();
        break;
    case HAR_MSG_SET_THRESHOLD:
        serve_threshold();
        break;
    case HAR_MSG_STATS_REQ:
        serve_stats();
        break;
    case HAR_MSG_SET_STREAM:
        send_error(rx.seq, HAR_PROTO_E_BAD_STATE, rx.type, 0);   /* no sensor on this build */
        break;
    default:                                 /* the receiver refuses other types: cannot happen */
        send_error(rx.seq, HAR_PROTO_E_UNKNOWN_TYPE, rx.type, 0);
        break;
    }
}

int main(void)
{
    board_init();
    cascade.small = HAR_SMALL_WIDTH;
    cascade.full = HAR_FULL_WIDTH;
    har_cascade_set_threshold(&cascade, HAR_DEFAULT_THRESHOLD);
    har_proto_rx_init(&rx, payload, sizeof payload, HAR_ROLE_DEVICE);
    har_proto_tx_init_stream(&tx, uart_write, 0);
    send_version(0, 1);
    for (;;) {
        uint8_t byte;
        int event;
        if (!board_uart_read(&byte, 0))
            continue;
        event = har_proto_rx_feed(&rx, byte);
        if (event == HAR_RX_MESSAGE)
            serve();
        else if (event == HAR_RX_ERROR)
            sent(har_proto_send_error(&tx, tx_seq, &rx.error));
    }
}
