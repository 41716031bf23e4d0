#define _GNU_SOURCE
#include "clauncher.h"
#include "child.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_pivot_root
#define SYS_pivot_root 155
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_execveat
#define SYS_execveat 322
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

struct l_open_how { uint64_t flags, mode, resolve; };
struct l_mount_attr { uint64_t attr_set, attr_clr, propagation, userns_fd; };
#define L_MOUNT_ATTR_RDONLY 0x1
#define L_MOUNT_ATTR_NOSUID 0x2
#define L_MOUNT_ATTR_NODEV 0x4
#define L_MOUNT_ATTR_NOEXEC 0x8
#define L_RESOLVE_NO_MAGICLINKS 0x02
#define L_RESOLVE_IN_ROOT 0x10

const char *strata_launch_step_name(int step) {
    static const char *const names[] = {
        "?", "waiting for the parent", "a cgroup namespace", "making mounts private", "setting the hostname",
        "binding the rootfs", "a volume or tmpfs mount", "mounting /proc", "setting up /dev", "mounting /sys",
        "mounting /etc/hostname, /etc/hosts or /etc/resolv.conf", "pivot_root", "masking /proc and /sys paths",
        "making the rootfs read-only", "bringing up lo", "setting capabilities", "setting supplementary groups",
        "setting uid and gid", "setting no_new_privs", "changing to the working directory", "setting up the terminal",
        "resetting signals", "exec", "starting the init process", "closing inherited fds",
        "making the process non-dumpable", "mounting the cgroup filesystem", "loading the seccomp filter",
        "joining the container's namespaces", "setting up stdin, stdout and stderr", "starting a new session",
        "setting resource limits (--ulimit)",
    };
    if (step < 0 || step >= (int)(sizeof names / sizeof names[0])) return "?";
    return names[step];
}


/* Opens `rel` inside the rootfs (RESOLVE_IN_ROOT) as O_PATH; returns "/proc/self/fd/N" in buf. */
static int open_in_root(int rootfd, const char *rel, char *buf, size_t n) {
    struct l_open_how how = { O_PATH | O_CLOEXEC, 0, L_RESOLVE_IN_ROOT | L_RESOLVE_NO_MAGICLINKS };
    while (*rel == '/') rel++;
    int fd = (int)syscall(SYS_openat2, rootfd, *rel ? rel : ".", &how, sizeof how);
    if (fd < 0) return -1;
    snprintf(buf, n, "/proc/self/fd/%d", fd);
    return fd;
}

static int mknod_dev(int dev, const char *name, mode_t mode, unsigned ma, unsigned mi) {
    if (mknodat(dev, name, mode, makedev(ma, mi)) != 0 && errno != EEXIST) return -1;
    return fchmodat(dev, name, mode & 07777, 0);
}

/* A --device node at dev/PATH: its directories made first, each opened without following
   anything (the tmpfs is new, but the path is the caller's). */
static int make_device(int dev, const struct strata_device *d) {
    char path[4096];
    snprintf(path, sizeof path, "%s", d->path);
    int dir = dup(dev);
    if (dir < 0) return -1;
    char *name = path, *slash;
    while ((slash = strchr(name, '/')) != NULL) {
        *slash = 0;
        if (*name) {
            if (mkdirat(dir, name, 0755) != 0 && errno != EEXIST) { close(dir); return -1; }
            int sub = openat(dir, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            close(dir);
            if (sub < 0) return -1;
            dir = sub;
        }
        name = slash + 1;
    }
    /* A new name only (strata checks it is none of its own /dev entries): then the chmod is of
       the node made here. Rootless, an empty file of that new name with the host's node bound
       over it. */
    int r;
    if (d->host) {
        int f = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        r = f < 0 ? -1 : 0;
        if (f >= 0) close(f);
        int target = r == 0 ? openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC) : -1;
        if (target >= 0) {
            char p[64];
            snprintf(p, sizeof p, "/proc/self/fd/%d", target);
            r = mount(d->host, p, NULL, MS_BIND, NULL);
            close(target);
        } else {
            r = -1;
        }
    } else {
        r = mknodat(dir, name, d->mode, makedev(d->major, d->minor));
        if (r == 0) r = fchmodat(dir, name, d->mode & 07777, 0);
    }
    close(dir);
    return r;
}

