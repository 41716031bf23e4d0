#define _GNU_SOURCE
#include "clauncher.h"

#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
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
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

struct l_open_how { uint64_t flags, mode, resolve; };
#define L_RESOLVE_NO_MAGICLINKS 0x02
#define L_RESOLVE_IN_ROOT 0x10

const char *strata_launch_step_name(int step) {
    static const char *const names[] = {
        "?", "waiting for the parent", "a cgroup namespace", "making mounts private", "setting the hostname",
        "binding the rootfs", "a volume or tmpfs mount", "mounting /proc", "setting up /dev", "mounting /sys",
        "mounting /etc/hostname, /etc/hosts or /etc/resolv.conf", "pivot_root", "masking /proc and /sys paths",
        "making the rootfs read-only", "bringing up lo", "setting capabilities", "setting supplementary groups",
        "setting uid and gid", "setting no_new_privs", "changing to the working directory", "setting up the terminal",
        "resetting signals", "exec", "starting the init process",
    };
    if (step < 0 || step >= (int)(sizeof names / sizeof names[0])) return "?";
    return names[step];
}

static void fail(int err_fd, int stage) {
    int msg[2] = { stage, errno };
    ssize_t r = write(err_fd, msg, sizeof msg);
    (void)r;
    _exit(125);
}

/* Builds "<rootfs>/<rel>" into buf (no allocation). */
static const char *join(char *buf, size_t n, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la + 1 + lb + 1 > n) { errno = ENAMETOOLONG; return NULL; }
    memcpy(buf, a, la);
    buf[la] = '/';
    memcpy(buf + la + 1, b, lb + 1);
    return buf;
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

static int mknod_dev(const char *dev, const char *name, mode_t mode, unsigned ma, unsigned mi) {
    char p[4096];
    if (!join(p, sizeof p, dev, name)) return -1;
    if (mknod(p, mode, makedev(ma, mi)) != 0 && errno != EEXIST) return -1;
    return chmod(p, mode & 07777);
}

