#define _GNU_SOURCE
#include "clauncher.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

/* Signals sent to strata while it runs a container reach the container's process. They are
   caught from the start of `run` (before the store is touched): one that comes before the
   process exists is kept and cancels the start (or is passed on once the process exists); a
   second one before then is fatal again, as the user insists. Handlers only read and write
   these atomics and call kill/ioctl (async-signal-safe). */
static pid_t relay_target;       /* the process signals go to; 0 before it exists */
static int relay_master = -1;    /* the pty master SIGWINCH resizes; -1 without a terminal */
static int relay_pending;        /* the first signal that came before a target */
static int relay_last;           /* the last signal passed on to a target (0: none yet) */
static const int relayed[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH };
#define NRELAYED (int)(sizeof relayed / sizeof relayed[0])

static void relay(int sig) {
    int saved = errno;
    if (sig == SIGWINCH) {
        int m = __atomic_load_n(&relay_master, __ATOMIC_SEQ_CST);
        struct winsize ws;
        if (m >= 0 && ioctl(0, TIOCGWINSZ, &ws) == 0) ioctl(m, TIOCSWINSZ, &ws);
    } else {
        pid_t p = __atomic_load_n(&relay_target, __ATOMIC_SEQ_CST);
        if (p > 0) {
            kill(p, sig);
            __atomic_store_n(&relay_last, sig, __ATOMIC_SEQ_CST);
        } else {
            int expected = 0;
            if (!__atomic_compare_exchange_n(&relay_pending, &expected, sig, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
                /* A second signal before the process exists: the default action, now. */
                struct sigaction dfl;
                memset(&dfl, 0, sizeof dfl);
                dfl.sa_handler = SIG_DFL;
                sigaction(sig, &dfl, NULL);
                raise(sig);
            }
        }
    }
    errno = saved;
}

void strata_relay_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = relay;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    for (int i = 0; i < NRELAYED; i++) sigaction(relayed[i], &sa, NULL);
    /* strata may have been started with them blocked (a parent's mask is inherited): this
       thread takes them, whatever the others block. */
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < NRELAYED; i++) sigaddset(&set, relayed[i]);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int strata_relay_pending(void) { return __atomic_load_n(&relay_pending, __ATOMIC_SEQ_CST); }

int strata_relay_take_passed(void) { return __atomic_exchange_n(&relay_last, 0, __ATOMIC_SEQ_CST); }

void strata_relay_to(pid_t pid, int master) {
    __atomic_store_n(&relay_master, master, __ATOMIC_SEQ_CST);
    __atomic_store_n(&relay_target, pid, __ATOMIC_SEQ_CST);
    /* What came before the target existed, passed on now (a handler that runs from here on
       sends straight to the target). */
    int s;
    while (pid > 0 && (s = __atomic_exchange_n(&relay_pending, 0, __ATOMIC_SEQ_CST)) != 0) {
        kill(pid, s);
        __atomic_store_n(&relay_last, s, __ATOMIC_SEQ_CST);
    }
}

void strata_relay_uninstall(void) {
    __atomic_store_n(&relay_target, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&relay_master, -1, __ATOMIC_SEQ_CST);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int i = 0; i < NRELAYED; i++) sigaction(relayed[i], &dfl, NULL);
    __atomic_store_n(&relay_pending, 0, __ATOMIC_SEQ_CST);
}
