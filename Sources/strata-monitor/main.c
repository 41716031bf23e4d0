/*
 * strata-monitor: what stays of a detached container's monitor while the container runs.
 *
 * strata's monitor (`strata container-monitor ID`) mounts the container, starts its process
 * with the log pipes as stdout and stderr, records that it started, and then execs this
 * program in its place: the same process, so the container's process is still its child.
 * From here on this program alone watches the container, as conmon does for podman:
 *
 *   - it copies the two pipes into the log, `ctr.log`, one line per record in podman's
 *     k8s-file form (`TIME STREAM F|P TEXT`); a line without its newline after 0.1 s, or
 *     longer than 16 KiB, is written in parts (P); at the size limit the log becomes
 *     `ctr.log.1` (waiting up to 5 s for a follower that holds a shared lock on it);
 *   - it forwards the signals it gets (TERM, INT, HUP, QUIT, USR1, USR2) to the process;
 *   - when the process ends it drains the pipes (up to 5 s more), writes the exit into the
 *     run state (`state.json`: a fixed 4096-byte JSON record, written into its spare
 *     `state.next` in place and swapped in with one rename, so no block is needed on a full
 *     disk), and execs the cleanup command (`strata container-cleanup ID`), which unmounts
 *     the container or removes it, removes its cgroups, and then clears the monitor's pid
 *     from the run state: `stop` and `wait` return once that is done.
 *
 * It allocates nothing after start-up but its two line buffers, and holds nothing else.
 *
 *   - with `--health MS CHECK... --`, it runs CHECK (`strata healthcheck run ID`, which
 *     records the result) every MS milliseconds after the previous one ended, one at a time,
 *     with /dev/null as its stdio; one still running when the container ends is killed.
 *
 *   - with `--attach`, it listens on STATE_DIR/attach.sock (SOCK_SEQPACKET, 0600) for `strata
 *     attach`: each client gets the output as it comes ('o' stdout, 'E' stderr messages; with
 *     'r' first, what was written since the start, up to 64 KiB), and may send input ('i'),
 *     the end of its input ('e', which closes the container's stdin with `--stdin-once`) and
 *     its window size ('w' rows cols, u16 each, with a terminal). Input goes to `--stdin FD` (a
 *     pipe) or to the terminal (`--tty`: STDOUT_FD is then the pty master, STDERR_FD -1);
 *     input that does not fit at once is dropped rather than stall the output. A client that
 *     does not keep up with the output is let go.
 *
 *   strata-monitor PID STDOUT_FD STDERR_FD LOG MAX_SIZE STATE_DIR STARTED_AT [--tty] [--stdin FD]
 *                  [--stdin-once] [--attach] [--health MS CHECK... --] CLEANUP...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 16384
#define STATE_SIZE 4096
#define PARTIAL_AFTER_NS 100000000LL
#define DRAIN_AFTER_EXIT_NS 5000000000LL
#define FOLLOWER_GRACE_NS 5000000000LL
#define MAX_CLIENTS 16
#define REPLAY_BYTES 65536

static const char *log_path;
static int log_fd = -1;
static long long log_size, log_max;

static long long now_ns(int clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Now as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (what strata's log reader and podman expect). */
static void timestamp(char out[40]) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
}

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void open_log(int truncate) {
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0600);
    struct stat st;
    log_size = (log_fd >= 0 && fstat(log_fd, &st) == 0) ? st.st_size : 0;
}

/* `ctr.log` becomes `ctr.log.1`; a follower still reading `ctr.log.1` (a shared OFD lock on
   its byte 0) is given up to 5 s to move on first. */
static void rotate(void) {
    char old[4096];
    snprintf(old, sizeof old, "%s.1", log_path);
    int fd = open(old, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        long long end = now_ns(CLOCK_MONOTONIC) + FOLLOWER_GRACE_NS;
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
        while (fcntl(fd, F_OFD_SETLK, &fl) != 0 && now_ns(CLOCK_MONOTONIC) < end) {
            struct timespec pause = { 0, 5000000 };
            nanosleep(&pause, NULL);
        }
        close(fd);
    }
    rename(log_path, old);
    if (log_fd >= 0) close(log_fd);
    open_log(1);
}

