/* A QEMU TCG plugin that counts the guest instructions executed from a kernel's first
 * instruction to its `main`, block by block, for bench/executed/executed.py.
 *
 * usage: qemu-system-x86_64 -accel tcg -icount shift=0 \
 *            -plugin libexecuted.so,start=0x100000,end=0x200000,main=0x1043a0,out=FILE ...
 *
 *   start, end  the kernel image [start, end): counting begins with the first block
 *               executed there (the firmware before it is not the kernel's cost);
 *   main        the address of the application's main (or of any function): counting
 *               stops when a block starting there is about to run, and FILE is written
 *               at that moment (through FILE.tmp, renamed when complete); without it,
 *               counting goes on until QEMU exits, and FILE is written then (the
 *               per-packet counts of bench/net/instructions.py);
 *   out         where to write: "executed N" on the first line, then one line per
 *               translated block that ran, "ADDRESS INSTRUCTIONS EXECUTIONS" (hex, dec,
 *               dec); a block translated twice (say, in 32- and 64-bit mode) has two lines.
 *
 * Every block that runs counts all its instructions, since a block is entered at its top
 * and, before main, left at its end (the kernel takes no exception on its way to main).
 * With `-icount shift=0` QEMU's virtual clock, and so the TSC, the PIT and every timer
 * the guest reads, advances one nanosecond per instruction: a loop that waits for a time
 * then runs the same number of times in every run, on any host.
 *
 * Debian's QEMU supports plugins but ships neither its example plugins nor the header
 * (qemu-plugin.h); what follows declares the handful of functions used, as QEMU 7.2's
 * plugin API (version 1) defines them. The API is C and stable within a version: QEMU
 * refuses to load a plugin whose `qemu_plugin_version` it does not support. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The QEMU plugin API, version 1 (include/qemu/qemu-plugin.h in QEMU 7.2) ---- */
typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t; /* not read here */
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb, qemu_plugin_vcpu_udata_cb_t cb,
                                          enum qemu_plugin_cb_flags flags, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* ---- The counter ---- */

/* One translated block: where, how long, how often it ran before main. */
struct block {
    uint64_t address;
    uint64_t instructions;
    uint64_t executions;
    struct block *next;
};

static uint64_t kernel_start, kernel_end, main_address;
static int have_main;
static const char *out_path;
/* Translation and execution callbacks come from the vCPU threads; the counts are only
 * meant for one vCPU (a one-core boot), but the list and the flags are kept safe for
 * more. */
static struct block *blocks;
static int started, done;

/* Writes FILE.tmp, then renames it: a reader that sees FILE sees all of it. */
static void write_counts(void)
{
    char temporary[4096];
    snprintf(temporary, sizeof temporary, "%s.tmp", out_path);
    FILE *out = fopen(temporary, "w");
    if (!out) {
        perror(temporary);
        return;
    }
    uint64_t total = 0;
    for (struct block *block = blocks; block; block = block->next)
        total += block->instructions * block->executions;
    fprintf(out, "executed %llu\n", (unsigned long long)total);
    for (struct block *block = blocks; block; block = block->next)
        if (block->executions)
            fprintf(out, "%llx %llu %llu\n", (unsigned long long)block->address,
                    (unsigned long long)block->instructions,
                    (unsigned long long)block->executions);
    if (fclose(out) == 0)
        rename(temporary, out_path);
}

static void executed(unsigned int vcpu_index, void *userdata)
{
    struct block *block = userdata;
    (void)vcpu_index;
    if (__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        return;
    if (have_main && block->address == main_address) {
        if (!__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
            write_counts();
        return;
    }
    if (!__atomic_load_n(&started, __ATOMIC_ACQUIRE)) {
        if (block->address < kernel_start || block->address >= kernel_end)
            return;
        __atomic_store_n(&started, 1, __ATOMIC_RELEASE);
    }
    __atomic_add_fetch(&block->executions, 1, __ATOMIC_RELAXED);
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    if (__atomic_load_n(&done, __ATOMIC_ACQUIRE))
        return;
    struct block *block = calloc(1, sizeof *block);
    if (!block)
        abort();
    block->address = qemu_plugin_tb_vaddr(tb);
    block->instructions = qemu_plugin_tb_n_insns(tb);
    block->next = __atomic_load_n(&blocks, __ATOMIC_ACQUIRE);
    while (!__atomic_compare_exchange_n(&blocks, &block->next, block, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
    }
    qemu_plugin_register_vcpu_tb_exec_cb(tb, executed, QEMU_PLUGIN_CB_NO_REGS, block);
}

/* Without main=: the count at QEMU's exit. */
static void exited(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    if (!__atomic_exchange_n(&done, 1, __ATOMIC_ACQ_REL))
        write_counts();
}

static int parse(const char *argument, const char *key, uint64_t *value)
{
    size_t length = strlen(key);
    if (strncmp(argument, key, length) || argument[length] != '=')
        return 0;
    char *end;
    *value = strtoull(argument + length + 1, &end, 0);
    return *end == '\0';
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t *info,
                                                               int argc, char **argv)
{
    (void)info;
    int have = 0;
    for (int index = 0; index < argc; index++) {
        if (parse(argv[index], "start", &kernel_start) || parse(argv[index], "end", &kernel_end))
            have++;
        else if (parse(argv[index], "main", &main_address))
            have_main = 1;
        else if (!strncmp(argv[index], "out=", 4))
            out_path = argv[index] + 4;
        else {
            fprintf(stderr, "executed plugin: unknown argument %s\n", argv[index]);
            return -1;
        }
    }
    if (have != 2 || !out_path || kernel_start >= kernel_end) {
        fprintf(stderr, "executed plugin: needs start=, end= and out= (and main=, or none)\n");
        return -1;
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
    if (!have_main)
        qemu_plugin_register_atexit_cb(id, exited, NULL);
    return 0;
}