static int setup_dev(const char *rootfs) {
    char dev[4096], p[4096];
    if (!join(dev, sizeof dev, rootfs, "dev")) return -1;
    mkdir(dev, 0755);
    if (mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") != 0) return -1;
    if (mknod_dev(dev, "null", S_IFCHR | 0666, 1, 3) || mknod_dev(dev, "zero", S_IFCHR | 0666, 1, 5) ||
        mknod_dev(dev, "full", S_IFCHR | 0666, 1, 7) || mknod_dev(dev, "random", S_IFCHR | 0666, 1, 8) ||
        mknod_dev(dev, "urandom", S_IFCHR | 0666, 1, 9) || mknod_dev(dev, "tty", S_IFCHR | 0666, 5, 0))
        return -1;
    if (!join(p, sizeof p, dev, "pts")) return -1;
    mkdir(p, 0755);
    if (mount("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") != 0) return -1;
    if (!join(p, sizeof p, dev, "shm")) return -1;
    mkdir(p, 01777);
    if (mount("shm", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") != 0) return -1;
    if (!join(p, sizeof p, dev, "mqueue")) return -1;
    mkdir(p, 0755);
    const char *links[][2] = { { "pts/ptmx", "ptmx" }, { "/proc/self/fd", "fd" }, { "/proc/self/fd/0", "stdin" },
                               { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" } };
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        if (!join(p, sizeof p, dev, links[i][1])) return -1;
        if (symlink(links[i][0], p) != 0 && errno != EEXIST) return -1;
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

/* Drops from the bounding set what is not kept (needs CAP_SETPCAP: before changing uid). */
static int drop_bounding(uint64_t keep) {
    for (int c = 0; c <= 63; c++) {
        if (keep & (1ULL << c)) continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    }
    return 0;
}

/* Sets the effective, permitted and inheritable sets (after the uid change). */
static int set_caps(uint64_t keep) {
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    d[0].effective = d[0].permitted = d[0].inheritable = (uint32_t)keep;
    d[1].effective = d[1].permitted = d[1].inheritable = (uint32_t)(keep >> 32);
    return (int)syscall(SYS_capset, &h, d);
}

/* pid 1 with --init: starts the command as its child, forwards signals to it, reaps every
   orphan, and exits the way the command did. */
static void run_init(const struct strata_launch *cfg, int err_fd) {
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    pid_t child = fork();
    if (child < 0) fail(err_fd, ST_INIT);
    if (child == 0) {
        sigprocmask(SIG_UNBLOCK, &all, NULL);
        execve(cfg->path, cfg->argv, cfg->envp);
        fail(err_fd, ST_EXEC);
    }
    close(err_fd);
    for (;;) {
        int sig = 0;
        struct timespec ts = { 0, 50 * 1000 * 1000 };
        siginfo_t info;
        sig = sigtimedwait(&all, &info, &ts);
        if (sig > 0 && sig != SIGCHLD) kill(child, sig);
        int status;
        pid_t p;
        while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
            if (p == child) {
                if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
                _exit(128 + WTERMSIG(status));
            }
        }
    }
}

pid_t strata_launch(const struct strata_launch *cfg, int go_fd, int err_fd) {
    int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | SIGCHLD;
    if (cfg->new_net) flags |= CLONE_NEWNET;
    pid_t pid = (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
    if (pid != 0) return pid;

    /* --- child: pid 1 of the new pid namespace; syscalls only from here on --- */
    char buf[4096], p[4096];
    char c;
    if (read(go_fd, &c, 1) != 1) fail(err_fd, ST_SYNC);
    close(go_fd);
    /* The parent has put us in our cgroups: now they become our cgroup root. */
    if (unshare(CLONE_NEWCGROUP) != 0) fail(err_fd, ST_CGROUPNS);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail(err_fd, ST_PRIVATE);
    if (sethostname(cfg->hostname, strlen(cfg->hostname)) != 0) fail(err_fd, ST_HOSTNAME);
    if (mount(cfg->rootfs, cfg->rootfs, NULL, MS_BIND | MS_REC, NULL) != 0) fail(err_fd, ST_BINDROOT);
    int rootfd = open(cfg->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) fail(err_fd, ST_BINDROOT);

    /* /proc, /dev, /sys */
    if (!join(p, sizeof p, cfg->rootfs, "proc")) fail(err_fd, ST_PROC);
    mkdir(p, 0555);
    if (mount("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) fail(err_fd, ST_PROC);
    if (setup_dev(cfg->rootfs) != 0) fail(err_fd, ST_DEV);
    if (!join(p, sizeof p, cfg->rootfs, "sys")) fail(err_fd, ST_SYS);
    mkdir(p, 0555);
    if (cfg->new_net) {
        if (mount("sysfs", p, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) != 0) fail(err_fd, ST_SYS);
    } else {
        /* sysfs cannot be mounted without a network namespace of our own: bind the host's, read-only. */
        if (mount("/sys", p, NULL, MS_BIND | MS_REC, NULL) != 0) fail(err_fd, ST_SYS);
        if (mount(NULL, p, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) fail(err_fd, ST_SYS);
    }

    /* /etc/hostname, /etc/hosts, /etc/resolv.conf from the container's own folder */
    for (int i = 0; i + 1 < cfg->nbind_files * 2; i += 2) {
        int fd = open_in_root(rootfd, cfg->bind_files[i + 1], buf, sizeof buf);
        if (fd < 0) fail(err_fd, ST_FILES);
        if (mount(cfg->bind_files[i], buf, NULL, MS_BIND, NULL) != 0) fail(err_fd, ST_FILES);
        close(fd);
    }
    /* volumes and tmpfs, resolved inside the rootfs */
    for (int i = 0; i < cfg->nmounts; i++) {
        const struct strata_mount *m = &cfg->mounts[i];
        int fd = open_in_root(rootfd, m->target, buf, sizeof buf);
        if (fd < 0) fail(err_fd, ST_MOUNTS);
        if (m->tmpfs) {
            if (mount("tmpfs", buf, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) fail(err_fd, ST_MOUNTS);
        } else {
            if (mount(m->source, buf, NULL, MS_BIND | MS_REC, NULL) != 0) fail(err_fd, ST_MOUNTS);
            if (m->readonly) {
                close(fd);
                fd = open_in_root(rootfd, m->target, buf, sizeof buf);
                if (fd < 0 || mount(NULL, buf, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) fail(err_fd, ST_MOUNTS);
            }
        }
        close(fd);
    }

    /* pivot_root into the rootfs; the old root is detached at once */
    if (chdir(cfg->rootfs) != 0) fail(err_fd, ST_PIVOT);
    if (syscall(SYS_pivot_root, ".", ".") != 0) fail(err_fd, ST_PIVOT);
    if (umount2(".", MNT_DETACH) != 0) fail(err_fd, ST_PIVOT);
    if (chdir("/") != 0) fail(err_fd, ST_PIVOT);

    /* masked and read-only paths in /proc and /sys, as runc does */
    for (int i = 0; i < cfg->nmasked; i++) {
        struct stat st;
        if (lstat(cfg->masked_paths[i], &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (mount("tmpfs", cfg->masked_paths[i], "tmpfs", MS_RDONLY, NULL) != 0) fail(err_fd, ST_MASK);
        } else if (mount("/dev/null", cfg->masked_paths[i], NULL, MS_BIND, NULL) != 0) fail(err_fd, ST_MASK);
    }
    for (int i = 0; i < cfg->nreadonly; i++) {
        struct stat st;
        if (lstat(cfg->readonly_paths[i], &st) != 0) continue;
        if (mount(cfg->readonly_paths[i], cfg->readonly_paths[i], NULL, MS_BIND | MS_REC, NULL) != 0 ||
            mount(NULL, cfg->readonly_paths[i], NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) fail(err_fd, ST_MASK);
    }
    if (cfg->readonly_rootfs && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) != 0) fail(err_fd, ST_READONLY);
    if (cfg->new_net && lo_up() != 0) fail(err_fd, ST_LO);

    /* terminal: a pty of the container's own devpts, so ttyname() finds it in /dev/pts */
    if (cfg->console_socket >= 0) {
        int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0) fail(err_fd, ST_TTY);
        int unlock = 0, n = -1;
        if (ioctl(master, TIOCSPTLCK, &unlock) != 0 || ioctl(master, TIOCGPTN, &n) != 0) fail(err_fd, ST_TTY);
        char slave_path[64];
        snprintf(slave_path, sizeof slave_path, "/dev/pts/%d", n);
        int slave = open(slave_path, O_RDWR | O_NOCTTY);
        if (slave < 0) fail(err_fd, ST_TTY);
        char data = 't';
        struct iovec iov = { &data, 1 };
        char control[CMSG_SPACE(sizeof(int))];
        memset(control, 0, sizeof control);
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &master, sizeof(int));
        if (sendmsg(cfg->console_socket, &msg, 0) != 1) fail(err_fd, ST_TTY);
        close(master);
        close(cfg->console_socket);
        if (setsid() < 0) fail(err_fd, ST_TTY);
        if (ioctl(slave, TIOCSCTTY, 0) != 0) fail(err_fd, ST_TTY);
        if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0) fail(err_fd, ST_TTY);
        if (slave > 2) close(slave);
    }

    /* privileges: groups, gid, uid; capabilities; no_new_privs */
    if (drop_bounding(cfg->capabilities) != 0) fail(err_fd, ST_CAPS);
    if (setgroups((size_t)cfg->ngroups, cfg->groups) != 0) fail(err_fd, ST_GROUPS);
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) fail(err_fd, ST_CAPS);
    if (setresgid(cfg->gid, cfg->gid, cfg->gid) != 0) fail(err_fd, ST_UID);
    if (setresuid(cfg->uid, cfg->uid, cfg->uid) != 0) fail(err_fd, ST_UID);
    if (set_caps(cfg->uid == 0 ? cfg->capabilities : 0) != 0) fail(err_fd, ST_CAPS);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail(err_fd, ST_NNP);
    if (chdir(cfg->cwd) != 0) fail(err_fd, ST_CWD);

    /* signals: default dispositions (SIGPIPE included), nothing blocked */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) {
        if (s == SIGKILL || s == SIGSTOP) continue;
        sigaction(s, &sa, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) fail(err_fd, ST_SIGNALS);

    if (cfg->init) run_init(cfg, err_fd);
    execve(cfg->path, cfg->argv, cfg->envp);
    fail(err_fd, ST_EXEC);
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
