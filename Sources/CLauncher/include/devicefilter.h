#ifndef STRATA_DEVICEFILTER_H
#define STRATA_DEVICEFILTER_H

#include <stddef.h>
#include <stdint.h>

/// The device allowlist of a cgroup v2 container: a BPF_PROG_TYPE_CGROUP_DEVICE program that
/// allows what one of the rules allows and denies everything else. (cgroup v1 has devices.allow
/// and devices.deny files for the same rules.)

/// Access bits, as the kernel's BPF_DEVCG_ACC_* values.
#define STRATA_DEV_MKNOD 1u
#define STRATA_DEV_READ  2u
#define STRATA_DEV_WRITE 4u

/// One rule: device type 'a' (any), 'c' or 'b'; major and minor, -1 for any; the access bits.
struct strata_device_rule {
    char type;
    int64_t major;
    int64_t minor;
    uint32_t access;
};

/// The number of 8-byte BPF instructions at most in a program of `nrules` rules.
size_t strata_devicefilter_max_insns(size_t nrules);

/// Writes the program into `out` (room for `cap` instructions of 8 bytes) and its length into
/// `*count`. 0, or EINVAL for a rule it cannot express (a type other than a/c/b, a number above
/// 2^31-1, no access bit), ENOSPC when `cap` is too small.
int strata_devicefilter_build(const struct strata_device_rule *rules, size_t nrules,
                              uint64_t *out, size_t cap, size_t *count);

/// Builds and loads the program (BPF_PROG_LOAD); 0 with its fd (close-on-exec) in `*prog_fd`,
/// else the errno. On a refusal by the verifier, its first words go to `log` (`logsize` bytes,
/// may be 0).
int strata_devicefilter_load(const struct strata_device_rule *rules, size_t nrules, int *prog_fd,
                             char *log, size_t logsize);

/// Attaches a loaded program to the cgroup directory open at `cgroup_fd` (BPF_PROG_ATTACH,
/// BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI: every program up the tree must allow an access).
/// The attachment holds the program: its fd may be closed afterwards. 0 or the errno.
int strata_devicefilter_attach(int cgroup_fd, int prog_fd);

#endif
