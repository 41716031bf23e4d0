#ifndef CLAUNCHER_H
#define CLAUNCHER_H

#include <stdint.h>
#include <sys/types.h>

/// A mount to make inside the container, before pivot_root (the /etc files and the volumes, in
/// the runtime spec's order). `target` is relative to the rootfs
/// and already exists (created by the parent); it is opened with RESOLVE_IN_ROOT, so no symlink
/// in the image can send it outside.
struct strata_mount {
    const char *source;   /* host path for binds, NULL for tmpfs */
    const char *target;   /* inside the rootfs */
    int readonly;
    int tmpfs;
    const char *data;     /* a tmpfs's options (mode=, size=) */
};

/// A device node made in the container's /dev (`--device`): `path` below /dev (subdirectories
/// are made), S_IFCHR or S_IFBLK with the permission bits in `mode`, owned by root.
struct strata_device {
    const char *path;     /* relative to /dev, e.g. "fuse" or "net/tun" */
    const char *host;     /* rootless: the host's node, bound onto an empty file at path; else NULL */
    unsigned mode;
    unsigned major, minor;
};

/// A cgroup hierarchy to show inside the container at /sys/fs/cgroup/NAME (v1) or at
/// /sys/fs/cgroup itself (v2: name NULL). Mounted in the container's cgroup namespace, so the
/// container's own cgroup is the root of what it sees; read-only unless privileged.
struct strata_cgroup_mount {
    const char *name;     /* directory under /sys/fs/cgroup, or NULL for the v2 hierarchy */
    const char *fstype;   /* "cgroup" or "cgroup2" */
    const char *data;     /* v1: the hierarchy's controllers, e.g. "cpu,cpuacct"; v2: NULL */
};

struct strata_launch {
    const char *rootfs;          /* absolute path of the merged rootfs */
    const char *path;            /* absolute path of the program inside the rootfs */
    char *const *argv;
    char *const *envp;
    const char *cwd;
    const char *hostname;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int ngroups;
    int new_net;                 /* new network namespace (lo up) */
    int net_fd;                  /* a network namespace to join (a bridge network's, made and set up
                                    by strata; another container's); -1: none. new_net is then 0 */
    int readonly_rootfs;
    int init_fd;                 /* with --init: a sealed memfd holding strata-init, exec'd as pid 1
                                    with `path` and `argv` as its arguments; else -1 */
    int privileged;              /* keep /sys and the cgroup view writable, mask nothing */
    int console_socket;          /* with a terminal: the child opens a pty in its own devpts and sends
                                    the master over this unix socket (SCM_RIGHTS); else -1 */
    uint64_t capabilities;       /* bits of the capability set to keep */
    const struct strata_mount *mounts;
    int nmounts;
    const char *const *masked_paths;
    int nmasked;
    const char *const *readonly_paths;
    int nreadonly;
    const struct strata_cgroup_mount *cgroup_mounts;
    int ncgroup_mounts;
    const void *seccomp_filter;  /* struct sock_filter[seccomp_len], loaded last before exec; NULL for none */
    int seccomp_len;
    int no_new_privs;            /* set PR_SET_NO_NEW_PRIVS (--security-opt no-new-privileges); without it
                                    setuid programs work and the filter is loaded before the uid change */
    const struct strata_rlimit *rlimits;  /* set before the ids change (raising a hard limit needs
                                             CAP_SYS_RESOURCE); nrlimits of them */
    int nrlimits;
    uint64_t shm_size;           /* bytes of the /dev/shm tmpfs; 0 for 64 MiB */
    const struct strata_device *devices;  /* --device: nodes made in the container's /dev */
    int ndevices;
    char *const *init_argv;      /* with init_fd: "strata-init", path, argv... */
    int stdio[3];                /* without a terminal: the fds that become 0, 1 and 2 (pipes strata or the
                                    monitor copies out, /dev/null); never strata's own. All >= 3. */
    int rootless;                /* in a user namespace (docs/rootless.md): /dev's nodes are bound from the
                                    host's (a user namespace cannot make devices), and /sys is the host's,
                                    bound read-only, where sysfs cannot be mounted (the host's network) */
};

/// A resource limit for the container's process (`--ulimit`): RLIMIT_* number, soft, hard.
struct strata_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

/// The steps a child reports a failure at (with errno) before exec.
enum {
    ST_SYNC = 1, ST_CGROUPNS, ST_PRIVATE, ST_HOSTNAME, ST_BINDROOT, ST_MOUNTS, ST_PROC, ST_DEV, ST_SYS,
    ST_FILES, ST_PIVOT, ST_MASK, ST_READONLY, ST_LO, ST_CAPS, ST_GROUPS, ST_UID, ST_NNP, ST_CWD, ST_TTY,
    ST_SIGNALS, ST_EXEC, ST_INIT, ST_FDS, ST_DUMPABLE, ST_CGROUPFS, ST_SECCOMP, ST_SETNS, ST_STDIO, ST_SESSION,
    ST_RLIMIT
};

