#define _GNU_SOURCE
#include "crootless.h"
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Rootless strata (docs/rootless.md): every command of one user runs in the same user and mount
   namespace. The first command makes them: a child unshares a user namespace, the parent maps
   the user to 0 and their /etc/subuid and /etc/subgid ranges above it (through newuidmap and
   newgidmap, which are setuid root), the child unshares a mount namespace and leaves a pause
   process that holds both. Every command joins them by the pause process's pid, kept in
   $XDG_RUNTIME_DIR/strata/pause.pid. This runs before main, while the process has one thread. */

static char error_text[512];

const char *strata_rootless_error(void) { return error_text[0] ? error_text : NULL; }

static void set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error_text, sizeof error_text, fmt, ap);
    va_end(ap);
    setenv("STRATA_ROOTLESS_ERROR", error_text, 1);
}

/* A directory of ours, made if missing: not a link, owned by us, writable by nobody else. */
static int own_directory(const char *path) {
    if (mkdir(path, 0700) != 0 && errno != EEXIST) return -1;
    struct stat st;
    if (lstat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077) != 0) { errno = EPERM; return -1; }
    return 0;
}

/* Whether `path` is a directory of ours that nobody else may write. */
static int private_directory(const char *path) {
    struct stat st;
    return lstat(path, &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == getuid() && (st.st_mode & 022) == 0;
}

/* $XDG_RUNTIME_DIR if it is ours (and only ours to write), else /run/user/UID, else
   ~/.cache/strata-run if it was taken before, else /tmp/strata-run-UID (made 0700), else
   ~/.cache/strata-run (another user had taken the name in /tmp; once used, it stays the choice,
   so the name coming free again does not split the user's namespace in two). XDG_RUNTIME_DIR is
   set to it, so every later step (and the credentials) agree. */
static int runtime_directory(char *out, size_t n) {
    const char *x = getenv("XDG_RUNTIME_DIR");
    const char *home = getenv("HOME");
    char cache[3100] = "";
    if (home && *home == '/' && strlen(home) < 3000) snprintf(cache, sizeof cache, "%s/.cache/strata-run", home);
    if (x && *x == '/' && strlen(x) < 3000 && private_directory(x)) {
        snprintf(out, n, "%s", x);
    } else {
        snprintf(out, n, "/run/user/%u", (unsigned)getuid());
        if (!private_directory(out)) {
            if (cache[0] && private_directory(cache)) {
                snprintf(out, n, "%s", cache);
            } else {
                snprintf(out, n, "/tmp/strata-run-%u", (unsigned)getuid());
                if (own_directory(out) != 0) {
                    if (!cache[0]) {
                        set_error("cannot use %s as the runtime directory (%s), and HOME is not set: set XDG_RUNTIME_DIR to a directory of yours", out, strerror(errno));
                        return -1;
                    }
                    char parent[3100];
                    snprintf(parent, sizeof parent, "%s/.cache", home);
                    mkdir(parent, 0700);
                    snprintf(out, n, "%s", cache);
                    if (own_directory(out) != 0) {
                        set_error("cannot use %s as the runtime directory (%s): set XDG_RUNTIME_DIR to a directory of yours", out, strerror(errno));
                        return -1;
                    }
                }
            }
        }
        setenv("XDG_RUNTIME_DIR", out, 1);
    }
    size_t len = strlen(out);
    snprintf(out + len, n - len, "/strata");
    if (own_directory(out) != 0) {
        set_error("cannot use %s as strata's runtime directory (%s): it must be a directory of yours, mode 0700", out, strerror(errno));
        return -1;
    }
    return 0;
}

/* A small regular file's text (never a FIFO or a device: no waiting). */
static int read_small(int dirfd, const char *name, char *buf, size_t n) {
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) { close(fd); return -1; }
    ssize_t r = read(fd, buf, n - 1);
    close(fd);
    if (r < 0) return -1;
    buf[r] = 0;
    return (int)r;
}

/* Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot. */
static unsigned long long start_time(int procfd) {
    char buf[1024];
    if (read_small(procfd, "stat", buf, sizeof buf) <= 0) return 0;
    char *p = strrchr(buf, ')');
    if (!p) return 0;
    /* after "(comm)": field 3 is the state; 19 more fields to the start time */
    for (int field = 2; field < 22 && p; field++) p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* The inode of a namespace file, 0 if it cannot be read. */
static unsigned long long ns_inode(int fd) {
    struct stat st;
    return fstat(fd, &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

/* Joins the namespaces of the pause process recorded in rundir/pause.pid ("PID START USERNS
   MNTNS"): 0 when joined, -1 when there is none, -2 when joining failed. The process must be
   that one still: ours, named strata-pause, started when it did, in the namespaces it made.
   A pid used again (by one of the user's containers, which run as the user in the same user
   namespace and may name themselves so) fails the start time and the mount namespace. */
static int join_pause(const char *rundir) {
    int dir = open(rundir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0) return -1;
    char buf[128];
    int got = read_small(dir, "pause.pid", buf, sizeof buf);
    close(dir);
    if (got <= 0) return -1;
    long pid = 0;
    unsigned long long start = 0, user_ino = 0, mnt_ino = 0;
    if (sscanf(buf, "%ld %llu %llu %llu", &pid, &start, &user_ino, &mnt_ino) != 4 || pid <= 1) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld", pid);
    int proc = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (proc < 0) return -1;
    struct stat st;
    char comm[32];
    if (fstat(proc, &st) != 0 || st.st_uid != getuid() || read_small(proc, "comm", comm, sizeof comm) <= 0 ||
        strcmp(comm, "strata-pause\n") != 0 || start_time(proc) != start) {
        close(proc);
        return -1;
    }
    /* in our pid namespace, as the pause process is (a container never is) */
    struct stat theirs_pid, ours_pid;
    if (fstatat(proc, "ns/pid", &theirs_pid, 0) != 0 || stat("/proc/self/ns/pid", &ours_pid) != 0 ||
        theirs_pid.st_ino != ours_pid.st_ino || theirs_pid.st_dev != ours_pid.st_dev) {
        close(proc);
        return -1;
    }
    int userns = openat(proc, "ns/user", O_RDONLY | O_CLOEXEC);
    int mntns = openat(proc, "ns/mnt", O_RDONLY | O_CLOEXEC);
    close(proc);
    if (userns < 0 || mntns < 0 || ns_inode(userns) != user_ino || ns_inode(mntns) != mnt_ino) {
        if (userns >= 0) close(userns);
        if (mntns >= 0) close(mntns);
        return -1;
    }
    /* setns(mnt) moves the root and the working directory to the namespace's: the same path
       is taken again there (never an fd of the host's tree), else / */
    char *cwd = getcwd(NULL, 0);
    int r = -2;
    if (setns(userns, CLONE_NEWUSER) != 0) {
        set_error("cannot join the user namespace of strata's pause process %ld: %s", pid, strerror(errno));
    } else if (setns(mntns, CLONE_NEWNS) != 0) {
        /* in the user namespace but not its mount namespace: nothing may run so */
        fprintf(stderr, "strata: cannot join the mount namespace of strata's pause process %ld: %s\n", pid, strerror(errno));
        _exit(71);
    } else {
        r = 0;
        if (!(cwd && chdir(cwd) == 0) && chdir("/") != 0) r = -2;
    }
    free(cwd);
    close(userns);
    close(mntns);
    return r;
}

/* The user's ranges in /etc/subuid or /etc/subgid ("name:start:count" or "uid:start:count":
   both files are keyed by the user, by name or uid, never by group),
   as newuidmap arguments after "0 ID 1": "1 start count", then the next range above it. */
static int subordinate_ranges(const char *file, const char *name, unsigned id, unsigned long ranges[][2], int max) {
    FILE *f = fopen(file, "re");
    if (!f) return 0;
    char line[512], idtext[16];
    snprintf(idtext, sizeof idtext, "%u", id);
    int n = 0;
    while (n < max && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (!colon || line[0] == '#') continue;
        *colon = 0;
        if (strcmp(line, idtext) != 0 && !(name && strcmp(line, name) == 0)) continue;
        char *end;
        unsigned long start = strtoul(colon + 1, &end, 10);
        if (*end != ':') continue;
        unsigned long count = strtoul(end + 1, &end, 10);
        if (count == 0) continue;
        ranges[n][0] = start;
        ranges[n][1] = count;
        n++;
    }
    fclose(f);
    return n;
}

/* newuidmap PID 0 ID 1 1 START COUNT ... (or newgidmap): 0 on success. */
static int run_map_helper(const char *helper, pid_t pid, unsigned id, unsigned long ranges[][2], int n) {
    char *argv[4 + 3 * 17 + 1];
    char text[3 * 17 + 4][24];
    int a = 0, t = 0;
    argv[a++] = (char *)helper;
    snprintf(text[t], 24, "%d", (int)pid); argv[a++] = text[t++];
    argv[a++] = "0";
    snprintf(text[t], 24, "%u", id); argv[a++] = text[t++];
    argv[a++] = "1";
    unsigned long inside = 1;
    for (int i = 0; i < n; i++) {
        snprintf(text[t], 24, "%lu", inside); argv[a++] = text[t++];
        snprintf(text[t], 24, "%lu", ranges[i][0]); argv[a++] = text[t++];
        snprintf(text[t], 24, "%lu", ranges[i][1]); argv[a++] = text[t++];
        inside += ranges[i][1];
    }
    argv[a] = NULL;
    pid_t c = fork();
    if (c < 0) return -1;
    if (c == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 1);
        execvp(helper, argv);
        _exit(127);
    }
    int status;
    while (waitpid(c, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int write_file(pid_t pid, const char *name, const char *text) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t w = write(fd, text, strlen(text));
    close(fd);
    return w == (ssize_t)strlen(text) ? 0 : -1;
}

/* Maps the child's new user namespace: the user's ranges through the helpers, or the user alone. */
static int map_ids(pid_t pid) {
    uid_t uid = getuid();
    gid_t gid = getgid();
    struct passwd *pw = getpwuid(uid);
    const char *name = pw ? pw->pw_name : NULL;
    unsigned long ur[16][2], gr[16][2];
    int nu = subordinate_ranges("/etc/subuid", name, uid, ur, 16);
    int ng = subordinate_ranges("/etc/subgid", name, uid, gr, 16);
    if (nu > 0 && ng > 0) {
        if (run_map_helper("newuidmap", pid, uid, ur, nu) == 0 && run_map_helper("newgidmap", pid, gid, gr, ng) == 0)
            return 0;
        fprintf(stderr, "strata: warning: newuidmap/newgidmap could not map the ranges of /etc/subuid and /etc/subgid "
                        "(is Debian's uidmap installed?); using a single-id mapping\n");
    } else {
        fprintf(stderr, "strata: warning: no range for %s in /etc/subuid and /etc/subgid: a single-id mapping "
                        "(files of other owners load as you, and a container cannot change users); add one with "
                        "\"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 %s\"\n",
                name ? name : "this user", name ? name : "USER");
    }
    char line[64];
    snprintf(line, sizeof line, "0 %u 1\n", (unsigned)uid);
    if (write_file(pid, "uid_map", line) != 0) return -1;
    if (write_file(pid, "setgroups", "deny") != 0) return -1;
    snprintf(line, sizeof line, "0 %u 1\n", (unsigned)gid);
    return write_file(pid, "gid_map", line);
}

static char *args_start;
static size_t args_length;

/* The pause process: holds the namespaces, nothing of the command that made it (its command
   line, which others may read in /proc, is blanked). */
static void become_pause(void) {
    if (args_start && args_length > 0) {
        memset(args_start, 0, args_length);
        snprintf(args_start, args_length, "strata-pause");
    }
    setsid();
    if (chdir("/") != 0) _exit(1);
    syscall(SYS_close_range, 0U, ~0U, 0);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); if (null > 2) close(null); }
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGQUIT, SIG_IGN);
    signal(SIGTSTP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    /* What ends up its child (a helper whose parent exited) is reaped by the kernel. */
    signal(SIGCHLD, SIG_IGN);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (;;) pause();
}

/* Makes the namespaces and the pause process; writes its pid into rundir/pause.pid. */
static int make_pause(const char *rundir) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return -1;
    pid_t child = fork();
    if (child < 0) return -1;
    if (child == 0) {
        close(sv[0]);
        int fd = sv[1];
        int err = unshare(CLONE_NEWUSER) == 0 ? 0 : errno;
        if (write(fd, &err, sizeof err) != sizeof err || err != 0) _exit(1);
        char go = 0;
        if (read(fd, &go, 1) != 1 || go != 'G') _exit(1);
        err = 0;
        if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) != 0) err = errno;
        if (err) { int neg = -err; (void)!write(fd, &neg, sizeof neg); _exit(1); }
        /* named before the fork: a command joining at once finds the name it checks */
        prctl(PR_SET_NAME, "strata-pause", 0, 0, 0);
        pid_t pause_pid = fork();
        if (pause_pid == 0) become_pause();
        int p = (int)pause_pid;
        (void)!write(fd, &p, sizeof p);
        _exit(0);
    }
    close(sv[1]);
    int fd = sv[0];
    int err = -1, r = -1;
    if (read(fd, &err, sizeof err) != sizeof err || err != 0) {
        set_error("cannot make a user namespace: %s (rootless strata needs unprivileged user namespaces: "
                  "see sysctl user.max_user_namespaces)", strerror(err > 0 ? err : EIO));
    } else if (map_ids(child) != 0) {
        set_error("cannot write the id mapping of a new user namespace: %s", strerror(errno));
        (void)!write(fd, "X", 1);
    } else if (write(fd, "G", 1) == 1) {
        int p = 0;
        if (read(fd, &p, sizeof p) != sizeof p || p <= 0) {
            set_error("cannot make a mount namespace in the user namespace: %s", strerror(p < 0 ? -p : EIO));
        } else {
            char tmp[4200], final[4200], text[128];
            snprintf(tmp, sizeof tmp, "%s/pause.pid.%d", rundir, (int)getpid());
            snprintf(final, sizeof final, "%s/pause.pid", rundir);
            /* the pause process as it is now: its start time and namespaces, checked at each join */
            char procpath[64];
            snprintf(procpath, sizeof procpath, "/proc/%d", p);
            int proc = open(procpath, O_PATH | O_DIRECTORY | O_CLOEXEC);
            int u = proc >= 0 ? openat(proc, "ns/user", O_RDONLY | O_CLOEXEC) : -1;
            int m = proc >= 0 ? openat(proc, "ns/mnt", O_RDONLY | O_CLOEXEC) : -1;
            snprintf(text, sizeof text, "%d %llu %llu %llu\n", p, proc >= 0 ? start_time(proc) : 0ULL,
                     u >= 0 ? ns_inode(u) : 0ULL, m >= 0 ? ns_inode(m) : 0ULL);
            if (u >= 0) close(u);
            if (m >= 0) close(m);
            if (proc >= 0) close(proc);
            int f = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
            if (f >= 0 && write(f, text, strlen(text)) == (ssize_t)strlen(text) && close(f) == 0 && rename(tmp, final) == 0) {
                r = 0;
            } else {
                set_error("cannot write %s: %s", final, strerror(errno));
                kill(p, SIGKILL);
                unlink(tmp);
            }
        }
    }
    close(fd);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {}
    return r;
}