static void log_record(const char *stream, int partial, const char *text, size_t len) {
    /* One write per record: a follower never reads half a line it could take for whole. */
    static char record[64 + LINE_MAX_BYTES + 1];
    char ts[40];
    timestamp(ts);
    int h = snprintf(record, 64, "%s %s %c ", ts, stream, partial ? 'P' : 'F');
    memcpy(record + h, text, len);
    record[h + len] = '\n';
    long long size = h + (long long)len + 1;
    if (log_size + size > log_max && log_size > 0) rotate();
    if (log_fd < 0) return;
    write_all(log_fd, record, (size_t)size);
    log_size += size;
}

/* Attached clients (SOCK_SEQPACKET: one message per send), and the output since the start for
   a client that asks for it. */
static int clients[MAX_CLIENTS];
/* How much of the replay there was when each client came: what came after reached it live,
   so a replay it asks for stops there (or it would see that output twice). */
static size_t client_mark[MAX_CLIENTS];
static int nclients;
static char replay[REPLAY_BYTES];
static size_t replay_len;
static int replay_full;

static void drop_client(int i) {
    close(clients[i]);
    --nclients;
    clients[i] = clients[nclients];
    client_mark[i] = client_mark[nclients];
}

static int send_message(int fd, char type, const char *data, size_t len) {
    char msg[1 + 65536];
    msg[0] = type;
    memcpy(msg + 1, data, len);
    return send(fd, msg, len + 1, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)(len + 1) ? 0 : -1;
}

/* What the container wrote, to every client, and into the replay while it has room. */
static void broadcast(char type, const char *data, size_t len) {
    if (!replay_full) {
        if (replay_len + len + 5 <= REPLAY_BYTES) {
            replay[replay_len] = type;
            uint32_t n = (uint32_t)len;
            memcpy(replay + replay_len + 1, &n, 4);
            memcpy(replay + replay_len + 5, data, len);
            replay_len += len + 5;
        } else replay_full = 1;
    }
    for (int i = 0; i < nclients; i++) {
        if (send_message(clients[i], type, data, len) != 0) drop_client(i--);
    }
}

struct stream {
    const char *name;
    int fd;
    char pending[LINE_MAX_BYTES];
    size_t len;
    long long last_read;
};

/* Reads what the pipe has; writes whole lines, and parts of lines longer than 16 KiB.
   Returns 0 at the end of the pipe. */
static int pump(struct stream *s) {
    char buf[65536];
    ssize_t n = read(s->fd, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 1;
    if (n <= 0) {
        if (s->len > 0) log_record(s->name, 0, s->pending, s->len);
        s->len = 0;
        close(s->fd);
        s->fd = -1;
        return 0;
    }
    s->last_read = now_ns(CLOCK_MONOTONIC);
    broadcast(strcmp(s->name, "stderr") == 0 ? 'E' : 'o', buf, (size_t)n);
    for (ssize_t i = 0; i < n; i++) {
        if (buf[i] == '\n') {
            log_record(s->name, 0, s->pending, s->len);
            s->len = 0;
            continue;
        }
        s->pending[s->len++] = buf[i];
        if (s->len == LINE_MAX_BYTES) {
            log_record(s->name, 1, s->pending, s->len);
            s->len = 0;
        }
    }
    return 1;
}

static void json_string(char *out, size_t cap, const char *s) {
    size_t o = 0;
    out[o++] = '"';
    for (; *s && o + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[o++] = '\\'; out[o++] = (char)c; }
        else if (c < 0x20) o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        else out[o++] = (char)c;
    }
    out[o++] = '"';
    out[o] = 0;
}