/// What a step number means, for messages.
const char *strata_launch_step_name(int step);

/// Clones a child into new pid, mount, uts, ipc, cgroup (and net) namespaces. The child makes
/// itself non-dumpable and closes every fd but 0-2 and the ones it is given before anything
/// else, waits on `go_fd` (the parent joins it to its cgroups first), then sets up the rootfs,
/// pivots, drops privileges, loads the seccomp filter and execs. It reports a failure before
/// exec as "stage errno" on `err_fd` (close-on-exec: EOF means the exec happened). Nothing is
/// allocated after the clone.
/// Returns the child's pid (in the parent's namespace) or -1 with errno.
pid_t strata_launch(const struct strata_launch *cfg, int go_fd, int err_fd);

/// Makes a network namespace with lo up and binds it onto `path` (an empty file that exists),
/// where it outlives every process: the bridge networks are set up in it before the container's
/// process starts and torn down after it ends. A forked child makes it; this process's own
/// namespaces do not change. Returns 0, or -1 with errno.
int strata_make_netns(const char *path);

/// A process to run inside a running container (`exec`).
struct strata_exec {
    pid_t target;                /* the container's pid 1, as the host sees it */
    unsigned long long target_start;  /* its start time (field 22 of /proc/PID/stat) as recorded when it
                                    started; the namespaces are joined only if the process at `target`
                                    still has it (a pid used again is never entered). 0: not checked */
    const char *path;            /* absolute path of the program inside the container */
    char *const *argv;
    char *const *envp;
    const char *cwd;
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    int ngroups;
    uint64_t capabilities;
    const void *seccomp_filter;  /* as in strata_launch */
    int seccomp_len;
    int no_new_privs;            /* as in strata_launch */
    const struct strata_rlimit *rlimits;  /* as in strata_launch */
    int nrlimits;
    int console_socket;          /* as in strata_launch: a pty from the container's devpts; else -1 */
    int stdio[3];                /* as in strata_launch */
};

/// Clones a child that, once `go_fd` says so (the parent has put it into the container's
/// cgroups), joins every namespace of `target` (ipc, uts, net, cgroup, pid, mnt), becomes the
/// user with the capabilities, no_new_privs and seccomp filter given (as the container's first
/// process did), and only then forks the command into the container's pid namespace: nothing
/// that enters the container holds more than the container's privileges. It exits as the
/// command does (128+N for signal N). Failures before exec are reported on `err_fd` as with
/// strata_launch. Returns the child's pid or -1 with errno.
pid_t strata_exec(const struct strata_exec *cfg, int go_fd, int err_fd);

/// What strata copies while a container process without a terminal runs in the foreground:
/// its own stdin into the process's stdin pipe (with -i), the process's stdout and stderr pipes
/// out to its own. Uses splice where both ends allow it.
struct strata_stdio_pump {
    int in_src, in_dst;          /* strata's stdin -> the process's stdin pipe; -1, -1 without -i */
    int out_src, out_dst;        /* the process's stdout pipe -> strata's stdout */
    int err_src, err_dst;        /* the process's stderr pipe -> strata's stderr */
    pid_t pid;                   /* copies until this child has ended, then drains what is buffered */
};

/// Runs the pump; closes in_dst, out_src and err_src. A destination that is gone (EPIPE) closes
/// its source, so the process sees a broken pipe as it would outside. SIGPIPE is ignored in
/// strata from here on (a container's process gets default dispositions at exec).
void strata_stdio_pump(const struct strata_stdio_pump *pump);

/// fcntl(fd, F_DUPFD_CLOEXEC, 3) and close(fd) when fd < 3; else fd.
int strata_fd_above_stdio(int fd);

/// pipe2(fds, O_CLOEXEC).
int strata_pipe_cloexec(int fds[2]);

/// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC).
int strata_socketpair(int fds[2]);

/// Receives one fd sent with SCM_RIGHTS on a unix socket; -1 on EOF or error.
int strata_recv_fd(int sock);

/// The signal relay (relay.c): SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are caught
/// from `install` on and sent to the target once `strata_relay_to` names it; before that the
/// first is kept (`pending`) and a second one is fatal. SIGWINCH resizes the pty master.
void strata_relay_install(void);
/// The first relayed signal that came before a target; 0 for none.
int strata_relay_pending(void);
/// The last signal passed on to a target since the previous call (0: none), and forgets it.
int strata_relay_take_passed(void);
/// Names the process signals go to (and the pty master, or -1), passing on what is pending.
void strata_relay_to(pid_t pid, int master);
/// Back to the default actions; nothing pending.
void strata_relay_uninstall(void);


#endif
