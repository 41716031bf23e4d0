/*
 * strata-init: pid 1 of a container started with `strata run --init`.
 *
 * strata loads this program into a sealed memfd and execs it as the container's first
 * process, so pid 1 is a small program of its own (not strata, and holding nothing of the
 * host: it starts with fds 0-2 only). It runs the command as its child, forwards the signals
 * it receives to it, reaps every orphan, and exits the way the command did (128+N when the
 * command was killed by signal N).
 *
 * Usage (argv as strata builds it): strata-init PROGRAM ARGV0 [ARG...]
 * Statically linked: it runs in any image, with or without a C library.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "strata-init: usage: strata-init PROGRAM ARGV0 [ARG...]\n");
        return 125;
    }
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);

    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "strata-init: cannot start %s: %s\n", argv[1], strerror(errno));
        return 125;
    }
    if (child == 0) {
        /* The command gets the dispositions and mask strata set before exec: default, empty. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execve(argv[1], argv + 2, environ);
        int e = errno;
        fprintf(stderr, "strata-init: cannot run %s: %s\n", argv[1], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }

    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(&all, &info);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            kill(child, sig);
            continue;
        }
        int status;
        pid_t p;
        while ((p = waitpid(-1, &status, WNOHANG)) > 0) {
            if (p != child) continue;
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
        }
    }
}
