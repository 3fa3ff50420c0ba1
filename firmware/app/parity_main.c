/*
 * parity_main.c — the parity image: runs the generated network on windows the host wrote to a
 * semihosting file and writes every intermediate result back, for streamhar/firmware/parity.py
 * to compare with the Python integer engine bit for bit (the bulk path: semihosting file I/O
 * moves ~2 MB/s, the emulated UART ~20 KB/s).
 *
 * In  "windows.bin": header {u32 magic 'HARW', u32 n_windows, i64 threshold}, then n int8 windows
 *                    [HAR_IN_CHANNELS][HAR_WINDOW].
 * Out "results.bin": header {u32 magic 'HARR', u32 model id, u32 n_classes, u32 n_blocks}, then
 *                    per window, u32 words (int32 values as their two's complement):
 *                      for the small width, then the full width:
 *                        logits[n_classes], layer checksums[n_blocks], instructions
 *                      the cascade at `threshold`: class, path, margin low word, margin high word,
 *                        instructions
 * Instructions come from board_insn_count() (exact on riscv32 under -icount; 0 where the board
 * has no counter); board_mark(1)/board_mark(2) bracket every inference for a counting plugin.
 * Exit status: 0, or 10 + a step that failed (open, read, run, write).
 */
#include "board.h"
#include "har_cascade.h"
#include "har_model.h"

#define MAGIC_IN 0x57524148u   /* "HARW" little-endian */
#define MAGIC_OUT 0x52524148u  /* "HARR" */
#define RECORD_WORDS (2u * (HAR_N_CLASSES + HAR_N_BLOCKS + 1u) + 5u)

static int8_t window[HAR_INPUT_LEN];
static uint8_t act0[HAR_ACT_LEN], act1[HAR_ACT_LEN];
static int32_t acc[HAR_ACC_LEN];
static uint32_t record[RECORD_WORDS];

/* One width, traced: logits, checksums and instruction count into record[at..]. */
static int run_width(uint32_t width, const har_scratch *s, uint32_t at)
{
    int32_t logits[HAR_N_CLASSES];
    uint32_t trace[HAR_N_BLOCKS], i, t0;
    int rc;
    board_mark(1);
    t0 = board_insn_count();
    rc = har_net_run_traced(&har_model, width, window, s, logits, trace);
    t0 = board_insn_count() - t0;
    board_mark(2);
    for (i = 0; i < HAR_N_CLASSES; ++i)
        record[at + i] = (uint32_t)logits[i];
    for (i = 0; i < HAR_N_BLOCKS; ++i)
        record[at + HAR_N_CLASSES + i] = trace[i];
    record[at + HAR_N_CLASSES + HAR_N_BLOCKS] = t0;
    return rc;
}

int main(void)
{
    uint32_t head[4], n, k;
    int64_t threshold;
    int in, out;
    har_scratch s;
    har_cascade cascade;
    har_cascade_result r;
    int32_t logits[HAR_N_CLASSES];

    board_init();
    s.act[0] = act0;
    s.act[1] = act1;
    s.act_len = HAR_ACT_LEN;
    s.acc = acc;
    s.acc_len = HAR_ACC_LEN;
    in = sh_open("windows.bin", 0);
    out = sh_open("results.bin", 1);
    if (in < 0 || out < 0)
        board_exit(10);
    if (sh_read_all(in, head, 8) != 0 || head[0] != MAGIC_IN || sh_read_all(in, &threshold, 8) != 0)
        board_exit(11);
    n = head[1];
    cascade.small = HAR_SMALL_WIDTH;
    cascade.full = HAR_FULL_WIDTH;
    har_cascade_set_threshold(&cascade, threshold);
    head[0] = MAGIC_OUT;
    head[1] = HAR_MODEL_ID;
    head[2] = HAR_N_CLASSES;
    head[3] = HAR_N_BLOCKS;
    if (sh_write(out, head, sizeof head) != (long)sizeof head)
        board_exit(13);
    for (k = 0; k < n; ++k) {
        uint32_t at = 2u * (HAR_N_CLASSES + HAR_N_BLOCKS + 1u), t0;
        if (sh_read_all(in, window, sizeof window) != 0)
            board_exit(11);
        if (run_width(HAR_SMALL_WIDTH, &s, 0) != HAR_OK ||
            run_width(HAR_FULL_WIDTH, &s, HAR_N_CLASSES + HAR_N_BLOCKS + 1u) != HAR_OK)
            board_exit(12);
        board_mark(1);
        t0 = board_insn_count();
        if (har_cascade_run(&har_model, &cascade, window, &s, logits, &r) != HAR_OK)
            board_exit(12);
        t0 = board_insn_count() - t0;
        board_mark(2);
        record[at] = r.cls;
        record[at + 1] = r.path;
        record[at + 2] = (uint32_t)((uint64_t)r.margin & 0xFFFFFFFFu);
        record[at + 3] = (uint32_t)((uint64_t)r.margin >> 32);
        record[at + 4] = t0;
        if (sh_write(out, record, sizeof record) != (long)sizeof record)
            board_exit(13);
    }
    sh_close(in);
    sh_close(out);
    board_exit(0);
}