/* The run state with the exit, as strata's RunState record: JSON padded with spaces to 4096
   bytes, written into the spare in place and swapped in; without a spare, a new file renamed in. */
static void record_exit(const char *dir, const char *started_at, int code) {
    char finished[40], started[512], record[STATE_SIZE];
    timestamp(finished);
    json_string(started, sizeof started, started_at);
    /* monitorPid stays: this process goes on as the cleanup, which clears it when done. */
    int n = snprintf(record, sizeof record, "{\"exitCode\":%d,\"finishedAt\":\"%s\",\"monitorPid\":%d,\"startedAt\":%s}",
                     code, finished, (int)getpid(), started);
    if (n <= 0 || n >= STATE_SIZE) return;
    memset(record + n, ' ', STATE_SIZE - 1 - (size_t)n);
    record[STATE_SIZE - 1] = '\n';
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    int spare = openat(dfd, "state.next", O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (spare >= 0 && fstat(spare, &st) == 0 && st.st_size == STATE_SIZE && pwrite(spare, record, STATE_SIZE, 0) == STATE_SIZE) {
        close(spare);
        if (syscall(SYS_renameat2, dfd, "state.next", dfd, "state.json", 2 /* RENAME_EXCHANGE */) != 0)
            renameat(dfd, "state.next", dfd, "state.json");
    } else {
        if (spare >= 0) close(spare);
        int fd = openat(dfd, "state.json.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 && write_all(fd, record, STATE_SIZE) == 0) renameat(dfd, "state.json.tmp", dfd, "state.json");
        if (fd >= 0) close(fd);
    }
    close(dfd);
}

/* Starts the health check: a child with /dev/null as its stdio and nothing blocked. */
static pid_t start_check(char **argv, const sigset_t *blocked) {
    pid_t p = fork();
    if (p != 0) return p;
    sigprocmask(SIG_UNBLOCK, blocked, NULL);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
    setsid();
    execv(argv[0], argv);
    _exit(127);
}

/* The attach socket in the container's folder, named through /proc/self/fd so that a long
   store path does not overflow sun_path. */
static int listen_attach(const char *dir) {
    int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -1;
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/attach.sock", dfd);
    unlink(addr.sun_path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    mode_t old = umask(077);
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(fd, MAX_CLIENTS) == 0;
    umask(old);
    close(dfd);
    if (!ok) { if (fd >= 0) close(fd); return -1; }
    return fd;
}

/* One message from client i: input, end of input, window size, replay. */
static void client_message(int i, int *in_fd, int tty, int stdin_once) {
    char msg[1 + 65536];
    ssize_t n = recv(clients[i], msg, sizeof msg, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { drop_client(i); return; }
    switch (msg[0]) {
    case 'i':
        if (*in_fd >= 0 && n > 1 && write(*in_fd, msg + 1, (size_t)n - 1) < 0 && errno != EAGAIN) {
            if (!tty) { close(*in_fd); *in_fd = -1; }
        }
        break;
    case 'e':
        if (stdin_once && !tty && *in_fd >= 0) { close(*in_fd); *in_fd = -1; }
        break;
    case 'w':
        if (tty && n >= 5 && *in_fd >= 0) {
            uint16_t rows, cols;
            memcpy(&rows, msg + 1, 2);
            memcpy(&cols, msg + 3, 2);
            struct winsize ws = { .ws_row = rows, .ws_col = cols };
            ioctl(*in_fd, TIOCSWINSZ, &ws);
        }
        break;
    case 'r':
        for (size_t off = 0; off + 5 <= client_mark[i] && off + 5 <= replay_len;) {
            uint32_t len;
            memcpy(&len, replay + off + 1, 4);
            if (send_message(clients[i], replay[off], replay + off + 5, len) != 0) { drop_client(i); return; }
            off += 5 + len;
        }
        break;
    }
}

/* While this program watches the container, no strata process may have the store's database
   open. SQLite treats the first connection to open a WAL database as the one that rebuilds
   the shared-memory index (`strata.db-shm`): it truncates and regrows that file, which needs
   room a full disk does not have, so every command would fail until the container ended. A
   shared lock on the index's "DMS" byte (offset 128: SQLite's UNIX_SHM_DMS), as any open
   connection holds, tells each command that the index is live; it then opens as it would
   beside a running command. The lock goes with this program's exec of the cleanup. */
static void hold_database_index(const char *state_dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/../../strata.db-shm", state_dir);
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 128, .l_len = 1 };
    if (fcntl(fd, F_SETLK, &fl) != 0) close(fd);
}

int main(int argc, char **argv) {
    if (argc < 9) {
        fprintf(stderr, "strata-monitor: started by strata only (PID STDOUT STDERR LOG MAX STATE_DIR STARTED CLEANUP...)\n");
        return 125;
    }
    pid_t pid = (pid_t)atoi(argv[1]);
    struct stream out = { .name = "stdout", .fd = atoi(argv[2]) }, err = { .name = "stderr", .fd = atoi(argv[3]) };
    log_path = argv[4];
    log_max = atoll(argv[5]);
    const char *state_dir = argv[6], *started_at = argv[7];
    char **check = NULL;
    long long check_every = 0;
    int rest = 8, tty = 0, stdin_once = 0, attach = 0, in_fd = -1;
    for (;;) {
        if (strcmp(argv[rest], "--tty") == 0) { tty = 1; rest++; }
        else if (strcmp(argv[rest], "--stdin-once") == 0) { stdin_once = 1; rest++; }
        else if (strcmp(argv[rest], "--attach") == 0) { attach = 1; rest++; }
        else if (strcmp(argv[rest], "--stdin") == 0 && rest + 2 < argc) { in_fd = atoi(argv[rest + 1]); rest += 2; }
        else break;
        if (rest >= argc) { fprintf(stderr, "strata-monitor: no cleanup command\n"); return 125; }
    }
    if (tty) in_fd = out.fd;
    if (strcmp(argv[rest], "--health") == 0) {
        int first = rest;
        int end = first + 2;
        while (end < argc && strcmp(argv[end], "--") != 0) end++;
        if (argc < first + 3 || end >= argc - 1 || end == first + 2) {
            fprintf(stderr, "strata-monitor: --health MS CHECK... -- CLEANUP...\n");
            return 125;
        }
        check_every = atoll(argv[first + 1]) * 1000000LL;
        check = argv + first + 2;
        argv[end] = NULL;
        rest = end + 1;
    }
    char **cleanup = argv + rest;

    sigset_t set;
    sigemptyset(&set);
    int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
    for (size_t i = 0; i < sizeof forwarded / sizeof *forwarded; i++) sigaddset(&set, forwarded[i]);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    fcntl(out.fd, F_SETFD, FD_CLOEXEC);
    fcntl(out.fd, F_SETFL, O_NONBLOCK);
    if (err.fd >= 0) {
        fcntl(err.fd, F_SETFD, FD_CLOEXEC);
        fcntl(err.fd, F_SETFL, O_NONBLOCK);
    }
    if (in_fd >= 0 && !tty) {
        fcntl(in_fd, F_SETFD, FD_CLOEXEC);
        fcntl(in_fd, F_SETFL, O_NONBLOCK);
    }
    int listener = attach ? listen_attach(state_dir) : -1;
    open_log(0);
    hold_database_index(state_dir);

    int status = 0, exited = 0;
    long long drain_until = 0;
    pid_t check_pid = 0;
    long long check_due = now_ns(CLOCK_MONOTONIC) + check_every;
    for (;;) {
        if (check_pid > 0 && waitpid(check_pid, NULL, WNOHANG) == check_pid) {
            check_pid = 0;
            check_due = now_ns(CLOCK_MONOTONIC) + check_every;
        }
        if (check && !exited && check_pid == 0 && now_ns(CLOCK_MONOTONIC) >= check_due) {
            check_pid = start_check(check, &set);
            if (check_pid < 0) { check_pid = 0; check_due = now_ns(CLOCK_MONOTONIC) + check_every; }
        }
        /* The process may have ended before the signalfd existed. */
        if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
            exited = 1;
            drain_until = now_ns(CLOCK_MONOTONIC) + DRAIN_AFTER_EXIT_NS;
        }
        if (exited && ((out.fd < 0 && err.fd < 0) || now_ns(CLOCK_MONOTONIC) >= drain_until)) break;
        struct pollfd fds[4 + MAX_CLIENTS] = { { sfd, POLLIN, 0 }, { out.fd, POLLIN, 0 }, { err.fd, POLLIN, 0 },
                                               { exited ? -1 : listener, POLLIN, 0 } };
        int watched = nclients;
        for (int i = 0; i < watched; i++) fds[4 + i] = (struct pollfd){ clients[i], POLLIN, 0 };
        int timeout = -1;
        if (out.len > 0 || err.len > 0) timeout = (int)(PARTIAL_AFTER_NS / 1000000);
        if (exited) {
            long long left = (drain_until - now_ns(CLOCK_MONOTONIC)) / 1000000;
            if (timeout < 0 || left < timeout) timeout = left > 0 ? (int)left : 0;
        } else if (check && check_pid == 0) {
            long long left = (check_due - now_ns(CLOCK_MONOTONIC)) / 1000000 + 1;
            if (timeout < 0 || left < timeout) timeout = left > 0 ? (int)left : 0;
        }
        int r = poll(fds, (nfds_t)(4 + watched), timeout);
        if (r < 0 && errno != EINTR) break;
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == sizeof si) {
                if (si.ssi_signo != SIGCHLD && !exited) kill(pid, (int)si.ssi_signo);
            }
        }
        if (fds[3].revents & POLLIN) {
            int c = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (c >= 0 && nclients < MAX_CLIENTS) { client_mark[nclients] = replay_len; clients[nclients++] = c; }
            else if (c >= 0) close(c);
        }
        /* From the last client down: a dropped one's place is taken by one already looked at. */
        for (int i = watched - 1; i >= 0; i--) {
            if (i < nclients && clients[i] == fds[4 + i].fd && (fds[4 + i].revents & (POLLIN | POLLHUP | POLLERR)))
                client_message(i, &in_fd, tty, stdin_once);
        }
        if (tty && out.fd < 0) in_fd = -1;
        if (out.fd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) pump(&out);
        if (err.fd >= 0 && (fds[2].revents & (POLLIN | POLLHUP | POLLERR))) pump(&err);
        /* A line still without its newline after 0.1 s (a prompt, a progress bar) shows now. */
        long long now = now_ns(CLOCK_MONOTONIC);
        struct stream *streams[2] = { &out, &err };
        for (int i = 0; i < 2; i++) {
            struct stream *s = streams[i];
            if (s->len > 0 && now - s->last_read >= PARTIAL_AFTER_NS) {
                log_record(s->name, 1, s->pending, s->len);
                s->len = 0;
            }
        }
    }
    if (check_pid > 0) {
        kill(-check_pid, SIGKILL);
        kill(check_pid, SIGKILL);
        waitpid(check_pid, NULL, 0);
    }
    if (out.len > 0) log_record(out.name, 0, out.pending, out.len);
    if (err.len > 0) log_record(err.name, 0, err.pending, err.len);
    /* The clients see the end of the output; the exit code is theirs to read from the state. */
    if (listener >= 0) {
        char path[4200];
        snprintf(path, sizeof path, "%s/attach.sock", state_dir);
        unlink(path);
        close(listener);
    }
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    record_exit(state_dir, started_at, code);
    if (log_fd >= 0) close(log_fd);

    sigprocmask(SIG_UNBLOCK, &set, NULL);
    execv(cleanup[0], cleanup);
    fprintf(stderr, "strata-monitor: cannot run %s: %s\n", cleanup[0], strerror(errno));
    return 125;
}
