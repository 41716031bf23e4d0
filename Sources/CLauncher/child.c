#define _GNU_SOURCE
#include "child.h"
#include "clauncher.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* What the container processes share between clone (or setns) and exec: the failure report,
   fd hygiene, and becoming the container's user with its capabilities and seccomp filter.
   Syscalls only: these run in a child of a raw clone of a multithreaded process. */

void child_fail(int err_fd, int stage) {
    int msg[2] = { stage, errno };
    ssize_t r = write(err_fd, msg, sizeof msg);
    (void)r;
    _exit(125);
}

/* Closes every fd but 0-2 and the ones in keep[] (ascending, -1 entries ignored). */
int child_close_others(const int *keep, int n) {
    unsigned int from = 3;
    for (int i = 0; i < n; i++) {
        if (keep[i] < (int)from) continue;
        if ((unsigned)keep[i] > from && syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0) != 0) return -1;
        from = (unsigned)keep[i] + 1;
    }
    return (int)syscall(SYS_close_range, from, ~0U, 0);
}

void child_sort_fds(int *a, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && a[j - 1] > a[j]; j--) { int t = a[j]; a[j] = a[j - 1]; a[j - 1] = t; }
}

/* Drops from the bounding set what is not kept (needs CAP_SETPCAP: before changing uid). */
int child_drop_bounding(uint64_t keep) {
    for (int c = 0; c <= 63; c++) {
        if (keep & (1ULL << c)) continue;
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    }
    return 0;
}

/* Sets the effective, permitted and inheritable sets (after the uid change). */
int child_set_caps(uint64_t keep) {
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    d[0].effective = d[0].permitted = d[0].inheritable = (uint32_t)keep;
    d[1].effective = d[1].permitted = d[1].inheritable = (uint32_t)(keep >> 32);
    return (int)syscall(SYS_capset, &h, d);
}

/* Rootless with a single-id mapping, the namespace was made with setgroups denied (the
   kernel's condition for an unprivileged gid_map): the groups stay as they are. */
static int setgroups_denied(void) {
    int fd = open("/proc/self/setgroups", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char buf[8] = { 0 };
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n >= 4 && memcmp(buf, "deny", 4) == 0;
}

void child_drop(const struct child_identity *id, int err_fd) {
    /* resource limits first: raising a hard limit takes CAP_SYS_RESOURCE, still held here */
    for (int i = 0; i < id->nrlimits; i++) {
        struct rlimit64_raw { uint64_t cur, max; } lim = { id->rlimits[i].soft, id->rlimits[i].hard };
        if (syscall(SYS_prlimit64, 0, id->rlimits[i].resource, &lim, NULL) != 0) child_fail(err_fd, ST_RLIMIT);
    }
    /* privileges: groups, gid, uid; capabilities; no_new_privs if asked */
    if (child_drop_bounding(id->capabilities) != 0) child_fail(err_fd, ST_CAPS);
    /* Without no_new_privs (Docker's default: setuid programs such as su, sudo and ping work),
       the kernel takes a seccomp filter only from a process holding CAP_SYS_ADMIN: it is loaded
       here, before the ids and capabilities change, as runc does. The rest of the way to exec
       (setgroups, setresuid, capset, prctl, chdir, sigaction, execve) then runs under it. */
    int filter_loaded = 0;
    if (!id->no_new_privs && id->seccomp_filter) {
        struct sock_fprog prog = { (unsigned short)id->seccomp_len, (struct sock_filter *)id->seccomp_filter };
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) child_fail(err_fd, ST_SECCOMP);
        filter_loaded = 1;
    }
    /* Raw syscalls, not glibc's wrappers: those make every thread of the process change its
       ids together (setxid), and this child of a raw clone still carries the parent's thread
       list (and maybe its locks); the wrapper could wait forever for threads it does not have. */
    if (syscall(SYS_setgroups, (size_t)id->ngroups, id->groups) != 0 && !(errno == EPERM && setgroups_denied()))
        child_fail(err_fd, ST_GROUPS);
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) child_fail(err_fd, ST_CAPS);
    if (syscall(SYS_setresgid, id->gid, id->gid, id->gid) != 0) child_fail(err_fd, ST_UID);
    if (syscall(SYS_setresuid, id->uid, id->uid, id->uid) != 0) child_fail(err_fd, ST_UID);
    if (child_set_caps(id->uid == 0 ? id->capabilities : 0) != 0) child_fail(err_fd, ST_CAPS);
    if (id->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) child_fail(err_fd, ST_NNP);
    if (chdir(id->cwd) != 0) child_fail(err_fd, ST_CWD);
    /* runc's default umask, never strata's own: what a process makes (a build's RUN step
       included) does not depend on the umask of the shell that started strata. */
    umask(022);

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
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) child_fail(err_fd, ST_SIGNALS);

    /* seccomp last: from here on only the rest of the way to exec runs under it */
    if (id->seccomp_filter && !filter_loaded) {
        struct sock_fprog prog = { (unsigned short)id->seccomp_len, (struct sock_filter *)id->seccomp_filter };
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) child_fail(err_fd, ST_SECCOMP);
    }
}

void child_exec(const struct child_identity *id, int err_fd) {
    if (id->init_fd >= 0) {
        syscall(SYS_execveat, id->init_fd, "", id->init_argv, id->envp, AT_EMPTY_PATH);
        child_fail(err_fd, ST_INIT);
    }
    execve(id->path, id->argv, id->envp);
    child_fail(err_fd, ST_EXEC);
}

void child_become(const struct child_identity *id, int err_fd) {
    child_drop(id, err_fd);
    child_exec(id, err_fd);
}

void child_stdio(const int stdio[3], int err_fd) {
    for (int i = 0; i < 3; i++)
        if (stdio[i] >= 0 && dup2(stdio[i], i) < 0) child_fail(err_fd, ST_STDIO);
    for (int i = 0; i < 3; i++)
        if (stdio[i] > 2) close(stdio[i]);  /* EBADF for one given twice is harmless */
}

int child_console_open(int console_socket, int err_fd) {
    int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0) child_fail(err_fd, ST_TTY);
    int unlock = 0, n = -1;
    if (ioctl(master, TIOCSPTLCK, &unlock) != 0 || ioctl(master, TIOCGPTN, &n) != 0) child_fail(err_fd, ST_TTY);
    char slave_path[64];
    snprintf(slave_path, sizeof slave_path, "/dev/pts/%d", n);
    int slave = open(slave_path, O_RDWR | O_NOCTTY);
    if (slave < 0) child_fail(err_fd, ST_TTY);
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
    if (sendmsg(console_socket, &msg, 0) != 1) child_fail(err_fd, ST_TTY);
    close(master);
    close(console_socket);
    return slave;
}

void child_console_take(int slave, int err_fd) {
    if (setsid() < 0) child_fail(err_fd, ST_TTY);
    if (ioctl(slave, TIOCSCTTY, 0) != 0) child_fail(err_fd, ST_TTY);
    if (dup2(slave, 0) < 0 || dup2(slave, 1) < 0 || dup2(slave, 2) < 0) child_fail(err_fd, ST_TTY);
    if (slave > 2) close(slave);
}

void child_console(int console_socket, int err_fd) {
    child_console_take(child_console_open(console_socket, err_fd), err_fd);
}
