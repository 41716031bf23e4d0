#define _GNU_SOURCE
#include "cstrata.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#define S_FSCONFIG_SET_FLAG 0
#define S_FSCONFIG_SET_STRING 1
#define S_FSCONFIG_CMD_CREATE 6
#define S_FSOPEN_CLOEXEC 0x1
#define S_FSMOUNT_CLOEXEC 0x1
#define S_MOVE_MOUNT_F_EMPTY_PATH 0x4

/* Copies what the kernel logged on the fs context (lines "e ...") into err. */
static void drain_log(int fsfd, char *err, size_t errlen) {
    if (err == NULL || errlen == 0) return;
    size_t used = strlen(err);
    char buf[512];
    for (;;) {
        ssize_t n = read(fsfd, buf, sizeof buf - 1);
        if (n <= 0) break;
        buf[n] = 0;
        int w = snprintf(err + used, errlen - used, "%s%s", used ? "; " : "", buf);
        if (w < 0 || (size_t)w >= errlen - used) break;
        used += (size_t)w;
    }
}

static int cfg(int fsfd, const char *key, const char *value) {
    return (int)syscall(SYS_fsconfig, fsfd, value ? S_FSCONFIG_SET_STRING : S_FSCONFIG_SET_FLAG, key, value, 0);
}

int strata_overlay_mount_fsconfig(const char *target, const char *const *lowers, int nlowers,
                                  const char *upper, const char *work, int readonly, int userxattr,
                                  char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    int fsfd = (int)syscall(SYS_fsopen, "overlay", S_FSOPEN_CLOEXEC);
    if (fsfd < 0) return -1;
    int saved = 0;
    if (cfg(fsfd, "source", "strata") < 0) goto fail;
    for (int i = 0; i < nlowers; i++) {
        if (cfg(fsfd, "lowerdir+", lowers[i]) < 0) goto fail;
    }
    if (!readonly) {
        if (cfg(fsfd, "upperdir", upper) < 0) goto fail;
        if (cfg(fsfd, "workdir", work) < 0) goto fail;
    }
    if (cfg(fsfd, "index", "off") < 0) goto fail;
    /* "off" follows redirects where the kernel is built so, which userxattr refuses */
    if (cfg(fsfd, "redirect_dir", userxattr ? "nofollow" : "off") < 0) goto fail;
    if (cfg(fsfd, "metacopy", "off") < 0) goto fail;
    if (userxattr && cfg(fsfd, "userxattr", NULL) < 0) goto fail;
    if (syscall(SYS_fsconfig, fsfd, S_FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) goto fail;
    int mfd = (int)syscall(SYS_fsmount, fsfd, S_FSMOUNT_CLOEXEC, 0);
    if (mfd < 0) goto fail;
    if (syscall(SYS_move_mount, mfd, "", AT_FDCWD, target, S_MOVE_MOUNT_F_EMPTY_PATH) < 0) {
        saved = errno;
        close(mfd);
        errno = saved;
        goto fail;
    }
    close(mfd);
    close(fsfd);
    return 0;
fail:
    saved = errno;
    drain_log(fsfd, err, errlen);
    close(fsfd);
    errno = saved;
    return -1;
}

int strata_fsopen_overlay_probe(void) {
    int fsfd = (int)syscall(SYS_fsopen, "overlay", S_FSOPEN_CLOEXEC);
    if (fsfd < 0) return -1;
    close(fsfd);
    return 0;
}

int strata_mount_in_dir(const char *dir, const char *source, const char *target, const char *fstype,
                        unsigned long flags, const char *data) {
    /* mount(2) resolves relative paths in `data` against the cwd, which is per process: do it
       in a short-lived child so the caller's threads keep their cwd. Only syscalls between
       fork and _exit. */
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (chdir(dir) != 0) _exit(errno);
        if (mount(source, target, fstype, flags, data) != 0) _exit(errno);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -1;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    errno = WIFEXITED(status) ? WEXITSTATUS(status) : EIO;
    return -1;
}

int strata_mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data) {
    return mount(source, target, fstype, flags, data);
}

int strata_umount(const char *target, int flags) { return umount2(target, flags); }

unsigned long strata_ms_bind(void) { return MS_BIND; }
int strata_mnt_detach(void) { return MNT_DETACH; }

int strata_run_helper(const char *path, char *const argv[], char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
    /* Syscalls only between fork and exec (the caller has threads). */
    pid_t pid = fork();
    if (pid < 0) { close(fds[0]); close(fds[1]); return -1; }
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(fds[1], 2) < 0) _exit(126);
        syscall(SYS_close_range, 3U, ~0U, 0);
        execv(path, argv);
        _exit(127);
    }
    close(fds[1]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) { close(fds[0]); return -1; }
    }
    /* what it said on stderr before it ended (a daemon it left may hold the pipe: no waiting) */
    if (err && errlen > 1) {
        ssize_t n = read(fds[0], err, errlen - 1);
        err[n > 0 ? n : 0] = 0;
    }
    close(fds[0]);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    errno = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
