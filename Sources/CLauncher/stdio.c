#define _GNU_SOURCE
#include "clauncher.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

/* A container's process never holds strata's own stdin, stdout or stderr: those may be the
   caller's terminal (TIOCSTI would type into the caller's shell) or a file it could read back
   or truncate through /proc/self/fd. It gets pipes, and this copies between them and strata's
   own descriptors. splice moves pages where both ends allow it (pipe to file, /dev/null or
   pipe; file to pipe); a terminal or socket on strata's side falls back to read and write. */

enum { CHUNK = 1 << 16 };

struct stream {
    int src, dst;
    int splice;          /* 1 until splice says this pair cannot */
    int open;            /* still copying */
    int full;            /* input by splice: the destination took nothing last time, wait for room */
    char *buf;           /* the fallback's pending bytes (input only keeps some between polls) */
    size_t len, off;
};

/* Ends a stream and closes the end that is the pump's: the process's pipe (strata's own
   stdin, stdout and stderr stay open). */
static void stream_close(struct stream *s, int input) {
    if (!s->open) return;
    s->open = 0;
    close(input ? s->dst : s->src);
}

/* Blocking write of everything, also to a descriptor someone else made non-blocking (a shared
   terminal): EAGAIN waits until it takes more. */
static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd out = { fd, POLLOUT, 0 };
            if (poll(&out, 1, -1) < 0 && errno != EINTR) return -1;
            continue;
        }
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Output: called when src is readable (or hung up). Moves one chunk to dst, blocking on dst
   if it is slow (backpressure reaches the container, as with a plain pipe). Returns 0 on EOF or
   when dst is gone (the stream is closed then), 1 otherwise. */
