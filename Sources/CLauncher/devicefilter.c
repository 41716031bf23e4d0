/*
 * The cgroup v2 device allowlist: a BPF_PROG_TYPE_CGROUP_DEVICE program, written out
 * instruction by instruction, loaded with bpf(BPF_PROG_LOAD) and attached to a container's
 * cgroup with bpf(BPF_PROG_ATTACH).
 *
 * The kernel runs it on every mknod and every open of a device node by a process of the cgroup
 * (or of one below it), with a struct bpf_cgroup_dev_ctx in r1:
 *
 *     u32 access_type   (access << 16) | type     type: BPF_DEVCG_DEV_BLOCK 1, _CHAR 2
 *                                                  access: BPF_DEVCG_ACC_MKNOD 1, _READ 2, _WRITE 4
 *     u32 major
 *     u32 minor
 *
 * and allows the access when it returns 1. The program is
 *
 *     r2 = type; r3 = access; r4 = major; r5 = minor
 *     for each rule: if it matches, return 1       (a block that jumps to the next on a mismatch)
 *     return 0
 *
 * An access matches a rule when every bit it asks for is among the rule's (an open for reading
 * and writing needs both r and w in one rule, as with the v1 devices.allow files).
 */
#define _GNU_SOURCE
#include "devicefilter.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

/* Instructions of one rule at most: type, three for the access, major, minor, two to return. */
enum { PER_RULE = 8, PROLOGUE = 6, EPILOGUE = 2 };

size_t strata_devicefilter_max_insns(size_t nrules) { return PROLOGUE + PER_RULE * nrules + EPILOGUE; }

struct emitter {
    struct bpf_insn *out;
    size_t cap, n;
    int overflow;
};

static void emit(struct emitter *e, struct bpf_insn insn) {
    if (e->n < e->cap) e->out[e->n] = insn;
    else e->overflow = 1;
    e->n++;
}

static int build(const struct strata_device_rule *rules, size_t nrules, struct bpf_insn *out, size_t cap, size_t *count) {
    struct emitter e = { out, cap, 0, 0 };
    /* r2 = access_type & 0xffff; r3 = access_type >> 16; r4 = major; r5 = minor */
    emit(&e, INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_2, BPF_REG_1, 0, 0));
    emit(&e, INSN(BPF_ALU | BPF_AND | BPF_K, BPF_REG_2, 0, 0, 0xffff));
    emit(&e, INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_3, BPF_REG_1, 0, 0));
    emit(&e, INSN(BPF_ALU | BPF_RSH | BPF_K, BPF_REG_3, 0, 0, 16));
    emit(&e, INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_4, BPF_REG_1, 4, 0));
    emit(&e, INSN(BPF_LDX | BPF_MEM | BPF_W, BPF_REG_5, BPF_REG_1, 8, 0));

    for (size_t i = 0; i < nrules; i++) {
        const struct strata_device_rule *r = &rules[i];
        const uint32_t all = STRATA_DEV_MKNOD | STRATA_DEV_READ | STRATA_DEV_WRITE;
        int type;
        switch (r->type) {
        case 'a': type = 0; break;
        case 'c': type = BPF_DEVCG_DEV_CHAR; break;
        case 'b': type = BPF_DEVCG_DEV_BLOCK; break;
        default: return EINVAL;
        }
        /* Numbers go into a signed 32-bit immediate that the kernel compares with a zero-extended
           u32: above 2^31-1 they would never match (Linux majors have 12 bits, minors 20). */
        if (r->major < -1 || r->major > INT32_MAX || r->minor < -1 || r->minor > INT32_MAX) return EINVAL;
        if (r->access == 0 || (r->access & ~all) != 0) return EINVAL;

        /* The jumps of this block go to the first instruction after it: their offsets are
           patched once its length is known. */
        size_t jumps[4];
        int njumps = 0;
        if (type != 0) {
            jumps[njumps++] = e.n;
            emit(&e, INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_2, 0, 0, type));
        }
        if (r->access != all) {
            /* if ((access & rule) != access) next */
            emit(&e, INSN(BPF_ALU | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_3, 0, 0));
            emit(&e, INSN(BPF_ALU | BPF_AND | BPF_K, BPF_REG_1, 0, 0, (int32_t)r->access));
            jumps[njumps++] = e.n;
            emit(&e, INSN(BPF_JMP | BPF_JNE | BPF_X, BPF_REG_1, BPF_REG_3, 0, 0));
        }
        if (r->major >= 0) {
            jumps[njumps++] = e.n;
            emit(&e, INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_4, 0, 0, (int32_t)r->major));
        }
        if (r->minor >= 0) {
            jumps[njumps++] = e.n;
            emit(&e, INSN(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_5, 0, 0, (int32_t)r->minor));
        }
        emit(&e, INSN(BPF_ALU | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1));
        emit(&e, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
        for (int j = 0; j < njumps; j++)
            if (jumps[j] < e.cap) e.out[jumps[j]].off = (int16_t)(e.n - jumps[j] - 1);
    }
    /* Nothing matched: deny. */
    emit(&e, INSN(BPF_ALU | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0));
    emit(&e, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));
    *count = e.n;
    /* A jump offset is 16 bits: far more than any allowlist needs. */
    if (e.n > 4096) return E2BIG;
    return e.overflow ? ENOSPC : 0;
}

int strata_devicefilter_build(const struct strata_device_rule *rules, size_t nrules,
                              uint64_t *out, size_t cap, size_t *count) {
    _Static_assert(sizeof(struct bpf_insn) == sizeof(uint64_t), "a BPF instruction is 8 bytes");
    return build(rules, nrules, (struct bpf_insn *)out, cap, count);
}

static long bpf(int cmd, union bpf_attr *attr) { return syscall(SYS_bpf, cmd, attr, sizeof *attr); }

int strata_devicefilter_load(const struct strata_device_rule *rules, size_t nrules, int *prog_fd,
                             char *log, size_t logsize) {
    if (logsize > 0) log[0] = 0;
    struct bpf_insn insns[PROLOGUE + EPILOGUE + PER_RULE * 64];
    if (nrules > 64) return E2BIG;
    size_t n = 0;
    int rc = build(rules, nrules, insns, sizeof insns / sizeof insns[0], &n);
    if (rc != 0) return rc;

    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = (uint32_t)n;
    /* The program calls no helper, so no GPL-only one: any license string loads (runc: "Apache"). */
    attr.license = (uint64_t)(uintptr_t)"Apache-2.0";
    int fd = (int)bpf(BPF_PROG_LOAD, &attr);
    if (fd < 0 && (errno == EINVAL || errno == EACCES) && logsize > 1) {
        /* Again with the verifier's log, to say why. */
        int saved = errno;
        attr.log_level = 1;
        attr.log_buf = (uint64_t)(uintptr_t)log;
        attr.log_size = (uint32_t)(logsize > UINT32_MAX ? UINT32_MAX : logsize);
        fd = (int)bpf(BPF_PROG_LOAD, &attr);
        if (fd >= 0) { close(fd); fd = -1; }
        log[logsize - 1] = 0;
        errno = saved;
    }
    if (fd < 0) return errno;
    /* The kernel makes BPF fds close-on-exec. */
    *prog_fd = fd;
    return 0;
}

int strata_devicefilter_attach(int cgroup_fd, int prog_fd) {
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    return bpf(BPF_PROG_ATTACH, &attr) == 0 ? 0 : errno;
}