/* Rootless: an empty file at dev/NAME with the host's /dev/NAME bound over it. */
static int bind_dev(int rootfd, int dev, const char *name) {
    int f = openat(dev, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (f < 0) return -1;
    close(f);
    char rel[64], p[64], host[64];
    snprintf(rel, sizeof rel, "dev/%s", name);
    snprintf(host, sizeof host, "/dev/%s", name);
    int at = open_in_root(rootfd, rel, p, sizeof p);
    if (at < 0) return -1;
    int r = mount(host, p, NULL, MS_BIND, NULL);
    close(at);
    return r;
}

/* Mounts the tmpfs at <rootfs>/dev (resolved inside the root) and fills it through an fd of
   the new tmpfs, so nothing the image put at /dev is followed. */
static int setup_dev(int rootfd, uint64_t shm_size, const struct strata_device *devices, int ndevices, int rootless) {
    char buf[64];
    int at = open_in_root(rootfd, "dev", buf, sizeof buf);
    if (at < 0) return -1;
    int r = mount("tmpfs", buf, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
    close(at);
    if (r != 0) return -1;
    int dev = open_in_root(rootfd, "dev", buf, sizeof buf);
    if (dev < 0) return -1;
    if (rootless) {
        const char *names[] = { "null", "zero", "full", "random", "urandom", "tty" };
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (bind_dev(rootfd, dev, names[i]) != 0) goto fail;
    } else if (mknod_dev(dev, "null", S_IFCHR | 0666, 1, 3) || mknod_dev(dev, "zero", S_IFCHR | 0666, 1, 5) ||
               mknod_dev(dev, "full", S_IFCHR | 0666, 1, 7) || mknod_dev(dev, "random", S_IFCHR | 0666, 1, 8) ||
               mknod_dev(dev, "urandom", S_IFCHR | 0666, 1, 9) || mknod_dev(dev, "tty", S_IFCHR | 0666, 5, 0)) {
        goto fail;
    }
    mkdirat(dev, "pts", 0755);
    mkdirat(dev, "shm", 01777);
    mkdirat(dev, "mqueue", 0755);
    const char *links[][2] = { { "pts/ptmx", "ptmx" }, { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
                               { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" } };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (symlinkat(links[i][0], dev, links[i][1]) != 0 && errno != EEXIST) goto fail;
    }
    for (int i = 0; i < ndevices; i++) {
        if (make_device(dev, &devices[i]) != 0) goto fail;
    }
    close(dev);
    char p[64];
    int sub = open_in_root(rootfd, "dev/pts", p, sizeof p);
    if (sub < 0) return -1;
    r = mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    close(sub);
    if (r != 0) return -1;
    sub = open_in_root(rootfd, "dev/shm", p, sizeof p);
    if (sub < 0) return -1;
    char shm_options[64];
    snprintf(shm_options, sizeof shm_options, "mode=1777,size=%llu", (unsigned long long)(shm_size ? shm_size : 64ull << 20));
    r = mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, shm_options);
    close(sub);
    if (r != 0) return -1;
    /* POSIX message queues of the container's own ipc namespace (the one this process is in). */
    sub = open_in_root(rootfd, "dev/mqueue", p, sizeof p);
    if (sub < 0) return -1;
    r = mount("mqueue", p, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    close(sub);
    return r;
fail:
    close(dev);
    return -1;
}

/* Mounts sysfs at <rootfs>/sys and, on a tmpfs at /sys/fs/cgroup, the container's own cgroup
   hierarchies (the cgroup namespace makes its cgroup their root). Unless privileged, the whole
   tree is then made read-only, nosuid, nodev and noexec in one recursive mount_setattr: no
   submount is left writable. */
static int setup_sys(const struct strata_launch *cfg, int rootfd, int err_fd) {
    char buf[64], p[64];
    unsigned long ro = cfg->privileged ? 0 : MS_RDONLY;
    int at = open_in_root(rootfd, "sys", buf, sizeof buf);
    if (at < 0) child_fail(err_fd, ST_SYS);
    if (mount("sysfs", buf, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | ro, NULL) != 0) {
        /* Rootless with the host's network: sysfs belongs to the network namespace's owner.
           The host's /sys is bound instead (made read-only below; its cgroup tree covered). */
        if (!(cfg->rootless && errno == EPERM) || mount("/sys", buf, NULL, MS_BIND | MS_REC, NULL) != 0) child_fail(err_fd, ST_SYS);
        close(at);
        if (cfg->ncgroup_mounts == 0) {
            at = open_in_root(rootfd, "sys/fs/cgroup", buf, sizeof buf);
            if (at < 0 || mount("tmpfs", buf, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "mode=555,size=4k") != 0)
                child_fail(err_fd, ST_CGROUPFS);
        }
    }
    close(at);
    if (cfg->ncgroup_mounts == 1 && cfg->cgroup_mounts[0].name == NULL) {
        /* cgroup v2: the unified hierarchy at /sys/fs/cgroup itself */
        at = open_in_root(rootfd, "sys/fs/cgroup", buf, sizeof buf);
        if (at < 0) child_fail(err_fd, ST_CGROUPFS);
        if (mount("cgroup2", buf, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) child_fail(err_fd, ST_CGROUPFS);
        close(at);
    } else if (cfg->ncgroup_mounts > 0) {
        at = open_in_root(rootfd, "sys/fs/cgroup", buf, sizeof buf);
        if (at < 0) child_fail(err_fd, ST_CGROUPFS);
        if (mount("tmpfs", buf, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755,size=64k") != 0) child_fail(err_fd, ST_CGROUPFS);
        close(at);
        int dir = open_in_root(rootfd, "sys/fs/cgroup", buf, sizeof buf);
        if (dir < 0) child_fail(err_fd, ST_CGROUPFS);
        for (int i = 0; i < cfg->ncgroup_mounts; i++) {
            const struct strata_cgroup_mount *m = &cfg->cgroup_mounts[i];
            if (mkdirat(dir, m->name, 0555) != 0 && errno != EEXIST) child_fail(err_fd, ST_CGROUPFS);
            int target = openat(dir, m->name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (target < 0) child_fail(err_fd, ST_CGROUPFS);
            snprintf(p, sizeof p, "/proc/self/fd/%d", target);
            if (mount("cgroup", p, m->fstype, MS_NOSUID | MS_NODEV | MS_NOEXEC, m->data) != 0) child_fail(err_fd, ST_CGROUPFS);
            close(target);
        }
        close(dir);
    }
    if (!cfg->privileged) {
        int sys = open_in_root(rootfd, "sys", buf, sizeof buf);
        if (sys < 0) child_fail(err_fd, ST_SYS);
        struct l_mount_attr attr = { L_MOUNT_ATTR_RDONLY | L_MOUNT_ATTR_NOSUID | L_MOUNT_ATTR_NODEV | L_MOUNT_ATTR_NOEXEC, 0, 0, 0 };
        if (syscall(SYS_mount_setattr, sys, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0) child_fail(err_fd, ST_SYS);
        close(sys);
    }
    return 0;
}



static int lo_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) != 0) { close(s); return -1; }
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    int r = ioctl(s, SIOCSIFFLAGS, &ifr);
    close(s);
    return r;
}



/* Writes a sysctl of this process's network namespace; one the kernel lacks is left alone. */
static void write_sysctl(const char *path, const char *value) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    if (write(fd, value, strlen(value)) < 0) { /* a kernel without it: nothing to turn off */ }
    close(fd);
}

int strata_make_netns(const char *path) {
    pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid < 0) return -1;
    if (pid == 0) {
        /* child: syscalls only */
        if (unshare(CLONE_NEWNET) != 0) _exit(errno & 0x7f);
        if (lo_up() != 0) _exit(errno & 0x7f);
        /* IPv4 networks only: no interface made here later (eth0, tap0) takes IPv6 (Router
           Advertisements, v4-mapped sources); lo keeps ::1. Unprivileged ICMP echo sockets for
           every group, so that ping works without CAP_NET_RAW (podman sets the same). */
        write_sysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
        write_sysctl("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
        if (mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) != 0) _exit(errno & 0x7f);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    errno = WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
    return -1;
}

pid_t strata_launch(const struct strata_launch *cfg, int go_fd, int err_fd) {
    int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
    if (cfg->new_net) flags |= CLONE_NEWNET;
    pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
    if (pid != 0) return pid;

    /* --- child: pid 1 of the new pid namespace; syscalls only from here on --- */
    char buf[4096];
    char c;
    /* First: nothing in the container may read this process's memory or fds, and it holds no
       fd of strata's (store, database, locks) beyond the few it is handed. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) child_fail(err_fd, ST_DUMPABLE);
    int keep[8] = { go_fd, err_fd, cfg->console_socket, cfg->init_fd, cfg->stdio[0], cfg->stdio[1], cfg->stdio[2], cfg->net_fd };
    child_sort_fds(keep, 8);
    if (child_close_others(keep, 8) != 0) child_fail(err_fd, ST_FDS);
    /* The network made for it (before sysfs is mounted: /sys/class/net is the namespace's). */
    if (cfg->net_fd >= 0) {
        if (setns(cfg->net_fd, CLONE_NEWNET) != 0) child_fail(err_fd, ST_SETNS);
        close(cfg->net_fd);
    }
    /* strata's own stdin, stdout and stderr (maybe the caller's terminal) are replaced now, and
       without a terminal of its own the process leaves strata's session: the caller's terminal
       is never its controlling terminal (TIOCSTI). With one, child_console makes the session. */
    child_stdio(cfg->stdio, err_fd);
    if (cfg->console_socket < 0 && setsid() < 0) child_fail(err_fd, ST_SESSION);
    if (read(go_fd, &c, 1) != 1) child_fail(err_fd, ST_SYNC);
    close(go_fd);
    /* The parent has put us in our cgroups: now they become our cgroup root. */
    if (unshare(CLONE_NEWCGROUP) != 0) child_fail(err_fd, ST_CGROUPNS);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) child_fail(err_fd, ST_PRIVATE);
    if (sethostname(cfg->hostname, strlen(cfg->hostname)) != 0) child_fail(err_fd, ST_HOSTNAME);
    if (mount(cfg->rootfs, cfg->rootfs, NULL, MS_BIND | MS_REC, NULL) != 0) child_fail(err_fd, ST_BINDROOT);
    int rootfd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) child_fail(err_fd, ST_BINDROOT);

    /* /proc, /dev, /sys: each target resolved inside the rootfs, never through the image's symlinks */
    mkdirat(rootfd, "proc", 0555);
    mkdirat(rootfd, "dev", 0755);
    mkdirat(rootfd, "sys", 0555);
    int at = open_in_root(rootfd, "proc", buf, sizeof buf);
    if (at < 0 || mount("proc", buf, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) child_fail(err_fd, ST_PROC);
    close(at);
    if (setup_dev(rootfd, cfg->shm_size, cfg->devices, cfg->ndevices, cfg->rootless) != 0) child_fail(err_fd, ST_DEV);
    setup_sys(cfg, rootfd, err_fd);

    /* /etc/hostname, /etc/hosts, /etc/resolv.conf from the container's folder, then volumes and
       tmpfs: each resolved inside the rootfs */
    for (int i = 0; i < cfg->nmounts; i++) {
        const struct strata_mount *m = &cfg->mounts[i];
        int fd = open_in_root(rootfd, m->target, buf, sizeof buf);
        if (fd < 0) child_fail(err_fd, ST_MOUNTS);
        if (m->tmpfs) {
            unsigned long fl = MS_NOSUID | MS_NODEV | (m->readonly ? MS_RDONLY : 0);
            if (mount("tmpfs", buf, "tmpfs", fl, m->data ? m->data : "mode=1777") != 0) child_fail(err_fd, ST_MOUNTS);
        } else {
            if (mount(m->source, buf, NULL, MS_BIND | MS_REC, NULL) != 0) child_fail(err_fd, ST_MOUNTS);
            if (m->readonly) {
                close(fd);
                fd = open_in_root(rootfd, m->target, buf, sizeof buf);
                struct l_mount_attr attr = { L_MOUNT_ATTR_RDONLY, 0, 0, 0 };
                if (fd < 0 || syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
                    child_fail(err_fd, ST_MOUNTS);
            }
        }
        close(fd);
    }
    close(rootfd);

    /* pivot_root into the rootfs; the old root is detached at once */
    if (chdir(cfg->rootfs) != 0) child_fail(err_fd, ST_PIVOT);
    if (syscall(SYS_pivot_root, ".", ".") != 0) child_fail(err_fd, ST_PIVOT);
    if (umount2(".", MNT_DETACH) != 0) child_fail(err_fd, ST_PIVOT);
    if (chdir("/") != 0) child_fail(err_fd, ST_PIVOT);

    /* masked and read-only paths in /proc and /sys, as runc does (not with --privileged) */
    for (int i = 0; i < cfg->nmasked; i++) {
        struct stat st;
        if (lstat(cfg->masked_paths[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (mount("tmpfs", cfg->masked_paths[i], "tmpfs", MS_RDONLY, NULL) != 0) child_fail(err_fd, ST_MASK);
        } else if (mount("/dev/null", cfg->masked_paths[i], NULL, MS_BIND, NULL) != 0) child_fail(err_fd, ST_MASK);
    }
    for (int i = 0; i < cfg->nreadonly; i++) {
        struct stat st;
        if (lstat(cfg->readonly_paths[i], &st) != 0) continue;
        if (mount(cfg->readonly_paths[i], cfg->readonly_paths[i], NULL, MS_BIND | MS_REC, NULL) != 0 ||
            mount(NULL, cfg->readonly_paths[i], NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) child_fail(err_fd, ST_MASK);
    }
    if (cfg->readonly_rootfs && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) child_fail(err_fd, ST_READONLY);
    if (cfg->new_net && lo_up() != 0) child_fail(err_fd, ST_LO);

    /* terminal: a pty of the container's own devpts, so ttyname() finds it in /dev/pts */
    if (cfg->console_socket >= 0) child_console(cfg->console_socket, err_fd);

    struct child_identity id = {
        cfg->uid, cfg->gid, cfg->groups, cfg->ngroups, cfg->capabilities, cfg->cwd,
        cfg->seccomp_filter, cfg->seccomp_len, cfg->path, cfg->argv, cfg->envp, cfg->init_fd, cfg->init_argv, cfg->no_new_privs, cfg->rlimits, cfg->nrlimits,
    };
    child_become(&id, err_fd);
    return -1;
}


int strata_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int strata_recv_fd(int sock) {
    char data;
    struct iovec iov = { &data, 1 };
    char control[CMSG_SPACE(sizeof(int))];
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do { n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC); } while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm == NULL || cm->cmsg_type != SCM_RIGHTS) return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(cm), sizeof(int));
    return fd;
}

int strata_socketpair(int fds[2]) { return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds); }
