/*
 * insn_count.c — a QEMU TCG plugin that counts executed guest instructions exactly and records
 * the running count each time one marker address executes (firmware/boards' board_mark).
 *
 *   qemu-system-arm ... -icount shift=0 -plugin ./libinsn_count.so,mark=0x08000130,out=hits.txt
 *
 * Output (written when QEMU exits, e.g. on the firmware's semihosting exit):
 *   insn_count 1
 *   mark <count>        one line per execution of the marker, in program order
 *   total <count>       every instruction executed
 * <count> is the number of instructions executed when the marker instruction runs (the same
 * convention for every mark), so the difference of two marks is the exact number of
 * instructions executed from one marker call to the next. The marker's
 * argument (r0 / a0) cannot be read with the plugin API of QEMU 7.2 (version 1 has no register
 * access), so the caller pairs the marks up in program order (streamhar/firmware/plugin.py).
 *
 * Exact because every instruction gets an inline add when it is translated (not one add per
 * translation block, which would overcount a block left early by an exception or an I/O
 * replay; QEMU replays I/O instructions with CF_MEMI_ONLY, which carries no instruction
 * callbacks). One vCPU: the counter is a plain global.
 *
 * Built with the host compiler alone (streamhar.firmware.plugin.plugin_library):
 *   gcc -shared -fPIC -O2 -std=c99 -fvisibility=hidden -o libinsn_count.so insn_count.c
 * Debian ships no qemu-plugin.h (it lives only in the qemu source package), so the few entry
 * points used here are declared below. They are the C ABI the QEMU binaries export (`nm -D
 * qemu-system-arm | grep qemu_plugin_`) at plugin API version 1, which this file declares: QEMU
 * 7.2 as Debian 12 ships it (QEMU 9 replaced the inline call with per-vCPU variants, API 2+).
 */
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- QEMU plugin API, version 1 (only what this file calls) ---- */
#define PLUGIN_EXPORT __attribute__((visibility("default")))
typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
enum { QEMU_PLUGIN_CB_NO_REGS = 0 };       /* enum qemu_plugin_cb_flags */
enum { QEMU_PLUGIN_INLINE_ADD_U64 = 0 };   /* enum qemu_plugin_op */
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*udata_cb)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn *insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn *insn, int op, void *ptr,
                                                uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn *insn, vcpu_udata_cb cb, int flags,
                                            void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void *userdata);

PLUGIN_EXPORT int qemu_plugin_version = 1;
/* ---- end of the API declarations ---- */

static uint64_t executed;     /* instructions executed so far (inline adds) */
static uint64_t mark_addr;
static int have_mark;
static uint64_t *marks;       /* `executed` at each marker execution */
static size_t n_marks, cap_marks;
static FILE *out;
static int out_of_memory;

static void on_mark(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    (void)userdata;
    if (n_marks == cap_marks) {
        size_t cap = cap_marks ? 2 * cap_marks : 1024;
        uint64_t *p = realloc(marks, cap * sizeof *p);
        if (!p) {
            out_of_memory = 1;   /* reported at exit: a short list must not pass for a whole one */
            return;
        }
        marks = p;
        cap_marks = cap;
    }
    marks[n_marks++] = executed;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    size_t i, n = qemu_plugin_tb_n_insns(tb);
    (void)id;
    for (i = 0; i < n; ++i) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        /* Whether a mark's count includes the marker instruction itself depends on the order
         * QEMU emits the two; it is the same at every mark, so differences are exact. */
        if (have_mark && qemu_plugin_insn_vaddr(insn) == mark_addr)
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
        qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &executed, 1);
    }
}

static void write_marks(qemu_plugin_id_t id, void *userdata)
{
    size_t i;
    (void)id;
    (void)userdata;
    fprintf(out, "insn_count 1\n");
    for (i = 0; i < n_marks; ++i)
        fprintf(out, "mark %" PRIu64 "\n", marks[i]);
    if (out_of_memory)
        fprintf(out, "error out of memory: marks after the %zu-th were lost\n", n_marks);
    fprintf(out, "total %" PRIu64 "\n", executed);
    fclose(out);
}

PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const void *info, int argc, char **argv)
{
    const char *path = NULL;
    int i;
    (void)info;
    for (i = 0; i < argc; ++i) {
        if (strncmp(argv[i], "mark=", 5) == 0) {
            char *end;
            mark_addr = strtoull(argv[i] + 5, &end, 0);
            if (end == argv[i] + 5 || *end != '\0') {
                fprintf(stderr, "insn_count: mark=%s is not an address (expected e.g. mark=0x08000130)\n",
                        argv[i] + 5);
                return -1;
            }
            have_mark = 1;
        } else if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
        } else {
            fprintf(stderr, "insn_count: unknown argument %s (expected mark=ADDRESS, out=FILE)\n", argv[i]);
            return -1;
        }
    }
    if (!path || !*path) {
        fprintf(stderr, "insn_count: out=FILE is required\n");
        return -1;
    }
    out = fopen(path, "w");   /* opened now so that a bad path stops QEMU before the guest runs */
    if (!out) {
        fprintf(stderr, "insn_count: cannot open out=%s for writing\n", path);
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_marks, NULL);
    return 0;
}
