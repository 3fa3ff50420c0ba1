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
 *   STATS_REQ     → STATS (receive counters, frames sent, inferences, escalations, samples dropped)
 *   SENSOR_REQ    → SENSOR, and SET_STREAM → ACK: the stream module's (device.h) — sensor mode
 *                   in a sensor image, "no sensor" (ERROR BAD_STATE for SET_STREAM) otherwise
 * A frame the receiver refuses (CRC, COBS, length, type) is answered with ERROR and counted; the
 * loop goes on. The loop never blocks: it polls the UART once, then lets the stream module take
 * one step, so requests are answered while streaming and replies interleave with stream frames.
 * Nothing is allocated; the one payload buffer is also the window the network reads (an
 * INFER_REQ's samples start at payload offset 16), so a DSADS window costs its 5.6 KB of RAM once.
 */
#include "board.h"
#include "device.h"

#define FIRMWARE_VERSION 0x000100u     /* 0.1.0: major << 16 | minor << 8 | patch */
#define INFER_HEADER 16u               /* INFER_REQ: samples start here */
#define PAYLOAD_NEED (INFER_HEADER + HAR_INPUT_LEN)
#define PAYLOAD_CAP (PAYLOAD_NEED > 64u ? PAYLOAD_NEED : 64u)
#define LINK_SLACK_US 20000            /* FAST may run this far ahead of the line: ~230 bytes */

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
static har_proto_rx rx;
static uint32_t frames_sent;
static uint32_t link_free_us;          /* when the UART will have sent every frame so far */

har_proto_tx device_tx;
uint16_t device_tx_seq;
har_cascade device_cascade;
har_scratch device_scratch;
int32_t device_logits[HAR_N_CLASSES];
uint32_t device_inferences, device_escalations;

static void uart_write(void *ctx, const uint8_t *data, size_t n)
{
    (void)ctx;
    board_uart_write(data, n);
}

void device_sent(size_t wire)
{
    uint32_t now;
    if (!wire)
        return;
    ++frames_sent;
    ++device_tx_seq;
    /* the line's model: a frame starts when the previous one is out, takes 10 bits per byte */
    now = board_time_us();
    if ((int32_t)(now - link_free_us) > 0)
        link_free_us = now;
    link_free_us += (uint32_t)((uint64_t)wire * 10u * 1000000u / BOARD_UART_BAUD);
}

int device_link_idle(void)
{
    return (int32_t)(board_time_us() - link_free_us) >= -LINK_SLACK_US;
}

void device_send_error(uint16_t ref_seq, uint8_t code, uint8_t ref_type, uint32_t detail)
{
    har_proto_error e;
    e.ref_seq = ref_seq;
    e.code = code;
    e.ref_type = ref_type;
    e.detail = detail;
    device_sent(har_proto_send_error(&device_tx, device_tx_seq, &e));
}

void device_send_ack(uint16_t ref_seq, uint8_t ref_type, int64_t value)
{
    har_proto_ack ack;
    ack.ref_seq = ref_seq;
    ack.ref_type = ref_type;
    ack.value = value;
    device_sent(har_proto_send_ack(&device_tx, device_tx_seq, &ack));
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
    v.small = (uint8_t)device_cascade.small;
    v.full = (uint8_t)device_cascade.full;
    v.threshold = device_cascade.threshold;
    for (i = 0; i < HAR_N_WIDTHS; ++i)
        v.widths[i] = har_model_widths[i];
    for (i = 0; name[i] && i < HAR_PROTO_MAX_BOARD; ++i)
        v.board[i] = name[i];
    v.board[i] = '\0';
    device_sent(har_proto_send_version(&device_tx, device_tx_seq, &v));
}

static void serve_infer(void)
{
    har_proto_infer_req req;
    har_proto_infer_result out;
    har_cascade_result r;
    uint32_t t0;
    int64_t margin;
    int rc = har_proto_parse_infer_req(rx.buf, rx.len, &req);
    if (rc != HAR_PROTO_OK) {                /* the receiver checked the layout: cannot happen */
        device_send_error(rx.seq, (uint8_t)rc, rx.type, 0);
        return;
    }
    if (req.model_id != 0u && req.model_id != HAR_MODEL_ID) {
        device_send_error(rx.seq, HAR_PROTO_E_BAD_STATE, rx.type, HAR_MODEL_ID);
        return;
    }
    if (req.in_channels != HAR_IN_CHANNELS || req.window != HAR_WINDOW) {
        device_send_error(rx.seq, HAR_PROTO_E_BAD_STATE, rx.type, (HAR_IN_CHANNELS << 16) | HAR_WINDOW);
        return;
    }
    board_mark(1);
    t0 = board_insn_count();
    if (req.mode == HAR_MODE_CASCADE) {
        rc = har_cascade_run(&har_model, &device_cascade, req.samples, &device_scratch, device_logits, &r);
        margin = r.margin;                   /* the narrow width's: it decided (docs/PROTOCOL.md) */
        out.result.path = r.path == HAR_CASCADE_ESCALATED ? HAR_PATH_ESCALATED : HAR_PATH_NARROW;
    } else {
        uint32_t width = req.mode == HAR_MODE_NARROW ? device_cascade.small : device_cascade.full;
        rc = har_net_run(&har_model, width, req.samples, &device_scratch, device_logits);
        r.cls = (uint32_t)argmax_margin(device_logits, HAR_N_CLASSES, &margin);
        out.result.path = req.mode == HAR_MODE_NARROW ? HAR_PATH_NARROW : HAR_PATH_FULL;
    }
    t0 = board_insn_count() - t0;
    board_mark(2);
    if (rc != HAR_OK) {                      /* a generated model is consistent: cannot happen */
        device_send_error(rx.seq, HAR_PROTO_E_BAD_STATE, rx.type, (uint32_t)(-rc));
        return;
    }
    ++device_inferences;
    device_escalations += out.result.path == HAR_PATH_ESCALATED;
    out.ref_seq = rx.seq;
    out.result.predicted = (uint8_t)r.cls;
    out.result.n_classes = (uint8_t)HAR_N_CLASSES;
    out.result.margin = margin;
    out.result.have = t0 ? HAR_HAVE_INSTRUCTIONS : 0u;   /* 0: this board has no counter */
    out.result.cycles = 0u;
    out.result.instructions = t0;
    out.result.logits = device_logits;
    device_sent(har_proto_send_infer_result(&device_tx, device_tx_seq, &out));
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
    st.values[HAR_CTR_INFERENCES] = device_inferences;
    st.values[HAR_CTR_ESCALATIONS] = device_escalations;
    st.values[HAR_CTR_SAMPLES_DROPPED] = stream_samples_dropped();
    st.n = HAR_CTR_KNOWN;
    device_sent(har_proto_send_stats(&device_tx, device_tx_seq, &st));
    if (flags & HAR_STATS_RESET) {
        har_proto_counters_clear(&rx.counters);
        frames_sent = device_inferences = device_escalations = 0u;
        stream_clear_counters();
    }
}

static void serve_threshold(void)
{
    int64_t value;
    if (har_proto_parse_set_threshold(rx.buf, rx.len, &value) != HAR_PROTO_OK || value < -1) {
        device_send_error(rx.seq, HAR_PROTO_E_BAD_VALUE, rx.type, 0);   /* out of range: threshold kept */
        return;
    }
    har_cascade_set_threshold(&device_cascade, value);
    device_send_ack(rx.seq, rx.type, device_cascade.threshold);
}

static void serve_stream(void)
{
    uint8_t flags = 0;
    if (har_proto_parse_set_stream(rx.buf, rx.len, &flags) != HAR_PROTO_OK)   /* checked: cannot happen */
        flags = 0;
    stream_answer_set(rx.seq, flags);
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
        serve_stream();
        break;
    case HAR_MSG_SENSOR_REQ:
        stream_answer_sensor(rx.seq);
        break;
    default:                                 /* the receiver refuses other types: cannot happen */
        device_send_error(rx.seq, HAR_PROTO_E_UNKNOWN_TYPE, rx.type, 0);
        break;
    }
}

int main(void)
{
    board_init();
    device_scratch.act[0] = act0;
    device_scratch.act[1] = act1;
    device_scratch.act_len = HAR_ACT_LEN;
    device_scratch.acc = acc;
    device_scratch.acc_len = HAR_ACC_LEN;
    device_cascade.small = HAR_SMALL_WIDTH;
    device_cascade.full = HAR_FULL_WIDTH;
    har_cascade_set_threshold(&device_cascade, HAR_DEFAULT_THRESHOLD);
    har_proto_rx_init(&rx, payload, sizeof payload, HAR_ROLE_DEVICE);
    har_proto_tx_init_stream(&device_tx, uart_write, 0);
    link_free_us = board_time_us();
    send_version(0, 1);
    for (;;) {
        uint8_t byte;
        if (board_uart_read(&byte, 1)) {    /* one poll: never wait while streaming */
            int event = har_proto_rx_feed(&rx, byte);
            if (event == HAR_RX_MESSAGE)
                serve();
            else if (event == HAR_RX_ERROR)
                device_sent(har_proto_send_error(&device_tx, device_tx_seq, &rx.error));
        }
        stream_poll();
    }
}