/* Commands that need no store stay outside (help, version, completion scripts). */
static int needs_namespace(int argc, char **argv) {
    if (argc < 2) return 0;
    const char *skip[] = { "--version", "version", "help", "--help", "-h", "--experimental-dump-help",
                           "--generate-completion-script", NULL };
    for (int i = 0; skip[i]; i++)
        if (strcmp(argv[1], skip[i]) == 0) return 0;
    return 1;
}

__attribute__((constructor)) static void strata_rootless_enter(int argc, char **argv) {
    /* root (of the host or of strata's namespace, which it already is in) needs nothing */
    if (geteuid() == 0) return;
    if (!needs_namespace(argc, argv)) return;
    if (argc > 0 && argv[0]) {
        args_start = argv[0];
        args_length = (size_t)(argv[argc - 1] + strlen(argv[argc - 1]) + 1 - argv[0]);
    }
    char rundir[4096];
    if (runtime_directory(rundir, sizeof rundir) != 0) return;
    int r = join_pause(rundir);
    if (r != -1) return;
    /* none yet (or it ended): made under a lock, so two first commands make one */
    char lockpath[4200];
    snprintf(lockpath, sizeof lockpath, "%s/pause.lock", rundir);
    int lock = open(lockpath, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) != 0) {
        set_error("cannot lock %s: %s", lockpath, strerror(errno));
        if (lock >= 0) close(lock);
        return;
    }
    if (join_pause(rundir) == -1 && make_pause(rundir) == 0 && join_pause(rundir) == -1)
        set_error("strata's pause process ended as soon as it was made");
    close(lock);
}
