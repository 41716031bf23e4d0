#define _GNU_SOURCE
#include "child.h"
#include "clauncher.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

/* The namespaces a process joins to run inside a container, in the order they are joined:
   the mount namespace last (it changes what /proc/TARGET means), the pid namespace before the
   fork that makes a process of it. */
static const struct { const char *name; int type; } namespaces[] = {
    { "ipc", CLONE_NEWIPC }, { "uts", CLONE_NEWUTS }, { "net", CLONE_NEWNET },
    { "cgroup", CLONE_NEWCGROUP }, { "pid", CLONE_NEWPID }, { "mnt", CLONE_NEWNS },
};
#define NNS (int)(sizeof namespaces / sizeof namespaces[0])

/* The command, for the waiting process's signal handler: what strata forwards to the waiting
   process (its pid is the one strata knows) reaches the command. */
static volatile pid_t command_pid;
static void forward(int sig) { if (command_pid > 0) kill(command_pid, sig); }

/* Field 22 of /proc/PID/stat (syscalls and stack only: this runs in a child of a raw clone). */
static unsigned long long target_start_time(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    for (int field = 2; field < 22 && p; field++) p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

pid_t strata_exec(const struct strata_exec *cfg, int go_fd, int err_fd) {
    pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid != 0) return pid;

    /* --- child, still in the host's namespaces; syscalls only --- */
    char path[64];
    char c;
    int ns[NNS];
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) child_fail(err_fd, ST_DUMPABLE);
    int keep[6] = { go_fd, err_fd, cfg->console_socket, cfg->stdio[0], cfg->stdio[1], cfg->stdio[2] };
    child_sort_fds(keep, 6);
    if (child_close_others(keep, 6) != 0) child_fail(err_fd, ST_FDS);
    child_stdio(cfg->stdio, err_fd);
    /* The parent puts us in the container's cgroups first (the cgroup namespace is theirs). */
    if (read(go_fd, &c, 1) != 1) child_fail(err_fd, ST_SYNC);
    close(go_fd);
    for (int i = 0; i < NNS; i++) {
        snprintf(path, sizeof path, "/proc/%d/ns/%s", (int)cfg->target, namespaces[i].name);
        ns[i] = open(path, O_RDONLY | O_CLOEXEC);
        if (ns[i] < 0) child_fail(err_fd, ST_SETNS);
    }
    /* The namespaces are those of the container's process only if it still runs: the start
       time, read after they were opened, is the one recorded when it started. */
    if (cfg->target_start != 0 && target_start_time(cfg->target) != cfg->target_start) {
        errno = ESRCH;
        child_fail(err_fd, ST_SETNS);
    }
    for (int i = 0; i < NNS; i++) {
        /* The network the container shares with us (--network host; rootless, a namespace its
           user namespace does not own, which setns would refuse) is not joined again. Any
           other namespace shared with us means the target is not a container: refused. */
        struct stat theirs, ours;
        snprintf(path, sizeof path, "/proc/self/ns/%s", namespaces[i].name);
        int same = fstat(ns[i], &theirs) == 0 && stat(path, &ours) == 0 &&
                   theirs.st_dev == ours.st_dev && theirs.st_ino == ours.st_ino;
        if (same && namespaces[i].type != CLONE_NEWNET) { errno = ESRCH; child_fail(err_fd, ST_SETNS); }
        if (!same && setns(ns[i], namespaces[i].type) != 0) child_fail(err_fd, ST_SETNS);
        close(ns[i]);
    }
    /* Become the container's user, with its bounding set, capabilities, no_new_privs and
       seccomp filter, before anything of ours enters its pid namespace: a process there with
       CAP_SYS_PTRACE can see and trace what does, and must find nothing more privileged than
       itself. */
    struct child_identity id = {
        cfg->uid, cfg->gid, cfg->groups, cfg->ngroups, cfg->capabilities, cfg->cwd,
        cfg->seccomp_filter, cfg->seccomp_len, cfg->path, cfg->argv, cfg->envp, -1, NULL, cfg->no_new_privs, cfg->rlimits, cfg->nrlimits,
    };
    child_drop(&id, err_fd);
    /* A terminal from the container's own devpts (its /dev/ptmx, now that we see its mounts),
       opened as the container's user: nothing of the container's /dev is resolved with more. */
    int slave = cfg->console_socket >= 0 ? child_console_open(cfg->console_socket, err_fd) : -1;
    /* The pid namespace applies to children: the command is a child of this process, which
       waits for it and exits as it does. */
    pid_t cmd = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
    if (cmd < 0) child_fail(err_fd, ST_SETNS);
    if (cmd == 0) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail(err_fd, ST_SETNS);
        /* Its own session, with the container's pty as its terminal or none at all. */
        if (slave >= 0) child_console_take(slave, err_fd);
        else if (setsid() < 0) child_fail(err_fd, ST_SESSION);
        child_exec(&id, err_fd);
    }
    if (slave >= 0) close(slave);
    close(err_fd);
    command_pid = cmd;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    const int forwarded[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
    for (unsigned i = 0; i < sizeof forwarded / sizeof forwarded[0]; i++) sigaction(forwarded[i], &sa, NULL);
    int status = 0;
    for (;;) {
        if (waitpid(cmd, &status, 0) >= 0) break;
        if (errno != EINTR) _exit(125);  /* never report a command's end that was not seen */
    }
    if (WIFSIGNALED(status)) _exit(128 + WTERMSIG(status));
    _exit(WEXITSTATUS(status));
}