static int pump_output(struct stream *s) {
    for (;;) {
        if (s->splice) {
            ssize_t n = splice(s->src, NULL, s->dst, NULL, CHUNK, SPLICE_F_MOVE);
            if (n > 0) return 1;
            if (n == 0) { stream_close(s, 0); return 0; }
            if (errno == EINTR) continue;
            if (errno == EINVAL || errno == ESPIPE || errno == EBADF) { s->splice = 0; continue; }
            if (errno == EAGAIN) {
                /* Nothing to read after all, or a destination someone made non-blocking: wait
                   for it to take more (a no-op wait when it is the source that was empty). */
                struct pollfd out = { s->dst, POLLOUT, 0 };
                poll(&out, 1, -1);
                return 1;
            }
            stream_close(s, 0);  /* EPIPE or another write error: the process sees a broken pipe */
            return 0;
        }
        ssize_t n = read(s->src, s->buf, CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return 1;
        if (n <= 0) { stream_close(s, 0); return 0; }
        if (write_all(s->dst, s->buf, (size_t)n) != 0) { stream_close(s, 0); return 0; }
        return 1;
    }
}

/* Input: the destination (the process's stdin pipe) is non-blocking, so a process that does
   not read its stdin never stops strata from draining its output. */
static void pump_input_read(struct stream *s) {
    for (;;) {
        if (s->splice) {
            ssize_t n = splice(s->src, NULL, s->dst, NULL, CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) return;
            if (n == 0) { stream_close(s, 1); return; }  /* EOF: the process sees its stdin end */
            if (errno == EINTR) continue;
            if (errno == EAGAIN) { s->full = 1; return; }  /* the pipe is full (or the source empty) */
            if (errno == EINVAL || errno == ESPIPE || errno == EBADF) { s->splice = 0; continue; }
            stream_close(s, 1);
            return;
        }
        ssize_t n = read(s->src, s->buf, CHUNK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return;
        if (n <= 0) { stream_close(s, 1); return; }
        s->len = (size_t)n;
        s->off = 0;
        return;
    }
}

static void pump_input_write(struct stream *s) {
    while (s->off < s->len) {
        ssize_t w = write(s->dst, s->buf + s->off, s->len - s->off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EAGAIN) return;
        if (w <= 0) { stream_close(s, 1); return; }
        s->off += (size_t)w;
    }
    s->len = s->off = 0;
}

void strata_stdio_pump(const struct strata_stdio_pump *pump) {
    signal(SIGPIPE, SIG_IGN);
    /* One pump runs at a time in a strata process (the foreground container's or exec's). */
    static char bufs[3 * CHUNK];
    struct stream in = { .src = pump->in_src, .dst = pump->in_dst, .splice = 1, .open = pump->in_dst >= 0, .buf = bufs };
    struct stream out = { .src = pump->out_src, .dst = pump->out_dst, .splice = 1, .open = pump->out_src >= 0, .buf = bufs + CHUNK };
    struct stream err = { .src = pump->err_src, .dst = pump->err_dst, .splice = 1, .open = pump->err_src >= 0, .buf = bufs + 2 * CHUNK };
    if (in.open) fcntl(in.dst, F_SETFL, fcntl(in.dst, F_GETFL) | O_NONBLOCK);
    int pidfd = (int)syscall(SYS_pidfd_open, pump->pid, 0);
    int ended = 0;

    while (!ended) {
        struct pollfd p[5];
        int n = 0, io = -1, ii = -1, oi = -1, ei = -1, pi = -1;
        /* Input waits on one side at a time: for room in the process's stdin pipe while it is
           full (or bytes are pending), else for strata's stdin. Polling both would spin when
           the source is always readable (a file) and the process never reads. */
        if (in.open) {
            if (in.len > in.off || in.full) { io = n; p[n++] = (struct pollfd){ in.dst, POLLOUT, 0 }; }
            else { ii = n; p[n++] = (struct pollfd){ in.src, POLLIN, 0 }; }
        }
        if (out.open) { oi = n; p[n++] = (struct pollfd){ out.src, POLLIN, 0 }; }
        if (err.open) { ei = n; p[n++] = (struct pollfd){ err.src, POLLIN, 0 }; }
        if (pidfd >= 0) { pi = n; p[n++] = (struct pollfd){ pidfd, POLLIN, 0 }; }
        else if (!out.open && !err.open) break;  /* no pidfd: the outputs' end is the end */
        int r = poll(p, (nfds_t)n, -1);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (oi >= 0 && p[oi].revents) pump_output(&out);
        if (ei >= 0 && p[ei].revents) pump_output(&err);
        if (in.open) {
            if (io >= 0 && (p[io].revents & (POLLERR | POLLHUP))) stream_close(&in, 1);  /* nobody reads it */
            else if (io >= 0) {
                if (p[io].revents & POLLOUT) {
                    in.full = 0;
                    if (in.len > in.off) pump_input_write(&in);
                }
            } else if (p[ii].revents) {
                pump_input_read(&in);
                if (in.open && in.len > in.off) pump_input_write(&in);
            }
        }
        if (pi >= 0 && p[pi].revents) ended = 1;
    }
    /* The process has ended: what it (or what it left behind) wrote before is in the pipes. */
    for (int rounds = 0; rounds < 1 << 16 && (out.open || err.open); rounds++) {
        struct pollfd p[2];
        int n = 0, oi = -1, ei = -1;
        if (out.open) { oi = n; p[n++] = (struct pollfd){ out.src, POLLIN, 0 }; }
        if (err.open) { ei = n; p[n++] = (struct pollfd){ err.src, POLLIN, 0 }; }
        int r = poll(p, (nfds_t)n, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        if (oi >= 0 && p[oi].revents) pump_output(&out);
        if (ei >= 0 && p[ei].revents) pump_output(&err);
    }
    stream_close(&in, 1);
    stream_close(&out, 0);
    stream_close(&err, 0);
    if (pidfd >= 0) close(pidfd);
}

int strata_fd_above_stdio(int fd) {
    if (fd < 0 || fd > 2) return fd;
    int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    int saved = errno;
    close(fd);
    errno = saved;
    return high;
}
